#!/usr/bin/env bash
# Installs the job archive on the head: the AWS SDK into Ray's venv, the `ray-cluster-jobs` command and
# ray-job-archive.service, which copies each job that ends (its driver log and a JSON record) to the results bucket
# named in /etc/ray-cluster/stack.json. Idempotent: a re-run with the same settings changes nothing. Usage:
#   install-job-archive.sh --dashboard-url URL --gcs-address IP:PORT [--installer uv|pip] [--index-url URL] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-job-archive
ARCHIVE_PY=$(cat "$(dirname "${BASH_SOURCE[0]}")/job_archive.py")
ARCHIVE_SERVICE=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-job-archive.service")
AWS_SDK_REQUIREMENTS=$(cat "$(dirname "${BASH_SOURCE[0]}")/boto3-requirements.txt")

dashboard_url="" gcs_address="" installer=uv index_url="" venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --dashboard-url) dashboard_url=$2; shift 2 ;;
        --gcs-address) gcs_address=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for required in dashboard_url gcs_address; do
    [ -n "${!required}" ] || die "--${required//_/-} is required"
done
[ -x "${venv}/bin/python" ] || die "no Ray venv at ${venv}; run install-ray.sh first"
[ -f "${RAY_SETTINGS_DIR}/stack.json" ] || die "no ${RAY_SETTINGS_DIR}/stack.json; run install-job-env.sh first"

ensure_aws_sdk "$venv" "$installer" "$index_url" "$AWS_SDK_REQUIREMENTS" || true

changed=no
install_if_changed /usr/local/lib/ray-cluster/job_archive.py 644 "$ARCHIVE_PY" && changed=yes
# The settings come with the command, so that autostop's call and the service's see the same.
install_if_changed /usr/local/bin/ray-cluster-jobs 755 "#!/bin/sh
set -a
. ${RAY_SETTINGS_DIR}/job-archive.env
set +a
RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 exec ${venv}/bin/python /usr/local/lib/ray-cluster/job_archive.py \"\$@\"" \
    && changed=yes
install_if_changed "${RAY_SETTINGS_DIR}/job-archive.env" 644 "DASHBOARD_URL=${dashboard_url}
GCS_ADDRESS=${gcs_address}" && changed=yes
install_unit ray-job-archive.service "${ARCHIVE_SERVICE//@USER@/$(id -un)}" && changed=yes
where=$(python3 -c 'import json; s = json.load(open("/etc/ray-cluster/stack.json")); print("s3://" + s["jobLogs"]["bucket"] + "/" + s["jobLogs"]["prefix"])')
if ensure_service_running ray-job-archive.service "$changed"; then
    log "job archive on: ray-job-archive.service copies each job that ends to ${where}"
else
    log "job archive already on: ended jobs go to ${where}"
fi
