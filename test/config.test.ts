import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as yaml from "js-yaml";
import { CONFIG_DEFAULTS, CONFIG_KEYS, STRUCTURED_KEYS } from "../src/config";
import { render, StackConfig } from "../tools/render";

const project = yaml.load(fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8")) as {
    config: Record<string, { type: string; default: unknown; description: string }>;
};

describe("Pulumi.yaml declares the config contract", () => {
    test("every key the program reads is declared with type, default and description, and none besides", () => {
        const declarable = CONFIG_KEYS.filter((key) => !STRUCTURED_KEYS.includes(key));
        assert.deepEqual(Object.keys(project.config).sort(), [...declarable].sort());
        // The structured keys cannot be declared (no object type in a project's config schema): a comment says so.
        const text = fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8");
        for (const key of STRUCTURED_KEYS) {
            assert.match(text, new RegExp(`^# ${key} \\(structured`, "m"));
        }
        for (const key of declarable) {
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
    { config: { workerGroups: "gpu" }, key: "workerGroups", expected: /a list of groups such as/ },
    { config: { workerGroups: "[1]" }, key: "workerGroups", expected: /item 0 is not an object/ },
    { config: { workerGroups: [{ instanceType: "g5.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 0 field 'name': got undefined, expected a lowercase name/ },
    { config: { workerGroups: [{ name: "GPU", instanceType: "g5.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 'GPU' field 'name': got "GPU", expected a lowercase name/ },
    { config: { workerGroups: [{ name: "worker", instanceType: "t3.large", count: 1 }] }, key: "workerGroups", expected: /group 'worker' field 'name'.*other than 'worker'/ },
    { config: { workerGroups: [{ name: "headnode", instanceType: "t3.large", count: 1 }] }, key: "workerGroups", expected: /other than 'worker' .* and 'headnode'/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1 }, { name: "gpu", instanceType: "g6.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 'gpu' field 'name'.*no other group has/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "big gpu", count: 1 }] }, key: "workerGroups", expected: /group 'gpu' field 'instanceType': got "big gpu", expected an EC2 instance type/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge" }] }, key: "workerGroups", expected: /group 'gpu' field 'count': got undefined, expected a whole number from 0 to 100/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1.5 }] }, key: "workerGroups", expected: /group 'gpu' field 'count': got 1\.5/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, volumeSizeGb: 4 }] }, key: "workerGroups", expected: /group 'gpu' field 'volumeSizeGb': got 4, expected a whole number from 8/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, amiId: "ubuntu" }] }, key: "workerGroups", expected: /group 'gpu' field 'amiId': got "ubuntu", expected an AMI id/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, spot: "maybe" }] }, key: "workerGroups", expected: /group 'gpu' field 'spot': got "maybe", expected true or false/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, gpus: -1 }] }, key: "workerGroups", expected: /group 'gpu' field 'gpus': got -1, expected a whole number from 0 to 16/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, cuont: 2 }] }, key: "workerGroups", expected: /group 'gpu': unknown field 'cuont'/ },
    { config: { workerGroups: [{ name: "mac", instanceType: "mac2.metal", count: 1, spot: true }] }, key: "workerGroups", expected: /group 'mac' field 'spot'.*Dedicated Hosts only/ },
    { config: { workerCount: "60", workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 41 }] }, key: "workerGroups", expected: /at most 100 workers \(they make 101\)/ },
    { config: { subnetCidr: "10.0.1.0/28", workerCount: "2", workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 9 }] }, key: "subnetCidr", expected: /room for 12 nodes/ },
    { config: { headSchedulable: "no" }, key: "headSchedulable", expected: /true or false/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, volumeSizeGb: 50 }] }, key: "workerGroups", expected: /group 'gpu' field 'volumeSizeGb': at least 75 with instanceType g5\.xlarge, which boots the Deep Learning AMI, whose root snapshot is 75 GB \(got 50\)/ },
    { config: { volumeSizeGb: "40", workerInstanceType: "g6.xlarge" }, key: "volumeSizeGb", expected: /at least 75 with workerInstanceType g6\.xlarge, which boots the Deep Learning AMI/ },
    { config: { workerSpot: "true", workerInstanceType: "mac2.metal" }, key: "workerSpot", expected: /Dedicated Hosts only, never on the spot market/ },
    { config: { workerSpot: "true", workerInstanceType: "u-6tb1.112xlarge" }, key: "workerSpot", expected: /mac|Dedicated Hosts/ },
    { config: { rayVersion: "latest" }, key: "rayVersion", expected: /exact Ray release/ },
    { config: { rayVersion: "2.51.2" }, key: "rayVersion", expected: /2\.52\.0 or later/ },
    { config: { connectVia: "vpn" }, key: "connectVia", expected: /'public', 'private'/ },
    { config: { packageIndexUrl: "ftp://mirror/simple" }, key: "packageIndexUrl", expected: /http\(s\) URL/ },
    { config: { pythonInstaller: "conda" }, key: "pythonInstaller", expected: /'uv', 'pip'/ },
    { config: { bootstrapTimeoutSeconds: "5" }, key: "bootstrapTimeoutSeconds", expected: /whole number from 30/ },
    { config: { workerNetwork: "isolated" }, key: "workerNetwork", expected: /'public', 'private'/ },
    { config: { privateSubnetCidr: "10.0.2.0/33", workerNetwork: "private" }, key: "privateSubnetCidr", expected: /IPv4 CIDR block such as/ },
    { config: { privateSubnetCidr: "10.1.2.0/24", workerNetwork: "private" }, key: "privateSubnetCidr", expected: /inside vpcCidr 10\.0\.0\.0\/16/ },
    { config: { privateSubnetCidr: "10.0.1.128/25", workerNetwork: "private" }, key: "privateSubnetCidr", expected: /does not overlap subnetCidr 10\.0\.1\.0\/24/ },
    { config: { privateSubnetCidr: "10.0.0.0/23", workerNetwork: "private" }, key: "privateSubnetCidr", expected: /does not overlap subnetCidr/ },
    { config: { privateSubnetCidr: "10.0.2.0/28", workerNetwork: "private", workerCount: "12" }, key: "privateSubnetCidr", expected: /room for 12 workers \(it has 11 usable/ },
    { config: { natGateway: "false", workerNetwork: "private" }, key: "natGateway", expected: /true unless packageIndexUrl is set: without a NAT gateway private workers have no internet/ },
    { config: { natGateway: "false" }, key: "natGateway", expected: /with workerNetwork public: only private workers/ },
    { config: { natGateway: "no", workerNetwork: "private" }, key: "natGateway", expected: /true or false/ },
    { config: { vpcId: "my-vpc" }, key: "vpcId", expected: /an id such as vpc-0abcdef1234567890, or empty/ },
    { config: { vpcId: "vpc-0abc12345678def00" }, key: "subnetId", expected: /the id of a subnet of vpc-0abc12345678def00 for the head/ },
    { config: { subnetId: "subnet-0aaa1111bbbb2222c" }, key: "subnetId", expected: /empty unless vpcId is set/ },
    { config: { subnetId: "subnet-1", vpcId: "vpc-0abc12345678def00" }, key: "subnetId", expected: /an id such as subnet-0abcdef1234567890/ },
    { config: { privateSubnetId: "subnet-0ddd3333eeee4444f", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "privateSubnetId", expected: /empty with workerNetwork public/ },
    { config: { workerNetwork: "private", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "privateSubnetId", expected: /a subnet of vpc-0abc12345678def00 for the workers, since workerNetwork is private/ },
    { config: { privateSubnetId: "subnet-0aaa1111bbbb2222c", workerNetwork: "private", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "privateSubnetId", expected: /a subnet other than subnetId/ },
    { config: { vpcCidr: "10.50.0.0/16", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "vpcCidr", expected: /its default \(unset\) with vpcId vpc-0abc12345678def00: the stack builds no network/ },
    { config: { subnetCidr: "10.0.9.0/24", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "subnetCidr", expected: /its default \(unset\) with vpcId/ },
    { config: { availabilityZone: "us-east-1b", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" }, key: "availabilityZone", expected: /its default \(unset\) with vpcId/ },
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
