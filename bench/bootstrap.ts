/**
 * Bootstrap benchmark on the booted test hosts (root, systemd-nspawn, the base image and the wheelhouse, as for
 * the end-to-end test). Prints, for 3 nodes and for 1: the wall time from power-on to a verified cluster, each
 * stage of the bootstrap, when SSH first answered and cloud-init's own time; then, for a rebooted worker, the time
 * from its power-on to its node showing in `ray status`. Figures only; nothing here passes or fails on time.
 */
import { render } from "../tools/render";
import { stackFirewall } from "../test/harness/firewall";
import { BootedHosts, THIS_MACHINE } from "../test/harness/machines";
import { cleanupKeys, CommandInputs, runOverSsh } from "../test/harness/ssh";

interface Span { name: string; start: number; end: number; dialSeconds: number }

/** Wall-clock span of each bootstrap stage: from its first command's start to its last command's end. */
function stages(spans: Span[], t0: number): string {
    return ["prepare", "install", "headnode-start", "worker-\\d+-start", "verify"].map((stage) => {
        const hits = spans.filter((s) => new RegExp(`-${stage}$`).test(s.name));
        if (hits.length === 0) {
            return undefined;
        }
        const from = (Math.min(...hits.map((h) => h.start)) - t0) / 1000;
        const to = (Math.max(...hits.map((h) => h.end)) - t0) / 1000;
        return `${stage.replace("\\d+", "N")} ${from.toFixed(1)}→${to.toFixed(1)} s`;
    }).filter(Boolean).join(", ");
}

/** cloud-init's own time on a host: from its first stage's start to its last stage's end. */
async function cloudInitSeconds(hosts: BootedHosts, node: string): Promise<number> {
    const { stdout } = await hosts.run(node,
        `python3 -c 'import json; v = json.load(open("/run/cloud-init/status.json"))["v1"]; ` +
        `s = [v[k] for k in ("init-local", "init", "modules-config", "modules-final") if v.get(k) and v[k].get("start")]; ` +
        `print(max(x["finished"] for x in s) - min(x["start"] for x in s))'`);
    return Number(stdout.trim());
}

/** Node ids by address of the nodes that `ray status` lists. */
async function clusterNodes(hosts: BootedHosts): Promise<Record<string, string>> {
    const view = await hosts.clusterView();
    return Object.fromEntries(Object.entries(view.alive).filter(([, node]) => view.listed.includes(node)));
}

async function bringUp(nodes: Record<string, number>, rebootWorker: boolean): Promise<string[]> {
    const hosts = new BootedHosts(nodes);
    hosts.up();
    try {
        const spans: Span[] = [];
        const launched: Record<string, number> = {};
        const config = { packageIndexUrl: hosts.indexUrl, bootstrapTimeoutSeconds: 120, workerCount: Object.keys(nodes).length - 1,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`] };
        // Behind the stack's security groups, as in the end-to-end test.
        const firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        const t0 = Date.now();
        const rendered = await render(config, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            launchInstance: async (node, inputs, keyPair) => {
                launched[node] = Date.now();
                hosts.launch(node, { userData: inputs.userData, publicKey: keyPair.publicKey }, firewall);
            },
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
        const seconds = (Date.now() - t0) / 1000;
        const lines = [`${Object.keys(nodes).length} node(s), power-on to verified cluster: ${seconds.toFixed(1)} s  (${stages(spans, t0)})`];
        for (const node of Object.keys(nodes)) {
            const prepare = spans.find((s) => s.name === `ray-cluster-${node}-prepare`)!;
            const sshReady = (prepare.start + prepare.dialSeconds * 1000 - launched[node]) / 1000;
            lines.push(`  ${node}: SSH answered ${sshReady.toFixed(1)} s after power-on; cloud-init's own time ` +
                `${(await cloudInitSeconds(hosts, node)).toFixed(1)} s`);
        }
        if (rebootWorker) {
            const before = await clusterNodes(hosts);
            const address = hosts.address("worker-1");
            const boots = hosts.boots("worker-1").length;
            await hosts.run("worker-1", "sudo systemctl reboot").catch(() => undefined);
            await hosts.waitForBoot("worker-1", boots + 1);
            const poweredOn = hosts.boots("worker-1")[boots].started;
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
            lines.push(`  worker-1 reboot: power-on to its node in ray status: ${((Date.now() - poweredOn) / 1000).toFixed(1)} s`);
        }
        return lines;
    } finally {
        hosts.down();
    }
}

(async () => {
    const cluster = await bringUp({ headnode: 11, "worker-1": 12, "worker-2": 13 }, true);
    const single = await bringUp({ headnode: 11 }, false);
    cleanupKeys();
    console.log([...cluster, ...single].join("\n"));
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
