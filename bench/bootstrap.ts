/**
 * Bootstrap benchmark on the booted test hosts (root, systemd-nspawn, the base image and the wheelhouse, as for
 * the end-to-end test). In one run, for ROUNDS rounds (3), it brings a cluster of 3 nodes and one of 1 up from the
 * plain base image and from a Ray-ready image (rayImage), the plain one first in odd rounds and the image's first in
 * even ones, and times each between the same two events: the first node's power-on (its supervisor's boot record)
 * and the stack's verify reporting every node alive and listed. An image's build happens before its nodes power on
 * and is reported on its own. Prints each bring-up with its stages, then the median and the spread (min–max) of each
 * kind; then, for a worker of the last plain cluster of 3, the time from its reboot's power-on to its node back in
 * `ray status`. Figures only; nothing here passes or fails on time.
 *   ROUNDS=3 npm run bench:bootstrap
 */
import { render } from "../tools/render";
import { summary } from "./stats";
import { stackFirewall } from "../test/harness/firewall";
import { BUILDER_NAME, ImageBuilds } from "../test/harness/images";
import { BootedHosts, THIS_MACHINE } from "../test/harness/machines";
import { cleanupKeys, CommandInputs, runOverSsh } from "../test/harness/ssh";

const ROUNDS = Number(process.env.ROUNDS ?? 3);

interface Span { name: string; start: number; end: number; dialSeconds: number }


/** Wall-clock span of each bootstrap stage, from T0: from its first command's start to its last command's end. */
function stages(spans: Span[], t0: number): string {
    return ["build", "prepare", "install", "headnode-start", "worker-\\d+-start", "verify"].map((stage) => {
        const hits = spans.filter((s) => new RegExp(`-${stage}$`).test(s.name));
        if (hits.length === 0) {
            return undefined;
        }
        const from = (Math.min(...hits.map((h) => h.start)) - t0) / 1000;
        const to = (Math.max(...hits.map((h) => h.end)) - t0) / 1000;
        return `${stage.replace("\\d+", "N")} ${from.toFixed(1)}→${to.toFixed(1)} s`;
    }).filter(Boolean).join(", ");
}

/** Node ids by address of the nodes that `ray status` lists. */
async function clusterNodes(hosts: BootedHosts): Promise<Record<string, string>> {
    const view = await hosts.clusterView();
    return Object.fromEntries(Object.entries(view.alive).filter(([, node]) => view.listed.includes(node)));
}

interface BringUp { seconds: number; buildSeconds?: number; line: string }

