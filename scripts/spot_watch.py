"""Tells Ray before EC2 takes a spot node away (ray-spot-watch.service, on the nodes of spot groups).

Every few seconds it asks the instance metadata service, with an IMDSv2 session token, for a spot interruption
notice (latest/meta-data/spot/instance-action: 404 until EC2 sends one, about two minutes ahead) and for a rebalance
recommendation (latest/meta-data/events/recommendations/rebalance). On either, it drains this node with Ray's own
`ray drain-node`, reason DRAIN_NODE_REASON_PREEMPTION and a message that names the notice: Ray then places no new
work here, and reschedules what it can. A notice's drain has a deadline a margin before the notice's time, as Ray's
docs advise, so that Ray Train can checkpoint and its workers end before EC2 takes the machine; a recommendation has
none. Each notice is acted on once, and each action is one line in the journal.

Ray shuts a drained raylet down once the node is idle, and ray-worker.service would then start a fresh node that
nothing drains on an instance EC2 is about to take. So before each drain the watch writes DRAIN_MARK, which
ray-node-run.sh honours: the node stays out of the cluster until the mark's time. For a notice that is well after
the notice's time, when the instance is gone (or stopped, which empties /run); for a recommendation, which may
never become a notice, REBALANCE_STAY_OUT_SECONDS.

Settings come from the unit's EnvironmentFile (the worker's): RAY_VENV, RAY_NODE_IP and RAY_ADDRESS (the head's
GCS). The token is Ray's own file, ~/.ray/auth_token.
"""

import datetime
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

IMDS = "http://169.254.169.254"
TOKEN_SECONDS = 6 * 3600
INTERVAL_SECONDS = 5
NOTICE = "latest/meta-data/spot/instance-action"
REBALANCE = "latest/meta-data/events/recommendations/rebalance"
# The drain's deadline comes this long before a notice's time (at most half the notice's time left).
DEADLINE_MARGIN_SECONDS = 20
# /run is emptied at every boot: a stopped and started spot instance comes back.
DRAIN_MARK = os.environ.get("RAY_DRAIN_MARK", "/run/ray-cluster-spot/drained")
NOTICE_STAY_OUT_SECONDS = 600
REBALANCE_STAY_OUT_SECONDS = 900


def log(message):
    print(f"spot-watch: {message}", flush=True)


class Metadata:
    """IMDSv2: one session token, renewed before it expires or when the service refuses it."""

    def __init__(self, base=IMDS):
        self.base = base
        self.token = None
        self.expires = 0.0

    def _token(self):
        if self.token is None or time.time() > self.expires - 60:
            request = urllib.request.Request(f"{self.base}/latest/api/token", method="PUT",
                                             headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_SECONDS)})
            with urllib.request.urlopen(request, timeout=2) as response:
                self.token = response.read().decode()
            self.expires = time.time() + TOKEN_SECONDS
        return self.token

    def get(self, path):
        """The document at PATH as JSON, or None while there is none (404)."""
        for attempt in (1, 2):
            request = urllib.request.Request(f"{self.base}/{path}", headers={"X-aws-ec2-metadata-token": self._token()})
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return None
                if e.code == 401 and attempt == 1:
                    self.token = None
                    continue
                raise
        return None


def seconds_until(stamp):
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return max(0, int((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))


def node_id(address, node_ip):
    """This node's id in the GCS: the alive node at this address."""
    import ray
    from ray._raylet import GcsClient

    infos = GcsClient(address=address).get_all_node_info(timeout=10).values()
    for info in infos:
        if info.node_manager_address == node_ip and info.state == 0:  # GcsNodeState.ALIVE
            return ray.NodeID(info.node_id).hex()
    raise RuntimeError(f"no alive Ray node at {node_ip} in the GCS at {address}")


def mark_drained(until, message, mark=DRAIN_MARK):
    """Keeps the node out of the cluster until UNTIL (epoch seconds): ray-node-run.sh reads this file."""
    tmp = f"{mark}.tmp"
    with open(tmp, "w") as f:
        f.write(f"until={int(until)}\nreason={message}\n")
    os.replace(tmp, mark)


def drain(ray, address, node_ip, message, deadline, before):
    """Drains this node in Ray; BEFORE runs once the node is found, right before the drain."""
    node = node_id(address, node_ip)
    before()
    command = [ray, "drain-node", "--address", address, "--node-id", node, "--reason", "DRAIN_NODE_REASON_PREEMPTION",
               "--reason-message", message]
    if deadline is not None:
        command += ["--deadline-remaining-seconds", str(deadline)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"ray drain-node failed: {(result.stderr or result.stdout).strip()}")
    return node


def check(metadata, drain_node, handled, mark=mark_drained):
    """One look at the metadata: drains through DRAIN_NODE(message, deadline, before) for each notice not handled yet."""
    for path in (NOTICE, REBALANCE):
        notice = metadata.get(path)
        # A recommendation stands until the instance goes, whatever time it is served with; a notice is its content.
        key = json.dumps([path, notice], sort_keys=True) if path == NOTICE else path
        if notice is None or key in handled:
            continue
        if path == NOTICE:
            left = seconds_until(notice["time"])
            deadline = max(1, left - min(DEADLINE_MARGIN_SECONDS, left // 2))
            message = f"EC2 spot interruption notice: {notice.get('action', 'terminate')} at {notice['time']}"
            stay_out = left + NOTICE_STAY_OUT_SECONDS
        else:
            deadline = None
            message = f"EC2 rebalance recommendation at {notice.get('noticeTime', '?')}"
            stay_out = REBALANCE_STAY_OUT_SECONDS
        marked = []

        def before():
            # Before the drain: Ray may shut the raylet down as soon as it accepts it.
            mark(time.time() + stay_out, message)
            marked.append(True)

        try:
            node = drain_node(message, deadline, before)
        except Exception:
            if marked:
                mark(0, f"{message}: the drain failed")  # a node that was not drained may come back
            raise
        handled.add(key)
        log(f"{message}: drained Ray node {node} (DRAIN_NODE_REASON_PREEMPTION, " +
            (f"deadline in {deadline}s" if deadline is not None else "no deadline") +
            f"); it stays out of the cluster for {stay_out}s unless the instance goes first)")


def main():
    venv = os.environ["RAY_VENV"]
    address = os.environ["RAY_ADDRESS"]
    node_ip = os.environ["RAY_NODE_IP"]
    ray = os.path.join(venv, "bin", "ray")
    # The SDKs' own setting for the metadata endpoint; EC2's link-local address otherwise.
    metadata = Metadata(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS).rstrip("/"))
    handled = set()
    log(f"watching the instance metadata for spot interruptions and rebalance recommendations every {INTERVAL_SECONDS}s")
    while True:
        try:
            check(metadata, lambda message, deadline, before: drain(ray, address, node_ip, message, deadline, before), handled)
        except Exception as e:  # noqa: BLE001 - the next round tries again; the journal says why this one failed
            log(f"this check failed, trying again in {INTERVAL_SECONDS}s: {e}")
        time.sleep(INTERVAL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
