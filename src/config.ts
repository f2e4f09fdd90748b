import * as pulumi from "@pulumi/pulumi";
import * as ipaddr from "ipaddr.js";
import * as semver from "semver";
import { DEFAULT_GROUP, DLAMI_ROOT_SNAPSHOT_GB, GPU_DEFAULT_VOLUME_GB, HEAD_GROUP, isNvidiaGpuType, WorkerGroup } from "./groups";

/** How the bootstrap reaches the nodes over SSH. */
export type ConnectVia = "public" | "private";

/** Where workers live: beside the head in its public subnet, or in a private subnet reached only through the head. */
export type WorkerNetwork = "public" | "private";

/** An existing VPC the cluster is placed in, instead of a network of its own. */
export interface ExistingNetwork {
    /** The VPC. */
    vpcId: string;
    /** The head's subnet, which routes to an internet gateway unless connectVia is private. */
    subnetId: string;
    /** The workers' subnet with workerNetwork private; empty puts them in subnetId. */
    privateSubnetId: string;
}

/** The validated, fully defaulted settings of one stack. Everything downstream takes plain values from here. */
export interface ClusterConfig {
    /** Pulumi project name, used in tags and resource names. */
    project: string;
    /** Pulumi stack name, used in tags and the default identity file. */
    stack: string;
    /** Number of worker nodes besides the head (0-100). */
    workerCount: number;
    /** EC2 instance type of the head node. */
    headInstanceType: string;
    /** EC2 instance type of every worker node. */
    workerInstanceType: string;
    /** Root volume size of every node, in GB. */
    volumeSizeGb: number;
    /** IPv4 CIDR of the VPC. */
    vpcCidr: string;
    /** IPv4 CIDR of the public subnet; must lie inside the VPC. */
    subnetCidr: string;
    /** Availability zone of the subnet; empty means the region's first available zone. */
    availabilityZone: string;
    /** CIDRs allowed to reach SSH (22). */
    sshAllowedCidrs: string[];
    /** CIDRs allowed to reach the dashboard (8265) and Ray client (10001) directly. */
    dashboardAllowedCidrs: string[];
    /** AMI to boot; empty means the latest Canonical Ubuntu 24.04 amd64 image. */
    amiId: string;
    /** Login user on the nodes. */
    sshUser: string;
    /** Path written as IdentityFile into the generated ssh config. */
    sshIdentityFile: string;
    /** Whether `pulumi destroy` may delete buckets that still hold objects. */
    bucketForceDestroy: boolean;
    /** Whether to install and start Ray on the nodes, or build the infrastructure only. */
    bootstrapRay: boolean;
    /** Exact Ray release installed on every node. */
    rayVersion: string;
    /** Whether SSH from this machine goes to the nodes' public or private addresses. */
    connectVia: ConnectVia;
    /** PEP 503 package index that replaces PyPI on the nodes; empty means PyPI. */
    packageIndexUrl: string;
    /** Python package installer used on the nodes. */
    pythonInstaller: "uv" | "pip";
    /** Bound, in seconds, on each wait of the bootstrap: cloud-init, the head's GCS, the cluster check. */
    bootstrapTimeoutSeconds: number;
    /** Minutes of continuous idleness after which the head stops every instance of the stack; 0 is off. */
    autostopIdleMinutes: number;
    /** Every worker group, the default `worker` group (workerCount × workerInstanceType) first. */
    workerGroups: WorkerGroup[];
    /** Whether Ray may schedule tasks and actors on the head; false starts it with --num-cpus=0. */
    headSchedulable: boolean;
    /** Whether workers sit in the head's public subnet, or in a private one reached only through the head. */
    workerNetwork: WorkerNetwork;
    /** IPv4 CIDR of the private subnet (workerNetwork private, own network only). */
    privateSubnetCidr: string;
    /** Whether private workers reach the internet through a NAT gateway (workerNetwork private, own network only). */
    natGateway: boolean;
    /** The existing VPC and subnets the cluster goes into; undefined builds a network of its own. */
    existingNetwork?: ExistingNetwork;
}

