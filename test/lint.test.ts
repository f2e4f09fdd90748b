import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { test } from "node:test";

test("lint rejects deprecated @pulumi/aws APIs", () => {
    const fixture = path.join(__dirname, "fixtures", "deprecated.ts");
    const result = spawnSync(process.execPath, [path.join(__dirname, "..", "node_modules", "eslint", "bin", "eslint.js"), "--no-ignore", fixture],
        { encoding: "utf8", cwd: path.join(__dirname, "..") });
    assert.equal(result.status, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /`BucketVersioningV2` is deprecated.*@typescript-eslint\/no-deprecated/);
});
