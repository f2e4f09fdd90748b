#!/usr/bin/env bash
# Builds, once, the Debian root filesystem the booted test hosts run: systemd as PID 1, sshd as a service and
# cloud-init with its NoCloud datasource, as on an EC2 Ubuntu image. It lacks python3-venv, as that image does,
# so the tests prove the bootstrap needs none. libnss-myhostname resolves the host's own name, as
# systemd-resolved does on Ubuntu, and rsync syncs files to a node as Ray's autoscaler does on an Ubuntu image.
# Cached under .cache/rootfs/<key>, keyed on this script's text.
#   tools/rootfs.sh            builds if missing, prints the path
set -euo pipefail
cd "$(dirname "$0")/.."

packages=systemd,systemd-sysv,dbus,openssh-server,sudo,python3,python3-cffi-backend,iproute2,cloud-init,procps,libnss-myhostname,rsync
key=$(sha256sum "$0" | cut -c1-12)
dest="${PWD}/.cache/rootfs/${key}"
if [ -f "${dest}/complete" ]; then
    echo "$dest/root"
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "rootfs: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

# The Debian mirror this machine's apt already uses; the booted hosts themselves never reach it.
mirror=$(awk '/^URIs:/ && /debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

rm -rf "${dest}.tmp"
mkdir -p "${dest}.tmp"
debootstrap --variant=minbase --include="$packages" bookworm "${dest}.tmp/root" "$mirror" >"${dest}.tmp/debootstrap.log" 2>&1 \
    || { tail -n 20 "${dest}.tmp/debootstrap.log" >&2; echo "rootfs: debootstrap failed" >&2; exit 1; }

root="${dest}.tmp/root"
# Every cloud image has these; minbase does not.
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > "${root}/etc/hosts"
cat > "${root}/etc/cloud/cloud.cfg.d/99-test-hosts.cfg" <<'CFG'
# Seeded per host under /var/lib/cloud/seed/nocloud, as EC2's metadata service would.
datasource_list: [NoCloud]
system_info:
  default_user: {name: ubuntu, sudo: "ALL=(ALL) NOPASSWD:ALL", shell: /bin/bash, lock_passwd: true}
# The host's address is static, set by systemd-networkd; minbase has no locales package.
network: {config: disabled}
locale: C.UTF-8
CFG
chroot "$root" systemctl enable systemd-networkd >/dev/null 2>&1
# Nothing waits for a network that never goes "online" on a bridge without a route.
chroot "$root" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1
# sshd's host keys are made on first boot, per host, as cloud-init does on EC2.
rm -f "${root}"/etc/ssh/ssh_host_*
rm -rf "${root}/var/cache/apt/archives/"*.deb
touch "${dest}.tmp/complete"
rm -rf "$dest"
mv "${dest}.tmp" "$dest"
# Images built from an older version of this script are never used again.
find "$(dirname "$dest")" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
echo "$dest/root"
