#!/usr/bin/env bash
# Removes the job archive from the head: first one last pass, so that no ended job is left uncopied, then the service,
# its command and settings. What it copied stays in the bucket. Succeeds when nothing is installed. Usage:
#   remove-job-archive.sh
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=remove-job-archive

[ $# -eq 0 ] || die "unknown argument: $1"
if [ -x /usr/local/bin/ray-cluster-jobs ]; then
    timeout 120 /usr/local/bin/ray-cluster-jobs archive || log "the last pass did not copy every job; see above"
fi
if [ -f /etc/systemd/system/ray-job-archive.service ]; then
    "${SUDO[@]}" systemctl disable --now --quiet ray-job-archive.service
fi
"${SUDO[@]}" rm -f /etc/systemd/system/ray-job-archive.service /usr/local/bin/ray-cluster-jobs \
    /usr/local/lib/ray-cluster/job_archive.py "${RAY_SETTINGS_DIR}/job-archive.env"
"${SUDO[@]}" systemctl daemon-reload
log "job archive off"
