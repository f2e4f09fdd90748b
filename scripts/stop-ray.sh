#!/usr/bin/env bash
# Stops and disables this node's Ray service and removes it, so Ray stays down across reboots; then stops any Ray
# process of this user that no service runs. Succeeds when nothing runs (idempotent delete). Usage:
#   stop-ray.sh [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=stop-ray

venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done

removed=no
# The autoscaler first: it must launch nothing while the head goes.
for unit in ray-autoscaler ray-head ray-worker; do
    if [ -f "/etc/systemd/system/${unit}.service" ]; then
        # Synchronous: returns once every process of the unit is gone.
        "${SUDO[@]}" systemctl disable --now --quiet "${unit}.service"
        "${SUDO[@]}" rm -f "/etc/systemd/system/${unit}.service" "${RAY_SETTINGS_DIR}/${unit}.env"
        removed=yes
        log "${unit}.service stopped and disabled"
    fi
done
if [ "$removed" = yes ]; then
    "${SUDO[@]}" systemctl daemon-reload
    "${SUDO[@]}" rm -f "$RAY_RUNNER"
fi
stop_unmanaged_ray "$venv"
ray_daemons='raylet|gcs_server'
if ray_running "$ray_daemons"; then
    die "Ray processes still running after stopping: $(pgrep -u "$(id -u)" -x -l "$ray_daemons" | tr '\n' ' ')"
fi
log "Ray stopped"
