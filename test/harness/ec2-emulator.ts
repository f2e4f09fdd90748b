/**
 * The EC2 API of the end-to-end test: moto's server (test/harness/ec2_emulator.py) inside the booted hosts' mirror
 * namespace, where the head's autostop and autoscaler reach it through AWS_ENDPOINT_URL. It records every call that
 * launches, starts, stops or terminates instances, so a test can read exactly what was asked for; `follow` makes
 * booted hosts do what those calls would do to EC2 instances.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { SecurityGroupFirewall } from "./firewall";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const EMULATOR_PY = path.join(__dirname, "ec2_emulator.py");
/** The venv tools/ec2-emulator.sh fills (npm test's pretest); RAY_CLUSTER_EC2_EMULATOR overrides it. */
export const EC2_EMULATOR_PYTHON = path.join(process.env.RAY_CLUSTER_EC2_EMULATOR ??
    path.join(__dirname, "..", "..", ".cache", "ec2-emulator"), "bin", "python");

/** One recorded call: when, which action, on which instances, in the order the caller listed them. */
export interface Ec2Call {
    at: number;
    action: "StartInstances" | "StopInstances" | "TerminateInstances" | "RunInstances";
    instanceIds?: string[];
    /** RunInstances: the type asked for, what was launched, its user data, and the error if EC2 refused. */
    instanceType?: string;
    instances?: Array<{ id: string; privateIp: string }>;
    userData?: string;
    refused?: string;
}

/** What `setup` made in the emulated account, by CIDR and name. */
export interface Ec2Setup {
    vpcId: string;
    subnets: Record<string, string>;
    securityGroups: Record<string, string>;
    instanceProfiles: Record<string, string>;
}

export class Ec2Emulator {
    public endpoint = "";
    /** Instances the test itself registered (the stack's own nodes), which booted hosts stand for already. */
    readonly registered = new Set<string>();
    private state = "";

    /** Starts the emulator in the rig's mirror namespace; the rig's down() stops it with the namespace. */
    start(state: string): void {
        if (!fs.existsSync(EC2_EMULATOR_PYTHON)) {
            throw new Error(`no EC2 emulator at ${EC2_EMULATOR_PYTHON}; npm test's pretest installs it (tools/ec2-emulator.sh)`);
        }
        this.state = state;
        execFileSync("bash", [MACHINES_SH, "ec2", state, EC2_EMULATOR_PYTHON, EMULATOR_PY], { stdio: "inherit" });
        this.endpoint = fs.readFileSync(path.join(state, "ec2-endpoint"), "utf8").trim();
    }

    private cli(...args: string[]): string {
        return execFileSync(EC2_EMULATOR_PYTHON, [EMULATOR_PY, ...args, "--endpoint", this.endpoint], { encoding: "utf8" }).trim();
    }

    /** A VPC with a subnet per CIDR, security groups and instance profiles, for the stack's ids to name. */
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

    /** From now on, launches of these instance types fail for want of capacity, as EC2's do. */
    refuse(instanceTypes: string[]): void {
        fs.writeFileSync(path.join(this.state, "ec2-refuse.json"), JSON.stringify(instanceTypes));
    }

    startInstance(id: string): void {
        this.cli("start", id);
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

/** What AWS gives the head's autoscaler and the test replaces: this emulator as its EC2 endpoint, with credentials. */
export function autoscalerEndpointFiles(endpoint: string): Record<string, string> {
    return {
        "etc/systemd/system/ray-autoscaler.service.d/ec2-emulator.conf": "[Service]\n" +
            `Environment=AWS_ENDPOINT_URL=${endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing\n`,
    };
}

/** The booted hosts as the emulator drives them. */
export interface FollowingHosts {
    place(node: string, placement: { public?: number; private?: number }): void;
    launch(node: string, userData: string, firewall: SecurityGroupFirewall, files?: Record<string, string>, instanceId?: string): void;
    powerOff(node: string): void;
    enforce(firewall: SecurityGroupFirewall, nodes: string[]): void;
}

/** One instance the emulator launched, and what its booted host did. */
export interface FollowedInstance {
    id: string;
    privateIp: string;
    instanceType: string;
    launchedAt: number;
    /** Whether a host booted for it: false for one the test made never boot, as a broken image would. */
    booted: boolean;
    poweredOffAt?: number;
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
    private withheld = 0;

    constructor(private readonly ec2: Ec2Emulator, private readonly hosts: FollowingHosts, private readonly firewall: SecurityGroupFirewall,
        private readonly groups: string[], private readonly liveNodes: () => string[]) {}

    start(): void {
        this.timer = setInterval(() => this.sync(), 1000);
    }

    stop(): void {
        clearInterval(this.timer);
    }

    /** The next `count` launched instances never boot, as with an image that does not start. */
    withholdBoot(count = 1): void {
        this.withheld += count;
    }

    /** Instances launched so far, oldest first. */
    launched(): FollowedInstance[] {
        return [...this.instances.values()];
    }

    sync(): void {
        const calls = this.ec2.calls();
        for (const call of calls.slice(this.seen)) {
            if (call.action === "RunInstances") {
                for (const { id, privateIp } of (call.instances ?? []).filter((i) => !this.ec2.registered.has(i.id))) {
                    const boot = this.withheld === 0;
                    this.withheld = Math.max(0, this.withheld - 1);
                    this.instances.set(id, { id, privateIp, instanceType: call.instanceType ?? "", launchedAt: call.at * 1000, booted: boot });
                    if (boot) {
                        const [, bridge, octet] = /^10\.213\.(\d+)\.(\d+)$/.exec(privateIp)!;
                        this.hosts.place(id, bridge === "0" ? { public: Number(octet) } : { private: Number(octet) });
                        this.firewall.join(id, this.groups);
                        this.hosts.launch(id, call.userData ?? "", this.firewall, {}, id);
                        this.hosts.enforce(this.firewall, this.liveNodes().filter((node) => node !== id));
                    }
                }
            } else if (call.action === "StopInstances" || call.action === "TerminateInstances") {
                for (const id of call.instanceIds ?? []) {
                    const instance = this.instances.get(id);
                    if (instance && instance.booted && instance.poweredOffAt === undefined) {
                        this.hosts.powerOff(id);
                        instance.poweredOffAt = Date.now();
                    }
                }
            }
        }
        this.seen = calls.length;
    }
}
