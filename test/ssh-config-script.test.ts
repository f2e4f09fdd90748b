import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { render } from "../tools/render";

const SCRIPT = path.join(__dirname, "..", "scripts", "ssh-config.sh");

test("ssh-config.sh installs the key and the block, and re-running replaces the block without touching the rest", async () => {
    const { outputs } = await render({ sshIdentityFile: "~/.ssh/ray-test.pem" });
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-home-"));
    try {
        fs.mkdirSync(path.join(home, ".ssh"));
        const mine = "Host bastion\n    HostName 192.0.2.1\n    User me\n";
        fs.writeFileSync(path.join(home, ".ssh", "config"), mine);
        const runScript = () => spawnSync("bash", [SCRIPT], { input: JSON.stringify(outputs), encoding: "utf8", env: { ...process.env, HOME: home } });

        const first = runScript();
        assert.equal(first.status, 0, first.stderr);
        const key = path.join(home, ".ssh", "ray-test.pem");
        assert.equal(fs.readFileSync(key, "utf8"), `${outputs.sshPrivateKey.trimEnd()}\n`);
        assert.equal(fs.statSync(key).mode & 0o777, 0o600);
        const once = fs.readFileSync(path.join(home, ".ssh", "config"), "utf8");
        assert.equal(once, `# BEGIN ray-cluster\n${outputs.sshConfig.trimEnd()}\n# END ray-cluster\n${mine}`);

        assert.equal(runScript().status, 0);
        assert.equal(fs.readFileSync(path.join(home, ".ssh", "config"), "utf8"), once, "a re-run changes nothing");

        const moved = { ...outputs, sshConfig: outputs.sshConfig.replace("198.51.100.10", "198.51.100.99") };
        assert.equal(spawnSync("bash", [SCRIPT], { input: JSON.stringify(moved), encoding: "utf8", env: { ...process.env, HOME: home } }).status, 0);
        const replaced = fs.readFileSync(path.join(home, ".ssh", "config"), "utf8");
        assert.equal((replaced.match(/# BEGIN ray-cluster/g) ?? []).length, 1, "never duplicated");
        assert.match(replaced, /HostName 198\.51\.100\.99/);
        assert.doesNotMatch(replaced, /HostName 198\.51\.100\.10\n/);
        assert.ok(replaced.endsWith(mine), "the user's own entries are kept");
    } finally {
        fs.rmSync(home, { recursive: true, force: true });
    }
});

test("ssh-config.sh refuses outputs without the secret key, saying how to get it", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-home-"));
    try {
        const result = spawnSync("bash", [SCRIPT], { input: JSON.stringify({ sshConfig: "Host x\n", sshPrivateKey: "[secret]" }),
            encoding: "utf8", env: { ...process.env, HOME: home } });
        assert.notEqual(result.status, 0);
        assert.match(result.stderr, /--show-secrets/);
        assert.ok(!fs.existsSync(path.join(home, ".ssh", "config")));
    } finally {
        fs.rmSync(home, { recursive: true, force: true });
    }
});
