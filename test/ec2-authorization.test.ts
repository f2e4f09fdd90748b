/**
 * The EC2 emulator refuses what AWS refuses, when the call is made: moto's server on this machine's loopback, asked
 * with requests signed by the AWS SDK as a session of the stack's rendered head role (its keys as IMDS would hand them
 * out), launching what the rendered autoscaler config launches, as Ray's node provider sends it.
 */
import { EC2Client, RunInstancesCommand, RunInstancesCommandInput, TerminateInstancesCommand, CreateVolumeCommand } from "@aws-sdk/client-ec2";
import * as assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { argumentOf, byName, byType, Rendered, render, reveal } from "../tools/render";
import { authorizationsOf, roleOfProfile } from "./harness/ec2-authorization";
import { CANONICAL_OWNER, EC2_EMULATOR_PYTHON, Ec2Call, Ec2Emulator, Ec2Follower, Ec2Setup, FollowingHosts } from "./harness/ec2-emulator";
import { SecurityGroupFirewall } from "./harness/firewall";
import { roleCredentials } from "./harness/instance-metadata";

const GROUPS = [
    { name: "big", instanceType: "c7i.xlarge", maxCount: 1 },
    { name: "bigger", instanceType: "c7i.2xlarge", maxCount: 1, spot: true },
];
const UBUNTU = { imageId: "ami-0c0ffee0123456789", name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101",
    ownerId: CANONICAL_OWNER, public: true };
const SPOT_REQUESTS = "arn:aws:ec2:us-east-1:123456789012:spot-instances-request/*";
const skip = !fs.existsSync(EC2_EMULATOR_PYTHON) && "the EC2 emulator is not installed (bash tools/ec2-emulator.sh); npm test installs it";

/** A refused call's code and message, as the SDK surfaces EC2's error; or the launched instance's id. */
async function outcome(send: () => Promise<{ Instances?: Array<{ InstanceId?: string }> } | object>): Promise<{ id?: string; code?: string; message?: string }> {
    try {
        const result = await send() as { Instances?: Array<{ InstanceId?: string }> };
        return { id: result.Instances?.[0]?.InstanceId ?? "ok" };
    } catch (e) {
        return { code: (e as { name: string }).name, message: (e as Error).message };
    }
}

