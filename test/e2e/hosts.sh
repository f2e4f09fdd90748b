#!/usr/bin/env bash
# Test hosts for the end-to-end test: each host is a network, mount and UTS namespace with its own sshd, address,
# home, /tmp, /dev/shm, hostname and /etc/hosts, so Ray nodes never share ports or files with each other or with
# this machine. A mirror namespace serves the wheelhouse as a PEP 503 index; no host has a route off the bridge.
#
#   hosts.sh up STATE_DIR WHEELHOUSE PUBLIC_KEY HOST...   (HOST: name=last-octet, e.g. h1=11)
#   hosts.sh down STATE_DIR
#   hosts.sh down-stale
set -euo pipefail

SUBNET=10.213.0
BRIDGE=rctest0
MIRROR_OCTET=2
MIRROR_PORT=8000

die() { echo "hosts.sh: $*" >&2; exit 1; }

up() {
    local state=$1 wheelhouse=$2 public_key=$3
    shift 3
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
    [ -d "$wheelhouse" ] || die "no wheelhouse at ${wheelhouse}"
    mkdir -p "$state" /run/sshd
    state=$(cd "$state" && pwd)
    # Each host mounts its own /tmp and /root over the real ones, which would hide a state dir below them.
    case $state/ in
        /tmp/*|/root/*) die "state dir ${state} must not be below /tmp or /root" ;;
    esac

    ip link show "$BRIDGE" >/dev/null 2>&1 || {
        ip link add "$BRIDGE" type bridge
        ip addr add "${SUBNET}.1/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    }
    echo "$BRIDGE" > "${state}/bridge"

    namespace "$state" mirror "$MIRROR_OCTET"
    local index="${state}/index/simple"
    mkdir -p "$index"
    local wheel project
    for wheel in "$wheelhouse"/*.whl; do
        # PEP 503 project directories use the normalised name: lower case, runs of -_. become -.
        project=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]' '[:lower:]' | sed -E 's/[-_.]+/-/g')
        mkdir -p "${index}/${project}"
        ln -sf "$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")" "${index}/${project}/"
    done
    ip netns exec rct-mirror python3 -m http.server "$MIRROR_PORT" --bind "${SUBNET}.${MIRROR_OCTET}" \
        --directory "${state}/index" >"${state}/mirror.log" 2>&1 &
    echo $! > "${state}/mirror.pid"
    echo "http://${SUBNET}.${MIRROR_OCTET}:${MIRROR_PORT}/simple/" > "${state}/index-url"

    local spec name octet
    for spec in "$@"; do
        name=${spec%%=*}
        octet=${spec##*=}
        namespace "$state" "$name" "$octet"
        host "$state" "$name" "$octet" "$public_key"
    done

    for spec in "$@"; do
        wait_port "${SUBNET}.${spec##*=}" 22
    done
    wait_port "${SUBNET}.${MIRROR_OCTET}" "$MIRROR_PORT"
}

namespace() {
    local state=$1 name=$2 octet=$3 ns="rct-$2"
    ip netns add "$ns"
    echo "$ns" >> "${state}/namespaces"
    ip link add "rct-${name}" type veth peer name eth0 netns "$ns"
    ip link set "rct-${name}" master "$BRIDGE" up
    ip -n "$ns" addr add "${SUBNET}.${octet}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

host() {
    local state=$1 name=$2 octet=$3 public_key=$4
    local dir="${state}/hosts/${name}"
    mkdir -p "${dir}/home/.ssh" "${dir}/tmp" "${dir}/etc"
    chmod 700 "${dir}/home" "${dir}/home/.ssh"
    chmod 1777 "${dir}/tmp"
    cp "$public_key" "${dir}/home/.ssh/authorized_keys"
    chmod 600 "${dir}/home/.ssh/authorized_keys"
    printf '127.0.0.1 localhost\n' > "${dir}/etc/hosts"
    echo "test-${name}" > "${dir}/etc/hostname"
    ssh-keygen -q -t ed25519 -N '' -f "${dir}/ssh_host_ed25519_key" <<<y >/dev/null
    cat > "${dir}/sshd_config" <<CFG
ListenAddress ${SUBNET}.${octet}
Port 22
HostKey ${dir}/ssh_host_ed25519_key
PidFile ${dir}/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile ${dir}/home/.ssh/authorized_keys
UsePAM no
StrictModes no
MaxStartups 100
MaxSessions 100
CFG
    # Own PIDs too: `ray stop` kills Ray processes by name, and must not reach the other hosts' ones.
    # The host's own home, /tmp, shared memory, hostname and /etc/hosts are bind mounts in its own mount namespace.
    ip netns exec "rct-${name}" unshare --mount --uts --pid --fork --mount-proc --propagation private bash -c "
        mount --bind '${dir}/home' /root
        mount --bind '${dir}/tmp' /tmp
        mount -t tmpfs -o size=4g tmpfs /dev/shm
        mount --bind '${dir}/etc/hosts' /etc/hosts
        mount --bind '${dir}/etc/hostname' /etc/hostname
        hostname 'test-${name}'
        exec /usr/sbin/sshd -D -e -f '${dir}/sshd_config'
    " >"${dir}/sshd.log" 2>&1 &
    echo $! > "${dir}/launcher.pid"
}

wait_port() {
    local address=$1 port=$2
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${address}/${port}") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listens on ${address}:${port} after 10s"
}

# Kills every process in a namespace (sshd, the sessions it spawned, the Ray daemons they started), then removes it.
remove_namespace() {
    local ns=$1 pid
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
        kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
}

down() {
    local state=$1 ns
    [ -d "$state" ] || return 0
    if [ -f "${state}/namespaces" ]; then
        while read -r ns; do
            remove_namespace "$ns"
        done < "${state}/namespaces"
        rm -f "${state}/namespaces"
    fi
    if [ -f "${state}/bridge" ]; then
        ip link del "$(cat "${state}/bridge")" 2>/dev/null || true
        rm -f "${state}/bridge"
    fi
}

# Removes what a run killed before its cleanup left: its namespaces (with their processes) and the bridge.
down_stale() {
    local ns
    for ns in $(ip netns list | awk '$1 ~ /^rct-/ { print $1 }'); do
        remove_namespace "$ns"
    done
    ip link del "$BRIDGE" 2>/dev/null || true
}

case ${1:-} in
    up) shift; up "$@" ;;
    down-stale) down_stale ;;
    down) shift; down "$@" ;;
    *) die "usage: hosts.sh up STATE_DIR WHEELHOUSE PUBLIC_KEY NAME=OCTET... | hosts.sh down STATE_DIR | hosts.sh down-stale" ;;
esac
