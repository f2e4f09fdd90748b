"""Autostop of a ray-cluster stack, run on the head from Ray's venv as `ray-cluster-autostop`.

  check     judge idleness once and, after the idle bound, stop every instance of this stack (ray-autostop.timer)
  status    the setting, the last verdict, and when the cluster stops if it stays idle
  hold      keep the cluster up until `release`, across reboots
  release   let autostop stop an idle cluster again

The cluster is idle when Ray has no pending or running job, task or actor from a user job, no pending resource
demand, and the head has no open SSH session (a dashboard tunnel is one). Each check writes its verdict and why to
the journal. Stopping goes through the EC2 API with the node role's tag-scoped grant: the workers first, then, once
they are stopped, the head itself.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

SETTINGS_FILE = "/etc/ray-cluster/autostop.env"
HOLD_FILE = "/var/lib/ray-cluster/autostop-hold"
# The tag on each worker that Ray's autoscaler launched (src/autoscaler.ts ELASTIC_TAG).
ELASTIC_TAG = "ray-cluster:elastic"
# /run is emptied at boot: a cluster that just came back starts its idle count afresh.
IDLE_SINCE_FILE = "/run/ray-cluster/autostop-idle-since"
LAST_VERDICT_FILE = "/run/ray-cluster/autostop-last"
SSH_PORT = 22
# A worker that takes longer than this to stop does not keep the head (and its cost) running.
WORKERS_STOP_BOUND_SECONDS = 300
# The job archive (job_archive.py), which copies every ended job's log to the results bucket before the stop.
ARCHIVE_COMMAND = "/usr/local/bin/ray-cluster-jobs"
ARCHIVE_BOUND_SECONDS = 120
# Tasks still waiting for or holding a worker; FINISHED and FAILED are history.
DONE_TASK_STATES = ("FINISHED", "FAILED")
BUSY_JOB_STATES = ("PENDING", "RUNNING")


def log(message):
    print(message, flush=True)


def read_settings(path=SETTINGS_FILE):
    settings = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                settings[key] = value
    return settings


def ssh_sessions():
    """Established TCP connections to this host's SSH port, from the kernel's own table."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f)
                for row in f:
                    fields = row.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == SSH_PORT and fields[3] == "01":  # 01: ESTABLISHED
                        count += 1
        except FileNotFoundError:
            continue
    return count


def ray_activity(settings):
    """What keeps Ray busy, as short phrases; empty when Ray is idle. Raises when Ray cannot be asked."""
    # Imported here: Ray takes seconds to import, and hold, release and status do not need it.
    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors, list_tasks

    gcs = settings["GCS_ADDRESS"]
    busy = []
    for job in JobSubmissionClient(settings["DASHBOARD_URL"]).list_jobs():
        state = getattr(job.status, "value", str(job.status))
        if state in BUSY_JOB_STATES:
            busy.append(f"job {job.submission_id or job.job_id} {state}")
    # A connected driver is a RUNNING driver task even while it does nothing: it counts only through its work.
    tasks = [t for t in list_tasks(address=gcs, filters=[("state", "!=", s) for s in DONE_TASK_STATES],
                                   limit=1000, raise_on_missing_output=False)
             if t.type != "DRIVER_TASK"]
    if tasks:
        busy.append(f"{len(tasks)} tasks not finished (e.g. {tasks[0].name} {tasks[0].state})")
    # Ray's own helpers live in namespaces that begin with an underscore (Ray Data's stats actor, for one).
    actors = [a for a in list_actors(address=gcs, filters=[("state", "!=", "DEAD")], limit=1000,
                                     raise_on_missing_output=False)
              if not (a.ray_namespace or "").startswith("_")]
    if actors:
        busy.append(f"{len(actors)} actors alive (e.g. {actors[0].class_name})")
    demand = get_cluster_status(gcs).resource_demands
    pending = sum(b.count for d in (demand.ray_task_actor_demand + demand.placement_group_demand
                                    + demand.cluster_constraint_demand) for b in d.bundles_by_count)
    if pending:
        busy.append(f"{pending} resource requests pending")
    return busy


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def write_json(path, value):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def clock(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def stop_stack(settings):
    """Stops this stack's running instances through EC2: first the job archive's last copy, then the autoscaler, so
    that it launches nothing more; then the workers, terminating those it launched (a stopped one would be forgotten
    and leak, see ray#6207) and stopping the stack's own; and once they are down, the head."""
    import boto3  # installed into Ray's venv by install-autostop.sh

    ec2 = boto3.client("ec2", region_name=settings["REGION"])
    head = settings["HEAD_INSTANCE_ID"]
    filters = [
        {"Name": "tag:ray-cluster:project", "Values": [settings["PROJECT"]]},
        {"Name": "tag:ray-cluster:stack", "Values": [settings["STACK"]]},
    ]

    def instances(states):
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=filters + [{"Name": "instance-state-name", "Values": states}])
        return sorted(((i["InstanceId"], any(t["Key"] == ELASTIC_TAG and t["Value"] == "true" for t in i.get("Tags", [])))
                       for page in pages for r in page["Reservations"] for i in r["Instances"]))

    # Every ended job's log and record go to the results bucket first (job_archive.py): once the head stops, Ray's
    # own copy is out of reach, and after a destroy it is gone. A failed copy is logged and does not keep the stack up.
    try:
        archived = subprocess.run([ARCHIVE_COMMAND, "archive"], capture_output=True, text=True, timeout=ARCHIVE_BOUND_SECONDS)
        for line in (archived.stdout + archived.stderr).strip().splitlines():
            log(f"job archive: {line}")
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"job archive: the last copy of job logs did not finish ({type(e).__name__}); stopping anyway")
    stopped = subprocess.run(["sudo", "-n", "systemctl", "stop", "ray-autoscaler.service"], capture_output=True, text=True)
    if stopped.returncode != 0:
        log(f"could not stop the autoscaler ({stopped.stderr.strip()}); it may launch workers until the head stops")
    running = [(i, elastic) for i, elastic in instances(["pending", "running"]) if i != head]
    launched = [i for i, elastic in running if elastic]
    workers = [i for i, elastic in running if not elastic]
    if launched:
        log(f"terminating {len(launched)} workers the autoscaler launched: {' '.join(launched)}")
        ec2.terminate_instances(InstanceIds=launched)
    if workers:
        log(f"stopping {len(workers)} workers: {' '.join(workers)}")
        ec2.stop_instances(InstanceIds=workers)
    if launched or workers:
        deadline = time.monotonic() + WORKERS_STOP_BOUND_SECONDS
        while True:
            left = [i for i, _ in instances(["pending", "running", "stopping", "shutting-down"]) if i in launched + workers]
            if not left:
                log("workers down")
                break
            if time.monotonic() > deadline:
                log(f"workers not down within {WORKERS_STOP_BOUND_SECONDS}s: {' '.join(left)}; stopping the head anyway")
                break
            time.sleep(5)
    log(f"stopping the head: {head}")
    ec2.stop_instances(InstanceIds=[head])


