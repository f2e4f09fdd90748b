#!/usr/bin/env bash
# Joins this node to the Ray head once the head's GCS answers; leaves a worker that already joined alone.
# The cluster token arrives on stdin. Usage:
#   start-worker.sh --version X.Y.Z --node-ip IP --address HEAD_IP:PORT [--timeout SECONDS] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=start-worker

version="" node_ip="" address="" timeout_s=600 venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --node-ip) node_ip=$2; shift 2 ;;
        --address) address=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$version" ] && [ -n "$node_ip" ] && [ -n "$address" ]; }; then
    die "--version, --node-ip and --address are required"
fi
if ! { [ -x "${venv}/bin/ray" ]; }; then
    die "ray is not installed in ${venv}; run install-ray.sh first"
fi

ray_env "$venv"
install_auth_token
ray="${venv}/bin/ray"
state_file="${RAY_STATE_DIR}/worker"
desired="version=${version} node_ip=${node_ip} address=${address}"

if state_matches "$state_file" "$desired" && ray_running raylet; then
    log "Ray worker ${version} already joined to ${address}"
    exit 0
fi

deadline=$(( $(date +%s) + timeout_s ))
# ray start itself would wait minutes on a dead head; the bound and the message are ours.
until port_open "${address%:*}" "${address##*:}"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "the Ray head's GCS at ${address} did not answer within ${timeout_s}s; is the head running and port ${address##*:} open between nodes?"
    fi
    sleep 2
done

restart_ray "$ray" "$state_file" "$desired" start-worker --address="$address" --node-ip-address="$node_ip"
log "Ray worker ${version} at ${node_ip} joined ${address}"
