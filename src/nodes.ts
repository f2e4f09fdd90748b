import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Canonical's AWS account, the only publisher trusted for the default image. */
export const CANONICAL_OWNER_ID = "099720109477";
export const UBUNTU_2404_AMD64_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";
export const HEAD_NODE_NAME = "headnode";

/** Name of worker `index` (1-based), as in the lab: worker-1 … worker-N. */
export const workerNodeName = (index: number) => `worker-${index}`;

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
    /** Number of worker nodes. */
    workerCount: number;
    /** Instance type of the head node. */
    headInstanceType: string;
    /** Instance type of each worker node. */
    workerInstanceType: string;
    /** Whether workers run on the spot market; the head never does. */
    workerSpot: boolean;
    /** Root volume size, in GB. */
    volumeSizeGb: number;
    /** AMI to boot; empty looks up the latest Canonical Ubuntu 24.04 amd64 image. */
    amiId: string;
    /** Subnet the nodes launch in. */
    subnetId: pulumi.Input<string>;
    /** Security group of every node. */
    securityGroupId: pulumi.Input<string>;
    /** EC2 key pair authorised for SSH. */
    keyName: pulumi.Input<string>;
    /** Instance profile that grants the nodes their bucket access. */
    instanceProfileName: pulumi.Input<string>;
    /** Resources that must exist before a node boots (the internet route the bootstrap's SSH comes in by). */
    bootDependencies: pulumi.Input<pulumi.Resource>[];
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** One node of the cluster: its role name, its instance and where to reach it. */
export interface RayNode {
    /** Hostname and `Name` tag: headnode, worker-1 … */
    name: string;
    /** The EC2 instance. */
    instance: aws.ec2.Instance;
    /** Keeps the instance running: `pulumi up` starts it again after an autostop, a manual stop or a spot stop. */
    running: aws.ec2transitgateway.InstanceState;
    /** The public IP the instance has now, read once it runs: a stop and start gives it a new one. */
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

/** The head node and the worker nodes, identical but for their instance type and name. */
export class RayNodes extends pulumi.ComponentResource {
    public readonly head: RayNode;
    public readonly workers: RayNode[];

    constructor(name: string, args: RayNodesArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:nodes:RayNodes", name, {}, opts);

        const lookedUp = args.amiId === "";
        const ami = lookedUp
            ? aws.ec2.getAmiOutput({
                owners: [CANONICAL_OWNER_ID],
                mostRecent: true,
                filters: [
                    { name: "name", values: [UBUNTU_2404_AMD64_NAME] },
                    { name: "architecture", values: ["x86_64"] },
                    { name: "virtualization-type", values: ["hvm"] },
                    { name: "root-device-type", values: ["ebs"] },
                ],
            }, { parent: this }).id
            : pulumi.output(args.amiId);

        const node = (nodeName: string, instanceType: string, spot: boolean): RayNode => {
            const instance = new aws.ec2.Instance(`${name}-${nodeName}`, {
                ami,
                instanceType,
                instanceMarketOptions: spot ? SPOT_MARKET_OPTIONS : undefined,
                subnetId: args.subnetId,
                vpcSecurityGroupIds: [args.securityGroupId],
                keyName: args.keyName,
                iamInstanceProfile: args.instanceProfileName,
                userData: NODE_USER_DATA,
                metadataOptions: {
                    httpEndpoint: "enabled",
                    httpTokens: "required",
                    // One hop keeps instance credentials out of reach of containers on the node.
                    httpPutResponseHopLimit: 1,
                },
                rootBlockDevice: {
                    volumeType: "gp3",
                    volumeSize: args.volumeSizeGb,
                    encrypted: true,
                    deleteOnTermination: true,
                },
                tags: { ...args.tags, Name: nodeName },
                volumeTags: { ...args.tags, Name: nodeName },
            }, {
                parent: this,
                dependsOn: args.bootDependencies,
                // Canonical publishes new images often; a looked-up AMI must not replace running nodes on the
                // next `pulumi up`. An AMI the user pins is a deliberate choice and does replace them.
                ignoreChanges: lookedUp ? ["ami"] : [],
            });
            // With `refresh: always` (Pulumi.yaml), a stopped instance shows up as stopped and this starts it. EC2
            // refuses to start a spot worker that it stopped itself until capacity returns; `pulumi up` then says so.
            const running = new aws.ec2transitgateway.InstanceState(`${name}-${nodeName}-running`, {
                instanceId: instance.id,
                state: "running",
            }, { parent: this });
            // Read after the instance runs: the instance's own publicIp is empty once a refresh saw it stopped.
            const current = aws.ec2.getInstanceOutput({ instanceId: running.instanceId }, { parent: this });
            return { name: nodeName, instance, running, publicIp: current.publicIp, privateIp: current.privateIp };
        };

        this.head = node(HEAD_NODE_NAME, args.headInstanceType, false);
        this.workers = Array.from({ length: args.workerCount },
            (_, i) => node(workerNodeName(i + 1), args.workerInstanceType, args.workerSpot));

        this.registerOutputs({
            headInstanceId: this.head.instance.id,
            workerInstanceIds: this.workers.map((worker) => worker.instance.id),
        });
    }
}
