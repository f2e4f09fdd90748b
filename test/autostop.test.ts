import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { diffGraphs } from "../tools/graph";
import { byName, byType, render, reveal, StackConfig } from "../tools/render";
import { EC2_EMULATOR_PYTHON } from "./harness/ec2-emulator";

const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
const INSTANCE = "aws:ec2/instance:Instance";
const INSTANCE_STATE = "aws:ec2transitgateway/instanceState:InstanceState";

async function rendered(config: StackConfig = {}, stack = "dev") {
    const r = await render(config, { stack });
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

const ec2Actions = (policy: string) => (JSON.parse(policy).Statement as Array<{ Action: string[] }>)
    .flatMap((s) => s.Action).filter((a) => a.startsWith("ec2:"));

describe("autostop under mocks", () => {
    test("off by default: no EC2 grant, no timer command, and the output says off", async () => {
        const r = await rendered();
        assert.deepEqual(byType(r, "ray-cluster:autostop:Autostop"), []);
        for (const policy of byType(r, ROLE_POLICY)) {
            assert.deepEqual(ec2Actions(policy.inputs.policy), [], policy.name);
        }
        assert.ok(!r.resources.some((x) => x.name.endsWith("-autostop")));
        assert.equal(r.outputs.autostop, "off");
    });

    test("on: the role may stop only instances tagged with this project and stack, and describe them", async () => {
        const r = await rendered({ autostopIdleMinutes: 30 }, "prod");
        const policy = byName(r, "ray-cluster-autostop");
        assert.equal(policy.type, ROLE_POLICY);
        // The head's role, which only the head has: the workers' role cannot stop anything.
        assert.equal(policy.inputs.role, byName(r, "ray-cluster-head-role").outputs.id ?? "ray-cluster-head-role-id");
        assert.deepEqual(JSON.parse(policy.inputs.policy), {
            Version: "2012-10-17",
            Statement: [
                { Sid: "FindInstances", Effect: "Allow", Action: ["ec2:DescribeInstances"], Resource: "*" },
                {
                    Sid: "StopThisStack",
                    Effect: "Allow",
                    Action: ["ec2:StopInstances"],
                    Resource: "arn:aws:ec2:us-east-1:*:instance/*",
                    Condition: { StringEquals: {
                        "aws:ResourceTag/ray-cluster:project": "ray-cluster",
                        "aws:ResourceTag/ray-cluster:stack": "prod",
                    } },
                },
            ],
        });
        // The tags the condition names are the ones every instance carries.
        for (const instance of byType(r, INSTANCE)) {
            assert.equal(instance.inputs.tags["ray-cluster:stack"], "prod");
            assert.equal(instance.inputs.tags["ray-cluster:project"], "ray-cluster");
        }
        assert.match(r.outputs.autostop, /after 30 idle minutes.*ray-cluster-autostop status/);
    });

    test("on: the head installs the timer with its settings in the command text, and removes it on delete", async () => {
        const r = await rendered({ autostopIdleMinutes: 45, packageIndexUrl: "https://pypi.example.com/simple/" });
        const install = reveal(byName(r, "ray-cluster-headnode-autostop").inputs);
        assert.match(install.create, / install-autostop\.sh --idle-minutes 45 --region us-east-1 --project ray-cluster --stack dev --head-instance-id ray-cluster-headnode-id --gcs-address 10\.0\.1\.10:6379 --dashboard-url http:\/\/10\.0\.1\.10:8265 --installer uv --index-url https:\/\/pypi\.example\.com\/simple\/$/);
        assert.match(install.delete, / remove-autostop\.sh$/);
        assert.equal(install.connection.host, reveal(byName(r, "ray-cluster-headnode-prepare").inputs).connection.host);
        assert.equal(install.environment, undefined);
        const deps = byName(r, "ray-cluster-headnode-autostop").dependencies;
        assert.ok(deps.includes(byName(r, "ray-cluster-headnode-install").urn), "runs from Ray's venv");
        assert.ok(deps.includes(byName(r, "ray-cluster-autostop").urn), "the grant exists before the first stop");
        assert.ok(!deps.includes(byName(r, "ray-cluster-verify").urn), "off the bootstrap's critical path");
        assert.ok(!deps.includes(byName(r, "ray-cluster-worker-1-start").urn));
    });

    test("turning autostop on or off touches only its policy and the head's timer command, and replaces no instance", async () => {
        const on = diffGraphs((await rendered()).resources, (await rendered({ autostopIdleMinutes: 30 })).resources);
        assert.deepEqual(on.added.sort(), ["ray-cluster", "ray-cluster-autostop", "ray-cluster-headnode-autostop"].sort());
        assert.deepEqual([on.removed, on.changed], [[], []]);
        const off = diffGraphs((await rendered({ autostopIdleMinutes: 30 })).resources, (await rendered()).resources);
        assert.deepEqual(off.removed.sort(), on.added.sort());
        assert.deepEqual([off.added, off.changed], [[], []]);
        const longer = diffGraphs((await rendered({ autostopIdleMinutes: 30 })).resources,
            (await rendered({ autostopIdleMinutes: 60 })).resources);
        assert.deepEqual([longer.added, longer.removed], [[], []]);
        assert.deepEqual(longer.changed.map((c) => [c.name, c.inputs]), [["ray-cluster-headnode-autostop", ["create"]]]);
    });
});

describe("coming back after a stop, and destroy on stopped nodes", () => {
    test("every node has an instance-state resource that keeps it running, and the outputs read IPs after it", async () => {
        const r = await rendered({ workerCount: 2, workerSpot: true });
        const states = byType(r, INSTANCE_STATE);
        assert.deepEqual(states.map((s) => s.name).sort(),
            ["ray-cluster-headnode-running", "ray-cluster-worker-1-running", "ray-cluster-worker-2-running"]);
        for (const state of states) {
            assert.equal(state.inputs.state, "running");
            assert.equal(state.inputs.instanceId, `${state.name.replace(/-running$/, "")}-id`);
        }
        assert.equal(r.outputs.headPublicIp, "198.51.100.10");
        assert.deepEqual(r.outputs.workerPublicIps, ["198.51.100.11", "198.51.100.12"]);
        // A command waits for its node to run, so a `pulumi up` after a stop reaches the started node.
        for (const node of ["headnode", "worker-1", "worker-2"]) {
            assert.ok(byName(r, `ray-cluster-${node}-prepare`).dependencies.includes(byName(r, `ray-cluster-${node}-running`).urn));
        }
    });

    test("Pulumi.yaml refreshes before every operation, so a stopped instance is seen and started", async () => {
        const yaml = await import("js-yaml");
        const fs = await import("node:fs");
        const project = yaml.load(fs.readFileSync(`${__dirname}/../Pulumi.yaml`, "utf8")) as { options?: { refresh?: string } };
        assert.equal(project.options?.refresh, "always");
    });

    test("every node command is deleted with its instance, so destroy never dials a stopped node", async () => {
        const r = await rendered({ autostopIdleMinutes: 30 });
        const commands = byType(r, "command:remote:Command");
        assert.ok(commands.length >= 8);
        for (const c of commands) {
            const node = /^ray-cluster-(headnode|worker-\d+)-/.exec(c.name)?.[1] ?? "headnode"; // verify runs on the head
            assert.equal(c.options.deletedWith, byName(r, `ray-cluster-${node}`).urn, c.name);
        }
    });
});

describe("spot workers under mocks", () => {
    test("workerSpot puts every worker on a persistent spot request that stops on interruption; the head stays on-demand", async () => {
        const r = await rendered({ workerCount: 3, workerSpot: true });
        for (const instance of byType(r, INSTANCE)) {
            if (instance.inputs.tags.Name === "headnode") {
                assert.equal(instance.inputs.instanceMarketOptions, undefined);
            } else {
                assert.deepEqual(instance.inputs.instanceMarketOptions, {
                    marketType: "spot",
                    spotOptions: { spotInstanceType: "persistent", instanceInterruptionBehavior: "stop" },
                }, instance.name);
            }
        }
    });

    test("by default no instance uses the spot market", async () => {
        const r = await rendered({ workerCount: 3 });
        assert.ok(byType(r, INSTANCE).every((i) => i.inputs.instanceMarketOptions === undefined));
    });
});

describe("autostop's stop, against moto's EC2", () => {
    test("it copies the ended jobs' logs first, then stops the autoscaler, terminates the workers Ray launched, stops " +
        "the stack's own, the head last, and leaves another stack alone", (t) => {
        if (!fs.existsSync(EC2_EMULATOR_PYTHON) && process.env.RAY_CLUSTER_TEST_MODE === "quick") {
            t.skip("the EC2 emulator is not installed (bash tools/ec2-emulator.sh); npm test installs it");
            return;
        }
        const result = spawnSync(EC2_EMULATOR_PYTHON, ["-c", `
import json, subprocess, sys
sys.path.insert(0, ${JSON.stringify(path.join(__dirname, "..", "scripts"))})
import boto3
from moto import mock_aws
import autostop

commands = []
def fake_run(command, **kwargs):
    commands.append(command)
    return subprocess.CompletedProcess(command, 0, f"ran {' '.join(command)}", "")
autostop.subprocess.run = fake_run
stack = {"ray-cluster:project": "ray-cluster", "ray-cluster:stack": "dev"}
with mock_aws():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    def run(tags):
        spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=spec)["Instances"][0]["InstanceId"]
    ids = {"head": run({**stack, "Name": "headnode"}), "worker": run({**stack, "Name": "worker-1"}),
           "launched": run({**stack, "ray-cluster:elastic": "true"}),
           "other": run({**stack, "ray-cluster:stack": "other", "ray-cluster:elastic": "true"})}
    autostop.stop_stack({"REGION": "us-east-1", "HEAD_INSTANCE_ID": ids["head"], "PROJECT": "ray-cluster", "STACK": "dev"})
    states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    print(json.dumps({"states": {name: states[i] for name, i in ids.items()}, "commands": commands}))
`], { encoding: "utf8", timeout: 120_000 });
        assert.equal(result.status, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        const outcome = JSON.parse(lines.pop()!);
        assert.deepEqual(outcome.states, { head: "stopped", worker: "stopped", launched: "terminated", other: "running" });
        // The job archive's last copy comes before anything stops: the head's logs are out of reach once it is down.
        assert.deepEqual(outcome.commands, [["/usr/local/bin/ray-cluster-jobs", "archive"], ["sudo", "-n", "systemctl", "stop", "ray-autoscaler.service"]]);
        const log = lines.join("\n");
        assert.ok(log.indexOf("terminating 1 workers the autoscaler launched") < log.indexOf("stopping the head"), log);
        assert.ok(log.indexOf("job archive: ran /usr/local/bin/ray-cluster-jobs archive") >= 0, log);
        assert.ok(log.indexOf("job archive: ran") < log.indexOf("terminating 1 workers"), log);
    });
});