async function bringUp(nodes: Record<string, number>, image: boolean, rebootWorker: boolean): Promise<BringUp & { reboot?: string }> {
    const hosts = new BootedHosts(nodes);
    hosts.up();
    try {
        const spans: Span[] = [];
        const builds = new ImageBuilds(hosts, [29]);
        const config = { packageIndexUrl: hosts.indexUrl, bootstrapTimeoutSeconds: 120, workerCount: Object.keys(nodes).length - 1,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`], rayImage: image };
        // Behind the stack's security groups, as in the end-to-end test; a builder gets the groups its request names.
        const firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        const builderGroups = firewall.groupsOf[BUILDER_NAME];
        delete firewall.groupsOf[BUILDER_NAME];
        const rendered = await render(config, {
            addresses: (node) => {
                const address = node === BUILDER_NAME ? builds.address() : hosts.address(node);
                return { privateIp: address, publicIp: address };
            },
            privateKeys: (name) => hosts.keyFor(name),
            images: builds.account,
            launchInstance: async (node, inputs, keyPair) => {
                const id = `i-${node}-${Date.now()}`;
                if (node === BUILDER_NAME) {
                    builds.launch(inputs, keyPair, id, firewall, builderGroups);
                } else {
                    hosts.launch(node, { userData: inputs.userData, publicKey: keyPair.publicKey, instanceId: id, imageId: inputs.ami }, firewall);
                }
                return id;
            },
            createImage: async (_name, inputs) => builds.createImage(inputs),
            runCommand: async (inputs, name) => {
                const start = Date.now();
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                spans.push({ name, start, end: Date.now(), dialSeconds: result.dialSeconds ?? 0 });
                return result;
            },
        });
        if (rendered.error) {
            throw rendered.error;
        }
        // From the first node's power-on (the image, if any, exists by then) to the verify step's end.
        const poweredOn = Math.min(...Object.keys(nodes).map((node) => hosts.boots(node)[0].started));
        const verified = spans.find((s) => s.name === "ray-cluster-verify")!.end;
        const seconds = (verified - poweredOn) / 1000;
        const build = spans.find((s) => s.name.endsWith("-image-ubuntu-build"));
        const result: BringUp & { reboot?: string } = {
            seconds,
            buildSeconds: build ? (build.end - build.start) / 1000 : undefined,
            line: `${Object.keys(nodes).length} node(s) ${image ? "from the image" : "plain"}: power-on to verified ${seconds.toFixed(1)} s  ` +
                `(from power-on: ${stages(spans.filter((s) => !s.name.includes("-image-")), poweredOn)})` +
                (build ? `; before it, the image build ${((build.end - build.start) / 1000).toFixed(1)} s on its builder` : ""),
        };
        if (rebootWorker) {
            const before = await clusterNodes(hosts);
            const address = hosts.address("worker-1");
            const boots = hosts.boots("worker-1").length;
            await hosts.run("worker-1", "sudo systemctl reboot").catch(() => undefined);
            await hosts.waitForBoot("worker-1", boots + 1);
            const rebootedAt = hosts.boots("worker-1")[boots].started;
            const deadline = Date.now() + 300_000;
            for (;;) {
                const now = await clusterNodes(hosts).catch(() => ({} as Record<string, string>));
                if (now[address] && now[address] !== before[address]) {
                    break;
                }
                if (Date.now() > deadline) {
                    throw new Error("worker-1 did not come back within 300 s");
                }
                await new Promise((resolve) => setTimeout(resolve, 500));
            }
            result.reboot = `worker-1 reboot: power-on to its node in ray status: ${((Date.now() - rebootedAt) / 1000).toFixed(1)} s`;
        }
        return result;
    } finally {
        hosts.down();
    }
}

(async () => {
    const kinds: Array<{ label: string; nodes: Record<string, number>; image: boolean }> = [
        { label: "3 nodes, plain", nodes: { headnode: 11, "worker-1": 12, "worker-2": 13 }, image: false },
        { label: "3 nodes, from the image", nodes: { headnode: 11, "worker-1": 12, "worker-2": 13 }, image: true },
        { label: "1 node, plain", nodes: { headnode: 11 }, image: false },
        { label: "1 node, from the image", nodes: { headnode: 11 }, image: true },
    ];
    const results = new Map(kinds.map((k) => [k.label, [] as BringUp[]]));
    let reboot = "";
    for (let round = 1; round <= ROUNDS; round++) {
        // Plain first in odd rounds, the image first in even ones, so that neither kind always follows the other.
        const order = round % 2 === 1 ? kinds : [kinds[1], kinds[0], kinds[3], kinds[2]];
        for (const kind of order) {
            const last = round === ROUNDS && kind.label === "3 nodes, plain";
            const result = await bringUp(kind.nodes, kind.image, last);
            results.get(kind.label)!.push(result);
            reboot = result.reboot ?? reboot;
            console.log(`round ${round}: ${result.line}`);
        }
    }
    cleanupKeys();
    console.log(`\npower-on to verified cluster, ${ROUNDS} rounds:`);
    for (const [label, runs] of results) {
        console.log(`  ${label}: ${summary(runs.map((r) => r.seconds))}`);
    }
    const builds = [...results.values()].flat().flatMap((r) => (r.buildSeconds !== undefined ? [r.buildSeconds] : []));
    console.log(`  image build on its builder (before the nodes power on): ${summary(builds)}`);
    console.log(`  ${reboot}`);
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
