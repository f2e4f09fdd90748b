import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { ConnectVia } from "./config";
import { RayNode } from "./nodes";
import { scriptCommand } from "./scripts";
import { DASHBOARD_PORT, GCS_PORT } from "./security";

/** Inputs of the Ray bootstrap. */
export interface RayClusterArgs {
    /** The head node. */
    head: RayNode;
    /** The worker nodes. */
    workers: RayNode[];
    /** Whether SSH goes to the nodes' public or private addresses. */
    connectVia: ConnectVia;
    /** Login user on the nodes. */
    sshUser: string;
    /** OpenSSH private key authorised on the nodes. */
    privateKey: pulumi.Input<string>;
    /** Exact Ray release to install. */
    rayVersion: string;
    /** Python package installer on the nodes. */
    pythonInstaller: "uv" | "pip";
    /** Package index replacing PyPI; empty for PyPI. */
    packageIndexUrl: string;
    /** Bound on each wait, in seconds: SSH, cloud-init, the head's GCS, the cluster check. */
    timeoutSeconds: number;
}

/** Seconds SSH waits for one connection attempt; attempts repeat until the bootstrap's bound is spent. */
export const PER_DIAL_TIMEOUT_SECONDS = 15;
/** The longest pause of @pulumi/command's backoff between two dials (100 ms, growing by half, up to 5 s). */
export const DIAL_RETRY_CAP_SECONDS = 5;

/**
 * Installs Ray on every node over SSH and runs a token-authenticated cluster as systemd services, so every node
 * comes back by itself after a reboot, a stop and start, or a crash: installs run in parallel, then the head's
 * service starts, then the workers' services join it, then the head checks that every node is alive and listed.
 */
export class RayCluster extends pulumi.ComponentResource {
    public readonly authToken: pulumi.Output<string>;
    public readonly verify: command.remote.Command;
    /** The verified cluster state printed by the head. */
    public readonly status: pulumi.Output<unknown>;

    constructor(name: string, args: RayClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:ray:RayCluster", name, {}, opts);

        // One token for the whole cluster, kept only in state as a secret and in each node's ~/.ray/auth_token.
        const token = new random.RandomPassword(`${name}-auth-token`, { length: 48, special: false }, { parent: this });
        this.authToken = pulumi.secret(token.result);

        const headIp = args.head.instance.privateIp;
        const headAddress = pulumi.interpolate`${headIp}:${GCS_PORT}`;
        const timeout = String(args.timeoutSeconds);
        const stopRay = scriptCommand("stop-ray.sh", []);
        // The same install on every node: built once, not once per worker.
        const installRay = scriptCommand("install-ray.sh", [
            "--version", args.rayVersion, "--installer", args.pythonInstaller,
            ...(args.packageIndexUrl !== "" ? ["--index-url", args.packageIndexUrl] : []),
        ]);
        const commandTimeouts = { create: `${args.timeoutSeconds * 3}s`, update: `${args.timeoutSeconds * 3}s`,
            delete: `${args.timeoutSeconds}s` };

        // A booting node refuses SSH at once, and the provider waits at most DIAL_RETRY_CAP_SECONDS between dials:
        // this many dials wait out the whole bound even then. A dial that hangs is cut by PER_DIAL_TIMEOUT_SECONDS.
        const dialErrorLimit = Math.max(10, Math.ceil(args.timeoutSeconds / DIAL_RETRY_CAP_SECONDS));
        const connection = (node: RayNode): command.types.input.remote.ConnectionArgs => ({
            host: args.connectVia === "public" ? node.instance.publicIp : node.instance.privateIp,
            user: args.sshUser,
            privateKey: args.privateKey,
            perDialTimeout: PER_DIAL_TIMEOUT_SECONDS,
            dialErrorLimit,
        });

        const run = (
            resourceName: string,
            node: RayNode,
            create: pulumi.Input<string>,
            extra: Partial<command.remote.CommandArgs>,
            dependsOn: pulumi.Resource[],
            replaceFirst = false,
        ) => new command.remote.Command(resourceName, {
            connection: connection(node),
            create,
            addPreviousOutputInEnv: false,
            ...extra,
        }, {
            parent: this,
            dependsOn,
            customTimeouts: commandTimeouts,
            // A replaced start must stop the old Ray before the new one starts, never after it.
            deleteBeforeReplace: replaceFirst,
        });

        const prepareAndInstall = (node: RayNode) => {
            const prefix = `${name}-${node.name}`;
            const isHead = node === args.head;
            const prepare = run(`${prefix}-prepare`, node,
                pulumi.all([node.instance.privateIp, headIp]).apply(([ip, head]) => scriptCommand("prepare-node.sh", [
                    "--hostname", node.name, "--ip", ip, ...(isHead ? [] : ["--head", head]), "--timeout", timeout,
                ])), {}, []);
            const install = run(`${prefix}-install`, node, installRay, {}, [prepare]);
            return { prefix, install };
        };

        // Every install starts at once; only the starts below are ordered.
        const headSteps = prepareAndInstall(args.head);
        const workerSteps = args.workers.map(prepareAndInstall);

        const headStart = run(`${headSteps.prefix}-start`, args.head,
            headIp.apply((ip) => scriptCommand("start-head.sh", [
                "--version", args.rayVersion, "--node-ip", ip,
                "--port", String(GCS_PORT), "--dashboard-port", String(DASHBOARD_PORT), "--timeout", timeout,
            ])),
            { stdin: this.authToken, delete: stopRay },
            [headSteps.install], true);

        const workerStarts = args.workers.map((worker, i) => run(`${workerSteps[i].prefix}-start`, worker,
            pulumi.all([worker.instance.privateIp, headAddress]).apply(([ip, address]) => scriptCommand(
                "start-worker.sh",
                ["--version", args.rayVersion, "--node-ip", ip, "--address", address, "--timeout", timeout],
            )),
            // A new head instance is a new cluster: every worker must leave the old one and join it.
            { stdin: this.authToken, delete: stopRay, triggers: [args.head.instance.id] },
            [workerSteps[i].install, headStart], true));

        const expected = pulumi.all([args.head, ...args.workers].map((node) =>
            node.instance.privateIp.apply((ip) => `${node.name}=${ip}`)));
        this.verify = run(`${name}-verify`, args.head,
            pulumi.all([headAddress, expected]).apply(([address, nodes]) => scriptCommand("verify-cluster.sh", [
                "--address", address, "--timeout", timeout, ...nodes.flatMap((node) => ["--expect", node]),
            ])),
            // Re-check whenever any node's Ray was (re)started.
            { triggers: [headStart.id, ...workerStarts.map((start) => start.id)] },
            [headStart, ...workerStarts]);
        this.status = this.verify.stdout.apply((stdout) => JSON.parse(lastLine(stdout)) as unknown);

        this.registerOutputs({ status: this.status });
    }
}

function lastLine(text: string): string {
    const lines = text.trim().split("\n");
    return lines[lines.length - 1];
}
