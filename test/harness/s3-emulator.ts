/**
 * S3 as the stack's nodes reach it, with IAM enforced: moto's server (test/harness/s3_emulator.py) in the booted
 * hosts' mirror namespace, holding the stack's buckets and its roles with exactly the policies the stack rendered.
 * A node's credentials are those of the role its instance profile names, handed out by its instance metadata
 * (test/harness/instance-metadata.ts); a request outside that role's grant gets S3's AccessDenied. The test itself
 * acts as an admin user, for setting up and reading what the jobs wrote.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { byType, Rendered } from "../../tools/render";
import { EC2_EMULATOR_PYTHON } from "./ec2-emulator";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
const EMULATOR_PY = path.join(__dirname, "s3_emulator.py");
export const REGION = "us-east-1";

/** Role credentials as IMDS hands them out (latest/meta-data/iam/security-credentials/ROLE). */
export interface RoleCredentials {
    AccessKeyId: string;
    SecretAccessKey: string;
    Token: string;
    Expiration: string;
}

/** The role behind an instance: its instance profile, as the instance's own inputs name it, and that profile's role. */
export function instanceRole(rendered: Rendered, node: string): string {
    const instance = byType(rendered, "aws:ec2/instance:Instance").find((i) => i.inputs.tags?.Name === node);
    const profile = byType(rendered, "aws:iam/instanceProfile:InstanceProfile").find((p) => p.outputs.name === instance?.inputs.iamInstanceProfile);
    if (!instance || !profile) {
        throw new Error(`no instance profile for ${node}: the instance names ${instance?.inputs.iamInstanceProfile}`);
    }
    return profile.inputs.role;
}

export class S3Emulator {
    public endpoint = "";
    private admin = { accessKeyId: "", secretAccessKey: "" };

    /** Starts it in the rig's mirror namespace, and makes the test's admin; the rig's down() stops it. */
    start(state: string): void {
        execFileSync("bash", [MACHINES_SH, "s3", state, EC2_EMULATOR_PYTHON, EMULATOR_PY], { stdio: "inherit" });
        this.endpoint = fs.readFileSync(path.join(state, "s3-endpoint"), "utf8").trim();
        this.admin = JSON.parse(this.python("admin"));
    }

    /** The environment in which an AWS SDK or CLI acts as the test's admin against this emulator. */
    adminEnv(): Record<string, string> {
        return { AWS_ACCESS_KEY_ID: this.admin.accessKeyId, AWS_SECRET_ACCESS_KEY: this.admin.secretAccessKey,
            AWS_ENDPOINT_URL_S3: this.endpoint, AWS_REGION: REGION, AWS_DEFAULT_REGION: REGION };
    }

    /**
     * The stack's buckets (versioned as rendered) and OTHER buckets that are not the stack's, and every role with the
     * policies rendered for it; returns each role's credentials, as EC2 would get them by assuming it.
     */
    provision(rendered: Rendered, otherBuckets: string[]): Record<string, RoleCredentials> {
        const buckets = byType(rendered, "aws:s3/bucket:Bucket");
        const versioned = byType(rendered, "aws:s3/bucketVersioning:BucketVersioning")
            .filter((v) => v.inputs.versioningConfiguration?.status === "Enabled")
            .map((v) => buckets.find((b) => `${b.name}-id` === v.inputs.bucket || b.outputs.bucket === v.inputs.bucket)?.outputs.bucket);
        const roles = Object.fromEntries(byType(rendered, "aws:iam/role:Role").map((role) => [role.outputs.name,
            Object.fromEntries(byType(rendered, "aws:iam/rolePolicy:RolePolicy")
                .filter((p) => p.inputs.role === `${role.name}-id`)
                .map((p) => [p.name, p.inputs.policy]))]));
        const spec = { buckets: [...buckets.map((b) => b.outputs.bucket), ...otherBuckets], versioned, roles };
        return JSON.parse(this.python("provision", "--spec", JSON.stringify(spec)));
    }

    /** Runs Python with boto3 as the test's admin (the EC2 emulator's venv); returns its stdout. */
    python(...args: string[]): string {
        return execFileSync(EC2_EMULATOR_PYTHON, args[0] === "-c" ? args : [EMULATOR_PY, ...args, "--endpoint", this.endpoint],
            { encoding: "utf8", env: { ...process.env, ...(this.admin.accessKeyId ? this.adminEnv() : {}) } }).trim();
    }
}
