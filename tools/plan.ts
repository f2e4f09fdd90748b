/**
 * Shows what a stack config builds, or what changing one config into another would do, with no AWS account:
 *   npm run plan -- Pulumi.dev.yaml
 *   npm run plan -- --diff Pulumi.dev.yaml Pulumi.big.yaml
 * It renders the program under Pulumi mocks, so names, inputs and dependencies are the program's own; values
 * AWS assigns (ids, IPs) are placeholders.
 */
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { render, reveal, StackConfig } from "./render";
import { diffGraphs, diffText, planText } from "./graph";

/** Reads the `config:` of a Pulumi stack file; its stack name comes from Pulumi.<stack>.yaml. */
export function readStackFile(file: string): { stack: string; config: StackConfig } {
    const doc = (yaml.load(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const config: StackConfig = {};
    for (const [key, value] of Object.entries(doc.config ?? {})) {
        if (typeof value === "object" && value !== null && !Array.isArray(value)) {
            throw new Error(`${file}: ${key} is encrypted or structured; plan takes plain values only`);
        }
        config[key] = value as StackConfig[string];
    }
    const stack = /^Pulumi\.(.+)\.ya?ml$/.exec(path.basename(file))?.[1] ?? "dev";
    return { stack, config };
}

/** Renders a stack file; a diff renders both files as the first file's stack, as one stack's config change. */
async function renderFile(file: string, stackOverride?: string) {
    const { stack, config } = readStackFile(file);
    const rendered = await render(config, { stack: stackOverride ?? stack });
    if (rendered.error) {
        throw new Error(`${file}: ${rendered.error.message}`);
    }
    return rendered;
}

async function main(args: string[]): Promise<string> {
    if (args[0] === "--diff" && args.length === 3) {
        const before = await renderFile(args[1]);
        const after = await renderFile(args[2], readStackFile(args[1]).stack);
        return diffText(diffGraphs(before.resources, after.resources));
    }
    if (args.length === 1 && !args[0].startsWith("-")) {
        return planText((await renderFile(args[0])).resources, reveal);
    }
    throw new Error("usage: npm run plan -- STACK_FILE | npm run plan -- --diff STACK_FILE_A STACK_FILE_B");
}

main(process.argv.slice(2)).then((text) => console.log(text), (err: Error) => {
    console.error(`plan: ${err.message}`);
    process.exit(1);
});
