import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DLAMI_SSM_PARAMETER, GPU_DEFAULT_VOLUME_GB } from "../src/groups";
import { commandSummary, diffGraphs } from "../tools/graph";
import { byName, byType, MOCK_DLAMI_ID, render, reveal, StackConfig } from "../tools/render";

const INSTANCE = "aws:ec2/instance:Instance";
const CPU = { name: "cpu", instanceType: "c7i.large", count: 2 };
const GPU = { name: "gpu", instanceType: "g5.xlarge", count: 1 };

async function rendered(config: StackConfig) {
    const r = await render(config);
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

const instances = (r: Awaited<ReturnType<typeof rendered>>) =>
    Object.fromEntries(byType(r, INSTANCE).map((i) => [i.inputs.tags.Name, i.inputs]));

describe("worker groups under mocks", () => {
    test("two groups plus the default: hostnames, types, tags and one instance each", async () => {
        const r = await rendered({ workerCount: 2, workerGroups: [CPU, GPU] });
        const nodes = instances(r);
        assert.deepEqual(Object.keys(nodes).sort(), ["cpu-1", "cpu-2", "gpu-1", "headnode", "worker-1", "worker-2"]);
        const expect: Record<string, [string, string]> = {
            headnode: ["headnode", "t3.medium"], "worker-1": ["worker", "t3.small"], "cpu-2": ["cpu", "c7i.large"], "gpu-1": ["gpu", "g5.xlarge"],
        };
        for (const [node, [group, type]] of Object.entries(expect)) {
            assert.equal(nodes[node].tags["ray-cluster:group"], group, node);
            assert.equal(nodes[node].volumeTags["ray-cluster:group"], group, node);
            assert.equal(nodes[node].instanceType, type, node);
        }
        assert.equal(r.outputs.workerPublicIps.length, 5);
    });

    test("a GPU group boots the Deep Learning AMI from its public SSM parameter, with a root volume that fits it", async () => {
        const r = await rendered({ workerGroups: [GPU, CPU], volumeSizeGb: 30 });
        assert.equal(byName(r, "ray-cluster-gpu-1").dependencies.length > 0, true);
        const nodes = instances(r);
        assert.equal(nodes["gpu-1"].ami, MOCK_DLAMI_ID);
        assert.equal(nodes["gpu-1"].rootBlockDevice.volumeSize, GPU_DEFAULT_VOLUME_GB);
        assert.deepEqual(nodes["gpu-1"].ignoreChanges, undefined);
        assert.equal(byName(r, "ray-cluster-gpu-1").options.ignoreChanges.join(), "ami", "a new DLAMI release replaces nothing");
        for (const node of ["headnode", "worker-1", "cpu-1"]) {
            assert.equal(nodes[node].ami, "ami-0123456789abcdef0", `${node} boots Ubuntu`);
            assert.equal(nodes[node].rootBlockDevice.volumeSize, 30, `${node} takes volumeSizeGb`);
        }
        assert.equal(DLAMI_SSM_PARAMETER, "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id");
    });

    test("a group's own volumeSizeGb and amiId win; a pinned AMI is not looked up and replaces on change", async () => {
        const r = await rendered({ workerGroups: [{ ...GPU, volumeSizeGb: 200, amiId: "ami-0feedfacecafe0001" }] });
        const gpu = byName(r, "ray-cluster-gpu-1");
        assert.equal(gpu.inputs.ami, "ami-0feedfacecafe0001");
        assert.equal(gpu.inputs.rootBlockDevice.volumeSize, 200);
        assert.deepEqual(gpu.options.ignoreChanges, []);
    });

    test("a GPU group on the stack-wide amiId boots that image, so the Deep Learning AMI's volume floor does not apply", async () => {
        const r = await rendered({ amiId: "ami-0feedfacecafe0002", workerGroups: [{ ...GPU, volumeSizeGb: 30 }] });
        const gpu = byName(r, "ray-cluster-gpu-1");
        assert.equal(gpu.inputs.ami, "ami-0feedfacecafe0002");
        assert.equal(gpu.inputs.rootBlockDevice.volumeSize, 30);
    });

    test("every node's start carries its group as a Ray label; a GPU count only where the group declares one", async () => {
        const r = await rendered({ workerCount: 1, workerGroups: [CPU, { ...GPU, gpus: 1 }] });
        const start = (node: string) => commandSummary(reveal(byName(r, `ray-cluster-${node}-start`).inputs).create);
        assert.match(start("headnode"), / --labels ray-cluster\/group=headnode$/);
        assert.match(start("worker-1"), / --labels ray-cluster\/group=worker$/);
        assert.match(start("cpu-2"), / --labels ray-cluster\/group=cpu$/);
        assert.match(start("gpu-1"), / --labels ray-cluster\/group=gpu --num-gpus 1$/);
        // Ray detects real GPUs itself: nothing is passed that could hide them.
        const detected = await rendered({ workerGroups: [GPU] });
        assert.doesNotMatch(commandSummary(reveal(byName(detected, "ray-cluster-gpu-1-start").inputs).create), /--num-gpus|--num-cpus/);
    });

    test("headSchedulable false starts the head with no CPUs for tasks; the default leaves Ray's count", async () => {
        const off = await rendered({ headSchedulable: false });
        assert.match(reveal(byName(off, "ray-cluster-headnode-start").inputs).create, / --labels ray-cluster\/group=headnode --num-cpus 0$/);
        const on = await rendered({});
        assert.doesNotMatch(commandSummary(reveal(byName(on, "ray-cluster-headnode-start").inputs).create), /--num-cpus/);
    });

    test("rayClusterStatus counts the nodes of each group", async () => {
        const r = await rendered({ workerCount: 1, workerGroups: [CPU, GPU] });
        assert.deepEqual(r.outputs.rayClusterStatus.groups, {
            headnode: { expected: 1, alive: 1, nodes: ["headnode"] },
            worker: { expected: 1, alive: 1, nodes: ["worker-1"] },
            cpu: { expected: 2, alive: 2, nodes: ["cpu-1", "cpu-2"] },
            gpu: { expected: 1, alive: 1, nodes: ["gpu-1"] },
        });
    });

    test("spot applies per group", async () => {
        const r = await rendered({ workerGroups: [{ ...CPU, spot: true }, GPU] });
        const nodes = instances(r);
        assert.equal(nodes["cpu-1"].instanceMarketOptions.spotOptions.instanceInterruptionBehavior, "stop");
        assert.equal(nodes["gpu-1"].instanceMarketOptions, undefined);
        assert.equal(nodes["worker-1"].instanceMarketOptions, undefined);
    });
});

describe("worker groups: safe change", () => {
    const groupResources = (node: string) => [`ray-cluster-${node}`, `ray-cluster-${node}-running`,
        `ray-cluster-${node}-prepare`, `ray-cluster-${node}-job-env`, `ray-cluster-${node}-install`, `ray-cluster-${node}-start`];

    test("adding a group adds only its nodes and commands; the cluster check re-counts", async () => {
        const d = diffGraphs((await rendered({ workerGroups: [CPU] })).resources, (await rendered({ workerGroups: [CPU, GPU] })).resources);
        assert.deepEqual(d.added.sort(), groupResources("gpu-1").sort());
        assert.deepEqual(d.removed, []);
        assert.deepEqual(d.changed.map((c) => c.name), ["ray-cluster-verify"]);
    });

    test("resizing one group touches no other group", async () => {
        const d = diffGraphs((await rendered({ workerGroups: [CPU, GPU] })).resources,
            (await rendered({ workerGroups: [{ ...CPU, count: 3 }, GPU] })).resources);
        assert.deepEqual(d.added.sort(), groupResources("cpu-3").sort());
        assert.deepEqual([d.removed, d.changed.map((c) => c.name)], [[], ["ray-cluster-verify"]]);
    });

    test("removing a group removes only its nodes and commands", async () => {
        const d = diffGraphs((await rendered({ workerGroups: [CPU, GPU] })).resources, (await rendered({ workerGroups: [GPU] })).resources);
        assert.deepEqual(d.removed.sort(), [...groupResources("cpu-1"), ...groupResources("cpu-2")].sort());
        assert.deepEqual([d.added, d.changed.map((c) => c.name)], [[], ["ray-cluster-verify"]]);
    });
});