/** Thrown for a bad config value; a RunError so the CLI prints the message without a stack trace. */
export class ConfigError extends pulumi.RunError {
    constructor(message: string) {
        super(message);
        this.name = "ConfigError";
    }
}

/** Token auth arrived in Ray 2.52.0; older releases would start without authentication. */
export const MIN_RAY_VERSION = "2.52.0";
export const DEFAULT_RAY_VERSION = "2.60.0";
export const MAX_WORKERS = 100;
export const MIN_VOLUME_GB = 8;
export const MAX_VOLUME_GB = 16384;
/** A week: a longer idle bound is no cost control, and Ray's state would not tell a week-old job from a hung one. */
export const MAX_AUTOSTOP_MINUTES = 10080;
/**
 * Families EC2 offers on Dedicated Hosts only (mac*, u-* high memory): RunInstances refuses them on the spot market.
 */
const NO_SPOT_FAMILIES = /^(mac\d|u-|u\d)/;

/**
 * Every key this program reads, with its default. Pulumi.yaml declares the same keys with the same defaults
 * (a test keeps the two equal); the defaults also live here because `pulumi.Config` under test mocks, or a
 * stack created before a key was added, does not see the project file.
 */
export const CONFIG_DEFAULTS = {
    workerCount: 2,
    headInstanceType: "t3.medium",
    workerInstanceType: "t3.small",
    volumeSizeGb: 20,
    vpcCidr: "10.0.0.0/16",
    subnetCidr: "10.0.1.0/24",
    availabilityZone: "",
    sshAllowedCidrs: ["0.0.0.0/0"] as string[],
    dashboardAllowedCidrs: [] as string[],
    amiId: "",
    sshUser: "ubuntu",
    sshIdentityFile: "",
    bucketForceDestroy: false,
    bootstrapRay: true,
    rayVersion: DEFAULT_RAY_VERSION,
    connectVia: "public",
    packageIndexUrl: "",
    pythonInstaller: "uv",
    bootstrapTimeoutSeconds: 600,
    autostopIdleMinutes: 0,
    workerSpot: false,
    workerGroups: [] as unknown[],
    headSchedulable: true,
    workerNetwork: "public",
    privateSubnetCidr: "10.0.2.0/24",
    natGateway: true,
    vpcId: "",
    subnetId: "",
    privateSubnetId: "",
};

/**
 * Keys with structured values. A Pulumi project declares config types only as strings, integers, booleans and
 * arrays of those, so these stay out of Pulumi.yaml's declarations (a comment there names them).
 */
export const STRUCTURED_KEYS: readonly string[] = ["workerGroups"];

export type ConfigKey = keyof typeof CONFIG_DEFAULTS;
export const CONFIG_KEYS = Object.keys(CONFIG_DEFAULTS) as ConfigKey[];

type RawValues = Partial<Record<ConfigKey, string>>;

/** Reads the `ray-cluster` namespace of the stack config and validates it before any resource exists. */
export function loadConfig(): ClusterConfig {
    const namespace = pulumi.getProject();
    const config = new pulumi.Config(namespace);
    rejectUnknownKeys(namespace, Object.keys(pulumi.runtime.allConfig()));
    const raw: RawValues = {};
    for (const key of CONFIG_KEYS) {
        const value = config.get(key);
        if (value !== undefined) {
            raw[key] = value;
        }
    }
    return parseConfig(raw, { project: namespace, stack: pulumi.getStack(), namespace });
}

/** Fails on keys of this program's namespace that it does not read, so a typo never silently yields a default. */
export function rejectUnknownKeys(namespace: string, fullKeys: string[]): void {
    const known = new Set<string>(CONFIG_KEYS);
    const unknown = fullKeys
        .filter((full) => full.startsWith(`${namespace}:`))
        .map((full) => full.slice(namespace.length + 1))
        .filter((key) => !known.has(key));
    if (unknown.length === 0) {
        return;
    }
    const lines = unknown.map((key) => {
        const near = CONFIG_KEYS.find((k) => k.toLowerCase() === key.toLowerCase());
        const hint = near ? ` (did you mean '${namespace}:${near}'?)` : "";
        return `unknown config key '${namespace}:${key}'${hint}`;
    });
    throw new ConfigError(`${lines.join("; ")}. Known keys: ${CONFIG_KEYS.join(", ")}.`);
}

