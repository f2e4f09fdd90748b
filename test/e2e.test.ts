/**
 * End to end on real hosts: three SSH hosts in network namespaces, real Ray from the wheelhouse through the
 * package-index override, driven by the remote.Commands the program registers under mocks, in the engine's order.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { byName, byType, Rendered, render, reveal } from "../tools/render";
import { cleanupKeys, CommandFailed, CommandInputs, runOverSsh } from "./harness/ssh";
import { eventually } from "./harness/eventually";
import { TestHosts } from "./harness/hosts";

const TIMEOUT_SECONDS = 60;
const hosts = new TestHosts({ headnode: 11, "worker-1": 12, "worker-2": 13 });
let rendered: Rendered;
const log: Array<{ name: string; start: number; end: number; stdout: string; stderr: string }> = [];

function command(name: string): CommandInputs & Record<string, any> {
    return reveal(byName(rendered, name).inputs);
}

function onHost(node: string, text: string, stdin?: string) {
    return runOverSsh({ connection: { host: hosts.address(node), user: "root", privateKey: hosts.privateKey } }, text, stdin, `${node}: ${text.slice(0, 40)}`);
}

/** Node ids that `ray status` on the head lists as active or idle: the view a user queries first. */
async function activeNodes(): Promise<string[]> {
    const { stdout } = await onHost("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray status");
    return [...stdout.split("Pending:")[0].matchAll(/\bnode_([0-9a-f]+)/g)].map((m) => m[1]);
}

function dashboardStatus(token?: string): Promise<number> {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: hosts.address("headnode"), port: 8265, path: "/api/jobs/", timeout: 10_000,
            headers: token ? { Authorization: `Bearer ${token}` } : {} }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
    });
}

