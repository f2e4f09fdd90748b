#!/usr/bin/env bash
# Waits until every expected node is alive in the Ray cluster, then prints the cluster's state as JSON.
# On timeout it fails and names the nodes that never joined. Usage:
#   verify-cluster.sh --address HEAD_IP:PORT --expect NAME=IP [--expect NAME=IP ...] [--timeout SECONDS] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=verify-cluster

address="" timeout_s=600 venv=$RAY_VENV_DEFAULT
expected=()
while [ $# -gt 0 ]; do
    case $1 in
        --address) address=$2; shift 2 ;;
        --expect) expected+=("$2"); shift 2 ;;
        --timeout) timeout_s=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) die "unknown argument: $1" ;;
    esac
done
if ! { [ -n "$address" ] && [ ${#expected[@]} -gt 0 ]; }; then
    die "--address and at least one --expect are required"
fi
if ! { [ -x "${venv}/bin/python" ]; }; then
    die "ray is not installed in ${venv}"
fi

ray_env "$venv"
"${venv}/bin/python" - "$address" "$timeout_s" "${expected[@]}" <<'PY'
import json
import sys
import time

import ray

address, timeout_s, expected = sys.argv[1], float(sys.argv[2]), dict(e.split("=", 1) for e in sys.argv[3:])
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + timeout_s
while True:
    alive = {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}
    missing = sorted(name for name, ip in expected.items() if ip not in alive)
    if not missing or time.monotonic() >= deadline:
        break
    time.sleep(1)
ray.shutdown()
if missing:
    sys.exit(f"verify-cluster: error: {len(missing)} of {len(expected)} nodes did not join within "
             f"{timeout_s:.0f}s: {', '.join(f'{n} ({expected[n]})' for n in missing)}")
print(json.dumps({
    "address": address,
    "expectedNodes": len(expected),
    "aliveNodes": len(expected),
    "nodes": [{"name": name, "ip": ip, "alive": True} for name, ip in expected.items()],
}, sort_keys=True))
PY
