"""The laptop's side of `npm run job`, run by tools/job.ts in a venv with the stack's exact Ray release.

Ray's own Jobs API client (ray.job_submission.JobSubmissionClient) does the work; this file only maps its answers to
exit codes and, for a cluster that is gone, reads a job's archived log from the results bucket with boto3.

  submit ADDRESS WORKING_DIR [--no-wait] -- ENTRYPOINT...   uploads WORKING_DIR, streams the logs, exits with the
                                                             job's status (0 succeeded, 1 failed, 3 stopped)
  logs ADDRESS ID                                            the driver log, from the running cluster
  archived-logs S3_URI ID REGION                             the driver log the head copied to the results bucket
  status ADDRESS ID / stop ADDRESS ID / list ADDRESS
The token comes in RAY_AUTH_TOKEN from tools/job.ts, never on the command line.
"""

import asyncio
import shlex
import sys

EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
NOT_FOUND = 4


def say(message):
    print(f"ray-cluster job: {message}", file=sys.stderr, flush=True)


def client(address):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def status_of(c, job_id):
    return getattr(c.get_job_status(job_id), "value", "")


async def tail(c, job_id):
    async for lines in c.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def submit(address, working_dir, no_wait, entrypoint):
    c = client(address)
    job_id = c.submit_job(entrypoint=shlex.join(entrypoint), runtime_env={"working_dir": working_dir})
    say(f"submitted {job_id}: {shlex.join(entrypoint)}")
    if no_wait:
        print(job_id)
        return 0
    asyncio.run(tail(c, job_id))
    status = status_of(c, job_id)
    say(f"{job_id} {status}")
    return EXIT.get(status, 1)


def archived_logs(uri, job_id, region):
    import boto3
    from botocore.exceptions import ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    key = f"{prefix}{job_id}/driver.log"
    try:
        body = boto3.client("s3", region_name=region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404"):
            say(f"no job {job_id} in s3://{bucket}/{key}: the cluster does not know it either")
            return NOT_FOUND
        raise
    sys.stdout.write(body.decode("utf-8", "replace"))
    say(f"(from s3://{bucket}/{key}: the cluster is not reachable, or no longer knows the job)")
    return 0


def main(argv):
    command, rest = argv[0], argv[1:]
    if command == "submit":
        address, working_dir, *more = rest
        no_wait = "--no-wait" in more[: more.index("--")]
        return submit(address, working_dir, no_wait, more[more.index("--") + 1:])
    if command == "archived-logs":
        return archived_logs(*rest)
    c = client(rest[0])
    if command == "logs":
        try:
            sys.stdout.write(c.get_job_logs(rest[1]))
        except RuntimeError as e:  # the Jobs API's answer for an id it does not know
            say(f"the cluster does not know job {rest[1]}: {str(e).splitlines()[0][:200]}")
            return NOT_FOUND
        return 0
    if command == "status":
        info = c.get_job_info(rest[1])
        status = getattr(info.status, "value", str(info.status))
        print(f"{rest[1]} {status}{': ' + info.message if info.message else ''}")
        return 0
    if command == "stop":
        stopped = c.stop_job(rest[1])
        print(f"{rest[1]} {'stop requested' if stopped else 'had already ended'}")
        return 0
    if command == "list":
        for job in sorted(c.list_jobs(), key=lambda j: j.start_time or 0):
            if job.submission_id:
                print(f"{job.submission_id}\t{getattr(job.status, 'value', job.status)}\t{job.entrypoint}")
        return 0
    say(f"unknown command {command}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
