import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as crypto from "crypto";
import { ClusterConfig } from "./config";
import { mostNodes } from "./groups";
import { defaultImageLookup, ImageSource, resolveBaseImage } from "./images";
import { sshConnection, SshAccess } from "./ray";
import { nodeScriptFiles, scriptCommand } from "./scripts";
import { SSH_PORT } from "./security";

/** The tag that names what an image was built from (its key), by which a later `pulumi up` finds it again. */
export const IMAGE_KEY_TAG = "ray-cluster:image-key";
/** The tag that names the builder an image was made from: the image resource's source instance ever after. */
export const IMAGE_BUILDER_TAG = "ray-cluster:image-builder";
/** The tag that names the AMI an image was built from: an image found again keeps it, whatever the lookup finds now. */
export const IMAGE_BASE_TAG = "ray-cluster:image-base";

/** A build's bound, in bootstrap bounds: the wait for SSH and cloud-init, the install, and the rest. */
const BUILD_BOUNDS = 3;
/**
 * How long past its build's bound a builder runs before it powers itself off: time for EC2's CreateImage to stop it
 * after a build that ended just within the bound.
 */
export const BUILDER_MARGIN_SECONDS = 120;
/** The image resource's wait for EC2 to snapshot the builder and make the AMI available. */
export const IMAGE_CREATE_SECONDS = 40 * 60;
/** What build-image.sh writes once it has sealed a builder (its manifest): from then on the builder waits for its image. */
const SEALED_MANIFEST = "/etc/ray-cluster/image";

/** What a Ray-ready image holds besides its base: its key is a hash of all of it, and of every node script. */
export interface ImageRecipe {
    /** Exact Ray release of the image's venv. */
    rayVersion: string;
    /** Python package installer the build uses. */
    pythonInstaller: "uv" | "pip";
    /** Package index the build installs from; empty for PyPI. */
    packageIndexUrl: string;
}

/** One Ray-ready image the stack needs, as planned before any resource is registered. */
export interface PlannedImage {
    /** The image choices (a pinned AMI id, or "" with gpu) whose nodes boot it. */
    choices: Array<{ amiId: string; gpu: boolean }>;
    /** Its part of resource names: ubuntu, dlami or the pinned base's id. */
    slug: string;
    /** The AMI it is built from: the lookup's answer now for a build; for an image the account holds, the one it was. */
    baseAmiId: string;
    /** Hash of the base's identity (imageBase), the recipe and every node script: a change to any of them is a new image. */
    key: string;
    /** The AMI's name, unique in the account and region. */
    name: string;
    /** The image, if the account holds it already: it is then kept, and nothing is built. */
    existing?: { builderId: string };
}

/** The stack's recipe: its Ray, installer and index. */
export function imageRecipe(config: Pick<ClusterConfig, "rayVersion" | "pythonInstaller" | "packageIndexUrl">): ImageRecipe {
    return { rayVersion: config.rayVersion, pythonInstaller: config.pythonInstaller, packageIndexUrl: config.packageIndexUrl };
}

/** The bound on a build, in seconds from its builder's boot. */
export function buildTimeoutSeconds(bootstrapTimeoutSeconds: number): number {
    return BUILD_BOUNDS * bootstrapTimeoutSeconds;
}

/** The command that builds an image on its builder, and what it reads on stdin. */
export function buildCommand(recipe: ImageRecipe, key: string, timeoutSeconds: number): { create: string; stdin: string } {
    return {
        create: scriptCommand("build-image.sh", ["--version", recipe.rayVersion, "--key", key, "--installer", recipe.pythonInstaller,
            ...(recipe.packageIndexUrl !== "" ? ["--index-url", recipe.packageIndexUrl] : []),
            "--timeout", String(timeoutSeconds)]),
        stdin: JSON.stringify(nodeScriptFiles()),
    };
}

/**
 * What an image's key holds of its base: a pinned AMI's id; for a default base, the lookup that finds it and the
 * stack's rayImageRefresh, not the id it finds, so that a new Ubuntu or Deep Learning AMI release alone builds nothing.
 */
export function imageBase(amiId: string, gpu: boolean, refresh: string): string {
    return amiId !== "" ? `ami:${amiId}` : `${defaultImageLookup(gpu)} refresh:${refresh}`;
}

