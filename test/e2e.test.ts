/**
 * End to end on booted machines: three Debian hosts under systemd-nspawn, each booted with the stack's own user
 * data through cloud-init, as EC2 boots an instance. Real Ray from the wheelhouse through the package-index
 * override, driven by the remote.Commands the program registers under mocks, in the engine's order, as the
 * login user cloud-init created. Then the hosts reboot, power off and crash, and the cluster must come back alone.
 */
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { NODE_USER_DATA } from "../src/nodes";
import { scriptCommand } from "../src/scripts";
import { byName, byType, Rendered, render, reveal } from "../tools/render";
import { eventually } from "./harness/eventually";
import { BootedHosts, LOGIN_USER, missingForBootedHosts } from "./harness/machines";
import { cleanupKeys, CommandFailed, CommandInputs, runOverSsh } from "./harness/ssh";

const TIMEOUT_SECONDS = 90;
/** Bound on a node's return after a reboot or power-on: boot, Ray's start, and a worker's wait for its head. */
const RETURN_SECONDS = 300;
const NODES = ["headnode", "worker-1", "worker-2"];
const hosts = new BootedHosts({ headnode: 11, "worker-1": 12, "worker-2": 13 });
let rendered: Rendered;
const log: Array<{ name: string; start: number; end: number; stdout: string; stderr: string }> = [];

function command(name: string): CommandInputs & Record<string, any> {
    return reveal(byName(rendered, name).inputs);
}

const onHost = (node: string, text: string, stdin?: string) => hosts.run(node, text, stdin);

/** Waits until every given node is alive and listed by `ray status`; returns their node ids by name. */
async function clusterWhole(nodes = NODES, what = "every node back in ray status"): Promise<Record<string, string>> {
    return eventually({ what, timeoutSeconds: RETURN_SECONDS, intervalSeconds: 3 }, async (last) => {
        const view = await hosts.clusterView();
        const ids = Object.fromEntries(nodes.map((node) => [node, view.alive[hosts.address(node)]]));
        const missing = nodes.filter((node) => !ids[node] || !view.listed.includes(ids[node]));
        last(`missing from ray status: ${missing.join(", ") || "none"}; listed ${view.listed.length}`);
        return missing.length === 0 && view.listed.length === nodes.length ? ids : undefined;
    });
}

/** Node ids that `ray status` on the head lists as active or idle. */
async function statusNodes(): Promise<string[]> {
    const { stdout } = await onHost("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray status");
    return [...stdout.split("Pending:")[0].matchAll(/\bnode_([0-9a-f]+)/g)].map((m) => m[1]);
}

async function smokeJob(): Promise<string> {
    await onHost("headnode", "mkdir -p /tmp/smoke && cat > /tmp/smoke/smoke_test.py",
        fs.readFileSync(path.join(__dirname, "..", "scripts", "smoke_test.py"), "utf8"));
    const { stdout } = await onHost("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray job submit " +
        "--address http://127.0.0.1:8265 --working-dir /tmp/smoke -- python smoke_test.py --expect-nodes 3");
    return stdout;
}

function assertSmokeRanEverywhere(stdout: string): void {
    assert.match(stdout, /tasks ran on 3 of 3 expected nodes/);
    for (const node of NODES) {
        assert.match(stdout, new RegExp(`node ${node} ${hosts.address(node).replace(/\./g, "\\.")}`));
    }
}

const unitOf = (node: string) => (node === "headnode" ? "ray-head" : "ray-worker");

/** The service's main process and when it last became active: unchanged means not restarted. */
async function serviceIdentity(node: string): Promise<string> {
    const { stdout } = await onHost(node, `systemctl show -p MainPID -p ActiveEnterTimestampMonotonic ${unitOf(node)}`);
    return stdout.trim();
}

