#!/usr/bin/env bash
# Joins this node to the Ray head as a systemd service (ray-worker.service), enabled at boot and restarted on
# failure, so the worker rejoins by itself; leaves a worker that already runs as asked alone. The cluster token
# arrives on stdin. Usage:
#   start-worker.sh --version X.Y.Z --node-ip IP --address HEAD_IP:PORT [--timeout SECONDS] [--venv DIR]
#       [--labels K=V,…] [--num-gpus N]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=start-worker
RAY_UNIT_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-worker.service")
RAY_RUNNER_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-node-run.sh")
# Each try of the service to reach a head that is down is bounded by this; systemd then tries again.
JOIN_TRY_SECONDS=30

version="" node_ip="" address="" timeout_s=600 venv=$RAY_VENV_DEFAULT labels="" num_cpus="" num_gpus=""
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --node-ip) node_ip=$2; shift 2 ;;
        --address) address=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        --labels) labels=$2; shift 2 ;;
        --num-cpus) num_cpus=$2; shift 2 ;;
        --num-gpus) num_gpus=$2; shift 2 ;;
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

deadline=$(( SECONDS + timeout_s ))
# The bootstrap waits for the head with its own bound and message; the service would wait forever.
until port_open "${address%:*}" "${address##*:}"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        die "the Ray head's GCS at ${address} did not answer within ${timeout_s}s; is the head running and port ${address##*:} open between nodes?"
    fi
    sleep 2
done

outcome=$(ensure_ray_service ray-worker "$venv" "$version" "$RAY_UNIT_TEXT" "$RAY_RUNNER_TEXT" "RAY_NODE_IP=${node_ip}
RAY_ADDRESS=${address}
RAY_JOIN_TRY_SECONDS=${JOIN_TRY_SECONDS}
RAY_LABELS=${labels}
RAY_NUM_CPUS=${num_cpus}
RAY_NUM_GPUS=${num_gpus}")
wait_for_service ray-worker $(( deadline > SECONDS ? deadline - SECONDS : 1 )) "the Ray worker did not start" \
    ray_running raylet
if [ "$outcome" = running ]; then
    log "Ray worker ${version} already joined to ${address}"
else
    log "Ray worker ${version} at ${node_ip} ${outcome} as ray-worker.service, joining ${address}"
fi
