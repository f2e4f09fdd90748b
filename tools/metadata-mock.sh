#!/usr/bin/env bash
# Builds the instance metadata service of the end-to-end test hosts, AWS's amazon-ec2-metadata-mock (IMDSv2, role
# credentials, spot notices), from the Go module proxy this machine's Go is set up with, into
# .cache/metadata-mock/bin (RAY_CLUSTER_METADATA_MOCK overrides the folder); a no-op when that version is built.
set -euo pipefail
cd "$(dirname "$0")/.."
module=github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock
version=v1.13.0
dest=${RAY_CLUSTER_METADATA_MOCK:-.cache/metadata-mock}
if [ -x "${dest}/bin/ec2-metadata-mock" ] && [ "$(cat "${dest}/.installed" 2>/dev/null)" = "${module}@${version}" ]; then
    echo "metadata-mock: ${module}@${version} already in ${dest}"
    exit 0
fi
# Go's own install puts it in /usr/local/go; a non-login shell may not have it on PATH.
command -v go >/dev/null 2>&1 || PATH="${PATH}:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "metadata-mock: error: no Go toolchain (apt-get install golang-go)" >&2; exit 1; }
mkdir -p "${dest}/bin"
GOBIN="$(cd "$dest" && pwd)/bin" go install "${module}@${version}"
printf '%s' "${module}@${version}" > "${dest}/.installed"
echo "metadata-mock: built ${module}@${version} into ${dest}/bin"