/**
 * The key of an image of this base (imageBase) and recipe: a hash of what the image holds. The node scripts (the
 * build script among them) are the ones in scripts/ unless given. A bound on the build is no content and is not in it.
 */
export function imageKey(base: string, recipe: ImageRecipe, scripts: Record<string, string> = nodeScriptFiles()): string {
    const content = { base, rayVersion: recipe.rayVersion, pythonInstaller: recipe.pythonInstaller,
        packageIndexUrl: recipe.packageIndexUrl, scripts };
    return crypto.createHash("sha256").update(JSON.stringify(content)).digest("hex").slice(0, 16);
}

/**
 * The Ray-ready images the stack's nodes need (the head's, and each group's that has nodes), one per base (a pinned
 * AMI, the default Ubuntu or the Deep Learning AMI), and whether the account holds each already (tagged with the
 * stack's tags and its key). Looked up before any resource is registered, since it decides which resources there
 * are: a builder only for an image the account lacks.
 */
export async function planRayImages(config: Pick<ClusterConfig, "amiId" | "workerGroups" | "project" | "stack" | "rayVersion" |
    "pythonInstaller" | "packageIndexUrl" | "rayImageRefresh">, tags: Record<string, string>): Promise<PlannedImage[]> {
    const recipe = imageRecipe(config);
    const choices = [{ amiId: config.amiId, gpu: false },
        ...config.workerGroups.filter((g) => mostNodes(g) > 0).map((g) => ({ amiId: g.amiId, gpu: g.gpu }))];
    const unique = [...new Map(choices.map((c) => [choiceKey(c.amiId, c.gpu), c])).values()];
    return Promise.all(unique.map(async (choice): Promise<PlannedImage> => {
        const slug = choice.amiId !== "" ? choice.amiId : choice.gpu ? "dlami" : "ubuntu";
        const key = imageKey(imageBase(choice.amiId, choice.gpu, config.rayImageRefresh), recipe);
        const image: PlannedImage = { choices: [choice], slug, baseAmiId: "", key,
            name: `${config.project}-${config.stack}-ray-${recipe.rayVersion}-${slug}-${key}` };
        const found = await aws.ec2.getAmiIds({
            owners: ["self"],
            filters: [{ name: `tag:${IMAGE_KEY_TAG}`, values: [image.key] }, { name: "state", values: ["available"] },
                ...Object.entries(tags).map(([k, v]) => ({ name: `tag:${k}`, values: [v] }))],
        });
        if (found.ids.length > 0) {
            const ami = await aws.ec2.getAmi({ owners: ["self"], filters: [{ name: "image-id", values: [found.ids[0]] }] });
            image.existing = { builderId: ami.tags[IMAGE_BUILDER_TAG] ?? "" };
            image.baseAmiId = ami.tags[IMAGE_BASE_TAG] ?? "";
        }
        // A build starts from the newest base the lookup finds.
        image.baseAmiId ||= await resolveBaseImage(choice.amiId, choice.gpu);
        return image;
    }));
}

/** Inputs of the Ray-ready images. */
export interface RayImagesArgs {
    /** The images to keep or build (planRayImages). */
    images: PlannedImage[];
    /** What goes into each image. */
    recipe: ImageRecipe;
    /** How the bootstrap reaches a builder: its public or private address, as connectVia says; its bound sets the build's. */
    access: Pick<SshAccess, "connectVia" | "sshUser" | "privateKey" | "timeoutSeconds">;
    /** Instance type of a builder. */
    builderInstanceType: string;
    /** Subnet a builder launches in: the head's, which reaches the package index. */
    subnetId: pulumi.Input<string>;
    /** VPC of that subnet, for the builders' own security group. */
    vpcId: pulumi.Input<string>;
    /** CIDRs allowed to reach a builder's SSH (sshAllowedCidrs): the bootstrap's way in. */
    sshAllowedCidrs: string[];
    /** EC2 key pair authorised for the bootstrap's SSH. */
    keyName: pulumi.Input<string>;
    /** What must exist before a builder boots (the route the bootstrap's SSH comes in by). */
    bootDependencies: pulumi.Resource[];
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/**
 * Ray-ready images: for each base AMI the nodes boot, an AMI that already holds the stack's Ray, uv, venv, AWS SDK
 * and node scripts, made with aws.ec2.AmiFromInstance from a builder instance that the same scripts set up. The
 * builder terminates itself once its image exists (or its build fails), so nothing of a build keeps running; a
 * later `pulumi up` finds the image by its key and builds nothing. Deleting the stack deregisters the images and
 * deletes their snapshots.
 */
export class RayImages extends pulumi.ComponentResource implements ImageSource {
    /** Each image's AMI resource, by its slug. */
    public readonly images: Map<string, aws.ec2.AmiFromInstance>;
    /** The builders' group: SSH from the allowed CIDRs, and none of the cluster's: a builder is no member of it. */
    public readonly builderSecurityGroup: aws.ec2.SecurityGroup;
    private readonly byChoice = new Map<string, pulumi.Output<string>>();

