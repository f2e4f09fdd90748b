/**
 * The EC2 API of the end-to-end test: moto's server (test/harness/ec2_emulator.py) inside the booted hosts' mirror
 * namespace, where the head's autostop and autoscaler reach it through AWS_ENDPOINT_URL. It records every call that
 * launches, starts, stops or terminates instances, so a test can read exactly what was asked for; `follow` makes
 * booted hosts do what those calls would do to EC2 instances. It authorizes every call when it is made, as AWS does:
 * against the rendered policies of the role whose session signed it (trustKey, loadStackIam; ec2-authorization.ts),
 * and refuses what AWS refuses, a launch of an image it does not hold included (registerImage).
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import type { RegisteredResource, Rendered } from "../../tools/render";
import { ApiCall, recordedApiCalls, stackIam, StackIam } from "./ec2-authorization";
import { SecurityGroupFirewall } from "./firewall";
import type { LaunchRequest } from "./machines";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const EMULATOR_PY = path.join(__dirname, "ec2_emulator.py");
const ROOT = path.join(__dirname, "..", "..");
/** The authorizer the emulator starts beside moto (ec2-authorizer.ts), as a command: pipes only, no network. */
const AUTHORIZER = ["env", "TS_NODE_TRANSPILE_ONLY=true", `TS_NODE_PROJECT=${path.join(ROOT, "tsconfig.json")}`, process.execPath,
    "--require", require.resolve("ts-node/register"), path.join(__dirname, "ec2-authorizer.ts")];
/** Canonical's account, which owns the public Ubuntu images. */
export const CANONICAL_OWNER = "099720109477";
/**
 * The Ubuntu image the stack's lookup finds (render's ubuntuImageId), as Canonical publishes it: what a node config
 * without a Ray-ready image launches, once registerImage gave it to the emulator.
 */
