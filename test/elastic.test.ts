/**
 * Elastic groups under mocks: the autoscaler config the stack renders for Ray, the head's grants (evaluated against
 * requests by an IAM policy simulator), where the sweep of launched workers sits in the graph, and that adding,
 * resizing or removing an elastic group touches nothing else.
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AUTOSCALER_ACTIONS } from "../src/elastic";
import { diffGraphs } from "../tools/graph";
import { argumentOf, byName, byType, MOCK_ACCOUNT_ID, mockImageId, Rendered, render, reveal, StackConfig } from "../tools/render";

const CPU = { name: "cpu", instanceType: "c7i.2xlarge", minCount: 1, maxCount: 10 };
const GPU = { name: "gpu", instanceType: "g5.xlarge", maxCount: 2, spot: true };
const ELASTIC: StackConfig = { workerGroups: [CPU, GPU] };

async function rendered(config: StackConfig = ELASTIC): Promise<Rendered> {
    const r = await render(config);
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

/** The config the head's autoscaler command writes: its --config argument, as the command text carries it. */
function autoscalerConfigOf(r: Rendered): any {
    return JSON.parse(argumentOf(reveal(byName(r, "ray-cluster-headnode-autoscaler").inputs).create, "--config"));
}

describe("the autoscaler config the stack renders", () => {
    test("one node type per elastic group, in the stack's subnet, groups, profile, key and image, encrypted gp3, IMDSv2", async () => {
        const r = await rendered();
        const config = autoscalerConfigOf(r);
        assert.equal(config.cluster_name, "ray-cluster-dev");
        assert.equal(config.max_workers, 12);
        assert.equal(config.idle_timeout_minutes, 5);
        assert.deepEqual(config.provider, { type: "aws", region: "us-east-1", cache_stopped_nodes: false, use_internal_ips: true });
        assert.deepEqual(Object.keys(config.available_node_types).sort(), ["cpu", "gpu", "ray.head"]);
        assert.deepEqual(config.available_node_types["ray.head"], { min_workers: 0, max_workers: 0, resources: {}, node_config: {} });
        const sg = `${byType(r, "aws:ec2/securityGroup:SecurityGroup")[0].name}-id`;
        const subnet = `${byType(r, "aws:ec2/subnet:Subnet")[0].name}-id`;
        const cpu = config.available_node_types.cpu;
        assert.deepEqual([cpu.min_workers, cpu.max_workers, cpu.resources, cpu.labels], [1, 10, { CPU: 8 }, { "ray-cluster/group": "cpu" }]);
        const node = cpu.node_config;
        assert.deepEqual(node.SubnetIds, [subnet], "a list: Ray ignores a singular SubnetId");
        assert.equal(node.SubnetId, undefined);
        assert.deepEqual(node.SecurityGroupIds, [sg]);
        assert.equal(node.KeyName, byType(r, "aws:ec2/keyPair:KeyPair")[0].outputs.keyName);
        assert.equal(node.IamInstanceProfile.Arn, byName(r, "ray-cluster-profile").outputs.arn, "the workers' profile, not the head's");
        assert.equal(node.ImageId, "ami-0123456789abcdef0");
        assert.deepEqual(node.MetadataOptions, { HttpEndpoint: "enabled", HttpTokens: "required", HttpPutResponseHopLimit: 1 });
        assert.deepEqual(node.BlockDeviceMappings, [{ DeviceName: "/dev/sda1",
            Ebs: { VolumeSize: 20, VolumeType: "gp3", Encrypted: true, DeleteOnTermination: true } }]);
        assert.equal(node.InstanceMarketOptions, undefined);
        const stackTags = { "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "dev", Name: "cpu-elastic", "ray-cluster:group": "cpu",
            "ray-cluster:elastic": "true" };
        // Ray adds its own tags, the cluster name among them, to the instance's; the volume's carry the name from here.
        assert.deepEqual(node.TagSpecifications.map((spec: { Tags: Array<{ Key: string; Value: string }> }) =>
            Object.fromEntries(spec.Tags.map((t) => [t.Key, t.Value]))), [stackTags, { ...stackTags, "ray-cluster-name": "ray-cluster-dev" }]);
        assert.deepEqual(node.TagSpecifications.map((s: { ResourceType: string }) => s.ResourceType), ["instance", "volume"]);
        const gpu = config.available_node_types.gpu;
        assert.deepEqual(gpu.resources, { CPU: 4, GPU: 1 });
        assert.equal(gpu.node_config.ImageId, "ami-0d1a0123456789abc", "the Deep Learning AMI");
        assert.equal(gpu.node_config.BlockDeviceMappings[0].Ebs.VolumeSize, 150);
        assert.deepEqual(gpu.node_config.InstanceMarketOptions,
            { MarketType: "spot", SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" } });
        assert.deepEqual(cpu.worker_setup_commands, ["bash ~/.ray-cluster/elastic/join-cluster.sh --group cpu --version 2.60.0 " +
            "--port 6379 --installer uv --timeout 600 --num-cpus 8"]);
        // A spot group's nodes also install the spot watch; the on-demand cpu group's do not.
        assert.match(gpu.worker_setup_commands[0], /--num-cpus 4 --num-gpus 1 --spot$/);
        assert.deepEqual(config.file_mounts, { "~/.ray-cluster/elastic": "~/.ray-cluster/elastic" });
        assert.deepEqual(config.auth, { ssh_user: "ubuntu", ssh_private_key: "~/.ray-cluster/autoscaler-key" });
        // Every top-level key Ray's autoscaler reads directly is set, so its defaults add nothing that looks up AWS.
        for (const key of ["cluster_name", "max_workers", "idle_timeout_minutes", "provider", "auth", "available_node_types",
            "head_node_type", "file_mounts", "cluster_synced_files", "worker_setup_commands", "worker_start_ray_commands"]) {
            assert.ok(key in config, key);
        }
    });

    test("private workers launch through an interface without a public IP; elasticIdleMinutes is Ray's idle timeout", async () => {
        const r = await rendered({ workerNetwork: "private", elasticIdleMinutes: 12, workerGroups: [CPU] });
        const config = autoscalerConfigOf(r);
        assert.equal(config.idle_timeout_minutes, 12);
        const node = config.available_node_types.cpu.node_config;
        const privateSubnet = byType(r, "aws:ec2/subnet:Subnet").find((s) => s.name.endsWith("private-subnet"))!;
        assert.deepEqual(node.SubnetIds, [`${privateSubnet.name}-id`]);
        assert.equal(node.NetworkInterfaces[0].AssociatePublicIpAddress, false);
        assert.equal(node.NetworkInterfaces[0].SubnetId, `${privateSubnet.name}-id`);
    });

    test("no secret in the config, the user data or the command line: the token and the head's key travel elsewhere", async () => {
        const r = await rendered();
        const command = reveal(byName(r, "ray-cluster-headnode-autoscaler").inputs);
        const token = byType(r, "random:index/randomPassword:RandomPassword")[0].outputs.result;
        assert.ok(!command.create.includes(token));
        assert.doesNotMatch(command.create, /PRIVATE KEY/);
        assert.match(command.stdin, /PRIVATE KEY/, "the head's login key for launched workers comes on stdin");
        const config = autoscalerConfigOf(r);
        const userData = config.available_node_types.cpu.node_config.UserData;
        // The autoscaler's own key, not the stack's: each key resource has its own under the mocks.
        const keys = byType(r, "tls:index/privateKey:PrivateKey");
        const autoscalerKey = keys.find((k) => k.name.endsWith("-autoscaler-key"))!;
        const stackKey = keys.find((k) => k !== autoscalerKey)!;
        assert.equal(userData, `#cloud-config\npreserve_hostname: true\nssh_authorized_keys:\n  - ${autoscalerKey.outputs.publicKeyOpenssh.trim()}\n`);
        assert.notEqual(autoscalerKey.outputs.publicKeyOpenssh, stackKey.outputs.publicKeyOpenssh);
        assert.ok(!JSON.stringify(config).includes(token));
    });

    test("the head carries Ray's head tags only with elastic groups, and has a role of its own", async () => {
        const head = (r: Rendered) => byType(r, "aws:ec2/instance:Instance").find((i) => i.inputs.tags.Name === "headnode")!;
        const elastic = head(await rendered());
        assert.equal(elastic.inputs.tags["ray-cluster-name"], "ray-cluster-dev");
        assert.equal(elastic.inputs.tags["ray-node-type"], "head");
        assert.equal(elastic.inputs.tags["ray-user-node-type"], "ray.head");
        assert.equal(elastic.inputs.iamInstanceProfile, "ray-cluster-head-profile-0123456");
        assert.equal(head(await rendered({})).inputs.tags["ray-cluster-name"], undefined);
    });

    test("outputs name each elastic group's bounds and how to reach a launched worker", async () => {
        const r = await rendered();
        // rayClusterStatus: each elastic group's bounds and the nodes it has now, as verify counts them by label.
        assert.match(reveal(byName(r, "ray-cluster-verify").inputs).create, /--count-group cpu --count-group gpu$/);
        assert.deepEqual(r.outputs.rayClusterStatus.groups.cpu, { minCount: 1, maxCount: 10, current: 0 });
        assert.deepEqual(r.outputs.rayClusterStatus.groups.gpu, { minCount: 0, maxCount: 2, current: 0 });
        assert.equal(r.outputs.rayClusterStatus.elasticNodes, undefined);
        assert.match(r.outputs.elasticGroups, /^cpu: 1 to 10 × c7i\.2xlarge; gpu: 0 to 2 × g5\.xlarge;/);
        assert.match(r.outputs.elasticGroups, /ssh -J headnode -i ~\/\.ssh\/ray-cluster-dev\.pem ubuntu@<its private IP>/);
        assert.equal((await rendered({})).outputs.elasticGroups, "none");
    });
});

describe("the sweep of launched workers", () => {
    test("runs on the user's machine, by tag, and sits between the head and what the workers use", async () => {
        const r = await rendered();
        const sweep = byName(r, "ray-cluster-launched-sweep");
        assert.equal(sweep.type, "command:local:Command");
        assert.equal(sweep.inputs.delete, "node scripts/terminate-launched.js --tag ray-cluster:project=ray-cluster " +
            "--tag ray-cluster:stack=dev --tag ray-cluster-name=ray-cluster-dev --tag ray-cluster:elastic=true --timeout 600");
        const head = byType(r, "aws:ec2/instance:Instance").find((i) => i.inputs.tags.Name === "headnode")!;
        // The head depends on the sweep, so a destroy terminates the head (and its autoscaler) first.
        assert.ok(head.dependencies.includes(sweep.urn));
        // The sweep depends on the security groups, the subnets and the workers' role, which go only after it.
        for (const type of ["aws:ec2/securityGroup:SecurityGroup", "aws:ec2/subnet:Subnet", "aws:iam/instanceProfile:InstanceProfile"]) {
            assert.ok(byType(r, type).some((x) => sweep.dependencies.includes(x.urn)), type);
        }
        const install = byName(r, "ray-cluster-headnode-autoscaler");
        assert.equal(install.options.deletedWith, head.urn);
        assert.ok(install.inputs.delete.includes("remove-autoscaler.sh"));
        assert.equal(byType(await rendered({}), "command:local:Command").length, 0, "no elastic group, no sweep");
    });

    test("reaches the account and region of the stack's provider when they are set only in Pulumi config", async () => {
        const r = await rendered({ ...ELASTIC, "aws:region": "eu-west-1", "aws:profile": "ml-prod" });
        assert.match(byName(r, "ray-cluster-launched-sweep").inputs.delete,
            /^node scripts\/terminate-launched\.js --region eu-west-1 --profile ml-prod --tag /);
    });
});

describe("the head's grants, evaluated against requests", () => {
    const ARN = (resource: string) => `arn:aws:ec2:us-east-1:${MOCK_ACCOUNT_ID}:${resource}`;
    const STACK_TAGS = { "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "dev", "ray-cluster-name": "ray-cluster-dev",
        "ray-cluster:elastic": "true" };
    let policy: any;
    const policyOf = (r: Rendered) => JSON.parse(byName(r, "ray-cluster-autoscaler").inputs.policy);
    async function decide(action: string, resource: string, context: Record<string, string | string[]>): Promise<string> {
        policy ??= policyOf(await rendered());
        return decideBy(policy, action, resource, context);
    }
    async function decideBy(policy: unknown, action: string, resource: string, context: Record<string, string | string[]>): Promise<string> {
        const result = await runSimulation({
            identityPolicies: [{ name: "autoscaler", policy }],
            serviceControlPolicies: [],
            resourceControlPolicies: [],
            resourcePolicy: undefined,
            request: { action, principal: `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/ray-cluster-head-role-0123456`,
                resource: { accountId: MOCK_ACCOUNT_ID, resource }, contextVariables: context },
        } as any, {});
        assert.notEqual(result.resultType, "error", JSON.stringify((result as any).errors));
        return (result as any).overallResult;
    }
    const requestTags = (tags: Record<string, string>) => ({
        ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])), "aws:TagKeys": Object.keys(tags),
    });
    const resourceTags = (tags: Record<string, string>) => Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));

    test("a launch with the stack's tags is allowed; without them, or with another stack's, it is denied", async () => {
        assert.equal(await decide("ec2:RunInstances", ARN("instance/*"), requestTags(STACK_TAGS)), "Allowed");
        assert.equal(await decide("ec2:RunInstances", ARN("instance/*"), {}), "ImplicitlyDenied");
        assert.equal(await decide("ec2:RunInstances", ARN("instance/*"), requestTags({ ...STACK_TAGS, "ray-cluster:stack": "prod" })),
            "ImplicitlyDenied");
        assert.equal(await decide("ec2:RunInstances", ARN("volume/*"), requestTags({ "ray-cluster:project": "ray-cluster" })),
            "ImplicitlyDenied");
        assert.equal(await decide("ec2:RunInstances", ARN("subnet/subnet-0other0000000000"), {}), "ImplicitlyDenied",
            "only the stack's own subnet");
    });

    test("the volume tags in the node config, as Ray sends them (it adds its cluster name to the instance's tags only), " +
        "are allowed", async () => {
        const nodeConfig = autoscalerConfigOf(await rendered()).available_node_types.cpu.node_config;
        const tagsOf = (type: string) => Object.fromEntries(nodeConfig.TagSpecifications
            .find((t: { ResourceType: string }) => t.ResourceType === type).Tags.map((t: { Key: string; Value: string }) => [t.Key, t.Value]));
        assert.equal(await decide("ec2:RunInstances", ARN("volume/*"), requestTags(tagsOf("volume"))), "Allowed");
        assert.equal(await decide("ec2:RunInstances", ARN("instance/*"),
            requestTags({ ...tagsOf("instance"), "ray-cluster-name": "ray-cluster-dev", "ray-node-type": "worker" })), "Allowed");
    });

    const SPOT_ROLE = `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot`;
    const IMAGE = (id: string) => `arn:aws:ec2:us-east-1::image/${id}`;
    /** Each node type's image, as the rendered config names it. */
    const imagesOf = (r: Rendered) => Object.values(autoscalerConfigOf(r).available_node_types as Record<string, { node_config: { ImageId?: string } }>)
        .map((t) => t.node_config.ImageId).filter((id): id is string => id !== undefined);

    test("a spot group's launch tags its spot request with the stack's tags, and the head may create and tag that request; " +
        "an untagged or another stack's spot request is denied", async () => {
        const gpu = autoscalerConfigOf(await rendered()).available_node_types.gpu.node_config;
        const spec = gpu.TagSpecifications.find((t: { ResourceType: string }) => t.ResourceType === "spot-instances-request");
        assert.ok(spec, "the spot group's launch tags its spot request");
        const tags = Object.fromEntries(spec.Tags.map((t: { Key: string; Value: string }) => [t.Key, t.Value]));
        assert.equal(await decide("ec2:RunInstances", ARN("spot-instances-request/*"), requestTags(tags)), "Allowed");
        assert.equal(await decide("ec2:CreateTags", ARN("spot-instances-request/*"), { ...requestTags(tags), "ec2:CreateAction": "RunInstances" }),
            "Allowed");
        assert.equal(await decide("ec2:RunInstances", ARN("spot-instances-request/*"), {}), "ImplicitlyDenied");
        assert.equal(await decide("ec2:RunInstances", ARN("spot-instances-request/*"), requestTags({ ...tags, "ray-cluster:stack": "prod" })),
            "ImplicitlyDenied");
        // An on-demand group's launch creates no spot request, and a tag for one would make EC2 refuse the launch.
        const cpu = autoscalerConfigOf(await rendered()).available_node_types.cpu.node_config;
        assert.deepEqual(cpu.TagSpecifications.map((t: { ResourceType: string }) => t.ResourceType), ["instance", "volume"]);
    });

    test("with a spot group, the head may have EC2 create the spot service-linked role, and no other role", async () => {
        assert.equal(await decide("iam:CreateServiceLinkedRole", SPOT_ROLE, { "iam:AWSServiceName": "spot.amazonaws.com" }), "Allowed");
        assert.equal(await decide("iam:CreateServiceLinkedRole",
            `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/aws-service-role/elasticloadbalancing.amazonaws.com/AWSServiceRoleForElasticLoadBalancing`,
            { "iam:AWSServiceName": "elasticloadbalancing.amazonaws.com" }), "ImplicitlyDenied");
        assert.equal(await decide("iam:CreateServiceLinkedRole", SPOT_ROLE, { "iam:AWSServiceName": "spotfleet.amazonaws.com" }), "ImplicitlyDenied");
    });

    test("without a spot group, the head gets neither the spot request nor the service-linked role", async () => {
        const onDemand = policyOf(await rendered({ workerGroups: [CPU] }));
        const tags = { ...STACK_TAGS, Name: "cpu-elastic", "ray-cluster:group": "cpu" };
        assert.equal(await decideBy(onDemand, "ec2:RunInstances", ARN("spot-instances-request/*"), requestTags(tags)), "ImplicitlyDenied");
        assert.equal(await decideBy(onDemand, "iam:CreateServiceLinkedRole", SPOT_ROLE, { "iam:AWSServiceName": "spot.amazonaws.com" }),
            "ImplicitlyDenied");
        // The same launch is allowed where a group is spot: the denial above is the missing grant, not the request.
        assert.equal(await decide("ec2:RunInstances", ARN("spot-instances-request/*"), requestTags(tags)), "Allowed");
    });

    test("a launch from an image a node type names is allowed; from any other image in the region, denied", async () => {
        const r = await rendered();
        const images = imagesOf(r);
        assert.deepEqual([...images].sort(), ["ami-0123456789abcdef0", "ami-0d1a0123456789abc"]);
        for (const id of images) {
            assert.equal(await decide("ec2:RunInstances", IMAGE(id), {}), "Allowed", id);
        }
        assert.equal(await decide("ec2:RunInstances", IMAGE("ami-0badbadbadbadbad0"), {}), "ImplicitlyDenied");
    });

    test("with Ray-ready images, the head may launch the built image and not the base it was built from", async () => {
        const r = await rendered({ rayImage: true, workerGroups: [CPU] });
        const built = mockImageId(byName(r, "ray-cluster-image-ubuntu").inputs.name);
        assert.deepEqual(imagesOf(r), [built]);
        const own = policyOf(r);
        assert.equal(await decideBy(own, "ec2:RunInstances", IMAGE(built), {}), "Allowed");
        assert.equal(await decideBy(own, "ec2:RunInstances", IMAGE("ami-0123456789abcdef0"), {}), "ImplicitlyDenied", "the Ubuntu base");
    });

    test("terminating this stack's launched worker is allowed; another stack's instance, or this stack's own nodes, denied", async () => {
        assert.equal(await decide("ec2:TerminateInstances", ARN("instance/i-0launched"), resourceTags(STACK_TAGS)), "Allowed");
        assert.equal(await decide("ec2:TerminateInstances", ARN("instance/i-0other"),
            resourceTags({ ...STACK_TAGS, "ray-cluster:stack": "other" })), "ImplicitlyDenied");
        // The head and the static workers carry the stack's tags but not the elastic mark.
        const staticTags = Object.fromEntries(Object.entries(STACK_TAGS).filter(([key]) => key !== "ray-cluster:elastic"));
        assert.equal(await decide("ec2:TerminateInstances", ARN("instance/i-0head"), resourceTags(staticTags)), "ImplicitlyDenied");
    });

    test("passing the workers' role to EC2 is allowed; any other role, or to another service, denied", async () => {
        const workerRole = `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/ray-cluster-role-0123456`;
        assert.equal(await decide("iam:PassRole", workerRole, { "iam:PassedToService": "ec2.amazonaws.com" }), "Allowed");
        assert.equal(await decide("iam:PassRole", `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/ray-cluster-head-role-0123456`,
            { "iam:PassedToService": "ec2.amazonaws.com" }), "ImplicitlyDenied");
        assert.equal(await decide("iam:PassRole", `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/admin`,
            { "iam:PassedToService": "ec2.amazonaws.com" }), "ImplicitlyDenied");
        assert.equal(await decide("iam:PassRole", workerRole, { "iam:PassedToService": "lambda.amazonaws.com" }), "ImplicitlyDenied");
    });

    test("the policy grants exactly the actions the stack lists for the autoscaler (AUTOSCALER_ACTIONS), each confined", async () => {
        policy ??= JSON.parse(byName(await rendered(), "ray-cluster-autoscaler").inputs.policy);
        const statements = policy.Statement as Array<{ Action: string[]; Resource: string | string[]; Condition?: unknown }>;
        assert.deepEqual([...new Set(statements.flatMap((st) => st.Action))].sort(), [...AUTOSCALER_ACTIONS].sort());
        // Only DescribeInstances, which has no resource-level permissions, is granted on "*", and without condition.
        assert.deepEqual(statements.filter((st) => st.Resource === "*" || (Array.isArray(st.Resource) && st.Resource.includes("*")))
            .flatMap((st) => st.Action), ["ec2:DescribeInstances"]);
    });

    test("tags go on only at launch or on launched workers", async () => {
        assert.equal(await decide("ec2:CreateTags", ARN("instance/i-0new"), { "ec2:CreateAction": "RunInstances" }), "Allowed");
        assert.equal(await decide("ec2:CreateTags", ARN("instance/i-0launched"), resourceTags(STACK_TAGS)), "Allowed");
        assert.equal(await decide("ec2:CreateTags", ARN("instance/i-0other"), resourceTags({ "ray-cluster:stack": "other" })),
            "ImplicitlyDenied");
    });
});

