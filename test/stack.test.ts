import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { UNTAGGABLE_TYPES } from "../policy/policies";
import { byType, isSecret, Rendered, RegisteredResource, render, StackConfig } from "../tools/render";

const RAY_PORTS = [6379, 8265, 10001, 10002, 19999];
let cached: Rendered | undefined;
async function defaults(): Promise<Rendered> {
    cached ??= await render();
    assert.equal(cached.error, undefined, String(cached.error));
    return cached;
}


describe("network", () => {
    test("VPC with DNS, a public subnet in the first zone, a default route to the gateway", async () => {
        const r = await defaults();
        const vpc = byType(r, "aws:ec2/vpc:Vpc");
        assert.equal(vpc.length, 1);
        assert.equal(vpc[0].inputs.cidrBlock, "10.0.0.0/16");
        assert.equal(vpc[0].inputs.enableDnsSupport, true);
        assert.equal(vpc[0].inputs.enableDnsHostnames, true);
        const subnet = byType(r, "aws:ec2/subnet:Subnet")[0];
        assert.equal(subnet.inputs.cidrBlock, "10.0.1.0/24");
        assert.equal(subnet.inputs.mapPublicIpOnLaunch, true);
        assert.equal(subnet.inputs.availabilityZone, "us-east-1a");
        const igw = byType(r, "aws:ec2/internetGateway:InternetGateway")[0];
        assert.equal(igw.inputs.vpcId, `${vpc[0].name}-id`);
        const route = byType(r, "aws:ec2/route:Route")[0];
        assert.equal(route.inputs.destinationCidrBlock, "0.0.0.0/0");
        assert.equal(route.inputs.gatewayId, `${igw.name}-id`);
        const association = byType(r, "aws:ec2/routeTableAssociation:RouteTableAssociation")[0];
        assert.equal(association.inputs.subnetId, `${subnet.name}-id`);
        assert.equal(association.inputs.routeTableId, route.inputs.routeTableId);
    });

    test("an explicit availability zone and CIDRs are used as given", async () => {
        const r = await render({ availabilityZone: "eu-west-1b", vpcCidr: "172.16.0.0/16", subnetCidr: "172.16.8.0/22" });
        const subnet = byType(r, "aws:ec2/subnet:Subnet")[0];
        assert.equal(subnet.inputs.availabilityZone, "eu-west-1b");
        assert.equal(subnet.inputs.cidrBlock, "172.16.8.0/22");
        assert.equal(byType(r, "aws:ec2/vpc:Vpc")[0].inputs.cidrBlock, "172.16.0.0/16");
    });
});

