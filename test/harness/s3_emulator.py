"""S3, IAM and STS for the end-to-end test: moto's server, which checks every request's signature and the caller's
IAM policies once its first calls (the test's admin) are spent (test/e2e/machines.sh s3).

  serve --host H --port P                   moto's server, with S3's HeadBucket authorized as AWS does it (s3:ListBucket)
  admin --endpoint URL                      the test's admin user, with every right; prints its key as JSON
  provision --endpoint URL --spec JSON      with the admin's key in the environment: the buckets (versioned), and each
                                            role with the policies the stack rendered for it; then, playing EC2, assumes
                                            each role and prints its credentials by role, as IMDS hands them to a node
"""

import argparse
import json
import sys

import boto3

REGION = "us-east-1"
ADMIN = "ray-cluster-e2e-admin"


def serve(host, port):
    from moto.s3 import responses
    from moto.server import main as moto_server

    # moto checks HeadBucket against an action "s3:HeadBucket" that IAM does not have; AWS checks s3:ListBucket.
    responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
    moto_server(["-H", host, "-p", str(port)])


def admin(endpoint):
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")
    # These three calls are the ones the server lets through unchecked (machines.sh S3_UNCHECKED_CALLS).
    iam.create_user(UserName=ADMIN)
    iam.put_user_policy(UserName=ADMIN, PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=ADMIN)["AccessKey"]
    print(json.dumps({"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}))


def provision(endpoint, spec):
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
    for bucket in spec["buckets"]:
        s3.create_bucket(Bucket=bucket)
        if bucket in spec["versioned"]:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    account = sts.get_caller_identity()["Account"]
    credentials = {}
    for role, policies in spec["roles"].items():
        # EC2 assumes an instance's role; here the admin plays EC2. The stack's own trust policy (the EC2 service) is
        # checked under mocks: moto cannot evaluate a service principal.
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"AWS": f"arn:aws:iam::{account}:user/{ADMIN}"}}]}
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        for name, document in policies.items():
            iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=document)
        c = sts.assume_role(RoleArn=arn, RoleSessionName="ray-cluster-e2e", DurationSeconds=43200)["Credentials"]
        credentials[role] = {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                             "Token": c["SessionToken"], "Expiration": c["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}
    print(json.dumps(credentials))


def main(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", required=True)
    s.add_argument("--port", required=True)
    a = sub.add_parser("admin")
    a.add_argument("--endpoint", required=True)
    p = sub.add_parser("provision")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--spec", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port)
    elif args.command == "admin":
        admin(args.endpoint)
    else:
        provision(args.endpoint, json.loads(args.spec))


if __name__ == "__main__":
    main(sys.argv[1:])
