#!/usr/bin/env bash
# Booted test hosts for the end-to-end test: each host is a Debian machine booted by systemd-nspawn (systemd as
# PID 1, sshd as a service, cloud-init seeded through NoCloud as EC2's metadata would), on test bridges with no
# route off them. Each root is an overlay on the shared base image, kept across the host's reboots like an EBS root
# volume. A mirror namespace on the bridge serves the wheelhouse as a PEP 503 index.
#
# Two bridges stand in for a VPC's two subnets. The public one (10.213.0.0/24) holds this machine (.1), which
# plays the user's laptop. The private one (10.213.1.0/24) has no address of this machine and no route from it:
# only a host with an interface on both (the head of private workers) reaches it. The mirror has a leg on each, as
# a NAT gateway gives private workers the package index; it forwards nothing, so it is no way around the head.
#
# Each host's network namespace is made here, not by systemd-nspawn, and outlives the host's boots as an ENI
# outlives an instance's: its interfaces and addresses, and the packet filter that stands in for its security
# groups (nftables, loaded before the host first boots), are there from the first packet of every boot.
#
#   machines.sh net STATE_DIR WHEELHOUSE                       bridges, package mirror, and an outsider: a namespace
#                                                              on both bridges (.250) that no security group names
#   machines.sh ec2 STATE_DIR PYTHON EMULATOR_PY               the EC2 emulator beside the mirror (moto)
#   machines.sh s3 STATE_DIR PYTHON EMULATOR_PY                S3, IAM and STS beside the mirror (moto), enforcing IAM:
#                                                              only its first 3 calls go unchecked (the test's admin)
#   machines.sh imds STATE_DIR NAME BINARY CONFIG v1|v2 [ARGS] the host's instance metadata (amazon-ec2-metadata-mock;
#                                                              v2: tokens required) at 169.254.169.254:80 in its namespace,
#                                                              ARGS passed on (spot notice times); a restart replaces it
#   machines.sh create STATE_DIR NAME PUBLIC_OCTET PRIVATE_OCTET BASE USER_DATA_FILE PUBLIC_KEY_FILE INSTANCE_ID
#                                                              an octet of "-" leaves the host off that bridge; a key
#                                                              file of "-" gives no key pair; BASE may be IMAGE:BASE,
#                                                              an image's layer over the base image
#   machines.sh snapshot STATE_DIR NAME IMAGE_DIR             the powered-off host's root volume as an image layer, as
#                                                              EC2's CreateImage snapshots it: its own files, without
#                                                              what the rig lays in (seed, network, machine-id)
#   machines.sh firewall STATE_DIR NAME RULES_FILE             loads an nftables ruleset into the host's namespace
#   machines.sh unreachable STATE_DIR NAME ADDRESS PORT        the host's connections to ADDRESS:PORT are refused at
#                                                              once (a table of their own: security groups' reloads
#                                                              keep it), the rest of that address stays reachable
#   machines.sh start STATE_DIR NAME                           power on; the host reboots when it asks to
#   machines.sh stop STATE_DIR NAME                            clean power-off, waits for it
#   machines.sh kill STATE_DIR NAME                            pulls the plug (SIGKILL to the container)
#   machines.sh diagnose STATE_DIR NAME                        the host's boots, its current boot's journal, the jobs
#                                                              systemd still waits on and its critical chain, read
#                                                              from outside (no login needed: the host may refuse it)
#   machines.sh down STATE_DIR                                 powers off and removes everything above
#   machines.sh down-stale                                     removes what a killed run left behind
set -euo pipefail

SUBNET=10.213.0
BRIDGE=rcboot0
PRIVATE_SUBNET=10.213.1
PRIVATE_BRIDGE=rcboot1
MIRROR_NS=rcb-mirror
MIRROR_OCTET=2
MIRROR_PORT=8000
EC2_PORT=5000
S3_PORT=5001
# The calls moto's S3, IAM and STS serve before it checks every request's signature and the caller's IAM policies:
# the test's own admin user, its policy and its key (test/harness/s3_emulator.py admin).
S3_UNCHECKED_CALLS=3
IMDS_ADDRESS=169.254.169.254
MACHINE_PREFIX=rcb-
HOST_NS_PREFIX=rcb-n-
OUTSIDER_NS=rcb-outsider
OUTSIDER_OCTET=250
# Where each host's boots get their cgroups, in every hierarchy.
CGROUP_DIR=ray-cluster-e2e-hosts

