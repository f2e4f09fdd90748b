/**
 * Elastic groups end to end: Ray's autoscaler on a booted head, with the config the stack renders, against an
 * emulated EC2 (moto) in which each instance RunInstances creates becomes a real booted host on the worker bridge, at
 * the private IP the emulator assigned, booted from the instance's own user data; Stop and Terminate power it off.
 * The head starts alone; every worker here is one the autoscaler launched.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { AUTOSCALER_ACTIONS } from "../src/elastic";
import { argumentOf, byName, byType, MOCK_ACCOUNT_ID, Rendered, render, reveal } from "../tools/render";
import { AccountFacts, authorizationsOf, decide, recordedApiCalls, roleOfProfile, rolePolicies, withTag } from "./harness/ec2-authorization";
import { destroyPlan } from "./harness/destroy";
import { roleCredentials, serveInstanceMetadata, serveLaunchedInstance } from "./harness/instance-metadata";
import { REGION, RoleCredentials } from "./harness/s3-emulator";
import { autoscalerEndpointFiles, Ec2Emulator, groupNames, Ec2Follower, Ec2Setup, UBUNTU_IMAGE } from "./harness/ec2-emulator";
import { eventually } from "./harness/eventually";
import { SecurityGroupFirewall, stackFirewall } from "./harness/firewall";
import { BootedHosts, describeOnBootedHosts, THIS_MACHINE } from "./harness/machines";
import { cleanupKeys, CommandInputs, runOverSsh } from "./harness/ssh";

const TIMEOUT_SECONDS = 90;
/** Bound on a launch: the autoscaler's next update, the boot, the install from the mirror and the join. */
const LAUNCH_SECONDS = 420;
/** The head's address on the bridge; moto gives launched workers .4 upwards in the same subnet. */
const hosts = new BootedHosts({ headnode: 31 });
const ec2 = new Ec2Emulator();
/**
 * Two zones on the one bridge: the head's (us-east-1a, the head at .31) and an elastic zone's (us-east-1b). In this
 * suite EC2 has no capacity for big in the head's zone (ZONE_REFUSAL), so every launch of big lands in the other.
 */
const SUBNET_CIDR = "10.213.0.0/25";
const OTHER_ZONE_CIDR = "10.213.0.128/25";
let ZONE_REFUSAL: string[] = [];
/**
 * Two groups that serve the same demand: big (4 vCPUs) is the autoscaler's first choice for a 3-CPU task; bigger runs
 * on the spot market, so its nodes watch for EC2's interruption notices.
 */
const GROUPS = [
    { name: "big", instanceType: "c7i.xlarge", maxCount: 1 },
    { name: "bigger", instanceType: "c7i.2xlarge", maxCount: 1, spot: true },
];
/** More CPUs than the head has: only a launched worker can run it. */
const TASK_CPUS = 3;
/**
 * Ray's cycles on top of a bound it enforces: the update (5 s) that starts a new node's updater, its last SSH probe
 * (10 s) and pause (5 s) before it checks the deadline, and the update that terminates the node (5 s).
 */
const RAY_CYCLE_SECONDS = 25;
/** Seconds an elastic worker may idle before the autoscaler terminates it (elasticIdleMinutes: 1). */
const IDLE_SECONDS = 60;
let taskEndedAt = 0;
/** Each stack instance's role credentials, as its instance metadata serves them. */
const credentials: Record<string, RoleCredentials> = {};
let rendered: Rendered;
let firewall: SecurityGroupFirewall;
let follower: Ec2Follower;
let setup: Ec2Setup;

const onHead = (text: string) => hosts.run("headnode", text);

/** What the head's autoscaler logged about an instance (Ray's monitor writes monitor.log in the session's logs). */
async function autoscalerLog(): Promise<string> {
    const { stdout } = await onHead("cat /tmp/ray/session_latest/logs/monitor.log 2>/dev/null; " +
        "journalctl -u ray-autoscaler.service --no-pager -o cat 2>/dev/null || true");
    return stdout;
}

/** The name EC2's query API gives the members of each list a node config holds (boto3 numbers them from 1). */
const QUERY_LIST_MEMBERS: Record<string, string> = { SecurityGroupIds: "SecurityGroupId", BlockDeviceMappings: "BlockDeviceMapping",
    TagSpecifications: "TagSpecification", Tags: "Tag", NetworkInterfaces: "NetworkInterface", Groups: "SecurityGroupId" };

/** A request's fields as the query parameters boto3 sends for them: `Ebs.VolumeSize`, `SecurityGroupId.1`, "true". */
function queryParams(fields: Record<string, unknown>, prefix = ""): Record<string, string> {
    const params: Record<string, string> = {};
    const put = (name: string, value: unknown) => {
        if (value !== null && typeof value === "object") {
            Object.assign(params, queryParams(value as Record<string, unknown>, `${name}.`));
        } else {
            params[name] = String(value);
        }
    };
    for (const [key, value] of Object.entries(fields)) {
        if (Array.isArray(value)) {
            assert.ok(QUERY_LIST_MEMBERS[key], `the test knows no query name for the members of ${key}`);
            value.forEach((member, i) => put(`${prefix}${QUERY_LIST_MEMBERS[key]}.${i + 1}`, member));
        } else {
            put(`${prefix}${key}`, value);
        }
    }
    return params;
}

