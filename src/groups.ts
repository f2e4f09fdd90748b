/**
 * Worker groups: named sets of identical workers (instance type, count, disk, image, market), such as cheap CPU
 * workers for data loading next to GPU workers for training. The default group, `worker`, comes from workerCount
 * and workerInstanceType; `workerGroups` adds more.
 */

/** One group of identical workers, fully defaulted. */
export interface WorkerGroup {
    /** Group name; its nodes are <name>-1 … <name>-N, and carry it as their Ray label and `ray-cluster:group` tag. */
    name: string;
    /** EC2 instance type of every node of the group. */
    instanceType: string;
    /** Number of nodes the stack itself creates: 0 for an elastic group, whose nodes Ray's autoscaler launches. */
    count: number;
    /** The bounds Ray's autoscaler keeps an elastic group within; undefined for a fixed group. */
    elastic?: { minCount: number; maxCount: number };
    /** Encrypted gp3 root volume of each node, in GB. */
    volumeSizeGb: number;
    /** AMI to boot; empty looks up the default image (Ubuntu, or the Deep Learning Base AMI for NVIDIA GPUs). */
    amiId: string;
    /** Whether the nodes run on the spot market. */
    spot: boolean;
    /** Whether the instance type carries NVIDIA GPUs. */
    gpu: boolean;
    /** GPUs Ray is told each node has; undefined lets Ray detect them, as it does on GPU instances. */
    gpus?: number;
}

/** The name of the default group, made of workerCount × workerInstanceType. */
export const DEFAULT_GROUP = "worker";
/** The head's label value: the head is no worker group, but jobs may still select it. */
export const HEAD_GROUP = "headnode";
/** The Ray node label that names a node's group; `ray.io/` is Ray's own prefix, so ours is `ray-cluster/`. */
export const GROUP_LABEL = "ray-cluster/group";

/**
 * Instance families with NVIDIA GPUs on x86_64, the architecture of the Deep Learning Base AMI this stack looks up
 * (g5g is ARM, g4ad is AMD).
 */
export const NVIDIA_GPU_FAMILIES = /^(g4dn|g5|g6|g6e|g6f|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-b200)\./;
/**
 * AWS's public SSM parameter with the current Deep Learning Base OSS NVIDIA Driver GPU AMI for Ubuntu 24.04 on
 * x86_64: AWS updates it with every release, so no AMI id is hard-coded and no name filter can match another image.
 */
export const DLAMI_SSM_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id";
/**
 * The Deep Learning Base AMI's root snapshot, in GB: EC2 refuses a smaller root volume for it. Checked at config
 * time for the looked-up image; EC2 itself checks a pinned amiId, or a future release with a larger snapshot.
 */
export const DLAMI_ROOT_SNAPSHOT_GB = 75;
/** Default root volume of a GPU group: room above the Deep Learning AMI's own root snapshot for CUDA libraries and models. */
export const GPU_DEFAULT_VOLUME_GB = 150;

/** The most nodes a group may have: its count, or an elastic group's maxCount. */
export const mostNodes = (group: Pick<WorkerGroup, "count" | "elastic">) => group.elastic?.maxCount ?? group.count;

export const isNvidiaGpuType = (instanceType: string) => NVIDIA_GPU_FAMILIES.test(instanceType);

/** Hostname of node `index` (1-based) of a group: worker-1 … worker-N for the default group. */
export const groupNodeName = (group: string, index: number) => `${group}-${index}`;
