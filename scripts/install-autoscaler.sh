#!/usr/bin/env bash
# Gives the head's autoscaler (ray-autoscaler.service) the stack's config, so that it launches and terminates the
# elastic groups' workers; idempotent, and restarts the autoscaler only when something changed. It lays out:
#   ~/.ray-cluster/autoscaler.yaml      the config the stack rendered (JSON is YAML), Ray reads it on every update
#   ~/.ray-cluster/autoscaler-key       the key the autoscaler logs in to launched workers with (from stdin)
#   ~/.ray-cluster/elastic/             what it syncs to each launched worker: the stack's node scripts, the token and
#                                       the job environment (job.env, stack.json)
# and installs into Ray's venv the AWS SDK the autoscaler's EC2 node provider needs, and the scorer with which it falls
# back to another elastic group when EC2 refuses one (ray_cluster_scorer.py).
# Usage: install-autoscaler.sh --config JSON [--installer uv|pip] [--index-url URL] [--venv DIR] < PRIVATE_KEY
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-autoscaler
AWS_SDK_REQUIREMENTS=$(cat "$(dirname "${BASH_SOURCE[0]}")/boto3-requirements.txt")
LIB_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/lib.sh")
JOIN_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/join-cluster.sh")
PREPARE_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/prepare-node.sh")
INSTALL_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/install-ray.sh")
FETCH_UV_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/fetch_uv.py")
START_WORKER_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/start-worker.sh")
WORKER_UNIT_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-worker.service")
RUNNER_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-node-run.sh")
JOB_ENV_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/install-job-env.sh")
SCORER_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray_cluster_scorer.py")
SPOT_INSTALL_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/install-spot-watch.sh")
SPOT_WATCH_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/spot_watch.py")
SPOT_UNIT_TEXT=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-spot-watch.service")

config="" installer=uv index_url="" venv=$RAY_VENV_DEFAULT
while [ $# -gt 0 ]; do
    case $1 in
        --config) config=$2; shift 2 ;;
        --installer) installer=$2; shift 2 ;;
        --index-url) index_url=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[ -n "$config" ] || die "--config is required"
[ -x "${venv}/bin/python" ] || die "ray is not installed in ${venv}; run install-ray.sh first"
[ -f "${HOME}/.ray/auth_token" ] || die "no cluster token in ~/.ray/auth_token; start-head.sh puts it there"
key=$(cat)
[ -n "$key" ] || die "no private key on stdin"

# Writes CONTENT to FILE (mode MODE, this user's) only when it differs; succeeds only when it wrote.
put() {
    local file=$1 mode=$2 content=$3
    if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
        return 1
    fi
    (umask 077 && printf '%s\n' "$content" > "${file}.new")
    chmod "$mode" "${file}.new"
    mv -f "${file}.new" "$file"
}

changed=no
bundle="${RAY_STATE_DIR}/elastic"
mkdir -p "$bundle"
chmod 700 "$RAY_STATE_DIR" "$bundle"
put "${bundle}/lib.sh" 600 "$LIB_TEXT" && changed=yes
put "${bundle}/join-cluster.sh" 600 "$JOIN_TEXT" && changed=yes
put "${bundle}/prepare-node.sh" 600 "$PREPARE_TEXT" && changed=yes
put "${bundle}/install-ray.sh" 600 "$INSTALL_TEXT" && changed=yes
put "${bundle}/fetch_uv.py" 600 "$FETCH_UV_TEXT" && changed=yes
put "${bundle}/start-worker.sh" 600 "$START_WORKER_TEXT" && changed=yes
put "${bundle}/ray-worker.service" 600 "$WORKER_UNIT_TEXT" && changed=yes
put "${bundle}/ray-node-run.sh" 600 "$RUNNER_TEXT" && changed=yes
put "${bundle}/install-job-env.sh" 600 "$JOB_ENV_TEXT" && changed=yes
put "${bundle}/install-spot-watch.sh" 600 "$SPOT_INSTALL_TEXT" && changed=yes
put "${bundle}/spot_watch.py" 600 "$SPOT_WATCH_TEXT" && changed=yes
put "${bundle}/ray-spot-watch.service" 600 "$SPOT_UNIT_TEXT" && changed=yes
# A launched worker's Ray processes see the same region and buckets as the head's (install-job-env.sh).
for file in job.env stack.json; do
    [ -f "${RAY_SETTINGS_DIR}/${file}" ] || die "no ${RAY_SETTINGS_DIR}/${file}; run install-job-env.sh first"
    put "${bundle}/${file}" 600 "$(cat "${RAY_SETTINGS_DIR}/${file}")" && changed=yes
done
put "${bundle}/auth_token" 600 "$(cat "${HOME}/.ray/auth_token")" && changed=yes
put "${RAY_STATE_DIR}/autoscaler-key" 600 "$key" && changed=yes
# The monitor imports the scorer that falls back from a refused node type from Ray's venv (ray-node-run.sh names it).
site=$("${venv}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
put "${site}/ray_cluster_scorer.py" 644 "$SCORER_TEXT" && changed=yes
# Ray reloads the live config on every update: a broken one must never replace it.
printf '%s' "$config" | "${venv}/bin/python" -c 'import json, sys; json.load(sys.stdin)' \
    || die "--config is not JSON"
put "${RAY_STATE_DIR}/autoscaler.yaml" 600 "$config" && changed=yes

ensure_aws_sdk "$venv" "$installer" "$index_url" "$AWS_SDK_REQUIREMENTS" && changed=yes

if [ "$changed" = yes ] || ! systemctl is-active --quiet ray-autoscaler.service; then
    "${SUDO[@]}" systemctl restart ray-autoscaler.service
    log "ray-autoscaler.service restarted with ${RAY_STATE_DIR}/autoscaler.yaml"
else
    log "the autoscaler already runs with this config"
fi