interface ParseContext {
    project: string;
    stack: string;
    namespace: string;
}

/** Turns raw string values (as `pulumi config set` stores them) into a validated ClusterConfig. */
export function parseConfig(raw: RawValues, ctx: ParseContext): ClusterConfig {
    const fail = (key: ConfigKey, expected: string): never => {
        throw new ConfigError(
            `invalid config '${ctx.namespace}:${key}': got ${JSON.stringify(raw[key])}, expected ${expected}`,
        );
    };

    const integer = (key: ConfigKey, min: number, max: number): number => {
        const text = raw[key];
        if (text === undefined) {
            return CONFIG_DEFAULTS[key] as number;
        }
        const value = Number(text);
        if (!/^\s*\d+\s*$/.test(text) || value < min || value > max) {
            fail(key, `a whole number from ${min} to ${max}`);
        }
        return value;
    };

    const bool = (key: ConfigKey): boolean => {
        const text = raw[key];
        if (text === undefined) {
            return CONFIG_DEFAULTS[key] as boolean;
        }
        if (text !== "true" && text !== "false") {
            fail(key, "true or false");
        }
        return text === "true";
    };

    const str = (key: ConfigKey): string => raw[key] ?? (CONFIG_DEFAULTS[key] as string);

    const text = (key: ConfigKey, pattern: RegExp, expected: string): string => {
        const value = str(key);
        if (!pattern.test(value)) {
            fail(key, expected);
        }
        return value;
    };

    const oneOf = <T extends string>(key: ConfigKey, choices: readonly T[]): T => {
        const value = str(key);
        if (!(choices as readonly string[]).includes(value)) {
            fail(key, `one of ${choices.map((c) => `'${c}'`).join(", ")}`);
        }
        return value as T;
    };

    const cidr = (key: ConfigKey): [string, ipaddr.IPv4, number] => {
        const value = str(key);
        const parsed = parseCidr(value);
        if (!parsed) {
            return fail(key, "an IPv4 CIDR block such as 10.0.0.0/16, with no host bits set");
        }
        return [value, ...parsed];
    };

    const cidrList = (key: ConfigKey): string[] => {
        const value = raw[key];
        if (value === undefined) {
            return [...(CONFIG_DEFAULTS[key] as string[])];
        }
        const parsed = parseJson(value);
        const expected = 'a JSON list of IPv4 CIDR blocks such as ["203.0.113.0/24"]';
        if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string")) {
            return fail(key, expected);
        }
        const blocks = parsed as string[];
        const ranges = blocks.map((item) => parseCidr(item) ?? fail(key, `${expected}; '${item}' is not one`));
        // Overlapping blocks make duplicate or redundant security-group rules, which AWS rejects or hides.
        ranges.forEach(([address, prefix], i) => {
            ranges.slice(0, i).forEach(([other, otherPrefix], j) => {
                const shorter = Math.min(prefix, otherPrefix);
                if (address.match(other, shorter)) {
                    fail(key, `${expected}, none overlapping another; '${blocks[i]}' overlaps '${blocks[j]}'`);
                }
            });
        });
        return blocks;
    };

    const workerCount = integer("workerCount", 0, MAX_WORKERS);
    const volumeSizeGb = integer("volumeSizeGb", MIN_VOLUME_GB, MAX_VOLUME_GB);
    const bootstrapTimeoutSeconds = integer("bootstrapTimeoutSeconds", 30, 7200);

    const instanceType = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
    const headInstanceType = text("headInstanceType", instanceType, "an EC2 instance type such as t3.medium");
    const workerInstanceType = text("workerInstanceType", instanceType, "an EC2 instance type such as t3.small");

    const amiPattern = /^$|^ami-[0-9a-f]{8,17}$/;
    const workerSpot = bool("workerSpot");
    const groups = parseWorkerGroups(raw.workerGroups, (expected) => fail("workerGroups", expected), instanceType, amiPattern);
    const totalWorkers = workerCount + groups.reduce((sum, g) => sum + g.count, 0);
    if (totalWorkers > MAX_WORKERS) {
        fail("workerGroups", `groups that with workerCount ${workerCount} add up to at most ${MAX_WORKERS} workers (they make ${totalWorkers})`);
    }

    const workerNetwork = oneOf("workerNetwork", ["public", "private"] as const);
    const privateWorkers = workerNetwork === "private";
    // First: in a given VPC the network keys below are not this stack's to set.
    const existingNetwork = parseExistingNetwork(raw, fail, privateWorkers);
    const [vpcCidr, vpcAddress, vpcPrefix] = cidr("vpcCidr");
    if (vpcPrefix < 16 || vpcPrefix > 28) {
        fail("vpcCidr", "an IPv4 CIDR block with a prefix from /16 to /28 (the range AWS allows for a VPC)");
    }
    const [subnetCidr, subnetAddress, subnetPrefix] = cidr("subnetCidr");
    if (subnetPrefix < vpcPrefix || subnetPrefix > 28 || !subnetAddress.match(vpcAddress, vpcPrefix)) {
        fail("subnetCidr", `an IPv4 CIDR block inside vpcCidr ${vpcCidr}, with a prefix from /${vpcPrefix} to /28`);
    }
    // AWS reserves five addresses of every subnet; the nodes need the rest. In private mode the public subnet holds
    // the head and the NAT gateway, and the private one the workers.
    const roomFor = (key: ConfigKey, prefix: number, needed: number, what: string) => {
        const usableAddresses = 2 ** (32 - prefix) - 5;
        if (usableAddresses < needed) {
            fail(key, `a subnet with room for ${needed} ${what} (it has ${usableAddresses} usable addresses)`);
        }
    };
    roomFor("subnetCidr", subnetPrefix, privateWorkers ? 2 : totalWorkers + 1,
        privateWorkers ? "addresses (the head and the NAT gateway)" : "nodes");
    const [privateSubnetCidr, privateAddress, privatePrefix] = cidr("privateSubnetCidr");
    if (privateWorkers) {
        if (privatePrefix < vpcPrefix || privatePrefix > 28 || !privateAddress.match(vpcAddress, vpcPrefix)) {
            fail("privateSubnetCidr", `an IPv4 CIDR block inside vpcCidr ${vpcCidr}, with a prefix from /${vpcPrefix} to /28`);
        }
        if (privateAddress.match(subnetAddress, Math.min(subnetPrefix, privatePrefix))) {
            fail("privateSubnetCidr", `an IPv4 CIDR block that does not overlap subnetCidr ${subnetCidr}, such as ` +
                `${CONFIG_DEFAULTS.privateSubnetCidr === subnetCidr ? "10.0.3.0/24" : CONFIG_DEFAULTS.privateSubnetCidr}`);
        }
        roomFor("privateSubnetCidr", privatePrefix, totalWorkers, "workers");
    }

    const availabilityZone = text("availabilityZone", /^$|^[a-z]{2}(-[a-z]+)+-\d[a-z]$/,
        "an availability zone such as us-east-1a, or empty for the region's first available zone");
    const amiId = text("amiId", amiPattern, "an AMI id such as ami-0abcdef1234567890, or empty");
    const sshUser = text("sshUser", /^[a-z_][a-z0-9_-]{0,31}$/, "a Unix user name such as ubuntu");
    const sshIdentityFile = text("sshIdentityFile", /^[^\s]*$/, "a file path without spaces, or empty")
        || `~/.ssh/${ctx.project}-${ctx.stack}.pem`;

    const rayVersion = text("rayVersion", /^\d+\.\d+\.\d+$/, `an exact Ray release such as ${DEFAULT_RAY_VERSION}`);
    if (semver.lt(rayVersion, MIN_RAY_VERSION)) {
        fail("rayVersion", `a Ray release of ${MIN_RAY_VERSION} or later (the first with token authentication)`);
    }

    const packageIndexUrl = text("packageIndexUrl", /^$|^https?:\/\/[^\s'"\\]+$/,
        "an http(s) URL of a PEP 503 package index such as https://pypi.example.com/simple/, or empty for PyPI");

    const autostopIdleMinutes = integer("autostopIdleMinutes", 0, MAX_AUTOSTOP_MINUTES);
    const bootstrapRay = bool("bootstrapRay");
    if (autostopIdleMinutes > 0 && !bootstrapRay) {
        fail("autostopIdleMinutes", "0 when bootstrapRay is false: autostop judges idleness from Ray, which is not installed");
    }
    const defaultGroup: WorkerGroup = {
        name: DEFAULT_GROUP,
        instanceType: workerInstanceType,
        count: workerCount,
        // An explicit volumeSizeGb applies to the default group as given; a GPU type gets room for its image.
        volumeSizeGb: raw.volumeSizeGb === undefined && isNvidiaGpuType(workerInstanceType) ? GPU_DEFAULT_VOLUME_GB : volumeSizeGb,
        amiId,
        spot: workerSpot,
        gpu: isNvidiaGpuType(workerInstanceType),
    };
    const workerGroups = [defaultGroup, ...groups.map((g) => ({
        ...g,
        volumeSizeGb: g.volumeSizeGb ?? (g.gpu ? GPU_DEFAULT_VOLUME_GB : volumeSizeGb),
        amiId: g.amiId ?? amiId,
    }))];
    // The default group's settings are top-level keys; another group's are fields of workerGroups.
    for (const group of workerGroups) {
        const isDefault = group.name === DEFAULT_GROUP;
        const problem = instanceTypeProblem(group, isDefault ? "workerInstanceType" : "instanceType");
        if (problem && isDefault) {
            fail(problem.field === "spot" ? "workerSpot" : "volumeSizeGb", problem.expected);
        } else if (problem) {
            fail("workerGroups", `group '${group.name}' field '${problem.field}': ${problem.expected}`);
        }
    }

    const natGateway = bool("natGateway");
    if (!natGateway && !privateWorkers) {
        fail("natGateway", "true (or unset) with workerNetwork public: only private workers egress through a NAT gateway");
    }
    if (!natGateway && bootstrapRay && packageIndexUrl === "") {
        fail("natGateway", "true unless packageIndexUrl is set: without a NAT gateway private workers have no internet, " +
            "so Ray and uv must come from a package index they reach inside the network");
    }
    const dashboardAllowedCidrs = cidrList("dashboardAllowedCidrs");
    if (dashboardAllowedCidrs.some((block) => block.endsWith("/0"))) {
        // Anyone who reaches the dashboard or client port can run code on the cluster.
        fail("dashboardAllowedCidrs", "specific CIDR blocks, never 0.0.0.0/0 (use the SSH tunnel from dashboardTunnel)");
    }

    return {
        project: ctx.project,
        stack: ctx.stack,
        workerCount,
        headInstanceType,
        workerInstanceType,
        volumeSizeGb,
        vpcCidr,
        subnetCidr,
        availabilityZone,
        sshAllowedCidrs: cidrList("sshAllowedCidrs"),
        dashboardAllowedCidrs,
        amiId,
        sshUser,
        sshIdentityFile,
        bucketForceDestroy: bool("bucketForceDestroy"),
        bootstrapRay,
        rayVersion,
        connectVia: oneOf("connectVia", ["public", "private"] as const),
        packageIndexUrl,
        pythonInstaller: oneOf("pythonInstaller", ["uv", "pip"] as const),
        bootstrapTimeoutSeconds,
        autostopIdleMinutes,
        workerGroups,
        headSchedulable: bool("headSchedulable"),
        workerNetwork,
        privateSubnetCidr,
        natGateway,
        existingNetwork,
    };
}

