import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import { inlinedScript, readScript, SCRIPTS_DIR, SOURCE_LIB_LINE } from "../src/scripts";
import { byName, byType, Rendered, render, reveal } from "../tools/render";

const commands = (r: Rendered) => byType(r, "command:remote:Command");
const urnOf = (r: Rendered, name: string) => byName(r, name).urn;
const dependsOn = (r: Rendered, name: string, other: string) => byName(r, name).dependencies.includes(urnOf(r, other));

describe("the bootstrap's command graph", () => {
    test("prepare → install per node in parallel; head start; worker starts after the head; verify last", async () => {
        const r = await render();
        const c = (n: string) => `ray-cluster-${n}`;
        for (const node of ["headnode", "worker-1", "worker-2"]) {
            assert.ok(dependsOn(r, c(`${node}-install`), c(`${node}-prepare`)));
            assert.ok(dependsOn(r, c(`${node}-prepare`), c(`${node}-running`)), "a node's commands wait until its instance runs");
            assert.ok(dependsOn(r, c(`${node}-running`), c(node)));
            for (const other of ["headnode", "worker-1", "worker-2"].filter((o) => o !== node)) {
                assert.ok(!dependsOn(r, c(`${node}-install`), c(`${other}-install`)), "installs are independent");
                assert.ok(!dependsOn(r, c(`${node}-install`), c(`${other}-start`)));
            }
        }
        assert.ok(dependsOn(r, c("headnode-start"), c("headnode-install")));
        for (const worker of ["worker-1", "worker-2"]) {
            assert.ok(dependsOn(r, c(`${worker}-start`), c("headnode-start")));
            assert.ok(dependsOn(r, c(`${worker}-start`), c(`${worker}-install`)));
            assert.ok(dependsOn(r, c("verify"), c(`${worker}-start`)));
        }
    });

    test("starts stop Ray on delete, are replaced delete-first, and workers rejoin a replaced head", async () => {
        const r = await render();
        for (const start of commands(r).filter((x) => x.name.endsWith("-start"))) {
            assert.match(start.inputs.delete, /stop-ray\.sh/);
            assert.equal(start.options.deleteBeforeReplace, true, start.name);
        }
        assert.deepEqual(byName(r, "ray-cluster-worker-1-start").inputs.triggers, ["ray-cluster-headnode-id"]);
    });

    test("commands carry their parameters in the text, SSH bounds, and the index override", async () => {
        const r = await render({ packageIndexUrl: "https://pypi.example.com/simple/", rayVersion: "2.55.1", connectVia: "private", bootstrapTimeoutSeconds: 300 });
        const install = reveal(byName(r, "ray-cluster-worker-1-install"));
        assert.match(install.inputs.create, / install-ray\.sh --version 2\.55\.1 --installer uv --index-url https:\/\/pypi\.example\.com\/simple\/$/);
        assert.equal(install.inputs.environment, undefined, "sshd drops client environment");
        assert.equal(install.inputs.connection.host, "10.0.1.11", "connectVia private");
        assert.equal(install.inputs.connection.dialErrorLimit, 60);
        assert.equal(install.inputs.connection.perDialTimeout, 15);
        assert.equal(install.options.customTimeouts?.create, "900s");
        assert.match(byName(r, "ray-cluster-worker-2-start").inputs.create, /--address 10\.0\.1\.10:6379 --timeout 300 --labels ray-cluster\/group=worker$/);
        assert.match(byName(r, "ray-cluster-headnode-start").inputs.create, /--node-ip 10\.0\.1\.10 --port 6379 --dashboard-port 8265 --timeout 300 --labels ray-cluster\/group=headnode$/);
        const publicRender = await render();
        assert.equal(reveal(byName(publicRender, "ray-cluster-worker-1-install").inputs).connection.host, "198.51.100.11");
    });

    test("bootstrapRay false builds the infrastructure only", async () => {
        const r = await render({ bootstrapRay: false });
        assert.equal(commands(r).length, 0);
        assert.equal(byType(r, "aws:ec2/instance:Instance").length, 3);
        assert.equal(r.outputs.rayClusterStatus, undefined);
    });
});

describe("node scripts", () => {
    const dir = path.join(__dirname, "..", "scripts");
    const scripts = fs.readdirSync(dir).filter((f) => f.endsWith(".sh"));

    test("are shellcheck-clean", (t) => {
        const result = spawnSync("shellcheck", scripts.map((s) => path.join(dir, s)), { encoding: "utf8" });
        if (result.error && process.env.RAY_CLUSTER_TEST_MODE === "quick") {
            t.skip("shellcheck is not installed; npm test requires it");
            return;
        }
        assert.equal(result.error, undefined, "shellcheck is installed");
        assert.equal(result.status, 0, result.stdout);
    });

    test("the Python helpers compile", () => {
        for (const helper of ["smoke_test.py", "fetch_uv.py"]) {
            const result = spawnSync("python3", ["-m", "py_compile", path.join(dir, helper)], { encoding: "utf8" });
            assert.equal(result.status, 0, result.stderr);
        }
    });

    test("the systemd units restart Ray forever, start at boot, run as the login user and hold no secret", () => {
        for (const [unit, role] of [["ray-head.service", "head"], ["ray-worker.service", "worker"]]) {
            const text = readScript(unit);
            for (const line of ["User=@USER@", "EnvironmentFile=@SETTINGS@", "Restart=always", "StartLimitIntervalSec=0",
                "WantedBy=multi-user.target", `ExecStart=/usr/local/lib/ray-cluster/ray-node-run.sh ${role}`]) {
                assert.ok(text.split("\n").includes(line), `${unit} lacks ${line}`);
            }
            const settings = text.split("\n").filter((line) => !line.startsWith("#"));
            assert.ok(!settings.some((line) => /token/i.test(line)), `${unit} sets a token`);
        }
    });

    test("every node script has each sibling file it reads inlined, so it runs on a node with no scripts/", () => {
        const scripts = fs.readdirSync(SCRIPTS_DIR).filter((f) => f.endsWith(".sh") && readScript(f).includes(SOURCE_LIB_LINE));
        assert.ok(scripts.length >= 10, scripts.join(" "));
        for (const script of scripts) {
            // A script may carry other scripts' text for a node to run (the autoscaler's bundle): only its own reads count.
            const lines = inlinedScript(script).split("\n");
            for (const read of readScript(script).split("\n").filter((line) => /^[A-Za-z0-9_]+=\$\(cat "\$\(dirname "\$\{BASH_SOURCE/.test(line))) {
                assert.ok(!lines.includes(read), `${script} still reads a sibling file: ${read}`);
            }
        }
    });

    test("the start commands carry the units and the runner inlined, byte for byte", () => {
        for (const [script, unit] of [["start-head.sh", "ray-head.service"], ["start-worker.sh", "ray-worker.service"]]) {
            const text = inlinedScript(script);
            assert.doesNotMatch(text, /=\$\(cat "\$\(dirname "\$\{BASH_SOURCE/, `${script} still reads a sibling file`);
            // Run just the assignments (up to the argument parsing) and print what the variables hold.
            const assignments = text.slice(text.indexOf("RAY_UNIT_TEXT="), text.indexOf("\n\nversion="));
            const printed = spawnSync("bash", ["-c", `${assignments}\nprintf '%s\\n' "$RAY_UNIT_TEXT"; printf '%s\\n' "$RAY_RUNNER_TEXT"`],
                { encoding: "utf8" });
            assert.equal(printed.stdout, readScript(unit) + readScript("ray-node-run.sh"));
        }
    });
});