die() { echo "machines.sh: $*" >&2; exit 1; }

net() {
    local state=$1 wheelhouse=$2
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, systemd-nspawn)"
    command -v systemd-nspawn >/dev/null 2>&1 || die "systemd-nspawn is missing (apt-get install systemd-container)"
    [ -d "$wheelhouse" ] || die "no wheelhouse at ${wheelhouse}"
    mkdir -p "$state"
    ip link add "$BRIDGE" type bridge
    ip addr add "${SUBNET}.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up

    # No address on the private bridge: this machine cannot reach what sits only there. The unreachable route makes
    # a try fail here at once, where a default route would carry it off this machine.
    ip link add "$PRIVATE_BRIDGE" type bridge
    ip link set "$PRIVATE_BRIDGE" up
    ip route add unreachable "${PRIVATE_SUBNET}.0/24"

    ip netns add "$MIRROR_NS"
    ip link add rcb-mirror type veth peer name eth0 netns "$MIRROR_NS"
    ip link set rcb-mirror master "$BRIDGE" up
    ip -n "$MIRROR_NS" addr add "${SUBNET}.${MIRROR_OCTET}/24" dev eth0
    ip -n "$MIRROR_NS" link set eth0 up
    ip link add rcb-mirror1 type veth peer name eth1 netns "$MIRROR_NS"
    ip link set rcb-mirror1 master "$PRIVATE_BRIDGE" up
    ip -n "$MIRROR_NS" addr add "${PRIVATE_SUBNET}.${MIRROR_OCTET}/24" dev eth1
    ip -n "$MIRROR_NS" link set eth1 up
    ip -n "$MIRROR_NS" link set lo up
    local index="${state}/index/simple" wheel project
    mkdir -p "$index"
    for wheel in "$wheelhouse"/*.whl; do
        # PEP 503 project directories use the normalised name: lower case, runs of -_. become -.
        project=$(basename "$wheel" | cut -d- -f1 | tr '[:upper:]' '[:lower:]' | sed -E 's/[-_.]+/-/g')
        mkdir -p "${index}/${project}"
        ln -sf "$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")" "${index}/${project}/"
    done
    ip netns exec "$MIRROR_NS" python3 -m http.server "$MIRROR_PORT" --bind "${SUBNET}.${MIRROR_OCTET}" \
        --directory "${state}/index" >"${state}/mirror.log" 2>&1 &
    echo $! > "${state}/mirror.pid"
    wait_port "${SUBNET}.${MIRROR_OCTET}" "$MIRROR_PORT"
    echo "http://${SUBNET}.${MIRROR_OCTET}:${MIRROR_PORT}/simple/" > "${state}/index-url"
    outsider
}

# The EC2 API the head's autostop calls, inside the mirror's namespace: reachable from the hosts and this machine
# through the bridge, and from nowhere else.
ec2() {
    local state=$1 python=$2 emulator=$3
    ip netns exec "$MIRROR_NS" "$python" "$emulator" serve --host "${SUBNET}.${MIRROR_OCTET}" --port "$EC2_PORT" \
        --calls "${state}/ec2-calls.jsonl" --refuse "${state}/ec2-refuse.json" --requests "${state}/ec2-requests.jsonl" \
        >"${state}/ec2.log" 2>&1 &
    echo $! > "${state}/ec2.pid"
    wait_port "${SUBNET}.${MIRROR_OCTET}" "$EC2_PORT"
    echo "http://${SUBNET}.${MIRROR_OCTET}:${EC2_PORT}" > "${state}/ec2-endpoint"
}

# S3 as the nodes reach it, IAM and the STS that hands out the instance roles' credentials, in the mirror's
# namespace like the EC2 emulator; a moto of its own, since this one checks every caller's IAM policy.
s3() {
    local state=$1 python=$2 emulator=$3
    ip netns exec "$MIRROR_NS" env INITIAL_NO_AUTH_ACTION_COUNT="$S3_UNCHECKED_CALLS" \
        "$python" "$emulator" serve --host "${SUBNET}.${MIRROR_OCTET}" --port "$S3_PORT" >"${state}/s3.log" 2>&1 &
    echo $! > "${state}/s3.pid"
    wait_port "${SUBNET}.${MIRROR_OCTET}" "$S3_PORT"
    echo "http://${SUBNET}.${MIRROR_OCTET}:${S3_PORT}" > "${state}/s3-endpoint"
}

# The link-local metadata address on the host's loopback, served from inside its namespace as EC2's Nitro card
# serves it: no hop between, and no way to it from any other host.
imds() {
    local state=$1 name=$2 binary=$3 config=$4 version=$5
    shift 5
    local dir="${state}/hosts/${name}" ns tokens=()
    [ "$version" = v1 ] || tokens=(--imdsv2)
    ns=$(cat "${dir}/netns")
    ip -n "$ns" addr replace "${IMDS_ADDRESS}/32" dev lo
    if [ -f "${dir}/imds.pid" ]; then
        kill "$(cat "${dir}/imds.pid")" 2>/dev/null || true
    fi
    ip netns exec "$ns" "$binary" --config-file "$config" --hostname "$IMDS_ADDRESS" --port 80 "${tokens[@]}" "$@" \
        >"${dir}/imds.log" 2>&1 &
    echo $! > "${dir}/imds.pid"
    wait_port_in "$ns" "$IMDS_ADDRESS" 80
}

# One interface of a namespace on a bridge: IFACE inside with ADDRESS/24, LINK on the bridge's side.
leg() {
    local ns=$1 iface=$2 link=$3 bridge=$4 address=$5
    ip link add "$link" type veth peer name "$iface" netns "$ns"
    ip link set "$link" master "$bridge" up
    ip -n "$ns" addr add "${address}/24" dev "$iface"
    ip -n "$ns" link set "$iface" up
}

# A host for which a service answers "refused" at once, as one it has no way to: no retry waits out a timeout. Only
# that port: the mirror's namespace also serves the AWS emulators, which the host may still need.
unreachable() {
    local state=$1 name=$2 address=$3 port=$4
    ip netns exec "$(cat "${state}/hosts/${name}/netns")" nft -f - <<EOF
table inet rcb_unreachable {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr ${address} tcp dport ${port} reject with tcp reset
    }
}
EOF
}

# Replaces the host's packet filter atomically (the ruleset deletes its own table first).
firewall() {
    local state=$1 name=$2 rules=$3
    ip netns exec "$(cat "${state}/hosts/${name}/netns")" nft -f "$rules"
}

# An address on each bridge that no security group names: what a stranger on the subnet would see.
outsider() {
    ip netns add "$OUTSIDER_NS"
    ip -n "$OUTSIDER_NS" link set lo up
    leg "$OUTSIDER_NS" eth0 rcb-out0 "$BRIDGE" "${SUBNET}.${OUTSIDER_OCTET}"
    leg "$OUTSIDER_NS" eth1 rcb-out1 "$PRIVATE_BRIDGE" "${PRIVATE_SUBNET}.${OUTSIDER_OCTET}"
}

create() {
    local state=$1 name=$2 public_octet=$3 private_octet=$4 base=$5 user_data=$6 public_key=$7 instance_id=$8
    local dir="${state}/hosts/${name}" octet
    [ -d "${base##*:}/etc/cloud" ] || die "no base image at ${base##*:}"
    [ "$public_octet" != - ] || [ "$private_octet" != - ] || die "${name} needs an address on at least one bridge"
    mkdir -p "${dir}/upper" "${dir}/work" "${dir}/root"
    mount -t overlay overlay -o "lowerdir=${base},upperdir=${dir}/upper,workdir=${dir}/work" "${dir}/root"
    local root="${dir}/root"
    # Each machine has an identity of its own, as each EC2 instance has.
    tr -d '-' < /proc/sys/kernel/random/uuid > "${root}/etc/machine-id"
    mkdir -p "${root}/etc/systemd/network"
    local ns="${HOST_NS_PREFIX}${name}"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    echo "$ns" > "${dir}/netns"
    # host0 is the interface on the host's first bridge; a host on both has eth1 on the private one. The addresses
    # are set from outside, as EC2 gives an ENI its address; the .network files say the same for the host's own view.
    if [ "$public_octet" != - ]; then
        octet=$public_octet
        leg "$ns" host0 "vb-${name:0:12}" "$BRIDGE" "${SUBNET}.${public_octet}"
        printf '[Match]\nName=host0\n[Network]\nAddress=%s.%s/24\n' "$SUBNET" "$public_octet" \
            > "${root}/etc/systemd/network/10-host0.network"
        if [ "$private_octet" != - ]; then
            leg "$ns" eth1 "vx-${name:0:12}" "$PRIVATE_BRIDGE" "${PRIVATE_SUBNET}.${private_octet}"
            printf '[Match]\nName=eth1\n[Network]\nAddress=%s.%s/24\n' "$PRIVATE_SUBNET" "$private_octet" \
                > "${root}/etc/systemd/network/11-eth1.network"
        fi
    else
        octet=$private_octet
        leg "$ns" host0 "vb-${name:0:12}" "$PRIVATE_BRIDGE" "${PRIVATE_SUBNET}.${private_octet}"
        # The private subnet's way to the package index, and to nothing else, as through a NAT gateway.
        ip -n "$ns" route add "${SUBNET}.${MIRROR_OCTET}/32" via "${PRIVATE_SUBNET}.${MIRROR_OCTET}"
        printf '[Match]\nName=host0\n[Network]\nAddress=%s.%s/24\n[Route]\nDestination=%s.%s/32\nGateway=%s.%s\n' \
            "$PRIVATE_SUBNET" "$private_octet" "$SUBNET" "$MIRROR_OCTET" "$PRIVATE_SUBNET" "$MIRROR_OCTET" \
            > "${root}/etc/systemd/network/10-host0.network"
    fi
    # What EC2's metadata service hands cloud-init: the instance, its default hostname, the key pair's public key.
    local seed="${root}/var/lib/cloud/seed/nocloud"
    mkdir -p "$seed"
    cp "$user_data" "${seed}/user-data"
    {
        echo "instance-id: ${instance_id}"
        echo "local-hostname: ip-${SUBNET//./-}-${octet}"
        # Only the key pair the launch named, as EC2 serves it; "-": the launch named none.
        if [ "$public_key" != - ]; then
            echo "public-keys:"
            echo "  - $(cat "$public_key")"
        fi
    } > "${seed}/meta-data"
    echo "${MACHINE_PREFIX}${name}" > "${dir}/machine"
}

snapshot() {
    local state=$1 name=$2 image=$3
    local dir="${state}/hosts/${name}"
    [ ! -f "${dir}/loop.pid" ] || ! kill -0 "$(cat "${dir}/loop.pid")" 2>/dev/null || die "${name} is on; power it off first"
    [ ! -e "$image" ] || die "${image} exists already"
    mkdir -p "$image"
    # The upper dir is the volume's own content, whiteouts and opaque directories included (cp -a keeps their
    # xattrs), so the layer shadows the base exactly as the host saw it.
    cp -a "${dir}/upper/." "$image/"
    # What EC2 gives each instance rather than its disk: its seed (metadata), its ENI's addresses, its identity.
    rm -rf "${image}/var/lib/cloud/seed" "${image}/etc/systemd/network/10-host0.network" \
        "${image}/etc/systemd/network/11-eth1.network" "${image}/etc/machine-id"
}

start() {
    local state=$1 name=$2
    local dir="${state}/hosts/${name}" machine
    machine=$(cat "${dir}/machine")
    if [ -f "${dir}/loop.pid" ] && kill -0 "$(cat "${dir}/loop.pid")" 2>/dev/null; then
        die "${name} is already on"
    fi
    local hierarchies
    mapfile -t hierarchies < <(cgroup_hierarchies)
    remove_cgroups "$machine"
    # A host that asks to reboot makes systemd-nspawn exit with 133: starting it again is the reboot. Any other
    # exit is a power-off. The host joins its own network namespace, which keeps its interfaces across boots.
    # Each boot runs in a cgroup of its own, made before it and removed after it, as each instance has a kernel of
    # its own: systemd-nspawn puts the container's systemd in "payload" beside its own cgroup, so hosts started from
    # one cgroup shared one unit tree, and one host's systemd removed a unit's cgroup while another attached to it
    # (systemd-user-sessions failed with status=219/CGROUP, so /run/nologin stayed and every login was refused).
    # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
    setsid bash -c '
        boot=0
        while :; do
            boot=$((boot + 1))
            for hierarchy in "${@:4}"; do
                mkdir -p "${hierarchy}/$2/boot-${boot}"
                echo $$ > "${hierarchy}/$2/boot-${boot}/cgroup.procs"
                [ ! -d "${hierarchy}/$2/boot-$((boot - 1))" ] ||
                    find "${hierarchy}/$2/boot-$((boot - 1))" -depth -type d -exec rmdir {} + 2>/dev/null || true
            done
            echo "boot $(date +%s.%N)" >> "$1/boots"
            systemd-nspawn -q -D "$1/root" --boot --register=no --keep-unit -M "$2" \
                --network-namespace-path="/run/netns/$3" </dev/null >>"$1/console.log" 2>&1 &&
                rc=0 || rc=$?
            echo "exit ${rc} $(date +%s.%N)" >> "$1/boots"
            [ "$rc" -eq 133 ] || break
        done' machine-loop "$dir" "$machine" "$(cat "${dir}/netns")" "${hierarchies[@]}" </dev/null >/dev/null 2>&1 &
    echo $! > "${dir}/loop.pid"
}

# The cgroup hierarchies a container's systemd manages units in: the named v1 one and the unified one, wherever
# this machine mounts them.
cgroup_hierarchies() {
    local hierarchy
    if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        echo "/sys/fs/cgroup/${CGROUP_DIR}"
        return 0
    fi
    for hierarchy in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
        [ ! -d "$hierarchy" ] || echo "${hierarchy}/${CGROUP_DIR}"
    done
}

# Removes a powered-off host's cgroups (all hosts' with no name); a live one's stay, as rmdir refuses them.
remove_cgroups() {
    local name=${1:-} hierarchy
    for hierarchy in $(cgroup_hierarchies); do
        [ ! -d "${hierarchy}/${name}" ] || find "${hierarchy}/${name}" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

container_pid() {
    pgrep -P "$(cat "$1/loop.pid")" -x systemd-nspawn 2>/dev/null || true
}

# Powers a host off: SIGTERM to systemd-nspawn shuts the container down cleanly (its services get their stop
# timeout); SIGKILL pulls the plug. A clean shutdown that takes over 120 s is cut by SIGKILL and fails.
power_off() {
    local state=$1 name=$2 signal=$3
    local dir="${state}/hosts/${name}" loop pid="" sent=no
    [ -f "${dir}/loop.pid" ] || return 0
    loop=$(cat "${dir}/loop.pid")
    for _ in $(seq 1 1200); do
        kill -0 "$loop" 2>/dev/null || { rm -f "${dir}/loop.pid"; return 0; }
        if [ "$sent" = no ]; then
            pid=$(container_pid "$dir")
            if [ -n "$pid" ]; then
                kill "-${signal}" "$pid" 2>/dev/null || true
                sent=yes
            fi
        fi
        sleep 0.1
    done
    pid=$(container_pid "$dir")
    [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
    echo "machines.sh: ${name} did not power off within 120s; killed" >&2
    return 1
}

down() {
    local state=$1 dir pidfile
    [ -d "$state" ] || return 0
    for dir in "${state}"/hosts/*/; do
        [ -d "$dir" ] || continue
        power_off "$state" "$(basename "$dir")" TERM || power_off "$state" "$(basename "$dir")" KILL || true
        if [ -f "${dir}imds.pid" ]; then
            kill "$(cat "${dir}imds.pid")" 2>/dev/null || true
        fi
        umount "${dir}root" 2>/dev/null || true
        [ ! -f "${dir}netns" ] || ip netns del "$(cat "${dir}netns")" 2>/dev/null || true
    done
    for pidfile in "${state}/mirror.pid" "${state}/ec2.pid" "${state}/s3.pid"; do
        if [ -f "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    down_net
    remove_cgroups
}

