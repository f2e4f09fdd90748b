/**
 * End to end with private workers (workerNetwork: private) on booted machines. The workers sit on a second test
 * bridge that this machine has no address on and no route to; the head has an interface on both bridges, as a head
 * in a public subnet reaches workers in a private one. Every worker command therefore has to go through the head,
 * as @pulumi/command's proxy connection takes it, and so does the user's ssh with the generated config.
 */
import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { Rendered, render } from "../tools/render";
import { serveLaunchedInstance } from "./harness/instance-metadata";
import { REGION } from "./harness/s3-emulator";
import { autoscalerEndpointFiles, Ec2Emulator, groupNames, Ec2Follower } from "./harness/ec2-emulator";
import { eventually } from "./harness/eventually";
import { SecurityGroupFirewall, stackFirewall } from "./harness/firewall";
import { BootedHosts, describeOnBootedHosts, LOGIN_USER, OUTSIDER, THIS_MACHINE } from "./harness/machines";
import { cleanupKeys, CommandFailed, CommandInputs, runOverSsh } from "./harness/ssh";

const TIMEOUT_SECONDS = 90;
const RETURN_SECONDS = 300;
const NODES = ["headnode", "worker-1", "worker-2"];
const WORKERS = NODES.slice(1);
const hosts = new BootedHosts({ headnode: { public: 21, private: 21 }, "worker-1": { private: 22 }, "worker-2": { private: 23 } });
const ec2 = new Ec2Emulator();
/** The private subnet, in the emulated EC2 as on the private bridge: moto gives launched workers .4 upwards. */
const PRIVATE_CIDR = "10.213.1.0/24";
/** An elastic group of private workers; a task of 3 CPUs fits no static node (each has 2), only one it launches. */
const ELASTIC = { name: "burst", instanceType: "c7i.xlarge", maxCount: 1 };
let follower: Ec2Follower;
let rendered: Rendered;
let firewall: SecurityGroupFirewall;
let userHome = "";
const log: Array<{ name: string; connection: CommandInputs["connection"] }> = [];

