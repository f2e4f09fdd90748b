/** Brings the namespace test hosts of test/e2e/hosts.sh up and down around a test. */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";

import * as path from "node:path";

const HOSTS_SH = path.join(__dirname, "..", "e2e", "hosts.sh");
const SUBNET = "10.213.0";

/** The wheelhouse .ci/run fills with `pip download`; RAY_CLUSTER_WHEELHOUSE overrides it. */
export const WHEELHOUSE = process.env.RAY_CLUSTER_WHEELHOUSE ?? path.join(__dirname, "..", "..", ".cache", "wheelhouse");

export class TestHosts {
    public readonly state: string;
    public privateKey = "";
    public publicKey = "";
    public indexUrl = "";

    constructor(private readonly octets: Record<string, number>) {
        // Not below /tmp: every host mounts its own /tmp, which would hide the state dir from its sshd.
        fs.mkdirSync("/var/tmp", { recursive: true });
        this.state = fs.mkdtempSync(path.join("/var/tmp", "ray-cluster-e2e-"));
    }

    address(node: string): string {
        return `${SUBNET}.${this.octets[node]}`;
    }

    up(): void {
        if (!fs.existsSync(WHEELHOUSE) || fs.readdirSync(WHEELHOUSE).length === 0) {
            throw new Error(`no wheelhouse at ${WHEELHOUSE}; .ci/run fills it with pip download`);
        }
        const key = path.join(this.state, "id_ed25519");
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ray-cluster-e2e", "-f", key]);
        this.privateKey = fs.readFileSync(key, "utf8");
        this.publicKey = fs.readFileSync(`${key}.pub`, "utf8");
        // A previous run killed before its cleanup leaves the bridge behind.
        execFileSync("bash", [HOSTS_SH, "down-stale"], { stdio: "inherit" });
        execFileSync("bash", [HOSTS_SH, "up", path.join(this.state, "hosts"), WHEELHOUSE, `${key}.pub`,
            ...Object.values(this.octets).map((octet, i) => `h${i + 1}=${octet}`)], { stdio: "inherit" });
        this.indexUrl = fs.readFileSync(path.join(this.state, "hosts", "index-url"), "utf8").trim();
    }

    down(): void {
        execFileSync("bash", [HOSTS_SH, "down", path.join(this.state, "hosts")], { stdio: "inherit" });
        fs.rmSync(this.state, { recursive: true, force: true });
    }
}

