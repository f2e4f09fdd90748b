#!/usr/bin/env bash
# Takes the head's autoscaler off elastic groups: it removes the config, key and worker files that
# install-autoscaler.sh laid out and restarts ray-autoscaler.service, which then launches nothing and only keeps
# `ray status` current. The stack terminates the workers it launched afterwards, by tag. Idempotent.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=remove-autoscaler

[ $# -eq 0 ] || die "unknown argument: $1"
if [ -e "${RAY_STATE_DIR}/autoscaler.yaml" ] || [ -e "${RAY_STATE_DIR}/elastic" ]; then
    rm -rf "${RAY_STATE_DIR}/autoscaler.yaml" "${RAY_STATE_DIR}/autoscaler-key" "${RAY_STATE_DIR}/elastic"
    if systemctl is-active --quiet ray-autoscaler.service; then
        "${SUDO[@]}" systemctl restart ray-autoscaler.service
    fi
    log "the autoscaler launches no more workers"
else
    log "no autoscaler config; nothing to remove"
fi