/** A RunInstances request's tag specifications, in order: each resource type with its tags. */
function tagSpecifications(params: Record<string, string>): Array<{ type: string; tags: Record<string, string> }> {
    const specs: Array<{ type: string; tags: Record<string, string> }> = [];
    for (let n = 1; params[`TagSpecification.${n}.ResourceType`] !== undefined; n++) {
        const tags: Record<string, string> = {};
        for (let m = 1; params[`TagSpecification.${n}.Tag.${m}.Key`] !== undefined; m++) {
            tags[params[`TagSpecification.${n}.Tag.${m}.Key`]] = params[`TagSpecification.${n}.Tag.${m}.Value`];
        }
        specs.push({ type: params[`TagSpecification.${n}.ResourceType`], tags });
    }
    return specs;
}

const tagMap = (spec: { Tags: Array<{ Key: string; Value: string }> }): Record<string, string> =>
    Object.fromEntries(spec.Tags.map((tag) => [tag.Key, tag.Value]));

/** The tags Ray's autoscaler gives each instance it launches (node_launcher.py, and the provider's cluster name). */
const rayTags = (clusterName: string, group: string, launchConfig: string): Record<string, string> => ({
    "ray-cluster-name": clusterName, Name: `ray-${clusterName}-worker`, "ray-node-type": "worker",
    "ray-node-status": "uninitialized", "ray-launch-config": launchConfig, "ray-user-node-type": group,
});

