#!/usr/bin/env bash
# Makes this node the Ray head as a systemd service (ray-head.service), enabled at boot and restarted on failure;
# leaves a head that already runs as asked alone. The cluster token arrives on stdin. Usage:
#   start-head.sh --version X.Y.Z --node-ip IP [--port 6379] [--dashboard-port 8265] [--timeout SECONDS] [--venv DIR]
#       [--labels K=V,…] [--num-cpus N]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=start-head
RAY_UNIT_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-head.service")
AUTOSCALER_UNIT_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-autoscaler.service")
RAY_RUNNER_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-node-run.sh")

version="" node_ip="" port=6379 dashboard_port=8265 timeout_s=600 venv=$RAY_VENV_DEFAULT labels="" num_cpus="" num_gpus=""
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --node-ip) node_ip=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --dashboard-port) dashboard_port=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        --labels) labels=$2; shift 2 ;;
        --num-cpus) num_cpus=$2; shift 2 ;;
        --num-gpus) num_gpus=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$version" ] && [ -n "$node_ip" ]; }; then
    die "--version and --node-ip are required"
fi
if ! { [ -x "${venv}/bin/ray" ]; }; then
    die "ray is not installed in ${venv}; run install-ray.sh first"
fi

ray_env "$venv"
token=$(cat)
outcome=$(printf '%s' "$token" | ensure_ray_service ray-head "$venv" "$version" "$RAY_UNIT_TEXT" "$RAY_RUNNER_TEXT" "RAY_NODE_IP=${node_ip}
RAY_PORT=${port}
RAY_DASHBOARD_PORT=${dashboard_port}
RAY_LABELS=${labels}
RAY_NUM_CPUS=${num_cpus}
RAY_NUM_GPUS=${num_gpus}")
wait_for_service ray-head "$timeout_s" "the Ray head's GCS did not answer at ${node_ip}:${port}" \
    port_open "$node_ip" "$port"
# The autoscaler's config appears only with elastic groups (install-autoscaler.sh); the path is fixed, so adding or
# removing them never changes this service. A node it launches gets the bootstrap's own bound to answer SSH. It
# looks for demand every 2 s rather than Ray's 5: a scale-up waits on that look, and each costs one DescribeInstances.
printf '%s' "$token" | ensure_ray_service ray-autoscaler "$venv" "$version" "$AUTOSCALER_UNIT_TEXT" "$RAY_RUNNER_TEXT" \
    "RAY_NODE_IP=${node_ip}
RAY_PORT=${port}
RAY_AUTOSCALING_CONFIG=${RAY_STATE_DIR}/autoscaler.yaml
AUTOSCALER_NODE_START_WAIT_S=${timeout_s}
AUTOSCALER_UPDATE_INTERVAL_S=2" >/dev/null
wait_for_service ray-autoscaler "$timeout_s" "Ray's autoscaler did not start" ray_running_monitor "$venv"
if [ "$outcome" = running ]; then
    log "Ray head ${version} already running at ${node_ip}:${port}"
else
    log "Ray head ${version} ${outcome} at ${node_ip}:${port} as ray-head.service, dashboard on port ${dashboard_port}"
fi
