import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import {
    autoscalerConfig, ELASTIC_TAG, ElasticNodeType, RAY_CLUSTER_NAME_TAG,
} from "./autoscaler";
import { WorkerGroup } from "./groups";
import { ImageSource, NodeImages } from "./images";
import { RayNode } from "./nodes";
import { commandTimeouts, nodeConnection, SshAccess } from "./ray";
import { scriptCommand } from "./scripts";
import { GCS_PORT } from "./security";

/** Inputs of the elastic worker groups. */
export interface ElasticWorkersArgs extends SshAccess {
    /** The elastic groups, each with its minCount and maxCount. */
    groups: WorkerGroup[];
    /** Minutes before Ray terminates an idle elastic worker. */
    idleMinutes: number;
    /** Ray's cluster name, which the head and every launched worker are tagged with. */
    clusterName: string;
    /** The stack's tags. */
    tags: Record<string, string>;
    /** The head, whose autoscaler launches the workers. */
    head: RayNode;
    /** The head's Ray service, which must run before its autoscaler gets a config. */
    headStart: pulumi.Resource;
    /** The head's role, which gets the scoped launch and terminate grants. */
    headRole: aws.iam.Role;
    /** The workers' role, the only one the head may pass to EC2. */
    workerRole: aws.iam.Role;
    /** The workers' instance profile, which launched workers get. */
    workerInstanceProfileArn: pulumi.Input<string>;
    /** The subnets workers launch into (public or private): the head zone's first, then each elastic zone's. */
    workerSubnetIds: pulumi.Input<string>[];
    /** The workers' security groups. */
    workerSecurityGroupIds: pulumi.Input<string>[];
    /** Whether workers are private: no public IP. */
    privateWorkers: boolean;
    /** The stack's EC2 key pair, so users reach launched workers with their key. */
    keyName: pulumi.Input<string>;
    /** Where users keep that key (sshIdentityFile), for the ssh command the summary gives. */
    identityFile: string;
    /** Exact Ray release, installer and package index of the stack's install. */
    rayVersion: string;
    pythonInstaller: "uv" | "pip";
    packageIndexUrl: string;
    /** Where the launched workers' AMIs come from: Ray-ready images; by default the base images. */
    images?: ImageSource;
}

/**
 * The actions the head's autoscaler needs (Ray's AWS node provider calls the first five), each confined below. The
 * last only with a spot group: EC2 uses it, with the caller's grants, for the spot service-linked role.
 */
export const AUTOSCALER_ACTIONS = ["ec2:DescribeInstances", "ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "iam:PassRole",
    "iam:CreateServiceLinkedRole"];

/** The service-linked role EC2 needs for any spot request, in an account that has never had one. */
export const SPOT_SERVICE = "spot.amazonaws.com";
export const spotServiceRoleArn = (partition: string, account: string) =>
    `arn:${partition}:iam::${account}:role/aws-service-role/${SPOT_SERVICE}/AWSServiceRoleForEC2Spot`;

/**
 * The head's grants for Ray's AWS node provider, confined to this stack: it may launch only with this stack's and
 * Ray's cluster tags on the request, only into this stack's worker subnets, security groups and key pair and only from
 * the images its node types name; tag only what it launches, or instances it launched before; terminate only those;
 * and pass only the workers' role to EC2. With a spot group it may also create (tagged) spot requests, and have EC2
 * create the spot service-linked role.
 */
