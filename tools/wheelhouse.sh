#!/usr/bin/env bash
# Fills .cache/wheelhouse with ray[default,data] at the pinned version, uv, and the head's AWS SDK, for the
# end-to-end test hosts, which have no route to PyPI and install from this wheelhouse through the packageIndexUrl
# override; the test's laptop installs its Ray client from it too.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(node -e 'console.log(require("js-yaml").load(require("fs").readFileSync("Pulumi.yaml","utf8")).config.rayVersion.default)')
dest=.cache/wheelhouse
read -ra boto3 < scripts/boto3-requirements.txt
requirements=("ray[default,data]==${version}" uv "${boto3[@]}")
# What the wheelhouse was filled for: a changed list fills it again.
stamp="${dest}/.requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${requirements[*]}" ]; then
    echo "wheelhouse: ${requirements[*]} already in ${dest}"
    exit 0
fi
mkdir -p "$dest"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --dest "$dest" "${requirements[@]}"
printf '%s' "${requirements[*]}" > "$stamp"
echo "wheelhouse: $(find "$dest" -name '*.whl' | wc -l) wheels in ${dest}"
