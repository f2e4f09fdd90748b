/**
 * Spot nodes that drain in Ray before EC2 takes them: where the stack installs the spot watch (fixed spot groups'
 * nodes after their Ray start, elastic spot groups through their setup), and what scripts/spot_watch.py does with
 * AWS's own metadata mock (amazon-ec2-metadata-mock, IMDSv2 only) on this machine's loopback.
 */
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, test } from "node:test";
import { METADATA_MOCK, skipWithoutMock } from "./harness/instance-metadata";
import { freePort } from "./harness/ports";
import { byName, byType, render, reveal, StackConfig } from "../tools/render";

const SPOT = { name: "spot", instanceType: "c7i.large", count: 2, spot: true };
const ON_DEMAND = { name: "cpu", instanceType: "c7i.large", count: 1 };
const COMMAND = "command:remote:Command";

async function rendered(config: StackConfig) {
    const r = await render(config);
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

describe("the spot watch in the stack, under mocks", () => {
    test("each node of a fixed spot group installs the watch after its Ray start; no other node does", async () => {
        const r = await rendered({ workerCount: 1, workerGroups: [SPOT, ON_DEMAND] });
        const watches = byType(r, COMMAND).filter((c) => c.name.endsWith("-spot-watch"));
        assert.deepEqual(watches.map((c) => c.name).sort(), ["ray-cluster-spot-1-spot-watch", "ray-cluster-spot-2-spot-watch"]);
        for (const watch of watches) {
            const node = watch.name.replace(/^ray-cluster-/, "").replace(/-spot-watch$/, "");
            const inputs = reveal(watch.inputs);
            assert.match(inputs.create, /install-spot-watch\.sh/);
            assert.match(inputs.delete, /remove-spot-watch\.sh/);
            assert.ok(watch.dependencies.includes(byName(r, `ray-cluster-${node}-start`).urn), `${node}: after its Ray start`);
            assert.equal(watch.options.deletedWith, byName(r, `ray-cluster-${node}`).urn);
            assert.equal(byName(r, `ray-cluster-${node}`).inputs.instanceMarketOptions.marketType, "spot");
        }
    });

    test("a stack without spot groups gets no watch and no new resource", async () => {
        const r = await rendered({ workerCount: 1, workerGroups: [ON_DEMAND] });
        assert.deepEqual(byType(r, COMMAND).filter((c) => /spot/.test(c.name)), []);
        assert.deepEqual(byType(r, "ray-cluster:spot-drain:SpotDrain"), []);
    });
});

const rfc3339 = (when: Date) => when.toISOString().replace(/\.\d+Z$/, "Z");

/**
 * Runs the watch's check twice against a metadata mock started with ARGS, with a drain that only records what it was
 * asked; returns each check's drains and the watch's log lines.
 */
async function watchAgainst(args: string[]): Promise<{ drains: Array<Array<[string, number | null]>>; log: string }> {
    const port = await freePort();
    const mock = spawn(METADATA_MOCK, ["--hostname", "127.0.0.1", "--port", String(port), "--imdsv2", "spot", ...args], { stdio: "ignore" });
    try {
        const script = `
import json, sys, time
sys.path.insert(0, ${JSON.stringify(path.join(__dirname, "..", "scripts"))})
import spot_watch
for _ in range(50):
    try:
        spot_watch.Metadata("http://127.0.0.1:${port}")._token()
        break
    except Exception:
        time.sleep(0.1)
metadata, handled, rounds = spot_watch.Metadata("http://127.0.0.1:${port}"), set(), []
for _ in range(2):
    drains = []
    spot_watch.check(metadata, lambda message, deadline: drains.append((message, deadline)) or "node-abc", handled)
    rounds.append(drains)
print(json.dumps(rounds))
`;
        const result = spawnSync("python3", ["-c", script], { encoding: "utf8", timeout: 30_000 });
        assert.equal(result.status, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        return { drains: JSON.parse(lines.pop()!), log: lines.join("\n") };
    } finally {
        mock.kill();
    }
}

describe("scripts/spot_watch.py against AWS's metadata mock (IMDSv2 only)", () => {
    const NEVER = "2100-01-01T00:00:00Z";

    test("no notice and no recommendation: nothing is drained", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const { drains } = await watchAgainst(["--mock-trigger-time", NEVER, "--rebalance-trigger-time", NEVER]);
        assert.deepEqual(drains, [[], []]);
    });

    test("an interruption notice drains once, with the notice's action, time and the seconds left as the deadline", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const time = rfc3339(new Date(Date.now() + 90_000));
        const { drains, log } = await watchAgainst(["--mock-trigger-time", rfc3339(new Date(Date.now() - 1000)), "--action", "stop",
            "--time", time, "--rebalance-trigger-time", NEVER]);
        assert.equal(drains[0].length, 1);
        const [message, deadline] = drains[0][0];
        assert.equal(message, `EC2 spot interruption notice: stop at ${time}`);
        assert.ok(deadline !== null && deadline >= 80 && deadline <= 90, `deadline ${deadline}`);
        assert.deepEqual(drains[1], [], "the same notice is acted on once");
        assert.match(log, new RegExp(`^spot-watch: EC2 spot interruption notice: stop at ${time}: drained Ray node node-abc ` +
            "\\(DRAIN_NODE_REASON_PREEMPTION, deadline in \\d+s\\)$", "m"));
    });

    test("a rebalance recommendation drains once, with no deadline", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const { drains, log } = await watchAgainst(["--mock-trigger-time", NEVER, "--rebalance-trigger-time",
            rfc3339(new Date(Date.now() - 1000))]);
        assert.equal(drains[0].length, 1);
        assert.match(drains[0][0][0], /^EC2 rebalance recommendation at \d{4}-\d\d-\d\dT/);
        assert.equal(drains[0][0][1], null);
        assert.deepEqual(drains[1], []);
        assert.match(log, /drained Ray node node-abc \(DRAIN_NODE_REASON_PREEMPTION, no deadline\)/);
    });
});
