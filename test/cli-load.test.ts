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

test("a structured workerGroups reaches the program as the CLI passes it, JSON text, and builds its nodes", () => {
    const groups = [{ name: "cpu", instanceType: "c7i.large", count: 2 }];
    const result = runLikeTheCli({ PULUMI_CONFIG: JSON.stringify({ "ray-cluster:workerGroups": JSON.stringify(groups) }) });
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split("\n").pop()!);
    const names = report.registered.filter((r: { type: string }) => r.type === "aws:ec2/instance:Instance").map((r: { name: string }) => r.name);
    assert.deepEqual(names.sort(), ["ray-cluster-cpu-1", "ray-cluster-cpu-2", "ray-cluster-headnode", "ray-cluster-worker-1", "ray-cluster-worker-2"]);
});

test("several mistakes fail through the runner together, each named", () => {
    const result = runLikeTheCli({ PULUMI_CONFIG: JSON.stringify({
        "ray-cluster:workerCount": "-3",
        "ray-cluster:connectVia": "vpn",
        "ray-cluster:workerGroups": JSON.stringify([{ name: "gpu", instanceType: "g5.xlarge" }]),
    }) });
    assert.notEqual(result.status, 0);
    const output = result.stdout + result.stderr;
    assert.match(output, /3 problems in the stack's config/);
    assert.match(output, /invalid config 'ray-cluster:workerCount': got "-3"/);
    assert.match(output, /invalid config 'ray-cluster:connectVia': got "vpn", expected one of 'public', 'private'/);
    assert.match(output, /invalid config 'ray-cluster:workerGroups': group 'gpu' field 'count': got nothing \(unset\)/);
});
