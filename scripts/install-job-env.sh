#!/usr/bin/env bash
# Tells every Ray process on this node where the stack's data lives: /etc/ray-cluster/job.env (KEY=VALUE lines:
# the region and the four bucket names, which ray-head.service and ray-worker.service read, so that every task,
# actor and job driver inherits them) and /etc/ray-cluster/stack.json (the same for scripts). Neither holds a
# secret: S3 credentials come from the instance role through IMDSv2, never from a file. Idempotent; Ray reads the
# environment when it starts, so a change reaches running processes at Ray's next start. Usage:
#   install-job-env.sh --env TEXT --stack-json TEXT
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-job-env

env_text="" stack_json=""
while [ $# -gt 0 ]; do
    case $1 in
        --env) env_text=$2; shift 2 ;;
        --stack-json) stack_json=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$env_text" ] && [ -n "$stack_json" ]; }; then
    die "--env and --stack-json are required"
fi

changed=no
install_if_changed "${RAY_SETTINGS_DIR}/job.env" 644 "$env_text" && changed=yes
install_if_changed "${RAY_SETTINGS_DIR}/stack.json" 644 "$stack_json" && changed=yes
if [ "$changed" = no ]; then
    log "job environment already in ${RAY_SETTINGS_DIR}/job.env and stack.json"
elif systemctl is-active --quiet ray-head.service ray-worker.service 2>/dev/null; then
    log "job environment written to ${RAY_SETTINGS_DIR}/job.env and stack.json; Ray's processes see it from Ray's next start"
else
    log "job environment written to ${RAY_SETTINGS_DIR}/job.env and stack.json"
fi