/**
 * What a group's instance type rules out: the spot market for families EC2 runs on Dedicated Hosts only, and a
 * root volume smaller than the Deep Learning AMI's snapshot for a GPU type that boots it.
 */
function instanceTypeProblem(group: WorkerGroup, typeKey: string): { field: "spot" | "volumeSizeGb"; expected: string } | undefined {
    const type = `${typeKey} ${group.instanceType}`;
    if (group.spot && NO_SPOT_FAMILIES.test(group.instanceType)) {
        return { field: "spot", expected: `false with ${type}, which EC2 runs on Dedicated Hosts only, never on the spot market` };
    }
    if (group.gpu && group.amiId === "" && group.count > 0 && group.volumeSizeGb < DLAMI_ROOT_SNAPSHOT_GB) {
        return { field: "volumeSizeGb", expected: `at least ${DLAMI_ROOT_SNAPSHOT_GB} with ${type}, which boots the Deep ` +
            `Learning AMI, whose root snapshot is ${DLAMI_ROOT_SNAPSHOT_GB} GB (got ${group.volumeSizeGb})` };
    }
    return undefined;
}

/** Keys that shape a network the stack builds itself, and so mean nothing in a VPC it is given. */
const OWN_NETWORK_KEYS: ConfigKey[] = ["vpcCidr", "subnetCidr", "privateSubnetCidr", "availabilityZone", "natGateway"];

