/**
 * Elastic benchmark on the booted test hosts, with the EC2 emulator (root, as for the end-to-end test): does a worker
 * the autoscaler launches join as fast as one the stack creates? Each round boots a cluster of its own, a head alone,
 * then times a static worker's bring-up (the stack's own prepare, install and start, as `pulumi up` runs them for a
 * new worker) and then an elastic scale-up (a task no node fits, Ray's autoscaler, RunInstances, join-cluster.sh),
 * each on the idle cluster. Both are timed between the same two events: the host's power-on (its supervisor's boot
 * record) and the GCS reporting its node alive (a watcher on the head, polling every 0.25 s). The elastic part also
 * gives RunInstances → alive and demand → task done. In one run, rounds alternate a cluster booted from the plain
 * base image and one booted from a Ray-ready image (rayImage), so that whatever else loads the machine over the run
 * weighs on both alike. Prints each round, then the median and the spread (min–max) of each kind, side by side.
 * Figures only; nothing here passes or fails on time.
 *   ROUNDS=3 npm run bench:elastic
 */
import { ChildProcess, spawn } from "node:child_process";
import * as path from "node:path";
import { render } from "../tools/render";
import { summary } from "./stats";
import { autoscalerEndpointFiles, Ec2Emulator, Ec2Follower, groupNames, UBUNTU_IMAGE } from "../test/harness/ec2-emulator";
import { eventually } from "../test/harness/eventually";
import { stackFirewall } from "../test/harness/firewall";
import { BUILDER_NAME, ImageBuilds } from "../test/harness/images";
import { serveLaunchedInstance } from "../test/harness/instance-metadata";
import { BootedHosts, LOGIN_USER, THIS_MACHINE } from "../test/harness/machines";
import { REGION } from "../test/harness/s3-emulator";
import { cleanupKeys, CommandInputs, runOverSsh } from "../test/harness/ssh";

const SUBNET_CIDR = "10.213.0.0/24";
const ROUNDS = Number(process.env.ROUNDS ?? 3);
/** Seconds the cluster rests between rounds, so that each starts with the machine idle. */
const SETTLE_SECONDS = 15;

