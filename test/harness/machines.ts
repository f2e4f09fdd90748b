/**
 * Booted test hosts (test/e2e/machines.sh): Debian machines under systemd-nspawn that boot, run cloud-init from the
 * stack's own user data and reboot, on a bridge with no route off this machine. The end-to-end test and the
 * bootstrap benchmark share this rig.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { EC2_EMULATOR_PYTHON } from "./ec2-emulator";
import { eventually } from "./eventually";
import { CommandResult, runOverSsh } from "./ssh";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const ROOTFS_SH = path.join(__dirname, "..", "..", "tools", "rootfs.sh");
const SUBNET = "10.213.0";
/** The user cloud-init creates from the image's default_user (tools/rootfs.sh), as on an Ubuntu AMI. */
export const LOGIN_USER = "ubuntu";

/** The wheelhouse the pretest fills with `pip download`; RAY_CLUSTER_WHEELHOUSE overrides it. */
export const WHEELHOUSE = process.env.RAY_CLUSTER_WHEELHOUSE ?? path.join(__dirname, "..", "..", ".cache", "wheelhouse");

/**
 * What this machine lacks to boot the test hosts, in words a user can act on; empty when nothing is missing.
 * npm test's pretest installs the tools as root on Debian or Ubuntu.
 */
export function missingForBootedHosts(): string[] {
    const missing: string[] = [];
    const has = (tool: string) => spawnSync("sh", ["-c", `command -v ${tool}`]).status === 0;
    if (process.platform !== "linux") {
        return [`Linux (this is ${process.platform})`];
    }
    if (process.getuid?.() !== 0) {
        missing.push("root (network namespaces and systemd-nspawn)");
    }
    if (!fs.existsSync("/proc/self/ns/net")) {
        missing.push("network namespaces");
    }
    for (const [tool, pkg] of [["systemd-nspawn", "systemd-container"], ["debootstrap", "debootstrap"], ["ip", "iproute2"],
        ["ssh", "openssh-client"]]) {
        if (!has(tool)) {
            missing.push(`${tool} (apt-get install ${pkg})`);
        }
    }
    if (!fs.existsSync(EC2_EMULATOR_PYTHON)) {
        missing.push("the EC2 emulator (bash tools/ec2-emulator.sh)");
    }
    return missing;
}

/** One power-on of a host, as its supervisor recorded it: when it booted and how that boot ended. */
export interface Boot {
    started: number;
    ended?: number;
    exitCode?: number;
}

export class BootedHosts {
    /** Where the hosts' roots, seeds and logs live; made by up(). */
    public state = "";
    public privateKey = "";
    public publicKey = "";
    public indexUrl = "";
    private base = "";
    private readonly created = new Set<string>();

    constructor(private readonly octets: Record<string, number>) {}

    address(node: string): string {
        return `${SUBNET}.${this.octets[node]}`;
    }

    /** The bridge, the package mirror and the base image; the hosts themselves boot later, as instances are created. */
    up(): void {
        if (!fs.existsSync(WHEELHOUSE) || fs.readdirSync(WHEELHOUSE).length === 0) {
            throw new Error(`no wheelhouse at ${WHEELHOUSE}; npm test's pretest fills it`);
        }
        // A previous run killed before its cleanup leaves containers, mounts, the bridge and its state behind.
        execFileSync("bash", [MACHINES_SH, "down-stale"], { stdio: "inherit" });
        this.state = fs.mkdtempSync(path.join("/var/tmp", "ray-cluster-e2e-"));
        // A run stopped by a signal powers its hosts off too, rather than leaving them to the next run.
        for (const signal of ["SIGINT", "SIGTERM"] as const) {
            process.once(signal, () => {
                this.down();
                process.exit(130);
            });
        }
        const key = path.join(this.state, "id_ed25519");
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ray-cluster-e2e", "-f", key]);
        this.privateKey = fs.readFileSync(key, "utf8");
        this.publicKey = fs.readFileSync(`${key}.pub`, "utf8").trim();
        this.base = execFileSync("bash", [ROOTFS_SH], { encoding: "utf8" }).trim().split("\n").pop()!;
        execFileSync("bash", [MACHINES_SH, "net", this.state, WHEELHOUSE], { stdio: "inherit" });
        this.indexUrl = fs.readFileSync(path.join(this.state, "index-url"), "utf8").trim();
    }