/**
 * vpcId, subnetId and privateSubnetId: all unset builds a network, or a VPC with the subnets the workers' mode
 * needs. Whether the subnets belong to the VPC and route where they must is asked of AWS (src/existing-network.ts).
 */
function parseExistingNetwork(raw: RawValues, fail: (key: ConfigKey, expected: string) => never,
    privateWorkers: boolean): ExistingNetwork | undefined {
    const id = (key: ConfigKey, prefix: string): string => {
        const value = raw[key] ?? "";
        if (!new RegExp(`^$|^${prefix}-[0-9a-f]{8,17}$`).test(value)) {
            fail(key, `an id such as ${prefix}-0abcdef1234567890, or empty`);
        }
        return value;
    };
    const vpcId = id("vpcId", "vpc");
    const subnetId = id("subnetId", "subnet");
    const privateSubnetId = id("privateSubnetId", "subnet");
    if (vpcId === "") {
        for (const key of (["subnetId", "privateSubnetId"] as const).filter((k) => raw[k])) {
            fail(key, "empty unless vpcId is set: the stack builds its own VPC and subnets");
        }
        return undefined;
    }
    if (subnetId === "") {
        fail("subnetId", `the id of a subnet of ${vpcId} for the head, since vpcId is set`);
    }
    if (privateWorkers && privateSubnetId === "") {
        fail("privateSubnetId", `the id of a subnet of ${vpcId} for the workers, since workerNetwork is private and vpcId is set`);
    }
    if (!privateWorkers && privateSubnetId !== "") {
        fail("privateSubnetId", "empty with workerNetwork public: the workers share the head's subnet");
    }
    if (privateSubnetId !== "" && privateSubnetId === subnetId) {
        fail("privateSubnetId", `a subnet other than subnetId ${subnetId}: private workers need a subnet without the head's public route`);
    }
    for (const key of OWN_NETWORK_KEYS) {
        if (raw[key] !== undefined && raw[key] !== String(CONFIG_DEFAULTS[key])) {
            fail(key, `its default (unset) with vpcId ${vpcId}: the stack builds no network in a VPC it is given, so ` +
                "the VPC's own subnets and routes decide this");
        }
    }
    return { vpcId, subnetId, privateSubnetId };
}