function publicIngress(r: Rendered): RegisteredResource[] {
    return byType(r, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        .filter((rule) => rule.inputs.cidrIpv4 === "0.0.0.0/0" || rule.inputs.cidrIpv6 === "::/0");
}

function opensPort(rule: RegisteredResource, port: number): boolean {
    return rule.inputs.ipProtocol === "-1" || (rule.inputs.fromPort <= port && port <= rule.inputs.toPort);
}

describe("security group", () => {
    test("SSH from each allowed CIDR, everything within the group, egress to anywhere, no inline rules", async () => {
        const r = await render({ sshAllowedCidrs: ["203.0.113.0/24", "198.51.100.7/32"] });
        const sg = byType(r, "aws:ec2/securityGroup:SecurityGroup");
        assert.equal(sg.length, 1);
        assert.equal(sg[0].inputs.ingress, undefined);
        assert.equal(sg[0].inputs.egress, undefined);
        const sgId = `${sg[0].name}-id`;
        const ingress = byType(r, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule");
        const ssh = ingress.filter((rule) => rule.inputs.fromPort === 22);
        assert.deepEqual(ssh.map((rule) => [rule.inputs.cidrIpv4, rule.inputs.toPort, rule.inputs.ipProtocol]),
            [["203.0.113.0/24", 22, "tcp"], ["198.51.100.7/32", 22, "tcp"]]);
        const self = ingress.filter((rule) => rule.inputs.referencedSecurityGroupId === sgId);
        assert.equal(self.length, 1);
        assert.equal(self[0].inputs.ipProtocol, "-1");
        assert.ok(ingress.every((rule) => rule.inputs.securityGroupId === sgId));
        const egress = byType(r, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule");
        assert.deepEqual(egress.map((rule) => [rule.inputs.cidrIpv4, rule.inputs.ipProtocol]), [["0.0.0.0/0", "-1"]]);
    });

    test("no Ray port is open to the world, by default or with the dashboard opened to a CIDR", async () => {
        for (const config of [{}, { dashboardAllowedCidrs: ["203.0.113.0/24"] }] as StackConfig[]) {
            const r = await render(config);
            const open = publicIngress(r);
            assert.deepEqual(open.map((rule) => rule.inputs.fromPort), [22], "only SSH is public");
            for (const port of RAY_PORTS) {
                assert.ok(!open.some((rule) => opensPort(rule, port)), `port ${port} is public`);
            }
        }
    });

    test("dashboard and client ports reach only dashboardAllowedCidrs, which is empty by default", async () => {
        const ports = (r: Rendered) => byType(r, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
            .filter((rule) => rule.inputs.fromPort === 8265 || rule.inputs.fromPort === 10001)
            .map((rule) => `${rule.inputs.fromPort}-${rule.inputs.toPort} ${rule.inputs.cidrIpv4}`).sort();
        assert.deepEqual(ports(await defaults()), []);
        assert.deepEqual(ports(await render({ dashboardAllowedCidrs: ["203.0.113.0/24"] })),
            ["10001-10001 203.0.113.0/24", "8265-8265 203.0.113.0/24"]);
    });
});

describe("SSH key", () => {
    test("an ED25519 key from the stack is registered as the nodes' key pair and exported only as a secret", async () => {
        const r = await defaults();
        const key = byType(r, "tls:index/privateKey:PrivateKey");
        assert.equal(key.length, 1);
        assert.equal(key[0].inputs.algorithm, "ED25519");
        assert.ok(key[0].options.additionalSecretOutputs.includes("privateKeyOpenssh"));
        const pair = byType(r, "aws:ec2/keyPair:KeyPair")[0];
        assert.equal(pair.inputs.publicKey, key[0].outputs.publicKeyOpenssh.trim());
        for (const instance of byType(r, "aws:ec2/instance:Instance")) {
            assert.equal(instance.inputs.keyName, `${pair.name}-0123456`);
        }
    });
});

describe("nodes", () => {
    test("head and workers: types, AMI, gp3 encrypted root, IMDSv2, key, profile, subnet, group, names", async () => {
        const r = await defaults();
        const instances = byType(r, "aws:ec2/instance:Instance");
        assert.deepEqual(instances.map((i) => i.inputs.tags.Name), ["headnode", "worker-1", "worker-2"]);
        assert.deepEqual(instances.map((i) => i.inputs.instanceType), ["t3.medium", "t3.small", "t3.small"]);
        const sgId = `${byType(r, "aws:ec2/securityGroup:SecurityGroup")[0].name}-id`;
        for (const instance of instances) {
            assert.equal(instance.inputs.ami, "ami-0123456789abcdef0");
            assert.deepEqual(instance.inputs.rootBlockDevice,
                { volumeType: "gp3", volumeSize: 20, encrypted: true, deleteOnTermination: true });
            assert.equal(instance.inputs.metadataOptions.httpTokens, "required");
            // Only the head's role gets EC2 grants (autostop, the autoscaler); the workers' reaches the buckets alone.
            assert.equal(instance.inputs.iamInstanceProfile,
                instance.inputs.tags.Name === "headnode" ? "ray-cluster-head-profile-0123456" : "ray-cluster-profile-0123456");
            assert.equal(instance.inputs.subnetId, `${byType(r, "aws:ec2/subnet:Subnet")[0].name}-id`);
            assert.deepEqual(instance.inputs.vpcSecurityGroupIds, [sgId]);
            assert.deepEqual(instance.options.ignoreChanges, ["ami"], "a newer Ubuntu image does not replace nodes");
            assert.doesNotMatch(instance.inputs.userData, /token|PRIVATE KEY/i);
            // Nothing at boot needs the network: no apt, no download; only the hostname the bootstrap sets is kept.
            assert.equal(instance.inputs.userData, "#cloud-config\npreserve_hostname: true\n");
            assert.ok(instance.dependencies.some((urn) => urn.endsWith("::ray-cluster-default-route")),
                "nodes boot only after the internet route exists");
        }
    });

    test("a pinned amiId is used without a lookup, and replaces nodes when changed", async () => {
        const r = await render({ amiId: "ami-0fedcba9876543210", volumeSizeGb: 64 });
        for (const instance of byType(r, "aws:ec2/instance:Instance")) {
            assert.equal(instance.inputs.ami, "ami-0fedcba9876543210");
            assert.equal(instance.inputs.rootBlockDevice.volumeSize, 64);
            assert.deepEqual(instance.options.ignoreChanges, []);
        }
    });

    for (const count of [0, 1, 5]) {
        test(`workerCount ${count}`, async () => {
            const r = await render({ workerCount: count });
            assert.equal(r.error, undefined);
            const names = byType(r, "aws:ec2/instance:Instance").map((i) => i.inputs.tags.Name);
            assert.deepEqual(names, ["headnode", ...Array.from({ length: count }, (_, i) => `worker-${i + 1}`)]);
            assert.equal(r.outputs.workerPublicIps.length, count);
            assert.equal(r.outputs.workerPrivateIps.length, count);
            assert.equal(r.outputs.rayClusterStatus.aliveNodes, count + 1);
            assert.equal((r.outputs.sshConfig.match(/^Host /gm) ?? []).length, count + 1);
        });
    }
});

describe("storage", () => {
    test("four buckets, each versioned, encrypted, private, owner-enforced and TLS-only, kept on destroy", async () => {
        const r = await defaults();
        const buckets = byType(r, "aws:s3/bucket:Bucket");
        assert.deepEqual(buckets.map((b) => b.name), ["ray-cluster-staging-data", "ray-cluster-feature-store",
            "ray-cluster-model-store", "ray-cluster-results"]);
        for (const bucket of buckets) {
            const id = `${bucket.name}-id`;
            const of = (type: string) => byType(r, type).filter((x) => x.inputs.bucket === id);
            assert.equal(bucket.inputs.forceDestroy, false, "destroy never silently deletes data");
            assert.equal(bucket.inputs.acl, undefined);
            assert.deepEqual(of("aws:s3/bucketVersioning:BucketVersioning")[0].inputs.versioningConfiguration, { status: "Enabled" });
            const sse = of("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0];
            assert.equal(sse.inputs.rules[0].applyServerSideEncryptionByDefault.sseAlgorithm, "AES256");
            const pab = of("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].inputs;
            assert.deepEqual([pab.blockPublicAcls, pab.blockPublicPolicy, pab.ignorePublicAcls, pab.restrictPublicBuckets], [true, true, true, true]);
            assert.equal(of("aws:s3/bucketOwnershipControls:BucketOwnershipControls")[0].inputs.rule.objectOwnership, "BucketOwnerEnforced");
            const policy = JSON.parse(of("aws:s3/bucketPolicy:BucketPolicy")[0].inputs.policy);
            assert.deepEqual(policy.Statement[0].Effect, "Deny");
            assert.deepEqual(policy.Statement[0].Condition, { Bool: { "aws:SecureTransport": "false" } });
            assert.deepEqual(policy.Statement[0].Resource, [`arn:aws:s3:::${bucket.name}-0123456`, `arn:aws:s3:::${bucket.name}-0123456/*`]);
        }
    });

    test("bucketForceDestroy true lets destroy empty the buckets", async () => {
        const r = await render({ bucketForceDestroy: true });
        assert.ok(byType(r, "aws:s3/bucket:Bucket").every((b) => b.inputs.forceDestroy === true));
    });
});

describe("IAM", () => {
    test("the node role reaches this stack's four buckets and nothing else", async () => {
        const r = await defaults();
        const role = byType(r, "aws:iam/role:Role")[0];
        assert.equal(JSON.parse(role.inputs.assumeRolePolicy).Statement[0].Principal.Service, "ec2.amazonaws.com");
        const policy = JSON.parse(byType(r, "aws:iam/rolePolicy:RolePolicy")[0].inputs.policy);
        const arns = byType(r, "aws:s3/bucket:Bucket").map((b) => `arn:aws:s3:::${b.name}-0123456`);
        const resources = policy.Statement.flatMap((s: { Resource: string[] }) => s.Resource).sort();
        assert.deepEqual(resources, [...arns, ...arns.map((a) => `${a}/*`)].sort());
        for (const statement of policy.Statement) {
            assert.equal(statement.Effect, "Allow");
            assert.ok(statement.Action.every((a: string) => a.startsWith("s3:") && !a.includes("*")), JSON.stringify(statement.Action));
        }
        const profiles = byType(r, "aws:iam/instanceProfile:InstanceProfile").map((p) => p.inputs.role).sort();
        assert.deepEqual(profiles, ["ray-cluster-head-role-0123456", "ray-cluster-role-0123456"]);
    });
});

describe("tags and outputs", () => {
    test("every taggable resource carries the stack and project tags", async () => {
        const r = await defaults();
        // The same notion of "taggable" as the policy pack's tag policy.
        const taggable = r.resources.filter((x) => x.type.startsWith("aws:") && !UNTAGGABLE_TYPES.has(x.type));
        assert.ok(taggable.length >= 15, `${taggable.length} taggable resources`);
        for (const resource of taggable) {
            assert.equal(resource.inputs.tags?.["ray-cluster:stack"], "dev", resource.name);
            assert.equal(resource.inputs.tags?.["ray-cluster:project"], "ray-cluster", resource.name);
        }
    });

    test("outputs: IPs, bucket names, secret key, exact ssh config, tunnel and Ray address", async () => {
        const r = await defaults();
        assert.equal(r.outputs.headPublicIp, "198.51.100.10");
        assert.equal(r.outputs.headPrivateIp, "10.0.1.10");
        assert.deepEqual(r.outputs.workerPublicIps, ["198.51.100.11", "198.51.100.12"]);
        assert.deepEqual(r.outputs.workerPrivateIps, ["10.0.1.11", "10.0.1.12"]);
        assert.deepEqual(r.outputs.bucketNames, {
            stagingData: "ray-cluster-staging-data-0123456",
            featureStore: "ray-cluster-feature-store-0123456",
            modelStore: "ray-cluster-model-store-0123456",
            results: "ray-cluster-results-0123456",
        });
        assert.equal(r.outputs.sshConfig, [
            "Host headnode",
            "    HostName 198.51.100.10",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/ray-cluster-dev.pem",
            "    IdentitiesOnly yes",
            "",
            "Host worker-1",
            "    HostName 198.51.100.11",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/ray-cluster-dev.pem",
            "    IdentitiesOnly yes",
            "",
            "Host worker-2",
            "    HostName 198.51.100.12",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/ray-cluster-dev.pem",
            "    IdentitiesOnly yes",
            "",
        ].join("\n"));
        assert.equal(r.outputs.dashboardTunnel, "ssh -N -L 8265:localhost:8265 headnode");
        assert.equal(r.outputs.rayAddress, "10.0.1.10:6379");
        assert.match(r.outputs.sshPrivateKey, /BEGIN OPENSSH PRIVATE KEY/);
    });

    test("the private key and the Ray token reach the engine only as secrets", async () => {
        const r = await defaults();
        for (const start of byType(r, "command:remote:Command")) {
            assert.ok(isSecret(start.inputs.connection.privateKey) || isSecret(start.inputs.connection), start.name);
            if (start.name.endsWith("-start")) {
                assert.ok(isSecret(start.inputs.stdin), `${start.name} stdin`);
            }
        }
    });

    test("sshUser and sshIdentityFile shape the ssh config", async () => {
        const r = await render({ sshUser: "admin", sshIdentityFile: "~/keys/ray.pem", workerCount: 0 });
        assert.equal(r.outputs.sshConfig,
            "Host headnode\n    HostName 198.51.100.10\n    User admin\n    IdentityFile ~/keys/ray.pem\n    IdentitiesOnly yes\n");
    });
});