describe("safe change: elastic groups", () => {
    async function diff(before: StackConfig, after: StackConfig) {
        const [a, b] = [await rendered(before), await rendered(after)];
        return diffGraphs(a.resources, b.resources);
    }
    const replaced = (d: Awaited<ReturnType<typeof diff>>) => d.changed.filter((c) => c.replacedBy.length > 0).map((c) => c.name);

    test("resizing an elastic group changes only the autoscaler's config on the head", async () => {
        const d = await diff(ELASTIC, { workerGroups: [{ ...CPU, maxCount: 20 }, GPU] });
        assert.deepEqual([d.added, d.removed], [[], []]);
        assert.deepEqual(d.changed.map((c) => c.name), ["ray-cluster-headnode-autoscaler"]);
        assert.deepEqual(replaced(d), []);
    });

    test("adding or removing one of several elastic groups changes only the config, and the check that counts them", async () => {
        // An on-demand group on an image another group boots already: the head's grants stay as they are.
        const more: StackConfig = { workerGroups: [CPU, { name: "cpu2", instanceType: "c7i.xlarge", maxCount: 3 }] };
        for (const [before, after] of [[{ workerGroups: [CPU] }, more], [more, { workerGroups: [CPU] }]]) {
            const d = await diff(before, after);
            assert.deepEqual([d.added, d.removed], [[], []]);
            // The cluster check re-runs on the head to count the group's nodes, and only reads.
            assert.deepEqual(d.changed.map((c) => c.name).sort(), ["ray-cluster-headnode-autoscaler", "ray-cluster-verify"]);
            assert.deepEqual(replaced(d), []);
        }
    });

    test("adding or removing a spot group on an image of its own also updates the head's grants, in place", async () => {
        for (const [before, after] of [[{ workerGroups: [CPU] }, ELASTIC], [ELASTIC, { workerGroups: [CPU] }]]) {
            const d = await diff(before, after);
            assert.deepEqual([d.added, d.removed], [[], []]);
            assert.deepEqual(d.changed.map((c) => c.name).sort(), ["ray-cluster-autoscaler", "ray-cluster-headnode-autoscaler", "ray-cluster-verify"]);
            assert.deepEqual(replaced(d), []);
        }
    });

    test("turning elasticity on or off adds or removes its own resources and replaces nothing", async () => {
        for (const [before, after] of [[{}, ELASTIC], [ELASTIC, {}]]) {
            const d = await diff(before, after);
            assert.deepEqual(replaced(d), [], JSON.stringify(d.changed));
            const own = [...d.added, ...d.removed];
            assert.ok(own.length > 0 && own.every((name) => /autoscaler|launched-sweep|^ray-cluster$/.test(name)), own.join(", "));
            // The head only gains or loses Ray's tags, in place; the cluster check re-runs to count the groups.
            assert.deepEqual(d.changed.map((c) => c.name).sort(), ["ray-cluster-headnode", "ray-cluster-verify"]);
        }
    });
});
