/**
 * `npm run job`: runs work on the stack's cluster from this machine in one command.
 *
 *   npm run job -- submit [--no-wait] DIR -- ENTRYPOINT...   upload DIR as the job's working dir, stream its logs,
 *                                                            exit with its status (0 succeeded, 1 failed, 3 stopped)
 *   npm run job -- logs ID                                   its driver log: from Ray while the cluster is up, else
 *                                                            from the copy in the results bucket
 *   npm run job -- status ID | stop ID | list
 *
 * It reads the stack's outputs (`pulumi stack output --json --show-secrets`, or the file RAY_CLUSTER_STACK_OUTPUTS
 * names), reaches the head with the stack's key and ssh config, reads the cluster token from the head without
 * printing it, opens an SSH tunnel to the dashboard (or reuses one already open on the port), and runs Ray's own Jobs
 * API client (tools/job_client.py) of exactly the stack's Ray release, which uv installs once into a cached venv.
 */
import { ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

const CLIENT_PY = path.join(__dirname, "job_client.py");
const FETCH_UV_PY = path.join(__dirname, "..", "scripts", "fetch_uv.py");
const BOTO3_REQUIREMENTS = path.join(__dirname, "..", "scripts", "boto3-requirements.txt");
/** Where uv comes from when this machine has none and neither uv's nor pip's config names an index. */
const DEFAULT_INDEX = "https://pypi.org/simple/";
/** Bounds: one SSH dial, and the tunnel's first answer. */
const SSH_CONNECT_SECONDS = 10;
const TUNNEL_SECONDS = 30;
const USAGE = "usage: npm run job -- submit [--no-wait] DIR -- ENTRYPOINT... | logs ID | status ID | stop ID | list";

/** What the stack's `jobs` output holds. */
interface JobsOutput {
    rayVersion: string;
    dashboardPort: number;
    head: string;
    region: string;
    profile: string;
    logs: string;
}

class JobError extends Error {
    constructor(message: string, public readonly exitCode = 2) {
        super(message);
    }
}

const say = (message: string) => process.stderr.write(`ray-cluster job: ${message}\n`);

function cacheDir(): string {
    return process.env.RAY_CLUSTER_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "ray-cluster");
}

/** The stack's outputs, secrets shown: the ssh key and config come from them. */
function readOutputs(): Record<string, any> {
    const file = process.env.RAY_CLUSTER_STACK_OUTPUTS;
    if (file) {
        return JSON.parse(fs.readFileSync(file, "utf8"));
    }
    const result = spawnSync("pulumi", ["stack", "output", "--json", "--show-secrets"], { encoding: "utf8" });
    if (result.error || result.status !== 0) {
        const why = result.error ? result.error.message : result.stderr.trim().split("\n").pop();
        throw new JobError(`cannot read the stack's outputs (pulumi stack output: ${why}); run this in the project ` +
            "directory with the stack selected and PULUMI_BACKEND_URL and PULUMI_CONFIG_PASSPHRASE set");
    }
    return JSON.parse(result.stdout);
}

function jobsOutput(outputs: Record<string, any>): JobsOutput {
    const jobs = outputs.jobs;
    if (typeof jobs !== "object" || jobs === null || typeof jobs.rayVersion !== "string") {
        throw new JobError(typeof jobs === "string" ? `the stack runs no Ray (${jobs}); set bootstrapRay and run \`pulumi up\``
            : "the stack has no `jobs` output yet; run `pulumi up` to update it");
    }
    return jobs as JobsOutput;
}

/** The python of a venv with Ray's client at exactly VERSION, and boto3 for archived logs; made once, then reused. */
function ensureClient(version: string): string {
    const venv = path.join(cacheDir(), `ray-client-${version}`);
    const python = path.join(venv, "bin", "python");
    const requirements = [`ray[default]==${version}`, ...fs.readFileSync(BOTO3_REQUIREMENTS, "utf8").trim().split(/\s+/)];
    const marker = path.join(venv, ".ray-cluster-installed");
    if (fs.existsSync(marker) && fs.readFileSync(marker, "utf8") === requirements.join(" ")) {
        return python;
    }
    const uv = findUv();
    say(`installing the Ray ${version} client into ${venv} (once)`);
    // uv reads its own index settings (UV_DEFAULT_INDEX, UV_INDEX_URL, uv.toml); pip's PIP_INDEX_URL is honoured too.
    const index = process.env.UV_DEFAULT_INDEX || process.env.UV_INDEX_URL ? [] : process.env.PIP_INDEX_URL ? ["--index-url", process.env.PIP_INDEX_URL] : [];
    for (const args of [["venv", "--quiet", "--python", "python3", venv], ["pip", "install", "--quiet", "--python", python, ...index, ...requirements]]) {
        const result = spawnSync(uv, args, { stdio: ["ignore", "inherit", "inherit"] });
        if (result.status !== 0) {
            throw new JobError(`could not install the Ray ${version} client with uv (${args.slice(0, 2).join(" ")} failed, above)`);
        }
    }
    fs.writeFileSync(marker, requirements.join(" "));
    return python;
}

