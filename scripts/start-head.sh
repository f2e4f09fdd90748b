#!/usr/bin/env bash
# Starts the Ray head with token authentication; leaves a head that already runs as asked alone.
# The cluster token arrives on stdin. Usage:
#   start-head.sh --version X.Y.Z --node-ip IP [--port 6379] [--dashboard-port 8265] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=start-head

version="" node_ip="" port=6379 dashboard_port=8265 venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --version) version=$2; shift 2 ;;
        --node-ip) node_ip=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --dashboard-port) dashboard_port=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
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
install_auth_token
ray="${venv}/bin/ray"
state_file="${RAY_STATE_DIR}/head"
desired="version=${version} node_ip=${node_ip} port=${port} dashboard_port=${dashboard_port}"

if state_matches "$state_file" "$desired" && "$ray" health-check --address "${node_ip}:${port}" >/dev/null 2>&1; then
    log "Ray head ${version} already running at ${node_ip}:${port}"
    exit 0
fi

# Whatever runs here is stale (another version, address or a crashed head): start clean.
restart_ray "$ray" "$state_file" "$desired" start-head --head \
    --node-ip-address="$node_ip" \
    --port="$port" \
    --dashboard-host=0.0.0.0 \
    --dashboard-port="$dashboard_port"
log "Ray head ${version} started at ${node_ip}:${port}, dashboard on port ${dashboard_port}"
