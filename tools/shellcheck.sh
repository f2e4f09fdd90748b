#!/usr/bin/env bash
# Lints every shell script of the project. npm test requires shellcheck (its pretest installs it as root); the
# quick command (RAY_CLUSTER_TEST_MODE=quick) says it skipped the check when shellcheck is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null 2>&1; then
    if [ "${RAY_CLUSTER_TEST_MODE:-}" = quick ]; then
        echo "shellcheck: SKIPPED, not installed (apt-get install shellcheck, or brew install shellcheck); npm test requires it"
        exit 0
    fi
    echo "shellcheck: error: not installed; npm test's pretest installs it as root on Debian or Ubuntu (apt-get install shellcheck)" >&2
    exit 1
fi
shellcheck scripts/*.sh test/e2e/*.sh tools/*.sh .ci/run
echo "shellcheck: $(find scripts test/e2e tools -name '*.sh' | wc -l) scripts and .ci/run clean"
