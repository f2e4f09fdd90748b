/**
 * Booted test hosts (test/e2e/machines.sh): Debian machines under systemd-nspawn that boot, run cloud-init from the
 * stack's own user data and reboot, on a bridge with no route off this machine. The end-to-end test and the
 * bootstrap benchmark share this rig.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { EC2_EMULATOR_PYTHON } from "./ec2-emulator";
import { eventually } from "./eventually";
import { BlockedFlow, parseBlocked, SecurityGroupFirewall, TABLE } from "./firewall";
import { CommandFailed, CommandResult, runOverSsh } from "./ssh";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const ROOTFS_SH = path.join(__dirname, "..", "..", "tools", "rootfs.sh");
const SUBNET = "10.213.0";
/** The private bridge's subnet: reachable only from hosts with an interface on it, never from this machine. */
const PRIVATE_SUBNET = "10.213.1";

/**
 * Where a host sits: the last octet of its address on the public bridge, on the private one, or both (the head
 * of private workers). A bare number is a public host.
 */
export type HostPlacement = number | { public?: number; private?: number };
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
        ["ssh", "openssh-client"], ["nft", "nftables"]]) {
        if (!has(tool)) {
            missing.push(`${tool} (apt-get install ${pkg})`);
        }
    }
    if (!fs.existsSync(EC2_EMULATOR_PYTHON)) {
        missing.push("the EC2 emulator (bash tools/ec2-emulator.sh)");
    }
    return missing;
}

/**
 * An end-to-end suite on booted hosts, or, where this machine cannot boot them, one failing test that says what is
 * missing: part of the full suite, it never skips quietly and never runs half.
 */
export function describeOnBootedHosts(title: string, options: { timeout: number }, body: () => void): void {
    const missing = missingForBootedHosts();
    if (missing.length > 0) {
        test(`${title}: the end-to-end test can run here`, () => {
            throw new Error(`the end-to-end test needs ${missing.join(", ")}; on a machine without them, ` +
                "run `npm run test:quick` for types, lint and the unit and mocks tests");
        });
        return;
    }
    describe(title, options, body);
}

/** The address on each bridge of a namespace that no security group names (machines.sh net makes it). */
export const OUTSIDER = { public: `${SUBNET}.250`, private: `${PRIVATE_SUBNET}.250` };
/** This machine's address on the public bridge: the user's laptop, which the tests put in sshAllowedCidrs. */
export const THIS_MACHINE = `${SUBNET}.1`;

/** What a host is created from, as an EC2 instance is from its RunInstances request and nothing else. */
export interface LaunchRequest {
    /** The request's user data, which cloud-init runs. */
    userData: string;
    /** Public key of the key pair the request named (EC2 serves it as the instance's public-keys); none if it named none. */
    publicKey: string | undefined;
    /** The instance id EC2 gave it. */
    instanceId?: string;
    /**
     * The AMI it named: an image the rig made (snapshot) boots from that image's layer over the base; any other
     * stands for a base AMI (Ubuntu, the Deep Learning AMI), which the base image plays, with no Ray on it.
     */
    imageId?: string;
}

/** One power-on of a host, as its supervisor recorded it: when it booted and how that boot ended. */
export interface Boot {
    started: number;
    ended?: number;
    exitCode?: number;
}

/** Where a task ran (the node's hostname, address and Ray labels), and when its result reached the driver. */
export interface PlacedTask {
    host: string;
    ip: string;
    labels: Record<string, string>;
    /**
     * Epoch ms by the clock every host shares, taken by the driver as it got the result, when Ray frees the node's
     * CPUs: nothing on the test's side (SSH, a busy event loop) can make it late.
     */
    doneAt: number;
}

export class BootedHosts {
    /** Where the hosts' roots, seeds and logs live; made by up(). */
    public state = "";
    public privateKey = "";
    public publicKey = "";
    public indexUrl = "";
    private base = "";
    private readonly created = new Set<string>();
    /** The images the rig made, by AMI id: each a layer of files over the base image. */
    private readonly images = new Map<string, string>();

    private readonly placements: Record<string, { public?: number; private?: number }>;

    constructor(placements: Record<string, HostPlacement>) {
        this.placements = Object.fromEntries(Object.entries(placements).map(([node, p]) =>
            [node, typeof p === "number" ? { public: p } : p]));
    }

    /** Where a host launched later sits: an instance the emulated EC2 created, at the address it assigned. */
    place(node: string, placement: { public?: number; private?: number }): void {
        this.placements[node] = placement;
    }