export const UBUNTU_IMAGE = { imageId: "ami-0c0ffee0123456789", ownerId: CANONICAL_OWNER, public: true,
    name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101" };
/** What a stack's IAM is made of, as loadStackIam reads it. */
const IAM_TYPES = new Set(["aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:iam/instanceProfile:InstanceProfile"]);
/** The venv tools/ec2-emulator.sh fills (npm test's pretest); RAY_CLUSTER_EC2_EMULATOR overrides it. */
export const EC2_EMULATOR_PYTHON = path.join(process.env.RAY_CLUSTER_EC2_EMULATOR ??
    path.join(__dirname, "..", "..", ".cache", "ec2-emulator"), "bin", "python");

/** One recorded call: when, which action, on which instances, in the order the caller listed them. */
export interface Ec2Call {
    at: number;
    action: "StartInstances" | "StopInstances" | "TerminateInstances" | "RunInstances";
    instanceIds?: string[];
    /**
     * RunInstances: the type asked for, what was launched, its user data, and the error if EC2 refused. Any action:
     * the error code if EC2 refused the call (UnauthorizedOperation, InvalidAMIID.NotFound, AuthFailure, …).
     */
    instanceType?: string;
    instances?: Array<{ id: string; privateIp: string }>;
    userData?: string;
    refused?: string;
    /** RunInstances: the rest of what the request named, which the launched host gets and nothing else. */
    imageId?: string | null;
    keyName?: string | null;
    /** The public key of the key pair keyName names, as EC2's metadata serves it; null when the request named none. */
    publicKey?: string | null;
    subnetId?: string | null;
    securityGroupIds?: string[];
    associatePublicIp?: string | null;
    iamInstanceProfileArn?: string | null;
    metadataOptions?: Record<string, string>;
    /** Each mapping's fields as the query named them: DeviceName, Ebs.VolumeSize, Ebs.Encrypted, … */
    blockDeviceMappings?: Array<Record<string, string>>;
    marketType?: string | null;
    tags?: Record<string, string>;
}

/** What `setup` made in the emulated account, by CIDR and name. */
export interface Ec2Setup {
    vpcId: string;
    subnets: Record<string, string>;
    securityGroups: Record<string, string>;
    instanceProfiles: Record<string, string>;
}

/** The test's name for each security group id setup made: the firewall's names, by the ids a request carries. */
export function groupNames(setup: Ec2Setup): Record<string, string> {
    return Object.fromEntries(Object.entries(setup.securityGroups).map(([name, id]) => [id, name]));
}

/** What the rig's IAM holds (ec2-iam.json, which the emulator reads on every call): sessions' keys, roles, profiles. */
interface RigIam extends StackIam {
    keys: Record<string, { role: string; session?: string }>;
}

export class Ec2Emulator {
    public endpoint = "";
    /** Instances the test itself registered (the stack's own nodes), which booted hosts stand for already. */
    readonly registered = new Set<string>();
    private readonly keyPairs = new Set<string>();
    private state = "";
    private loopback?: ChildProcess;

    /** Starts the emulator in the rig's mirror namespace; the rig's down() stops it with the namespace. */
    start(state: string): void {
        this.checkInstalled();
        this.state = state;
        execFileSync("bash", [MACHINES_SH, "ec2", state, EC2_EMULATOR_PYTHON, EMULATOR_PY], { stdio: "inherit",
            env: { ...process.env, RAY_CLUSTER_EC2_AUTHORIZER: JSON.stringify(AUTHORIZER) } });
        this.endpoint = fs.readFileSync(path.join(state, "ec2-endpoint"), "utf8").trim();
    }

    /**
     * Starts the emulator on this machine's loopback, for the quick tests; stopLoopback() ends it. `iamWaitSeconds`:
     * how long a call waits for the rig's IAM to know its key (50 s by default).
     */
    async startOnLoopback(state: string, options: { iamWaitSeconds?: number } = {}): Promise<void> {
        this.checkInstalled();
        this.state = state;
        const port = await new Promise<number>((resolve, reject) => {
            const probe = net.createServer().listen(0, "127.0.0.1", () => {
                const { port: free } = probe.address() as net.AddressInfo;
                probe.close(() => resolve(free));
            }).on("error", reject);
        });
        const log = fs.openSync(path.join(state, "ec2.log"), "a");
        this.loopback = spawn(EC2_EMULATOR_PYTHON, [EMULATOR_PY, "serve", "--host", "127.0.0.1", "--port", String(port),
            "--calls", path.join(state, "ec2-calls.jsonl"), "--refuse", path.join(state, "ec2-refuse.json"),
            "--requests", path.join(state, "ec2-requests.jsonl")],
        { stdio: ["ignore", log, log], env: { ...process.env, RAY_CLUSTER_EC2_AUTHORIZER: JSON.stringify(AUTHORIZER),
            ...(options.iamWaitSeconds !== undefined ? { RAY_CLUSTER_EC2_IAM_WAIT: String(options.iamWaitSeconds) } : {}) } });
        fs.closeSync(log);
        this.endpoint = `http://127.0.0.1:${port}`;
        for (let tries = 0; ; tries++) {
            const up = await new Promise<boolean>((resolve) => net.connect(port, "127.0.0.1").on("connect", function (this: net.Socket) {
                this.destroy();
                resolve(true);
            }).on("error", () => resolve(false)));
            if (up) {
                return;
            }
            if (tries > 300 || this.loopback.exitCode !== null) {
                throw new Error(`the EC2 emulator did not start: ${fs.readFileSync(path.join(state, "ec2.log"), "utf8")}`);
            }
            await new Promise((resolve) => setTimeout(resolve, 100));
        }
    }

    /** Stops the emulator startOnLoopback started (and so its authorizer, whose input ends with it). */
    async stopLoopback(): Promise<void> {
        const child = this.loopback;
        if (child && child.exitCode === null) {
            const ended = new Promise((resolve) => child.once("exit", resolve));
            child.kill("SIGTERM");
            await ended;
        }
        this.loopback = undefined;
    }

    private checkInstalled(): void {
        if (!fs.existsSync(EC2_EMULATOR_PYTHON)) {
            throw new Error(`no EC2 emulator at ${EC2_EMULATOR_PYTHON}; npm test's pretest installs it (tools/ec2-emulator.sh)`);
        }
    }

    private iamFile(): string {
        return path.join(this.state, "ec2-iam.json");
    }

    private updateIam(change: (iam: RigIam) => void): void {
        const file = this.iamFile();
        const iam: RigIam = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : { keys: {}, roles: {}, instanceProfiles: {} };
        change(iam);
        // Whole or not at all: the emulator reads it on every call.
        fs.writeFileSync(`${file}.tmp`, JSON.stringify(iam));
        fs.renameSync(`${file}.tmp`, file);
    }

    /**
     * From now on, calls signed with this access key are a session of the role of this name (as STS hands an
     * instance its role's credentials), authorized against that role's policies once loadStackIam gave them. A call
     * signed with a key the rig's IAM does not know fails as AWS fails it (AuthFailure).
     */
    trustKey(accessKeyId: string, role: string, session?: string): void {
        this.updateIam((iam) => {
            iam.keys[accessKeyId] = { role, ...(session ? { session } : {}) };
        });
    }

    /**
     * The stack's roles with the policies it rendered for each, and the role each instance profile holds: what the
     * emulator evaluates each call against, from now on (a later render's policies replace an earlier one's, as
     * `pulumi up` updates them). A call made before the role's policies are here waits for them, for up to 50 s.
     */
    loadStackIam(rendered: Rendered): void {
        const stack = stackIam(rendered);
        this.updateIam((iam) => {
            iam.roles = { ...iam.roles, ...stack.roles };
            iam.instanceProfiles = { ...iam.instanceProfiles, ...stack.instanceProfiles };
        });
    }

    /**
     * Render's `registered`, for a stack's first render: loads the stack's IAM (loadStackIam) each time the render
     * registers a role, a policy or an instance profile, as `pulumi up` creates each before what depends on it. The
     * stack's own order then decides when a node's calls are allowed, as on AWS (the autoscaler and autostop start
     * after their policies), rather than the render's end: a render that runs on while the head calls (a worker
     * created later) keeps no call waiting. Not for a later render, which registers again one policy at a time: there,
     * loadStackIam(rendered) once it ends.
     */
    readonly followStackIam = (resources: readonly RegisteredResource[]): void => {
        if (IAM_TYPES.has(resources.at(-1)?.type ?? "")) {
            this.loadStackIam({ resources: [...resources], outputs: {} });
        }
    };

    /**
     * An image by the id its owner gave it, as the account sees it: Canonical's public Ubuntu (owner CANONICAL_OWNER),
     * or one the account made (owner: the account, the default). A launch of an image the emulator does not hold fails
     * with InvalidAMIID.NotFound, as EC2's does. Returns the id.
     */
    registerImage(image: { imageId: string; name: string; ownerId?: string; public?: boolean; tags?: Record<string, string> }): string {
        this.cli("register-image", "--image-id", image.imageId, "--name", image.name, "--owner", image.ownerId ?? "123456789012",
            ...(image.public ? ["--public"] : []), ...Object.entries(image.tags ?? {}).flatMap(([k, v]) => ["--tag", `${k}=${v}`]));
        return image.imageId;
    }

    /** Every API call made, with the decision the emulator took on it; with `refused`, only calls it refused. */
    apiCalls(options: { refused?: boolean } = {}): Array<ApiCall & { refused?: string }> {
        const all = recordedApiCalls(this.state) as Array<ApiCall & { refused?: string }>;
        return options.refused ? all.filter((c) => c.refused !== undefined) : all;
    }

    private cli(...args: string[]): string {
        return execFileSync(EC2_EMULATOR_PYTHON, [EMULATOR_PY, ...args, "--endpoint", this.endpoint], { encoding: "utf8" }).trim();
    }

    /** A VPC with a subnet per CIDR (CIDR@ZONE: in that zone), security groups and instance profiles, for the stack's ids to name. */
    setup(cidrs: string[], securityGroups: string[], instanceProfiles: string[]): Ec2Setup {
        return JSON.parse(this.cli("setup", ...cidrs.flatMap((c) => ["--cidr", c]), ...securityGroups.flatMap((g) => ["--security-group", g]),
            ...instanceProfiles.flatMap((p) => ["--instance-profile", p])));
    }

    /**
     * Launches an instance with these tags, as RunInstances would for the stack; returns its id. In a subnet at an
     * address, it keeps moto from giving that address to an instance launched later.
     */
    runInstance(tags: Record<string, string>, placement?: { subnetId: string; privateIp: string }): string {
        const id = this.cli("run-instance", ...Object.entries(tags).flatMap(([k, v]) => ["--tag", `${k}=${v}`]),
            ...(placement ? ["--subnet", placement.subnetId, "--ip", placement.privateIp] : []));
        this.registered.add(id);
        return id;
    }

    /**
     * Registers the stack's key pair, as aws.ec2.KeyPair does, once per name: launches that name it get its public
     * key, and EC2 refuses a launch naming a key pair it does not hold.
     */
    importKeyPair(name: string, publicKey: string | undefined): void {
        if (publicKey === undefined || this.keyPairs.has(name)) {
            return;
        }
        this.cli("import-key", "--name", name, "--public-key", publicKey.trim());
        this.keyPairs.add(name);
    }

    /**
     * From now on, launches of these instance types fail for want of capacity, as EC2's do: "c7i.xlarge" in every
     * zone, "c7i.xlarge@subnet-…" in that subnet's zone only.
     */
    refuse(instanceTypes: string[]): void {
        fs.writeFileSync(path.join(this.state, "ec2-refuse.json"), JSON.stringify(instanceTypes));
    }

    startInstance(id: string): void {
        this.cli("start", id);
    }

    /** EC2 itself terminates the instance, as when it reclaims a spot instance at its notice's time. */
    reclaimInstance(id: string): void {
        this.cli("terminate", id);
    }

    states(): Record<string, { state: string; tags: Record<string, string> }> {
        return JSON.parse(this.cli("states"));
    }

    /** Every recorded call, oldest first; with actions, only calls of those. */
    calls(...actions: Ec2Call["action"][]): Ec2Call[] {
        const file = path.join(this.state, "ec2-calls.jsonl");
        const all = fs.existsSync(file)
            ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as Ec2Call)
            : [];
        return actions.length === 0 ? all : all.filter((call) => actions.includes(call.action));
    }
}

