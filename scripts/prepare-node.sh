#!/usr/bin/env bash
# Waits until a node is ready for the bootstrap, then gives it its cluster hostname.
# Usage: prepare-node.sh --hostname NAME --ip ADDRESS [--head HEAD_IP] [--timeout SECONDS]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=prepare-node

name="" ip="" head_ip="" timeout_s=600
while [ $# -gt 0 ]; do
    case $1 in
        --hostname) name=$2; shift 2 ;;
        --ip) ip=$2; shift 2 ;;
        --head) head_ip=$2; shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$name" ] && [ -n "$ip" ]; }; then
    die "--hostname and --ip are required"
fi

wait_for_cloud_init "$timeout_s" "$name"

if [ "$(hostname)" != "$name" ]; then
    if [ -d /run/systemd/system ] && command -v hostnamectl >/dev/null 2>&1; then
        "${SUDO[@]}" hostnamectl set-hostname "$name"
    else
        "${SUDO[@]}" hostname "$name"
        write_in_place /etc/hostname "$name" || true
    fi
    log "hostname set to ${name}"
else
    log "hostname already ${name}"
fi

# Only this node and the head go into /etc/hosts: the block then never changes when workers come and go.
block="# BEGIN ray-cluster
${ip} ${name}"
if [ -n "$head_ip" ] && [ "$head_ip" != "$ip" ]; then
    block="${block}
${head_ip} headnode"
fi
block="${block}
# END ray-cluster"
others=$(sed '/^# BEGIN ray-cluster$/,/^# END ray-cluster$/d' /etc/hosts)
if write_in_place /etc/hosts "${others}
${block}"; then
    log "/etc/hosts updated"
else
    log "/etc/hosts already up to date"
fi
getent hosts "$name" >/dev/null || die "${name} does not resolve after updating /etc/hosts"