describeOnBootedHosts("elastic groups: Ray's autoscaler launches and terminates booted workers", { timeout: 2_400_000 }, () => {
    before(async () => {
        hosts.up();
        ec2.start(hosts.state);
        setup = ec2.setup([`${SUBNET_CIDR}@us-east-1a`, `${OTHER_ZONE_CIDR}@us-east-1b`], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
        ZONE_REFUSAL = [`c7i.xlarge@${setup.subnets[SUBNET_CIDR]}`];
        ec2.refuse(ZONE_REFUSAL);
        const config = {
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`],
            workerCount: 0,
            elasticIdleMinutes: 1,
            workerGroups: GROUPS,
            packageIndexUrl: hosts.indexUrl,
            availabilityZone: "us-east-1a",
            elasticZones: ["us-east-1b"],
        };
        firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        // Each launched instance's metadata comes from its request: its id, type, image, IMDS options and its profile's role.
        follower = new Ec2Follower(ec2, hosts, firewall, groupNames(setup), () => hosts.createdNodes(), (id, call, spot) => {
            const role = roleOfProfile(rendered, call.iamInstanceProfileArn!).split("/").pop()!;
            serveInstanceMetadata(hosts, id, { instanceId: id, instanceType: call.instanceType!, imageId: call.imageId!,
                privateIp: call.instances!.find((i) => i.id === id)!.privateIp, region: REGION, role, credentials: roleCredentials(role),
                metadataOptions: { httpEndpoint: call.metadataOptions?.HttpEndpoint, httpTokens: call.metadataOptions?.HttpTokens }, spot });
        });
        follower.start();
        // The Ubuntu image the stack's lookup finds, as Canonical publishes it: the image the autoscaler launches.
        const ubuntuImageId = ec2.registerImage(UBUNTU_IMAGE);
        rendered = await render(config, {
            ubuntuImageId,
            // The head's calls are authorized against the stack's policies from when the render creates them.
            registered: ec2.followStackIam,
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            // The stack's subnet and group are the emulator's, so that the autoscaler's launches name real ones.
            resourceIds: { "ray-cluster-subnet": setup.subnets[SUBNET_CIDR], "ray-cluster-zones-us-east-1b-subnet": setup.subnets[OTHER_ZONE_CIDR],
                "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] },
            launchInstance: async (node, inputs, account) => {
                ec2.importKeyPair(inputs.keyName, account.publicKey);
                const id = ec2.runInstance(inputs.tags, { subnetId: inputs.subnetId, privateIp: hosts.address(node) });
                hosts.launch(node, { userData: inputs.userData, publicKey: account.publicKey, instanceId: id }, firewall,
                    autoscalerEndpointFiles(ec2.endpoint));
                credentials[node] = serveLaunchedInstance(hosts, node, id, inputs, account, REGION);
                ec2.trustKey(credentials[node].AccessKeyId, account.role!, id);
                return id;
            },
            runCommand: async (inputs, name) => hosts.namingBlocked(hosts.nodes(),
                () => runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name)),
        });
    });

    after(async () => {
        try {
            await follower?.stop();
            hosts.down();
        } finally {
            cleanupKeys();
        }
    });

    test("the head runs Ray's autoscaler with the stack's config, and launches nothing while nothing waits", async () => {
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        const { stdout } = await onHead("systemctl is-active ray-autoscaler.service; systemctl is-enabled ray-autoscaler.service; " +
            "cat ~/.ray-cluster/autoscaler.yaml");
        const [active, enabled, ...config] = stdout.split("\n");
        assert.deepEqual([active, enabled], ["active", "enabled"]);
        const create = reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs).create as string;
        assert.deepEqual(JSON.parse(config.join("\n")), JSON.parse(argumentOf(create, "--config")));
        await new Promise((resolve) => setTimeout(resolve, 15_000));
        assert.deepEqual(follower.launched(), [], "the autoscaler launched a worker with no demand");
        assert.match((await onHead("RAY_AUTH_MODE=token ~/ray-venv/bin/ray status")).stdout, /Autoscaler status/);
    });

    test("a task that asks for more than the cluster has makes the autoscaler launch a worker; one that never boots and one " +
        "whose setup fails are each terminated within their bound, with the reason logged on the head; the next joins and " +
        "runs the task", async () => {
        follower.withholdBoot(1);
        follower.failSetup(1);
        const began = Date.now();
        const placed = hosts.placeTask(TASK_CPUS, 2 * LAUNCH_SECONDS + TIMEOUT_SECONDS).then((p) => ({ ...p, seenAt: Date.now() }));
        const [broken, failing] = await eventually({ what: "the autoscaler's first two launches", timeoutSeconds: LAUNCH_SECONDS,
            intervalSeconds: 1 }, async () => (follower.launched().length >= 2 ? follower.launched() : undefined));
        assert.deepEqual([broken.booted, failing.booted, failing.setupFails], [false, true, true]);
        assert.equal(broken.instanceType, "c7i.xlarge", "big: the best fit for the task");
        const terminatedAt = (id: string) => ec2.calls("TerminateInstances").find((c) => c.instanceIds!.includes(id))?.at;
        await eventually({ what: `the never-booting ${broken.id} terminated`, timeoutSeconds: TIMEOUT_SECONDS + RAY_CYCLE_SECONDS + 10,
            intervalSeconds: 2 }, async () => terminatedAt(broken.id));
        // The stack's bound on a launched worker's SSH (AUTOSCALER_NODE_START_WAIT_S), from its launch, and no earlier.
        const waited = terminatedAt(broken.id)! - broken.launchedAt / 1000;
        assert.ok(waited >= TIMEOUT_SECONDS && waited <= TIMEOUT_SECONDS + RAY_CYCLE_SECONDS,
            `terminated ${waited.toFixed(0)}s after its launch; the bound is ${TIMEOUT_SECONDS}s (+${RAY_CYCLE_SECONDS}s of Ray's cycles)`);
        await eventually({ what: `${failing.id}, whose setup fails, terminated`, timeoutSeconds: LAUNCH_SECONDS, intervalSeconds: 2 },
            async () => terminatedAt(failing.id));
        // Its bound, from its launch: the same wait for its SSH, then its setup's one wait, for cloud-init (join-cluster.sh
        // --timeout, the same bound); its fetch from the index it cannot reach is refused at once.
        const failedAfter = terminatedAt(failing.id)! - failing.launchedAt / 1000;
        assert.ok(failedAfter <= 2 * TIMEOUT_SECONDS + RAY_CYCLE_SECONDS,
            `terminated ${failedAfter.toFixed(0)}s after its launch; the bound is 2 × ${TIMEOUT_SECONDS}s (+${RAY_CYCLE_SECONDS}s of Ray's cycles)`);
        const log = await autoscalerLog();
        assert.match(log, new RegExp(`Terminating the node with id ${broken.id} .*\\(launch failed\\)`));
        assert.match(log, new RegExp(`Terminating the node with id ${failing.id} .*\\(launch failed\\)`));
        // The head says why: its own setup command failed, and that command's output names what it could not reach.
        assert.match(log, new RegExp(`NodeUpdater: ${failing.id}: Setup commands failed`));
        assert.ok(log.includes(`install-ray: error: could not fetch uv from ${hosts.indexUrl}`), "the head's log names what the setup could not reach");
        const { doneAt, seenAt, ...where } = await placed;
        taskEndedAt = doneAt;
        const joined = follower.launched().find((i) => i.booted && !i.setupFails)!;
        assert.ok(joined, "a third launch booted and set up");
        assert.deepEqual(where, { host: `big-${joined.privateIp.replace(/\./g, "-")}`, ip: joined.privateIp,
            labels: { ...where.labels, "ray-cluster/group": "big" } });
        console.log(`demand to task done on a new node: ${((doneAt - began) / 1000).toFixed(0)}s (a launch that never booted and ` +
            `one whose setup failed included); never-booted terminated ${waited.toFixed(0)}s after its launch, setup-failed ` +
            `${failedAfter.toFixed(0)}s after its; the test saw the task's ` +
            `result ${((seenAt - doneAt) / 1000).toFixed(1)}s after the driver did`);
        const { stdout } = await hosts.run(joined.id, "hostname; systemctl is-enabled ray-worker.service; " +
            "ls ~/.ray-cluster/elastic/auth_token 2>&1 || true; sudo cat /var/lib/cloud/instance/user-data.txt");
        assert.match(stdout, /^big-10-213-0-\d+\nenabled\n.*No such file/);
        const token = reveal(byType(rendered, "random:index/randomPassword:RandomPassword")[0].outputs).result;
        assert.ok(!stdout.includes(token), "the token is not in the worker's user data");
        assert.ok(ec2.calls("RunInstances").every((c) => !(c.userData ?? "").includes(token)));
    });

    test("with no capacity for big in the head's zone, each launch of big was tried there first and landed in the other " +
        "zone's subnet, where its worker joined", async () => {
        const [headZone, otherZone] = [setup.subnets[SUBNET_CIDR], setup.subnets[OTHER_ZONE_CIDR]];
        const config = JSON.parse(argumentOf(reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs).create as string, "--config"));
        assert.deepEqual(config.available_node_types.big.node_config.SubnetIds, [headZone, otherZone], "the head's zone first");
        const launches = ec2.calls("RunInstances").filter((c) => c.instanceType === "c7i.xlarge" && c.tags?.["ray-cluster:elastic"]);
        const landed = launches.filter((c) => c.refused === undefined);
        assert.ok(landed.length >= 3, "the three launches of the test before");
        for (const call of landed) {
            const before = launches[launches.indexOf(call) - 1];
            assert.deepEqual([before?.refused, before?.subnetId], ["InsufficientInstanceCapacity", headZone],
                `${call.instances![0].id}: refused in the head's zone just before`);
            assert.equal(call.subnetId, otherZone);
            assert.match(call.instances![0].privateIp, /^10\.213\.0\.(1[3-9]\d|2[0-4]\d|25[0-4])$/, "an address of the other zone's subnet");
        }
        const joined = follower.launched().find((i) => i.booted && !i.setupFails)!;
        assert.equal(joined.request.subnetId, otherZone, "the worker that ran the task sits in the other zone");
    });

    test("each launch carries exactly its group's rendered node config, every request parameter and every recorded field " +
        "(Ray adds only its own instance tags, the count and one of the group's subnets), and its host gets that and nothing " +
        "else: the user's key pair, the autoscaler's key only through user data, the request's security groups", async () => {
        const config = JSON.parse(argumentOf(reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs).create as string, "--config"));
        const keyName = reveal(byType(rendered, "aws:ec2/keyPair:KeyPair")[0].outputs).keyName;
        const userKey = hosts.keyFor("ray-cluster-key").publicKeyOpenssh.trim();
        const autoscalerKey = reveal(byName(rendered, "ray-cluster-autoscaler-key").outputs).publicKeyOpenssh.trim();
        assert.notEqual(userKey, autoscalerKey);
        const nodeConfig = (group: string) => {
            assert.ok(group !== config.head_node_type && config.available_node_types[group], `${group}: no elastic group`);
            const type = config.available_node_types[group].node_config;
            assert.equal(type.KeyName, keyName, `${group}: the stack's key pair`);
            return type;
        };
        // The instance's tags: Ray's own, then the node config's, which win (Ray's AWS node provider, _create_node).
        const instanceTags = (group: string, launchConfig: string) => ({ ...rayTags(config.cluster_name, group, launchConfig),
            ...tagMap(nodeConfig(group).TagSpecifications.find((s: { ResourceType: string }) => s.ResourceType === "instance")) });
        // Every parameter of every RunInstances the head made, refused or not, as the emulator received it.
        const requests = ec2.apiCalls().filter((c) => c.action === "RunInstances" && c.remoteAddress === hosts.address("headnode"));
        assert.equal(requests.length, ec2.calls("RunInstances").filter((c) => c.tags?.["ray-cluster:elastic"] === "true").length,
            "the launches the emulator recorded are the head's");
        for (const { params } of requests) {
            const specs = tagSpecifications(params);
            const group = specs[0]?.tags["ray-cluster:group"] ?? "";
            const type = nodeConfig(group);
            assert.ok(type.SubnetIds.includes(params.SubnetId), `${params.SubnetId}: one of ${group}'s subnets`);
            const rest = Object.fromEntries(Object.entries(type).filter(([key]) => !["SubnetIds", "UserData", "TagSpecifications"].includes(key)));
            // Less the tags (below), the body's UserData (the emulator's own record has it) and boto3's idempotency token.
            const sent = Object.fromEntries(Object.entries(params).filter(([key]) => key !== "ClientToken" && !key.startsWith("TagSpecification.")));
            assert.deepEqual(sent, queryParams({ ...rest, MinCount: 1, MaxCount: 1, SubnetId: params.SubnetId }), `${group}: the request's parameters`);
            const launchConfig = specs[0].tags["ray-launch-config"];
            assert.match(launchConfig ?? "", /^\S+$/, "Ray's hash of the launch config");
            // Ray's instance tag specification first, then the node config's others, each resource type with its tags.
            assert.deepEqual(specs, [{ type: "instance", tags: instanceTags(group, launchConfig) },
                ...type.TagSpecifications.filter((s: { ResourceType: string }) => s.ResourceType !== "instance")
                    .map((s: { ResourceType: string; Tags: Array<{ Key: string; Value: string }> }) => ({ type: s.ResourceType, tags: tagMap(s) }))],
            `${group}: the tags of each resource the launch creates`);
            assert.equal(Object.keys(params).filter((key) => key.startsWith("TagSpecification.")).length,
                specs.reduce((n, spec) => n + 1 + 2 * Object.keys(spec.tags).length, 0), `${group}: no tag given twice or out of sequence`);
        }
        // Every field the emulator recorded of each launch that succeeded, which is what its host is made from.
        const launches = ec2.calls("RunInstances").filter((c) => c.refused === undefined && c.instances!.some((i) => !ec2.registered.has(i.id)));
        assert.ok(launches.length >= 3, "the launch that never booted, the one whose setup failed, and the one that joined");
        for (const call of launches) {
            const group = call.tags!["ray-cluster:group"];
            const type = nodeConfig(group);
            const recorded = Object.fromEntries(Object.entries(call).filter(([key]) => !["at", "action", "instances", "publicKey"].includes(key)));
            assert.deepEqual(recorded, {
                instanceType: type.InstanceType, imageId: type.ImageId, keyName: type.KeyName, subnetId: setup.subnets[OTHER_ZONE_CIDR],
                securityGroupIds: type.SecurityGroupIds, associatePublicIp: null, iamInstanceProfileArn: type.IamInstanceProfile.Arn,
                metadataOptions: queryParams(type.MetadataOptions),
                blockDeviceMappings: type.BlockDeviceMappings.map((mapping: Record<string, unknown>) => queryParams(mapping)),
                marketType: type.InstanceMarketOptions?.MarketType ?? null, userData: type.UserData,
                tags: instanceTags(group, call.tags!["ray-launch-config"]),
            }, `${call.instances![0].id}: the request`);
            assert.deepEqual(type.SecurityGroupIds, [setup.securityGroups["ray-cluster-sg"]], "the stack's group, as the emulator knows it");
            assert.equal(call.publicKey?.trim(), userKey, "EC2 serves the key pair the request named: the user's");
        }
        const joined = follower.launched().find((i) => i.booted && !i.setupFails)!;
        // Cloud-init authorized the key pair's key (the metadata's) and the autoscaler's (the user data's), and no other.
        const { stdout } = await hosts.run(joined.id, "cat ~/.ssh/authorized_keys");
        assert.deepEqual(stdout.trim().split("\n").map((line) => line.trim()).sort(), [userKey, autoscalerKey].sort());
        assert.deepEqual(firewall.groupsOf[joined.id], ["ray-cluster-sg"], "the host is in the request's groups");
    });

    test("once idle past the timeout, and not before, the worker is terminated, in the emulator and on its machine", async () => {
        const joined = follower.launched().find((i) => i.booted && !i.setupFails)!;
        await eventually({ what: `${joined.id} terminated once idle`, timeoutSeconds: IDLE_SECONDS + 180, intervalSeconds: 2 },
            async () => (joined.poweredOffAt !== undefined ? true : undefined));
        assert.match(await autoscalerLog(), new RegExp(`Terminating the node with id ${joined.id} .*\\(idle\\)`));
        assert.equal(ec2.states()[joined.id].state, "terminated");
        const terminate = ec2.calls("TerminateInstances").find((c) => c.instanceIds!.includes(joined.id))!;
        // The driver took the task's end on the head as Ray freed the worker's CPUs (give or take the moment Python
        // needs to see a result Ray's core already has), whatever the test's own process was doing then.
        const idle = terminate.at - taskEndedAt / 1000;
        assert.ok(idle >= IDLE_SECONDS - 1, `terminated after ${idle.toFixed(0)}s idle; the timeout is ${IDLE_SECONDS}s`);
        console.log(`idle to terminated: ${idle.toFixed(0)}s after the task ended (timeout ${IDLE_SECONDS}s)`);
    });

    test("with one group's launches refused by EC2, another group serves the demand", async () => {
        ec2.refuse(["c7i.xlarge"]);
        const since = Date.now() / 1000;
        try {
            const where = await hosts.placeTask(TASK_CPUS, LAUNCH_SECONDS + 120);
            assert.ok(ec2.calls("RunInstances").some((c) => c.at >= since && c.instanceType === "c7i.xlarge" && c.refused),
                "the autoscaler tried big first, and EC2 refused it");
            const fallback = follower.launched().find((i) => i.instanceType === "c7i.2xlarge" && i.booted)!;
            assert.deepEqual([where.host, where.labels["ray-cluster/group"]],
                [`bigger-${fallback.privateIp.replace(/\./g, "-")}`, "bigger"]);
        } finally {
            ec2.refuse(ZONE_REFUSAL);
        }
    });

    test("a spot interruption notice makes a launched spot worker drain itself in Ray with a deadline a margin before the notice's time: new work " +
        "goes elsewhere, its long task is retried on a replacement the autoscaler launches, and the reason is in the worker's " +
        "journal and in the head's GCS: its draining list, with that deadline, and its log", async () => {
        const spot = follower.launched().find((i) => i.instanceType === "c7i.2xlarge" && i.booted && i.poweredOffAt === undefined)!;
        assert.ok(spot, "the spot worker the refused launch left running");
        assert.equal(spot.request.marketType, "spot");
        const spotHost = `bigger-${spot.privateIp.replace(/\./g, "-")}`;
        const nodeIdOf = async (ip: string) => JSON.parse((await onHead(`RAY_AUTH_MODE=token ~/ray-venv/bin/python -c '` +
            `import json, ray; ray.init(address="auto", logging_level="ERROR"); ` +
            `print(json.dumps([n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == "${ip}"]))'`)).stdout
            .trim().split("\n").pop()!)[0] as string;
        const spotNode = await nodeIdOf(spot.privateIp);
        // More CPUs than the head has: it runs on the spot worker, and is still running when EC2 takes the worker away.
        const longTask = onHead(`RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, socket, time, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=${TASK_CPUS}, max_retries=3)
def long():
    open("/tmp/long-task-" + socket.gethostname(), "w").close()
    time.sleep(40)
    return socket.gethostname()
print(json.dumps(ray.get(long.remote(), timeout=${LAUNCH_SECONDS + 120})))
PY`);
        await eventually({ what: "the long task running on the spot worker", timeoutSeconds: 60, intervalSeconds: 1 }, async () =>
            ((await hosts.run(spot.id, `test -f /tmp/long-task-${spotHost} && echo yes || true`)).stdout.trim() === "yes" ? true : undefined));
        // What the watch costs while it waits: its own CPU time (the kernel's ticks) over 15 s of polling.
        const cpuTicks = async () => Number((await hosts.run(spot.id,
            "cut -d' ' -f14,15 /proc/$(systemctl show -p MainPID --value ray-spot-watch)/stat | tr ' ' +; echo")).stdout.trim()
            .split("+").reduce((sum, n) => sum + Number(n), 0));
        const [before, sampled] = [await cpuTicks(), Date.now()];
        await new Promise((resolve) => setTimeout(resolve, 15_000));
        const share = (await cpuTicks() - before) / 100 / ((Date.now() - sampled) / 1000);
        console.log(`the spot watch's CPU while it polls: ${(100 * share).toFixed(2)}% of one core`);
        assert.ok(share < 0.005, `the spot watch used ${(100 * share).toFixed(2)}% of a core while polling`);
        const interruptedAt = Date.now();
        const reclaimed = follower.interrupt(spot.id, "terminate", 20);
        const line = await eventually({ what: "the spot watch's drain in the worker's journal", timeoutSeconds: 15, intervalSeconds: 1 },
            async () => (await hosts.run(spot.id, "journalctl -u ray-spot-watch.service -o cat --no-pager | grep 'drained Ray node' || true"))
                .stdout.trim() || undefined);
        assert.match(line, new RegExp(`^spot-watch: EC2 spot interruption notice: terminate at \\S+Z: drained Ray node ${spotNode} ` +
            "\\(DRAIN_NODE_REASON_PREEMPTION, deadline in ([5-9]|10)s\\); it stays out of the cluster for 6[0-2]\\ds unless the instance goes first\\)$"));
        // New work that prefers the draining node lands elsewhere; before the drain it would have gone there.
        const { stdout: elsewhere } = await onHead(`RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import socket, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=1)
def where():
    return socket.gethostname()
print(ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy("${spotNode}", soft=True)).remote(), timeout=60))
PY`);
        assert.notEqual(elsewhere.trim().split("\n").pop(), spotHost, "a task went to the draining node");
        // The head's view while the node drains: the GCS lists it as draining until the notice's time.
        const draining = JSON.parse((await onHead(`RAY_AUTH_MODE=token ~/ray-venv/bin/python -c '` +
            `import json, ray; from ray._private.state import state; ray.init(address="auto", logging_level="ERROR"); ` +
            `print(json.dumps(state.get_draining_nodes()))'`)).stdout.trim().split("\n").pop()!) as Record<string, number>;
        assert.ok(spotNode in draining, `the GCS's draining nodes: ${JSON.stringify(draining)}`);
        // A 20 s notice keeps half its time as the margin (scripts/spot_watch.py): the deadline is 10 s before it.
        const noticeAt = interruptedAt + 20_000;
        assert.ok(Math.abs(draining[spotNode] - (noticeAt - 10_000)) < 4_000,
            `the drain's deadline ${draining[spotNode]} is 10 s before the notice's time ${noticeAt}`);
        await reclaimed;
        assert.ok(spot.poweredOffAt !== undefined, "EC2 took the worker at the notice's time");
        const ranOn = JSON.parse((await longTask).stdout.trim().split("\n").pop()!);
        const replacement = follower.launched().find((i) => i.launchedAt > interruptedAt && i.booted && !i.setupFails);
        assert.ok(replacement, "the autoscaler launched a replacement while the task waited");
        assert.equal(ranOn, `${replacement.instanceType === "c7i.2xlarge" ? "bigger" : "big"}-${replacement.privateIp.replace(/\./g, "-")}`,
            "the long task was retried on the replacement");
        // And the head's GCS logged the drain with its reason and the notice, which outlives the node.
        const { stdout: gcsLog } = await onHead("grep -h 'EC2 spot interruption notice' /tmp/ray/session_latest/logs/gcs_server.* || true");
        assert.match(gcsLog, new RegExp(`${spotNode}[\\s\\S]*EC2 spot interruption notice: terminate at|EC2 spot interruption notice: terminate at[\\s\\S]*${spotNode}`),
            "the drain request in the head's GCS log");
        const death = (await onHead(`RAY_AUTH_MODE=token ~/ray-venv/bin/python -c '` +
            `from ray._raylet import GcsClient; import ray; ` +
            `[print(i.death_info) for i in GcsClient(address="${hosts.address("headnode")}:6379").get_all_node_info(timeout=10).values() ` +
            `if ray.NodeID(i.node_id).hex() == "${spotNode}"]'`)).stdout.trim();
        console.log(`spot notice to the task done on a replacement: ${((Date.now() - interruptedAt) / 1000).toFixed(0)}s; ` +
            `the head's record: ${death.replace(/\s+/g, " ")}`);
    });

    test("every EC2 and IAM call Ray's autoscaler made is signed with the head role's credentials from its instance " +
        "metadata and allowed by the head's rendered policy; its launches, tags and terminations with another stack's " +
        "tags are denied", async () => {
        const fromHead = recordedApiCalls(hosts.state).filter((c) => c.remoteAddress === hosts.address("headnode"));
        assert.deepEqual([...new Set(fromHead.map((c) => c.accessKeyId))], [credentials.headnode.AccessKeyId],
            "every call from the head is signed with the key its instance metadata served");
        const headRole = byType(rendered, "aws:iam/role:Role").find((r) => r.name === "ray-cluster-head-role")!;
        const policies = rolePolicies(rendered, headRole.outputs.name);
        const facts: AccountFacts = { region: REGION, account: MOCK_ACCOUNT_ID, tagsOf: (id) => ec2.states()[id]?.tags ?? {},
            roleOfProfile: (arn) => roleOfProfile(rendered, arn) };
        const denied: string[] = [];
        const needed = new Set<string>();
        for (const call of fromHead) {
            for (const request of authorizationsOf(call, facts)) {
                needed.add(request.action);
                const decision = await decide(policies, headRole.outputs.arn, MOCK_ACCOUNT_ID, request);
                if (decision !== "Allowed") {
                    denied.push(`${call.action} → ${request.action} on ${request.resource}: ${decision}`);
                }
            }
        }
        assert.deepEqual(denied, [], "calls the head's policy does not allow");
        // The stack's list of what the autoscaler calls is exactly what it was seen to need.
        assert.deepEqual([...needed].sort(), [...AUTOSCALER_ACTIONS].sort());
        const other: AccountFacts = { ...facts, tagsOf: (id) => ({ ...facts.tagsOf(id), "ray-cluster:stack": "other" }) };
        const tagBearing = fromHead.filter((c) => ["RunInstances", "CreateTags", "TerminateInstances"].includes(c.action));
        assert.ok(["RunInstances", "CreateTags", "TerminateInstances"].every((a) => tagBearing.some((c) => c.action === a)));
        for (const call of tagBearing) {
            const decisions = await Promise.all(authorizationsOf(withTag(call, "ray-cluster:stack", "other"), other)
                .map((request) => decide(policies, headRole.outputs.arn, MOCK_ACCOUNT_ID, request)));
            assert.ok(decisions.some((d) => d !== "Allowed"), `${call.action} with another stack's tags was allowed`);
        }
        console.log(`${fromHead.length} calls from the head evaluated: ${[...needed].sort().join(", ")}`);
    });

    test("turning elasticity off takes the config from the head's autoscaler before the sweep of launched workers runs " +
        "(its resource depends on the sweep, so the engine deletes it first), and then it launches nothing more", async () => {
        // Dependents go before what they depend on: the autoscaler's resource reaches the sweep through the head.
        const byUrn = new Map(rendered.resources.map((r) => [r.urn, r]));
        const reached = new Set<string>();
        const pending = [byName(rendered, "ray-cluster-headnode-autoscaler").urn];
        while (pending.length > 0) {
            for (const urn of byUrn.get(pending.pop()!)?.dependencies ?? []) {
                if (!reached.has(urn)) {
                    reached.add(urn);
                    pending.push(urn);
                }
            }
        }
        assert.ok(reached.has(byName(rendered, "ray-cluster-launched-sweep").urn), "the autoscaler's resource depends on the sweep");
        const install = reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs) as CommandInputs & { delete: string };
        assert.match((await runOverSsh(install, install.delete, undefined, "elastic off")).stdout, /launches no more workers/);
        assert.match((await runOverSsh(install, install.delete, undefined, "elastic off again")).stdout, /nothing to remove/);
        const { stdout } = await onHead("systemctl is-active ray-autoscaler.service; ls ~/.ray-cluster/autoscaler.yaml 2>&1 || true");
        assert.match(stdout, /^active\n.*No such file/);
        // Without its config the monitor only reports: `ray status` lists each node as its own type, not Ray's head type.
        await eventually({ what: "ray status from an autoscaler without a config", timeoutSeconds: 60, intervalSeconds: 2 }, async () => {
            const status = (await onHead("RAY_AUTH_MODE=token ~/ray-venv/bin/ray status")).stdout;
            return /\bnode_[0-9a-f]+/.test(status) && !status.includes("ray.head") ? true : undefined;
        });
        // Demand that only new workers could meet: three 3-CPU bundles on three nodes, where the head has too few CPUs and
        // the running worker holds one. With its config, the autoscaler would launch two "big" workers for it.
        const since = Date.now() / 1000;
        const request = (bundles: string) => onHead("RAY_AUTH_MODE=token ~/ray-venv/bin/python -c " +
            `'import ray; from ray.autoscaler.sdk import request_resources; ray.init(address="auto", logging_level="ERROR"); ` +
            `request_resources(bundles=${bundles})'`);
        await request(`[{"CPU": ${TASK_CPUS}}] * 3`);
        try {
            await eventually({ what: "the demand in ray status", timeoutSeconds: 60, intervalSeconds: 2 }, async () => {
                const status = (await onHead("RAY_AUTH_MODE=token ~/ray-venv/bin/ray status")).stdout;
                return /request_resources/.test(status) ? true : undefined;
            });
            // Eight of the autoscaler's 5 s updates: any launch the demand caused would be recorded by now.
            await new Promise((resolve) => setTimeout(resolve, 40_000));
            assert.deepEqual(ec2.calls("RunInstances").filter((c) => c.at >= since), [], "a launch followed the demand");
        } finally {
            await request("[]");
        }
    });

    test("pulumi destroy with an elastic worker running: the head goes first, then the sweep leaves no launched instance", async () => {
        const running = follower.launched().filter((i) => i.booted && i.poweredOffAt === undefined);
        assert.equal(running.length, 1, "the spot worker's replacement still runs");
        const order = destroyPlan(rendered.resources).deletes.map((r) => r.name);
        const at = (name: string) => order.indexOf(name);
        assert.ok(at("ray-cluster-headnode") < at("ray-cluster-launched-sweep"), "the head and its autoscaler go first");
        for (const used of ["ray-cluster-sg", "ray-cluster-subnet", "ray-cluster-zones-us-east-1b-subnet", "ray-cluster-profile"]) {
            assert.ok(at("ray-cluster-launched-sweep") < at(used), `${used} goes after the sweep`);
        }
        hosts.powerOff("headnode");
        const sweep = reveal(byName(rendered, "ray-cluster-launched-sweep").inputs).delete as string;
        // As `pulumi destroy` runs it on the user's machine, with the user's credentials and region.
        const sweepRun = (text: string, env: NodeJS.ProcessEnv) => spawnSync("bash", ["-c", text],
            { cwd: path.join(__dirname, ".."), encoding: "utf8", timeout: 120_000, env: { ...process.env, AWS_ENDPOINT_URL: ec2.endpoint, ...env } });
        const result = sweepRun(sweep, { AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing", AWS_REGION: "us-east-1" });
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stdout, /terminating i-/);
        const states = ec2.states();
        const live = Object.entries(states).filter(([, s]) => s.tags["ray-cluster:elastic"] === "true" && s.state !== "terminated");
        assert.deepEqual(live, []);
        follower.sync();
        await follower.settled();
        assert.ok(running.every((i) => i.poweredOffAt !== undefined), "the worker's machine is off");
        // Run again, as for a stack whose aws:profile and aws:region name the credentials: no credentials in the
        // environment, only in that profile, which --profile must reach. It finds nothing and ends at once.
        const awsDir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-aws-"));
        try {
            fs.writeFileSync(path.join(awsDir, "credentials"), "[ml-prod]\naws_access_key_id = testing\naws_secret_access_key = testing\n");
            fs.writeFileSync(path.join(awsDir, "config"), "");
            const withoutCredentials = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined,
                AWS_PROFILE: undefined, AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined,
                // Without this the SDK would go on to ask the instance metadata address, outside the test.
                AWS_EC2_METADATA_DISABLED: "true",
                AWS_SHARED_CREDENTIALS_FILE: path.join(awsDir, "credentials"), AWS_CONFIG_FILE: path.join(awsDir, "config") };
            const again = sweepRun(`${sweep} --region us-east-1 --profile ml-prod`, withoutCredentials);
            assert.equal(again.status, 0, again.stderr);
            assert.match(again.stdout, /0 launched instance\(s\) terminated; none left/);
            const unnamed = sweepRun(`${sweep} --region us-east-1`, withoutCredentials);
            assert.notEqual(unnamed.status, 0, "without the profile the sweep found credentials elsewhere; the check above proves nothing");
        } finally {
            fs.rmSync(awsDir, { recursive: true, force: true });
        }
    });
});