/**
 * The one thing the test changes for the head's autoscaler: this emulator as its EC2 endpoint. Its credentials come
 * as on EC2, from the head's instance metadata (serveLaunchedInstance), as its role's.
 */
export function autoscalerEndpointFiles(endpoint: string): Record<string, string> {
    return {
        "etc/systemd/system/ray-autoscaler.service.d/ec2-emulator.conf": `[Service]\nEnvironment=AWS_ENDPOINT_URL=${endpoint}\n`,
    };
}

/** What EC2 has announced to a spot instance: an interruption notice, with its action and time. */
export interface SpotEvents {
    notice?: { action: "terminate" | "stop" | "hibernate"; time: Date };
    rebalanceAt?: Date;
}

/** The booted hosts as the emulator drives them. */
export interface FollowingHosts {
    place(node: string, placement: { public?: number; private?: number }): void;
    launch(node: string, request: LaunchRequest, firewall: SecurityGroupFirewall, files?: Record<string, string>,
        options?: { withoutIndex?: boolean }): void;
    /** Resolves once the host is off; the follower does not wait for it, so that the test's own process runs on. */
    powerOffInBackground(node: string): Promise<void>;
    enforce(firewall: SecurityGroupFirewall, nodes: string[]): void;
}

/** One instance the emulator launched, and what its booted host did. */
export interface FollowedInstance {
    id: string;
    privateIp: string;
    instanceType: string;
    launchedAt: number;
    /** The RunInstances call that launched it: everything its host was made from. */
    request: Ec2Call;
    /** Whether a host booted for it: false for one the test made never boot, as a broken image would. */
    booted: boolean;
    /** Whether the test cut its host off from the package index, so that its setup fails. */
    setupFails: boolean;
    /** When its host was off, after EC2 stopped or terminated it. */
    poweredOffAt?: number;
    /** Whether the follower has begun to power its host off. */
    poweringOff?: boolean;
    /** Why its host did not power off, if it did not. */
    powerOffError?: string;
}

