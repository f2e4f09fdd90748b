import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { policies } from "../policy/policies";
import { checkPolicies } from "./harness/policy";
import { byName, byType, RegisteredResource, render, StackConfig } from "../tools/render";

describe("the policy pack passes on the program", () => {
    const configs: StackConfig[] = [{ workerCount: 2 }, { workerCount: 0 }, { workerCount: 5 },
        { autostopIdleMinutes: 30, workerSpot: true, workerCount: 3 },
        // Every instance of every group passes the instance policies.
        { workerCount: 1, headSchedulable: false, workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 2, spot: true },
            { name: "gpu", instanceType: "g5.xlarge", count: 1, volumeSizeGb: 200 }] },
        { workerNetwork: "private", workerCount: 2 },
        // Elastic groups: the head's launch, tag, terminate and pass-role grants.
        { autostopIdleMinutes: 30, workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 4 },
            { name: "gpu", instanceType: "g5.xlarge", minCount: 1, maxCount: 2, spot: true }] },
        { workerNetwork: "private", workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 4 }] },
        { workerNetwork: "private", natGateway: false, packageIndexUrl: "https://pypi.example.com/simple/" },
        // Ray-ready images: their builders, and private workers with no NAT gateway at all.
        { workerNetwork: "private", natGateway: false, rayImage: true, workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 4 }] },
        { rayImage: true, workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1 }] },
        { workerNetwork: "private", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c", privateSubnetId: "subnet-0ddd3333eeee4444f" }];
    for (const config of configs) {
        test(JSON.stringify(config), async () => {
            const r = await render(config);
            assert.equal(r.error, undefined);
            assert.deepEqual(await checkPolicies(r.resources), []);
        });
    }
});

/** Renders the default config, lets `breakIt` change a copy of the resources, and returns the violations. */
async function violationsAfter(breakIt: (resources: RegisteredResource[]) => RegisteredResource[]) {
    const r = await render();
    const copy = structuredClone(r.resources);
    return checkPolicies(breakIt(copy));
}

function first(resources: RegisteredResource[], type: string, where: (r: RegisteredResource) => boolean = () => true) {
    const found = resources.find((r) => r.type === type && where(r));
    assert.ok(found, `a ${type} to break`);
    return found;
}

const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";

