import * as assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import * as yaml from "js-yaml";
import { describe, test } from "node:test";
import { IMAGE_BUILDER_TAG, IMAGE_KEY_TAG, imageBase, imageKey, imageRecipe } from "../src/ray-image";
import { nodeScriptFiles } from "../src/scripts";
import { diffGraphs, imagesByNodeType } from "../tools/graph";
import {
    argumentOf, byName, defaultAddresses, byType, deployedImages, mockImageId, MOCK_DLAMI_ID, RegisteredResource, Rendered, render, RenderOptions, reveal, StackConfig,
} from "../tools/render";

const AMI = "aws:ec2/amiFromInstance:AmiFromInstance";
const INSTANCE = "aws:ec2/instance:Instance";
const UBUNTU_ID = "ami-0123456789abcdef0";
/** What the Ubuntu lookup finds once Canonical has published a newer release. */
const NEWER_UBUNTU_ID = "ami-0fedcba9876543210";
const RECIPE = imageRecipe({ rayVersion: "2.60.0", pythonInstaller: "uv", packageIndexUrl: "" });
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

    test("an image is named and tagged by its key: the stack, the Ray release, the base it was built from and the key", async () => {
        const r = await render(CONFIG);
        const image = byName(r, "ray-cluster-image-ubuntu");
        const key = imageKey(imageBase("", false, ""), RECIPE);
        assert.equal(image.inputs.name, `ray-cluster-dev-ray-2.60.0-ubuntu-${key}`);
        assert.deepEqual({ ...image.inputs.tags }, { "ray-cluster:project": "ray-cluster", "ray-cluster:stack": "dev", Name: image.inputs.name,
            [IMAGE_KEY_TAG]: key, [IMAGE_BUILDER_TAG]: "ray-cluster-image-ubuntu-builder-id", "ray-cluster:image-base": UBUNTU_ID,
            "ray-cluster:ray-version": "2.60.0" });
        assert.equal(image.inputs.sourceInstanceId, "ray-cluster-image-ubuntu-builder-id");
        assert.equal(image.inputs.snapshotWithoutReboot, false, "EC2 stops the builder for a consistent snapshot");
    });

    test("the key is a hash of the content: every node script's text, the Ray release, the installer, the index and the base", () => {
        const scripts = nodeScriptFiles();
        const base = imageBase("", false, "");
        const key = imageKey(base, RECIPE, scripts);
        assert.equal(imageKey(base, RECIPE, { ...scripts }), key, "the same inputs, the same key");
        assert.equal(imageKey(base, RECIPE), key, "by default, the node scripts as they are");
        // A copy of the scripts with one file's text changed, each file in turn: the real scripts stay as they are.
        for (const file of Object.keys(scripts)) {
            assert.notEqual(imageKey(base, RECIPE, { ...scripts, [file]: `${scripts[file]}\n# changed\n` }), key, file);
        }
        assert.notEqual(imageKey(base, RECIPE, { ...scripts, "new-script.sh": "#!/usr/bin/env bash\n" }), key, "a script added");
        assert.notEqual(imageKey(base, { ...RECIPE, rayVersion: "2.59.0" }, scripts), key, "another Ray");
        assert.notEqual(imageKey(base, { ...RECIPE, pythonInstaller: "pip" }, scripts), key, "another installer");
        assert.notEqual(imageKey(base, { ...RECIPE, packageIndexUrl: "https://pypi.example.com/simple/" }, scripts), key, "another index");
        assert.notEqual(imageKey(imageBase("ami-0aaaabbbbccccdddd", false, ""), RECIPE, scripts), key, "a pinned base");
        assert.notEqual(imageKey(imageBase("", true, ""), RECIPE, scripts), key, "the Deep Learning AMI");
        assert.notEqual(imageKey(imageBase("", false, "2027-01"), RECIPE, scripts), key, "a rayImageRefresh");
        // A pinned base's image is rebuilt when the pin changes, and not by a refresh, which is for looked-up bases.
        assert.equal(imageBase("ami-0aaaabbbbccccdddd", false, "2027-01"), imageBase("ami-0aaaabbbbccccdddd", false, ""));
    });

    test("a newer Ubuntu release or another bootstrapTimeoutSeconds is no new content: the next up finds the image built " +
        "before, builds nothing and changes no image", async () => {
        const first = await render(CONFIG);
        const images = deployedImages(first);
        for (const [what, config, options] of [["a newer Ubuntu release", CONFIG, { ubuntuImageId: NEWER_UBUNTU_ID }],
            ["another bootstrapTimeoutSeconds", { ...CONFIG, bootstrapTimeoutSeconds: 1200 }, {}]] as const) {
            const { r, warnings } = await renderWarning(config, { ...options, images });
            assert.deepEqual(byType(r, INSTANCE).filter((i) => i.name.includes("builder")).map((i) => i.name), [], what);
            assert.deepEqual(warnings, [], what);
            const diff = diffGraphs(first.resources, r.resources);
            assert.deepEqual(diff.added, [], what);
            assert.deepEqual(diff.changed.filter((c) => c.type === AMI && c.inputs.length > 0), [], `${what}: the images as they were`);
        }
        // Without rayImage, the same newer release is what a new node boots: the lookup itself is not pinned.
        const plain = await render({ workerCount: 1 }, { ubuntuImageId: NEWER_UBUNTU_ID });
        assert.equal(byName(plain, "ray-cluster-worker-1").inputs.ami, NEWER_UBUNTU_ID);
    });

    test("rayImageRefresh rebuilds the looked-up bases' images onto their newest release, and not a pinned base's", async () => {
        const pinned = "ami-0aaaabbbbccccdddd";
        const config = { ...CONFIG, workerGroups: [...CONFIG.workerGroups as Array<Record<string, unknown>>, { name: "pinned", instanceType: "c7i.xlarge", count: 1, amiId: pinned }] };
        const first = await render(config);
        const images = deployedImages(first);
        const { r, warnings } = await renderWarning({ ...config, rayImageRefresh: "2027-01" }, { images, ubuntuImageId: NEWER_UBUNTU_ID });
        assert.deepEqual(byType(r, INSTANCE).filter((i) => i.name.includes("builder")).map((i) => i.name).sort(),
            ["ray-cluster-image-dlami-builder", "ray-cluster-image-ubuntu-builder"]);
        assert.equal(byName(r, "ray-cluster-image-ubuntu-builder").inputs.ami, NEWER_UBUNTU_ID, "onto the newest Ubuntu");
        assert.equal(warnings.length, 2);
        for (const slug of ["ubuntu", "dlami"]) {
            assert.notEqual(byName(r, `ray-cluster-image-${slug}`).inputs.name, byName(first, `ray-cluster-image-${slug}`).inputs.name, slug);
        }
        assert.equal(byName(r, `ray-cluster-image-${pinned}`).inputs.name, byName(first, `ray-cluster-image-${pinned}`).inputs.name);
        // Without a newer release, the same value builds nothing again.
        const again = await render({ ...config, rayImageRefresh: "2027-01" }, { images: deployedImages(r), ubuntuImageId: NEWER_UBUNTU_ID });
        assert.deepEqual(byType(again, INSTANCE).filter((i) => i.name.includes("builder")), []);
    });

    test("the builder: the base AMI in the head's subnet, SSH from the allowed CIDRs only, terminated when it powers off, " +
        "IMDSv2 and an encrypted root", async () => {
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
        assert.ok(dependsOn(r, byName(r, "ray-cluster-image-ubuntu-builder"), "ray-cluster-default-route"), "after the route SSH comes in by");
    });

    test("a builder's user data arms, in cloud-init's bootcmd, its power-off at boot + the build's bound (3 × " +
        "bootstrapTimeoutSeconds) + 120 s; the build's command and script bounds are that bound", async () => {
        for (const bootstrapTimeoutSeconds of [600, 100]) {
            const r = await render({ ...CONFIG, bootstrapTimeoutSeconds });
            const bound = 3 * bootstrapTimeoutSeconds;
            const builder = reveal(byName(r, "ray-cluster-image-ubuntu-builder").inputs);
            // bootcmd runs early in every boot, before cloud-init's later stages or the build could fail; in the
            // background, as the timer's start waits for sysinit.target, which waits for cloud-init. Once a build has sealed the
            // builder (its manifest is there: EC2 rebooted it for the image), the bound covers the image's wait and
            // the retirement instead.
            assert.match(builder.userData, /^#cloud-config\n/);
            const cloudConfig = yaml.load(builder.userData) as { bootcmd?: string[][] };
            assert.equal(cloudConfig.bootcmd?.length, 1, builder.userData);
            const [shell, flag, bootcmd] = cloudConfig.bootcmd![0];
            assert.deepEqual([shell, flag], ["sh", "-c"]);
            const [, afterImage, firstBoot] = bootcmd.match(/^if \[ -f \/etc\/ray-cluster\/image \]; then s=(\d+); else s=(\d+); fi; /) ?? [];
            assert.equal(Number(firstBoot), bound + 120, `${bootstrapTimeoutSeconds}: the first boot's power-off`);
            assert.equal(Number(afterImage), 40 * 60 + bound + 120, `${bootstrapTimeoutSeconds}: after the image`);
            assert.match(bootcmd, /; systemd-run --quiet --on-active=\$s --timer-property=AccuracySec=100ms systemctl poweroff >\/dev\/null 2>&1 &$/);
            const build = byName(r, "ray-cluster-image-ubuntu-build");
            assert.deepEqual(build.options.customTimeouts, { create: `${bound}s`, update: `${bound}s`, delete: `${bootstrapTimeoutSeconds}s` });
            // The script's own bound counts from the builder's boot, so that SSH's wait comes out of it too.
            assert.match(reveal(build.inputs).create, new RegExp(` --timeout ${bound}$`));
            assert.deepEqual(byName(r, "ray-cluster-image-ubuntu").options.customTimeouts?.create, "2400s");
            // The image's wait and the retirement's fit in the bound of the boot after the image.
            assert.deepEqual(byName(r, "ray-cluster-image-ubuntu-retire").options.customTimeouts,
                { create: `${bound}s`, update: `${bound}s`, delete: `${bootstrapTimeoutSeconds}s` });
        }
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

    test("a pinned AMI gets a Ray-ready image of its own, and a new pinned AMI's image replaces no running node", async () => {
        const [pinned, next] = ["ami-0aaaabbbbccccdddd", "ami-0eeeeffff00001111"];
        const r = await render({ ...CONFIG, amiId: pinned, workerGroups: [] });
        assert.equal(byName(r, `ray-cluster-image-${pinned}-builder`).inputs.ami, pinned);
        assert.deepEqual(byName(r, "ray-cluster-headnode").options.ignoreChanges, ["ami"]);
        const after = await render({ ...CONFIG, amiId: next, workerGroups: [] }, { images: deployedImages(r) });
        assert.equal(byName(after, `ray-cluster-image-${next}-builder`).inputs.ami, next, "a second image, of the new pin");
        const changed = new Map(diffGraphs(r.resources, after.resources).changed.map((c) => [c.name, c]));
        for (const node of ["headnode", "worker-1"]) {
            const change = changed.get(`ray-cluster-${node}`);
            assert.deepEqual([change?.inputs, change?.replacedBy], [["ami"], []], node);
        }
        assert.equal(byName(after, "ray-cluster-headnode").inputs.ami, mockImageId(byName(after, `ray-cluster-image-${next}`).inputs.name));
        const plain = await render({ amiId: pinned, workerGroups: [] });
        assert.deepEqual(byName(plain, "ray-cluster-headnode").options.ignoreChanges, [], "without images a pinned AMI replaces nodes");
    });
});
