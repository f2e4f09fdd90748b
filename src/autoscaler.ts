/**
 * The config of Ray's autoscaler on the head (Ray's own monitor with its AWS node provider), rendered by the stack
 * from what it built: one node type per elastic group, launched into the stack's worker subnet with its security
 * groups, instance profile, key pair and image, an encrypted gp3 root volume, IMDSv2 and the stack's tags. Nothing
 * is left to `ray up`'s bootstrap_aws, which never runs on the head: no default VPC, role, key or group lookups.
 */
import { GROUP_LABEL, WorkerGroup } from "./groups";
import { shellQuote } from "./scripts";

/** The head's node type: Ray requires one, and matches the head instance by the tags below. */
export const HEAD_NODE_TYPE = "ray.head";
/** Tags by which Ray's AWS node provider knows the head of a cluster (its TAG_RAY_* constants). */
export const RAY_CLUSTER_NAME_TAG = "ray-cluster-name";
export const rayHeadTags = (clusterName: string): Record<string, string> => ({
    [RAY_CLUSTER_NAME_TAG]: clusterName,
    "ray-node-type": "head",
    "ray-user-node-type": HEAD_NODE_TYPE,
    // Ray counts a node only once it has a status; the stack's head is set up by the stack, never by Ray.
    "ray-node-status": "up-to-date",
});
/** The tag every launched worker carries, and which the head's grants require: Pulumi's own nodes never have it. */
export const ELASTIC_TAG = "ray-cluster:elastic";
/** Where the head keeps what it syncs to each launched worker (install-autoscaler.sh), and its login key for them. */
export const ELASTIC_FILES_DIR = "~/.ray-cluster/elastic";
export const AUTOSCALER_KEY_PATH = "~/.ray-cluster/autoscaler-key";

/** What EC2 says of an elastic group's instance type and image. */
export interface ElasticNodeType {
    /** The elastic group. */
    group: WorkerGroup;
    /** AMI its nodes boot. */
    imageId: string;
    /** The AMI's root device, which the encrypted gp3 volume replaces. */
    rootDeviceName: string;
    /** vCPUs of the instance type: Ray's CPU resource. */
    vcpus: number;
    /** NVIDIA GPUs of the instance type: Ray's GPU resource, unless the group sets gpus. */
    gpus: number;
}

/** Everything the rendered config names. */
export interface AutoscalerSettings {
    /** Ray's cluster name; Ray tags each node it launches with it. */
    clusterName: string;
    region: string;
    /** Minutes before Ray terminates an idle elastic node. */
    idleMinutes: number;
    /** Login user on the nodes, which the head's autoscaler uses over SSH. */
    sshUser: string;
    /** EC2 key pair of the stack, so users reach launched workers with their own key. */
    keyName: string;
    /**
     * The worker subnets (public or private) the nodes launch into, the head zone's first: Ray's AWS node provider
     * tries the next when EC2 refuses a launch.
     */
    subnetIds: string[];
    /** The workers' security groups. */
    securityGroupIds: string[];
    /** The workers' instance profile: the node role, never the head's. */
    instanceProfileArn: string;
    /** Whether workers are private: launched without a public IP whatever the subnet says. */
    privateWorkers: boolean;
    /** The stack's tags, which every launched instance and volume carries. */
    tags: Record<string, string>;
    /** User data of a launched worker (it names the head's public key and nothing secret). */
    userData: string;
    /** Ray release, installer and package index of the stack's install. */
    rayVersion: string;
    pythonInstaller: string;
    packageIndexUrl: string;
    /** Bound on each wait of the bootstrap, also on each launched worker's. */
    timeoutSeconds: number;
    /** The head's GCS port. */
    gcsPort: number;
    /** The elastic groups, with EC2's facts about each. */
    types: ElasticNodeType[];
}

/** Instance tags of a launched worker of the group: the stack's, its group, and the elastic mark. */
export const elasticTags = (tags: Record<string, string>, group: string): Record<string, string> =>
    ({ ...tags, Name: `${group}-elastic`, "ray-cluster:group": group, [ELASTIC_TAG]: "true" });

/**
 * The command the head's autoscaler runs on each launched worker of a group, from the files it synced there. The
 * worker offers Ray exactly the resources the autoscaler planned it with.
 */
export function joinCommand(s: AutoscalerSettings, type: ElasticNodeType): string {
    const planned = resources(type);
    const words = ["bash", `${ELASTIC_FILES_DIR}/join-cluster.sh`, "--group", type.group.name, "--version", s.rayVersion,
        "--port", String(s.gcsPort), "--installer", s.pythonInstaller, "--timeout", String(s.timeoutSeconds),
        ...(s.packageIndexUrl !== "" ? ["--index-url", s.packageIndexUrl] : []),
        "--num-cpus", String(planned.CPU), ...(planned.GPU !== undefined ? ["--num-gpus", String(planned.GPU)] : []),
        // A spot node drains itself in Ray when EC2 announces its interruption (install-spot-watch.sh).
        ...(type.group.spot ? ["--spot"] : [])];
    // The home-relative path must stay unquoted for the worker's shell to expand it.
    return words.map((w, i) => (i === 1 ? w : shellQuote(w))).join(" ");
}

