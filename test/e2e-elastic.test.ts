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
import { argumentOf, byName, byType, Rendered, render, reveal } from "../tools/render";
import { destroyPlan } from "./harness/destroy";
import { autoscalerEndpointFiles, Ec2Emulator, Ec2Follower, Ec2Setup } from "./harness/ec2-emulator";
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
const SUBNET_CIDR = "10.213.0.0/24";
/** Two groups that serve the same demand: big (4 vCPUs) is the autoscaler's first choice for a 3-CPU task. */
const GROUPS = [
    { name: "big", instanceType: "c7i.xlarge", maxCount: 1 },
    { name: "bigger", instanceType: "c7i.2xlarge", maxCount: 1 },
];
/** More CPUs than the head has: only a launched worker can run it. */
const TASK_CPUS = 3;
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

describeOnBootedHosts("elastic groups: Ray's autoscaler launches and terminates booted workers", { timeout: 2_400_000 }, () => {
    before(async () => {
        hosts.up();
        ec2.start(hosts.state);
        setup = ec2.setup([SUBNET_CIDR], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
        const config = {
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`],
            workerCount: 0,
            elasticIdleMinutes: 1,
            workerGroups: GROUPS,
            packageIndexUrl: hosts.indexUrl,
        };
        firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        follower = new Ec2Follower(ec2, hosts, firewall, ["ray-cluster-sg"], () => hosts.nodes());
        follower.start();
        rendered = await render(config, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKey: { privateKeyOpenssh: hosts.privateKey, publicKeyOpenssh: hosts.publicKey },
            // The stack's subnet and group are the emulator's, so that the autoscaler's launches name real ones.
            resourceIds: { "ray-cluster-subnet": setup.subnets[SUBNET_CIDR], "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] },
            launchInstance: async (node, inputs) => {
                const id = ec2.runInstance(inputs.tags, { subnetId: inputs.subnetId, privateIp: hosts.address(node) });
                hosts.launch(node, inputs.userData, firewall, autoscalerEndpointFiles(ec2.endpoint), id);
                return id;
            },
            runCommand: async (inputs, name) => hosts.namingBlocked(hosts.nodes(),
                () => runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name)),
        });
    });

    after(() => {
        try {
            follower?.stop();
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

    test("a task that asks for more than the cluster has makes the autoscaler launch a worker; one that never boots is " +
        "terminated within its bound with the reason logged on the head; the next joins and runs the task", async () => {
        follower.withholdBoot(1);
        const began = Date.now();
        const placed = hosts.placeTask(TASK_CPUS, LAUNCH_SECONDS + TIMEOUT_SECONDS + 120);
        const broken = await eventually({ what: "the autoscaler's first launch", timeoutSeconds: 120, intervalSeconds: 1 },
            async () => follower.launched()[0]);
        assert.equal(broken.booted, false);
        assert.equal(broken.instanceType, "c7i.xlarge", "big: the best fit for the task");
        await eventually({ what: `the never-booting ${broken.id} terminated`, timeoutSeconds: TIMEOUT_SECONDS + 120, intervalSeconds: 2 },
            async () => (ec2.calls("TerminateInstances").some((c) => c.instanceIds!.includes(broken.id)) ? true : undefined));
        assert.match(await autoscalerLog(), new RegExp(`Terminating the node with id ${broken.id} .*\\(launch failed\\)`));
        const where = await placed;
        const joined = follower.launched().find((i) => i.booted)!;
        assert.ok(joined, "a second launch booted");
        assert.deepEqual(where, { host: `big-${joined.privateIp.replace(/\./g, "-")}`, ip: joined.privateIp,
            labels: { ...where.labels, "ray-cluster/group": "big" } });
        console.log(`demand to task done on a new node: ${((Date.now() - began) / 1000).toFixed(0)}s (one launch that never booted included)`);
        const { stdout } = await hosts.run(joined.id, "hostname; systemctl is-enabled ray-worker.service; " +
            "ls ~/.ray-cluster/elastic/auth_token 2>&1 || true; sudo cat /var/lib/cloud/instance/user-data.txt");
        assert.match(stdout, /^big-10-213-0-\d+\nenabled\n.*No such file/);
        const token = reveal(byType(rendered, "random:index/randomPassword:RandomPassword")[0].outputs).result;
        assert.ok(!stdout.includes(token), "the token is not in the worker's user data");
        assert.ok(ec2.calls("RunInstances").every((c) => !(c.userData ?? "").includes(token)));
    });

    test("once idle past the timeout the worker is terminated, in the emulator and on its machine", async () => {
        const joined = follower.launched().find((i) => i.booted)!;
        const began = Date.now();
        await eventually({ what: `${joined.id} terminated once idle`, timeoutSeconds: 60 + 180, intervalSeconds: 2 },
            async () => (joined.poweredOffAt !== undefined ? true : undefined));
        assert.match(await autoscalerLog(), new RegExp(`Terminating the node with id ${joined.id} .*\\(idle\\)`));
        assert.equal(ec2.states()[joined.id].state, "terminated");
        console.log(`idle to terminated: ${((Date.now() - began) / 1000).toFixed(0)}s after the task ended (timeout 60s)`);
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
            ec2.refuse([]);
        }
    });

    test("turning elasticity off takes the config from the head's autoscaler first, so that it launches nothing more", async () => {
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
    });

    test("pulumi destroy with an elastic worker running: the head goes first, then the sweep leaves no launched instance", async () => {
        const running = follower.launched().filter((i) => i.booted && i.poweredOffAt === undefined);
        assert.equal(running.length, 1, "the fallback worker still runs");
        const order = destroyPlan(rendered.resources).deletes.map((r) => r.name);
        const at = (name: string) => order.indexOf(name);
        assert.ok(at("ray-cluster-headnode") < at("ray-cluster-launched-sweep"), "the head and its autoscaler go first");
        for (const used of ["ray-cluster-sg", "ray-cluster-subnet", "ray-cluster-profile"]) {
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
