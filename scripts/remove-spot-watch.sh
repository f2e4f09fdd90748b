#!/usr/bin/env bash
# Removes ray-spot-watch.service from a node whose group left the spot market. Succeeds when nothing is installed.
# Usage:
#   remove-spot-watch.sh
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=remove-spot-watch

[ $# -eq 0 ] || die "unknown argument: $1"
if [ -f /etc/systemd/system/ray-spot-watch.service ]; then
    "${SUDO[@]}" systemctl disable --now --quiet ray-spot-watch.service
fi
"${SUDO[@]}" rm -f /etc/systemd/system/ray-spot-watch.service /usr/local/lib/ray-cluster/spot_watch.py
"${SUDO[@]}" systemctl daemon-reload
log "spot watch off"
