"""The EC2 API for the end-to-end test: moto's server, run inside the test's mirror namespace, recording every
call that changes an instance's state, so the test can tell which instances autostop stopped and in what order,
and make a booted host follow each instance that Ray's autoscaler launches or terminates.

  serve --host H --port P --calls FILE [--refuse FILE] [--requests FILE]
                          moto's server; each Start/Stop/TerminateInstances call appends a line
                          {"at": unix time, "action": ..., "instanceIds": [...]} to FILE, and each RunInstances call
                          {"at", "action", "instanceType", "instances": [{"id", "privateIp"}], "userData", and what
                          the request named: image, key pair (and its public key), subnet, groups, profile, metadata
                          options, volumes, market, tags}; a launch naming an unknown key pair is refused; while FILE
                          --refuse holds a JSON list of instance types (or TYPE@SUBNET-ID: that type in that subnet's
                          zone only), launches of those fail as EC2 fails them for
                          want of capacity ({"refused": "InsufficientInstanceCapacity"} in the record); --requests
                          FILE gets every API call: {"at", "service", "action", "accessKeyId" (the signer's),
                          "remoteAddress", "params"}
  setup --endpoint URL --cidr CIDR[@ZONE]... --security-group NAME... --instance-profile NAME...
                          a VPC with a subnet per CIDR, the groups and the profiles; prints their ids as JSON
  run-instance --endpoint URL --tag K=V... [--subnet ID --ip ADDRESS]
                          launches one instance with those tags (at that address); prints its id
  import-key --endpoint URL --name NAME --public-key KEY
                                            registers the stack's key pair, as aws.ec2.KeyPair does
  start --endpoint URL ID                   starts a stopped instance, as the provider's instance state does
  terminate --endpoint URL ID               terminates an instance, as EC2 does when it reclaims a spot instance
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
KEY_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidKeyPair.NotFound</Code><Message>The key pair '{name}' does not exist</Message>\
</Error></Errors><RequestID>emulated</RequestID></Response>"""
CAPACITY_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient {type} \
capacity in the Availability Zone you requested (emulated).</Message></Error></Errors><RequestID>emulated</RequestID></Response>"""


def recording(app, calls_file, refuse_file, requests_file):
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
        if requests_file and action:
            # Every API call with the key that signed it: the test evaluates each against the caller's IAM policy.
            scope = re.search(r"Credential=([^/,\s]+)/\d+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
            with lock, open(requests_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"at": time.time(), "service": scope.group(2) if scope else None, "action": action,
                                    "accessKeyId": scope.group(1) if scope else None, "remoteAddress": environ.get("REMOTE_ADDR"),
                                    "params": {k: v[0] for k, v in form.items() if k not in ("Action", "Version", "UserData")}}) + "\n")
        if action in RECORDED:
            numbered = {int(k.split(".", 1)[1]): v[0] for k, v in form.items() if k.startswith("InstanceId.")}
            record({"action": action, "instanceIds": [numbered[n] for n in sorted(numbered)]})
        if action != "RunInstances":
            return app(environ, start_response)
        instance_type = (form.get("InstanceType") or [""])[0]
        request = launch_request(form)
        # A refusal names a type everywhere, or a type in one subnet (its zone): "c7i.xlarge@subnet-…".
        refused = refused_types()
        if instance_type in refused or f"{instance_type}@{request['subnetId']}" in refused:
            record({"action": action, "instanceType": instance_type, "refused": "InsufficientInstanceCapacity", "instances": [],
                    **request})
            start_response("500 Internal Server Error", [("Content-Type", "text/xml")])
            return [CAPACITY_ERROR.format(type=instance_type).encode()]
        status = {}

        def capture(code, headers, exc_info=None):
            status["code"] = code
            return start_response(code, headers, exc_info)

        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        key_name = request["keyName"]
        if key_name and key_name not in backend.key_pairs:
            # EC2 refuses a launch that names a key pair it does not hold; moto would launch it keyless.
            record({"action": action, "instanceType": instance_type, "refused": "InvalidKeyPair.NotFound", "instances": [], **request})
            start_response("400 Bad Request", [("Content-Type", "text/xml")])
            return [KEY_ERROR.format(name=key_name).encode()]
        response = b"".join(app(environ, capture))
        if status.get("code", "").startswith("200"):
            ids = dict.fromkeys(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", response.decode("utf-8", "replace")))
            user_data = (form.get("UserData") or [""])[0]
            record({"action": action, "instanceType": instance_type,
                    "instances": [{"id": i, "privateIp": backend.get_instance(i).private_ip} for i in ids],
                    "userData": base64.b64decode(user_data).decode("utf-8", "replace") if user_data else "",
                    **request,
                    # What EC2's metadata serves the instance as its public-keys: the named key pair's, and no other.
                    "publicKey": backend.key_pairs[key_name].public_key if key_name else None})
        return [response]

    return middleware


def numbered(form, prefix):
    """The values of PREFIX.1, PREFIX.2, ... in the order the caller numbered them."""
    found = {int(k[len(prefix) + 1:]): v[0] for k, v in form.items() if re.fullmatch(re.escape(prefix) + r"\.\d+", k)}
    return [found[n] for n in sorted(found)]


def launch_request(form):
    """What a RunInstances request asked for, as the instance it creates must get it: the rig trusts nothing else."""
    one = lambda key: (form.get(key) or [None])[0]  # noqa: E731
    interface = "NetworkInterface.1."
    return {
        "imageId": one("ImageId"),
        "keyName": one("KeyName"),
        # A launch either names its subnet and groups, or gives them to its first network interface (no public IP).
        "subnetId": one("SubnetId") or one(interface + "SubnetId"),
        "securityGroupIds": numbered(form, "SecurityGroupId") or numbered(form, interface + "SecurityGroupId"),
        "associatePublicIp": one(interface + "AssociatePublicIpAddress"),
        "iamInstanceProfileArn": one("IamInstanceProfile.Arn"),
        "metadataOptions": {k.split(".", 1)[1]: v[0] for k, v in form.items() if k.startswith("MetadataOptions.")},
        "blockDeviceMappings": [
            {k.split(".", 2)[2]: v[0] for k, v in form.items() if k.startswith(f"BlockDeviceMapping.{n}.")}
            for n in sorted({int(k.split(".")[1]) for k in form if k.startswith("BlockDeviceMapping.")})],
        "marketType": one("InstanceMarketOptions.MarketType"),
        "tags": {form[key][0]: one(key[:-len("Key")] + "Value")
                 for key in form if (m := re.fullmatch(r"(TagSpecification\.\d+\.)Tag\.\d+\.Key", key))
                 and one(m.group(1) + "ResourceType") == "instance"},
    }


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
    serve.add_argument("--requests", default="")
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
    key = sub.add_parser("import-key")
    key.add_argument("--endpoint", required=True)
    key.add_argument("--name", required=True)
    key.add_argument("--public-key", required=True)
    start = sub.add_parser("start")
    start.add_argument("--endpoint", required=True)
    start.add_argument("instance_id")
    terminate = sub.add_parser("terminate")
    terminate.add_argument("--endpoint", required=True)
    terminate.add_argument("instance_id")
    states = sub.add_parser("states")
    states.add_argument("--endpoint", required=True)
    args = parser.parse_args(argv)

    if args.command == "serve":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import run_simple

        open(args.calls, "a", encoding="utf-8").close()
        app = DomainDispatcherApplication(create_backend_app)
        run_simple(args.host, args.port, recording(app, args.calls, args.refuse, args.requests), threaded=True)
    elif args.command == "setup":
        import boto3

        ec2 = client(args.endpoint)
        iam = boto3.client("iam", region_name=REGION, endpoint_url=args.endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
        print(json.dumps({
            "vpcId": vpc,
            # CIDR@ZONE puts the subnet in that zone; a bare CIDR leaves the zone to moto.
            "subnets": {c.split("@")[0]: ec2.create_subnet(VpcId=vpc, CidrBlock=c.split("@")[0],
                                                            **({"AvailabilityZone": c.split("@")[1]} if "@" in c else {}))["Subnet"]["SubnetId"]
                        for c in args.cidr},
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
    elif args.command == "import-key":
        client(args.endpoint).import_key_pair(KeyName=args.name, PublicKeyMaterial=args.public_key.encode())
    elif args.command == "start":
        client(args.endpoint).start_instances(InstanceIds=[args.instance_id])
    elif args.command == "terminate":
        client(args.endpoint).terminate_instances(InstanceIds=[args.instance_id])
    else:
        pages = client(args.endpoint).get_paginator("describe_instances").paginate()
        print(json.dumps({i["InstanceId"]: {"state": i["State"]["Name"],
                                            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
                          for page in pages for r in page["Reservations"] for i in r["Instances"]}))


if __name__ == "__main__":
    main(sys.argv[1:])