/** For each policy: how to break the resource it guards. A policy that cannot fail would fail this table. */
const BREAKS: Record<string, (resources: RegisteredResource[]) => RegisteredResource[]> = {
    "security-group-public-ingress-ssh-only": (rs) => {
        const http = structuredClone(first(rs, INGRESS, (r) => r.inputs.fromPort === 22));
        Object.assign(http, { name: "http-from-world", urn: "urn:http" });
        Object.assign(http.inputs, { fromPort: 80, toPort: 80 });
        return [...rs, http];
    },
    "security-group-no-public-ray-ports": (rs) => {
        Object.assign(first(rs, INGRESS, (r) => r.inputs.fromPort === 22).inputs, { fromPort: 1024, toPort: 65535 });
        return rs;
    },
    "instance-imdsv2-required": (rs) => {
        first(rs, "aws:ec2/instance:Instance").inputs.metadataOptions.httpTokens = "optional";
        return rs;
    },
    "instance-root-volume-encrypted": (rs) => {
        first(rs, "aws:ec2/instance:Instance").inputs.rootBlockDevice.encrypted = false;
        return rs;
    },
    "instance-no-secrets-in-user-data": (rs) => {
        const instance = first(rs, "aws:ec2/instance:Instance");
        instance.inputs.userData += "write_files:\n  - path: /home/ubuntu/.ray/auth_token\n    content: abc\n";
        return rs;
    },
    "node-commands-carry-no-aws-keys": (rs) => {
        const jobEnv = first(rs, "command:remote:Command", (r) => r.name.endsWith("-job-env"));
        jobEnv.inputs.create += " --env 'AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG'";
        return rs;
    },
    "instance-user-data-offline": (rs) => {
        const instance = first(rs, "aws:ec2/instance:Instance");
        instance.inputs.userData += "package_update: true\npackages:\n  - python3-venv\n";
        return rs;
    },
    "bucket-versioning-enabled": (rs) => {
        first(rs, "aws:s3/bucketVersioning:BucketVersioning").inputs.versioningConfiguration.status = "Suspended";
        return rs;
    },
    "bucket-server-side-encryption": (rs) => rs.filter((r, i) =>
        !(r.type === "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration" &&
            i === rs.findIndex((x) => x.type === r.type))),
    "bucket-public-access-blocked": (rs) => {
        first(rs, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs.restrictPublicBuckets = false;
        return rs;
    },
    "bucket-owner-enforced": (rs) => {
        first(rs, "aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs.rule.objectOwnership = "ObjectWriter";
        return rs;
    },
    "bucket-tls-only": (rs) => {
        const policy = first(rs, "aws:s3/bucketPolicy:BucketPolicy");
        const doc = JSON.parse(policy.inputs.policy);
        doc.Statement[0].Condition = {};
        policy.inputs.policy = JSON.stringify(doc);
        return rs;
    },
    "iam-no-wildcard-action": (rs) => {
        const policy = first(rs, "aws:iam/rolePolicy:RolePolicy");
        const doc = JSON.parse(policy.inputs.policy);
        doc.Statement[1].Action = "*";
        policy.inputs.policy = JSON.stringify(doc);
        return rs;
    },
    "iam-instance-stop-terminate-tag-scoped": (rs) => {
        const policy = first(rs, "aws:iam/rolePolicy:RolePolicy");
        const doc = JSON.parse(policy.inputs.policy);
        doc.Statement.push({ Sid: "StopAnything", Effect: "Allow", Action: "ec2:Stop*", Resource: "*" });
        policy.inputs.policy = JSON.stringify(doc);
        return rs;
    },
    "iam-launch-scoped-to-stack": (rs) => {
        const policy = first(rs, "aws:iam/rolePolicy:RolePolicy");
        const doc = JSON.parse(policy.inputs.policy);
        doc.Statement.push({ Sid: "LaunchAnything", Effect: "Allow", Action: "ec2:RunInstances", Resource: "*" });
        policy.inputs.policy = JSON.stringify(doc);
        return rs;
    },
    "iam-s3-only-on-stack-buckets": (rs) => {
        const policy = first(rs, "aws:iam/rolePolicy:RolePolicy");
        const doc = JSON.parse(policy.inputs.policy);
        doc.Statement[1].Resource = ["*"];
        policy.inputs.policy = JSON.stringify(doc);
        return rs;
    },
    "private-workers-no-public-ip": (rs) => {
        // A worker moved out of the head's subnet without giving up its public IP.
        first(rs, "aws:ec2/instance:Instance", (r) => r.inputs.tags?.Name === "worker-1").inputs.subnetId = "subnet-0fedcba987654321";
        return rs;
    },
    "image-builder-terminates-itself": (rs) => {
        const builder = structuredClone(first(rs, "aws:ec2/instance:Instance"));
        Object.assign(builder, { name: "ray-cluster-image-ubuntu-builder", urn: "urn:builder" });
        builder.inputs.tags = { ...builder.inputs.tags, Name: "ubuntu-image-builder", "ray-cluster:image-key": "0123456789abcdef" };
        return [...rs, builder];
    },
    "image-never-public": (rs) => [...rs, { ...structuredClone(first(rs, "aws:ec2/instance:Instance")), name: "shared", urn: "urn:shared",
        type: "aws:ec2/amiLaunchPermission:AmiLaunchPermission", inputs: { imageId: "ami-0123456789abcdef0", group: "all" } }],
    "private-workers-without-nat-boot-ray-images": (rs) => {
        // A worker with no public IP in the stack's own network, which has no NAT gateway, and a base image.
        first(rs, "aws:ec2/instance:Instance", (r) => r.inputs.tags?.Name === "worker-1").inputs.associatePublicIpAddress = false;
        return rs;
    },
    "private-subnets-give-no-public-ip": (rs) => rs.filter((r) => r.type !== "aws:ec2/routeTableAssociation:RouteTableAssociation"),
    "tags-stack-and-project": (rs) => {
        delete first(rs, "aws:ec2/subnet:Subnet").inputs.tags["ray-cluster:stack"];
        return rs;
    },
};

/** A copy of the resources whose autoscaler policy has the statement SID changed by EDIT. */
function withAutoscalerStatement(resources: RegisteredResource[], sid: string, edit: (statement: any) => void): RegisteredResource[] {
    const copy = structuredClone(resources);
    const policy = copy.find((x) => x.name === "ray-cluster-autoscaler")!;
    const doc = JSON.parse(policy.inputs.policy);
    edit(doc.Statement.find((s: any) => s.Sid === sid));
    policy.inputs.policy = JSON.stringify(doc);
    return copy;
}

/** Each case, one at a time, makes iam-launch-scoped-to-stack fire exactly once, with its message. */
async function assertEachBreakFires(resources: RegisteredResource[], cases: Array<[string, (statement: any) => void, RegExp]>) {
    for (const [sid, breakIt, message] of cases) {
        const fired = (await checkPolicies(withAutoscalerStatement(resources, sid, breakIt)))
            .filter((v) => v.policy === "iam-launch-scoped-to-stack");
        assert.equal(fired.length, 1, `${sid}: ${JSON.stringify(fired)}`);
        assert.match(fired[0].message, message);
    }
}

describe("each policy reports a violation when its resource is broken", () => {
    test("every policy has a break case", () => {
        assert.deepEqual(Object.keys(BREAKS).sort(), policies.map((p) => p.name).sort());
    });

    for (const [name, breakIt] of Object.entries(BREAKS)) {
        test(name, async () => {
            const violations = await violationsAfter(breakIt);
            assert.ok(violations.some((v) => v.policy === name), `${name} did not fire: ${JSON.stringify(violations)}`);
        });
    }

    test("autostop's own stop grant fails the pack without its tag condition, or with a wildcard tag value", async () => {
        const r = await render({ autostopIdleMinutes: 30 });
        for (const breakCondition of [
            (statement: any) => delete statement.Condition,
            (statement: any) => delete statement.Condition.StringEquals["aws:ResourceTag/ray-cluster:stack"],
            (statement: any) => { statement.Condition.StringEquals["aws:ResourceTag/ray-cluster:stack"] = "*"; },
        ]) {
            const copy = structuredClone(r.resources);
            const policy = copy.find((x) => x.name === byName(r, "ray-cluster-autostop").name)!;
            const doc = JSON.parse(policy.inputs.policy);
            breakCondition(doc.Statement.find((s: any) => s.Sid === "StopThisStack"));
            policy.inputs.policy = JSON.stringify(doc);
            const fired = (await checkPolicies(copy)).filter((v) => v.policy === "iam-instance-stop-terminate-tag-scoped");
            assert.equal(fired.length, 1, JSON.stringify(fired));
            assert.match(fired[0].message, /ec2:StopInstances without a StringEquals condition on aws:ResourceTag\/ray-cluster:stack/);
        }
    });

    test("the autoscaler's grants fail the pack once any is unscoped: a launch, a tag, a pass-role or ec2:*", async () => {
        const r = await render({ workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 4 }] });
        const cases: Array<[string, (doc: any) => void, RegExp]> = [
            ["LaunchTaggedWorkers", (s) => delete s.Condition.StringEquals["aws:RequestTag/ray-cluster:stack"], /ec2:RunInstances without/],
            ["TagAtLaunch", (s) => delete s.Condition, /ec2:CreateTags beyond launch/],
            ["PassWorkerRole", (s) => { s.Resource = "*"; }, /iam:PassRole on "\*"/],
            ["PassWorkerRole", (s) => delete s.Condition, /iam:PassedToService/],
            ["FindInstances", (s) => { s.Action = "ec2:*"; }, /allows ec2:\*/],
        ];
        await assertEachBreakFires(r.resources, cases);
        // The terminate grant is the existing policy's: unscoped, it fires too.
        const copy = withAutoscalerStatement(r.resources, "TerminateLaunchedWorkers", (st) => delete st.Condition);
        assert.ok((await checkPolicies(copy)).some((v) => v.policy === "iam-instance-stop-terminate-tag-scoped"));
    });

    test("the autoscaler's spot and image grants fail the pack once unconfined: any image, an untagged spot request, " +
        "any service's linked role", async () => {
        const r = await render({ workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", maxCount: 2, spot: true }] });
        assert.deepEqual(await checkPolicies(r.resources), []);
        const cases: Array<[string, (doc: any) => void, RegExp]> = [
            ["LaunchIntoThisStack", (s) => { s.Resource.push("arn:aws:ec2:us-east-1::image/*"); }, /from arn:aws:ec2:us-east-1::image\/\*: it could boot any image/],
            ["LaunchIntoThisStack", (s) => { s.Resource.push("arn:aws:ec2:*::image/ami-0*"); }, /could boot any image/],
            ["LaunchIntoThisStack", (s) => { s.Resource.push("arn:aws:ec2:us-east-1:123456789012:spot-instances-request/*"); }, /ec2:RunInstances without/],
            ["CreateSpotServiceRole", (s) => delete s.Condition, /iam:CreateServiceLinkedRole without/],
            ["CreateSpotServiceRole", (s) => { s.Condition.StringEquals["iam:AWSServiceName"] = "*"; }, /iam:CreateServiceLinkedRole without/],
        ];
        await assertEachBreakFires(r.resources, cases);
    });

    test("a hand-made security group with an inline public Redis rule is caught by both security-group policies", async () => {
        const r = await render();
        const inline = structuredClone(byType(r, "aws:ec2/securityGroup:SecurityGroup")[0]);
        Object.assign(inline, { name: "lab-sg", urn: "urn:lab-sg" });
        inline.inputs.ingress = [{ protocol: "tcp", fromPort: 6379, toPort: 6379, cidrBlocks: ["0.0.0.0/0"] }];
        const fired = new Set((await checkPolicies([...r.resources, inline])).map((v) => v.policy));
        assert.ok(fired.has("security-group-public-ingress-ssh-only"));
        assert.ok(fired.has("security-group-no-public-ray-ports"));
    });
});
