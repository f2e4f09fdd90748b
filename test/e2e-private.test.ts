/**
 * End to end with private workers (workerNetwork: private) on booted machines. The workers sit on a second test
 * bridge that this machine has no address on and no route to; the head has an interface on both bridges, as a head
 * in a public subnet reaches workers in a private one. Every worker command therefore has to go through the head,
 * as @pulumi/command's proxy connection takes it, and so does the user's ssh with the generated config.
 *
 * The stack runs here as the documented offline combination: Ray-ready images (rayImage) and no NAT gateway. A
 * builder host on the public bridge is set up by the stack's build command and snapshotted into an image, as
 * AmiFromInstance makes one; every node and every worker the autoscaler launches boots from that image, and none of
 * them reaches the package index.
 */
import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, test } from "node:test";
import { diffGraphs } from "../tools/graph";
import { byName, byType, Rendered, render, RenderOptions, reveal, StackConfig } from "../tools/render";
import { serveLaunchedInstance } from "./harness/instance-metadata";
import { REGION } from "./harness/s3-emulator";
import { autoscalerEndpointFiles, Ec2Emulator, groupNames, Ec2Follower } from "./harness/ec2-emulator";
import { eventually } from "./harness/eventually";
import { SecurityGroupFirewall, stackFirewall } from "./harness/firewall";
import { BUILDER_NAME, ImageBuilds } from "./harness/images";
import { BootedHosts, describeOnBootedHosts, LOGIN_USER, OUTSIDER, THIS_MACHINE } from "./harness/machines";
import { cleanupKeys, CommandFailed, CommandInputs, runOverSsh } from "./harness/ssh";

const TIMEOUT_SECONDS = 90;
const RETURN_SECONDS = 300;
const NODES = ["headnode", "worker-1", "worker-2"];
const WORKERS = NODES.slice(1);
/** The image builder is on the head's (public) subnet: each build gets a host of its own, as each builder is a new instance. */
const hosts = new BootedHosts({ headnode: { public: 21, private: 21 }, "worker-1": { private: 22 }, "worker-2": { private: 23 } });
const builderHost = ImageBuilds.host;
/** Four builds at most: the first, the changed script's, the one that fails, and the one after a deletion. */
const images = new ImageBuilds(hosts, [24, 25, 26, 27]);
const ec2 = new Ec2Emulator();
/** The private subnet, in the emulated EC2 as on the private bridge: moto gives launched workers .4 upwards. */
const PRIVATE_CIDR = "10.213.1.0/24";
/** An elastic group of private workers; a task of 3 CPUs fits no static node (each has 2), only one it launches. */
const ELASTIC = { name: "burst", instanceType: "c7i.xlarge", maxCount: 1 };
let follower: Ec2Follower;
let rendered: Rendered;
let firewall: SecurityGroupFirewall;
let userHome = "";
const log: Array<{ name: string; connection: CommandInputs["connection"]; seconds: number; stdout: string }> = [];
/** The rig host of each node the stack launched, by instance id. */
const hostOf: Record<string, string> = {};
let config: StackConfig;
let renderOptions: RenderOptions;
/** The index the builder installs from, and which no node reaches. */
const indexReachable = (node: string) => hosts.run(node, `python3 -c "import urllib.request; urllib.request.urlopen('${hosts.indexUrl}', timeout=3)" ` +
    "2>/dev/null && echo reachable || echo unreachable").then((r) => r.stdout.trim() === "reachable");

/** The line the script-change test adds to a node script, in a copy of the program. */
const SCRIPT_CHANGE = "# changed by the end-to-end test: a new image";

/** A copy of the program whose start-worker.sh has changed, as a user's next checkout would; returns its directory. */
function changedCheckout(): string {
    const root = path.join(__dirname, "..");
    const dir = fs.mkdtempSync(path.join(hosts.state, "checkout-"));
    for (const entry of ["index.ts", "src", "scripts", "package.json"]) {
        fs.cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true });
    }
    // The same modules (one @pulumi/pulumi, whose mocks the render installed), as a checkout with its dependencies.
    fs.symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"));
    fs.appendFileSync(path.join(dir, "scripts", "start-worker.sh"), `${SCRIPT_CHANGE}\n`);
    return dir;
}