/** uv from PATH, or fetched once from the package index, as the nodes fetch it (scripts/fetch_uv.py). */
function findUv(): string {
    if (spawnSync("uv", ["--version"], { stdio: "ignore" }).status === 0) {
        return "uv";
    }
    const uv = path.join(cacheDir(), "bin", "uv");
    if (!fs.existsSync(uv)) {
        const index = process.env.UV_DEFAULT_INDEX || process.env.UV_INDEX_URL || process.env.PIP_INDEX_URL || DEFAULT_INDEX;
        const result = spawnSync("python3", [FETCH_UV_PY, "--index-url", index, "--dest", uv], { stdio: ["ignore", "ignore", "inherit"] });
        if (result.status !== 0) {
            throw new JobError(`no uv here, and it could not be fetched from ${index}; install uv (https://docs.astral.sh/uv/)`);
        }
    }
    return uv;
}

/** An ssh config for the stack: its own block, with the key from the outputs, and a known-hosts file of its own. */
function sshSetup(outputs: Record<string, any>, dir: string): string[] {
    let block = String(outputs.sshConfig ?? "");
    if (!block.includes("Host ")) {
        throw new JobError("the stack's outputs have no sshConfig; run `pulumi up`");
    }
    if (typeof outputs.sshPrivateKey === "string" && outputs.sshPrivateKey !== "[secret]") {
        const key = path.join(dir, "key");
        fs.writeFileSync(key, outputs.sshPrivateKey.endsWith("\n") ? outputs.sshPrivateKey : `${outputs.sshPrivateKey}\n`, { mode: 0o600 });
        block = block.replace(/^(\s*IdentityFile)\s+.*$/gm, `$1 ${key}`);
    }
    fs.mkdirSync(cacheDir(), { recursive: true });
    const config = path.join(dir, "ssh_config");
    fs.writeFileSync(config, `${block}\nHost *\n    BatchMode yes\n    ConnectTimeout ${SSH_CONNECT_SECONDS}\n` +
        `    StrictHostKeyChecking accept-new\n    UserKnownHostsFile ${path.join(cacheDir(), "known_hosts")}\n` +
        "    ServerAliveInterval 15\n    LogLevel ERROR\n");
    return ["-F", config];
}

/** The cluster token, read from the head over SSH into memory only. */
function readToken(ssh: string[], jobs: JobsOutput): string {
    const result = spawnSync("ssh", [...ssh, jobs.head, "cat .ray/auth_token"], { encoding: "utf8", timeout: (SSH_CONNECT_SECONDS + 20) * 1000 });
    if (result.status !== 0 || result.stdout.trim() === "") {
        const why = (result.stderr ?? "").trim().split("\n").pop() || (result.error?.message ?? `exit ${result.status}`);
        throw new JobError(`cannot reach ${jobs.head} over SSH (${why}). If the cluster is stopped, \`pulumi up\` starts ` +
            "it; otherwise check the ssh config (`pulumi stack output --json --show-secrets | npm run --silent ssh-config`) " +
            "and that sshAllowedCidrs admits this machine");
    }
    return result.stdout.trim();
}

/** The dashboard's answer to /api/version on a local port, with the token; undefined if nothing Ray-like answers. */
function dashboardVersion(port: number, token: string): Promise<string | undefined> {
    return new Promise((resolve) => {
        const req = http.get({ host: "127.0.0.1", port, path: "/api/version", timeout: 3000, headers: { Authorization: `Bearer ${token}` } }, (res) => {
            let body = "";
            res.on("data", (chunk) => (body += chunk));
            res.on("end", () => {
                try {
                    resolve(res.statusCode === 200 ? String(JSON.parse(body).ray_version) : undefined);
                } catch {
                    resolve(undefined);
                }
            });
        });
        req.on("timeout", () => req.destroy());
        req.on("error", () => resolve(undefined));
    });
}

function portInUse(port: number): Promise<boolean> {
    return new Promise((resolve) => {
        const socket = net.connect({ host: "127.0.0.1", port }, () => {
            socket.destroy();
            resolve(true);
        });
        socket.on("error", () => resolve(false));
    });
}

function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.listen(0, "127.0.0.1", () => {
            const port = (server.address() as net.AddressInfo).port;
            server.close(() => resolve(port));
        });
        server.on("error", reject);
    });
}

