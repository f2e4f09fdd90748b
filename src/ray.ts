import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { ConnectVia } from "./config";
import { RayNode } from "./nodes";
import { GROUP_LABEL } from "./groups";
import { scriptCommand } from "./scripts";
import { DASHBOARD_PORT, GCS_PORT } from "./security";

/** Inputs of the Ray bootstrap. */
export interface RayClusterArgs extends SshAccess {
    /** The head node. */
    head: RayNode;
    /** The worker nodes. */
    workers: RayNode[];
    /** Exact Ray release to install. */
    rayVersion: string;
    /** Python package installer on the nodes. */
    pythonInstaller: "uv" | "pip";
    /** Package index replacing PyPI; empty for PyPI. */
    packageIndexUrl: string;
    /** Whether Ray may schedule work on the head; false gives the head no CPUs to offer. */
    headSchedulable: boolean;
    /** The elastic groups, whose bounds and current node count the status reports. */
    elasticGroups: Array<{ name: string; minCount: number; maxCount: number }>;
    /** What else must be on a node before its Ray starts, such as the environment its processes inherit. */
    startAfter?: (node: RayNode) => pulumi.Resource[];
}

/** Seconds SSH waits for one connection attempt; attempts repeat until the bootstrap's bound is spent. */
export const PER_DIAL_TIMEOUT_SECONDS = 15;
/** The longest pause of @pulumi/command's backoff between two dials (100 ms, growing by half, up to 5 s). */
export const DIAL_RETRY_CAP_SECONDS = 5;

/** How the bootstrap reaches nodes over SSH. */
export interface SshAccess {
    /** Whether SSH goes to the nodes' public or private addresses. */
    connectVia: ConnectVia;
    /** Login user on the nodes. */
    sshUser: string;
    /** OpenSSH private key authorised on the nodes. */
    privateKey: pulumi.Input<string>;
    /** Bound on each wait, in seconds, SSH's own included. */
    timeoutSeconds: number;
    /** The node every other node is reached through (the head, with private workers); undefined dials each directly. */
    jumpHost?: RayNode;
}

/** How SSH reaches a node: the address it dials, and the node it goes through first, if any. */
export function sshRoute(node: RayNode, access: Pick<SshAccess, "connectVia" | "jumpHost">): { host: pulumi.Output<string>; via?: RayNode } {
    if (access.jumpHost === undefined || node === access.jumpHost) {
        return { host: access.connectVia === "public" ? node.publicIp : node.privateIp };
    }
    // A private worker has no public address and admits SSH from cluster members only: it is dialled by its
    // private address from the jump host.
    return { host: node.privateIp, via: access.jumpHost };
}

/** An SSH connection to a host that may still be booting, waiting for it across the whole bound. */
export function sshConnection(host: pulumi.Input<string>, access: Pick<SshAccess, "sshUser" | "privateKey" | "timeoutSeconds">):
    command.types.input.remote.ConnectionArgs {
    // A booting node refuses SSH at once, and the provider waits at most DIAL_RETRY_CAP_SECONDS between dials:
    // this many dials wait out the whole bound even then. A dial that hangs is cut by PER_DIAL_TIMEOUT_SECONDS.
    return {
        host,
        user: access.sshUser,
        privateKey: access.privateKey,
        perDialTimeout: PER_DIAL_TIMEOUT_SECONDS,
        dialErrorLimit: Math.max(10, Math.ceil(access.timeoutSeconds / DIAL_RETRY_CAP_SECONDS)),
    };
}

/** The SSH connection to a node, waiting for it across the whole bound while it boots. */
export function nodeConnection(node: RayNode, access: SshAccess): command.types.input.remote.ConnectionArgs {
    const route = sshRoute(node, access);
    // Through a jump host the provider dials it first, then the node from there.
    return route.via
        ? { ...sshConnection(route.host, access), proxy: sshConnection(sshRoute(route.via, access).host, access) }
        : sshConnection(route.host, access);
}