const tagList = (tags: Record<string, string>) => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));

/** The node_config Ray passes to ec2.create_instances for a group's nodes. */
function nodeConfig(s: AutoscalerSettings, type: ElasticNodeType): Record<string, unknown> {
    const tags = tagList(elasticTags(s.tags, type.group.name));
    // Ray adds its cluster-name tag to the instance's tags only; the head may launch only volumes that carry it too.
    const volumeTags = tagList({ ...elasticTags(s.tags, type.group.name), [RAY_CLUSTER_NAME_TAG]: s.clusterName });
    // An interface of our own keeps a private worker without a public IP even in a subnet that maps them. Ray's
    // provider never moves an interface to another subnet, so with several zones it names subnets instead. Those give
    // no public IP either way: the stack's own private subnets are created so (src/private-network.ts, src/zones.ts),
    // and in your own VPC privateSubnetId and elasticSubnetIds are checked for it before any resource
    // (src/existing-network.ts).
    const network = s.privateWorkers && s.subnetIds.length === 1
        ? { NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: s.subnetIds[0], Groups: s.securityGroupIds, AssociatePublicIpAddress: false,
            DeleteOnTermination: true }] }
        : { SecurityGroupIds: s.securityGroupIds };
    return {
        InstanceType: type.group.instanceType,
        ImageId: type.imageId,
        // A list: Ray ignores a singular SubnetId (ray#14551).
        SubnetIds: s.subnetIds,
        ...network,
        KeyName: s.keyName,
        IamInstanceProfile: { Arn: s.instanceProfileArn },
        UserData: s.userData,
        MetadataOptions: { HttpEndpoint: "enabled", HttpTokens: "required", HttpPutResponseHopLimit: 1 },
        BlockDeviceMappings: [{ DeviceName: type.rootDeviceName,
            Ebs: { VolumeSize: type.group.volumeSizeGb, VolumeType: "gp3", Encrypted: true, DeleteOnTermination: true } }],
        // A node that shuts itself down is gone, not stopped and forgotten.
        InstanceInitiatedShutdownBehavior: "terminate",
        TagSpecifications: [{ ResourceType: "instance", Tags: tags }, { ResourceType: "volume", Tags: volumeTags },
            // A spot launch is also authorized on the spot request it creates, which carries the volume's tags (src/elastic.ts).
            ...(type.group.spot ? [{ ResourceType: "spot-instances-request", Tags: volumeTags }] : [])],
        ...(type.group.spot
            // One-time and terminated when reclaimed: the autoscaler launches another when demand is still there.
            ? { InstanceMarketOptions: { MarketType: "spot", SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" } } }
            : {}),
    };
}

/** Ray's resources of a group's node, set explicitly: only `ray up` asks EC2 for them. */
function resources(type: ElasticNodeType): Record<string, number> {
    const gpus = type.group.gpus ?? type.gpus;
    return { CPU: type.vcpus, ...(gpus > 0 ? { GPU: gpus } : {}) };
}

/** The autoscaler's config: every top-level key Ray reads, so that its defaults add nothing that looks up AWS. */
export function autoscalerConfig(s: AutoscalerSettings): Record<string, unknown> {
    const workerTypes = Object.fromEntries(s.types.map((type) => [type.group.name, {
        min_workers: type.group.elastic!.minCount,
        max_workers: type.group.elastic!.maxCount,
        resources: resources(type),
        labels: { [GROUP_LABEL]: type.group.name },
        node_config: nodeConfig(s, type),
        worker_setup_commands: [joinCommand(s, type)],
    }]));
    return {
        cluster_name: s.clusterName,
        max_workers: s.types.reduce((sum, type) => sum + type.group.elastic!.maxCount, 0),
        upscaling_speed: 1.0,
        idle_timeout_minutes: s.idleMinutes,
        provider: {
            type: "aws",
            region: s.region,
            // Idle workers are terminated: stopped ones would leak (ray#6207) and keep their volumes billed.
            cache_stopped_nodes: false,
            use_internal_ips: true,
        },
        auth: { ssh_user: s.sshUser, ssh_private_key: AUTOSCALER_KEY_PATH },
        available_node_types: {
            // The head is the stack's own instance, never launched by Ray.
            [HEAD_NODE_TYPE]: { min_workers: 0, max_workers: 0, resources: {}, node_config: {} },
            ...workerTypes,
        },
        head_node_type: HEAD_NODE_TYPE,
        file_mounts: { [ELASTIC_FILES_DIR]: ELASTIC_FILES_DIR },
        cluster_synced_files: [],
        file_mounts_sync_continuously: false,
        rsync_exclude: [],
        rsync_filter: [],
        initialization_commands: [],
        setup_commands: [],
        head_setup_commands: [],
        worker_setup_commands: [],
        head_start_ray_commands: [],
        // join-cluster.sh starts Ray as ray-worker.service, which systemd keeps running.
        worker_start_ray_commands: [],
    };
}