down_net() {
    local pid link bridge ns
    for pid in $(ip netns pids "$MIRROR_NS" 2>/dev/null); do
        kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$MIRROR_NS" 2>/dev/null || true
    # Deleting a namespace deletes its ends of the veths, and with them the bridge ends.
    for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E "^(${HOST_NS_PREFIX}|${OUTSIDER_NS}$)" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    ip route del unreachable "${PRIVATE_SUBNET}.0/24" 2>/dev/null || true
    # systemd-nspawn removes its vb-* veth when the container ends; a killed one may leave it behind.
    for bridge in "$BRIDGE" "$PRIVATE_BRIDGE"; do
        for link in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
            ip link del "$link" 2>/dev/null || true
        done
        ip link del "$bridge" 2>/dev/null || true
    done
}

# A run killed before its cleanup leaves containers, overlay mounts, the mirror and the bridge behind.
down_stale() {
    local pid
    for pid in $(pgrep -f "^bash -c .*machine-loop" 2>/dev/null || true) $(pgrep -f "systemd-nspawn .* -M ${MACHINE_PREFIX}" 2>/dev/null || true) \
        $(pgrep -f "ec2-metadata-mock .*--hostname ${IMDS_ADDRESS}" 2>/dev/null || true); do
        kill -9 "$pid" 2>/dev/null || true
    done
    awk '$1 == "overlay" && $2 ~ /ray-cluster-e2e-/ { print $2 }' /proc/mounts | while read -r mount; do
        umount -l "$mount" 2>/dev/null || true
    done
    down_net
    remove_cgroups
    if ! grep -q ' /var/tmp/ray-cluster-e2e-' /proc/mounts; then
        rm -rf /var/tmp/ray-cluster-e2e-*
    fi
}

