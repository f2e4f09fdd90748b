#!/usr/bin/env bash
# Fills .cache/wheelhouse with ray[default] at the pinned version, uv, and autostop's AWS SDK, for the end-to-end
# test hosts, which have no route to PyPI and install from this wheelhouse through the packageIndexUrl override.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -e 'console.log(require("js-yaml").load(require("fs").readFileSync("Pulumi.yaml","utf8")).config.rayVersion.default)')
dest=.cache/wheelhouse
boto3=$(cat scripts/autostop-requirements.txt)
if compgen -G "${dest}/ray-${version}-*.whl" >/dev/null && compgen -G "${dest}/uv-*.whl" >/dev/null \
    && compgen -G "${dest}/${boto3/==/-}-*.whl" >/dev/null; then
    echo "wheelhouse: ray ${version}, uv and ${boto3} already in ${dest}"
    exit 0
fi
mkdir -p "$dest"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --dest "$dest" "ray[default]==${version}" uv \
    -r scripts/autostop-requirements.txt
echo "wheelhouse: $(find "$dest" -name '*.whl' | wc -l) wheels in ${dest}"
