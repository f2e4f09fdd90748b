/**
 * Each booted host's instance metadata service: AWS's amazon-ec2-metadata-mock at 169.254.169.254 in the host's own
 * network namespace (test/e2e/machines.sh imds), serving what EC2 would for that instance: its id and address, and the
 * credentials of the role its instance profile names (test/harness/s3-emulator.ts). It requires IMDSv2's token
 * handshake when the instance's metadata options require tokens, and serves nothing when they disable the endpoint.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { BootedHosts } from "./machines";
import { RoleCredentials } from "./s3-emulator";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
/** What tools/metadata-mock.sh builds (npm test's pretest); RAY_CLUSTER_METADATA_MOCK overrides the folder. */
export const METADATA_MOCK = path.join(process.env.RAY_CLUSTER_METADATA_MOCK ??
    path.join(__dirname, "..", "..", ".cache", "metadata-mock"), "bin", "ec2-metadata-mock");

/** What EC2 knows of an instance and hands it through its metadata. */
export interface InstanceFacts {
    instanceId: string;
    privateIp: string;
    region: string;
    role: string;
    credentials: RoleCredentials;
    /** The instance's own metadataOptions input. */
    metadataOptions: { httpEndpoint?: string; httpTokens?: string; httpPutResponseHopLimit?: number };
}

export function serveInstanceMetadata(hosts: BootedHosts, node: string, facts: InstanceFacts): void {
    if (!fs.existsSync(METADATA_MOCK)) {
        throw new Error(`no instance metadata mock at ${METADATA_MOCK}; npm test's pretest builds it (tools/metadata-mock.sh)`);
    }
    if (facts.metadataOptions.httpEndpoint !== "enabled") {
        return;
    }
    const identity = {
        accountId: "123456789012", architecture: "x86_64", availabilityZone: `${facts.region}a`, imageId: "ami-e2e",
        instanceId: facts.instanceId, instanceType: "t3.small", pendingTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        privateIp: facts.privateIp, region: facts.region, version: "2017-09-30",
    };
    const config = {
        metadata: {
            paths: { "iam-security-credentials": `/latest/meta-data/iam/security-credentials/${facts.role}` },
            values: {
                "instance-id": facts.instanceId,
                "local-ipv4": facts.privateIp,
                "placement-region": facts.region,
                "placement-availability-zone": `${facts.region}a`,
                "iam-info": { Code: "Success", LastUpdated: identity.pendingTime,
                    InstanceProfileArn: `arn:aws:iam::${identity.accountId}:instance-profile/${facts.role}`, InstanceProfileId: "AIPAE2E" },
                "iam-security-credentials-role": facts.role,
                "iam-security-credentials": { Code: "Success", LastUpdated: identity.pendingTime, Type: "AWS-HMAC", ...facts.credentials },
            },
        },
        dynamic: { values: { "instance-identity-document": identity } },
    };
    const file = path.join(hosts.state, "hosts", node, "imds.json");
    fs.writeFileSync(file, JSON.stringify(config));
    const imdsv2 = facts.metadataOptions.httpTokens === "required";
    execFileSync("bash", [MACHINES_SH, "imds", hosts.state, node, METADATA_MOCK, file, imdsv2 ? "v2" : "v1"], { stdio: "inherit" });
}
