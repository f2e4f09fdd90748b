#!/usr/bin/env bash
# Waits until every expected node is alive in the Ray cluster and listed by `ray status`, then prints the cluster's
# state as JSON, with how many nodes of each elastic group run now. On timeout it fails and names the nodes missing
# from either view. Usage:
#   verify-cluster.sh --address HEAD_IP:PORT --expect NAME=IP [--expect NAME=IP ...] [--count-group NAME ...]
#       [--timeout SECONDS] [--venv DIR]
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_NAME=verify-cluster

address="" timeout_s=600 venv=$RAY_VENV_DEFAULT
expected=()
counted=()
while [ $# -gt 0 ]; do
    case $1 in
        --address) address=$2; shift 2 ;;
        --expect) expected+=("$2"); shift 2 ;;
        --count-group) counted+=("$2"); shift 2 ;;
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
# Two views must agree before the cluster counts as up: the GCS node table, and `ray status` (the same view the
# dashboard shows), which the head's monitor refreshes seconds later. A user's first `ray status` must show
# every node, so the check runs that very command rather than trusting the table alone.
"${venv}/bin/python" - "$address" "$timeout_s" "${venv}/bin/ray" "${counted[*]}" "${expected[@]}" <<'PY'
import json
import re
import subprocess
import sys
import time

import ray

address, timeout_s, ray_cli, counted = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4].split()
expected = dict(e.split("=", 1) for e in sys.argv[5:])


def status_listed():
    """What `ray status -v` lists as active or idle: node ids before its Pending section (the view without elastic
    groups, where each node is its own type), and the address of every node in its per-node usage (with them, where
    the autoscaler lists node types)."""
    try:
        out = subprocess.run([ray_cli, "status", "-v", "--address", address], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return set()
    return (set(re.findall(r"\bnode_([0-9a-f]+)", out.split("Pending:")[0]))
            | set(re.findall(r"^Node: (\S+)", out, re.M)))


ray.init(address=address, logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + timeout_s
while True:
    alive = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
    not_joined = sorted(name for name, ip in expected.items() if ip not in alive)
    not_in_status = []
    if not not_joined:
        listed = status_listed()
        not_in_status = sorted(name for name, ip in expected.items() if alive[ip] not in listed and ip not in listed)
    if not (not_joined or not_in_status) or time.monotonic() >= deadline:
        break
    time.sleep(1)
# Nodes Ray's autoscaler launched carry their group's label, like every other node.
labels = [n.get("Labels", {}).get("ray-cluster/group") for n in ray.nodes() if n["Alive"]]
ray.shutdown()


def names(missing):
    return ", ".join(f"{n} ({expected[n]})" for n in missing)


if not_joined:
    sys.exit(f"verify-cluster: error: {len(not_joined)} of {len(expected)} nodes did not join within "
             f"{timeout_s:.0f}s: {names(not_joined)}")
if not_in_status:
    sys.exit(f"verify-cluster: error: {len(not_in_status)} of {len(expected)} nodes joined but did not show in "
             f"`ray status` within {timeout_s:.0f}s: {names(not_in_status)}")
print(json.dumps({
    "address": address,
    "expectedNodes": len(expected),
    "aliveNodes": len(expected),
    "nodes": [{"name": name, "ip": ip, "alive": True} for name, ip in expected.items()],
    "elasticNodes": {group: labels.count(group) for group in counted},
}, sort_keys=True))
PY
