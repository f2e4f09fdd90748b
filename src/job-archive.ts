import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { RayNode } from "./nodes";
import { commandTimeouts, nodeConnection, SshAccess } from "./ray";
import { scriptCommand } from "./scripts";

/** Inputs of the job archive on the head. */
export interface JobArchiveArgs extends SshAccess {
    /** The head node, where the archive runs. */
    head: RayNode;
    /** The head's dashboard URL, where the archive lists jobs and reads their logs. */
    dashboardUrl: pulumi.Input<string>;
    /** The head's GCS address (ip:port), which the archive asks for the nodes a job ran on. */
    gcsAddress: pulumi.Input<string>;
    /** What the archive needs on the head first: Ray's venv, and the stack file that names the results bucket. */
    after: pulumi.Resource[];
    /** Python package installer on the nodes. */
    pythonInstaller: "uv" | "pip";
    /** Package index replacing PyPI; empty for PyPI. */
    packageIndexUrl: string;
}

/**
 * Job logs that outlive the cluster: ray-job-archive.service on the head copies each job that ends (its driver log
 * and a JSON record) to the results bucket, and autostop runs the same copy before it stops the stack.
 */
export class JobArchive extends pulumi.ComponentResource {
    public readonly install: command.remote.Command;

    constructor(name: string, args: JobArchiveArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:job-archive:JobArchive", name, {}, opts);

        const create = pulumi.all([args.dashboardUrl, args.gcsAddress]).apply(([dashboard, gcs]) => scriptCommand(
            "install-job-archive.sh", ["--dashboard-url", dashboard, "--gcs-address", gcs, "--installer", args.pythonInstaller,
                ...(args.packageIndexUrl !== "" ? ["--index-url", args.packageIndexUrl] : [])]));
        this.install = new command.remote.Command(`${name}-${args.head.name}-job-archive`, {
            connection: nodeConnection(args.head, args),
            create,
            // Turned off with the head still there: one last copy, then the service goes.
            delete: scriptCommand("remove-job-archive.sh", []),
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            // Off the bootstrap's critical path: it needs Ray's venv and the stack file, not a running cluster.
            dependsOn: args.after,
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A terminated head needs no clean-up, and a stopped one cannot be reached (see RayCluster).
            deletedWith: args.head.instance,
        });

        this.registerOutputs({ install: this.install.id });
    }
}