    constructor(name: string, args: RayImagesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:image:RayImages", name, {}, opts);

        this.builderSecurityGroup = new aws.ec2.SecurityGroup(`${name}-image-builder-sg`, {
            vpcId: args.vpcId,
            description: "Ray image builders: SSH from allowed CIDRs; no way to or from the cluster",
            tags: { ...args.tags, Name: `${name}-image-builder-sg` },
        }, { parent: this });
        for (const cidr of args.sshAllowedCidrs) {
            new aws.vpc.SecurityGroupIngressRule(`${name}-image-builder-ssh-${cidr.replace(/[./]/g, "-")}`, {
                securityGroupId: this.builderSecurityGroup.id, description: `SSH from ${cidr}`, ipProtocol: "tcp",
                fromPort: SSH_PORT, toPort: SSH_PORT, cidrIpv4: cidr, tags: args.tags,
            }, { parent: this });
        }
        // The build fetches from the package index.
        new aws.vpc.SecurityGroupEgressRule(`${name}-image-builder-egress-all`, {
            securityGroupId: this.builderSecurityGroup.id, description: "All outbound traffic", ipProtocol: "-1",
            cidrIpv4: "0.0.0.0/0", tags: args.tags,
        }, { parent: this });

        this.images = new Map(args.images.map((image) => [image.slug, this.image(name, image, args)]));
        for (const image of args.images) {
            for (const choice of image.choices) {
                this.byChoice.set(choiceKey(choice.amiId, choice.gpu), this.images.get(image.slug)!.id);
            }
        }

        this.registerOutputs({ imageIds: Object.fromEntries([...this.images].map(([slug, ami]) => [slug, ami.id])) });
    }

    imageFor(amiId: string, gpu: boolean): pulumi.Input<string> {
        const id = this.byChoice.get(choiceKey(amiId, gpu));
        if (!id) {
            throw new Error(`no Ray-ready image was planned for ${amiId || (gpu ? "the Deep Learning AMI" : "the default Ubuntu AMI")}`);
        }
        return id;
    }

    // A new image is for nodes yet to come: running nodes keep theirs and are upgraded in place by the bootstrap.
    replacesRunningNodes(): boolean {
        return false;
    }

