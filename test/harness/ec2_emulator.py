"""The EC2 API for the end-to-end test: moto's server, run inside the test's mirror namespace, recording every
call that changes an instance's state, so the test can tell which instances autostop stopped and in what order.

  serve --host H --port P --calls FILE      moto's server; each Start/Stop/TerminateInstances call appends a line
                                            {"at": unix time, "action": ..., "instanceIds": [...]} to FILE
  run-instance --endpoint URL --tag K=V...  launches one instance with those tags; prints its id
  start --endpoint URL ID                   starts a stopped instance, as the provider's instance state does
  states --endpoint URL                     prints {id: {"state": ..., "tags": {...}}} for every instance
"""

import argparse
import io
import json
import sys
import threading
import time
import urllib.parse

REGION = "us-east-1"
RECORDED = ("StartInstances", "StopInstances", "TerminateInstances")


def recording(app, calls_file):
    lock = threading.Lock()

    def middleware(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        action = (form.get("Action") or [""])[0]
        if action in RECORDED:
            numbered = {int(k.split(".", 1)[1]): v[0] for k, v in form.items() if k.startswith("InstanceId.")}
            ids = [numbered[n] for n in sorted(numbered)]
            with lock, open(calls_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"at": time.time(), "action": action, "instanceIds": ids}) + "\n")
        return app(environ, start_response)

    return middleware


def client(endpoint):
    import boto3

    return boto3.client("ec2", region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def main(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--host", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--calls", required=True)
    run = sub.add_parser("run-instance")
    run.add_argument("--endpoint", required=True)
    run.add_argument("--tag", action="append", default=[])
    start = sub.add_parser("start")
    start.add_argument("--endpoint", required=True)
    start.add_argument("instance_id")
    states = sub.add_parser("states")
    states.add_argument("--endpoint", required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import run_simple

        open(args.calls, "a", encoding="utf-8").close()
        app = DomainDispatcherApplication(create_backend_app)
        run_simple(args.host, args.port, recording(app, args.calls), threaded=True)
    elif args.command == "run-instance":
        ec2 = client(args.endpoint)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        tags = [{"Key": k, "Value": v} for k, v in (t.split("=", 1) for t in args.tag)]
        reservation = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                                        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
        print(reservation["Instances"][0]["InstanceId"])
    elif args.command == "start":
        client(args.endpoint).start_instances(InstanceIds=[args.instance_id])
    else:
        pages = client(args.endpoint).get_paginator("describe_instances").paginate()
        print(json.dumps({i["InstanceId"]: {"state": i["State"]["Name"],
                                            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
                          for page in pages for r in page["Reservations"] for i in r["Instances"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
