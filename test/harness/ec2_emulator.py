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
                          "remoteAddress", "params", "account" (what the account held of what it names), "decision"}.
                          Every call is authorized when it is made, as AWS does: a call signed with the admin's key
                          ("testing", the test and the user) goes through; any other key must be one the rig's IAM
                          file (ec2-iam.json beside FILE: {"keys": {KEY: {"role", "session"}}, "roles": {NAME: {"arn",
                          "policies"}}, "instanceProfiles": {ARN: ROLE_ARN}}) names, and the call is evaluated against
                          its role's policies by the authorizer (the command in $RAY_CLUSTER_EC2_AUTHORIZER, a JSON
                          list: test/harness/ec2-authorizer.ts); a denied call fails as EC2 (UnauthorizedOperation) or
                          IAM (AccessDenied) fails it, and a launch of an image the account does not hold fails with
                          InvalidAMIID.NotFound
  setup --endpoint URL --cidr CIDR[@ZONE]... --security-group NAME... --instance-profile NAME...
                          a VPC with a subnet per CIDR, the groups and the profiles; prints their ids as JSON
  register-image --endpoint URL --image-id ID --owner ACCOUNT [--alias ALIAS] --name NAME [--public] [--tag K=V...]
                          the image as its owner has it (Canonical's public Ubuntu, or one the account made), by its id
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
import html
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
UNAUTHORIZED = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. \
{message}</Message></Error></Errors><RequestID>{request}</RequestID></Response>"""
IAM_DENIED = """<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>AccessDenied</Code>\
<Message>{message}</Message></Error><RequestId>{request}</RequestId></ErrorResponse>"""
AUTH_FAILURE = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials \
({message})</Message></Error></Errors><RequestID>{request}</RequestID></Response>"""
IMAGE_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[{image}]' does not exist</Message>\
</Error></Errors><RequestID>{request}</RequestID></Response>"""
# The key the test and the user sign with: the account's administrator, whose calls are not evaluated.
ADMIN_KEY = "testing"
# How long a call waits for the rig's IAM to know its key and its role's policies (the test registers a stack's
# policies once its render ends, while the head may already call): less than an SDK's 60 s read timeout.
IAM_WAIT_SECONDS = float(os.environ.get("RAY_CLUSTER_EC2_IAM_WAIT") or 50)
SPOT_SERVICE_ROLE = "AWSServiceRoleForEC2Spot"
RIG_IMAGES_PATH = "/_rig/images"
# Values of a request that are resource ids, whose tags and attributes the authorizer may need.
RESOURCE_ID = re.compile(r"^(i|vol|sir|eni|ami|subnet|sg|vpc)-[0-9a-f]{8,17}$")
CAPACITY_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient {type} \
capacity in the Availability Zone you requested (emulated).</Message></Error></Errors><RequestID>emulated</RequestID></Response>"""


class Authorizer:
    """The authorizer process (test/harness/ec2-authorizer.ts): one JSON question a line in, one decision a line out."""

    def __init__(self, command):
        self.command = command
        self.process = None
        self.lock = threading.Lock()

    def _start(self):
        import subprocess

        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.process.stdout.readline()
        if not ready.strip():
            raise RuntimeError(f"the authorizer {self.command} ended before it was ready")

    def warm(self):
        with self.lock:
            if self.process is None:
                self._start()

    def ask(self, question):
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            self.process.stdin.write(json.dumps(question) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            if not line:
                self.process = None
                raise RuntimeError("the authorizer ended without an answer")
            return json.loads(line)


def account_facts(backend, params):
    """What the account holds of what the call names: tags, images, subnets, groups, instances, the spot role."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    ids = {v for v in params.values() if RESOURCE_ID.match(v)}
    facts = {"tags": {i: dict(backend.tags[i]) for i in ids if i in backend.tags},
             "images": {}, "subnets": {}, "securityGroups": {}, "instances": {},
             "spotServiceRole": any(r.name == SPOT_SERVICE_ROLE for r in iam_backends[DEFAULT_ACCOUNT_ID]["global"].roles.values())}
    for i in ids:
        if i in backend.amis:
            image = backend.amis[i]
            facts["images"][i] = {"ownerId": image.owner_id, "ownerAlias": image.owner_alias, "imageType": image.image_type,
                                  "public": any(p.get("Group") == "all" for p in image.launch_permissions),
                                  "rootDeviceType": image.root_device_type}
        elif i.startswith("subnet-"):
            try:
                subnet = backend.get_subnet(i)
                facts["subnets"][i] = {"availabilityZone": subnet.availability_zone, "vpcId": subnet.vpc_id}
            except Exception:  # noqa: BLE001 - an unknown subnet has no facts; EC2 itself refuses the call later
                pass
        elif i.startswith("sg-"):
            group = backend.get_security_group_from_id(i)
            if group is not None:
                facts["securityGroups"][i] = {"vpcId": group.vpc_id}
        elif i.startswith("i-"):
            try:
                instance = backend.get_instance(i)
                facts["instances"][i] = {"instanceType": instance.instance_type, "availabilityZone": instance.placement.zone}
            except Exception:  # noqa: BLE001 - likewise
                pass
    return facts


def create_spot_service_role():
    """What EC2 does with the caller's grants on an account's first spot request: the spot service-linked role."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    if not any(r.name == SPOT_SERVICE_ROLE for r in iam.roles.values()):
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole"],
                                                         "Principal": {"Service": ["spot.amazonaws.com"]}}]}
        iam.create_role(SPOT_SERVICE_ROLE, json.dumps(trust), "/aws-service-role/spot.amazonaws.com/", None, "", [], "3600",
                        linked_service="spot.amazonaws.com")


def register_image(backend, spec):
    """An image by the id its owner gave it: moto's own images are Amazon's; Canonical's and the account's come here."""
    from moto.ec2.models.amis import Ami

    backend.amis[spec["imageId"]] = Ami(backend, spec["imageId"], name=spec["name"], owner_id=spec["ownerId"],
                                        owner_alias=spec.get("ownerAlias"), public=bool(spec.get("public")),
                                        root_device_type="ebs", virtualization_type="hvm", architecture="x86_64",
                                        tags=spec.get("tags") or None)


def recording(app, calls_file, refuse_file, requests_file, authorizer=None, iam_file=None):
    lock = threading.Lock()
    iam_file = iam_file or os.path.join(os.path.dirname(os.path.abspath(calls_file)), "ec2-iam.json")

    def record(entry):
        with lock, open(calls_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": time.time(), **entry}) + "\n")

    def refused_types():
        if refuse_file and os.path.exists(refuse_file):
            with open(refuse_file, encoding="utf-8") as f:
                return json.load(f)
        return []

    def rig_iam():
        try:
            with open(iam_file, encoding="utf-8") as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def principal(key):
        """The key's role and session, once the rig's IAM knows both the key and the role's policies; else why not."""
        deadline = time.time() + IAM_WAIT_SECONDS
        while True:
            iam = rig_iam()
            entry = iam.get("keys", {}).get(key)
            role = entry and iam.get("roles", {}).get(entry["role"])
            if role:
                return entry, role, iam.get("instanceProfiles", {})
            if time.time() > deadline:
                return None, (f"ray-cluster test rig: the access key {key} is no session of a role the rig's IAM holds"
                              if entry is None else f"ray-cluster test rig: the rig's IAM holds no policies of the role {entry['role']}"), None
            time.sleep(0.5)

    def refuse(start_response, status, body):
        start_response(status, [("Content-Type", "text/xml")])
        return [body.encode()]

    def middleware(environ, start_response):
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("PATH_INFO") == RIG_IMAGES_PATH and environ.get("REQUEST_METHOD") == "POST":
            register_image(backend, json.loads(body))
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"{}"]
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        for key, values in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items():
            form.setdefault(key, values)
        action = (form.get("Action") or [""])[0]
        if not action:
            return app(environ, start_response)
        scope = re.search(r"Credential=([^/,\s]+)/\d+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        service, key = (scope.group(2), scope.group(1)) if scope else (None, None)
        call = {"at": time.time(), "service": service, "action": action, "accessKeyId": key, "remoteAddress": environ.get("REMOTE_ADDR"),
                "params": {k: v[0] for k, v in form.items() if k not in ("Action", "Version", "UserData")}}
        request_id = f"rig-{time.time_ns():x}"
        instance_type = (form.get("InstanceType") or [""])[0]
        request = launch_request(form) if action == "RunInstances" else None
        image_id = request and request["imageId"]
        refusal = None
        if image_id and image_id not in backend.amis:
            # EC2 knows no such image: the launch fails before anything is authorized on it.
            refusal = ("InvalidAMIID.NotFound", "400 Bad Request", IMAGE_ERROR.format(image=image_id, request=request_id))
        elif key != ADMIN_KEY:
            call["account"] = account_facts(backend, call["params"])
            if key is None:
                entry, role, profiles = None, "ray-cluster test rig: the request is not signed", None
            else:
                entry, role, profiles = principal(key)
            if entry is None:
                decision = {"allowed": False, "requests": [], "message": role}
                refusal = ("AuthFailure", "401 Unauthorized", AUTH_FAILURE.format(message=role, request=request_id))
            else:
                try:
                    decision = authorizer.ask({"call": call, "role": role, "session": entry.get("session") or "rig", "region": REGION,
                                               "account": DEFAULT_ACCOUNT_ID, "instanceProfiles": profiles})
                except Exception as e:  # noqa: BLE001 - a broken authorizer denies, loudly
                    decision = {"allowed": False, "requests": [], "message": f"ray-cluster test rig: the authorizer failed: {e}"}
                if not decision["allowed"]:
                    message = html.escape(decision["message"])
                    refusal = (("AccessDenied", "403 Forbidden", IAM_DENIED.format(message=message, request=request_id)) if service == "iam"
                               else ("UnauthorizedOperation", "403 Forbidden", UNAUTHORIZED.format(message=message, request=request_id)))
                elif any(r["action"] == "iam:CreateServiceLinkedRole" for r in decision["requests"]):
                    create_spot_service_role()
            call["decision"] = decision
            if not decision["allowed"]:
                # In the emulator's log too: a denied call is the product's error, and the rig's own gaps say so here.
                print(f"ec2-emulator: denied {service}:{action} signed by {key}: {decision['message']}", file=sys.stderr, flush=True)
        if requests_file:
            # Every API call with the key that signed it, what the account held of it, and the decision on it.
            with lock, open(requests_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({**call, **({"refused": refusal[0]} if refusal else {})}) + "\n")
        if action in RECORDED:
            numbered = {int(k.split(".", 1)[1]): v[0] for k, v in form.items() if k.startswith("InstanceId.")}
            record({"action": action, "instanceIds": [numbered[n] for n in sorted(numbered)], **({"refused": refusal[0]} if refusal else {})})
        elif action == "RunInstances" and refusal:
            record({"action": action, "instanceType": instance_type, "refused": refusal[0], "instances": [], **request})
        if refusal:
            return refuse(start_response, refusal[1], refusal[2])
        if action != "RunInstances":
            return app(environ, start_response)
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
    image = sub.add_parser("register-image")
    image.add_argument("--endpoint", required=True)
    image.add_argument("--image-id", required=True)
    image.add_argument("--owner", required=True)
    image.add_argument("--alias", default=None)
    image.add_argument("--name", required=True)
    image.add_argument("--public", action="store_true")
    image.add_argument("--tag", action="append", default=[])
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

        command = json.loads(os.environ.get("RAY_CLUSTER_EC2_AUTHORIZER") or "null")
        if not command:
            sys.exit("ec2_emulator: no authorizer: set RAY_CLUSTER_EC2_AUTHORIZER to its command (a JSON list)")
        authorizer = Authorizer(command)
        # Started now, so that the first call does not wait for it.
        threading.Thread(target=authorizer.warm, daemon=True).start()
        open(args.calls, "a", encoding="utf-8").close()
        app = DomainDispatcherApplication(create_backend_app)
        run_simple(args.host, args.port, recording(app, args.calls, args.refuse, args.requests, authorizer), threaded=True)
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
    elif args.command == "register-image":
        import urllib.request

        spec = {"imageId": args.image_id, "ownerId": args.owner, "ownerAlias": args.alias, "name": args.name, "public": args.public,
                "tags": dict(t.split("=", 1) for t in args.tag)}
        urllib.request.urlopen(urllib.request.Request(args.endpoint + RIG_IMAGES_PATH, data=json.dumps(spec).encode(), method="POST"),
                               timeout=30).read()
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