    private image(name: string, image: PlannedImage, args: RayImagesArgs): aws.ec2.AmiFromInstance {
        const prefix = `${name}-image-${image.slug}`;
        const imageTags = (builderId: pulumi.Input<string>) => ({
            ...args.tags, Name: image.name, [IMAGE_KEY_TAG]: image.key, [IMAGE_BUILDER_TAG]: builderId,
            [IMAGE_BASE_TAG]: image.baseAmiId, "ray-cluster:ray-version": args.recipe.rayVersion,
        });
        const amiArgs = (builderId: pulumi.Input<string>): aws.ec2.AmiFromInstanceArgs => ({
            name: image.name,
            description: `Ray ${args.recipe.rayVersion} ready: ${image.baseAmiId} with the ${args.tags["ray-cluster:project"]} node scripts (key ${image.key})`,
            sourceInstanceId: builderId,
            // EC2 stops the builder for the snapshot, so the file system is consistent.
            snapshotWithoutReboot: false,
            tags: imageTags(builderId),
        });
        if (image.existing) {
            // Built by an earlier `pulumi up`, whose builder is gone: the same inputs, so nothing changes.
            return new aws.ec2.AmiFromInstance(prefix, amiArgs(image.existing.builderId), { parent: this });
        }
        pulumi.log.warn(`Ray-ready image ${image.name}: the account holds none with key ${image.key} (a first build, a new ` +
            "Ray release, installer, index, node script, pinned AMI or rayImageRefresh, or an image deleted out of band); " +
            "building it on a builder instance", this);
        const buildSeconds = buildTimeoutSeconds(args.access.timeoutSeconds);
        // The build's: its SSH wait and its script together (the script's bound counts from the builder's boot). The
        // retirement's: the rebooted builder's SSH, then a second's work.
        const timeouts = { create: `${buildSeconds}s`, update: `${buildSeconds}s`, delete: `${args.access.timeoutSeconds}s` };
        const { create, stdin } = buildCommand(args.recipe, image.key, buildSeconds);
        const builder = new aws.ec2.Instance(`${prefix}-builder`, {
            ami: image.baseAmiId,
            instanceType: args.builderInstanceType,
            subnetId: args.subnetId,
            vpcSecurityGroupIds: [this.builderSecurityGroup.id],
            keyName: args.keyName,
            // Powering off ends it: a failed build, a finished one and the deadline below all leave nothing running.
            instanceInitiatedShutdownBehavior: "terminate",
            // Whatever happens to the build's SSH or script, the builder ends soon after the build's bound; once sealed,
            // after the image's wait and the retirement's.
            userData: builderUserData(buildSeconds + BUILDER_MARGIN_SECONDS, IMAGE_CREATE_SECONDS + buildSeconds + BUILDER_MARGIN_SECONDS),
            metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
            rootBlockDevice: { volumeType: "gp3", encrypted: true, deleteOnTermination: true },
            tags: { ...args.tags, Name: `${image.slug}-image-builder`, [IMAGE_KEY_TAG]: image.key },
            volumeTags: { ...args.tags, Name: `${image.slug}-image-builder` },
        }, { parent: this, dependsOn: args.bootDependencies });
        const connection = sshConnection(args.access.connectVia === "public" ? builder.publicIp : builder.privateIp, args.access);
        const build = new command.remote.Command(`${prefix}-build`, {
            connection, create, stdin, addPreviousOutputInEnv: false,
            // A new builder (a new key, or one made again) builds again.
            triggers: [builder.id],
        }, { parent: this, customTimeouts: timeouts, deletedWith: builder });
        const ami = new aws.ec2.AmiFromInstance(prefix, amiArgs(builder.id), { parent: this, dependsOn: [build],
            customTimeouts: { create: `${IMAGE_CREATE_SECONDS}s` } });
        // The image exists: the builder's work is done. Delayed, so that the command returns before the power-off; a
        // timer's default accuracy is a minute, which would let the builder run up to a minute longer.
        new command.remote.Command(`${prefix}-retire`, {
            connection,
            create: "sudo systemd-run --quiet --on-active=3 --timer-property=AccuracySec=100ms systemctl poweroff",
            addPreviousOutputInEnv: false,
            triggers: [builder.id],
        }, { parent: this, dependsOn: [ami], customTimeouts: timeouts, deletedWith: builder });
        return ami;
    }
}

/**
 * A builder's user data: at every boot, early in cloud-init (bootcmd), before its later stages, SSH or the build
 * can fail, a timer that powers the builder off, which terminates it. Until a build has sealed the builder, the timer
 * fires firstBootSeconds after the boot; on the boot after (EC2 reboots it for the image), afterImageSeconds after.
 * In the background, with its output away from cloud-init's: systemd-run waits for a timer that cannot start before
 * sysinit.target, which waits for cloud-init itself, and cloud-init waits for every holder of a command's output (on
 * the rig, a foreground systemd-run, even with --no-block, held the boot for good). To the 100 ms, as a timer's
 * default accuracy is a minute.
 */
function builderUserData(firstBootSeconds: number, afterImageSeconds: number): string {
    const arm = `if [ -f ${SEALED_MANIFEST} ]; then s=${afterImageSeconds}; else s=${firstBootSeconds}; fi; ` +
        "systemd-run --quiet --on-active=$s --timer-property=AccuracySec=100ms systemctl poweroff >/dev/null 2>&1 &";
    return `#cloud-config\npreserve_hostname: true\nbootcmd:\n  - [sh, -c, "${arm}"]\n`;
}

function choiceKey(amiId: string, gpu: boolean): string {
    return amiId !== "" ? amiId : `default-${gpu}`;
}
