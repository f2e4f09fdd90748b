/**
 * Each booted host's instance metadata service: AWS's amazon-ec2-metadata-mock at 169.254.169.254 in the host's own
 * network namespace (test/e2e/machines.sh imds), serving what EC2 would for that instance: its id and address, and the
 * credentials of the role its instance profile names (test/harness/s3-emulator.ts). It requires IMDSv2's token
 * handshake when the instance's metadata options require tokens, and serves nothing when they disable the endpoint.
 */
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { BootedHosts } from "./machines";
import { RoleCredentials } from "./s3-emulator";
import type { LaunchFacts } from "../../tools/render";

const MACHINES_SH = path.join(__dirname, "..", "e2e", "machines.sh");
/** What tools/metadata-mock.sh builds (npm test's pretest); RAY_CLUSTER_METADATA_MOCK overrides the folder. */
export const METADATA_MOCK = path.join(process.env.RAY_CLUSTER_METADATA_MOCK ??
    path.join(__dirname, "..", "..", ".cache", "metadata-mock"), "bin", "ec2-metadata-mock");

/**
 * Skips a loopback test of the mock in the quick suite when it is not built (npm test always builds it); whether it
 * skipped.
 */
export function skipWithoutMock(t: { skip: (why: string) => void }): boolean {
    if (!fs.existsSync(METADATA_MOCK) && process.env.RAY_CLUSTER_TEST_MODE === "quick") {
        t.skip("the metadata mock is not built (bash tools/metadata-mock.sh); npm test builds it");
        return true;
    }
    return false;
}

/** What EC2 knows of an instance and hands it through its metadata. */
export interface InstanceFacts {
    instanceId: string;
    /** The type and image the instance's request named. */
    instanceType: string;
    imageId: string;
    privateIp: string;
    region: string;
    role: string;
    credentials: RoleCredentials;
    /** The instance's own metadataOptions input. */
    metadataOptions: { httpEndpoint?: string; httpTokens?: string; httpPutResponseHopLimit?: number };
    /**
     * A spot interruption notice EC2 has sent (its action and time), and when a rebalance recommendation was; none of
     * either unless given, as for an instance EC2 leaves alone.
     */
    spot?: { notice?: { action: "terminate" | "stop" | "hibernate"; time: Date }; rebalanceAt?: Date };
}

/** Where the mock's notices go when EC2 has sent none: past any test's end, so the paths answer 404 as EC2's do. */
const NEVER = "2100-01-01T00:00:00Z";
const rfc3339 = (when: Date) => when.toISOString().replace(/\.\d+Z$/, "Z");

/** Temporary credentials of a role, as STS would issue them for an instance profile: fresh keys, valid for 6 hours. */
export function roleCredentials(role: string): RoleCredentials {
    const random = (n: number) => crypto.randomBytes(n).toString("hex").toUpperCase();
    return { AccessKeyId: `ASIA${random(8)}`, SecretAccessKey: random(20), Token: `${role}-${random(16)}`,
        Expiration: new Date(Date.now() + 6 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z") };
}

export function serveInstanceMetadata(hosts: BootedHosts, node: string, facts: InstanceFacts): void {
    if (!fs.existsSync(METADATA_MOCK)) {
        throw new Error(`no instance metadata mock at ${METADATA_MOCK}; npm test's pretest builds it (tools/metadata-mock.sh)`);
    }
    if (facts.metadataOptions.httpEndpoint !== "enabled") {
        return;
    }
    const identity = {
        accountId: "123456789012", architecture: "x86_64", availabilityZone: `${facts.region}a`, imageId: facts.imageId,
        instanceId: facts.instanceId, instanceType: facts.instanceType, pendingTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
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
    // The mock serves a notice from its trigger time on (the default is at once), so an instance without one gets
    // triggers that never come. A notice's own time is when EC2 acts on it.
    const notice = facts.spot?.notice;
    const spot = ["--mock-trigger-time", notice ? rfc3339(new Date(Date.now() - 1000)) : NEVER,
        ...(notice ? ["--action", notice.action, "--time", rfc3339(notice.time)] : []),
        "--rebalance-trigger-time", facts.spot?.rebalanceAt ? rfc3339(facts.spot.rebalanceAt) : NEVER];
    // The spot subcommand serves every path the plain mock does, and takes a notice's action and time.
    execFileSync("bash", [MACHINES_SH, "imds", hosts.state, node, METADATA_MOCK, file, imdsv2 ? "v2" : "v1", "spot", ...spot],
        { stdio: "inherit" });
}

/**
 * The metadata of a stack instance the rig just launched, from the instance's own inputs and what the account
 * resolved them to (render's LaunchFacts): its role's fresh credentials, which it returns, and nothing else.
 */
export function serveLaunchedInstance(hosts: BootedHosts, node: string, instanceId: string, inputs: Record<string, any>,
    account: LaunchFacts, region: string): RoleCredentials {
    if (!account.role) {
        throw new Error(`${node}: its instance profile ${inputs.iamInstanceProfile} holds no role the stack made`);
    }
    const credentials = roleCredentials(account.role);
    serveInstanceMetadata(hosts, node, { instanceId, instanceType: inputs.instanceType, imageId: inputs.ami, privateIp: hosts.nodeIp(node),
        region, role: account.role, credentials, metadataOptions: inputs.metadataOptions ?? {} });
    return credentials;
}
