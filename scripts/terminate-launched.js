#!/usr/bin/env node
/**
 * Terminates every instance that Ray's autoscaler launched for this stack and waits until EC2 reports each one
 * terminated, so the stack can then delete the security groups and subnets they used (EC2 refuses while they are in
 * use). `pulumi destroy`, and turning elastic groups off, run it on the user's machine with the user's AWS
 * credentials, so a stopped or crashed head never blocks it. Instances are found by tag: each --tag KEY=VALUE must
 * match. Usage:
 *   node scripts/terminate-launched.js [--region REGION] [--profile PROFILE] --tag KEY=VALUE... [--timeout SECONDS]
 * --region and --profile carry the stack's aws:region and aws:profile, so the sweep reaches the account and region
 * the stack's provider does even when they are set only in Pulumi config.
 */
"use strict";
// eslint-disable-next-line @typescript-eslint/no-require-imports -- plain CommonJS, run by node without a build
const { EC2Client, DescribeInstancesCommand, TerminateInstancesCommand } = require("@aws-sdk/client-ec2");

/** Every state but terminated: a stopped or stopping instance still holds its network interface. */
const LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"];

function parseArgs(argv) {
    const args = { region: undefined, profile: undefined, tags: [], timeoutSeconds: 600 };
    for (let i = 0; i < argv.length; i += 2) {
        const [flag, value] = [argv[i], argv[i + 1]];
        if (value === undefined) {
            throw new Error(`${flag} needs a value`);
        }
        if (flag === "--region") {
            args.region = value || undefined;
        } else if (flag === "--profile") {
            args.profile = value || undefined;
        } else if (flag === "--tag") {
            const at = value.indexOf("=");
            if (at < 1) {
                throw new Error(`--tag wants KEY=VALUE, got ${value}`);
            }
            args.tags.push({ Name: `tag:${value.slice(0, at)}`, Values: [value.slice(at + 1)] });
        } else if (flag === "--timeout") {
            args.timeoutSeconds = Number(value);
        } else {
            throw new Error(`unknown argument: ${flag}`);
        }
    }
    if (args.tags.length === 0) {
        // Without a tag filter this would terminate every instance the credentials reach.
        throw new Error("at least one --tag is required");
    }
    return args;
}

async function liveInstances(ec2, filters) {
    const found = [];
    let NextToken;
    do {
        const page = await ec2.send(new DescribeInstancesCommand({
            Filters: [...filters, { Name: "instance-state-name", Values: LIVE_STATES }], NextToken,
        }));
        for (const reservation of page.Reservations ?? []) {
            for (const instance of reservation.Instances ?? []) {
                found.push({ id: instance.InstanceId, state: instance.State?.Name ?? "unknown" });
            }
        }
        NextToken = page.NextToken;
    } while (NextToken);
    return found;
}

async function main() {
    const args = parseArgs(process.argv.slice(2));
    const ec2 = new EC2Client({ region: args.region, profile: args.profile });
    const deadline = Date.now() + args.timeoutSeconds * 1000;
    const asked = new Set();
    for (;;) {
        const live = await liveInstances(ec2, args.tags);
        if (live.length === 0) {
            console.log(`terminate-launched: ${asked.size} launched instance(s) terminated; none left`);
            return;
        }
        const toTerminate = live.filter((i) => i.state !== "shutting-down" && !asked.has(`${i.id}:${i.state}`));
        if (toTerminate.length > 0) {
            await ec2.send(new TerminateInstancesCommand({ InstanceIds: toTerminate.map((i) => i.id) }));
            toTerminate.forEach((i) => asked.add(`${i.id}:${i.state}`));
            console.log(`terminate-launched: terminating ${toTerminate.map((i) => i.id).join(", ")}`);
        }
        if (Date.now() > deadline) {
            throw new Error(`launched instances still not terminated after ${args.timeoutSeconds}s: ` +
                live.map((i) => `${i.id} (${i.state})`).join(", "));
        }
        await new Promise((resolve) => setTimeout(resolve, 2000));
    }
}

main().catch((e) => {
    console.error(`terminate-launched: ${e.message}`);
    process.exit(1);
});
