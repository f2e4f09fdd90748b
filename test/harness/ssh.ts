/** Runs a remote.Command's create or delete text over real SSH, as the command provider would. */
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** A remote.Command connection, as @pulumi/command takes it. */
export interface Connection {
    host: string;
    user?: string;
    port?: number;
    privateKey?: string;
    perDialTimeout?: number;
    dialErrorLimit?: number;
    /** The host dialled first; the target is then dialled from there (an SSH direct-tcpip channel). */
    proxy?: Omit<Connection, "proxy">;
}

export interface CommandInputs {
    connection: Connection;
    create?: string;
    delete?: string;
    stdin?: string;
}

export interface CommandResult {
    stdout: string;
    stderr: string;
    code: number;
    /** Seconds the command ran, from the dial that reached the host. */
    seconds: number;
    /** Seconds spent on dials the host refused before that (a booting host). */
    dialSeconds?: number;
}

export class CommandFailed extends Error {
    constructor(public readonly result: CommandResult, label: string) {
        super(`${label} exited ${result.code}: ${result.stderr.trim().split("\n").slice(-5).join("\n")}`);
    }
}

let keyDir: string | undefined;
const keyFiles = new Map<string, string>();

function keyFile(privateKey: string): string {
    let file = keyFiles.get(privateKey);
    if (!file) {
        keyDir ??= fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-key-"));
        file = path.join(keyDir, `key-${keyFiles.size}`);
        fs.writeFileSync(file, privateKey.endsWith("\n") ? privateKey : `${privateKey}\n`, { mode: 0o600 });
        keyFiles.set(privateKey, file);
    }
    return file;
}

/**
 * ssh's own failures to reach a host (exit 255), as opposed to the remote command's. "Connection closed by" is a
 * close before any session, such as sshd refusing logins while /run/nologin exists early in a boot; a session cut
 * short (a reboot) says "Connection to … closed by remote host" instead, and is never dialled again.
 */
const DIAL_ERROR = /Connection refused|Connection timed out|No route to host|Connection reset|Connection closed by|kex_exchange_identification|Network is unreachable|open failed|connect failed/;

/** The notice ssh gives for each new test host's key, which UserKnownHostsFile=/dev/null makes on every dial. */
const KNOWN_HOSTS_NOTICE = /^Warning: Permanently added .* to the list of known hosts\.\r?\n/gm;

/**
 * Runs `text` on the command's host; resolves with its output, rejects with CommandFailed on a non-zero exit. Like
 * the command provider, it dials again while the host does not answer yet (a booting machine), up to the
 * connection's dialErrorLimit, each dial bounded by perDialTimeout.
 */
export async function runOverSsh(inputs: CommandInputs, text: string, stdin?: string, label = "command"): Promise<CommandResult> {
    const errorLimit = inputs.connection.dialErrorLimit ?? 0;
    // The provider's backoff between dials: 100 ms, growing by half, capped at 5 s.
    let pause = 100;
    const began = Date.now();
    for (let errors = 0; ; errors++) {
        const attempt = Date.now();
        try {
            return { ...await runOnce(inputs, text, stdin, label), dialSeconds: (attempt - began) / 1000 };
        } catch (e) {
            const dialFailed = e instanceof CommandFailed && e.result.code === 255 && DIAL_ERROR.test(e.result.stderr);
            if (!dialFailed || errors >= errorLimit) {
                throw e;
            }
            await new Promise((resolve) => setTimeout(resolve, pause));
            pause = Math.min(pause * 1.5, 5000);
        }
    }
}

/**
 * ssh's options for one hop: its key, port and bounds, with no host-key prompt (test hosts are new each run). The
 * log level stays at ssh's default: a quieter one hides the line that tells a refused login from a failed command.
 */
function hopOptions(connection: Omit<Connection, "proxy">): string[] {
    const { port = 22, privateKey, perDialTimeout = 10 } = connection;
    if (!privateKey) {
        throw new Error("the command's connection has no private key");
    }
    return [
        "-i", keyFile(privateKey),
        "-p", String(port),
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", `ConnectTimeout=${perDialTimeout}`,
    ];
}

/** An argument quoted for the shell ssh runs a ProxyCommand with. */
const shellQuote = (arg: string) => `'${arg.replace(/'/g, "'\\''")}'`;

function runOnce(inputs: CommandInputs, text: string, stdin: string | undefined, label: string): Promise<CommandResult> {
    const { host, user = "root", proxy } = inputs.connection;
    // The proxy's own ssh opens a channel to the target from the proxy host, as the provider's proxy dial does.
    const viaProxy = proxy
        ? ["-o", `ProxyCommand=${["ssh", ...hopOptions(proxy), "-W", "%h:%p", `${proxy.user ?? "root"}@${proxy.host}`].map(
            (arg) => (arg === "%h:%p" ? arg : shellQuote(arg))).join(" ")}`]
        : [];
    const args = [...hopOptions(inputs.connection), ...viaProxy, `${user}@${host}`, text];
    const started = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
        const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", reject);
        child.on("close", (code) => {
            const result = {
                stdout,
                stderr: stderr.replace(KNOWN_HOSTS_NOTICE, ""),
                code: code ?? -1,
                seconds: Number(process.hrtime.bigint() - started) / 1e9,
            };
            if (result.code === 0) {
                resolve(result);
            } else {
                reject(new CommandFailed(result, label));
            }
        });
        child.stdin.on("error", () => undefined);
        child.stdin.end(stdin ?? "");
    });
}

export function cleanupKeys(): void {
    if (keyDir) {
        fs.rmSync(keyDir, { recursive: true, force: true });
        keyDir = undefined;
        keyFiles.clear();
    }
}
