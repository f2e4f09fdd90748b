// Loads index.ts exactly as `pulumi up` does: @pulumi/pulumi's own program runner (cmd/run/run.js), which
// registers ts-node with this project's tsconfig. Only the engine is replaced, by the SDK's mock monitor.
// Prints the registered resources and the stack outputs as JSON on the last line.
"use strict";
const path = require("path");
const pulumi = require("@pulumi/pulumi");
// run.js imports its sibling index.js, whose import runs the language host's main() (argument parsing, a gRPC
// connection to the engine). Only that sibling is replaced; run() itself is the CLI's code, unchanged.
const runIndex = require.resolve("@pulumi/pulumi/cmd/run/index.js");
require.cache[runIndex] = { id: runIndex, filename: runIndex, loaded: true,
    exports: { nodeJSProcessExitedAfterLoggingUserActionableMessage: 32 } };
const { run } = require("@pulumi/pulumi/cmd/run/run.js");

const projectDir = path.resolve(__dirname, "..", "..");
const registered = [];

async function main() {
    await pulumi.runtime.setMocks({
        newResource: (args) => {
            registered.push({ type: args.type, name: args.name });
            return { id: `${args.name}-id`, state: {
                ...args.inputs,
                publicIp: "198.51.100.10",
                privateIp: "10.0.1.10",
                publicKeyOpenssh: "ssh-ed25519 AAAAtest cli",
                privateKeyOpenssh: "test-key",
                result: "test-token",
                bucket: args.name,
                arn: `arn:aws:s3:::${args.name}`,
                stdout: '{"aliveNodes": 3}',
            } };
        },
        call: (args) => (args.token === "aws:ec2/getAmi:getAmi" ? { id: "ami-0123456789abcdef0" } : { names: ["us-east-1a"] }),
    }, "ray-cluster", "dev", false);
    let failed;
    const outputs = await run(
        { _: ["."], pwd: projectDir },
        () => undefined,
        (err) => { failed = err; },
        () => false,
    );
    if (failed) {
        throw failed;
    }
    process.stdout.write(`\n${JSON.stringify({ registered, outputs: Object.keys(outputs ?? {}) })}\n`);
}

main().catch((err) => {
    console.error(`cli-run: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
});
