#!/usr/bin/env bash
# Turns autostop off on the head: disables ray-autostop.timer and removes it, its service, the command and the
# settings. Succeeds when nothing is installed (idempotent delete). Usage: remove-autostop.sh
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=remove-autostop

[ $# -eq 0 ] || die "unknown argument: $1"
if [ -f /etc/systemd/system/ray-autostop.timer ]; then
    "${SUDO[@]}" systemctl disable --now --quiet ray-autostop.timer
fi
# A check that runs now is left to finish: it may be stopping the stack, which must not stop half-way.
"${SUDO[@]}" rm -f /etc/systemd/system/ray-autostop.timer /etc/systemd/system/ray-autostop.service \
    /usr/local/bin/ray-cluster-autostop /usr/local/lib/ray-cluster/autostop.py "${RAY_SETTINGS_DIR}/autostop.env" \
    /var/lib/ray-cluster/autostop-hold
"${SUDO[@]}" systemctl daemon-reload
log "autostop off"
