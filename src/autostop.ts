import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { RayNode } from "./nodes";
import { commandTimeouts, nodeConnection, SshAccess } from "./ray";
import { scriptCommand } from "./scripts";

/** Inputs of autostop: the head stops the whole stack when the cluster has been idle long enough. */
export interface AutostopArgs extends SshAccess {
    /** Minutes of continuous idleness before the stack stops (at least 1). */
    idleMinutes: number;
    /** Pulumi project; with the stack, the tags that name this stack's instances. */
    project: string;
    /** Pulumi stack. */
    stack: string;
    /** The nodes' role, which gets the tag-scoped stop grant. */
    role: aws.iam.Role;
    /** The head node, where the timer runs. */
    head: RayNode;
    /** The head's GCS address (ip:port), which the idle check asks. */
    gcsAddress: pulumi.Input<string>;
    /** The head's dashboard URL, for the job list. */
    dashboardUrl: pulumi.Input<string>;
    /** The head's Ray install: autostop runs from its venv. */
    rayInstall: pulumi.Resource;
    /** Python package installer on the nodes. */
    pythonInstaller: "uv" | "pip";
    /** Package index replacing PyPI; empty for PyPI. */
    packageIndexUrl: string;
}

/** The EC2 actions autostop needs: finding this stack's instances, and stopping them. */
export const AUTOSTOP_DESCRIBE_ACTIONS = ["ec2:DescribeInstances"];
export const AUTOSTOP_STOP_ACTIONS = ["ec2:StopInstances"];

/** The condition that confines a grant to instances tagged as this stack's, whatever else the account runs. */
export function stackTagCondition(project: string, stack: string): Record<string, Record<string, string>> {
    return {
        StringEquals: {
            "aws:ResourceTag/ray-cluster:project": project,
            "aws:ResourceTag/ray-cluster:stack": stack,
        },
    };
}

/**
 * Autostop: a timer on the head judges every minute whether the cluster is idle (no Ray job, task, actor or
 * pending demand, no SSH session on the head) and, after `idleMinutes` of it, stops this stack's instances through
 * EC2, workers first and the head last. `pulumi up` starts them again (the nodes' instance-state resources).
 */
export class Autostop extends pulumi.ComponentResource {
    public readonly policy: aws.iam.RolePolicy;
    public readonly install: command.remote.Command;

    constructor(name: string, args: AutostopArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:autostop:Autostop", name, {}, opts);

        const partition = aws.getPartitionOutput({}, { parent: this }).partition;
        const region = args.head.running.region;
        this.policy = new aws.iam.RolePolicy(`${name}-autostop`, {
            role: args.role.id,
            policy: pulumi.all([partition, region]).apply(([p, r]) => JSON.stringify({
                Version: "2012-10-17",
                Statement: [
                    // DescribeInstances has no resource-level permissions: AWS accepts only "*" here.
                    { Sid: "FindInstances", Effect: "Allow", Action: AUTOSTOP_DESCRIBE_ACTIONS, Resource: "*" },
                    {
                        Sid: "StopThisStack",
                        Effect: "Allow",
                        Action: AUTOSTOP_STOP_ACTIONS,
                        Resource: `arn:${p}:ec2:${r}:*:instance/*`,
                        Condition: stackTagCondition(args.project, args.stack),
                    },
                ],
            })),
        }, { parent: this });

        const create = pulumi.all([args.head.instance.id, region, args.gcsAddress, args.dashboardUrl])
            .apply(([headId, r, gcs, dashboard]) => scriptCommand("install-autostop.sh", [
                "--idle-minutes", String(args.idleMinutes), "--region", r, "--project", args.project,
                "--stack", args.stack, "--head-instance-id", headId, "--gcs-address", gcs, "--dashboard-url", dashboard,
                "--installer", args.pythonInstaller,
                ...(args.packageIndexUrl !== "" ? ["--index-url", args.packageIndexUrl] : []),
            ]));
        this.install = new command.remote.Command(`${name}-${args.head.name}-autostop`, {
            connection: nodeConnection(args.head, args),
            create,
            delete: scriptCommand("remove-autostop.sh", []),
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            // Off the bootstrap's critical path: it needs only Ray's venv, and the policy before the first stop.
            dependsOn: [args.rayInstall, this.policy],
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A terminated head needs no clean-up, and a stopped one cannot be reached (see RayCluster).
            deletedWith: args.head.instance,
        });

        this.registerOutputs({ policyName: this.policy.name });
    }
}