describe("a Ray cluster on real hosts", { timeout: 900_000 }, () => {
    before(async () => {
        hosts.up();
        const t0 = Date.now();
        rendered = await render({
            sshUser: "root",
            packageIndexUrl: hosts.indexUrl,
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
        }, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKey: { privateKeyOpenssh: hosts.privateKey, publicKeyOpenssh: hosts.publicKey },
            runCommand: async (inputs, name) => {
                const start = Date.now() - t0;
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                log.push({ name, start, end: Date.now() - t0, stdout: result.stdout, stderr: result.stderr });
                return result;
            },
        });
    });

    after(() => {
        hosts.down();
        cleanupKeys();
    });

    test("the bootstrap succeeds and the verify step reports head + 2 workers", () => {
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        const status = rendered.outputs.rayClusterStatus;
        assert.equal(status.aliveNodes, 3);
        assert.deepEqual(status.nodes.map((n: { name: string }) => n.name), ["headnode", "worker-1", "worker-2"]);
        for (const entry of log) {
            console.log(`${(entry.start / 1000).toFixed(1)}s → ${(entry.end / 1000).toFixed(1)}s ${entry.name}`);
        }
    });

    test("commands ran in the engine's order: installs overlapped, starts waited for the head", () => {
        const at = (name: string) => log.find((e) => e.name === `ray-cluster-${name}`)!;
        const installs = ["headnode-install", "worker-1-install", "worker-2-install"].map(at);
        assert.ok(Math.max(...installs.map((i) => i.start)) < Math.min(...installs.map((i) => i.end)), "installs ran in parallel");
        for (const worker of ["worker-1", "worker-2"]) {
            assert.ok(at(`${worker}-start`).start >= at("headnode-start").end, `${worker} starts after the head is up`);
        }
        assert.ok(at("verify").start >= Math.max(at("worker-1-start").end, at("worker-2-start").end));
    });

    test("each host got its hostname, resolvable through its own /etc/hosts", async () => {
        for (const node of ["headnode", "worker-1", "worker-2"]) {
            const { stdout } = await onHost(node, `hostname; getent hosts ${node}`);
            assert.equal(stdout.split("\n")[0], node);
            assert.match(stdout, new RegExp(`^${hosts.address(node).replace(/\./g, "\\.")}\\s+${node}`, "m"));
        }
    });

    test("ray status on the head shows 3 nodes", async () => {
        // A snapshot on purpose: verify returned only once `ray status` listed every node, and it never unlists one.
        assert.equal((await activeNodes()).length, 3);
    });

    test("the smoke job ran tasks on all 3 hosts", async () => {
        await onHost("headnode", "mkdir -p /tmp/smoke && cat > /tmp/smoke/smoke_test.py",
            fs.readFileSync(path.join(__dirname, "..", "scripts", "smoke_test.py"), "utf8"));
        const { stdout } = await onHost("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray job submit " +
            "--address http://127.0.0.1:8265 --working-dir /tmp/smoke -- python smoke_test.py --expect-nodes 3");
        assert.match(stdout, /tasks ran on 3 of 3 expected nodes/);
        for (const node of ["headnode", "worker-1", "worker-2"]) {
            assert.match(stdout, new RegExp(`node ${node} ${hosts.address(node).replace(/\./g, "\\.")}`));
        }
    });

    test("re-running a node's install and start is a fast no-op", async () => {
        const install = command("ray-cluster-worker-1-install");
        const again = await runOverSsh(install, install.create!, undefined, "install again");
        assert.match(again.stdout, /already installed/);
        assert.ok(again.seconds < 5, `no-op install took ${again.seconds}s`);
        const start = command("ray-cluster-worker-1-start");
        assert.match((await runOverSsh(start, start.create!, start.stdin, "start again")).stdout, /already joined/);
        const head = command("ray-cluster-headnode-start");
        assert.match((await runOverSsh(head, head.create!, head.stdin, "head again")).stdout, /already running/);
    });

    test("a client without the token is refused; the token lets it in", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        assert.equal(await dashboardStatus(), 401);
        assert.equal(await dashboardStatus("not-the-token"), 403);
        assert.equal(await dashboardStatus(token), 200);
        await assert.rejects(onHost("worker-1", "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=wrong timeout 60 ~/ray-venv/bin/ray status"),
            (e: CommandFailed) => /AuthenticationError|InvalidAuthToken/.test(e.result.stderr + e.result.stdout));
    });

    test("verify waits until a late worker shows in `ray status`, not just in the GCS node table", async () => {
        const worker = command("ray-cluster-worker-2-start");
        await runOverSsh(worker, worker.delete!, undefined, "worker-2 leaves");
        await eventually({ what: "worker-2 gone from ray status", timeoutSeconds: 90 }, async (last) => {
            const nodes = await activeNodes();
            last(`${nodes.length} nodes listed`);
            return nodes.length === 2 ? true : undefined;
        });
        const verify = command("ray-cluster-verify");
        let verifyEnded = 0;
        const verifying = runOverSsh(verify, verify.create!, undefined, "verify").then((result) => {
            verifyEnded = Date.now();
            return result;
        });
        await new Promise((resolve) => setTimeout(resolve, 5000));
        assert.equal(verifyEnded, 0, "verify reported success while worker-2 was away");
        await runOverSsh(worker, worker.create!, worker.stdin, "worker-2 rejoins");
        const rejoined = Date.now();
        const result = await verifying;
        assert.ok(verifyEnded >= rejoined, "verify returned only after worker-2 started again");
        assert.equal(JSON.parse(result.stdout.trim().split("\n").pop()!).aliveNodes, 3);
        // One snapshot on purpose: what verify promises is that the user's very next `ray status` agrees.
        assert.equal((await activeNodes()).length, 3, "ray status right after verify lists every node");
    });

    test("the token never appears in any command's output", () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        for (const entry of log) {
            assert.ok(!entry.stdout.includes(token) && !entry.stderr.includes(token), `${entry.name} printed the token`);
        }
        assert.ok(!command("ray-cluster-headnode-start").create!.includes(token), "the token is not in the command text");
    });

    test("the delete commands stop Ray on every host, workers before the head", async () => {
        for (const name of ["worker-1", "worker-2", "headnode"]) {
            const start = command(`ray-cluster-${name}-start`);
            assert.match((await runOverSsh(start, start.delete!, undefined, `${name} delete`)).stdout, /Ray stopped/);
        }
        for (const node of ["headnode", "worker-1", "worker-2"]) {
            await eventually({ what: `Ray processes gone on ${node}`, timeoutSeconds: 30 }, async (last) => {
                const { stdout } = await onHost(node, "pgrep -l -x 'raylet|gcs_server' || true");
                last(stdout.trim());
                return stdout.trim() === "" ? true : undefined;
            });
        }
    });

    test("a worker aimed at a dead head fails within its bound, saying what is missing", async () => {
        const start = command("ray-cluster-worker-1-start");
        const began = Date.now();
        await assert.rejects(runOverSsh(start, start.create!, start.stdin, "join dead head"), (e: CommandFailed) => {
            assert.match(e.result.stderr, new RegExp(`GCS at ${hosts.address("headnode").replace(/\./g, "\\.")}:6379 did not answer within ${TIMEOUT_SECONDS}s`));
            return true;
        });
        assert.ok((Date.now() - began) / 1000 < TIMEOUT_SECONDS + 30, "failed within the bound");
    });

    test("every command the stack registered was replayed", () => {
        const registered = byType(rendered, "command:remote:Command").map((r) => r.name).sort();
        assert.deepEqual(log.map((e) => e.name).sort(), registered);
        assert.equal(registered.length, 3 * 3 + 1);
    });
});