/** Custom timeouts of a node command: a create may wait out several bounds; a delete, one. */
export function commandTimeouts(timeoutSeconds: number): pulumi.CustomTimeouts {
    return { create: `${timeoutSeconds * 3}s`, update: `${timeoutSeconds * 3}s`, delete: `${timeoutSeconds}s` };
}

/**
 * Installs Ray on every node over SSH and runs a token-authenticated cluster as systemd services, so every node
 * comes back by itself after a reboot, a stop and start, or a crash: installs run in parallel, then the head's
 * service starts, then the workers' services join it, then the head checks that every node is alive and listed.
 */
export class RayCluster extends pulumi.ComponentResource {
    public readonly authToken: pulumi.Output<string>;
    public readonly verify: command.remote.Command;
    /** The head's Ray install: what runs on the head from Ray's venv waits for it. */
    public readonly headInstall: command.remote.Command;
    /** The head's Ray services, autoscaler included: what configures them waits for it. */
    public readonly headStart: command.remote.Command;
    /** The verified cluster state printed by the head. */
    public readonly status: pulumi.Output<unknown>;
    /** Each worker's Ray start, by node name: what runs beside a worker's Ray waits for it. */
    public readonly workerStarts: Map<string, command.remote.Command>;

    constructor(name: string, args: RayClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:ray:RayCluster", name, {}, opts);

        // One token for the whole cluster, kept only in state as a secret and in each node's ~/.ray/auth_token.
        const token = new random.RandomPassword(`${name}-auth-token`, { length: 48, special: false }, { parent: this });
        this.authToken = pulumi.secret(token.result);

        const headIp = args.head.privateIp;
        const headAddress = pulumi.interpolate`${headIp}:${GCS_PORT}`;
        const timeout = String(args.timeoutSeconds);
        const stopRay = scriptCommand("stop-ray.sh", []);
        // The same install on every node: built once, not once per worker.
        const installRay = scriptCommand("install-ray.sh", [
            "--version", args.rayVersion, "--installer", args.pythonInstaller,
            ...(args.packageIndexUrl !== "" ? ["--index-url", args.packageIndexUrl] : []),
        ]);

        const run = (
            resourceName: string,
            node: RayNode,
            create: pulumi.Input<string>,
            extra: Partial<command.remote.CommandArgs>,
            dependsOn: pulumi.Resource[],
            replaceFirst = false,
        ) => new command.remote.Command(resourceName, {
            connection: nodeConnection(node, args),
            create,
            addPreviousOutputInEnv: false,
            ...extra,
        }, {
            parent: this,
            dependsOn,
            customTimeouts: commandTimeouts(args.timeoutSeconds),
            // A replaced start must stop the old Ray before the new one starts, never after it.
            deleteBeforeReplace: replaceFirst,
            // A node that is being terminated needs no clean-up, and may be stopped and unreachable: `pulumi
            // destroy` of a stopped cluster must not wait for SSH that never comes. Deletes still run when the
            // command goes but the instance stays (a replaced start, bootstrapRay turned off).
            deletedWith: node.instance,
        });

        const prepareAndInstall = (node: RayNode) => {
            const prefix = `${name}-${node.name}`;
            const isHead = node === args.head;
            const prepare = run(`${prefix}-prepare`, node,
                pulumi.all([node.privateIp, headIp]).apply(([ip, head]) => scriptCommand("prepare-node.sh", [
                    "--hostname", node.name, "--ip", ip, ...(isHead ? [] : ["--head", head]), "--timeout", timeout,
                ])), {}, []);
            const install = run(`${prefix}-install`, node, installRay, {}, [prepare]);
            return { prefix, install };
        };

        // Every install starts at once; only the starts below are ordered.
        const headSteps = prepareAndInstall(args.head);
        this.headInstall = headSteps.install;
        const workerSteps = args.workers.map(prepareAndInstall);

        const headStart = this.headStart = run(`${headSteps.prefix}-start`, args.head,
            headIp.apply((ip) => scriptCommand("start-head.sh", [
                "--version", args.rayVersion, "--node-ip", ip,
                "--port", String(GCS_PORT), "--dashboard-port", String(DASHBOARD_PORT), "--timeout", timeout,
                "--labels", `${GROUP_LABEL}=${args.head.group}`,
                // Ray's advice for large clusters: no tasks or actors on the head, which runs the GCS and dashboard.
                ...(args.headSchedulable ? [] : ["--num-cpus", "0"]),
            ])),
            { stdin: this.authToken, delete: stopRay },
            [headSteps.install, ...(args.startAfter?.(args.head) ?? [])], true);

        const workerStarts = args.workers.map((worker, i) => run(`${workerSteps[i].prefix}-start`, worker,
            pulumi.all([worker.privateIp, headAddress]).apply(([ip, address]) => scriptCommand(
                "start-worker.sh",
                ["--version", args.rayVersion, "--node-ip", ip, "--address", address, "--timeout", timeout,
                    "--labels", `${GROUP_LABEL}=${worker.group}`,
                    ...(worker.gpus !== undefined ? ["--num-gpus", String(worker.gpus)] : [])],
            )),
            // A new head instance is a new cluster: every worker must leave the old one and join it.
            { stdin: this.authToken, delete: stopRay, triggers: [args.head.instance.id] },
            [workerSteps[i].install, headStart, ...(args.startAfter?.(worker) ?? [])], true));

        this.workerStarts = new Map(args.workers.map((worker, i) => [worker.name, workerStarts[i]]));
        const expected = pulumi.all([args.head, ...args.workers].map((node) =>
            node.privateIp.apply((ip) => `${node.name}=${ip}`)));
        this.verify = run(`${name}-verify`, args.head,
            pulumi.all([headAddress, expected]).apply(([address, nodes]) => scriptCommand("verify-cluster.sh", [
                "--address", address, "--timeout", timeout, ...nodes.flatMap((node) => ["--expect", node]),
                ...args.elasticGroups.flatMap((group) => ["--count-group", group.name]),
            ])),
            // Re-check whenever any node's Ray was (re)started.
            { triggers: [headStart.id, ...workerStarts.map((start) => start.id)] },
            [headStart, ...workerStarts]);
        const groupOf = new Map([args.head, ...args.workers].map((node) => [node.name, node.group]));
        this.status = this.verify.stdout.apply((stdout) => withGroups(JSON.parse(lastLine(stdout)), groupOf, args.elasticGroups));

        this.registerOutputs({ status: this.status });
    }
}

/**
 * The verified status with its nodes counted per group: how many each fixed group expects and how many are alive, and
 * each elastic group's bounds and how many nodes it has now.
 */
function withGroups(status: { nodes?: Array<{ name: string; alive: boolean }>; elasticNodes?: Record<string, number> },
    groupOf: Map<string, string>, elasticGroups: RayClusterArgs["elasticGroups"]): unknown {
    const { elasticNodes, ...verified } = status;
    const groups: Record<string, { expected: number; alive: number; nodes: string[] } | { minCount: number; maxCount: number; current: number }> =
        Object.fromEntries(elasticGroups.map((g) => [g.name, { minCount: g.minCount, maxCount: g.maxCount, current: elasticNodes?.[g.name] ?? 0 }]));
    for (const node of status.nodes ?? []) {
        const group = (groups[groupOf.get(node.name) ?? "unknown"] ??= { expected: 0, alive: 0, nodes: [] }) as
            { expected: number; alive: number; nodes: string[] };
        group.expected += 1;
        group.alive += node.alive ? 1 : 0;
        group.nodes.push(node.name);
    }
    return { ...verified, groups };
}

function lastLine(text: string): string {
    const lines = text.trim().split("\n");
    return lines[lines.length - 1];
}
