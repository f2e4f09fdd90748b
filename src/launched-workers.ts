import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { ELASTIC_TAG, RAY_CLUSTER_NAME_TAG } from "./autoscaler";
import { shellQuote } from "./scripts";

/** Inputs of the sweep of the instances Ray's autoscaler launched. */
export interface LaunchedWorkersArgs {
    /** AWS region of the stack; empty leaves it to the user's AWS configuration. */
    region: string;
    /** AWS profile of the stack (aws:profile); empty leaves it to the user's AWS configuration. */
    profile: string;
    /** The stack's tags, which every launched worker carries. */
    tags: Record<string, string>;
    /** Ray's cluster name, which Ray tags each launched worker with. */
    clusterName: string;
    /** Bound on the wait for the last instance to be terminated, in seconds. */
    timeoutSeconds: number;
    /** What the launched workers use, which must outlive them: subnets, security groups, the instance profile. */
    usedResources: pulumi.Resource[];
}

/**
 * The instances of this stack that Ray's autoscaler launched, outside Pulumi's state. Their sweep is this resource's
 * delete, which runs on the user's machine (scripts/terminate-launched.js), so a stopped or crashed head cannot
 * block it: it terminates every one of them by tag and waits until EC2 reports them gone. Being created before the
 * head (index.ts makes the head depend on it), it is deleted after the head, whose autoscaler can then launch
 * nothing more; and since it depends on what the workers use, that goes only after them.
 */
export class LaunchedWorkers extends pulumi.ComponentResource {
    public readonly sweep: command.local.Command;

    constructor(name: string, args: LaunchedWorkersArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:elastic:LaunchedWorkers", name, {}, opts);

        const tags = { ...args.tags, [RAY_CLUSTER_NAME_TAG]: args.clusterName, [ELASTIC_TAG]: "true" };
        const terminate = ["node", "scripts/terminate-launched.js", ...(args.region !== "" ? ["--region", args.region] : []),
            ...(args.profile !== "" ? ["--profile", args.profile] : []),
            ...Object.entries(tags).flatMap(([key, value]) => ["--tag", `${key}=${value}`]),
            "--timeout", String(args.timeoutSeconds)].map(shellQuote).join(" ");
        this.sweep = new command.local.Command(`${name}-launched-sweep`, {
            create: "true",
            delete: terminate,
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            dependsOn: args.usedResources,
            customTimeouts: { delete: `${args.timeoutSeconds + 60}s` },
        });

        this.registerOutputs({});
    }
}