export function autoscalerPolicy(p: {
    partition: string; region: string; account: string; clusterName: string; tags: Record<string, string>;
    subnetIds: string[]; securityGroupIds: string[]; keyName: string; workerRoleArn: string;
    /** The AMIs the node types boot: the only ones the head may launch. */
    imageIds: string[];
    /** Whether some elastic group is spot. */
    spot: boolean;
}): Record<string, unknown> {
    const arn = (resource: string) => `arn:${p.partition}:ec2:${p.region}:${p.account}:${resource}`;
    const mark = { ...p.tags, [RAY_CLUSTER_NAME_TAG]: p.clusterName, [ELASTIC_TAG]: "true" };
    const condition = (prefix: string) => Object.fromEntries(Object.entries(mark).map(([k, v]) => [`${prefix}/${k}`, v]));
    // A spot launch is also authorized on the spot request it creates, which the node config tags (src/autoscaler.ts).
    const created = [arn("instance/*"), arn("volume/*"), ...(p.spot ? [arn("spot-instances-request/*")] : [])];
    const images = [...new Set(p.imageIds)].sort().map((id) => `arn:${p.partition}:ec2:${p.region}::image/${id}`);
    return {
        Version: "2012-10-17",
        Statement: [
            // DescribeInstances has no resource-level permissions: AWS accepts only "*" here.
            { Sid: "FindInstances", Effect: "Allow", Action: ["ec2:DescribeInstances"], Resource: "*" },
            { Sid: "LaunchTaggedWorkers", Effect: "Allow", Action: ["ec2:RunInstances"],
                Resource: created, Condition: { StringEquals: condition("aws:RequestTag") } },
            { Sid: "LaunchIntoThisStack", Effect: "Allow", Action: ["ec2:RunInstances"], Resource: [
                ...p.subnetIds.map((id) => arn(`subnet/${id}`)), ...p.securityGroupIds.map((id) => arn(`security-group/${id}`)),
                arn(`key-pair/${p.keyName}`), arn("network-interface/*"), ...images] },
            { Sid: "TagAtLaunch", Effect: "Allow", Action: ["ec2:CreateTags"], Resource: created,
                Condition: { StringEquals: { "ec2:CreateAction": "RunInstances" } } },
            // An account's first spot request makes EC2 create this role with the caller's grants; later ones need none.
            ...(p.spot ? [{ Sid: "CreateSpotServiceRole", Effect: "Allow", Action: ["iam:CreateServiceLinkedRole"],
                Resource: spotServiceRoleArn(p.partition, p.account), Condition: { StringEquals: { "iam:AWSServiceName": SPOT_SERVICE } } }] : []),
            // Ray moves a node's ray-node-status tag along as it sets the node up.
            { Sid: "RetagLaunchedWorkers", Effect: "Allow", Action: ["ec2:CreateTags"], Resource: arn("instance/*"),
                Condition: { StringEquals: condition("aws:ResourceTag") } },
            { Sid: "TerminateLaunchedWorkers", Effect: "Allow", Action: ["ec2:TerminateInstances"], Resource: arn("instance/*"),
                Condition: { StringEquals: condition("aws:ResourceTag") } },
            { Sid: "PassWorkerRole", Effect: "Allow", Action: ["iam:PassRole"], Resource: p.workerRoleArn,
                Condition: { StringEquals: { "iam:PassedToService": "ec2.amazonaws.com" } } },
        ],
    };
}

/** User data of a launched worker: the stack's, plus the head's public key for the autoscaler's SSH. No secret. */
export function elasticUserData(headPublicKey: string): string {
    return `#cloud-config\npreserve_hostname: true\nssh_authorized_keys:\n  - ${headPublicKey.trim()}\n`;
}

/**
 * Elastic worker groups: Ray's own autoscaler on the head (ray-autoscaler.service) launches and terminates their
 * workers through EC2 as demand comes and goes, with the config this component renders, a login key of its own for
 * the new workers, and grants confined to this stack. The workers it launches join as the stack's own do.
 */
export class ElasticWorkers extends pulumi.ComponentResource {
    /** The rendered autoscaler config (JSON), as the head reads it. */
    public readonly config: pulumi.Output<string>;
    public readonly policy: aws.iam.RolePolicy;
    public readonly install: command.remote.Command;
    /** Each elastic group's bounds, and how to reach a launched worker: the stack's elasticGroups output. */
    public readonly summary: string;

