import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";

const RUNNER = path.join(__dirname, "harness", "cli-run.js");

function runLikeTheCli(env: Record<string, string>) {
    // A fresh plain `node`, as the language host starts it: no ts-node preloaded, TypeScript on.
    return spawnSync(process.execPath, [RUNNER], {
        encoding: "utf8",
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PULUMI_NODEJS_TYPESCRIPT: "true", ...env },
        timeout: 120_000,
    });
}

test("the Pulumi CLI's program runner compiles and runs index.ts with this project's tsconfig", () => {
    const result = runLikeTheCli({ PULUMI_CONFIG: JSON.stringify({ "ray-cluster:workerCount": "2" }) });
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split("\n").pop()!);
    const instances = report.registered.filter((r: { type: string }) => r.type === "aws:ec2/instance:Instance");
    assert.equal(instances.length, 3);
    for (const output of ["headPublicIp", "sshConfig", "dashboardTunnel", "rayAddress", "bucketNames", "sshPrivateKey"]) {
        assert.ok(report.outputs.includes(output), `output ${output}`);
    }
});

test("a tsconfig the runner cannot use fails here too", () => {
    const result = runLikeTheCli({ PULUMI_NODEJS_TSCONFIG_PATH: "tsconfig.missing.json" });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /tsconfig path was set to tsconfig\.missing\.json but the file was not found/);
});

test("bad config fails through the runner with the key named", () => {
    const result = runLikeTheCli({ PULUMI_CONFIG: JSON.stringify({ "ray-cluster:workerCount": "-3" }) });
    assert.notEqual(result.status, 0);
    assert.match(result.stdout + result.stderr, /invalid config 'ray-cluster:workerCount': got "-3"/);
});
