/**
 * Elastic benchmark on the booted test hosts, with the EC2 emulator (root, as for the end-to-end test): a head, one
 * static worker and one elastic group. Prints the static worker's bring-up (its power-on to Ray started on it), then
 * for the elastic group the time from a demand (a task no existing node fits) to that task done on a node the
 * autoscaler launched, split at RunInstances and at the host's power-on, and the time from the task's end to the
 * instance terminated with elasticIdleMinutes 1. Figures only; nothing here passes or fails on time.
 */
import { render } from "../tools/render";
import { serveLaunchedInstance } from "../test/harness/instance-metadata";
import { REGION } from "../test/harness/s3-emulator";
import { autoscalerEndpointFiles, Ec2Emulator, groupNames, Ec2Follower } from "../test/harness/ec2-emulator";
import { eventually } from "../test/harness/eventually";
import { stackFirewall } from "../test/harness/firewall";
import { BootedHosts, THIS_MACHINE } from "../test/harness/machines";
import { cleanupKeys, CommandInputs, runOverSsh } from "../test/harness/ssh";

const SUBNET_CIDR = "10.213.0.0/24";

(async () => {
    const hosts = new BootedHosts({ headnode: 41, "worker-1": 42 });
    const ec2 = new Ec2Emulator();
    hosts.up();
    let follower: Ec2Follower | undefined;
    try {
        ec2.start(hosts.state);
        const setup = ec2.setup([SUBNET_CIDR], ["ray-cluster-sg"], ["ray-cluster-profile-0123456"]);
        const config = { packageIndexUrl: hosts.indexUrl, bootstrapTimeoutSeconds: 120, workerCount: 1, elasticIdleMinutes: 1,
            sshAllowedCidrs: [`${THIS_MACHINE}/32`], workerGroups: [{ name: "big", instanceType: "c7i.xlarge", maxCount: 1 }] };
        const firewall = await stackFirewall(config, (node) => hosts.addresses(node));
        follower = new Ec2Follower(ec2, hosts, firewall, groupNames(setup), () => hosts.nodes());
        follower.start();
        const poweredOn: Record<string, number> = {};
        const started: Record<string, number> = {};
        const rendered = await render(config, {
            addresses: (node) => ({ privateIp: hosts.address(node), publicIp: hosts.address(node) }),
            privateKeys: (name) => hosts.keyFor(name),
            resourceIds: { "ray-cluster-subnet": setup.subnets[SUBNET_CIDR], "ray-cluster-sg": setup.securityGroups["ray-cluster-sg"] },
            launchInstance: async (node, inputs, account) => {
                ec2.importKeyPair(inputs.keyName, account.publicKey);
                const id = ec2.runInstance(inputs.tags, { subnetId: inputs.subnetId, privateIp: hosts.address(node) });
                poweredOn[node] = Date.now();
                hosts.launch(node, { userData: inputs.userData, publicKey: account.publicKey, instanceId: id }, firewall,
                    node === "headnode" ? autoscalerEndpointFiles(ec2.endpoint) : {});
                serveLaunchedInstance(hosts, node, id, inputs, account, REGION);
                return id;
            },
            runCommand: async (inputs, name) => {
                const result = await runOverSsh(inputs as CommandInputs, inputs.create, inputs.stdin, name);
                started[name] = Date.now();
                return result;
            },
        });
        if (rendered.error) {
            throw rendered.error;
        }
        const staticSeconds = (started["ray-cluster-worker-1-start"] - poweredOn["worker-1"]) / 1000;
        const demand = Date.now();
        const where = await hosts.placeTask(3, 900);
        const done = Date.now();
        const node = follower.launched().find((i) => i.booted)!;
        const hostOn = hosts.boots(node.id)[0].started;
        const scaleUp = (done - demand) / 1000;
        await eventually({ what: `${node.id} terminated once idle`, timeoutSeconds: 600, intervalSeconds: 1 },
            async () => (node.poweredOffAt !== undefined ? true : undefined));
        console.log([
            `static worker: power-on to Ray started on it: ${staticSeconds.toFixed(1)} s`,
            `elastic worker (${where.host}): demand to task done on it: ${scaleUp.toFixed(1)} s ` +
                `(${(scaleUp / staticSeconds).toFixed(2)}× the static bring-up; goal 1.3×)`,
            `  demand to RunInstances ${((node.launchedAt - demand) / 1000).toFixed(1)} s, RunInstances to power-on ` +
                `${((hostOn - node.launchedAt) / 1000).toFixed(1)} s, power-on to task done ${((done - hostOn) / 1000).toFixed(1)} s`,
            `idle to terminated: ${((node.poweredOffAt! - done) / 1000).toFixed(1)} s after the task ended (elasticIdleMinutes 1)`,
        ].join("\n"));
    } finally {
        follower?.stop();
        hosts.down();
        cleanupKeys();
    }
})().catch((err) => {
    console.error(err);
    process.exit(1);
});