    constructor(name: string, args: ElasticWorkersArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:elastic:ElasticWorkers", name, {}, opts);

        // The autoscaler's own login to the workers it launches: the user's key never goes to the head.
        const key = new tls.PrivateKey(`${name}-autoscaler-key`, { algorithm: "ED25519" }, {
            parent: this,
            additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"],
        });

        const images = args.images ?? new NodeImages(this);
        const types = pulumi.all(args.groups.map((group) => {
            const imageId = pulumi.output(images.imageFor(group.amiId, group.gpu));
            const image = aws.ec2.getAmiOutput({ filters: [{ name: "image-id", values: [imageId] }] }, { parent: this });
            const type = aws.ec2.getInstanceTypeOutput({ instanceType: group.instanceType }, { parent: this });
            return pulumi.all([imageId, image.rootDeviceName, type.defaultVcpus, type.gpuses]).apply(([id, device, vcpus, gpus]): ElasticNodeType => ({
                group, imageId: id, rootDeviceName: device, vcpus,
                gpus: gpus.filter((g) => g.manufacturer === "NVIDIA").reduce((sum, g) => sum + g.count, 0),
            }));
        }));

        const partition = aws.getPartitionOutput({}, { parent: this }).partition;
        const account = aws.getCallerIdentityOutput({}, { parent: this }).accountId;
        const region = args.head.running.region;
        this.policy = new aws.iam.RolePolicy(`${name}-autoscaler`, {
            role: args.headRole.id,
            policy: pulumi.all([partition, region, account, pulumi.all(args.workerSubnetIds), pulumi.all(args.workerSecurityGroupIds),
                args.keyName, args.workerRole.arn, types]).apply(([p, r, a, subnetIds, securityGroupIds, keyName, workerRoleArn, t]) =>
                JSON.stringify(autoscalerPolicy({ partition: p, region: r, account: a, clusterName: args.clusterName,
                    tags: args.tags, subnetIds, securityGroupIds, keyName, workerRoleArn, imageIds: t.map((type) => type.imageId),
                    spot: args.groups.some((group) => group.spot) }))),
        }, { parent: this });

        this.config = pulumi.all([types, region, pulumi.all(args.workerSubnetIds), pulumi.all(args.workerSecurityGroupIds), args.keyName,
            args.workerInstanceProfileArn, key.publicKeyOpenssh]).apply(([t, r, subnetIds, securityGroupIds, keyName, profileArn, publicKey]) =>
            JSON.stringify(autoscalerConfig({
                clusterName: args.clusterName, region: r, idleMinutes: args.idleMinutes, sshUser: args.sshUser, keyName,
                subnetIds, securityGroupIds, instanceProfileArn: profileArn, privateWorkers: args.privateWorkers, tags: args.tags,
                userData: elasticUserData(publicKey), rayVersion: args.rayVersion, pythonInstaller: args.pythonInstaller,
                packageIndexUrl: args.packageIndexUrl, timeoutSeconds: args.timeoutSeconds, gcsPort: GCS_PORT, types: t,
            }), null, 2));

        this.install = new command.remote.Command(`${name}-${args.head.name}-autoscaler`, {
            connection: nodeConnection(args.head, args),
            create: this.config.apply((config) => scriptCommand("install-autoscaler.sh", [
                "--config", config, "--installer", args.pythonInstaller,
                ...(args.packageIndexUrl !== "" ? ["--index-url", args.packageIndexUrl] : []),
            ])),
            stdin: pulumi.secret(key.privateKeyOpenssh),
            // Turning elasticity off stops the launches first; the stack's sweep then terminates what was launched.
            delete: scriptCommand("remove-autoscaler.sh", []),
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            dependsOn: [args.headStart, this.policy],
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A terminated head takes its autoscaler along; a stopped one cannot be reached (see RayCluster).
            deletedWith: args.head.instance,
        });

        const head = args.head.name;
        this.summary = `${args.groups.map((g) => `${g.name}: ${g.elastic!.minCount} to ${g.elastic!.maxCount} × ${g.instanceType}`).join("; ")}; ` +
            `Ray's autoscaler on ${head} sizes them (\`ssh ${head} ray status\`); reach a launched worker with ` +
            `\`ssh -J ${head} -i ${args.identityFile} ${args.sshUser}@<its private IP>\``;
        this.registerOutputs({ config: this.config });
    }
}

