#!/usr/bin/env bash
# Makes a node that Ray's autoscaler launched the same worker as one the stack creates: the head's autoscaler runs
# this over SSH (an elastic group's worker_setup_commands) from the files it synced to the node, and it runs the
# stack's own prepare, install and start, so the node gets the same venv, the same ray-worker.service that survives
# a reboot, its group's label, and a hostname users can read: <group>-<its private IP with dashes>. The token comes
# in the synced auth_token file, never in user data, tags or a command line; it is removed once Ray has it.
# Usage: join-cluster.sh --group NAME --version X.Y.Z --port PORT [--installer uv|pip] [--index-url URL]
#            [--timeout SECONDS] [--num-cpus N] [--num-gpus N] [--spot]
# --spot (a spot group's node) also installs ray-spot-watch.service, which drains the node in Ray when EC2 announces
# its interruption.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=join-cluster
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

group="" version="" port="" installer=uv index_url="" timeout_s=600 num_cpus="" num_gpus="" spot=no
while [ $# -gt 0 ]; do
    case $1 in
        --group) group=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --port) port=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --num-cpus) num_cpus=$2; shift 2 ;;
        --num-gpus) num_gpus=$2; shift 2 ;;
        --spot) spot=yes; shift ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$group" ] && [ -n "$version" ] && [ -n "$port" ]; }; then
    die "--group, --version and --port are required"
fi
# The autoscaler exports the head's address to every command it runs on a node.
head_ip=${RAY_HEAD_IP:?RAY_HEAD_IP is not set; the autoscaler exports it}
# The address the head reached this node at: the private IP the autoscaler matches the node by.
read -r _ _ node_ip _ <<<"${SSH_CONNECTION:?not run over SSH}"
name="${group}-${node_ip//./-}"

bash "${here}/prepare-node.sh" --hostname "$name" --ip "$node_ip" --head "$head_ip" --timeout "$timeout_s"
bash "${here}/install-ray.sh" --version "$version" --installer "$installer" \
    ${index_url:+--index-url "$index_url"}
bash "${here}/install-job-env.sh" --env "$(cat "${here}/job.env")" --stack-json "$(cat "${here}/stack.json")"
token="${here}/auth_token"
if [ -f "$token" ]; then
    bash "${here}/start-worker.sh" --version "$version" --node-ip "$node_ip" --address "${head_ip}:${port}" \
        --timeout "$timeout_s" --labels "ray-cluster/group=${group}" ${num_cpus:+--num-cpus "$num_cpus"} \
        ${num_gpus:+--num-gpus "$num_gpus"} < "$token"
    rm -f "$token"
elif systemctl is-active --quiet ray-worker.service; then
    # A second run (the autoscaler recovering the node) finds the token already in the Ray token file.
    log "${name} already runs ray-worker.service; the token was handed over before"
else
    die "no auth_token among the files the head synced to ${here}, and no Ray worker running"
fi
if [ "$spot" = yes ]; then
    bash "${here}/install-spot-watch.sh"
fi
log "${name} joined ${head_ip}:${port} as group ${group}"
