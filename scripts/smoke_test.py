"""A Ray job that runs a task on every node and fails unless all expected nodes took part.

Submit it through the dashboard tunnel:
    RAY_AUTH_MODE=token ray job submit --address http://localhost:8265 --working-dir scripts \
        -- python smoke_test.py --expect-nodes 3
"""

import argparse
import socket
import sys

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=0)
def where_am_i() -> tuple[str, str]:
    return socket.gethostname(), ray.util.get_node_ip_address()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect-nodes", type=int, required=True, help="nodes that must run a task")
    parser.add_argument("--address", default="auto", help="Ray address; the job's cluster by default")
    args = parser.parse_args()

    ray.init(address=args.address, logging_level="ERROR")
    nodes = [node for node in ray.nodes() if node["Alive"]]
    # Pinning each task to a node (soft=False) proves every node runs work, not just that it registered.
    futures = [
        where_am_i.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in nodes
    ]
    results = sorted(set(ray.get(futures, timeout=300)))
    for hostname, ip in results:
        print(f"node {hostname} {ip}")
    hosts = {hostname for hostname, _ in results}
    print(f"smoke test: tasks ran on {len(hosts)} of {args.expect_nodes} expected nodes")
    if len(hosts) < args.expect_nodes:
        print("smoke test: FAILED, not every node took part", file=sys.stderr)
        return 1
    print("smoke test: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
