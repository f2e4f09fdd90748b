#!/usr/bin/env bash
# Builds the instance metadata service of the end-to-end test hosts, AWS's amazon-ec2-metadata-mock (IMDSv2, role
# credentials, spot notices), from the Go module proxy this machine's Go is set up with, into
# .cache/metadata-mock/bin (RAY_CLUSTER_METADATA_MOCK overrides the folder); a no-op when that build is there.
#
# It is built with tools/metadata-mock/serialize-requests.patch applied: the mock keeps its IMDSv2 tokens in a map
# that concurrent requests write without a lock, so two SDK clients asking for a token at once (two Ray workers
# opening S3 on one node) ended the process with "fatal error: concurrent map writes", and that node's credentials
# were gone for the rest of the test. v1.13.0 is the newest release, and it has the race.
set -euo pipefail
cd "$(dirname "$0")/.."
module=github.com/aws/amazon-ec2-metadata-mock
version=v1.13.0
patchfile=tools/metadata-mock/serialize-requests.patch
dest=${RAY_CLUSTER_METADATA_MOCK:-.cache/metadata-mock}
build="${module}@${version}+$(sha256sum "$patchfile" | cut -c1-16)"
if [ -x "${dest}/bin/ec2-metadata-mock" ] && [ "$(cat "${dest}/.installed" 2>/dev/null)" = "$build" ]; then
    echo "metadata-mock: ${build} already in ${dest}"
    exit 0
fi
# Go's own install puts it in /usr/local/go; a non-login shell may not have it on PATH.
command -v go >/dev/null 2>&1 || PATH="${PATH}:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "metadata-mock: error: no Go toolchain (apt-get install golang-go)" >&2; exit 1; }
command -v patch >/dev/null 2>&1 || { echo "metadata-mock: error: no patch (apt-get install patch)" >&2; exit 1; }
source_dir=$(go mod download -json "${module}@${version}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$source_dir" ] || { echo "metadata-mock: error: go mod download gave no source folder for ${module}@${version}" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The module cache is read-only: patch a copy.
cp -r "${source_dir}/." "$work/"
chmod -R u+w "$work"
patch --quiet -d "$work" -p1 < "$patchfile"
mkdir -p "${dest}/bin"
bin=$(cd "${dest}/bin" && pwd)
(cd "$work" && go build -trimpath -o "${bin}/ec2-metadata-mock" ./cmd/ec2-metadata-mock)
printf '%s' "$build" > "${dest}/.installed"
echo "metadata-mock: built ${build} into ${dest}/bin"