/** Asks a host to reboot and waits until it has started booting again. */
async function reboot(node: string): Promise<void> {
    const boots = hosts.boots(node).length;
    await onHost(node, "sudo systemctl reboot").catch(() => undefined); // the session may die with the host
    await hosts.waitForBoot(node, boots + 1, 180);
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

const missing = missingForBootedHosts();
if (missing.length > 0) {
    // Part of the full suite: it never skips quietly and never runs half.
    test("the end-to-end test can run here", () => {
        assert.fail(`the end-to-end test needs ${missing.join(", ")}; on a machine without them, ` +
            "run `npm run test:quick` for types, lint and the unit and mocks tests");
    });
} else describe("a Ray cluster on booted hosts", { timeout: 2_400_000 }, () => {
    const commandsBefore = () => log.length;

    before(async () => {
        hosts.up();
        const t0 = Date.now();
        rendered = await render({
            packageIndexUrl: hosts.indexUrl,
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
        }, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKey: { privateKeyOpenssh: hosts.privateKey, publicKeyOpenssh: hosts.publicKey },
            // Creating an instance powers on a machine with the instance's own user data, as EC2 does.
            launchInstance: async (node, inputs) => hosts.launch(node, inputs.userData),
            runCommand: async (inputs, name) => {
                const start = Date.now() - t0;
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                log.push({ name, start, end: Date.now() - t0, stdout: result.stdout, stderr: result.stderr });
                return result;
            },
        });
    });

    after(() => {
        try {
            hosts.down();
        } finally {
            cleanupKeys();
        }
    });

    test("the bootstrap succeeds as cloud-init's user and the verify step reports head + 2 workers", () => {
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        const status = rendered.outputs.rayClusterStatus;
        assert.equal(status.aliveNodes, 3);
        assert.deepEqual(status.nodes.map((n: { name: string }) => n.name), NODES);
        for (const entry of log) {
            console.log(`${(entry.start / 1000).toFixed(1)}s → ${(entry.end / 1000).toFixed(1)}s ${entry.name}`);
        }
        assert.equal(command("ray-cluster-headnode-prepare").connection.user, LOGIN_USER);
    });

    test("each host booted the stack's user data and its key pair, and cloud-init finished cleanly", async () => {
        const keyPair = byType(rendered, "aws:ec2/keyPair:KeyPair")[0];
        assert.equal(reveal(keyPair.inputs).publicKey.trim(), hosts.publicKey, "the hosts trust the stack's key");
        for (const node of NODES) {
            assert.equal(reveal(byName(rendered, `ray-cluster-${node}`).inputs).userData, NODE_USER_DATA);
            const { stdout } = await onHost(node, "cloud-init status; id -un; sudo cat /var/lib/cloud/instance/user-data.txt");
            assert.match(stdout, /^status: done$/m, `${node}: ${stdout}`);
            assert.match(stdout, new RegExp(`^${LOGIN_USER}$`, "m"));
            assert.ok(stdout.includes(NODE_USER_DATA.trim()), `${node} ran the stack's user data`);
        }
    });

    test("commands ran in the engine's order: installs overlapped, starts waited for the head", () => {
        const at = (name: string) => log.find((e) => e.name === `ray-cluster-${name}`)!;
        const installs = NODES.map((node) => at(`${node}-install`));
        assert.ok(Math.max(...installs.map((i) => i.start)) < Math.min(...installs.map((i) => i.end)), "installs ran in parallel");
        for (const worker of ["worker-1", "worker-2"]) {
            assert.ok(at(`${worker}-start`).start >= at("headnode-start").end, `${worker} starts after the head is up`);
        }
        assert.ok(at("verify").start >= Math.max(at("worker-1-start").end, at("worker-2-start").end));
    });

    test("each host got its hostname, resolvable through its own /etc/hosts", async () => {
        for (const node of NODES) {
            const { stdout } = await onHost(node, `hostname; getent ahostsv4 ${node}`);
            assert.equal(stdout.split("\n")[0], node);
            assert.match(stdout, new RegExp(`^${hosts.address(node).replace(/\./g, "\\.")}\\s+STREAM ${node}$`, "m"));
        }
    });

    test("ray status on the head shows 3 nodes", async () => {
        // A snapshot on purpose: verify returned only once `ray status` listed every node, and it never unlists one.
        assert.equal((await statusNodes()).length, 3);
    });

    test("Ray runs as an enabled systemd service on every node, and the token is in no unit, setting or command line", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        for (const node of NODES) {
            const unit = unitOf(node);
            const { stdout } = await onHost(node, `systemctl is-enabled ${unit}; systemctl is-active ${unit}; ` +
                `stat -c %a ~/.ray/auth_token; cat /etc/systemd/system/${unit}.service /etc/ray-cluster/${unit}.env; ps -eo args`);
            assert.match(stdout, /^enabled\nactive\n600\n/, `${node}: ${stdout.slice(0, 200)}`);
            assert.ok(!stdout.includes(token), `${node}: the token shows in a unit, a setting or a command line`);
            // systemd's own check of the installed unit. Debian 12's systemd 252 predates the backoff keys (254).
            const analysis = (await onHost(node, `systemd-analyze verify ${unit}.service 2>&1 || echo "exit $?"`)).stdout;
            const complaints = analysis.split("\n").filter((line) => line.trim() !== "" &&
                !/Unknown key '(RestartSteps|RestartMaxDelaySec)' in section \[Service\], ignoring\.$/.test(line));
            assert.deepEqual(complaints, [], `${node}: systemd-analyze verify ${unit}.service`);
        }
    });

    test("the smoke job ran tasks on all 3 hosts", async () => {
        assertSmokeRanEverywhere(await smokeJob());
    });

    test("re-running a node's install and start is a fast no-op that restarts nothing", async () => {
        const install = command("ray-cluster-worker-1-install");
        const again = await runOverSsh(install, install.create!, undefined, "install again");
        assert.match(again.stdout, /already installed/);
        assert.ok(again.seconds < 5, `no-op install took ${again.seconds}s`);
        for (const [node, expected] of [["worker-1", /already joined/], ["headnode", /already running/]] as const) {
            const before = await serviceIdentity(node);
            const start = command(`ray-cluster-${node}-start`);
            assert.match((await runOverSsh(start, start.create!, start.stdin, `${node} start again`)).stdout, expected);
            assert.equal(await serviceIdentity(node), before, `${node}'s service was restarted`);
        }
    });

    test("a client without the token is refused; the token lets it in", async () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        assert.equal(await eventually({ what: "the dashboard answering", timeoutSeconds: 60 },
            async () => dashboardStatus()), 401);
        assert.equal(await dashboardStatus("not-the-token"), 403);
        assert.equal(await dashboardStatus(token), 200);
        await assert.rejects(onHost("worker-1", "RAY_AUTH_MODE=token RAY_AUTH_TOKEN=wrong timeout 60 ~/ray-venv/bin/ray status"),
            (e: CommandFailed) => /AuthenticationError|InvalidAuthToken/.test(e.result.stderr + e.result.stdout));
    });

    test("verify waits until a late worker shows in `ray status`, not just in the GCS node table", async () => {
        const worker = command("ray-cluster-worker-2-start");
        await runOverSsh(worker, worker.delete!, undefined, "worker-2 leaves");
        await eventually({ what: "worker-2 gone from ray status", timeoutSeconds: 90 }, async (last) => {
            const nodes = await statusNodes();
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
        assert.equal((await statusNodes()).length, 3, "ray status right after verify lists every node");
    });

    test("verify fails within its bound and names the node that never joined", async () => {
        const verify = command("ray-cluster-verify");
        const head = hosts.address("headnode");
        // The stack's verify script with a short bound and a node that does not exist.
        const text = scriptCommand("verify-cluster.sh", ["--address", `${head}:6379`, "--timeout", "5",
            "--expect", `headnode=${head}`, "--expect", "ghost-1=10.213.0.99"]);
        const began = Date.now();
        await assert.rejects(runOverSsh(verify, text, undefined, "verify a ghost"), (e: CommandFailed) => {
            assert.match(e.result.stderr, /verify-cluster: error: 1 of 2 nodes did not join within 5s: ghost-1 \(10\.213\.0\.99\)/);
            return true;
        });
        assert.ok((Date.now() - began) / 1000 < 60, "failed within its bound");
    });

    test("kill -9 of a worker's raylet: systemd brings the worker back", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await onHost("worker-1", "sudo pkill -9 -x raylet");
        const afterKill = await eventually({ what: "worker-1 back with a new raylet", timeoutSeconds: RETURN_SECONDS,
            intervalSeconds: 3 }, async (last) => {
            const ids = await clusterWhole();
            last(`worker-1 is ${ids["worker-1"]}`);
            return ids["worker-1"] !== before["worker-1"] ? ids : undefined;
        });
        assert.equal(afterKill.headnode, before.headnode, "the head was untouched");
        const { stdout } = await onHost("worker-1", "systemctl show -p NRestarts ray-worker");
        assert.match(stdout, /NRestarts=[1-9]/, "systemd restarted the service");
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("a rebooted worker rejoins by itself and keeps its hostname", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await reboot("worker-1");
        const ids = await eventually({ what: "worker-1 back after its reboot", timeoutSeconds: RETURN_SECONDS,
            intervalSeconds: 3 }, async (last) => {
            const now = await clusterWhole();
            last(`worker-1 is ${now["worker-1"]}`);
            return now["worker-1"] !== before["worker-1"] ? now : undefined;
        });
        assert.equal(ids["worker-2"], before["worker-2"], "worker-2 was untouched");
        const { stdout } = await onHost("worker-1", "hostname; journalctl --list-boots --no-pager | tail -n +2 | wc -l");
        assert.deepEqual(stdout.trim().split("\n"), ["worker-1", "2"]);
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("a rebooted head comes back at its address, its workers rejoin, and the smoke job runs on all", async () => {
        const before = await clusterWhole();
        const ran = commandsBefore();
        await reboot("headnode");
        await eventually({ what: "a new cluster on the rebooted head", timeoutSeconds: RETURN_SECONDS, intervalSeconds: 3 },
            async (last) => {
                const ids = await clusterWhole();
                last(`head is ${ids.headnode}`);
                return ids.headnode !== before.headnode ? true : undefined;
            });
        assertSmokeRanEverywhere(await smokeJob());
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("stop and start of every node: workers keep trying while the head is away, then the cluster is whole", async () => {
        const ran = commandsBefore();
        hosts.powerOff("headnode");
        // Each try of a worker is bounded and says so in its journal; systemd keeps trying.
        const tries = await eventually({ what: "worker-1 logging failed tries to reach the stopped head",
            timeoutSeconds: RETURN_SECONDS, intervalSeconds: 5 }, async (last) => {
            const { stdout } = await onHost("worker-1", "journalctl -u ray-worker --no-pager -o cat | grep -c 'did not answer within' || true");
            last(`${stdout.trim()} failed tries`);
            return Number(stdout.trim()) >= 2 ? Number(stdout.trim()) : undefined;
        });
        const { stdout } = await onHost("worker-1", "journalctl -u ray-worker --no-pager -o cat | grep 'did not answer within' | tail -1");
        assert.match(stdout, new RegExp(`GCS at ${hosts.address("headnode").replace(/\./g, "\\.")}:6379 did not answer within 30s; trying again`));
        assert.ok(tries >= 2);
        for (const node of ["worker-1", "worker-2"]) {
            hosts.powerOff(node);
        }
        for (const node of NODES) {
            hosts.powerOn(node);
        }
        await clusterWhole(NODES, "the cluster whole again after every node was stopped and started");
        assertSmokeRanEverywhere(await smokeJob());
        assert.equal(log.length, ran, "no bootstrap command ran again");
    });

    test("the token never appears in any command's output", () => {
        const token = command("ray-cluster-headnode-start").stdin!;
        for (const entry of log) {
            assert.ok(!entry.stdout.includes(token) && !entry.stderr.includes(token), `${entry.name} printed the token`);
        }
        assert.ok(!command("ray-cluster-headnode-start").create!.includes(token), "the token is not in the command text");
    });

    test("the delete commands stop and disable Ray, workers before the head, and no reboot brings it back", async () => {
        for (const node of ["worker-1", "worker-2", "headnode"]) {
            const start = command(`ray-cluster-${node}-start`);
            const { stdout } = await runOverSsh(start, start.delete!, undefined, `${node} delete`);
            assert.match(stdout, new RegExp(`${unitOf(node)}\\.service stopped and disabled`));
            assert.match(stdout, /Ray stopped/);
        }
        await Promise.all(NODES.map((node) => reboot(node)));
        for (const node of NODES) {
            const { stdout } = await onHost(node, `timeout 120 systemctl is-system-running --wait >/dev/null || true; ` +
                `systemctl is-enabled ${unitOf(node)} 2>&1 || true; pgrep -l -x 'raylet|gcs_server' || true`);
            assert.match(stdout.trim(), /^(disabled|.*No such file or directory.*)$/, `${node}: ${stdout}`);
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
