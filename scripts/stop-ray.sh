#!/usr/bin/env bash
# Stops every Ray process of this user on the node; succeeds when nothing runs (idempotent delete).
# Usage: stop-ray.sh [--venv DIR]
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

rm -f "${RAY_STATE_DIR}/head" "${RAY_STATE_DIR}/worker"
if [ -x "${venv}/bin/ray" ]; then
    ray_env "$venv"
    "${venv}/bin/ray" stop --force </dev/null >/dev/null 2>&1 || true
fi
ray_daemons='raylet|gcs_server'
if ray_running "$ray_daemons"; then
    die "Ray processes still running after ray stop: $(pgrep -u "$(id -u)" -x -l "$ray_daemons" | tr '\n' ' ')"
fi
log "Ray stopped"
