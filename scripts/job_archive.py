"""Job logs that outlive the cluster, run on the head from Ray's venv as `ray-cluster-jobs`.

  watch     every few seconds, copy each job that has ended to the results bucket (ray-job-archive.service)
  archive   one pass now: autostop runs it before it stops the stack; exits 1 if a copy failed

The dashboard and GCS addresses come in DASHBOARD_URL and GCS_ADDRESS, which the `ray-cluster-jobs` command reads
from /etc/ray-cluster/job-archive.env. When a job submitted through Ray's Jobs API ends (SUCCEEDED, FAILED or STOPPED), its driver log and a small JSON
record go to s3://<results bucket>/ray-jobs/<submission id>/driver.log and .../job.json. The record holds the id,
the entrypoint, the status and its message, the start and end times and the nodes that took part. A copy that
fails is logged and tried again on a later pass, each time a little later; it runs in a process of its own, so it
never fails or slows a job. Credentials come from the instance role (IMDSv2); the bucket and region from
/etc/ray-cluster/stack.json.
"""

import argparse
import datetime
import fcntl
import json
import os
import sys
import time

STACK_FILE = "/etc/ray-cluster/stack.json"
# Outlives reboots, so a job is copied once; the service's StateDirectory.
STATE_DIR = "/var/lib/ray-cluster"
ARCHIVED_FILE = os.path.join(STATE_DIR, "archived-jobs.json")
LOCK_FILE = os.path.join(STATE_DIR, "job-archive.lock")
WATCH_INTERVAL_SECONDS = 5
# A copy that failed is tried again after this, doubling per failure up to the cap.
RETRY_FIRST_SECONDS = 10
RETRY_CAP_SECONDS = 600
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")


def log(message):
    print(message, flush=True)


def read_stack(path=STACK_FILE):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iso(milliseconds):
    if not milliseconds:
        return None
    return datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def job_prefix(stack, submission_id):
    return f"{stack['jobLogs']['prefix']}{submission_id}/"


def nodes_of(job, gcs_address):
    """The nodes that took part in the job: where its driver and its tasks and actors ran, with their address and
    group. Ray keeps the task table for a while after a job ends; what it no longer has is not listed."""
    from ray.util.state import list_actors, list_nodes, list_tasks

    ids = {job.driver_node_id} if getattr(job, "driver_node_id", None) else set()
    if job.job_id:
        filters = [("job_id", "=", job.job_id)]
        ids |= {t.node_id for t in list_tasks(address=gcs_address, filters=filters, limit=10000,
                                               raise_on_missing_output=False) if t.node_id}
        ids |= {a.node_id for a in list_actors(address=gcs_address, filters=filters, limit=10000,
                                                raise_on_missing_output=False) if a.node_id}
    known = {n.node_id: n for n in list_nodes(address=gcs_address, limit=10000, detail=True,
                                               raise_on_missing_output=False)}
    nodes = []
    for node_id in sorted(ids):
        node = known.get(node_id)
        nodes.append({"nodeId": node_id, "ip": getattr(node, "node_ip", None),
                      "group": (getattr(node, "labels", None) or {}).get("ray-cluster/group")})
    return nodes


def record_of(job, stack, gcs_address, nodes=nodes_of):
    status = getattr(job.status, "value", str(job.status))
    prefix = job_prefix(stack, job.submission_id)
    bucket = stack["jobLogs"]["bucket"]
    return {
        "submissionId": job.submission_id,
        "jobId": job.job_id,
        "entrypoint": job.entrypoint,
        "status": status,
        "message": job.message,
        "driverExitCode": getattr(job, "driver_exit_code", None),
        "startTime": iso(job.start_time),
        "endTime": iso(job.end_time),
        "nodes": nodes(job, gcs_address),
        "driverLog": f"s3://{bucket}/{prefix}driver.log",
        "archivedAt": datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
    }


def load_archived():
    try:
        with open(ARCHIVED_FILE, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {"done": [], "failures": {}}


def save_archived(archived):
    tmp = f"{ARCHIVED_FILE}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(archived, f)
    os.replace(tmp, ARCHIVED_FILE)


def archive_pass(settings, stack, s3=None, client=None, now=None, now_or_never=False, nodes=nodes_of):
    """Copies every ended job not yet copied; returns how many copies failed. A job whose copy failed waits for its
    retry time, unless NOW_OR_NEVER (the last pass before the head stops). Holds a lock, so that autostop's pass and
    the watcher's never copy the same job at once."""
    now = time.time() if now is None else now
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(LOCK_FILE, "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        archived = load_archived()
        done = set(archived["done"])
        if client is None:
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(settings["DASHBOARD_URL"])
        if s3 is None:
            import boto3  # installed into Ray's venv by install-job-archive.sh

            s3 = boto3.client("s3", region_name=stack["region"])
        bucket = stack["jobLogs"]["bucket"]
        failed = 0
        for job in client.list_jobs():
            status = getattr(job.status, "value", str(job.status))
            # Drivers started with ray.init() and no submission have no log the Jobs API keeps.
            if not job.submission_id or status not in ENDED or job.submission_id in done:
                continue
            failure = archived["failures"].get(job.submission_id)
            if failure and now < failure["retryAt"] and not now_or_never:
                continue
            prefix = job_prefix(stack, job.submission_id)
            try:
                logs = client.get_job_logs(job.submission_id)
                record = record_of(job, stack, settings["GCS_ADDRESS"], nodes)
                s3.put_object(Bucket=bucket, Key=f"{prefix}driver.log", Body=logs.encode("utf-8"),
                              ContentType="text/plain; charset=utf-8")
                # The record goes last: its presence means the log is there too.
                s3.put_object(Bucket=bucket, Key=f"{prefix}job.json", Body=json.dumps(record, indent=2).encode("utf-8"),
                              ContentType="application/json")
            except Exception as e:  # any failure is retried later; the job itself is long done
                failed += 1
                tries = (failure or {}).get("tries", 0) + 1
                wait = min(RETRY_FIRST_SECONDS * 2 ** (tries - 1), RETRY_CAP_SECONDS)
                archived["failures"][job.submission_id] = {"tries": tries, "retryAt": now + wait}
                reason = str(e).splitlines()[0][:300] if str(e) else ""
                log(f"could not copy job {job.submission_id} ({status}) to s3://{bucket}/{prefix} "
                    f"(try {tries}): {type(e).__name__}: {reason}; trying again in {wait}s")
            else:
                done.add(job.submission_id)
                archived["failures"].pop(job.submission_id, None)
                log(f"copied job {job.submission_id} ({status}) to s3://{bucket}/{prefix}: driver.log, job.json")
            archived["done"] = sorted(done)
            save_archived(archived)
        return failed


def watch(settings):
    log(f"copying each job that ends to the results bucket, looking every {WATCH_INTERVAL_SECONDS}s")
    while True:
        try:
            archive_pass(settings, read_stack())
        except Exception as e:  # Ray is starting or restarting: look again later
            log(f"cannot list Ray's jobs yet ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        time.sleep(WATCH_INTERVAL_SECONDS)


def main(argv):
    parser = argparse.ArgumentParser(prog="ray-cluster-jobs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("watch")
    sub.add_parser("archive")
    args = parser.parse_args(argv)
    settings = {key: os.environ[key] for key in ("DASHBOARD_URL", "GCS_ADDRESS")}
    if args.command == "watch":
        watch(settings)
    failed = archive_pass(settings, read_stack(), now_or_never=True)
    log(f"archive: {'every ended job is in the results bucket' if failed == 0 else f'{failed} copies failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
