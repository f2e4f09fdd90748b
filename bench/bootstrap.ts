/**
 * Bootstrap benchmark on the namespace test hosts (root, sshd, python3-venv and the wheelhouse, as for the
 * end-to-end test). Prints: the wall time to bring up a 3-node cluster from bare hosts, one node alone, their
 * ratio, and one install with plain pip against uv. Figures only; nothing here passes or fails on time.
 */
import { byName, render, reveal } from "../tools/render";
import { TestHosts } from "../test/harness/hosts";
import { cleanupKeys, CommandInputs, runOverSsh } from "../test/harness/ssh";
import { scriptCommand } from "../src/scripts";

/** Wall-clock span of each bootstrap stage: from its first command's start to its last command's end. */
function stages(spans: Array<{ name: string; start: number; end: number }>): string {
    return ["prepare", "install", "headnode-start", "worker-\\d+-start", "verify"].map((stage) => {
        const hits = spans.filter((s) => new RegExp(`-${stage}$`).test(s.name));
        if (hits.length === 0) {
            return undefined;
        }
        const seconds = (Math.max(...hits.map((h) => h.end)) - Math.min(...hits.map((h) => h.start))) / 1000;
        return `${stage.replace("\\d+", "N")} ${seconds.toFixed(1)} s`;
    }).filter(Boolean).join(", ");
}

async function bringUp(nodes: Record<string, number>): Promise<{ seconds: number; stages: string }> {
    const hosts = new TestHosts(nodes);
    hosts.up();
    try {
        const started = Date.now();
        const spans: Array<{ name: string; start: number; end: number }> = [];
        const rendered = await render({ sshUser: "root", packageIndexUrl: hosts.indexUrl, bootstrapTimeoutSeconds: 120,
            workerCount: Object.keys(nodes).length - 1 }, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKey: { privateKeyOpenssh: hosts.privateKey, publicKeyOpenssh: hosts.publicKey },
            runCommand: async (inputs, name) => {
                const start = Date.now();
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                spans.push({ name, start, end: Date.now() });
                return result;
            },
        });
        if (rendered.error) {
            throw rendered.error;
        }
        const seconds = (Date.now() - started) / 1000;
        const stop = reveal(byName(rendered, "ray-cluster-headnode-start").inputs);
        for (const node of Object.keys(nodes)) {
            await runOverSsh({ connection: { ...stop.connection, host: hosts.address(node) } }, stop.delete);
        }
        return { seconds, stages: stages(spans) };
    } finally {
        hosts.down();
    }
}

async function installTimes(): Promise<Record<string, number>> {
    const hosts = new TestHosts({ headnode: 21, "worker-1": 22 });
    hosts.up();
    try {
        const times: Record<string, number> = {};
        for (const [installer, node] of [["pip", "headnode"], ["uv", "worker-1"]] as const) {
            const connection = { host: hosts.address(node), user: "root", privateKey: hosts.privateKey };
            const text = scriptCommand("install-ray.sh", ["--version", "2.60.0", "--installer", installer, "--index-url", hosts.indexUrl]);
            times[installer] = (await runOverSsh({ connection }, text)).seconds;
        }
        return times;
    } finally {
        hosts.down();
    }
}

(async () => {
    const cluster = await bringUp({ headnode: 11, "worker-1": 12, "worker-2": 13 });
    const single = await bringUp({ headnode: 11 });
    const install = await installTimes();
    cleanupKeys();
    console.log(`3-node cluster from bare hosts: ${cluster.seconds.toFixed(1)} s  (${cluster.stages})`);
    console.log(`1 node alone:                   ${single.seconds.toFixed(1)} s  (${single.stages})`);
    console.log(`ratio 3-node / 1-node:          ${(cluster.seconds / single.seconds).toFixed(2)} (goal: close to 1; ` +
        "the workers' join stage exists only with workers, and the test hosts share 2 cores)");
    console.log(`install ray[default] with pip:  ${install.pip.toFixed(1)} s`);
    console.log(`install ray[default] with uv:   ${install.uv.toFixed(1)} s (incl. installing uv itself)`);
    console.log(`uv speed-up over pip:           ${(install.pip / install.uv).toFixed(1)}x`);
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