    /**
     * Creates and powers on a host, as EC2 launches an instance: it returns before the host has booted. FILES (path
     * on the host → content) are laid into its root first, as the test's stand-in for what AWS provides a node.
     */
    launch(node: string, userData: string, files: Record<string, string> = {}): void {
        if (!(node in this.octets)) {
            throw new Error(`no test host for ${node}; have ${Object.keys(this.octets).join(", ")}`);
        }
        const userDataFile = path.join(this.state, `${node}.user-data`);
        const publicKeyFile = path.join(this.state, "id_ed25519.pub");
        fs.writeFileSync(userDataFile, userData);
        execFileSync("bash", [MACHINES_SH, "create", this.state, node, String(this.octets[node]), this.base,
            userDataFile, publicKeyFile, `i-${node}-${path.basename(this.state)}`], { stdio: "inherit" });
        for (const [file, content] of Object.entries(files)) {
            const target = path.join(this.state, "hosts", node, "root", file);
            fs.mkdirSync(path.dirname(target), { recursive: true });
            fs.writeFileSync(target, content);
        }
        this.created.add(node);
        this.powerOn(node);
    }

    powerOn(node: string): void {
        execFileSync("bash", [MACHINES_SH, "start", this.state, node], { stdio: "inherit" });
    }

    /** A clean shutdown, as an EC2 stop; returns once the container has exited. */
    powerOff(node: string): void {
        execFileSync("bash", [MACHINES_SH, "stop", this.state, node], { stdio: "inherit" });
    }

    /** Every power-on and reboot of the host so far, oldest first. */
    boots(node: string): Boot[] {
        const file = path.join(this.state, "hosts", node, "boots");
        const boots: Boot[] = [];
        for (const line of fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n") : []) {
            const [word, a, b] = line.split(" ");
            if (word === "boot") {
                boots.push({ started: Number(a) * 1000 });
            } else if (word === "exit" && boots.length > 0) {
                Object.assign(boots[boots.length - 1], { exitCode: Number(a), ended: Number(b) * 1000 });
            }
        }
        return boots;
    }

    /** Waits, with a bound, until the host has started its Nth boot. */
    async waitForBoot(node: string, count: number, timeoutSeconds = 60): Promise<void> {
        await eventually({ what: `${node} booting for the ${count}th time`, timeoutSeconds, intervalSeconds: 0.5 },
            async (last) => {
                const boots = this.boots(node);
                last(`${boots.length} boots`);
                return boots.length >= count && boots[count - 1].ended === undefined ? true : undefined;
            });
    }

    /** Runs `text` on a host as the login user, waiting for SSH while the host boots. */
    run(node: string, text: string, stdin?: string): Promise<CommandResult> {
        return runOverSsh({ connection: { host: this.address(node), user: LOGIN_USER, privateKey: this.privateKey,
            dialErrorLimit: 40 } }, text, stdin, `${node}: ${text.slice(0, 40)}`);
    }

    /**
     * The cluster as a user sees it from the head: the GCS node table (alive node id by address) and the node ids
     * `ray status` lists as active or idle.
     */
    async clusterView(): Promise<{ alive: Record<string, string>; listed: string[] }> {
        const { stdout } = await this.run("headnode", `RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, os, re, subprocess, sys, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
alive = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
status = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "status"], capture_output=True, text=True, timeout=60).stdout
print(json.dumps({"alive": alive, "listed": re.findall(r"\\bnode_([0-9a-f]+)", status.split("Pending:")[0])}))
PY`);
        return JSON.parse(stdout.trim().split("\n").pop()!);
    }

    console(node: string): string {
        const file = path.join(this.state, "hosts", node, "console.log");
        return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
    }

    down(): void {
        if (this.state === "" || !fs.existsSync(this.state)) {
            return;
        }
        execFileSync("bash", [MACHINES_SH, "down", this.state], { stdio: "inherit" });
        fs.rmSync(this.state, { recursive: true, force: true });
    }
}