/**
 * Makes booted hosts follow the emulated EC2: each instance RunInstances creates becomes a host at the private IP
 * moto assigned (its octet on the bridge of that subnet), booted from the instance's own user data, in the given
 * security groups; Stop and Terminate power it off. The other hosts' filters are reloaded, since a group reference
 * admits the new member.
 */
export class Ec2Follower {
    readonly instances = new Map<string, FollowedInstance>();
    private seen = 0;
    private timer?: NodeJS.Timeout;
    private readonly powerOffs = new Set<Promise<void>>();
    private withheld = 0;
    private failing = 0;

    /**
     * `groupNames`: the firewall's name for each security group id the emulator knows (Ec2Setup.securityGroups,
     * inverted); a launch into a group the test never made joins no group, so its host admits nothing.
     */
    constructor(private readonly ec2: Ec2Emulator, private readonly hosts: FollowingHosts, private readonly firewall: SecurityGroupFirewall,
        private readonly groupNames: Record<string, string>, private readonly liveNodes: () => string[],
        /** Serves a booted instance's metadata from its request, as EC2 does (its id, type, image, role, IMDS options). */
        private readonly serveMetadata?: (instanceId: string, request: Ec2Call, spot?: SpotEvents) => void,
        /** withoutIndex: no launched host reaches the package index, as private workers without a NAT gateway. */
        private readonly options: { withoutIndex?: boolean } = {}) {}