const sleep = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** When the GCS first reported each node address alive (unix ms), from a watcher on the head. */
function watchAlive(hosts: BootedHosts, alive: Map<string, number>): ChildProcess {
    const script = `
import time
from ray._raylet import GcsClient
client, seen = GcsClient(address="${hosts.address("headnode")}:6379"), set()
while True:
    for info in client.get_all_node_info(timeout=10).values():
        if info.state == 0 and info.node_manager_address not in seen:
            seen.add(info.node_manager_address)
            print(info.node_manager_address, time.time(), flush=True)
    time.sleep(0.25)
`;
    const watcher = spawn("ssh", ["-i", path.join(hosts.state, "id_ed25519"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", `${LOGIN_USER}@${hosts.address("headnode")}`, "RAY_AUTH_MODE=token ~/ray-venv/bin/python -u -"],
    { stdio: ["pipe", "pipe", "inherit"] });
    watcher.stdin!.end(script);
    let buffer = "";
    watcher.stdout!.on("data", (chunk) => {
        buffer += chunk;
        const lines = buffer.split("\n");
        buffer = lines.pop()!;
        for (const line of lines) {
            const [address, at] = line.trim().split(" ");
            alive.set(address, Number(at) * 1000);
        }
    });
    return watcher;
}

interface Round { static: number; elastic: number; fromRunInstances: number; demandToTask: number }

/** One round, on a cluster of its own from the plain base image or a Ray-ready one: a static worker, then a scale-up. */
async function round(image: boolean, index: number): Promise<Round> {
    const node = "worker-1";
    const hosts = new BootedHosts({ headnode: 41, [node]: 42 });
    const ec2 = new Ec2Emulator();
    hosts.up();
    let follower: Ec2Follower | undefined;
    let watcher: ChildProcess | undefined;
    try {
        ec2.start(hosts.state);
        const setup = ec2.setup([SUBNET_CIDR], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
        const config = { packageIndexUrl: hosts.indexUrl, bootstrapTimeoutSeconds: 1800, workerCount: 1, elasticIdleMinutes: 1,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`], workerGroups: [{ name: "big", instanceType: "c7i.xlarge", maxCount: 1 }], rayImage: image };
        const firewall = await stackFirewall(config, (name) => hosts.addresses(name));
        const builds = new ImageBuilds(hosts, [29]);
        const builderGroups = firewall.groupsOf[BUILDER_NAME];
        delete firewall.groupsOf[BUILDER_NAME];
        follower = new Ec2Follower(ec2, hosts, firewall, groupNames(setup), () => hosts.createdNodes());
        follower.start();
        // The static worker's instance is created when the round releases it, as a `pulumi up` that adds it would.
        let release!: () => void;
        const released = new Promise<void>((resolve) => { release = resolve; });
        const done = new Map<string, number>();
        const rendering = render(config, {
            // The image the plain cluster's autoscaler launches, which EC2 refuses unless it holds it.
            ubuntuImageId: ec2.registerImage(UBUNTU_IMAGE),
            // The head's calls are authorized against the stack's policies from when the render creates them: this
            // render runs on, with the static worker held back, while the autoscaler calls.
            registered: ec2.followStackIam,
            addresses: (name) => {
                const address = name === BUILDER_NAME ? builds.address() : hosts.address(name);
                return { privateIp: address, publicIp: address };
            },
            privateKeys: (name) => hosts.keyFor(name),
            resourceIds: { "ray-cluster-subnet": setup.subnets[SUBNET_CIDR], "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] },
            images: builds.account,
            // The account's own image, which the image cluster's autoscaler launches.
            createImage: async (_name, inputs) => ec2.registerImage({ imageId: await builds.createImage(inputs), name: inputs.name, tags: inputs.tags }),
            launchInstance: async (name, inputs, account) => {
                if (name === BUILDER_NAME) {
                    const id = `i-image-builder-${builds.builds + 1}`;
                    builds.launch(inputs, account, id, firewall, builderGroups);
                    return id;
                }
                if (name === node) {
                    await released;
                }
                ec2.importKeyPair(inputs.keyName, account.publicKey);
                const id = ec2.runInstance(inputs.tags, { subnetId: inputs.subnetId, privateIp: hosts.address(name) });
                hosts.launch(name, { userData: inputs.userData, publicKey: account.publicKey, instanceId: id, imageId: inputs.ami }, firewall,
                    name === "headnode" ? autoscalerEndpointFiles(ec2.endpoint) : {});
                // Its calls are a session of its role, as EC2 signs them from its metadata's credentials.
                ec2.trustKey(serveLaunchedInstance(hosts, name, id, inputs, account, REGION).AccessKeyId, account.role!, id);
                return id;
            },
            runCommand: async (inputs, name) => {
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                done.set(name, Date.now());
                return result;
            },
        });
        await eventually({ what: "the head's Ray and autoscaler", timeoutSeconds: 900, intervalSeconds: 1 },
            async () => (done.has("ray-cluster-headnode-autoscaler") ? true : undefined));
        const alive = new Map<string, number>();
        watcher = watchAlive(hosts, alive);
        const aliveAt = (address: string, what: string) => eventually({ what, timeoutSeconds: 900, intervalSeconds: 0.25 },
            async () => alive.get(address));

        await sleep(SETTLE_SECONDS);
        release();
        const staticAlive = await aliveAt(hosts.address(node), `${node} alive`);
        const staticSeconds = (staticAlive - hosts.boots(node)[0].started) / 1000;
        // The rest of its bring-up (the engine's view of its start) ends before the next part begins.
        await eventually({ what: `${node}'s start`, timeoutSeconds: 300, intervalSeconds: 0.5 },
            async () => (done.has(`ray-cluster-${node}-start`) ? true : undefined));
        await sleep(SETTLE_SECONDS);

        const demand = Date.now();
        // Three CPUs: more than the head or the static worker (two each) offers, so only a launch serves it.
        const task = hosts.placeTask(3, 900).then((placed) => placed.doneAt);
        const launched = await eventually({ what: "a launched worker that boots", timeoutSeconds: 300, intervalSeconds: 0.5 },
            async () => follower!.launched().find((i) => i.booted));
        const elasticAlive = await aliveAt(launched.privateIp, `${launched.id} alive`);
        const taskDone = await task;
        const poweredOn = hosts.boots(launched.id)[0].started;
        const result: Round = { static: staticSeconds, elastic: (elasticAlive - poweredOn) / 1000,
            fromRunInstances: (elasticAlive - launched.launchedAt) / 1000, demandToTask: (taskDone - demand) / 1000 };
        console.log(`${image ? "image" : "plain"} round ${index}: static ${node} power-on → alive ${result.static.toFixed(1)} s; ` +
            `elastic ${launched.id} power-on → alive ${result.elastic.toFixed(1)} s ` +
            `(RunInstances → alive ${result.fromRunInstances.toFixed(1)} s, demand → task done ${result.demandToTask.toFixed(1)} s)`);
        const up = await rendering;
        if (up.error) {
            throw up.error;
        }
        return result;
    } finally {
        watcher?.kill();
        await follower?.stop();
        hosts.down();
    }
}

(async () => {
    const plain: Round[] = [];
    const image: Round[] = [];
    for (let i = 1; i <= ROUNDS; i++) {
        plain.push(await round(false, i));
        image.push(await round(true, i));
    }
    cleanupKeys();
    const row = (what: string, pick: (r: Round) => number) =>
        `  ${what.padEnd(58)} plain: ${summary(plain.map(pick))} | image: ${summary(image.map(pick))}`;
    console.log([
        `over ${ROUNDS} rounds each, alternating plain and image, from the host's power-on to the GCS reporting its node alive:`,
        row("static worker (the stack's prepare, install, start):", (r) => r.static),
        row("elastic worker (Ray's autoscaler, join-cluster.sh):", (r) => r.elastic),
        row("elastic, RunInstances → alive:", (r) => r.fromRunInstances),
        row("elastic, demand → task done:", (r) => r.demandToTask),
    ].join("\n"));
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
