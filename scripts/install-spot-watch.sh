#!/usr/bin/env bash
# Installs ray-spot-watch.service on a worker of a spot group: it polls the instance metadata (IMDSv2) and drains the
# node in Ray (`ray drain-node`, reason preemption) when EC2 sends a spot interruption notice or a rebalance
# recommendation. Runs after start-worker.sh, whose settings (the head's address, this node's IP, Ray's venv) it
# shares. Idempotent: a re-run with the same files changes nothing. Usage:
#   install-spot-watch.sh
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=install-spot-watch
WATCH_PY=$(cat "$(dirname "${BASH_SOURCE[0]}")/spot_watch.py")
WATCH_SERVICE=$(cat "$(dirname "${BASH_SOURCE[0]}")/ray-spot-watch.service")

[ $# -eq 0 ] || die "unknown argument: $1"
settings="${RAY_SETTINGS_DIR}/ray-worker.env"
[ -f "$settings" ] || die "no ${settings}; run start-worker.sh first"

changed=no
install_if_changed /usr/local/lib/ray-cluster/spot_watch.py 644 "$WATCH_PY" && changed=yes
unit_text=${WATCH_SERVICE//@USER@/$(id -un)}
install_unit ray-spot-watch.service "${unit_text//@SETTINGS@/$settings}" && changed=yes
if ensure_service_running ray-spot-watch.service "$changed"; then
    log "spot watch on: ray-spot-watch.service drains this node in Ray on an EC2 interruption notice or rebalance recommendation"
else
    log "spot watch already on"
fi
