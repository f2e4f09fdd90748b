#!/usr/bin/env bash
# Installs the EC2 emulator of the end-to-end test, moto's server from PyPI, into its own venv at
# .cache/ec2-emulator (RAY_CLUSTER_EC2_EMULATOR overrides it); a no-op when that install matches the pinned
# requirements.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RAY_CLUSTER_EC2_EMULATOR:-.cache/ec2-emulator}
requirements=test/e2e/ec2-emulator-requirements.txt
if [ -f "${venv}/.installed" ] && cmp -s "${venv}/.installed" "$requirements"; then
    echo "ec2-emulator: $(tr '\n' ' ' < "$requirements")already in ${venv}"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "${venv}/.installed"
echo "ec2-emulator: installed $(tr '\n' ' ' < "$requirements")in ${venv}"
