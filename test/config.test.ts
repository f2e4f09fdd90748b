import * as assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import * as yaml from "js-yaml";
import { z } from "zod";
import { CONFIG_KEYS, ConfigKey, defaultOf, ENTRIES, SETTINGS } from "../src/config";
import { keyMeta } from "../src/config-schema";
import { PROJECT_FILE, projectConfigAsWritten, renderProjectConfig } from "../tools/project-config";
import { render, reveal, StackConfig } from "../tools/render";

const projectText = fs.readFileSync(PROJECT_FILE, "utf8");
const project = yaml.load(projectText) as {
    config: Record<string, { type: string; items?: { type: string }; default: unknown; description: string }>;
};

describe("Pulumi.yaml declares the config contract that src/config.ts holds", () => {
    test("the config block is exactly the one rendered from the declarations (npm run config:yaml)", () => {
        assert.equal(projectConfigAsWritten(projectText), renderProjectConfig(),
            "Pulumi.yaml drifted from src/config.ts: run `npm run config:yaml`");
    });

    test("every key is declared with the type, default and description its schema has, and none besides", () => {
        const structured = CONFIG_KEYS.filter((key) => keyMeta.get(SETTINGS[key] as z.ZodType)?.type === "structured");
        assert.deepEqual(structured, ["workerGroups"]);
        assert.deepEqual(Object.keys(project.config).sort(), CONFIG_KEYS.filter((key) => !structured.includes(key)).sort());
        for (const [key, declared] of Object.entries(project.config)) {
            // The default Pulumi.yaml states is what the schema yields for an unset key, and a value of that type.
            const parsed = defaultOf(key as ConfigKey);
            assert.deepEqual(declared.default, parsed, `${key}: default`);
            const expectedType = Array.isArray(parsed) ? "array" : typeof parsed === "number" ? "integer" : typeof parsed;
            assert.equal(declared.type, expectedType, `${key}: type`);
            assert.ok(declared.description.length > 10, `${key} has a description`);
        }
        // The structured key's entry shape is in a comment, a line per field the schema has.
        for (const field of ENTRIES.workerGroups.fields) {
            assert.match(projectText, new RegExp(`^#   ${field} +(string|integer|boolean)`, "m"), `workerGroups field ${field}`);
        }
    });

    test("a hand edit of a default in Pulumi.yaml is caught", () => {
        const edited = projectText.replace(/(workerCount:\n {4}type: integer\n {4}default: )2/, "$13");
        assert.notEqual(edited, projectText);
        assert.notEqual(projectConfigAsWritten(edited), renderProjectConfig());
    });

    test("the README's config table has a row for every key, and none for a key the program does not read", () => {
        const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
        const table = readme.split("\n## Config\n")[1].split("\n## ")[0];
        const rows = [...table.matchAll(/^\| `(\w+)` \| ([^|]*) \|/gm)].map((m) => [m[1], m[2]] as const);
        assert.deepEqual(rows.map(([key]) => key).sort(), [...CONFIG_KEYS].sort());
        // A default the table states as a value is the schema's; an empty default stands for one derived later.
        for (const [key, cell] of rows) {
            const stated = /^`([^`]*)`/.exec(cell)?.[1];
            const value = defaultOf(key as ConfigKey);
            if (stated !== undefined && value !== "") {
                assert.equal(stated, typeof value === "string" ? value : JSON.stringify(value), `README's default of ${key}`);
            }
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
    { config: { workerGroups: [1] as unknown as string[] }, key: "workerGroups", expected: /group 0: got 1, expected an object such as/ },
    { config: { workerGroups: [{ instanceType: "g5.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 0 field 'name': got nothing \(unset\), expected a lowercase name/ },
    { config: { workerGroups: [{ name: "GPU", instanceType: "g5.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 'GPU' field 'name': got "GPU", expected a lowercase name/ },
    { config: { workerGroups: [{ name: "worker", instanceType: "t3.large", count: 1 }] }, key: "workerGroups", expected: /group 'worker' field 'name'.*other than 'worker'/ },
    { config: { workerGroups: [{ name: "headnode", instanceType: "t3.large", count: 1 }] }, key: "workerGroups", expected: /other than 'worker' .* and 'headnode'/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1 }, { name: "gpu", instanceType: "g6.xlarge", count: 1 }] }, key: "workerGroups", expected: /group 'gpu' field 'name'.*no other group has/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "big gpu", count: 1 }] }, key: "workerGroups", expected: /group 'gpu' field 'instanceType': got "big gpu", expected an EC2 instance type/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge" }] }, key: "workerGroups", expected: /group 'gpu' field 'count': got nothing \(unset\), expected a number of nodes, or minCount and maxCount for an elastic group/ },
    { config: { workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 2, maxCount: 4 }] }, key: "workerGroups", expected: /group 'cpu' field 'maxCount': got 4, expected no range alongside count: a group is fixed \(count\) or elastic \(minCount and maxCount\), not both/ },
    { config: { workerGroups: [{ name: "cpu", instanceType: "c7i.large", minCount: 2 }] }, key: "workerGroups", expected: /group 'cpu' field 'maxCount': got nothing \(unset\), expected the most nodes the elastic group may grow to, since minCount is set/ },
    { config: { workerGroups: [{ name: "cpu", instanceType: "c7i.large", minCount: 5, maxCount: 3 }] }, key: "workerGroups", expected: /group 'cpu' field 'maxCount': got 3, expected at least minCount 5/ },
    { config: { workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 0 }] }, key: "workerGroups", expected: /group 'cpu' field 'maxCount': got 0, expected a whole number from 1 to 100/ },
    { config: { workerCount: "0", workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 101 }] }, key: "workerGroups", expected: /field 'maxCount': got 101, expected a whole number from 1 to 100/ },
    { config: { workerCount: "60", workerGroups: [{ name: "cpu", instanceType: "c7i.large", minCount: 1, maxCount: 41 }] }, key: "workerGroups", expected: /elastic ones at their maxCount \(they make 101\)/ },
    { config: { subnetCidr: "10.0.1.0/28", workerCount: "0", workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 11 }] }, key: "subnetCidr", expected: /room for 12 nodes \(it has 11 usable addresses\)/ },
    { config: { bootstrapRay: "false", workerGroups: [{ name: "cpu", instanceType: "c7i.large", maxCount: 3 }] }, key: "workerGroups", expected: /group 'cpu' field 'maxCount': got 3, expected a fixed count when bootstrapRay is false/ },
    { config: { elasticIdleMinutes: "0" }, key: "elasticIdleMinutes", expected: /got "0", expected a whole number from 1 to 1440/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1.5 }] }, key: "workerGroups", expected: /group 'gpu' field 'count': got 1\.5/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, volumeSizeGb: 4 }] }, key: "workerGroups", expected: /group 'gpu' field 'volumeSizeGb': got 4, expected a whole number from 8/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, amiId: "ubuntu" }] }, key: "workerGroups", expected: /group 'gpu' field 'amiId': got "ubuntu", expected an AMI id/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, spot: "maybe" }] }, key: "workerGroups", expected: /group 'gpu' field 'spot': got "maybe", expected true or false/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, gpus: -1 }] }, key: "workerGroups", expected: /group 'gpu' field 'gpus': got -1, expected a whole number from 0 to 16/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, cuont: 2 }] }, key: "workerGroups", expected: /group 'gpu': unknown field 'cuont': got 2, expected no such field: a group has name, instanceType, count/ },
    { config: { workerGroups: [{ name: "mac", instanceType: "mac2.metal", count: 1, spot: true }] }, key: "workerGroups", expected: /group 'mac' field 'spot'.*Dedicated Hosts only/ },
    { config: { workerCount: "60", workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 41 }] }, key: "workerGroups", expected: /at most 100 workers, elastic ones at their maxCount \(they make 101\)/ },
    { config: { subnetCidr: "10.0.1.0/28", workerCount: "2", workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 9 }] }, key: "subnetCidr", expected: /room for 12 nodes/ },
    { config: { headSchedulable: "no" }, key: "headSchedulable", expected: /true or false/ },
    { config: { workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1, volumeSizeGb: 50 }] }, key: "workerGroups", expected: /group 'gpu' field 'volumeSizeGb': got 50, expected at least 75 with instanceType g5\.xlarge, which boots the Deep Learning AMI, whose root snapshot is 75 GB$/ },
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
    { config: { natGateway: "false", workerNetwork: "private" }, key: "natGateway", expected: /true unless rayImage is true or packageIndexUrl is set: without a NAT gateway private workers have no internet/ },
    { config: { rayImage: "true", bootstrapRay: "false" }, key: "rayImage", expected: /false when bootstrapRay is false: the image holds the Ray/ },
    { config: { rayImage: "yes" }, key: "rayImage", expected: /true or false/ },
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