const GROUP_FIELDS = ["name", "instanceType", "count", "volumeSizeGb", "amiId", "spot", "gpus"];
type ParsedGroup = Omit<WorkerGroup, "volumeSizeGb" | "amiId"> & { volumeSizeGb?: number; amiId?: string };

/**
 * Parses `workerGroups` (a JSON list, as `pulumi config set --path` stores it). Every error names the group and
 * the field, through `fail`.
 */
function parseWorkerGroups(text: string | undefined, fail: (expected: string) => never, instanceType: RegExp,
    amiPattern: RegExp): ParsedGroup[] {
    if (text === undefined) {
        return [];
    }
    const parsed = parseJson(text);
    const shape = "a list of groups such as [{\"name\": \"gpu\", \"instanceType\": \"g5.xlarge\", \"count\": 1}]";
    if (!Array.isArray(parsed)) {
        return fail(shape);
    }
    const seen = new Set<string>();
    return parsed.map((item, index): ParsedGroup => {
        if (typeof item !== "object" || item === null || Array.isArray(item)) {
            return fail(`${shape}; item ${index} is not an object`);
        }
        const group = item as Record<string, unknown>;
        const label = typeof group.name === "string" && group.name !== "" ? `group '${group.name}'` : `group ${index}`;
        const bad = (field: string, expected: string): never =>
            fail(`${label} field '${field}': got ${JSON.stringify(group[field])}, expected ${expected}`);
        for (const field of Object.keys(group).filter((f) => !GROUP_FIELDS.includes(f))) {
            fail(`${label}: unknown field '${field}'; a group has ${GROUP_FIELDS.join(", ")}`);
        }
        const whole = (field: string, min: number, max: number, optional: boolean): number | undefined => {
            const value = group[field];
            if (value === undefined && optional) {
                return undefined;
            }
            // A value set with `pulumi config set --path` without --type arrives as a string.
            const number = typeof value === "string" && /^\d+$/.test(value) ? Number(value) : value;
            if (typeof number !== "number" || !Number.isInteger(number) || number < min || number > max) {
                return bad(field, `a whole number from ${min} to ${max}`);
            }
            return number;
        };
        const name = group.name;
        if (typeof name !== "string" || !/^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$/.test(name)) {
            return bad("name", "a lowercase name of 1 to 20 letters, digits and dashes, starting with a letter");
        }
        if (name === DEFAULT_GROUP || name === HEAD_GROUP) {
            return bad("name", `a name other than '${DEFAULT_GROUP}' (the default group: workerCount, workerInstanceType) and '${HEAD_GROUP}'`);
        }
        if (seen.has(name)) {
            return bad("name", "a name no other group has");
        }
        seen.add(name);
        if (typeof group.instanceType !== "string" || !instanceType.test(group.instanceType)) {
            return bad("instanceType", "an EC2 instance type such as g5.xlarge");
        }
        const count = whole("count", 0, MAX_WORKERS, false)!;
        const volumeSizeGb = whole("volumeSizeGb", MIN_VOLUME_GB, MAX_VOLUME_GB, true);
        if (group.amiId !== undefined && (typeof group.amiId !== "string" || !amiPattern.test(group.amiId))) {
            return bad("amiId", "an AMI id such as ami-0abcdef1234567890");
        }
        const spotValue = group.spot === "true" ? true : group.spot === "false" ? false : group.spot;
        if (spotValue !== undefined && typeof spotValue !== "boolean") {
            return bad("spot", "true or false");
        }
        return {
            name,
            instanceType: group.instanceType,
            count,
            volumeSizeGb,
            amiId: group.amiId === "" ? undefined : group.amiId as string | undefined,
            spot: spotValue ?? false,
            gpu: isNvidiaGpuType(group.instanceType),
            gpus: whole("gpus", 0, 16, true),
        };
    });
}

/** A config value parsed as JSON, as Pulumi stores lists and structured values; undefined when it is not JSON. */
function parseJson(text: string): unknown {
    try {
        return JSON.parse(text) as unknown;
    } catch {
        return undefined;
    }
}

/** Parses an IPv4 CIDR block whose host bits are all zero, the form AWS accepts. */
function parseCidr(value: string): [ipaddr.IPv4, number] | undefined {
    if (!ipaddr.IPv4.isValidCIDR(value)) {
        return undefined;
    }
    const [address, prefix] = ipaddr.IPv4.parseCIDR(value);
    const network = ipaddr.IPv4.networkAddressFromCIDR(value);
    return network.toString() === address.toString() ? [address, prefix] : undefined;
}

/** Tags every taggable resource carries, so a stack's resources can be found and attributed. */
export function clusterTags(config: Pick<ClusterConfig, "project" | "stack">): Record<string, string> {
    return {
        "ray-cluster:project": config.project,
        "ray-cluster:stack": config.stack,
    };
}