def check(settings):
    limit = int(settings["IDLE_MINUTES"]) * 60
    now = time.time()
    if os.path.exists(HOLD_FILE):
        with open(HOLD_FILE, encoding="utf-8") as f:
            held = f.read().strip()
        verdict = {"state": "held", "why": [held or "held"], "at": now}
        clear_idle()
    else:
        try:
            busy = ray_activity(settings)
        except Exception as e:  # Ray is starting, restarting or broken: never stop on a guess.
            busy = [f"cannot read Ray's state ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"]
        sessions = ssh_sessions()
        if sessions:
            busy.append(f"{sessions} SSH sessions open on the head")
        if busy:
            verdict = {"state": "busy", "why": busy, "at": now}
            clear_idle()
        else:
            since = read_json(IDLE_SINCE_FILE)
            if since is None:
                since = now
                write_json(IDLE_SINCE_FILE, since)
            verdict = {"state": "idle", "why": ["no job, task, actor, demand or SSH session"], "at": now,
                       "idleSince": since, "stopsAt": since + limit}
    write_json(LAST_VERDICT_FILE, verdict)
    if verdict["state"] != "idle":
        log(f"{verdict['state']}: {'; '.join(verdict['why'])}")
        return
    idle_for = now - verdict["idleSince"]
    if idle_for < limit:
        log(f"idle for {idle_for / 60:.1f} of {limit // 60} min: {verdict['why'][0]}; stops at {clock(verdict['stopsAt'])}")
        return
    log(f"idle for {idle_for / 60:.1f} min, the bound is {limit // 60} min: stopping this stack's instances")
    stop_stack(settings)


def clear_idle():
    try:
        os.remove(IDLE_SINCE_FILE)
    except FileNotFoundError:
        pass


def status(settings):
    print(f"autostop: stops every instance of stack {settings['PROJECT']}/{settings['STACK']} after "
          f"{settings['IDLE_MINUTES']} idle minutes")
    if os.path.exists(HOLD_FILE):
        with open(HOLD_FILE, encoding="utf-8") as f:
            print(f"held: {f.read().strip()}; `ray-cluster-autostop release` lets it stop again")
        return
    verdict = read_json(LAST_VERDICT_FILE)
    if verdict is None:
        print("no check yet since boot (ray-autostop.timer runs one every minute)")
        return
    print(f"last check {clock(verdict['at'])}: {verdict['state']}: {'; '.join(verdict['why'])}")
    if verdict["state"] == "idle":
        print(f"idle since {clock(verdict['idleSince'])}; stops at {clock(verdict['stopsAt'])} unless it gets busy")


def hold(reason):
    os.makedirs(os.path.dirname(HOLD_FILE), exist_ok=True)
    with open(HOLD_FILE, "w", encoding="utf-8") as f:
        f.write(f"held by {os.environ.get('USER', 'unknown')} at {clock(time.time())}"
                + (f": {reason}" if reason else "") + "\n")
    clear_idle()
    print("autostop held: the cluster stays up until `ray-cluster-autostop release`")


def release():
    try:
        os.remove(HOLD_FILE)
        print("autostop released: an idle cluster stops again after the idle bound")
    except FileNotFoundError:
        print("autostop was not held")


def main(argv):
    parser = argparse.ArgumentParser(prog="ray-cluster-autostop", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    sub.add_parser("status")
    hold_parser = sub.add_parser("hold")
    hold_parser.add_argument("reason", nargs="*")
    sub.add_parser("release")
    args = parser.parse_args(argv)
    if args.command == "hold":
        hold(" ".join(args.reason))
    elif args.command == "release":
        release()
    elif args.command == "status":
        status(read_settings())
    else:
        check(read_settings())


if __name__ == "__main__":
    main(sys.argv[1:])