/**
 * How the error must show the value given: a key's raw text (lists as their JSON), "nothing (unset)" for a key the
 * stack does not set, and for a field of a worker group, the field's own value.
 */
function valueShown(config: StackConfig, key: string, message: string): string {
    const given = config[key];
    const entry = /group (?:'([a-z0-9-]+|GPU)'|(\d+))(?::? (?:unknown )?field '(\w+)')?/.exec(message);
    if (key === "workerGroups" && Array.isArray(given) && entry) {
        const groups = given as Record<string, unknown>[];
        const group = entry[2] !== undefined ? groups[Number(entry[2])] : groups.find((g) => g.name === entry[1]);
        const value = entry[3] ? group?.[entry[3]] : group;
        return value === undefined ? "nothing (unset)" : JSON.stringify(value);
    }
    return given === undefined ? "nothing (unset)" : JSON.stringify(typeof given === "string" ? given : JSON.stringify(given));
}

describe("bad config fails before any resource is created", () => {
    for (const { config, key, expected } of BAD_CONFIGS) {
        test(`${key} = ${JSON.stringify(Object.values(config)[0])}`, async () => {
            const rendered = await render(config);
            assert.ok(rendered.error, "the program must fail");
            const message = rendered.error.message;
            assert.match(message, new RegExp(`'ray-cluster:${key}'`), "names the key");
            assert.ok(message.includes(`got ${valueShown(config, key, message)}`), `names the value given: ${message}`);
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

describe("every problem of a bad stack is reported at once", () => {
    test("five mistakes in five keys and two in one group: one error names all seven, and nothing is registered", async () => {
        const rendered = await render({
            workerCount: "two",
            vpcCidr: "10.0.0.0",
            sshUser: "root user",
            dashboardAllowedCidrs: ["0.0.0.0/0"],
            "ray-cluster:workercount": "3",
            workerGroups: [{ name: "gpu", instanceType: "g5.xlarge", count: 1.5, spot: "maybe" }],
        });
        const message = rendered.error?.message ?? "";
        assert.match(message, /^7 problems in the stack's config:$/m);
        for (const line of [
            /^- invalid config 'ray-cluster:workerCount': got "two", expected a whole number from 0 to 100$/m,
            /^- invalid config 'ray-cluster:vpcCidr': got "10\.0\.0\.0", expected an IPv4 CIDR block/m,
            /^- invalid config 'ray-cluster:sshUser': got "root user", expected a Unix user name/m,
            /^- invalid config 'ray-cluster:dashboardAllowedCidrs': got "\[\\"0\.0\.0\.0\/0\\"\]", expected specific CIDR blocks/m,
            /^- unknown config key 'ray-cluster:workercount' \(did you mean 'ray-cluster:workerCount'\?\)$/m,
            /^- invalid config 'ray-cluster:workerGroups': group 'gpu' field 'count': got 1\.5, expected a whole number from 0 to 100$/m,
            /^- invalid config 'ray-cluster:workerGroups': group 'gpu' field 'spot': got "maybe", expected true or false$/m,
        ]) {
            assert.match(message, line);
        }
        assert.equal(rendered.resources.length, 0);
    });

    test("a rule over several keys runs only when each of its keys is valid, so one mistake is not reported twice", async () => {
        // subnetCidr cannot be checked against a vpcCidr that is no CIDR block.
        const bad = await render({ vpcCidr: "10.0.0.0" });
        assert.doesNotMatch(bad.error?.message ?? "", /subnetCidr/);
        // In a given VPC the stack builds no subnet, so its CIDR's place in the VPC is no rule.
        const given = await render({ vpcCidr: "10.50.0.0/16", vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c" });
        assert.match(given.error?.message ?? "", /^invalid config 'ray-cluster:vpcCidr'/);
        assert.doesNotMatch(given.error?.message ?? "", /subnetCidr/);
    });

    test("cross-key problems come with the keys' own: an autostop without Ray beside a bad group and a tight subnet", async () => {
        const rendered = await render({
            autostopIdleMinutes: "30", bootstrapRay: "false",
            subnetCidr: "10.0.1.0/28", workerCount: "12",
            workerGroups: [{ name: "headnode", instanceType: "t3.large", count: 1 }],
        });
        const message = rendered.error?.message ?? "";
        assert.match(message, /^2 problems/);
        assert.match(message, /'ray-cluster:autostopIdleMinutes': got "30", expected 0 when bootstrapRay is false/);
        assert.match(message, /'ray-cluster:workerGroups': group 'headnode' field 'name': got "headnode", expected a name other than/);
        // The group is invalid, so the room rule, which counts its nodes, waits for it: the subnet is judged next time.
        assert.doesNotMatch(message, /room for/);
    });
});

describe("a stack file as users write it", () => {
    const plan = (file: string) => spawnSync(process.execPath,
        ["--require", "ts-node/register", path.join(__dirname, "..", "tools", "plan.ts"), file],
        { encoding: "utf8", env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true" } });
    const withStackFile = (text: string, check: (file: string) => void) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ray-cluster-config-"));
        try {
            const file = path.join(dir, "Pulumi.users.yaml");
            fs.writeFileSync(file, text);
            check(file);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    };

    test("workerGroups as a YAML list, with values --path stored as strings, builds every group", () => {
        withStackFile([
            "config:",
            "  aws:region: eu-west-1",
            "  ray-cluster:workerGroups:",
            "    - name: gpu",
            "      instanceType: g5.xlarge",
            "      count: 1",
            "    - name: cpu",
            "      instanceType: c7i.large",
            '      count: "2"',
            '      spot: "true"',
            "",
        ].join("\n"), (file) => {
            const result = plan(file);
            assert.equal(result.status, 0, result.stderr);
            assert.match(result.stdout, /^ {2}gpu: gpu-1 \(g5\.xlarge\)$/m);
            assert.match(result.stdout, /^ {2}cpu: cpu-1 \(c7i\.large\), cpu-2 \(c7i\.large\)$/m);
            assert.match(result.stdout, /ray-cluster-cpu-1 \(cpu-1\) .*instanceMarketOptions=\{"marketType":"spot"/);
        });
    });

    test("mistakes in a YAML workerGroups are all named, by group and field", () => {
        withStackFile([
            "config:",
            "  ray-cluster:workerGroups:",
            "    - name: gpu",
            "      instanceType: g5.xlarge",
            "      count: many",
            "    - name: gpu",
            "      instanceType: g6.xlarge",
            "      count: 1",
            "      volumeSize: 100",
            "",
        ].join("\n"), (file) => {
            const result = plan(file);
            assert.notEqual(result.status, 0);
            assert.match(result.stderr, /3 problems in the stack's config/);
            assert.match(result.stderr, /group 'gpu' field 'count': got "many", expected a whole number from 0 to 100/);
            assert.match(result.stderr, /group 'gpu' field 'name': got "gpu", expected a name no other group has/);
            assert.match(result.stderr, /group 'gpu': unknown field 'volumeSize': got 100, expected no such field/);
        });
    });

    test("a stack in eu-west-1 plans in eu-west-1 everywhere: autostop, the S3 endpoint, the zone", () => {
        withStackFile("config:\n  aws:region: eu-west-1\n  ray-cluster:autostopIdleMinutes: 30\n  ray-cluster:workerNetwork: private\n", (file) => {
            const result = plan(file);
            assert.equal(result.status, 0, result.stderr);
            assert.match(result.stdout, /install-autostop\.sh --idle-minutes 30 --region eu-west-1 /);
            assert.match(result.stdout, /serviceName="com\.amazonaws\.eu-west-1\.s3"/);
            assert.match(result.stdout, /availabilityZone="eu-west-1a"/);
            assert.doesNotMatch(result.stdout, /us-east-1/);
        });
    });

    test("a stack file that places the cluster in its own VPC plans, creating no network", () => {
        withStackFile("config:\n  aws:region: eu-west-1\n  ray-cluster:vpcId: vpc-0abc12345678def00\n" +
            "  ray-cluster:subnetId: subnet-0aaa1111bbbb2222c\n", (file) => {
            const result = plan(file);
            assert.equal(result.status, 0, result.stderr);
            assert.match(result.stdout, /aws:ec2\/instance:Instance ray-cluster-headnode \(headnode\)/);
            assert.doesNotMatch(result.stdout, /aws:ec2\/(vpc|subnet|internetGateway):/);
        });
    });

    test("under mocks, a stack in eu-west-1 names no other region in any resource's inputs", async () => {
        const rendered = await render({ "aws:region": "eu-west-1", autostopIdleMinutes: "30", workerNetwork: "private" });
        assert.equal(rendered.error, undefined);
        const inputs = JSON.stringify(rendered.resources.map((r) => reveal(r.inputs)));
        assert.match(inputs, /arn:aws:ec2:eu-west-1:\*:instance/, "the autostop grant is for this region's instances");
        assert.doesNotMatch(inputs, /us-east-1/);
    });
});
