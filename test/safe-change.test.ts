import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { diffGraphs } from "../tools/graph";
import { render, StackConfig } from "../tools/render";

async function diff(before: StackConfig, after: StackConfig) {
    const [a, b] = [await render(before), await render(after)];
    assert.equal(a.error ?? b.error, undefined);
    return diffGraphs(a.resources, b.resources);
}

const workerResources = (n: number) => [`ray-cluster-worker-${n}`, `ray-cluster-worker-${n}-install`, `ray-cluster-worker-${n}-job-env`,
    `ray-cluster-worker-${n}-prepare`, `ray-cluster-worker-${n}-running`, `ray-cluster-worker-${n}-start`];

describe("safe change: the graph a config change produces", () => {
    test("two renders of the same config are identical, so an unchanged `pulumi up` does nothing", async () => {
        assert.deepEqual(await diff({ workerCount: 3 }, { workerCount: 3 }), { added: [], removed: [], changed: [] });
    });

    test("workerCount 2 → 4 adds only worker-3, worker-4 and their commands", async () => {
        const d = await diff({ workerCount: 2 }, { workerCount: 4 });
        assert.deepEqual(d.added.sort(), [...workerResources(3), ...workerResources(4)].sort());
        assert.deepEqual(d.removed, []);
        // Only the cluster check changes: it re-runs on the head to count the new nodes, and only reads.
        assert.deepEqual(d.changed.map((c) => c.name), ["ray-cluster-verify"]);
    });

    test("workerCount 4 → 2 removes only worker-3, worker-4 and their commands", async () => {
        const d = await diff({ workerCount: 4 }, { workerCount: 2 });
        assert.deepEqual(d.removed.sort(), [...workerResources(3), ...workerResources(4)].sort());
        assert.deepEqual(d.added, []);
        assert.deepEqual(d.changed.map((c) => c.name), ["ray-cluster-verify"]);
    });

    test("a rayVersion change touches only the install and start commands, and replaces no instance", async () => {
        const d = await diff({}, { rayVersion: "2.59.0" });
        assert.deepEqual([d.added, d.removed], [[], []]);
        assert.deepEqual(d.changed.map((c) => c.name).sort(), ["ray-cluster-headnode-install", "ray-cluster-headnode-start",
            "ray-cluster-worker-1-install", "ray-cluster-worker-1-start", "ray-cluster-worker-2-install", "ray-cluster-worker-2-start"]);
        assert.ok(d.changed.every((c) => c.type === "command:remote:Command" && c.inputs.join() === "create"));
    });

    test("an sshAllowedCidrs change touches only security-group rules", async () => {
        const d = await diff({ sshAllowedCidrs: ["203.0.113.0/24"] }, { sshAllowedCidrs: ["203.0.113.0/24", "198.51.100.0/24"] });
        assert.deepEqual(d.added, ["ray-cluster-ssh-198-51-100-0-24"]);
        assert.deepEqual([d.removed, d.changed], [[], []]);
        const replaced = await diff({ sshAllowedCidrs: ["203.0.113.0/24"] }, { sshAllowedCidrs: ["192.0.2.0/24"] });
        assert.deepEqual([replaced.added, replaced.removed, replaced.changed],
            [["ray-cluster-ssh-192-0-2-0-24"], ["ray-cluster-ssh-203-0-113-0-24"], []]);
    });
});

