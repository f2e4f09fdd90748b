#!/usr/bin/env bash
# Installs autostop on the head: the AWS SDK into Ray's venv, the `ray-cluster-autostop` command, and
# ray-autostop.timer, which checks every minute whether the cluster is idle and, after the idle bound, stops every
# instance of this stack. Idempotent: a re-run with the same settings changes nothing. Usage:
#   install-autostop.sh --idle-minutes N --region R --project P --stack S --head-instance-id ID
#       --gcs-address IP:PORT --dashboard-url URL [--installer uv|pip] [--index-url URL] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-autostop
AUTOSTOP_PY=$(cat "$(dirname "${BASH_SOURCE[0]}")/autostop.py")
AUTOSTOP_SERVICE=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-autostop.service")
AUTOSTOP_TIMER=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-autostop.timer")
AWS_SDK_REQUIREMENTS=$(cat "$(dirname "${BASH_SOURCE[0]}")/boto3-requirements.txt")

idle_minutes="" region="" project="" stack="" head_id="" gcs_address="" dashboard_url=""
installer=uv index_url="" venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --idle-minutes) idle_minutes=$2; shift 2 ;;
        --region) region=$2; shift 2 ;;
        --project) project=$2; shift 2 ;;
        --stack) stack=$2; shift 2 ;;
        --head-instance-id) head_id=$2; shift 2 ;;
        --gcs-address) gcs_address=$2; shift 2 ;;
        --dashboard-url) dashboard_url=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
for required in idle_minutes region project stack head_id gcs_address dashboard_url; do
    [ -n "${!required}" ] || die "--${required//_/-} is required"
done
[ -x "${venv}/bin/python" ] || die "no Ray venv at ${venv}; run install-ray.sh first"

ensure_aws_sdk "$venv" "$installer" "$index_url" "$AWS_SDK_REQUIREMENTS" || true

changed=no
install_if_changed /usr/local/lib/ray-cluster/autostop.py 644 "$AUTOSTOP_PY" && changed=yes
# The login shell gets no RAY_AUTH_MODE: the command sets it, so `ray-cluster-autostop status` works for anyone.
install_if_changed /usr/local/bin/ray-cluster-autostop 755 "#!/bin/sh
RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 exec ${venv}/bin/python /usr/local/lib/ray-cluster/autostop.py \"\$@\"" \
    && changed=yes
install_if_changed "${RAY_SETTINGS_DIR}/autostop.env" 644 "IDLE_MINUTES=${idle_minutes}
REGION=${region}
PROJECT=${project}
STACK=${stack}
HEAD_INSTANCE_ID=${head_id}
GCS_ADDRESS=${gcs_address}
DASHBOARD_URL=${dashboard_url}" && changed=yes
units=no
install_if_changed /etc/systemd/system/ray-autostop.service 644 "${AUTOSTOP_SERVICE//@USER@/$(id -un)}" && units=yes
install_if_changed /etc/systemd/system/ray-autostop.timer 644 "$AUTOSTOP_TIMER" && units=yes
# The hold flag must outlive reboots and be the login user's to set; the service's StateDirectory is the same.
"${SUDO[@]}" install -d -o "$(id -un)" -m 755 /var/lib/ray-cluster
if [ "$units" = yes ]; then
    "${SUDO[@]}" systemctl daemon-reload
fi
if systemctl is-active --quiet ray-autostop.timer && [ "$changed$units" = nono ]; then
    log "autostop already on: stops the stack after ${idle_minutes} idle minutes"
    exit 0
fi
"${SUDO[@]}" systemctl enable --quiet ray-autostop.timer
"${SUDO[@]}" systemctl restart ray-autostop.timer
log "autostop on: ray-autostop.timer checks every minute; the stack stops after ${idle_minutes} idle minutes"
