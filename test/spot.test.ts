/**
 * Spot nodes that drain in Ray before EC2 takes them: where the stack installs the spot watch (fixed spot groups'
 * nodes after their Ray start, elastic spot groups through their setup), and what scripts/spot_watch.py does with
 * AWS's own metadata mock (amazon-ec2-metadata-mock, IMDSv2 only) on this machine's loopback.
 */
import * as assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
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
 * asked (or fails, with `failDrain`); returns each check's drains, the watch's log lines, the drain mark it left for
 * ray-node-run.sh (its `until` in epoch seconds and its reason) and when the checks began.
 */
async function watchAgainst(args: string[], failDrain: "no" | "finding the node" | "draining" = "no", markBefore?: string): Promise<{
    drains: Array<Array<[string, number | null]>>; log: string; mark: { until: number; reason: string } | undefined; began: number;
}> {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "spot-watch-"));
    const markFile = path.join(dir, "drained");
    if (markBefore !== undefined) {
        fs.writeFileSync(markFile, markBefore);
    }
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
def drain(message, deadline, before):
    drains.append((message, deadline))
    if "${failDrain}" == "finding the node":
        raise RuntimeError("no alive Ray node at 10.0.0.9")
    before()
    if "${failDrain}" == "draining":
        raise RuntimeError("ray drain-node failed: the GCS is away")
    return "node-abc"
for _ in range(2):
    drains = []
    try:
        spot_watch.check(metadata, drain, handled)
    except RuntimeError as e:
        print(f"check failed: {e}")
    rounds.append(drains)
print(json.dumps(rounds))
`;
        const began = Date.now() / 1000;
        const result = spawnSync("python3", ["-c", script], { encoding: "utf8", timeout: 30_000,
            env: { ...process.env, RAY_DRAIN_MARK: markFile } });
        assert.equal(result.status, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        const text = fs.existsSync(markFile) ? fs.readFileSync(markFile, "utf8") : undefined;
        const mark = text === undefined ? undefined
            : { until: Number(/^until=(\d+)$/m.exec(text)![1]), reason: /^reason=(.*)$/m.exec(text)![1] };
        return { drains: JSON.parse(lines.pop()!), log: lines.join("\n"), mark, began };
    } finally {
        mock.kill();
        fs.rmSync(dir, { recursive: true, force: true });
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

    test("an interruption notice drains once, with the notice's action and time, a deadline 20 s before the notice's time, " +
        "and a mark that keeps the node out until 10 min past it", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const time = rfc3339(new Date(Date.now() + 90_000));
        const { drains, log, mark, began } = await watchAgainst(["--mock-trigger-time", rfc3339(new Date(Date.now() - 1000)),
            "--action", "stop", "--time", time, "--rebalance-trigger-time", NEVER]);
        assert.equal(drains[0].length, 1);
        const [message, deadline] = drains[0][0];
        assert.equal(message, `EC2 spot interruption notice: stop at ${time}`);
        // 90 s left, less the 20 s margin, less the second or two the test took.
        assert.ok(deadline !== null && deadline >= 60 && deadline <= 70, `deadline ${deadline}`);
        assert.deepEqual(drains[1], [], "the same notice is acted on once");
        assert.match(log, new RegExp(`^spot-watch: EC2 spot interruption notice: stop at ${time}: drained Ray node node-abc ` +
            "\\(DRAIN_NODE_REASON_PREEMPTION, deadline in \\d+s\\); it stays out of the cluster for \\d+s unless the instance goes first\\)$", "m"));
        assert.ok(mark, "the drain left its mark");
        const noticeAt = Date.parse(time) / 1000;
        assert.ok(Math.abs(mark.until - (noticeAt + 600)) <= 3, `the mark holds until ${mark.until}, the notice is at ${noticeAt}`);
        assert.equal(mark.reason, message);
        assert.ok(mark.until > began + 600);
    });

    test("a short notice keeps at least half its time as the deadline", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const { drains } = await watchAgainst(["--mock-trigger-time", rfc3339(new Date(Date.now() - 1000)),
            "--action", "terminate", "--time", rfc3339(new Date(Date.now() + 20_000)), "--rebalance-trigger-time", NEVER]);
        const deadline = drains[0][0][1];
        assert.ok(deadline !== null && deadline >= 8 && deadline <= 10, `deadline ${deadline}`);
    });

    test("a rebalance recommendation drains once, with no deadline, and keeps the node out for 15 min", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const { drains, log, mark, began } = await watchAgainst(["--mock-trigger-time", NEVER, "--rebalance-trigger-time",
            rfc3339(new Date(Date.now() - 1000))]);
        assert.equal(drains[0].length, 1);
        assert.match(drains[0][0][0], /^EC2 rebalance recommendation at \d{4}-\d\d-\d\dT/);
        assert.equal(drains[0][0][1], null);
        assert.deepEqual(drains[1], []);
        assert.match(log, /drained Ray node node-abc \(DRAIN_NODE_REASON_PREEMPTION, no deadline\); it stays out of the cluster for 900s/);
        assert.ok(mark && mark.until >= Math.floor(began) + 899 && mark.until <= began + 905, `until ${mark?.until}, began ${began}`);
    });

    test("a drain that fails leaves a mark that keeps nothing out, and the next check tries again", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const { drains, log, mark } = await watchAgainst(["--mock-trigger-time", NEVER, "--rebalance-trigger-time",
            rfc3339(new Date(Date.now() - 1000))], "draining");
        assert.equal(drains[0].length, 1);
        assert.equal(drains[1].length, 1, "tried again");
        assert.match(log, /check failed: ray drain-node failed/);
        assert.equal(mark?.until, 0);
        assert.match(mark!.reason, /the drain failed$/);
    });

    test("a check that finds no node to drain (Ray already shut the drained one down) leaves the earlier mark alone", async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const earlier = `until=${Math.floor(Date.now() / 1000) + 900}\nreason=EC2 rebalance recommendation at 2026-12-06T10:00:00Z\n`;
        const { drains, log, mark } = await watchAgainst(["--mock-trigger-time", NEVER, "--rebalance-trigger-time",
            rfc3339(new Date(Date.now() - 1000))], "finding the node", earlier);
        assert.equal(drains[0].length, 1);
        assert.match(log, /check failed: no alive Ray node/);
        assert.equal(`until=${mark?.until}\nreason=${mark?.reason}\n`, earlier);
    });
});
