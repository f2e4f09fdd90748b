import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { RayNode } from "./nodes";
import { commandTimeouts, nodeConnection, SshAccess } from "./ray";
import { scriptCommand } from "./scripts";
import { BucketPurpose, BUCKET_PURPOSES } from "./storage";

/** Inputs of the environment every Ray process on every node gets. */
export interface JobEnvironmentArgs extends SshAccess {
    /** The nodes whose Ray processes get it: the head and every static worker. */
    nodes: RayNode[];
    /** The stack's region, where the buckets live. */
    region: pulumi.Input<string>;
    /** The pipeline's bucket names by purpose. */
    bucketNames: pulumi.Input<Record<BucketPurpose, string>>;
}

/** Where in the results bucket the head copies each ended job: `<prefix><submission id>/driver.log` and `job.json`. */
export const JOB_LOG_PREFIX = "ray-jobs/";
/** The file on every node that tells scripts the region, the buckets and where job logs go. */
export const STACK_FILE = "/etc/ray-cluster/stack.json";

/** The variable that names a bucket in every Ray process: RAY_CLUSTER_STAGING_DATA_BUCKET for stagingData, … */
export function bucketVariable(purpose: BucketPurpose): string {
    return `RAY_CLUSTER_${BUCKET_PURPOSES[purpose].toUpperCase().replace(/-/g, "_")}_BUCKET`;
}

/** What the nodes get: the KEY=VALUE lines of job.env, and stack.json for scripts. */
export function jobEnvironmentFiles(region: string, buckets: Record<BucketPurpose, string>): { env: string; stackJson: string } {
    const purposes = Object.keys(BUCKET_PURPOSES) as BucketPurpose[];
    const env = [
        // Both spellings: the AWS SDKs read AWS_REGION, boto3 and the AWS CLI also AWS_DEFAULT_REGION; either saves
        // pyarrow and Ray Data a region lookup that fails off AWS's own endpoints (arrow#14601).
        `AWS_REGION=${region}`,
        `AWS_DEFAULT_REGION=${region}`,
        ...purposes.map((purpose) => `${bucketVariable(purpose)}=${buckets[purpose]}`),
        `RAY_CLUSTER_JOB_LOGS=s3://${buckets.results}/${JOB_LOG_PREFIX}`,
        `RAY_CLUSTER_STACK_FILE=${STACK_FILE}`,
    ].join("\n");
    const stackJson = JSON.stringify({
        region,
        buckets,
        jobLogs: { bucket: buckets.results, prefix: JOB_LOG_PREFIX },
    }, null, 2);
    return { env, stackJson };
}

/**
 * The stack's region and bucket names in the environment of every Ray process on every node (tasks, actors and job
 * drivers inherit it from the node's Ray service), and in one small file for scripts, so that boto3, pyarrow and Ray
 * Data find the buckets and the region without a lookup. No credentials: those come from the instance role.
 */
export class JobEnvironment extends pulumi.ComponentResource {
    /** Each node's command, by node name: the node's Ray starts after it. */
    public readonly commands: Map<string, command.remote.Command>;

    constructor(name: string, args: JobEnvironmentArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:job-environment:JobEnvironment", name, {}, opts);

        const files = pulumi.all([args.region, args.bucketNames]).apply(([region, buckets]) => jobEnvironmentFiles(region, buckets));
        // The same text for every node: rendered once.
        const create = files.apply((f) => scriptCommand("install-job-env.sh", ["--env", f.env, "--stack-json", f.stackJson]));
        this.commands = new Map(args.nodes.map((node) => [node.name, new command.remote.Command(`${name}-${node.name}-job-env`, {
            connection: nodeConnection(node, args),
            create,
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A terminated node needs no clean-up, and a stopped one cannot be reached (see RayCluster).
            deletedWith: node.instance,
        })]));

        this.registerOutputs({ stackFile: STACK_FILE });
    }
}