describe("npm run plan", () => {
    const run = (...args: string[]) => spawnSync(process.execPath,
        ["--require", "ts-node/register", path.join(__dirname, "..", "tools", "plan.ts"), ...args],
        { encoding: "utf8", env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true" } });

    test("--diff of two stack files shows what the change adds, removes and changes", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-plan-"));
        try {
            fs.writeFileSync(path.join(dir, "Pulumi.a.yaml"), "config:\n  aws:region: us-east-1\n  ray-cluster:workerCount: 4\n");
            fs.writeFileSync(path.join(dir, "Pulumi.b.yaml"), "config:\n  aws:region: us-east-1\n  ray-cluster:workerCount: 3\n");
            const result = run("--diff", path.join(dir, "Pulumi.a.yaml"), path.join(dir, "Pulumi.b.yaml"));
            assert.equal(result.status, 0, result.stderr);
            assert.match(result.stdout, /^\+ 0 to add, - 6 to remove, ~ 1 to change \(1 of them replaced\)$/m);
            assert.match(result.stdout, /^ {2}- ray-cluster-worker-4-start$/m);
            assert.match(result.stdout, /^ {2}\+- ray-cluster-verify: REPLACED, since triggers cannot change in place \(changes: create, triggers, \(dependencies\)\)$/m);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("--diff with Ray-ready images shows each node type's image before and after, and replaces no node", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-plan-"));
        try {
            const stack = (version: string) => "config:\n  ray-cluster:rayImage: true\n  ray-cluster:workerCount: 1\n" +
                `  ray-cluster:rayVersion: ${version}\n  ray-cluster:workerGroups:\n    - name: gpu\n      instanceType: g5.xlarge\n      maxCount: 1\n`;
            fs.writeFileSync(path.join(dir, "Pulumi.a.yaml"), stack("2.60.0"));
            fs.writeFileSync(path.join(dir, "Pulumi.b.yaml"), stack("2.59.0"));
            const result = run("--diff", path.join(dir, "Pulumi.a.yaml"), path.join(dir, "Pulumi.b.yaml"));
            assert.equal(result.status, 0, result.stderr);
            // The first stack as deployed holds its images; the change builds new ones and replaces only those.
            assert.match(result.stdout, /^ {2}\+ ray-cluster-image-ubuntu-builder$/m);
            assert.match(result.stdout, /^ {2}\+- ray-cluster-image-dlami: REPLACED, since name cannot change in place/m);
            assert.match(result.stdout, /^ {2}~ ray-cluster-headnode: ami$/m);
            assert.doesNotMatch(result.stdout, /^ {2}\+- ray-cluster-(headnode|worker-1):/m);
            assert.match(result.stdout, /^images by node type:$/m);
            assert.match(result.stdout, /^ {2}headnode: ray-cluster-a-ray-2\.60\.0-ubuntu-[0-9a-f]{16} \(Ray-ready\) → ray-cluster-a-ray-2\.59\.0-ubuntu-[0-9a-f]{16} \(Ray-ready\)$/m);
            assert.match(result.stdout, /^ {2}gpu \(elastic\): ray-cluster-a-ray-2\.60\.0-dlami-[0-9a-f]{16} \(Ray-ready\) → ray-cluster-a-ray-2\.59\.0-dlami-/m);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("a single stack file prints every resource and the bootstrap commands in order", () => {
        const result = run(path.join(__dirname, "..", "Pulumi.dev.yaml"));
        assert.equal(result.status, 0, result.stderr);
        assert.match(result.stdout, /aws:ec2\/instance:Instance ray-cluster-headnode \(headnode\) {2}instanceType="t3.medium"/);
        assert.match(result.stdout, /^ {2}1\. ray-cluster-headnode-prepare @ 198\.51\.100\.10: prepare-node\.sh --hostname headnode/m);
        assert.match(result.stdout, /^ {2}3\. ray-cluster-headnode-start @ .*start-head\.sh --version 2\.60\.0/m);
        assert.match(result.stdout, /^ {2}5\. ray-cluster-verify @ /m);
        assert.match(result.stdout, /^autostop: off$/m);
    });

    test("a stack file with autostop and spot workers shows the setting, the spot options and the timer command", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-plan-"));
        try {
            fs.writeFileSync(path.join(dir, "Pulumi.cost.yaml"),
                "config:\n  ray-cluster:autostopIdleMinutes: 30\n  ray-cluster:workerSpot: true\n");
            const result = run(path.join(dir, "Pulumi.cost.yaml"));
            assert.equal(result.status, 0, result.stderr);
            assert.match(result.stdout, /^autostop: stops every instance after 30 idle minutes/m);
            assert.match(result.stdout, /ray-cluster-worker-1 \(worker-1\) .*instanceMarketOptions=\{"marketType":"spot","spotOptions":\{"instanceInterruptionBehavior":"stop","spotInstanceType":"persistent"\}\}/);
            assert.doesNotMatch(result.stdout, /ray-cluster-headnode \(headnode\) .*instanceMarketOptions/);
            assert.match(result.stdout, /^ {2}\d\. ray-cluster-headnode-autostop @ 198\.51\.100\.10: install-autostop\.sh --idle-minutes 30 --region us-east-1 --project ray-cluster --stack cost /m);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("a stack file shows how many NAT gateways bill around the clock, even at minCount 0 and after autostop, and what " +
        "they cost a month in the region the figure is for", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-plan-"));
        const stack = (region: string, network: string) => `config:\n  aws:region: ${region}\n  ray-cluster:workerNetwork: ${network}\n` +
            "  ray-cluster:autostopIdleMinutes: 30\n  ray-cluster:workerGroups:\n    - name: cpu\n      instanceType: c7i.large\n" +
            "      minCount: 0\n      maxCount: 4\n" + (network === "private" ? `  ray-cluster:elasticZones: ["${region}b", "${region}c"]\n` +
                "  ray-cluster:natGatewayPerZone: true\n" : "");
        const line = (file: string, text: string) => {
            fs.writeFileSync(path.join(dir, file), text);
            const result = run(path.join(dir, file));
            assert.equal(result.status, 0, result.stderr);
            return result.stdout.split("\n").find((l) => l.startsWith("NAT gateways:"));
        };
        try {
            // A NAT gateway in the head's zone and one in each of the two other zones: 3 × $0.045 × 730 h.
            assert.equal(line("Pulumi.zones.yaml", stack("us-east-1", "private")), "NAT gateways: 3, billed every hour they exist, even " +
                "with elastic groups at minCount 0 and after autostop: about $98.55 a month in us-east-1 (3 × $0.045 an hour × 730 hours), " +
                "plus $0.045 per GB processed");
            // Elsewhere the plan names the region's own price rather than quote us-east-1's.
            assert.equal(line("Pulumi.eu.yaml", stack("eu-west-1", "private")), "NAT gateways: 3, billed every hour they exist, even " +
                "with elastic groups at minCount 0 and after autostop: 3 × eu-west-1's hourly NAT gateway price, plus its price per GB " +
                "processed (AWS's VPC pricing page)");
            assert.equal(line("Pulumi.public.yaml", stack("us-east-1", "public")), "NAT gateways: none");
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("a bad config in a stack file fails with the config error", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-plan-"));
        try {
            fs.writeFileSync(path.join(dir, "Pulumi.x.yaml"), "config:\n  ray-cluster:workerCount: -1\n");
            const result = run(path.join(dir, "Pulumi.x.yaml"));
            assert.notEqual(result.status, 0);
            assert.match(result.stderr, /invalid config 'ray-cluster:workerCount': got "-1"/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