describeOnBootedHosts("a Ray cluster whose workers are reached only through the head", { timeout: 1_200_000 }, () => {
    before(async () => {
        hosts.up();
        ec2.start(hosts.state);
        const setup = ec2.setup(["10.213.0.0/24", PRIVATE_CIDR], ["ray-cluster-sg", "ray-cluster-head-sg"], ["ray-cluster-profile-0123456"]);
        userHome = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-user-"));
        const config = {
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
            workerCount: WORKERS.length,
            workerNetwork: "private",
            packageIndexUrl: hosts.indexUrl,
            sshIdentityFile: path.join(userHome, ".ssh", "ray-cluster-e2e.pem"),
            sshAllowedCidrs: [`${THIS_MACHINE}/32`],
            elasticIdleMinutes: 1,
            workerGroups: [ELASTIC],
        };
        firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        follower = new Ec2Follower(ec2, hosts, firewall, groupNames(setup), () => hosts.createdNodes());
        follower.start();
        rendered = await render(config, {
            // A private worker has no public IP; the head's public address is the one on this machine's bridge.
            addresses: (node) => ({ privateIp: hosts.nodeIp(node), publicIp: hosts.isPrivateOnly(node) ? "" : hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            resourceIds: { "ray-cluster-subnet": setup.subnets["10.213.0.0/24"], "ray-cluster-private-subnet": setup.subnets[PRIVATE_CIDR],
                "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"], "ray-cluster-head-sg": setup.securityGroups["ray-cluster-head-sg"] },
            launchInstance: async (node, inputs, account) => {
                ec2.importKeyPair(inputs.keyName, account.publicKey);
                // Each node at the address the cluster knows it by (the head's on the private bridge, where the private
                // workers reach it, as they reach a head in another subnet of the VPC); moto gives none of them away.
                const id = ec2.runInstance(inputs.tags, { subnetId: setup.subnets[PRIVATE_CIDR], privateIp: hosts.nodeIp(node) });
                hosts.launch(node, { userData: inputs.userData, publicKey: account.publicKey, instanceId: id }, firewall,
                    node === "headnode" ? autoscalerEndpointFiles(ec2.endpoint) : {});
                serveLaunchedInstance(hosts, node, id, inputs, account, REGION);
                return id;
            },
            runCommand: async (inputs, name) => {
                log.push({ name, connection: inputs.connection });
                return hosts.namingBlocked(NODES, () => runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name));
            },
        });
    });

    after(() => {
        try {
            follower?.stop();
            hosts.down();
        } finally {
            cleanupKeys();
            fs.rmSync(userHome, { recursive: true, force: true });
        }
    });

    test("the bootstrap reaches every worker through the head and the verify step reports all three nodes", () => {
        assert.equal(rendered.error, undefined, String(rendered.error?.stack));
        const status = rendered.outputs.rayClusterStatus;
        assert.equal(status.aliveNodes, 3);
        assert.deepEqual(status.nodes.map((n: { name: string }) => n.name), NODES);
        const head = hosts.address("headnode");
        for (const worker of WORKERS) {
            const commands = log.filter((c) => c.name.startsWith(`ray-cluster-${worker}-`));
            assert.deepEqual(commands.map((c) => c.name.slice(`ray-cluster-${worker}-`.length)).sort(), ["install", "job-env", "prepare", "start"]);
            for (const { name, connection } of commands) {
                assert.equal(connection.host, hosts.nodeIp(worker), `${name} dials the worker's private address`);
                assert.equal(connection.proxy?.host, head, `${name} goes through the head`);
            }
        }
        for (const { name, connection } of log.filter((c) => !WORKERS.some((w) => c.name.startsWith(`ray-cluster-${w}-`)))) {
            assert.deepEqual([connection.host, connection.proxy], [head, undefined], name);
        }
        assert.deepEqual(rendered.outputs.workerPublicIps, []);
        assert.deepEqual(rendered.outputs.workerPrivateIps, WORKERS.map((w) => hosts.nodeIp(w)));
    });

    test("this machine has no way to a worker except through the head", async () => {
        for (const worker of WORKERS) {
            const direct = runOverSsh({ connection: { host: hosts.nodeIp(worker), user: LOGIN_USER, privateKey: hosts.privateKey,
                perDialTimeout: 5 } }, "true", undefined, `${worker} directly`);
            await assert.rejects(direct, (e: unknown) => e instanceof CommandFailed && /Network is unreachable|No route to host/.test(e.result.stderr));
            const { stdout } = await hosts.run(worker, "hostname; ip -4 -o addr show scope global");
            assert.match(stdout, new RegExp(`^${worker}$`, "m"));
            assert.ok(!stdout.includes("10.213.0."), `${worker} has no address on the public bridge: ${stdout}`);
        }
    });

    test("Ray runs across both networks: the GCS table, ray status and a smoke job see every node", async () => {
        const ids = await hosts.clusterWhole(NODES, RETURN_SECONDS, "every node in ray status");
        assert.equal(new Set(Object.values(ids)).size, 3);
        const stdout = await hosts.smokeJob(NODES.length);
        assert.match(stdout, /tasks ran on 3 of 3 expected nodes/);
        for (const node of NODES) {
            assert.match(stdout, new RegExp(`node ${node} ${hosts.nodeIp(node).replace(/\./g, "\\.")}`));
        }
    });

    test("the generated ssh config, installed by npm run ssh-config, takes plain ssh to worker-1 through the head", () => {
        const sshDir = path.join(userHome, ".ssh");
        fs.mkdirSync(sshDir, { recursive: true, mode: 0o700 });
        // The user's own settings after the block: these test hosts have new host keys every run.
        fs.writeFileSync(path.join(sshDir, "config"), "Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n" +
            "    BatchMode yes\n    ConnectTimeout 10\n    LogLevel ERROR\n", { mode: 0o600 });
        const install = spawnSync("bash", [path.join(__dirname, "..", "scripts", "ssh-config.sh")], {
            input: JSON.stringify({ sshConfig: rendered.outputs.sshConfig, sshPrivateKey: hosts.privateKey }),
            env: { ...process.env, HOME: userHome }, encoding: "utf8",
        });
        assert.equal(install.status, 0, install.stderr);
        const config = path.join(sshDir, "config");
        assert.match(fs.readFileSync(config, "utf8"), new RegExp(`Host worker-1\\n {4}HostName ${hosts.nodeIp("worker-1").replace(/\./g, "\\.")}\\n {4}ProxyJump headnode\\n`));
        // ssh finds ~/.ssh/config through the password database, not HOME; -F names it, and ProxyJump passes it on.
        const ssh = (...args: string[]) => spawnSync("ssh", ["-F", config, ...args], { encoding: "utf8", timeout: 60_000 });
        const through = ssh("worker-1", "hostname");
        assert.equal(through.status, 0, through.stderr);
        assert.equal(through.stdout.trim(), "worker-1");
        const direct = ssh("-o", "ProxyJump=none", "worker-1", "hostname");
        assert.notEqual(direct.status, 0, "without the jump there is no way in");
        assert.match(direct.stderr, /Network is unreachable|No route to host/);
    });

    test("a private worker accepts nothing except from the head and its peers", async () => {
        assert.deepEqual(firewall.groupsOf, { headnode: ["ray-cluster-sg", "ray-cluster-head-sg"],
            "worker-1": ["ray-cluster-sg"], "worker-2": ["ray-cluster-sg"] });
        const ports = await hosts.rayPorts();
        const worker = hosts.nodeIp("worker-1");
        const workerPorts = [22, ...Object.values(ports[worker])];
        hosts.forgetBlocked(NODES);
        for (const port of workerPorts) {
            assert.ok(!hosts.connects("outsider", worker, port, 2), `worker-1:${port} answered an outsider on its subnet`);
        }
        assert.ok(!hosts.connects("outsider", hosts.address("headnode"), 22, 2), "the head's SSH answered an outsider");
        const blocked = hosts.describeBlocked(NODES);
        for (const port of workerPorts) {
            const flow = `${OUTSIDER.private} → worker-1 (${worker}) tcp/${port}`;
            assert.ok(blocked.includes(flow), `${flow} is not in the groups' record: ${blocked}`);
        }
        // The head and a peer get in: SSH from the head (how every worker command arrives), Ray from worker-2.
        const probe = (port: number) => `timeout 3 bash -c "exec 3<>/dev/tcp/${worker}/${port}" && echo open`;
        assert.equal((await hosts.run("headnode", probe(22))).stdout.trim(), "open");
        for (const port of Object.values(ports[worker])) {
            assert.equal((await hosts.run("worker-2", probe(port))).stdout.trim(), "open", `worker-2 → worker-1:${port}`);
        }
    });

    test("a login refused while a host boots (/run/nologin) is dialled again, directly and through the head", async () => {
        // Early in a boot sshd answers before systemd-user-sessions lifts /run/nologin, and refuses the login user;
        // the provider dials again, so the harness must too. The worker's refusal outlasts the head's, so that its
        // dial passes the head and is refused by the worker itself.
        const lifted = { "worker-1": 8, headnode: 3 };
        for (const [node, seconds] of Object.entries(lifted)) {
            await hosts.run(node, `sudo touch /run/nologin && sudo systemd-run --quiet --on-active=${seconds} rm -f /run/nologin`);
        }
        const logins = await Promise.all(Object.keys(lifted).map(async (node) =>
            [node, await hosts.run(node, "test ! -e /run/nologin && echo in")] as const));
        for (const [node, result] of logins) {
            assert.equal(result.stdout.trim(), "in", node);
            assert.ok((result.dialSeconds ?? 0) > 0, `${node}: the first dial was refused and a later one got in`);
        }
    });

    test("a private worker that reboots comes back by itself and rejoins through the private network", async () => {
        const boots = hosts.boots("worker-1").length;
        await hosts.run("worker-1", "sudo systemctl reboot").catch(() => undefined); // the session may die with the host
        await hosts.waitForBoot("worker-1", boots + 1, 180);
        await hosts.clusterWhole(NODES, RETURN_SECONDS, "worker-1 back in ray status after its reboot");
        const { stdout } = await hosts.run("worker-1", "systemctl is-active ray-worker; ip -4 -o addr show scope global");
        assert.match(stdout, /^active$/m);
    });

    test("an elastic group of private workers: the autoscaler launches into the private subnet, the worker joins and runs " +
        "the task, the user reaches it only through the head, and it is terminated once idle", async () => {
        const where = await hosts.placeTask(3, 600);
        const launched = follower.launched();
        assert.equal(launched.length, 1);
        const [worker] = launched;
        assert.match(worker.privateIp, /^10\.213\.1\.\d+$/, "in the private subnet");
        assert.deepEqual([where.host, where.ip, where.labels["ray-cluster/group"]],
            [`burst-${worker.privateIp.replace(/\./g, "-")}`, worker.privateIp, "burst"]);
        // The documented way in: the user's own key, through the head (the elasticGroups output says so).
        const identity = path.join(userHome, ".ssh", "ray-cluster-e2e.pem");
        assert.ok(rendered.outputs.elasticGroups.includes(`ssh -J headnode -i ${identity} ubuntu@<its private IP>`));
        const config = path.join(userHome, ".ssh", "config");
        const ssh = (...args: string[]) => spawnSync("ssh", ["-F", config, ...args], { encoding: "utf8", timeout: 60_000 });
        const through = ssh("-J", "headnode", "-i", identity, `${LOGIN_USER}@${worker.privateIp}`, "hostname; systemctl is-active ray-worker");
        assert.equal(through.status, 0, through.stderr);
        assert.equal(through.stdout, `${where.host}\nactive\n`);
        const direct = ssh("-i", identity, `${LOGIN_USER}@${worker.privateIp}`, "hostname");
        assert.notEqual(direct.status, 0, "without the jump there is no way in");
        await eventually({ what: `${worker.id} terminated once idle`, timeoutSeconds: 60 + 180, intervalSeconds: 2 },
            async () => (worker.poweredOffAt !== undefined ? true : undefined));
        assert.equal(ec2.states()[worker.id].state, "terminated");
        await hosts.clusterWhole(NODES, RETURN_SECONDS, "the static cluster alone again");
    });
});
