/**
 * The EC2 emulator can hold a stack's IAM from when its render creates each role, policy and instance profile
 * (followStackIam, as render's `registered`), as `pulumi up` creates them, rather than from the render's end: a head
 * that calls EC2 while the render runs on (the elastic benchmark holds its static worker back) is decided at once.
 */
import { DescribeInstancesCommand, EC2Client } from "@aws-sdk/client-ec2";
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { render } from "../tools/render";
import { stackIam } from "./harness/ec2-authorization";
import { EC2_EMULATOR_PYTHON, Ec2Emulator, UBUNTU_IMAGE } from "./harness/ec2-emulator";
import { roleCredentials } from "./harness/instance-metadata";

const GROUPS = [{ name: "big", instanceType: "c7i.xlarge", maxCount: 1 }];
const skip = !fs.existsSync(EC2_EMULATOR_PYTHON) && "the EC2 emulator is not installed (bash tools/ec2-emulator.sh); npm test installs it";

describe("the EC2 emulator follows a render's IAM as the render creates it", { skip }, () => {
    test("a call the head signs when the render runs its autoscaler's command, before the render can end, is allowed as a " +
        "session of the head's role; once the render ends the emulator holds the stack's IAM as loadStackIam gives it", async () => {
        const state = fs.mkdtempSync(path.join(os.tmpdir(), "ec2-stack-iam-"));
        const ec2 = new Ec2Emulator();
        // A call whose key or role the rig's IAM does not hold within 2 s fails (AuthFailure).
        await ec2.startOnLoopback(state, { iamWaitSeconds: 2 });
        try {
            const setup = ec2.setup(["10.213.0.0/24@us-east-1a"], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
            let headRole = "";
            let answer: { code?: string; message?: string; reservations?: number } | undefined;
            const rendered = await render({ workerCount: 0, workerGroups: GROUPS }, {
                ubuntuImageId: ec2.registerImage(UBUNTU_IMAGE),
                resourceIds: { "ray-cluster-subnet": setup.subnets["10.213.0.0/24"], "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] },
                registered: ec2.followStackIam,
                launchInstance: async (node, _inputs, account) => {
                    assert.equal(node, "headnode");
                    headRole = account.role!;
                },
                // The render cannot end before this returns: the call is made while it runs.
                runCommand: async (_inputs, name) => {
                    if (name === "ray-cluster-headnode-autoscaler") {
                        // The head's session, as its instance metadata hands it out and the autoscaler signs with it.
                        const credentials = roleCredentials(headRole);
                        ec2.trustKey(credentials.AccessKeyId, headRole, "i-0head");
                        const client = new EC2Client({ region: "us-east-1", endpoint: ec2.endpoint, maxAttempts: 1,
                            credentials: { accessKeyId: credentials.AccessKeyId, secretAccessKey: credentials.SecretAccessKey,
                                sessionToken: credentials.Token } });
                        try {
                            const found = await client.send(new DescribeInstancesCommand({}));
                            answer = { reservations: found.Reservations?.length ?? 0 };
                        } catch (e) {
                            answer = { code: (e as { name: string }).name, message: (e as Error).message };
                        } finally {
                            client.destroy();
                        }
                    }
                    return undefined;
                },
            });
            assert.equal(rendered.error, undefined, String(rendered.error?.stack));
            assert.ok(answer, "the render ran the head's autoscaler command");
            assert.equal(answer.code, undefined, `DescribeInstances was refused: ${answer.message}`);
            const call = ec2.apiCalls().find((c) => c.action === "DescribeInstances");
            assert.equal(call?.decision?.allowed, true);
            assert.match(call!.decision!.principal ?? "", new RegExp(`:assumed-role/${headRole}/i-0head$`));
            assert.deepEqual(call!.decision!.requests.map((r) => [r.action, r.result]), [["ec2:DescribeInstances", "Allowed"]]);
            const held = JSON.parse(fs.readFileSync(path.join(state, "ec2-iam.json"), "utf8"));
            assert.deepEqual({ roles: held.roles, instanceProfiles: held.instanceProfiles }, stackIam(rendered));
        } finally {
            await ec2.stopLoopback();
            fs.rmSync(state, { recursive: true, force: true });
        }
    });
});
