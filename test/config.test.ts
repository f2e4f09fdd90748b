import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as yaml from "js-yaml";
import { CONFIG_DEFAULTS, CONFIG_KEYS } from "../src/config";
import { render, StackConfig } from "../tools/render";

const project = yaml.load(fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8")) as {
    config: Record<string, { type: string; default: unknown; description: string }>;
};

describe("Pulumi.yaml declares the config contract", () => {
    test("every key the program reads is declared with type, default and description, and none besides", () => {
        assert.deepEqual(Object.keys(project.config).sort(), [...CONFIG_KEYS].sort());
        for (const key of CONFIG_KEYS) {
            const declared = project.config[key];
            assert.ok(declared.description.length > 10, `${key} has a description`);
            assert.deepEqual(declared.default, CONFIG_DEFAULTS[key], `${key}: Pulumi.yaml and src/config.ts agree on the default`);
            const expectedType = Array.isArray(CONFIG_DEFAULTS[key]) ? "array"
                : typeof CONFIG_DEFAULTS[key] === "number" ? "integer" : typeof CONFIG_DEFAULTS[key];
            assert.equal(declared.type, expectedType, `${key} type`);
        }
    });

    test("Pulumi.dev.yaml sets aws:region", () => {
        const dev = yaml.load(fs.readFileSync(path.join(__dirname, "..", "Pulumi.dev.yaml"), "utf8")) as { config: Record<string, string> };
        assert.match(dev.config["aws:region"], /^[a-z]{2}-[a-z]+-\d$/);
    });
});