/** A tunnel to the head's dashboard: one already open on the dashboard's port, or a new one this command closes. */
async function tunnel(ssh: string[], jobs: JobsOutput, token: string): Promise<{ port: number; process?: ChildProcess }> {
    const checkVersion = (version: string, port: number) => {
        if (version !== jobs.rayVersion) {
            throw new JobError(`the cluster runs Ray ${version} but the stack says ${jobs.rayVersion}; run \`pulumi up\` ` +
                `to bring the cluster to the stack's release${port === jobs.dashboardPort ? "" : ` (dashboard on local port ${port})`}`);
        }
    };
    const open = await dashboardVersion(jobs.dashboardPort, token);
    if (open !== undefined) {
        checkVersion(open, jobs.dashboardPort);
        say(`using the tunnel already open on localhost:${jobs.dashboardPort}`);
        return { port: jobs.dashboardPort };
    }
    const port = (await portInUse(jobs.dashboardPort)) ? await freePort() : jobs.dashboardPort;
    const child = spawn("ssh", [...ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-L", `${port}:localhost:${jobs.dashboardPort}`, jobs.head],
        { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (chunk) => (stderr += chunk));
    const deadline = Date.now() + TUNNEL_SECONDS * 1000;
    while (Date.now() < deadline) {
        if (child.exitCode !== null) {
            throw new JobError(`the SSH tunnel to ${jobs.head}'s dashboard closed at once: ${stderr.trim().split("\n").pop()}`);
        }
        const version = await dashboardVersion(port, token);
        if (version !== undefined) {
            checkVersion(version, port);
            return { port, process: child };
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
    }
    child.kill();
    throw new JobError(`the dashboard did not answer through the tunnel to ${jobs.head} within ${TUNNEL_SECONDS}s; ` +
        `is Ray running there? (ssh ${jobs.head} systemctl status ray-head)`);
}

/** Runs job_client.py in the client venv, with the token in its environment only; resolves to its exit code. */
function runClient(python: string, args: string[], env: Record<string, string> = {}): Promise<number> {
    return new Promise((resolve) => {
        const child = spawn(python, [CLIENT_PY, ...args], { stdio: ["ignore", "inherit", "inherit"],
            env: { ...process.env, RAY_AUTH_MODE: "token", RAY_USAGE_STATS_ENABLED: "0", ...env } });
        child.on("exit", (code, signal) => resolve(code ?? (signal ? 130 : 1)));
    });
}

async function main(argv: string[]): Promise<number> {
    const [command, ...rest] = argv;
    const submitArgs = command === "submit" ? parseSubmit(rest) : undefined;
    if (!["submit", "logs", "status", "stop", "list"].includes(command) ||
        (["logs", "status", "stop"].includes(command) && rest.length !== 1)) {
        throw new JobError(USAGE);
    }
    const outputs = readOutputs();
    const jobs = jobsOutput(outputs);
    const python = ensureClient(jobs.rayVersion);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-job-"));
    let forward: ChildProcess | undefined;
    try {
        const ssh = sshSetup(outputs, dir);
        let token: string;
        try {
            token = readToken(ssh, jobs);
        } catch (e) {
            // A job's log outlives the cluster: read the copy the head made.
            if (command === "logs" && e instanceof JobError) {
                say(`${e.message.split(". ")[0]}; reading the copy in the results bucket`);
                return await runClient(python, ["archived-logs", jobs.logs, rest[0], jobs.region],
                    jobs.profile ? { AWS_PROFILE: jobs.profile } : {});
            }
            throw e;
        }
        const opened = await tunnel(ssh, jobs, token);
        forward = opened.process;
        const address = `http://127.0.0.1:${opened.port}`;
        const env = { RAY_AUTH_TOKEN: token };
        if (submitArgs) {
            return await runClient(python, ["submit", address, submitArgs.dir, ...(submitArgs.noWait ? ["--no-wait"] : []), "--", ...submitArgs.entrypoint], env);
        }
        const code = await runClient(python, [command, address, ...rest], env);
        if (command === "logs" && code === 4) {
            // The cluster is up but no longer knows the job (its head restarted): the bucket still has it.
            return await runClient(python, ["archived-logs", jobs.logs, rest[0], jobs.region], jobs.profile ? { AWS_PROFILE: jobs.profile } : {});
        }
        return code;
    } finally {
        forward?.kill();
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

function parseSubmit(args: string[]): { dir: string; noWait: boolean; entrypoint: string[] } {
    const dash = args.indexOf("--");
    const before = dash < 0 ? args : args.slice(0, dash);
    const entrypoint = dash < 0 ? [] : args.slice(dash + 1);
    const noWait = before.includes("--no-wait");
    const positional = before.filter((a) => a !== "--no-wait");
    if (positional.length !== 1 || entrypoint.length === 0) {
        throw new JobError(USAGE);
    }
    const dir = path.resolve(positional[0]);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
        throw new JobError(`no directory ${positional[0]} to upload as the job's working dir`);
    }
    return { dir, noWait, entrypoint };
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    say(e instanceof JobError ? `error: ${e.message}` : `error: ${e instanceof Error ? e.stack : String(e)}`);
    process.exit(e instanceof JobError ? e.exitCode : 2);
});
