/**
 * The booted hosts' instance metadata service, AWS's amazon-ec2-metadata-mock as tools/metadata-mock.sh builds it,
 * on this machine's loopback: a node's SDK clients ask it for tokens and credentials at the same time (each Ray worker
 * that opens S3 does), and it must answer them all, as EC2's does.
 */
import * as assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { test } from "node:test";
import { METADATA_MOCK, skipWithoutMock } from "./harness/instance-metadata";
import { freePort } from "./harness/ports";

const ROLE = "ray-cluster-role-test";

/** One request on a connection of its own, as separate processes make them; its status and body. */
function request(port: number, method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false, timeout: 10_000 }, (res) => {
            let body = "";
            res.setEncoding("utf8").on("data", (chunk) => (body += chunk)).on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on("timeout", () => req.destroy(new Error(`${method} ${path}: no answer in 10s`))).on("error", reject).end();
    });
}

/** IMDSv2 as an SDK does it: a token, then the role's credentials with it. */
async function credentials(port: number): Promise<string> {
    const token = await request(port, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": "21600" });
    assert.equal(token.status, 200, `token: ${token.status} ${token.body}`);
    const answer = await request(port, "GET", `/latest/meta-data/iam/security-credentials/${ROLE}`, { "X-aws-ec2-metadata-token": token.body });
    assert.equal(answer.status, 200, `credentials: ${answer.status} ${answer.body}`);
    return JSON.parse(answer.body).AccessKeyId;
}

test("the rig's metadata service answers 300 rounds of 64 clients asking for a token and credentials at once, and stays up",
    async (t) => {
        if (skipWithoutMock(t)) {
            return;
        }
        const port = await freePort();
        const dir = fs.mkdtempSync("/tmp/imds-");
        const config = `${dir}/config.json`;
        fs.writeFileSync(config, JSON.stringify({ metadata: {
            paths: { "iam-security-credentials": `/latest/meta-data/iam/security-credentials/${ROLE}` },
            values: { "iam-security-credentials-role": ROLE, "iam-security-credentials": { Code: "Success", Type: "AWS-HMAC",
                AccessKeyId: "ASIATEST", SecretAccessKey: "secret", Token: "token", Expiration: "2100-01-01T00:00:00Z" } },
        } }));
        let stderr = "";
        const mock = spawn(METADATA_MOCK, ["--hostname", "127.0.0.1", "--port", String(port), "--imdsv2", "--config-file", config],
            { stdio: ["ignore", "ignore", "pipe"] });
        mock.stderr.setEncoding("utf8").on("data", (chunk) => (stderr = (stderr + chunk).slice(-4000)));
        try {
            for (let attempt = 0; ; attempt++) {
                try {
                    await request(port, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": "60" });
                    break;
                } catch (e) {
                    assert.ok(attempt < 50, `the mock never listened on ${port}: ${e}\n${stderr}`);
                    await new Promise((resolve) => setTimeout(resolve, 100));
                }
            }
            for (let round = 0; round < 300; round++) {
                const answers = await Promise.allSettled(Array.from({ length: 64 }, () => credentials(port)));
                const failed = answers.filter((a) => a.status === "rejected").map((a) => String((a as PromiseRejectedResult).reason));
                assert.deepEqual(failed, [], `round ${round + 1}: ${failed.length} of 64 failed; the mock's last words:\n${stderr}`);
                assert.ok(answers.every((a) => a.status === "fulfilled" && a.value === "ASIATEST"));
            }
            assert.equal(mock.exitCode, null, `the mock exited:\n${stderr}`);
        } finally {
            mock.kill();
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
