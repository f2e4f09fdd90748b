"""The EC2 API for the end-to-end test: moto's server, run inside the test's mirror namespace, recording every
call that changes an instance's state, so the test can tell which instances autostop stopped and in what order,
and make a booted host follow each instance that Ray's autoscaler launches or terminates.

  serve --host H --port P --calls FILE [--refuse FILE]
                          moto's server; each Start/Stop/TerminateInstances call appends a line
                          {"at": unix time, "action": ..., "instanceIds": [...]} to FILE, and each RunInstances call
                          {"at", "action", "instanceType", "instances": [{"id", "privateIp"}], "userData"}; while FILE
                          --refuse holds a JSON list of instance types, launches of those fail as EC2 fails them for
                          want of capacity ({"refused": "InsufficientInstanceCapacity"} in the record)
  setup --endpoint URL --cidr CIDR... --security-group NAME... --instance-profile NAME...
                          a VPC with a subnet per CIDR, the groups and the profiles; prints their ids as JSON
  run-instance --endpoint URL --tag K=V... [--subnet ID --ip ADDRESS]
                          launches one instance with those tags (at that address); prints its id
  start --endpoint URL ID                   starts a stopped instance, as the provider's instance state does
  states --endpoint URL                     prints {id: {"state": ..., "tags": {...}}} for every instance
"""

import argparse
import base64
import io
import os
import re
import json
import sys
import threading
import time
import urllib.parse

REGION = "us-east-1"
RECORDED = ("StartInstances", "StopInstances", "TerminateInstances")
CAPACITY_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient {type} \
capacity in the Availability Zone you requested (emulated).</Message></Error></Errors><RequestID>emulated</RequestID></Response>"""


def recording(app, calls_file, refuse_file):
    lock = threading.Lock()

    def record(entry):
        with lock, open(calls_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": time.time(), **entry}) + "\n")

    def refused_types():
        if refuse_file and os.path.exists(refuse_file):
            with open(refuse_file, encoding="utf-8") as f:
                return json.load(f)
        return []

    def middleware(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        action = (form.get("Action") or [""])[0]
        if action in RECORDED:
            numbered = {int(k.split(".", 1)[1]): v[0] for k, v in form.items() if k.startswith("InstanceId.")}
            record({"action": action, "instanceIds": [numbered[n] for n in sorted(numbered)]})
        if action != "RunInstances":
            return app(environ, start_response)
        instance_type = (form.get("InstanceType") or [""])[0]
        if instance_type in refused_types():
            record({"action": action, "instanceType": instance_type, "refused": "InsufficientInstanceCapacity", "instances": []})
            start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
            return [CAPACITY_ERROR.format(type=instance_type).encode()]
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"] = code
            return start_response(code, headers, exc_info)

        response = b"".join(app(environ, capture))
        if status.get("code", "").startswith("200"):
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.ec2.models import ec2_backends

            ids = dict.fromkeys(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", response.decode("utf-8", "replace")))
            backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
            user_data = (form.get("UserData") or [""])[0]
            record({"action": action, "instanceType": instance_type,
                    "instances": [{"id": i, "privateIp": backend.get_instance(i).private_ip} for i in ids],
                    "userData": base64.b64decode(user_data).decode("utf-8", "replace") if user_data else ""})
        return [response]

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
    serve.add_argument("--refuse", default="")
    setup = sub.add_parser("setup")
    setup.add_argument("--endpoint", required=True)
    setup.add_argument("--cidr", action="append", default=[])
    setup.add_argument("--security-group", action="append", default=[])
    setup.add_argument("--instance-profile", action="append", default=[])
    run = sub.add_parser("run-instance")
    run.add_argument("--endpoint", required=True)
    run.add_argument("--tag", action="append", default=[])
    run.add_argument("--subnet", default="")
    run.add_argument("--ip", default="")
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
        run_simple(args.host, args.port, recording(app, args.calls, args.refuse), threaded=True)
    elif args.command == "setup":
        import boto3

        ec2 = client(args.endpoint)
        iam = boto3.client("iam", region_name=REGION, endpoint_url=args.endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
        print(json.dumps({
            "vpcId": vpc,
            "subnets": {c: ec2.create_subnet(VpcId=vpc, CidrBlock=c)["Subnet"]["SubnetId"] for c in args.cidr},
            "securityGroups": {g: ec2.create_security_group(GroupName=g, Description=g, VpcId=vpc)["GroupId"]
                               for g in args.security_group},
            "instanceProfiles": {p: iam.create_instance_profile(InstanceProfileName=p)["InstanceProfile"]["Arn"]
                                 for p in args.instance_profile},
        }))
    elif args.command == "run-instance":
        ec2 = client(args.endpoint)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        tags = [{"Key": k, "Value": v} for k, v in (t.split("=", 1) for t in args.tag)]
        # At a given address in a given subnet, an instance keeps moto from giving that address to another.
        placement = {"SubnetId": args.subnet, "PrivateIpAddress": args.ip} if args.subnet else {}
        reservation = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                                        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}], **placement)
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