/**
 * A `pulumi up` that must fail, under the suite's rig: its first error, and the rejections of what waited on the
 * failed resource, which the engine would never start and which the mocks leave unhandled.
 */
async function failingUp(stackConfig: StackConfig): Promise<{ error: Error; consequences: unknown[] }> {
    const listeners = process.listeners("unhandledRejection");
    const consequences: unknown[] = [];
    process.removeAllListeners("unhandledRejection");
    process.on("unhandledRejection", (reason) => consequences.push(reason));
    try {
        const error = await render(stackConfig, renderOptions).then((r) => r.error, (e: Error) => e);
        assert.ok(error, "the up succeeded");
        // Let the rejections of what waited on the failure surface before the runner's listeners return.
        await new Promise((resolve) => setTimeout(resolve, 2000));
        return { error, consequences };
    } finally {
        process.removeAllListeners("unhandledRejection");
        listeners.forEach((listener) => process.on("unhandledRejection", listener));
    }
}

/** What the head's autoscaler logged (Ray's monitor writes monitor.log; its setup commands' output is there too). */
async function autoscalerLog(): Promise<string> {
    const { stdout } = await hosts.run("headnode", "cat /tmp/ray/session_latest/logs/monitor.* 2>/dev/null; " +
        "journalctl -u ray-autoscaler.service --no-pager -o cat 2>/dev/null || true");
    return stdout;
}