    /** Every host placed so far, those launched later included. */
    nodes(): string[] {
        return Object.keys(this.placements);
    }

    /** The hosts that exist: created (and powered on at least once), whatever their state now. */
    createdNodes(): string[] {
        return [...this.created];
    }

    /** The address this machine reaches the host by, directly or (a private host) through the jump host. */
    address(node: string): string {
        const p = this.placements[node];
        return p.public !== undefined ? `${SUBNET}.${p.public}` : `${PRIVATE_SUBNET}.${p.private}`;
    }

    /** The host's address inside the cluster, which Ray uses: the private one where it has one. */
    nodeIp(node: string): string {
        const p = this.placements[node];
        return p.private !== undefined ? `${PRIVATE_SUBNET}.${p.private}` : `${SUBNET}.${p.public}`;
    }

    /** Every address the host has, on each bridge it sits on: what a security group reference admits. */
    addresses(node: string): string[] {
        const p = this.placements[node];
        return [p.public !== undefined ? `${SUBNET}.${p.public}` : "", p.private !== undefined ? `${PRIVATE_SUBNET}.${p.private}` : ""]
            .filter((address) => address !== "");
    }

    /** Whether the host sits on the private bridge alone, so that this machine reaches it only through another. */
    isPrivateOnly(node: string): boolean {
        return this.placements[node].public === undefined;
    }