diagnose() {
    local state=$1 name=$2
    local dir="${state}/hosts/${name}" pid
    echo "== ${name}: boots (power-on, exit code and time of each)"
    cat "${dir}/boots" 2>/dev/null || echo "(never powered on)"
    pid=$(container_pid "$dir" 2>/dev/null || true)
    if [ -z "$pid" ]; then
        echo "== ${name} is off; the journal of its last boot"
        journalctl -D "${dir}/root/var/log/journal" -b 0 --no-pager -o short-monotonic 2>&1 | tail -n 400 || true
        return 0
    fi
    # The container's PID 1 is the only child of systemd-nspawn; its namespaces are the host's own view.
    pid=$(pgrep -P "$pid" | head -n 1)
    local inside=(nsenter -t "$pid" -m -u -i -p -n --)
    echo "== ${name}: systemctl list-jobs (what the boot still waits on)"
    timeout 20 "${inside[@]}" systemctl list-jobs --no-pager 2>&1 || true
    echo "== ${name}: systemd-analyze critical-chain"
    timeout 20 "${inside[@]}" systemd-analyze critical-chain --no-pager 2>&1 || true
    echo "== ${name}: ls -l /run/nologin"
    "${inside[@]}" ls -l --time-style=+%s /run/nologin 2>&1 || true
    echo "== ${name}: journalctl -b"
    timeout 20 "${inside[@]}" journalctl -b --no-pager -o short-monotonic 2>&1 | tail -n 400 || true
}

# wait_port, from inside a namespace.
wait_port_in() {
    local ns=$1 address=$2 port=$3
    for _ in $(seq 1 100); do
        # shellcheck disable=SC2016 # expanded by the inner bash, from its own arguments
        if ip netns exec "$ns" bash -c '(exec 3<>"/dev/tcp/$1/$2")' probe "$address" "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing listens on ${address}:${port} in ${ns} after 10s"
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

case ${1:-} in
    net) shift; net "$@" ;;
    ec2) shift; ec2 "$@" ;;
    s3) shift; s3 "$@" ;;
    imds) shift; imds "$@" ;;
    create) shift; create "$@" ;;
    snapshot) shift; snapshot "$@" ;;
    start) shift; start "$@" ;;
    firewall) shift; firewall "$@" ;;
    unreachable) shift; unreachable "$@" ;;
    stop) power_off "$2" "$3" TERM || exit 1 ;;
    kill) power_off "$2" "$3" KILL || exit 1 ;;
    diagnose) diagnose "$2" "$3" ;;
    down) down "$2" ;;
    down-stale) down_stale ;;
    *) die "usage: see the header of $0" ;;
esac
