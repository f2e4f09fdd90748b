import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { describe, test } from "node:test";
import { IMAGE_BUILDER_TAG, IMAGE_KEY_TAG, imageKey, imageRecipe } from "../src/ray-image";
import { nodeScriptFiles } from "../src/scripts";
import { diffGraphs, imagesByNodeType } from "../tools/graph";
import {
    argumentOf, byName, defaultAddresses, byType, deployedImages, mockImageId, MOCK_DLAMI_ID, RegisteredResource, Rendered, render, RenderOptions, reveal, StackConfig,
} from "../tools/render";

const AMI = "aws:ec2/amiFromInstance:AmiFromInstance";
const INSTANCE = "aws:ec2/instance:Instance";
const UBUNTU_ID = "ami-0123456789abcdef0";
/** A fixed group, a GPU group (its own image, from the Deep Learning AMI) and an elastic group. */
const CONFIG: StackConfig = {
    rayImage: true,
    workerCount: 1,
    workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1 }, { name: "burst", instanceType: "c7i.xlarge", maxCount: 2 }],
};

/** Renders, and returns what the program warned about besides. */
async function renderWarning(config: StackConfig, options: RenderOptions = {}): Promise<{ r: Rendered; warnings: string[] }> {
    const warnings: string[] = [];
    const warn = pulumi.log.warn;
    pulumi.log.warn = async (message: string) => {
        warnings.push(message);
    };
    try {
        const r = await render(config, options);
        assert.equal(r.error, undefined, String(r.error?.stack));
        return { r, warnings };
    } finally {
        pulumi.log.warn = warn;
    }
}

const instances = (r: Rendered) => byType(r, INSTANCE).filter((i) => i.inputs.tags?.["ray-cluster:group"]);
const autoscalerImages = (r: Rendered) => {
    const config = JSON.parse(argumentOf(reveal(byName(r, "ray-cluster-headnode-autoscaler").inputs).create, "--config"));
    return Object.fromEntries(Object.entries(config.available_node_types as Record<string, { node_config: { ImageId?: string } }>)
        .filter(([, t]) => t.node_config.ImageId).map(([name, t]) => [name, t.node_config.ImageId]));
};
const dependsOn = (r: Rendered, resource: RegisteredResource, name: string) => resource.dependencies.includes(byName(r, name).urn);

