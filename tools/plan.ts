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
import { DEFAULT_MOCK_REGION, deployedImages, RegisteredResource, Rendered, render, reveal, StackConfig } from "./render";
import { diffGraphs, diffText, imagesByNodeType, planText } from "./graph";

/** Reads the `config:` of a Pulumi stack file; its stack name comes from Pulumi.<stack>.yaml. */
export function readStackFile(file: string): { stack: string; config: StackConfig } {
    const doc = (yaml.load(fs.readFileSync(file, "utf8")) ?? {}) as { config?: Record<string, unknown> };
    const config: StackConfig = {};
    for (const [key, value] of Object.entries(doc.config ?? {})) {
        // A secret is stored as {secure: ciphertext}; without the stack's passphrase there is nothing to plan with.
        if (JSON.stringify(value).includes('"secure":')) {
            throw new Error(`${file}: ${key} is encrypted; plan takes plain values only`);
        }
        config[key] = value as StackConfig[string];
    }
    const stack = /^Pulumi\.(.+)\.ya?ml$/.exec(path.basename(file))?.[1] ?? "dev";
    return { stack, config };
}

/** Renders a stack file; a diff renders both files as the first file's stack, as one stack's config change. */
async function renderFile(file: string, stackOverride?: string, images?: Record<string, { tags: Record<string, string> }>) {
    const { stack, config } = readStackFile(file);
    const rendered = await render(config, { stack: stackOverride ?? stack, images });
    if (rendered.error) {
        throw new Error(`${file}: ${rendered.error.message}`);
    }
    return rendered;
}

/** One line per group: its nodes and their instance type, the head first. */
function nodesByGroup(resources: RegisteredResource[]): string[] {
    const groups = new Map<string, string[]>();
    // Nodes only: an image builder belongs to no group.
    for (const r of resources.filter((x) => x.type === "aws:ec2/instance:Instance" && x.inputs.tags?.["ray-cluster:group"])) {
        const group = r.inputs.tags["ray-cluster:group"];
        groups.set(group, [...(groups.get(group) ?? []), `${r.inputs.tags?.Name} (${r.inputs.instanceType})`]);
    }
    return ["nodes by group:", ...[...groups].map(([group, nodes]) => `  ${group}: ${nodes.join(", ")}`)];
}

/** AWS's NAT gateway prices in us-east-1 (VPC pricing page): per gateway-hour, and per GB it processes. */
const NAT_PRICE_REGION = "us-east-1";
const NAT_HOURLY_USD = 0.045;
const NAT_PER_GB_USD = 0.045;
/** Hours in AWS's billing month. */
const HOURS_A_MONTH = 730;

/**
 * What the NAT gateways cost whatever the cluster does: they bill every hour they exist, even with every elastic
 * group at minCount 0 and after autostop has stopped the instances. The figure is us-east-1's; other regions differ.
 */
function natCost(resources: RegisteredResource[], region: string): string {
    const count = resources.filter((r) => r.type === "aws:ec2/natGateway:NatGateway").length;
    if (count === 0) {
        return "NAT gateways: none";
    }
    const always = `NAT gateways: ${count}, billed every hour they exist, even with elastic groups at minCount 0 and after autostop`;
    if (region !== NAT_PRICE_REGION) {
        return `${always}: ${count} × ${region}'s hourly NAT gateway price, plus its price per GB processed (AWS's VPC pricing page)`;
    }
    const monthly = (count * NAT_HOURLY_USD * HOURS_A_MONTH).toFixed(2);
    return `${always}: about $${monthly} a month in ${region} (${count} × $${NAT_HOURLY_USD} an hour × ${HOURS_A_MONTH} hours), ` +
        `plus $${NAT_PER_GB_USD} per GB processed`;
}

/** Each node type's image before and after, and whether it changed. */
function imageChanges(before: Rendered, after: Rendered): string[] {
    const [a, b] = [imagesByNodeType(before), imagesByNodeType(after)];
    return ["images by node type:", ...[...new Set([...Object.keys(a), ...Object.keys(b)])].map((type) =>
        a[type] === b[type] ? `  ${type}: ${b[type]}` : `  ${type}: ${a[type] ?? "(none)"} → ${b[type] ?? "(none)"}`)];
}

async function main(args: string[]): Promise<string> {
    if (args[0] === "--diff" && args.length === 3) {
        // The first stack as deployed: the images its first `pulumi up` built are in the account, their builders gone.
        const images = deployedImages(await renderFile(args[1]));
        const before = await renderFile(args[1], undefined, images);
        const after = await renderFile(args[2], readStackFile(args[1]).stack, images);
        return [diffText(diffGraphs(before.resources, after.resources)), ...imageChanges(before, after)].join("\n");
    }
    if (args.length === 1 && !args[0].startsWith("-")) {
        const rendered = await renderFile(args[0]);
        const region = readStackFile(args[0]).config["aws:region"];
        return [`autostop: ${rendered.outputs.autostop}`, `workers: ${rendered.outputs.workerNetwork}`,
            natCost(rendered.resources, typeof region === "string" ? region : DEFAULT_MOCK_REGION), ...nodesByGroup(rendered.resources),
            "images by node type:", ...Object.entries(imagesByNodeType(rendered)).map(([type, image]) => `  ${type}: ${image}`),
            planText(rendered.resources, reveal)].join("\n");
    }
    throw new Error("usage: npm run plan -- STACK_FILE | npm run plan -- --diff STACK_FILE_A STACK_FILE_B");
}

main(process.argv.slice(2)).then((text) => console.log(text), (err: Error) => {
    console.error(`plan: ${err.message}`);
    process.exit(1);
});