describe("the EC2 emulator authorizes each call when it is made, against the signer's role", { skip }, () => {
    const ec2 = new Ec2Emulator();
    let state: string;
    let setup: Ec2Setup;
    let rendered: Rendered;
    let headRole: string;
    let client: EC2Client;
    let clusterName: string;

    /** The head role's policies as rendered, or as `edit` leaves them, are what the emulator holds from now on. */
    function headPolicy(edit?: (policy: any) => void): void {
        const copy = structuredClone(rendered.resources);
        const autoscaler = copy.find((r) => r.name === "ray-cluster-autoscaler")!;
        const policy = JSON.parse(reveal(autoscaler.inputs).policy);
        edit?.(policy);
        autoscaler.inputs = { ...reveal(autoscaler.inputs), policy: JSON.stringify(policy) };
        ec2.loadStackIam({ ...rendered, resources: copy });
    }

    /** The RunInstances request Ray's node provider makes for a group: its node config, Ray's tags, its first subnet. */
    function launchOf(group: string, change: Partial<RunInstancesCommandInput> = {}): RunInstancesCommandInput {
        const config = JSON.parse(argumentOf(reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs).create as string, "--config"));
        const { SubnetIds, UserData, TagSpecifications, ...node } = config.available_node_types[group].node_config;
        const specs = (TagSpecifications as Array<{ ResourceType: string; Tags: Array<{ Key: string; Value: string }> }>).map((spec) =>
            spec.ResourceType === "instance" ? { ...spec, Tags: [{ Key: "ray-cluster-name", Value: clusterName },
                { Key: "ray-node-type", Value: "worker" }, { Key: "ray-user-node-type", Value: group }, ...spec.Tags] } : spec);
        return { ...node, SubnetId: SubnetIds[0], UserData: Buffer.from(UserData).toString("base64"), TagSpecifications: specs,
            MinCount: 1, MaxCount: 1, ...change } as RunInstancesCommandInput;
    }

    before(async () => {
        state = fs.mkdtempSync(path.join(os.tmpdir(), "ec2-authorization-"));
        await ec2.startOnLoopback(state, { iamWaitSeconds: 2 });
        setup = ec2.setup(["10.213.0.0/24@us-east-1a"], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
        ec2.registerImage(UBUNTU);
        rendered = await render({ workerCount: 0, workerGroups: GROUPS }, { ubuntuImageId: UBUNTU.imageId,
            resourceIds: { "ray-cluster-subnet": setup.subnets["10.213.0.0/24"], "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] } });
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        clusterName = JSON.parse(argumentOf(reveal(byName(rendered, "ray-cluster-headnode-autoscaler").inputs).create as string, "--config"))
            .cluster_name;
        const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), "ec2-authorization-key-"));
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(keyDir, "key")]);
        ec2.importKeyPair(reveal(byType(rendered, "aws:ec2/keyPair:KeyPair")[0].outputs).keyName, fs.readFileSync(path.join(keyDir, "key.pub"), "utf8"));
        fs.rmSync(keyDir, { recursive: true, force: true });
        // The head's session, as its instance metadata hands it out.
        headRole = byType(rendered, "aws:iam/role:Role").find((r) => r.name === "ray-cluster-head-role")!.outputs.name;
        const credentials = roleCredentials(headRole);
        ec2.trustKey(credentials.AccessKeyId, headRole, "i-0head");
        client = new EC2Client({ region: "us-east-1", endpoint: ec2.endpoint, maxAttempts: 1,
            credentials: { accessKeyId: credentials.AccessKeyId, secretAccessKey: credentials.SecretAccessKey, sessionToken: credentials.Token } });
    });

    after(async () => {
        client?.destroy();
        await ec2.stopLoopback();
        fs.rmSync(state, { recursive: true, force: true });
    });

    test("a launch of big, as the head's autoscaler sends it, is allowed on each resource the launch names and " +
        "goes through", async () => {
        headPolicy();
        const result = await outcome(() => client.send(new RunInstancesCommand(launchOf("big"))));
        assert.match(result.id ?? "", /^i-/, JSON.stringify(result));
        const call = ec2.apiCalls().filter((c) => c.action === "RunInstances").pop()!;
        assert.equal(call.decision?.allowed, true);
        assert.equal(call.decision?.principal, `arn:aws:sts::123456789012:assumed-role/${headRole}/i-0head`);
        const arn = (resource: string) => `arn:aws:ec2:us-east-1:123456789012:${resource}`;
        assert.deepEqual(call.decision!.requests.map((r) => `${r.action} ${r.resource} ${r.result}`).sort(), [
            `ec2:CreateTags ${arn("instance/*")} Allowed`, `ec2:CreateTags ${arn("volume/*")} Allowed`,
            `ec2:RunInstances ${arn("instance/*")} Allowed`, `ec2:RunInstances ${arn(`key-pair/${call.params.KeyName}`)} Allowed`,
            `ec2:RunInstances ${arn("network-interface/*")} Allowed`, `ec2:RunInstances ${arn(`security-group/${setup.securityGroups["ray-cluster-sg"]}`)} Allowed`,
            `ec2:RunInstances ${arn(`subnet/${setup.subnets["10.213.0.0/24"]}`)} Allowed`, `ec2:RunInstances ${arn("volume/*")} Allowed`,
            `ec2:RunInstances arn:aws:ec2:us-east-1::image/${UBUNTU.imageId} Allowed`,
            `iam:PassRole ${byName(rendered, "ray-cluster-role").outputs.arn} Allowed`,
        ].sort());
        // The image's condition keys come from what the account holds of it: Canonical's, public.
        const image = call.decision!.requests.find((r) => r.resource.endsWith(`image/${UBUNTU.imageId}`))!;
        assert.deepEqual([image.context["ec2:Owner"], image.context["ec2:Public"]], [CANONICAL_OWNER, "true"]);
        assert.equal(ec2.calls("RunInstances").pop()?.refused, undefined);
        // A test that evaluates the recorded call again afterwards (e2e-elastic's) gets the same requests.
        assert.deepEqual(authorizationsOf(call, { region: "us-east-1", account: "123456789012", tagsOf: () => ({}),
            roleOfProfile: (profile) => roleOfProfile(rendered, profile) }), call.decision!.requests.map((r) => ({ action: r.action, resource: r.resource, context: r.context })));
    });

    test("a spot launch under the head's policy without its spot grant (13d7a6e's grants: no spot request, no service-linked role) is refused as EC2 refuses it, " +
        "naming the spot request; under the rendered policy it goes through, EC2 creating the spot service-linked role once", async () => {
        headPolicy((policy) => {
            for (const statement of policy.Statement) {
                statement.Resource = [statement.Resource].flat().filter((r: string) => !r.includes("spot-instances-request"));
            }
            policy.Statement = policy.Statement.filter((s: { Sid: string }) => s.Sid !== "CreateSpotServiceRole");
        });
        const denied = await outcome(() => client.send(new RunInstancesCommand(launchOf("bigger"))));
        assert.equal(denied.code, "UnauthorizedOperation", JSON.stringify(denied));
        assert.equal(denied.message, `You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/` +
            `${headRole}/i-0head is not authorized to perform: ec2:RunInstances on resource: ${SPOT_REQUESTS} because no identity-based ` +
            "policy allows the ec2:RunInstances action");
        assert.equal(ec2.calls("RunInstances").pop()?.refused, "UnauthorizedOperation", "the launch is recorded as refused");
        headPolicy();
        const first = await outcome(() => client.send(new RunInstancesCommand(launchOf("bigger"))));
        assert.match(first.id ?? "", /^i-/, JSON.stringify(first));
        const second = await outcome(() => client.send(new RunInstancesCommand(launchOf("bigger"))));
        assert.match(second.id ?? "", /^i-/, JSON.stringify(second));
        const [, firstCall, secondCall] = ec2.apiCalls().filter((c) => c.params["InstanceMarketOptions.MarketType"] === "spot");
        const spotRequest = firstCall.decision!.requests.find((r) => r.resource === SPOT_REQUESTS)!;
        assert.equal(spotRequest.context["aws:RequestTag/ray-cluster-name"], clusterName, "the spot request's own tags");
        const serviceRole = (c: typeof firstCall) => c.decision!.requests.filter((r) => r.action === "iam:CreateServiceLinkedRole").map((r) => r.result);
        assert.deepEqual([serviceRole(firstCall), serviceRole(secondCall)], [["Allowed"], []]);
    });

    test("a launch of an image the policy does not list is refused on that image", async () => {
        headPolicy();
        const other = ec2.registerImage({ ...UBUNTU, imageId: "ami-0c0ffee0000000001", name: "ubuntu-jammy" });
        const result = await outcome(() => client.send(new RunInstancesCommand(launchOf("big", { ImageId: other }))));
        assert.equal(result.code, "UnauthorizedOperation", JSON.stringify(result));
        assert.match(result.message!, new RegExp(`perform: ec2:RunInstances on resource: arn:aws:ec2:us-east-1::image/${other} because`));
    });

    test("a launch of an image the account does not hold fails with InvalidAMIID.NotFound, as EC2's does", async () => {
        headPolicy();
        const unknown = "ami-0dead00000000beef";
        const result = await outcome(() => client.send(new RunInstancesCommand(launchOf("big", { ImageId: unknown }))));
        assert.deepEqual([result.code, result.message], ["InvalidAMIID.NotFound", `The image id '[${unknown}]' does not exist`]);
        assert.equal(ec2.calls("RunInstances").pop()?.refused, "InvalidAMIID.NotFound");
    });

    test("terminating an instance of another stack is refused on that instance, by its tags in the account, and no host " +
        "would follow it", async () => {
        headPolicy();
        const theirs = ec2.runInstance({ "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "other", "ray-cluster:elastic": "true" });
        const result = await outcome(() => client.send(new TerminateInstancesCommand({ InstanceIds: [theirs] })));
        assert.equal(result.code, "UnauthorizedOperation", JSON.stringify(result));
        assert.match(result.message!, new RegExp(`perform: ec2:TerminateInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/${theirs} `));
        assert.deepEqual(ec2.calls("TerminateInstances").pop(), { ...ec2.calls("TerminateInstances").pop()!, instanceIds: [theirs],
            refused: "UnauthorizedOperation" });
        assert.equal(ec2.states()[theirs].state, "running");
    });

    test("a call the rig's binding table does not cover is refused, saying so, rather than allowed", async () => {
        headPolicy((policy) => policy.Statement.push({ Effect: "Allow", Action: ["ec2:*"], Resource: "*" }));
        const volume = await outcome(() => client.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8 })));
        assert.equal(volume.code, "UnauthorizedOperation", JSON.stringify(volume));
        assert.match(volume.message!, /ec2:CreateVolume: the rig's binding table \(test\/harness\/ec2-authorization\.ts\) does not cover it/);
        const placed = await outcome(() => client.send(new RunInstancesCommand(launchOf("big", { Placement: { GroupName: "cluster-pg" } }))));
        assert.equal(placed.code, "UnauthorizedOperation", JSON.stringify(placed));
        assert.match(placed.message!, /ec2:RunInstances with Placement\.GroupName: the rig's binding table does not cover these parameters/);
    });

    test("a call signed with a key the rig's IAM does not know fails as AWS fails it", async () => {
        const stranger = roleCredentials("nobody");
        const other = new EC2Client({ region: "us-east-1", endpoint: ec2.endpoint, maxAttempts: 1,
            credentials: { accessKeyId: stranger.AccessKeyId, secretAccessKey: stranger.SecretAccessKey, sessionToken: stranger.Token } });
        try {
            const result = await outcome(() => other.send(new TerminateInstancesCommand({ InstanceIds: ["i-0123456789abcdef0"] })));
            assert.equal(result.code, "AuthFailure", JSON.stringify(result));
            assert.match(result.message!, new RegExp(`the access key ${stranger.AccessKeyId} is no session of a role the rig's IAM holds`));
        } finally {
            other.destroy();
        }
    });
});

test("the follower powers off no host for a stop or termination EC2 refused", () => {
    const calls: Ec2Call[] = [{ at: 1, action: "RunInstances", instanceType: "c7i.xlarge", instances: [{ id: "i-1", privateIp: "10.213.0.5" }] },
        { at: 2, action: "TerminateInstances", instanceIds: ["i-1"], refused: "UnauthorizedOperation" },
        { at: 3, action: "StopInstances", instanceIds: ["i-1"], refused: "UnauthorizedOperation" }];
    const events: string[] = [];
    const hosts = { place: () => undefined, enforce: () => undefined, launch: (node: string) => events.push(`launch ${node}`),
        powerOffInBackground: async (node: string) => { events.push(`power off ${node}`); } } as unknown as FollowingHosts;
    const follower = new Ec2Follower({ calls: () => calls, registered: new Set<string>() } as unknown as Ec2Emulator, hosts,
        { join: () => undefined } as unknown as SecurityGroupFirewall, {}, () => []);
    follower.sync();
    assert.deepEqual(events, ["launch i-1"]);
});