describe("Ray-ready images (rayImage)", () => {
    test("off by default: nodes boot the base images and nothing is built", async () => {
        const r = await render({ workerCount: 1, workerGroups: CONFIG.workerGroups });
        assert.deepEqual(byType(r, AMI), []);
        assert.deepEqual(instances(r).map((i) => i.inputs.ami).sort(), [UBUNTU_ID, UBUNTU_ID, MOCK_DLAMI_ID].sort());
        assert.deepEqual(autoscalerImages(r), { burst: UBUNTU_ID });
    });

    test("a first up builds one image per base AMI, and every node and node type boots its own", async () => {
        const { r, warnings } = await renderWarning(CONFIG);
        const images = byType(r, AMI);
        assert.deepEqual(images.map((i) => i.name).sort(), ["ray-cluster-image-dlami", "ray-cluster-image-ubuntu"]);
        const [ubuntu, dlami] = ["ubuntu", "dlami"].map((slug) => byName(r, `ray-cluster-image-${slug}`));
        assert.equal(byName(r, "ray-cluster-image-ubuntu-builder").inputs.ami, UBUNTU_ID);
        assert.equal(byName(r, "ray-cluster-image-dlami-builder").inputs.ami, MOCK_DLAMI_ID);
        const ids = { ubuntu: mockImageId(ubuntu.inputs.name), dlami: mockImageId(dlami.inputs.name) };
        assert.deepEqual(Object.fromEntries(instances(r).map((i) => [i.inputs.tags.Name, i.inputs.ami])),
            { headnode: ids.ubuntu, "worker-1": ids.ubuntu, "gpu-1": ids.dlami });
        assert.deepEqual(autoscalerImages(r), { burst: ids.ubuntu });
        assert.deepEqual(imagesByNodeType(r), { headnode: `${ubuntu.inputs.name} (Ray-ready)`, worker: `${ubuntu.inputs.name} (Ray-ready)`,
            gpu: `${dlami.inputs.name} (Ray-ready)`, "burst (elastic)": `${ubuntu.inputs.name} (Ray-ready)` });
        // The user is told that this up builds, and why it might.
        assert.equal(warnings.filter((w) => /Ray-ready image .* building it on a builder instance/.test(w)).length, 2);
    });

    test("an image is named and tagged by its key: the stack, the Ray release, the base and a hash of every node script", async () => {
        const r = await render(CONFIG);
        const image = byName(r, "ray-cluster-image-ubuntu");
        const key = imageKey(UBUNTU_ID, imageRecipe({ rayVersion: "2.60.0", pythonInstaller: "uv", packageIndexUrl: "", bootstrapTimeoutSeconds: 600 }));
        assert.equal(image.inputs.name, `ray-cluster-dev-ray-2.60.0-ubuntu-${key}`);
        assert.deepEqual({ ...image.inputs.tags }, { "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "dev", Name: image.inputs.name,
            [IMAGE_KEY_TAG]: key, [IMAGE_BUILDER_TAG]: "ray-cluster-image-ubuntu-builder-id", "ray-cluster:image-base": UBUNTU_ID,
            "ray-cluster:ray-version": "2.60.0" });
        assert.equal(image.inputs.sourceInstanceId, "ray-cluster-image-ubuntu-builder-id");
        assert.equal(image.inputs.snapshotWithoutReboot, false, "EC2 stops the builder for a consistent snapshot");
        const recipe = imageRecipe({ rayVersion: "2.60.0", pythonInstaller: "uv", packageIndexUrl: "", bootstrapTimeoutSeconds: 600 });
        assert.notEqual(imageKey("ami-0fedcba9876543210", recipe), key, "another base");
        assert.notEqual(imageKey(UBUNTU_ID, { ...recipe, rayVersion: "2.59.0" }), key, "another Ray");
        assert.notEqual(imageKey(UBUNTU_ID, { ...recipe, pythonInstaller: "pip" }), key, "another installer");
        assert.equal(imageKey(UBUNTU_ID, recipe), key, "the same inputs, the same key");
    });

    test("the builder: the base AMI in the head's subnet, SSH from the allowed CIDRs only, terminated when it powers off, with a " +
        "deadline, IMDSv2 and an encrypted root", async () => {
        const r = await render({ ...CONFIG, sshAllowedCidrs: ["203.0.113.0/24"] });
        const builder = reveal(byName(r, "ray-cluster-image-ubuntu-builder").inputs);
        const head = reveal(byName(r, "ray-cluster-headnode").inputs);
        assert.deepEqual([builder.subnetId, builder.keyName], [head.subnetId, head.keyName]);
        // A group of its own that admits SSH from sshAllowedCidrs alone: a builder is no member of the cluster.
        assert.deepEqual(builder.vpcSecurityGroupIds, ["ray-cluster-image-builder-sg-id"]);
        const ingress = byType(r, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
            .filter((rule) => rule.inputs.securityGroupId === "ray-cluster-image-builder-sg-id").map((rule) => reveal(rule.inputs));
        assert.deepEqual(ingress.map((rule) => [rule.ipProtocol, rule.fromPort, rule.cidrIpv4]), [["tcp", 22, "203.0.113.0/24"]]);
        assert.equal(builder.instanceType, head.instanceType);
        assert.equal(builder.instanceInitiatedShutdownBehavior, "terminate");
        assert.equal(builder.iamInstanceProfile, undefined, "a builder needs no AWS access");
        assert.equal(builder.metadataOptions.httpTokens, "required");
        assert.equal(builder.rootBlockDevice.encrypted, true);
        // Three build bounds (3 × 3 × 600 s), in minutes.
        assert.match(builder.userData, /^ {2}- \[shutdown, -P, "\+90"\]$/m);
        assert.ok(dependsOn(r, byName(r, "ray-cluster-image-ubuntu-builder"), "ray-cluster-default-route"), "after the route SSH comes in by");
    });

    test("the build runs build-image.sh on the builder with every node script on stdin; the image waits for it, the retirement for the image", async () => {
        const r = await render({ ...CONFIG, packageIndexUrl: "https://pypi.example.com/simple/" });
        const build = reveal(byName(r, "ray-cluster-image-ubuntu-build").inputs);
        assert.match(build.create, /' build-image\.sh --version 2\.60\.0 --key [0-9a-f]{16} --installer uv --index-url https:\/\/pypi\.example\.com\/simple\/ --timeout 1800$/);
        assert.deepEqual(JSON.parse(build.stdin), nodeScriptFiles());
        assert.ok(Object.keys(JSON.parse(build.stdin)).includes("install-ray.sh"));
        assert.ok(!Object.keys(JSON.parse(build.stdin)).includes("ssh-config.sh"), "the laptop's scripts stay on the laptop");
        assert.equal(build.connection.host, defaultAddresses("ubuntu-image-builder").publicIp, "the builder's public address, as connectVia says");
        assert.ok(dependsOn(r, byName(r, "ray-cluster-image-ubuntu"), "ray-cluster-image-ubuntu-build"));
        const retire = byName(r, "ray-cluster-image-ubuntu-retire");
        assert.ok(dependsOn(r, retire, "ray-cluster-image-ubuntu"));
        // Seconds after the AMI exists, not whenever a timer's default one-minute accuracy lets it fire.
        assert.match(reveal(retire.inputs).create, /systemd-run --quiet --on-active=3 --timer-property=AccuracySec=100ms systemctl poweroff$/);
        // No node boots before its image exists.
        assert.ok(dependsOn(r, byName(r, "ray-cluster-headnode"), "ray-cluster-image-ubuntu"));
        assert.ok(dependsOn(r, byName(r, "ray-cluster-gpu-1"), "ray-cluster-image-dlami"));
    });

    test("an up after the first finds the images by key and tag: no builder, and the images as they were", async () => {
        const first = await render(CONFIG);
        const { r, warnings } = await renderWarning(CONFIG, { images: deployedImages(first) });
        assert.deepEqual(byType(r, INSTANCE).filter((i) => i.name.includes("builder")), []);
        assert.deepEqual(byType(r, "command:remote:Command").filter((c) => c.name.includes("image")), []);
        assert.deepEqual(warnings, []);
        const diff = diffGraphs(first.resources, r.resources);
        assert.deepEqual(diff.added, []);
        assert.deepEqual(diff.removed.sort(), ["ray-cluster-image-dlami-build", "ray-cluster-image-dlami-builder", "ray-cluster-image-dlami-retire",
            "ray-cluster-image-ubuntu-build", "ray-cluster-image-ubuntu-builder", "ray-cluster-image-ubuntu-retire"]);
        // The images change in nothing; only what depended on their builds sees its dependencies go.
        assert.deepEqual(diff.changed.filter((c) => c.inputs.length > 0), []);
    });

    test("another stack's image with the same key is not this stack's", async () => {
        const first = await render(CONFIG);
        const theirs = Object.fromEntries(Object.entries(deployedImages(first)).map(([id, image]) =>
            [id, { tags: { ...image.tags, "ray-cluster:stack": "prod" } }]));
        const r = await render(CONFIG, { images: theirs });
        assert.equal(byType(r, INSTANCE).filter((i) => i.name.includes("builder")).length, 2);
    });

    test("an image deleted out of band is built again, and the up says so", async () => {
        const first = await render(CONFIG);
        const left = Object.fromEntries(Object.entries(deployedImages(first)).filter(([, image]) => image.tags.Name.includes("dlami")));
        const { r, warnings } = await renderWarning(CONFIG, { images: left });
        assert.deepEqual(byType(r, INSTANCE).filter((i) => i.name.includes("builder")).map((i) => i.name), ["ray-cluster-image-ubuntu-builder"]);
        assert.equal(warnings.length, 1);
        assert.match(warnings[0], /ray-cluster-dev-ray-2\.60\.0-ubuntu-[0-9a-f]{16}: the account holds none with key .*deleted out of band/);
    });

    test("a new Ray release builds a new image, which replaces the old one, and replaces no running node", async () => {
        const first = await render(CONFIG);
        const images = deployedImages(first);
        const [before, after] = [await render(CONFIG, { images }), await render({ ...CONFIG, rayVersion: "2.59.0" }, { images })];
        const diff = diffGraphs(before.resources, after.resources);
        assert.deepEqual(diff.added.sort(), ["ray-cluster-image-dlami-build", "ray-cluster-image-dlami-builder", "ray-cluster-image-dlami-retire",
            "ray-cluster-image-ubuntu-build", "ray-cluster-image-ubuntu-builder", "ray-cluster-image-ubuntu-retire"]);
        const changed = new Map(diff.changed.map((c) => [c.name, c]));
        assert.deepEqual(changed.get("ray-cluster-image-ubuntu")?.replacedBy, ["name"]);
        for (const node of ["headnode", "worker-1", "gpu-1"]) {
            assert.deepEqual([changed.get(`ray-cluster-${node}`)?.inputs, changed.get(`ray-cluster-${node}`)?.replacedBy], [["ami"], []], node);
        }
        // The autoscaler's node types take the new image at once.
        assert.deepEqual(autoscalerImages(after), { burst: mockImageId(byName(after, "ray-cluster-image-ubuntu").inputs.name) });
        assert.ok(diff.changed.every((c) => c.replacedBy.length === 0 || c.type === AMI));
    });

    test("a pinned AMI gets a Ray-ready image of its own, and a new one replaces no node either", async () => {
        const pinned = "ami-0aaaabbbbccccdddd";
        const r = await render({ ...CONFIG, amiId: pinned, workerGroups: [] });
        assert.equal(byName(r, `ray-cluster-image-${pinned}-builder`).inputs.ami, pinned);
        assert.deepEqual(byName(r, "ray-cluster-headnode").options.ignoreChanges, ["ami"]);
        const plain = await render({ amiId: pinned, workerGroups: [] });
        assert.deepEqual(byName(plain, "ray-cluster-headnode").options.ignoreChanges, [], "without images a pinned AMI replaces nodes");
    });
});