    /**
     * EC2 interrupts a launched spot instance: its metadata serves the notice from now on, and at the notice's time
     * EC2 terminates it (the follower then powers its host off). Resolves once it is terminated.
     */
    async interrupt(id: string, action: "terminate" | "stop", inSeconds: number): Promise<void> {
        const instance = this.instances.get(id);
        if (!instance?.booted || !this.serveMetadata) {
            throw new Error(`${id} is no booted instance with metadata to interrupt`);
        }
        const time = new Date(Date.now() + inSeconds * 1000);
        this.serveMetadata(id, instance.request, { notice: { action, time } });
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, time.getTime() - Date.now())));
        this.ec2.reclaimInstance(id);
        this.sync();
        await this.settled();
    }

    start(): void {
        this.timer = setInterval(() => this.sync(), 1000);
    }

    /** Stops following; resolves once the power-offs under way have ended. */
    async stop(): Promise<void> {
        clearInterval(this.timer);
        await this.settled();
    }

    /** Resolves once every power-off begun so far has ended. */
    async settled(): Promise<void> {
        await Promise.all([...this.powerOffs]);
    }

    /** The next `count` launched instances never boot, as with an image that does not start. */
    withholdBoot(count = 1): void {
        this.withheld += count;
    }

    /** The next `count` launched instances boot, but cannot reach the package index: their setup fails. */
    failSetup(count = 1): void {
        this.failing += count;
    }

    /** Instances launched so far, oldest first. */
    launched(): FollowedInstance[] {
        return [...this.instances.values()];
    }

    /** Follows the calls made since the last sync, in order: boots what was launched, powers off what was stopped or terminated. */
    sync(): void {
        for (const call of this.ec2.calls().slice(this.seen)) {
            if (call.action === "RunInstances") {
                const fresh = (call.instances ?? []).filter((i) => !this.ec2.registered.has(i.id));
                // EC2 may give a new instance the address of one it terminated a moment ago; the new host waits, to a
                // later sync, until the old one is off.
                if (fresh.some((i) => this.addressHeld(i.privateIp))) {
                    return;
                }
                for (const { id, privateIp } of fresh) {
                    const boot = this.withheld === 0;
                    this.withheld = Math.max(0, this.withheld - 1);
                    const failSetup = boot && this.failing > 0;
                    this.failing -= failSetup ? 1 : 0;
                    this.instances.set(id, { id, privateIp, instanceType: call.instanceType ?? "", launchedAt: call.at * 1000, booted: boot,
                        setupFails: failSetup, request: call });
                    if (boot) {
                        const [, bridge, octet] = /^10\.213\.(\d+)\.(\d+)$/.exec(privateIp)!;
                        this.hosts.place(id, bridge === "0" ? { public: Number(octet) } : { private: Number(octet) });
                        // The groups the request named, and only those, as EC2 puts the instance's interface in them.
                        this.firewall.join(id, (call.securityGroupIds ?? []).flatMap((g) => (this.groupNames[g] ? [this.groupNames[g]] : [])));
                        this.hosts.launch(id, { userData: call.userData ?? "", publicKey: call.publicKey ?? undefined, instanceId: id,
                            imageId: call.imageId ?? undefined }, this.firewall, {}, { withoutIndex: failSetup || this.options.withoutIndex });
                        this.serveMetadata?.(id, call);
                        this.hosts.enforce(this.firewall, this.liveNodes().filter((node) => node !== id));
                    }
                }
            } else if ((call.action === "StopInstances" || call.action === "TerminateInstances") && call.refused === undefined) {
                for (const id of call.instanceIds ?? []) {
                    const instance = this.instances.get(id);
                    if (instance && instance.booted && !instance.poweringOff) {
                        instance.poweringOff = true;
                        const off: Promise<void> = this.hosts.powerOffInBackground(id).then(
                            () => { instance.poweredOffAt = Date.now(); },
                            (e: Error) => { instance.powerOffError = e.message; },
                        ).finally(() => this.powerOffs.delete(off));
                        this.powerOffs.add(off);
                    }
                }
            }
            this.seen += 1;
        }
    }

    private addressHeld(privateIp: string): boolean {
        return [...this.instances.values()].some((i) => i.privateIp === privateIp && i.poweringOff && i.poweredOffAt === undefined &&
            i.powerOffError === undefined);
    }
}
