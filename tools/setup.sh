#!/usr/bin/env bash
# npm test's pretest: makes a fresh Debian or Ubuntu machine ready for the whole suite. As root it installs the
# missing tools with apt (the ssh client, shellcheck, iproute2, systemd-nspawn, debootstrap, nftables and patch), then fills the
# wheelhouse, installs the AWS emulators (moto; amazon-ec2-metadata-mock, built with Go) and builds the booted hosts' base image once. Without root it installs nothing and says what is
# missing; the end-to-end test then refuses with one line, and `npm run test:quick` needs none of it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v patch >/dev/null 2>&1 || missing+=(patch)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${missing[*]} with apt"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        missing=()
    else
        echo "setup: missing ${missing[*]}; only root on Debian or Ubuntu installs them here." \
            "The end-to-end test will refuse; npm run test:quick runs without them."
    fi
fi

bash tools/wheelhouse.sh
bash tools/ec2-emulator.sh
bash tools/metadata-mock.sh
if [ "$(id -u)" -eq 0 ] && command -v debootstrap >/dev/null 2>&1; then
    echo "setup: booted-host base image at $(bash tools/rootfs.sh)"
fi
