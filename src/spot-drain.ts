import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { RayNode } from "./nodes";
import { commandTimeouts, nodeConnection, SshAccess } from "./ray";
import { scriptCommand } from "./scripts";

/** Inputs of the spot drain on the fixed spot groups' nodes. */
export interface SpotDrainArgs extends SshAccess {
    /** The nodes of spot groups. */
    nodes: RayNode[];
    /** Each node's Ray start, which the watch shares its settings with. */
    starts: Map<string, pulumi.Resource>;
}

/**
 * Spot nodes that tell Ray before EC2 takes them: ray-spot-watch.service on each node of a fixed spot group polls the
 * instance metadata (IMDSv2) and drains the node in Ray (`ray drain-node`, reason preemption, the notice's time as the
 * deadline) on a spot interruption notice or a rebalance recommendation. Elastic spot groups get the same through
 * their setup (join-cluster.sh --spot).
 */
export class SpotDrain extends pulumi.ComponentResource {
    /** The install on each node, by node name. */
    public readonly installs: Map<string, command.remote.Command>;

    constructor(name: string, args: SpotDrainArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:spot-drain:SpotDrain", name, {}, opts);

        this.installs = new Map(args.nodes.map((node) => [node.name, new command.remote.Command(`${name}-${node.name}-spot-watch`, {
            connection: nodeConnection(node, args),
            create: scriptCommand("install-spot-watch.sh", []),
            delete: scriptCommand("remove-spot-watch.sh", []),
            addPreviousOutputInEnv: false,
        }, {
            parent: this,
            dependsOn: [args.starts.get(node.name)!],
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A terminated node needs no clean-up, and a stopped one cannot be reached (see RayCluster).
            deletedWith: node.instance,
        })]));

        this.registerOutputs({});
    }
}