describeOnBootedHosts("a Ray cluster whose workers are reached only through the head", { timeout: 1_200_000 }, () => {
    before(async () => {
        hosts.up();
        ec2.start(hosts.state);
        const setup = ec2.setup(["10.213.0.0/24", PRIVATE_CIDR], ["ray-cluster-sg", "ray-cluster-head-sg"], ["ray-cluster-profile-0123456"]);
        userHome = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-user-"));
        config = {
            bootstrapTimeoutSeconds: TIMEOUT_SECONDS,
            workerCount: WORKERS.length,
            workerNetwork: "private",
            natGateway: false,
            rayImage: true,
            packageIndexUrl: hosts.indexUrl,
            sshIdentityFile: path.join(userHome, ".ssh", "ray-cluster-e2e.pem"),
            sshAllowedCidrs: [`${THIS_MACHINE}/32`],
            elasticIdleMinutes: 1,
            workerGroups: [ELASTIC],
        };
        firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        // The builder's groups, as its request names them, go to each builder host as it launches.
        const builderGroups = firewall.groupsOf[BUILDER_NAME];
        delete firewall.groupsOf[BUILDER_NAME];
        follower = new Ec2Follower(ec2, hosts, firewall, groupNames(setup), () => hosts.createdNodes(), undefined, { withoutIndex: true });
        follower.start();
        const launched = new Set<string>();
        renderOptions = {
            // A private worker has no public IP; the head's public address is the one on this machine's bridge.
            addresses: (node) => {
                const host = node === BUILDER_NAME ? images.current() : node;
                return { privateIp: hosts.nodeIp(host), publicIp: hosts.isPrivateOnly(host) ? "" : hosts.address(host) };
            },
            privateKeys: (name) => hosts.keyFor(name),
            resourceIds: { "ray-cluster-subnet": setup.subnets["10.213.0.0/24"], "ray-cluster-private-subnet": setup.subnets[PRIVATE_CIDR],
                "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"], "ray-cluster-head-sg": setup.securityGroups["ray-cluster-head-sg"] },
            images: images.account,
            launchInstance: async (node, inputs, account) => {
                ec2.importKeyPair(inputs.keyName, account.publicKey);
                if (node === BUILDER_NAME) {
                    // A new builder each build, on the head's subnet, in the groups its request named.
                    const id = ec2.runInstance(inputs.tags, { subnetId: setup.subnets["10.213.0.0/24"], privateIp: images.nextAddress() });
                    images.launch(inputs, account, id, firewall, builderGroups);
                    return id;
                }
                if (launched.has(node)) {
                    // A later `pulumi up` keeps the instance: its only change, ami, is ignored (the diff test checks it).
                    return Object.keys(hostOf).find((id) => hostOf[id] === node);
                }
                launched.add(node);
                // Each node at the address the cluster knows it by (the head's on the private bridge, where the private
                // workers reach it, as they reach a head in another subnet of the VPC); moto gives none of them away.
                // No NAT gateway: no node reaches the package index.
                const id = ec2.runInstance(inputs.tags, { subnetId: setup.subnets[PRIVATE_CIDR], privateIp: hosts.nodeIp(node) });
                hosts.launch(node, { userData: inputs.userData, publicKey: account.publicKey, instanceId: id, imageId: inputs.ami }, firewall,
                    node === "headnode" ? autoscalerEndpointFiles(ec2.endpoint) : {}, { withoutIndex: true });
                ec2.trustKey(serveLaunchedInstance(hosts, node, id, inputs, account, REGION).AccessKeyId, account.role!, id);
                hostOf[id] = node;
                return id;
            },
            // The account's own image, which EC2 then launches (it refuses an image it does not hold).
            createImage: async (_name, inputs) => ec2.registerImage({ imageId: await images.createImage(inputs), name: inputs.name, tags: inputs.tags }),
            runCommand: async (inputs, name) => {
                const began = Date.now();
                const result = await hosts.namingBlocked(NODES, () => runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name));
                log.push({ name, connection: inputs.connection, seconds: (Date.now() - began) / 1000, stdout: result.stdout });
                return result;
            },
        };
        // The head's autoscaler calls EC2 while the render runs (verify waits on the status it gives): the stack's IAM
        // is loaded as the render registers it. Later renders load it once they end.
        rendered = await render(config, { ...renderOptions, registered: ec2.followStackIam });
    });

    after(async () => {
        try {
            await follower?.stop();
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
            // The image builder sits in the head's public subnet and is dialled directly.
            assert.deepEqual([connection.host, connection.proxy], [name.includes("-image-") ? hosts.address(builderHost(1)) : head, undefined], name);
        }
        assert.deepEqual(rendered.outputs.workerPublicIps, []);
        assert.deepEqual(rendered.outputs.workerPrivateIps, WORKERS.map((w) => hosts.nodeIp(w)));
    });

    test("rayImage: the stack's build command made the image on a builder, which is gone; every node booted the image, and " +
        "with no NAT gateway none reaches the package index, yet each install found Ray in place", async () => {
        const build = log.find((c) => c.name === "ray-cluster-image-ubuntu-build")!;
        const image = byName(rendered, "ray-cluster-image-ubuntu");
        const key = reveal(image.inputs).tags["ray-cluster:image-key"];
        console.log(`image build on the builder: ${build.seconds.toFixed(1)}s; ${build.stdout.trim().split("\n").pop()}`);
        assert.match(build.stdout, new RegExp(`build-image: image ${key} ready`));
        // The builder powers itself off (a terminated instance) once the image exists, and nothing restarts it.
        await hosts.waitForPowerOff(builderHost(1), "the builder powered off");
        const boots = hosts.boots(builderHost(1));
        assert.deepEqual([boots.length, boots[boots.length - 1].exitCode], [2, 0], "booted, restarted by the snapshot, powered off");
        assert.equal(byType(rendered, "aws:ec2/instance:Instance").filter((i) => i.name.includes("builder")).length, 1);
        const machineIds = new Set<string>();
        for (const node of NODES) {
            assert.equal(await indexReachable(node), false, `${node} reaches the package index`);
            const install = log.find((c) => c.name === `ray-cluster-${node}-install`)!;
            assert.match(install.stdout, /install-ray: ray\[default,data\]==\S+ already installed/, node);
            console.log(`${node}: install ${install.seconds.toFixed(1)}s from the image`);
            const { stdout } = await hosts.run(node, "cat /etc/ray-cluster/image; ls /usr/local/lib/ray-cluster/scripts; " +
                "wc -l < ~/.ssh/authorized_keys; cat /etc/machine-id");
            const lines = stdout.trim().split("\n");
            assert.equal(lines[0], `key=${key}`, node);
            assert.ok(lines.includes("install-ray.sh") && lines.includes("ray-worker.service"), `${node}: the node scripts are in the image`);
            assert.equal(lines[lines.length - 2], "1", `${node} trusts its own key pair's key and no other`);
            machineIds.add(lines[lines.length - 1]);
        }
        assert.equal(machineIds.size, NODES.length, "each node has a machine-id of its own");
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
            "worker-1": ["ray-cluster-sg"], "worker-2": ["ray-cluster-sg"], [builderHost(1)]: ["ray-cluster-image-builder-sg"] });
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
            await hosts.run(node, "sudo touch /run/nologin && " +
                `sudo systemd-run --quiet --on-active=${seconds} --timer-property=AccuracySec=100ms rm -f /run/nologin`);
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

    test("a changed node script gives a new image on a new builder, and the next up replaces no running node and gives " +
        "the head's autoscaler a config that names the new image", async () => {
        const before = rendered;
        const bootsBefore = Object.fromEntries(NODES.map((node) => [node, hosts.boots(node).length]));
        const idsBefore = await hosts.clusterWhole(NODES, RETURN_SECONDS, "every node in ray status");
        const checkout = changedCheckout();
        const began = Date.now();
        const after = await render(config, { ...renderOptions, program: path.join(checkout, "index.ts") });
        assert.equal(after.error, undefined, String(after.error?.stack));
        rendered = after;
        ec2.loadStackIam(after);
        console.log(`pulumi up with a changed script: ${((Date.now() - began) / 1000).toFixed(0)}s, a new image built`);
        const [oldImage, newImage] = [before, after].map((r) => reveal(byName(r, "ray-cluster-image-ubuntu").inputs));
        assert.notEqual(newImage.tags["ray-cluster:image-key"], oldImage.tags["ray-cluster:image-key"]);
        assert.equal(images.builds, 2, "a second builder built it");
        await hosts.waitForPowerOff(builderHost(2), "the second builder powered off");
        const diff = diffGraphs(before.resources, after.resources);
        const changed = new Map(diff.changed.map((c) => [c.name, c]));
        assert.deepEqual(changed.get("ray-cluster-image-ubuntu")?.replacedBy, ["name", "sourceInstanceId"], "the image is replaced");
        for (const node of NODES) {
            assert.deepEqual([changed.get(`ray-cluster-${node}`)?.inputs, changed.get(`ray-cluster-${node}`)?.replacedBy], [["ami"], []], node);
            assert.equal(hosts.boots(node).length, bootsBefore[node], `${node} kept running`);
        }
        // Only the image and its build's commands (a new builder) are replaced.
        assert.deepEqual(diff.changed.filter((c) => c.replacedBy.length > 0 && !c.name.startsWith("ray-cluster-image-ubuntu")), []);
        assert.deepEqual(await hosts.clusterWhole(NODES, RETURN_SECONDS, "every node still in ray status"), idsBefore, "no node restarted Ray");
        const newId = Object.keys(images.account).find((id) => images.account[id].tags.Name === newImage.name)!;
        const { stdout } = await hosts.run("headnode", "cat ~/.ray-cluster/autoscaler.yaml");
        assert.equal(JSON.parse(stdout).available_node_types[ELASTIC.name].node_config.ImageId, newId);
    });

    test("an elastic group of private workers: the autoscaler launches from the changed script's image into the private " +
        "subnet, the worker joins and runs the task, the user reaches it only through the head, and it is terminated once idle", async () => {
        const where = await hosts.placeTask(3, 600);
        const launched = follower.launched();
        assert.equal(launched.length, 1);
        const [worker] = launched;
        assert.match(worker.privateIp, /^10\.213\.1\.\d+$/, "in the private subnet");
        // From the image the changed script built, with no way to the package index: the install found Ray in place.
        const image = reveal(byName(rendered, "ray-cluster-image-ubuntu").inputs);
        assert.equal(images.account[worker.request.imageId!]?.tags.Name, image.name);
        assert.equal(await indexReachable(worker.id), false, "the launched worker reaches the package index");
        const { stdout: marks } = await hosts.run(worker.id, "cat /etc/ray-cluster/image; tail -n 1 /usr/local/lib/ray-cluster/scripts/start-worker.sh");
        assert.equal(marks, `key=${image.tags["ray-cluster:image-key"]}\n${SCRIPT_CHANGE}\n`);
        assert.match(await autoscalerLog(), /install-ray: ray\[default,data\]==\S+ already installed/);
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
    test("an image build that fails fails the up with the builder's own error lines; the builder powers itself off, and no " +
        "image or node comes of it", async () => {
        // An index nobody serves: a new key, so a new build, whose install cannot fetch uv.
        const index = new URL(hosts.indexUrl);
        const deadIndex = `http://${index.hostname}:9/simple/`;
        const imagesBefore = Object.keys(images.account).length;
        const buildsBefore = images.builds;
        const bootsBefore = Object.fromEntries(NODES.map((node) => [node, hosts.boots(node).length]));
        const { error, consequences } = await failingUp({ ...config, packageIndexUrl: deadIndex });
        const message = error.message;
        // The engine stops at the first failure; under the mocks, what waited on it rejects too, with the same cause.
        assert.ok(consequences.every((e) => String(e).includes("ray-cluster-image-ubuntu-build exited 1")), String(consequences));
        assert.match(message, /ray-cluster-image-ubuntu-build exited 1/);
        assert.ok(message.includes(`install-ray: error: could not fetch uv from ${deadIndex}`), message);
        assert.match(message, /build-image: error: the image build failed \(exit 1\); powering the builder off, which terminates it/);
        assert.equal(images.builds, buildsBefore + 1, "a builder of its own");
        const builder = builderHost(images.builds);
        await hosts.waitForPowerOff(builder, "the failed builder powered off");
        assert.deepEqual(hosts.boots(builder).map((b) => b.exitCode), [0], "one boot, ended by its own power-off");
        assert.equal(Object.keys(images.account).length, imagesBefore, "no image of the failed build");
        for (const node of NODES) {
            assert.equal(hosts.boots(node).length, bootsBefore[node], `${node} untouched`);
        }
        assert.deepEqual(hosts.createdNodes().filter((node) => hosts.isOn(node)).sort(), [...NODES].sort(), "nothing else runs");
    });
    test("an image deleted out of band: the next up says so, builds it again, and replaces no node", async () => {
        // The checkout of the changed script again: the image it needs is the one just deleted.
        const checkout = changedCheckout();
        const current = reveal(byName(rendered, "ray-cluster-image-ubuntu").inputs).name;
        const id = Object.keys(images.account).find((image) => images.account[image].tags.Name === current)!;
        delete images.account[id];
        const buildsBefore = images.builds;
        const bootsBefore = Object.fromEntries(NODES.map((node) => [node, hosts.boots(node).length]));
        const warnings: string[] = [];
        const warn = pulumi.log.warn;
        pulumi.log.warn = async (message: string) => {
            warnings.push(message);
        };
        let again: Rendered;
        try {
            again = await render(config, { ...renderOptions, program: path.join(checkout, "index.ts") });
        } finally {
            pulumi.log.warn = warn;
        }
        assert.equal(again.error, undefined, String(again.error?.stack));
        assert.equal(warnings.length, 1);
        assert.match(warnings[0], new RegExp(`Ray-ready image ${current}: the account holds none .*deleted out of band.*building it`));
        assert.equal(images.builds, buildsBefore + 1, "built again on a builder of its own");
        assert.ok(Object.values(images.account).some((image) => image.tags.Name === current), "the image is back, by the same name");
        for (const node of NODES) {
            assert.equal(hosts.boots(node).length, bootsBefore[node], `${node} kept running`);
        }
        rendered = again;
        ec2.loadStackIam(again);
    });
});