/** Each bad config, the key the error must name, and a fragment of the expected form it must state. */
export const BAD_CONFIGS: Array<{ config: StackConfig; key: string; expected: RegExp }> = [
    { config: { workerCount: "-1" }, key: "workerCount", expected: /whole number from 0 to 100/ },
    { config: { workerCount: "1.5" }, key: "workerCount", expected: /whole number from 0 to 100/ },
    { config: { workerCount: "two" }, key: "workerCount", expected: /whole number from 0 to 100/ },
    { config: { workerCount: "101" }, key: "workerCount", expected: /whole number from 0 to 100/ },
    { config: { workerCount: "" }, key: "workerCount", expected: /whole number/ },
    { config: { volumeSizeGb: "7" }, key: "volumeSizeGb", expected: /whole number from 8 to/ },
    { config: { volumeSizeGb: "big" }, key: "volumeSizeGb", expected: /whole number from 8 to/ },
    { config: { vpcCidr: "10.0.0.0" }, key: "vpcCidr", expected: /IPv4 CIDR block/ },
    { config: { vpcCidr: "10.0.0.300/16" }, key: "vpcCidr", expected: /IPv4 CIDR block/ },
    { config: { vpcCidr: "10.0.0.1/16" }, key: "vpcCidr", expected: /no host bits set/ },
    { config: { vpcCidr: "10.0.0.0/8" }, key: "vpcCidr", expected: /prefix from \/16 to \/28/ },
    { config: { subnetCidr: "10.1.1.0/24" }, key: "subnetCidr", expected: /inside vpcCidr 10\.0\.0\.0\/16/ },
    { config: { subnetCidr: "not-a-cidr" }, key: "subnetCidr", expected: /IPv4 CIDR block/ },
    { config: { subnetCidr: "10.0.1.0/28", workerCount: "20" }, key: "subnetCidr", expected: /room for 21 nodes/ },
    { config: { headInstanceType: "" }, key: "headInstanceType", expected: /EC2 instance type/ },
    { config: { workerInstanceType: "   " }, key: "workerInstanceType", expected: /EC2 instance type/ },
    { config: { sshAllowedCidrs: "0.0.0.0/0" }, key: "sshAllowedCidrs", expected: /JSON list of IPv4 CIDR blocks/ },
    { config: { sshAllowedCidrs: ["203.0.113.0/33"] }, key: "sshAllowedCidrs", expected: /'203\.0\.113\.0\/33' is not one/ },
    { config: { sshAllowedCidrs: ["203.0.113.0/24", "203.0.113.128/25"] }, key: "sshAllowedCidrs", expected: /overlaps/ },
    { config: { dashboardAllowedCidrs: ["0.0.0.0/0"] }, key: "dashboardAllowedCidrs", expected: /never 0\.0\.0\.0\/0/ },
    { config: { dashboardAllowedCidrs: [42] as unknown as string[] }, key: "dashboardAllowedCidrs", expected: /JSON list/ },
    { config: { availabilityZone: "east" }, key: "availabilityZone", expected: /availability zone such as us-east-1a/ },
    { config: { amiId: "ubuntu" }, key: "amiId", expected: /AMI id/ },
    { config: { sshUser: "root user" }, key: "sshUser", expected: /Unix user name/ },
    { config: { bucketForceDestroy: "yes" }, key: "bucketForceDestroy", expected: /true or false/ },
    { config: { bootstrapRay: "1" }, key: "bootstrapRay", expected: /true or false/ },
    { config: { autostopIdleMinutes: "-5" }, key: "autostopIdleMinutes", expected: /whole number from 0 to 10080/ },
    { config: { autostopIdleMinutes: "0.5" }, key: "autostopIdleMinutes", expected: /whole number from 0 to 10080/ },
    { config: { autostopIdleMinutes: "30m" }, key: "autostopIdleMinutes", expected: /whole number from 0 to 10080/ },
    { config: { autostopIdleMinutes: "10081" }, key: "autostopIdleMinutes", expected: /whole number from 0 to 10080/ },
    { config: { autostopIdleMinutes: "30", bootstrapRay: "false" }, key: "autostopIdleMinutes", expected: /0 when bootstrapRay is false/ },
    { config: { workerSpot: "yes" }, key: "workerSpot", expected: /true or false/ },
    { config: { workerSpot: "true", workerInstanceType: "mac2.metal" }, key: "workerSpot", expected: /Dedicated Hosts only, never on the spot market/ },
    { config: { workerSpot: "true", workerInstanceType: "u-6tb1.112xlarge" }, key: "workerSpot", expected: /mac|Dedicated Hosts/ },
    { config: { rayVersion: "latest" }, key: "rayVersion", expected: /exact Ray release/ },
    { config: { rayVersion: "2.51.2" }, key: "rayVersion", expected: /2\.52\.0 or later/ },
    { config: { connectVia: "vpn" }, key: "connectVia", expected: /'public', 'private'/ },
    { config: { packageIndexUrl: "ftp://mirror/simple" }, key: "packageIndexUrl", expected: /http\(s\) URL/ },
    { config: { pythonInstaller: "conda" }, key: "pythonInstaller", expected: /'uv', 'pip'/ },
    { config: { bootstrapTimeoutSeconds: "5" }, key: "bootstrapTimeoutSeconds", expected: /whole number from 30/ },
];

describe("bad config fails before any resource is created", () => {
    for (const { config, key, expected } of BAD_CONFIGS) {
        test(`${key} = ${JSON.stringify(Object.values(config)[0])}`, async () => {
            const rendered = await render(config);
            assert.ok(rendered.error, "the program must fail");
            const message = rendered.error.message;
            assert.match(message, new RegExp(`'ray-cluster:${key}'`), "names the key");
            const given = config[key];
            assert.ok(message.includes(JSON.stringify(typeof given === "string" ? given : JSON.stringify(given))),
                `names the value given: ${message}`);
            assert.match(message, expected, "states the expected form");
            assert.deepEqual(rendered.resources.map((r) => r.name), [], "no resource was registered");
        });
    }

    test("a config key the program does not know is reported with the key it probably meant", async () => {
        const rendered = await render({ "ray-cluster:workercount": "5" });
        assert.match(rendered.error?.message ?? "", /unknown config key 'ray-cluster:workercount' \(did you mean 'ray-cluster:workerCount'\?\)/);
        assert.equal(rendered.resources.length, 0);
    });

    test("keys of other namespaces (aws:region) are not this program's business", async () => {
        const rendered = await render({ "aws:region": "eu-west-1" });
        assert.equal(rendered.error, undefined);
    });
});
