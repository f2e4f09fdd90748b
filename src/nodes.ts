import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { groupNodeName, HEAD_GROUP, WorkerGroup } from "./groups";
import { ImageSource, NodeImages } from "./images";

export const HEAD_NODE_NAME = "headnode";


/**
 * Cloud-init only keeps the hostname the bootstrap sets across reboots. It installs nothing: apt at boot would put
 * the network and the dpkg lock on the critical path, and the bootstrap needs only python3 and the package index.
 * It carries no secrets: user data is readable by anything on the instance.
 */
export const NODE_USER_DATA = `#cloud-config
preserve_hostname: true
`;

/** Inputs of the cluster's EC2 instances. */
export interface RayNodesArgs {
    /** Instance type of the head node. */
    headInstanceType: string;
    /** Root volume size of the head, in GB. */
    headVolumeSizeGb: number;
    /** AMI of the head; empty looks up the latest Canonical Ubuntu 24.04 amd64 image. */
    headAmiId: string;
    /** The worker groups, each with its type, count, disk, image and market. */
    groups: WorkerGroup[];
    /** Subnet the head launches in, a public one. */
    headSubnetId: pulumi.Input<string>;
    /** Subnet the workers launch in: the head's, or a private one. */
    workerSubnetId: pulumi.Input<string>;
    /** Whether workers are private: launched without a public IP, whatever their subnet's default. */
    privateWorkers: boolean;
    /** Security groups of the head. */
    headSecurityGroupIds: pulumi.Input<string>[];
    /** Security groups of every worker. */
    workerSecurityGroupIds: pulumi.Input<string>[];
    /** EC2 key pair authorised for SSH. */
    keyName: pulumi.Input<string>;
    /** Instance profile of the head: bucket access, plus autostop's and the autoscaler's EC2 grants. */
    headInstanceProfileName: pulumi.Input<string>;
    /** Instance profile of the workers: bucket access only. */
    workerInstanceProfileName: pulumi.Input<string>;
    /** Tags of the head besides the stack's: those by which Ray's autoscaler finds it, with elastic groups. */
    headTags: Record<string, string>;
    /** Resources that must exist before the head boots (the internet route the bootstrap's SSH comes in by). */
    headBootDependencies: pulumi.Resource[];
    /** Resources that must exist before a worker boots (its subnet's way to the package index). */
    workerBootDependencies: pulumi.Resource[];
    /** Where the nodes' AMIs come from: Ray-ready images; by default the base images. */
    images?: ImageSource;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** One node of the cluster: its name, its group, its instance and where to reach it. */
export interface RayNode {
    /** Hostname and `Name` tag: headnode, worker-1 …, gpu-1 … */
    name: string;
    /** Its worker group, or `headnode` for the head. */
    group: string;
    /** GPUs Ray is told the node has; undefined lets Ray detect them. */
    gpus?: number;
    /** The EC2 instance. */
    instance: aws.ec2.Instance;
    /** Keeps the instance running: `pulumi up` starts it again after an autostop, a manual stop or a spot stop. */
    running: aws.ec2transitgateway.InstanceState;
    /** The public IP the instance has now, read once it runs (a stop and start gives it a new one); empty for a private worker. */
    publicIp: pulumi.Output<string>;
    /** The private IP (a stop and start keeps it), known once the instance runs. */
    privateIp: pulumi.Output<string>;
}

/**
 * Spot workers: a persistent request whose interruption stops the worker instead of terminating it, so it keeps its
 * disk and private IP and EC2 starts it again when capacity returns; its Ray service then starts at boot.
 */
export const SPOT_MARKET_OPTIONS = {
    marketType: "spot",
    spotOptions: { spotInstanceType: "persistent", instanceInterruptionBehavior: "stop" },
};

/** The head node and the worker groups' nodes. */
export class RayNodes extends pulumi.ComponentResource {
    public readonly head: RayNode;
    public readonly workers: RayNode[];

    constructor(name: string, args: RayNodesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:nodes:RayNodes", name, {}, opts);

        const images = args.images ?? new NodeImages(this);
        const node = (nodeName: string, group: string, instanceType: string, spot: boolean, volumeSizeGb: number,
            amiId: string, gpu: boolean, gpus?: number): RayNode => {
            const isHead = group === HEAD_GROUP;
            const instance = new aws.ec2.Instance(`${name}-${nodeName}`, {
                ami: images.imageFor(amiId, gpu),
                instanceType,
                instanceMarketOptions: spot ? SPOT_MARKET_OPTIONS : undefined,
                subnetId: isHead ? args.headSubnetId : args.workerSubnetId,
                // Explicit, so that a given private subnet that maps public IPs by default still gives workers none.
                associatePublicIpAddress: !isHead && args.privateWorkers ? false : undefined,
                vpcSecurityGroupIds: isHead ? args.headSecurityGroupIds : args.workerSecurityGroupIds,
                keyName: args.keyName,
                iamInstanceProfile: isHead ? args.headInstanceProfileName : args.workerInstanceProfileName,
                userData: NODE_USER_DATA,
                metadataOptions: {
                    httpEndpoint: "enabled",
                    httpTokens: "required",
                    // One hop keeps instance credentials out of reach of containers on the node.
                    httpPutResponseHopLimit: 1,
                },
                rootBlockDevice: {
                    volumeType: "gp3",
                    volumeSize: volumeSizeGb,
                    encrypted: true,
                    deleteOnTermination: true,
                },
                tags: { ...args.tags, Name: nodeName, "ray-cluster:group": group, ...(isHead ? args.headTags : {}) },
                volumeTags: { ...args.tags, Name: nodeName, "ray-cluster:group": group },
            }, {
                parent: this,
                dependsOn: isHead ? args.headBootDependencies : args.workerBootDependencies,
                // A newer looked-up or Ray-ready image is for nodes yet to come (src/images.ts).
                ignoreChanges: images.replacesRunningNodes(amiId) ? [] : ["ami"],
            });
            // With `refresh: always` (Pulumi.yaml), a stopped instance shows up as stopped and this starts it. EC2
            // refuses to start a spot worker that it stopped itself until capacity returns; `pulumi up` then says so.
            const running = new aws.ec2transitgateway.InstanceState(`${name}-${nodeName}-running`, {
                instanceId: instance.id,
                state: "running",
            }, { parent: this });
            // Read after the instance runs: the instance's own publicIp is empty once a refresh saw it stopped.
            const current = aws.ec2.getInstanceOutput({ instanceId: running.instanceId }, { parent: this });
            return { name: nodeName, group, gpus, instance, running, publicIp: current.publicIp, privateIp: current.privateIp };
        };

        this.head = node(HEAD_NODE_NAME, HEAD_GROUP, args.headInstanceType, false, args.headVolumeSizeGb, args.headAmiId, false);
        this.workers = args.groups.flatMap((g) => Array.from({ length: g.count }, (_, i) =>
            node(groupNodeName(g.name, i + 1), g.name, g.instanceType, g.spot, g.volumeSizeGb, g.amiId, g.gpu, g.gpus)));

        this.registerOutputs({
            headInstanceId: this.head.instance.id,
            workerInstanceIds: this.workers.map((worker) => worker.instance.id),
        });
    }
}