    /** The host with a public address that private hosts are reached through: the one on both bridges. */
    jumpHost(): string | undefined {
        return Object.keys(this.placements).find((n) => this.placements[n].public !== undefined && this.placements[n].private !== undefined);
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
     * A key of its own for each key resource the stack renders (render's privateKeys): the stack's key (`keyResource`,
     * which the test logs in with as the user) is this rig's, every other a new one, so no key stands in for another.
     */
    keyFor(resourceName: string, keyResource = "ray-cluster-key"): { privateKeyOpenssh: string; publicKeyOpenssh: string } {
        if (resourceName === keyResource) {
            return { privateKeyOpenssh: this.privateKey, publicKeyOpenssh: this.publicKey };
        }
        const file = path.join(this.state, `key-${resourceName}`);
        if (!fs.existsSync(file)) {
            execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", resourceName, "-f", file]);
        }
        return { privateKeyOpenssh: fs.readFileSync(file, "utf8"), publicKeyOpenssh: fs.readFileSync(`${file}.pub`, "utf8").trim() };
    }

    /**
     * Creates and powers on a host, as EC2 launches an instance: it returns before the host has booted. FILES (path
     * on the host → content) are laid into its root first, as the test's stand-in for what AWS provides a node; its
     * security groups' filter is in place before its first packet.
     */
    launch(node: string, request: LaunchRequest, firewall: SecurityGroupFirewall, files: Record<string, string> = {},
        options: { withoutIndex?: boolean } = {}): void {
        const placement = this.placements[node];
        if (!placement) {
            throw new Error(`no test host for ${node}; have ${Object.keys(this.placements).join(", ")}`);
        }
        const userDataFile = path.join(this.state, `${node}.user-data`);
        fs.writeFileSync(userDataFile, request.userData);
        // Only the key pair the request named is in the host's metadata; without one, cloud-init authorizes none.
        let publicKeyFile = "-";
        if (request.publicKey !== undefined) {
            publicKeyFile = path.join(this.state, `${node}.key-pair.pub`);
            fs.writeFileSync(publicKeyFile, request.publicKey.trim());
        }
        const image = request.imageId !== undefined ? this.images.get(request.imageId) : undefined;
        execFileSync("bash", [MACHINES_SH, "create", this.state, node, String(placement.public ?? "-"),
            String(placement.private ?? "-"), image ? `${image}:${this.base}` : this.base, userDataFile, publicKeyFile,
            request.instanceId ?? `i-${node}-${path.basename(this.state)}`],
        { stdio: "inherit" });
        for (const [file, content] of Object.entries(files)) {
            const target = path.join(this.state, "hosts", node, "root", file);
            fs.mkdirSync(path.dirname(target), { recursive: true });
            fs.writeFileSync(target, content);
        }
        this.created.add(node);
        this.enforce(firewall, [node]);
        if (options.withoutIndex) {
            // No package index for this host from its first packet: a setup that must fail, or a node with no NAT gateway.
            const index = new URL(this.indexUrl);
            execFileSync("bash", [MACHINES_SH, "unreachable", this.state, node, index.hostname, index.port], { stdio: "inherit" });
        }
        this.powerOn(node);
    }

    /**
     * Makes an image of a host, as EC2's CreateImage does by default: the host is shut down, its root volume is
     * snapshotted, and it is powered on again. Hosts launched later with `imageId` boot from it.
     */
    snapshot(node: string, imageId: string): void {
        if (this.images.has(imageId)) {
            throw new Error(`image ${imageId} exists already`);
        }
        const dir = path.join(this.state, "images", imageId);
        fs.mkdirSync(path.dirname(dir), { recursive: true });
        this.powerOff(node);
        execFileSync("bash", [MACHINES_SH, "snapshot", this.state, node, dir], { stdio: "inherit" });
        this.images.set(imageId, dir);
        this.powerOn(node);
    }

    /** Whether a host is powered on now (its supervisor runs), rather than off or never created. */
    isOn(node: string): boolean {
        const boots = this.boots(node);
        return boots.length > 0 && boots[boots.length - 1].ended === undefined;
    }

    /**
     * Waits, with a bound, until the host has powered itself off; on timeout the error carries what its shutdown still
     * waits on and its journal.
     */
    async waitForPowerOff(node: string, what: string, timeoutSeconds = 60): Promise<void> {
        try {
            await eventually({ what, timeoutSeconds, intervalSeconds: 1 }, async (last) => {
                const boots = this.boots(node);
                last(`${boots.length} boots, the last ${boots[boots.length - 1]?.ended === undefined ? "still on" : "ended"}`);
                return this.isOn(node) ? undefined : true;
            });
        } catch (e) {
            (e as Error).message += `\n${this.diagnose(node)}`;
            throw e;
        }
    }

    /** Loads each node's rules from the firewall into its namespace, replacing what it had. */
    enforce(firewall: SecurityGroupFirewall, nodes: string[]): void {
        for (const node of nodes) {
            const file = path.join(this.state, "hosts", node, "firewall.nft");
            fs.writeFileSync(file, firewall.ruleset(node));
            execFileSync("bash", [MACHINES_SH, "firewall", this.state, node, file], { stdio: "inherit" });
        }
    }

    /**
     * The flows the security groups dropped on the given nodes, in words: "worker-1 (10.213.0.12) → headnode
     * (10.213.0.11) tcp/6379", or "" when they dropped nothing.
     */
    describeBlocked(nodes: string[]): string {
        const nameOf = (address: string) => {
            const node = Object.keys(this.placements).find((n) => this.addresses(n).includes(address));
            return node ? `${node} (${address})` : address;
        };
        const flows = [...new Set(this.blocked(nodes).map((f) => `${nameOf(f.source)} → ${nameOf(f.destination)} ${f.protocol}/${f.port}`))];
        return flows.sort().join(", ");
    }

    /**
     * Runs `work`; if it fails, its error also names what the security groups of the given nodes blocked, so a
     * missing rule shows as what it kept out rather than as a bare timeout.
     */
    async namingBlocked<T>(nodes: string[], work: () => Promise<T>): Promise<T> {
        try {
            return await work();
        } catch (e) {
            const blocked = this.describeBlocked(nodes);
            if (blocked !== "" && e instanceof Error) {
                e.message += `\nthe security groups blocked: ${blocked}`;
            }
            throw e;
        }
    }

    /** Every flow the security groups dropped on the given nodes so far, in or out. */
    blocked(nodes: string[]): BlockedFlow[] {
        // A node not launched yet (a builder's command fails before the head exists) has no rules to ask.
        const up = nodes.filter((node) => fs.existsSync(path.join(this.state, "hosts", node, "netns")));
        return up.flatMap((node) => (["in", "out"] as const).flatMap((direction) => {
            const ns = fs.readFileSync(path.join(this.state, "hosts", node, "netns"), "utf8").trim();
            const json = execFileSync("ip", ["netns", "exec", ns, "nft", "-j", "list", "set", ...TABLE.split(" "), `blocked_${direction}`],
                { encoding: "utf8" });
            return parseBlocked(node, direction, json);
        }));
    }

    /** Empties the record of blocked flows, so a test sees only what it caused. */
    forgetBlocked(nodes: string[]): void {
        for (const node of nodes) {
            const ns = fs.readFileSync(path.join(this.state, "hosts", node, "netns"), "utf8").trim();
            for (const set of ["blocked_in", "blocked_out"]) {
                execFileSync("ip", ["netns", "exec", ns, "nft", "flush", "set", ...TABLE.split(" "), set]);
            }
        }
    }

    /**
     * An SSH tunnel from localPort on this machine to remotePort on the node, as the stack's dashboardTunnel opens
     * one; resolves once a connection through it opens. close() ends it.
     */
    async tunnel(node: string, localPort: number, remotePort: number): Promise<{ close: () => void }> {
        const ssh = spawn("ssh", ["-N", "-i", path.join(this.state, "id_ed25519"), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes",
            "-L", `${localPort}:127.0.0.1:${remotePort}`, `${LOGIN_USER}@${this.address(node)}`], { stdio: "ignore" });
        const close = () => {
            ssh.kill();
        };
        try {
            await eventually({ what: `a tunnel to ${node}:${remotePort} on local port ${localPort}`, timeoutSeconds: 30, intervalSeconds: 0.5 },
                async () => (this.connects("this machine", "127.0.0.1", localPort, 2) ? true : undefined));
        } catch (e) {
            close();
            throw e;
        }
        return { close };
    }

    /**
     * Whether a TCP connection to address:port opens within `seconds`, from this machine or from the outsider.
     * A security group drops what it does not admit, so a refused port shows as a connection that never opens.
     */
    connects(from: "this machine" | "outsider", address: string, port: number, seconds = 3): boolean {
        const probe = ["timeout", String(seconds), "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', address, String(port)];
        const command = from === "outsider" ? ["ip", "netns", "exec", "rcb-outsider", ...probe] : probe;
        return spawnSync(command[0], command.slice(1), { stdio: "ignore" }).status === 0;
    }

    powerOn(node: string): void {
        execFileSync("bash", [MACHINES_SH, "start", this.state, node], { stdio: "inherit" });
    }

    /** A clean shutdown, as an EC2 stop; returns once the container has exited. */
    powerOff(node: string): void {
        execFileSync("bash", [MACHINES_SH, "stop", this.state, node], { stdio: "inherit" });
    }

    /**
     * powerOff that leaves this process running meanwhile: a host's shutdown can take many seconds, and a rig that
     * follows EC2 in the test's own process would otherwise hold up every SSH reply and timestamp the test takes.
     */
    powerOffInBackground(node: string): Promise<void> {
        return new Promise((resolve, reject) => {
            const child = spawn("bash", [MACHINES_SH, "stop", this.state, node], { stdio: "inherit" });
            child.on("error", reject);
            child.on("exit", (code, signal) => (code === 0 ? resolve()
                : reject(new Error(`${node} did not power off: machines.sh stop ended with ${code ?? signal}`))));
        });
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

    /** Runs `text` on a host as the login user, waiting for SSH while the host boots; a private host through the jump host. */
    async run(node: string, text: string, stdin?: string): Promise<CommandResult> {
        const connection = { host: this.address(node), user: LOGIN_USER, privateKey: this.privateKey, dialErrorLimit: 40 };
        const jump = this.isPrivateOnly(node) ? this.jumpHost() : undefined;
        try {
            return await runOverSsh({ connection: jump ? { ...connection, proxy: { ...connection, host: this.address(jump) } } : connection },
                text, stdin, `${node}: ${text.slice(0, 40)}`);
        } catch (e) {
            // A host that could not be reached or refused the login: its own account of the boot goes with the error.
            if (e instanceof CommandFailed && e.result.code === 255) {
                e.message += `\n${this.diagnose(node)}`;
            }
            throw e;
        }
    }

    /**
     * Installs slow_ray_kill.py in NODE's Ray venv, so that `ray start --block` stalls inside its own kill of its
     * daemons while /run/ray-cluster-test/slow-kill exists; `stall(true)` creates that file, `stall(false)` removes
     * it, and `remove()` takes the hook away. `killing()` reads the pids that entered the stall.
     */
    async slowRayKill(node: string): Promise<{ stall(on: boolean): Promise<void>; killing(): Promise<number[]>; remove(): Promise<void> }> {
        const hook = fs.readFileSync(path.join(__dirname, "slow_ray_kill.py"), "utf8");
        const sitePackages = (await this.run(node, "~/ray-venv/bin/python -c 'import site; print(site.getsitepackages()[0])'")).stdout.trim();
        await this.run(node, `cat > ${sitePackages}/ray_cluster_slow_kill.py && echo 'import ray_cluster_slow_kill' > ${sitePackages}/zz_ray_cluster_slow_kill.pth && ` +
            `sudo install -d -o "$(id -u)" -m 0755 /run/ray-cluster-test && rm -f /run/ray-cluster-test/*`, hook);
        return {
            stall: async (on) => { await this.run(node, on ? "touch /run/ray-cluster-test/slow-kill" : "rm -f /run/ray-cluster-test/slow-kill"); },
            killing: async () => (await this.run(node, "cat /run/ray-cluster-test/killing 2>/dev/null || true")).stdout
                .split("\n").filter((line) => line.trim() !== "").map(Number),
            remove: async () => {
                await this.run(node, `rm -f ${sitePackages}/zz_ray_cluster_slow_kill.pth ${sitePackages}/ray_cluster_slow_kill.py; sudo rm -rf /run/ray-cluster-test`);
            },
        };
    }

    /**
     * The host's boots, the journal of its current boot, the jobs systemd still waits on and its critical chain,
     * read from outside (machines.sh diagnose), for the test's output.
     */
    diagnose(node: string): string {
        const result = spawnSync("bash", [MACHINES_SH, "diagnose", this.state, node], { encoding: "utf8", timeout: 90_000 });
        return `${result.stdout ?? ""}${result.stderr ?? ""}`;
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
status = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ray"), "status", "-v"], capture_output=True, text=True, timeout=60).stdout
# Without elastic groups each node is listed by id; with them, by address in the per-node usage.
by_address = {alive[a] for a in re.findall(r"^Node: (\\S+)", status, re.M) if a in alive}
print(json.dumps({"alive": alive, "listed": sorted(set(re.findall(r"\\bnode_([0-9a-f]+)", status.split("Pending:")[0])) | by_address)}))
PY`);
        return JSON.parse(stdout.trim().split("\n").pop()!);
    }

    /**
     * Submits scripts/smoke_test.py as a Ray job on the head, as a user would, and returns its output: it reports
     * which nodes its tasks ran on.
     */
    async smokeJob(expectNodes: number): Promise<string> {
        await this.run("headnode", "mkdir -p /tmp/smoke && cat > /tmp/smoke/smoke_test.py",
            fs.readFileSync(path.join(__dirname, "..", "..", "scripts", "smoke_test.py"), "utf8"));
        const { stdout } = await this.run("headnode", "RAY_AUTH_MODE=token ~/ray-venv/bin/ray job submit " +
            `--address http://127.0.0.1:8265 --working-dir /tmp/smoke -- python smoke_test.py --expect-nodes ${expectNodes}`);
        return stdout;
    }

    /** Waits, with a bound, until every given node is alive in the GCS and listed by `ray status`; returns their ids. */
    async clusterWhole(nodes: string[], timeoutSeconds: number, what = "every node back in ray status"): Promise<Record<string, string>> {
        return eventually({ what, timeoutSeconds, intervalSeconds: 3 }, async (last) => {
            const view = await this.clusterView();
            const ids = Object.fromEntries(nodes.map((node) => [node, view.alive[this.nodeIp(node)]]));
            const missing = nodes.filter((node) => !ids[node] || !view.listed.includes(ids[node]));
            last(`missing from ray status: ${missing.join(", ") || "none"}; listed ${view.listed.length}`);
            return missing.length === 0 && view.listed.length === nodes.length ? ids : undefined;
        });
    }

    /**
     * Runs one task that asks for `numCpus` CPUs from a driver on the head, as a user's job would, and returns where
     * it ran and when it ended. Fails if it has not run within `timeoutSeconds`.
     */
    async placeTask(numCpus: number, timeoutSeconds: number): Promise<PlacedTask> {
        const { stdout } = await this.run("headnode", `RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, socket, time, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=${numCpus})
def where():
    return socket.gethostname(), ray.get_runtime_context().get_node_id()
host, node_id = ray.get(where.remote(), timeout=${timeoutSeconds})
done_at = time.time() * 1000
node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
print(json.dumps({"host": host, "ip": node["NodeManagerAddress"], "labels": node.get("Labels", {}), "doneAt": done_at}))
PY`);
        return JSON.parse(stdout.trim().split("\n").pop()!);
    }

    /** Each node's raylet and object manager ports by its address, as the GCS knows them (Ray picks them at start). */
    async rayPorts(): Promise<Record<string, Record<string, number>>> {
        const { stdout } = await this.run("headnode", `RAY_AUTH_MODE=token ~/ray-venv/bin/python - <<'PY'
import json, ray
ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
print(json.dumps({n["NodeManagerAddress"]: {"raylet": n["NodeManagerPort"], "object manager": n["ObjectManagerPort"]}
                  for n in ray.nodes() if n["Alive"]}))
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
        // For a look at the hosts' consoles and journals after a failed run.
        if (process.env.RAY_CLUSTER_KEEP_STATE) {
            console.log(`booted hosts: kept ${this.state}`);
            return;
        }
        fs.rmSync(this.state, { recursive: true, force: true });
    }
}
