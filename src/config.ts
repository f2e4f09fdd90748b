/**
 * What a user can set, in the `ray-cluster` namespace: each key once, with its type, default, bounds and
 * description, and beside each group of keys the rules that span them. Pulumi.yaml's `config:` block is rendered
 * from these declarations (`npm run config:yaml`; a test fails when the two drift). Every problem of a stack is
 * reported at once, before any resource exists.
 */
import * as pulumi from "@pulumi/pulumi";
import * as semver from "semver";
import { z } from "zod";
import {
    choice, cidr, cidrList, ConfigError, flag, flagField, inside, integer, KeySchema, overlaps, parseCidr, ParsedCidr, Problem,
    problemsOf, structured, text, textField, textList, usableAddresses, wholeField,
} from "./config-schema";
import {
    DEFAULT_GROUP, DLAMI_ROOT_SNAPSHOT_GB, GPU_DEFAULT_VOLUME_GB, HEAD_GROUP, isNvidiaGpuType, mostNodes, WorkerGroup,
} from "./groups";

export { ConfigError } from "./config-schema";

/** Token auth arrived in Ray 2.52.0; older releases would start without authentication. */
export const MIN_RAY_VERSION = "2.52.0";
export const DEFAULT_RAY_VERSION = "2.60.0";
export const MAX_WORKERS = 100;
export const MIN_VOLUME_GB = 8;
export const MAX_VOLUME_GB = 16384;
/** A week: a longer idle bound is no cost control, and Ray's state would not tell a week-old job from a hung one. */
export const MAX_AUTOSTOP_MINUTES = 10080;

const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
const AMI_ID = /^$|^ami-[0-9a-f]{8,17}$/;
const AMI_FORM = "an AMI id such as ami-0abcdef1234567890";
/** Families EC2 offers on Dedicated Hosts only (mac*, u-* high memory): RunInstances refuses them on the spot market. */
const NO_SPOT_FAMILIES = /^(mac\d|u-|u\d)/;
const awsId = (prefix: string) => new RegExp(`^$|^${prefix}-[0-9a-f]{8,17}$`);
/** An availability zone's name: us-east-1a, eu-central-2b, us-gov-west-1a. */
const ZONE_FORM = /^[a-z]{2}(-[a-z]+)+-\d[a-z]$/;

// ── The nodes ────────────────────────────────────────────────────────────────────────────────────────────────────

const GROUP_FIELDS = {
    name: textField(/^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$/, "a lowercase name of 1 to 20 letters, digits and dashes, starting with a letter",
        "The group's name; its nodes are <name>-1 … <name>-N.", true,
        { holds: (name) => name !== DEFAULT_GROUP && name !== HEAD_GROUP,
            expected: `a name other than '${DEFAULT_GROUP}' (the default group: workerCount, workerInstanceType) and '${HEAD_GROUP}'` }),
    instanceType: textField(INSTANCE_TYPE, "an EC2 instance type such as g5.xlarge", "EC2 instance type of the group's nodes.", true),
    count: wholeField(0, MAX_WORKERS, "Number of nodes of a fixed group; an elastic group sets minCount and maxCount instead.", false),
    minCount: wholeField(0, MAX_WORKERS, "Fewest nodes of an elastic group, which Ray's autoscaler keeps running (default 0).", false),
    maxCount: wholeField(1, MAX_WORKERS, "Most nodes of an elastic group, which Ray's autoscaler launches as demand asks.", false),
    volumeSizeGb: wholeField(MIN_VOLUME_GB, MAX_VOLUME_GB,
        `Root volume in GB; default volumeSizeGb, or ${GPU_DEFAULT_VOLUME_GB} for an NVIDIA GPU type.`, false),
    amiId: textField(AMI_ID, AMI_FORM, "AMI of the group; default amiId, or the Deep Learning AMI for an NVIDIA GPU type.", false),
    spot: flagField("Run the group on the spot market (default false)."),
    gpus: wholeField(0, 16, "GPUs Ray is told each node has; default: what Ray detects.", false),
};
const GROUP_SHAPE = 'a list of groups such as [{"name": "gpu", "instanceType": "g5.xlarge", "count": 1}]';
const groupEntry = z.strictObject(GROUP_FIELDS, { error: `an object such as {"name": "gpu", "instanceType": "g5.xlarge", "count": 1}` });
/** What is wrong with how an entry sizes its group: fixed (count) or elastic (minCount, maxCount), never both. */
function sizeProblem(entry: { count?: unknown; minCount?: unknown; maxCount?: unknown }): { field: string; message: string } | undefined {
    const has = (field: "count" | "minCount" | "maxCount") => entry[field] !== undefined;
    if (has("count") && (has("minCount") || has("maxCount"))) {
        return { field: has("maxCount") ? "maxCount" : "minCount",
            message: "no range alongside count: a group is fixed (count) or elastic (minCount and maxCount), not both" };
    }
    if (!has("count") && !has("maxCount")) {
        return has("minCount")
            ? { field: "maxCount", message: "the most nodes the elastic group may grow to, since minCount is set" }
            : { field: "count", message: "a number of nodes, or minCount and maxCount for an elastic group" };
    }
    const [min, max] = [entry.minCount ?? 0, entry.maxCount];
    return typeof min === "number" && typeof max === "number" && max < min
        ? { field: "maxCount", message: `at least minCount ${min}` } : undefined;
}
const groupList = z.array(groupEntry, { error: GROUP_SHAPE }).superRefine((groups, ctx) => {
    const names = groups.map((group) => (group as { name?: unknown } | undefined)?.name);
    names.forEach((name, i) => {
        if (typeof name === "string" && names.indexOf(name) < i) {
            ctx.addIssue({ code: "custom", path: [i, "name"], message: "a name no other group has" });
        }
    });
    groups.forEach((group, i) => {
        const problem = typeof group === "object" && group !== null ? sizeProblem(group) : undefined;
        if (problem) {
            ctx.addIssue({ code: "custom", path: [i, problem.field], message: problem.message });
        }
    });
    // Also when another field of some group is wrong, so that every mistake shows at once.
}, { when: () => true });
/** How errors name an entry of workerGroups: by its name when it has one. */
const groupLabel = (entry: unknown, index: number) => {
    const name = (entry as { name?: unknown } | undefined)?.name;
    return typeof name === "string" && name !== "" ? `group '${name}'` : `group ${index}`;
};

const NODE_KEYS = {
    workerCount: integer(2, 0, MAX_WORKERS, "Number of Ray worker nodes besides the head, from 0 to 100."),
    headInstanceType: text("t3.medium", INSTANCE_TYPE, "an EC2 instance type such as t3.medium", "EC2 instance type of the head node."),
    workerInstanceType: text("t3.small", INSTANCE_TYPE, "an EC2 instance type such as t3.small", "EC2 instance type of each worker node."),
    volumeSizeGb: integer(20, MIN_VOLUME_GB, MAX_VOLUME_GB, "Encrypted gp3 root volume size of every node, in GB (at least 8)."),
    amiId: text("", AMI_ID, `${AMI_FORM}, or empty`,
        "AMI for every node; empty uses the latest Canonical Ubuntu 24.04 LTS amd64 image of the region."),
    workerSpot: flag(false, "Run the workers on the spot market, with a persistent request that stops (not terminates) a " +
        "reclaimed worker; the head stays on-demand."),
    headSchedulable: flag(true, "Let Ray schedule tasks and actors on the head; false starts the head with --num-cpus=0, " +
        "as Ray advises for large clusters."),
    workerGroups: structured(groupList, "Named groups of workers besides the default one (workerCount × workerInstanceType); " +
        "a group with minCount and maxCount instead of count is elastic: Ray's autoscaler sizes it to demand.",
        GROUP_SHAPE),
    elasticIdleMinutes: integer(5, 1, 1440, "Minutes an elastic worker may sit idle before Ray's autoscaler terminates it " +
        "(Ray's idle_timeout_minutes), from 1 to 1440."),
};

/** Every worker group, the default `worker` group first, with each group's defaults filled in from the stack's. */
function resolveGroups(v: Pick<Settings, "workerCount" | "workerInstanceType" | "volumeSizeGb" | "amiId" | "workerSpot" | "workerGroups">,
    volumeSizeGiven: boolean): WorkerGroup[] {
    const defaultGpu = isNvidiaGpuType(v.workerInstanceType);
    return [{
        name: DEFAULT_GROUP,
        instanceType: v.workerInstanceType,
        count: v.workerCount,
        // An explicit volumeSizeGb applies to the default group as given; a GPU type gets room for its image.
        volumeSizeGb: !volumeSizeGiven && defaultGpu ? GPU_DEFAULT_VOLUME_GB : v.volumeSizeGb,
        amiId: v.amiId,
        spot: v.workerSpot,
        gpu: defaultGpu,
    }, ...v.workerGroups.map((g) => {
        const gpu = isNvidiaGpuType(g.instanceType);
        return {
            name: g.name,
            instanceType: g.instanceType,
            count: g.count ?? 0,
            elastic: g.maxCount !== undefined ? { minCount: g.minCount ?? 0, maxCount: g.maxCount } : undefined,
            volumeSizeGb: g.volumeSizeGb ?? (gpu ? GPU_DEFAULT_VOLUME_GB : v.volumeSizeGb),
            amiId: g.amiId || v.amiId,
            spot: g.spot ?? false,
            gpu,
            gpus: g.gpus,
        };
    })];
}

/** The most workers the groups may have at once: fixed counts, and elastic groups at their maxCount. */
const totalWorkers = (v: Pick<Settings, "workerCount" | "workerGroups">) =>
    v.workerCount + v.workerGroups.reduce((sum, g) => sum + (g.maxCount ?? g.count ?? 0), 0);

/**
 * What a group's instance type rules out: the spot market for families EC2 runs on Dedicated Hosts only, and a
 * root volume smaller than the Deep Learning AMI's snapshot for a GPU type that boots it.
 */
function instanceTypeProblem(group: WorkerGroup, typeKey: string): { field: "spot" | "volumeSizeGb"; expected: string } | undefined {
    const type = `${typeKey} ${group.instanceType}`;
    if (group.spot && NO_SPOT_FAMILIES.test(group.instanceType)) {
        return { field: "spot", expected: `false with ${type}, which EC2 runs on Dedicated Hosts only, never on the spot market` };
    }
    if (group.gpu && group.amiId === "" && mostNodes(group) > 0 && group.volumeSizeGb < DLAMI_ROOT_SNAPSHOT_GB) {
        return { field: "volumeSizeGb", expected: `at least ${DLAMI_ROOT_SNAPSHOT_GB} with ${type}, which boots the Deep ` +
            `Learning AMI, whose root snapshot is ${DLAMI_ROOT_SNAPSHOT_GB} GB` };
    }
    return undefined;
}

const NODE_RULES: Rule[] = [
    rule(["workerCount", "workerGroups"], (v) => totalWorkers(v) > MAX_WORKERS ? {
        key: "workerGroups",
        expected: `groups that with workerCount ${v.workerCount} add up to at most ${MAX_WORKERS} workers, elastic ones at ` +
            `their maxCount (they make ${totalWorkers(v)})`,
    } : undefined),
    // The autoscaler is part of Ray: without Ray on the head nothing would ever launch an elastic group's nodes.
    rule(["workerGroups", "bootstrapRay"], (v) => v.bootstrapRay ? undefined
        : v.workerGroups.flatMap((g, i) => g.maxCount === undefined ? [] : [{ key: "workerGroups", entry: groupLabel(g, i),
            field: "maxCount", value: g.maxCount, expected: "a fixed count when bootstrapRay is false: Ray's autoscaler " +
                "launches an elastic group's nodes, and Ray is not installed" }])),
    // The default group's settings are top-level keys; another group's are fields of workerGroups.
    rule(["workerCount", "workerInstanceType", "volumeSizeGb", "amiId", "workerSpot", "workerGroups"], (v, given) =>
        resolveGroups(v, given("volumeSizeGb")).flatMap((group, i): Problem[] => {
            const isDefault = group.name === DEFAULT_GROUP;
            const problem = instanceTypeProblem(group, isDefault ? "workerInstanceType" : "instanceType");
            if (!problem) {
                return [];
            }
            return isDefault
                ? [{ key: problem.field === "spot" ? "workerSpot" : "volumeSizeGb", expected: problem.expected }]
                : [{ key: "workerGroups", entry: groupLabel(v.workerGroups[i - 1], i - 1), field: problem.field,
                    value: v.workerGroups[i - 1][problem.field], expected: problem.expected }];
        })),
];

// ── The network ──────────────────────────────────────────────────────────────────────────────────────────────────

const NETWORK_KEYS = {
    vpcCidr: cidr("10.0.0.0/16", "IPv4 CIDR block of the VPC (/16 to /28).",
        { holds: (block) => block.prefix >= 16 && block.prefix <= 28,
            expected: "an IPv4 CIDR block with a prefix from /16 to /28 (the range AWS allows for a VPC)" }),
    subnetCidr: cidr("10.0.1.0/24", "IPv4 CIDR block of the public subnet; must lie inside vpcCidr."),
    availabilityZone: text("", /^$|^[a-z]{2}(-[a-z]+)+-\d[a-z]$/,
        "an availability zone such as us-east-1a, or empty for the region's first available zone",
        "Availability zone of the subnet; empty picks the region's first available zone."),
    sshAllowedCidrs: cidrList(["0.0.0.0/0"], "IPv4 CIDR blocks allowed to reach SSH (22). Narrow this to your own address."),
    dashboardAllowedCidrs: cidrList([], "IPv4 CIDR blocks allowed to reach the dashboard (8265) and Ray client (10001) " +
        "directly; by default only the SSH tunnel reaches them.",
    // Anyone who reaches the dashboard or client port can run code on the cluster.
    { holds: (blocks) => !blocks.some((block) => block.endsWith("/0")),
        expected: "specific CIDR blocks, never 0.0.0.0/0 (use the SSH tunnel from dashboardTunnel)" }),
    workerNetwork: choice("public", ["public", "private"] as const, "Where workers live; public puts them beside the head " +
        "with public IPs, private puts them in a private subnet with no public IP, reached only through the head."),
    privateSubnetCidr: cidr("10.0.2.0/24", "IPv4 CIDR block of the workers' private subnet (workerNetwork private); inside " +
        "vpcCidr, not overlapping subnetCidr."),
    natGateway: flag(true, "Give private workers internet access through a NAT gateway (billed per hour and per GB); false " +
        "needs a packageIndexUrl the workers reach inside the network."),
    vpcId: text("", awsId("vpc"), "an id such as vpc-0abcdef1234567890, or empty", "An existing VPC to place the cluster in, " +
        "with subnetId (and privateSubnetId for private workers); the stack then creates no VPC, gateway, NAT or route table."),
    subnetId: text("", awsId("subnet"), "an id such as subnet-0abcdef1234567890, or empty",
        "The head's subnet in vpcId; it must route to an internet gateway unless connectVia is private."),
    privateSubnetId: text("", awsId("subnet"), "an id such as subnet-0abcdef1234567890, or empty",
        "The workers' subnet in vpcId when workerNetwork is private, in the head's zone; it must give no public IP on launch."),
    elasticZones: textList([], ZONE_FORM, 'a JSON list of availability zones such as ["us-east-1b", "us-east-1c"]',
        "Availability zones besides the head's in which elastic groups may also launch, each with a worker subnet of its own " +
        "(public or private, as workerNetwork says); Ray's autoscaler tries the next one when EC2 refuses a launch. Traffic " +
        "between zones is billed per GB in each direction; fixed groups stay in the head's zone."),
    elasticSubnetCidrs: cidrList([], "IPv4 CIDR blocks of the elasticZones' worker subnets, one per zone in the same order; " +
        "empty derives them: blocks the size of the workers' subnet, the first free ones in vpcCidr."),
    natGatewayPerZone: flag(false, "With private workers and elasticZones: a NAT gateway in each elastic zone (each billed " +
        "per hour and per GB, about $32.85 a month in us-east-1 before data) rather than one in the head's zone for all (cheaper; the other " +
        "zones' traffic to it is billed as cross-zone data, and it fails with its zone)."),
    elasticSubnetIds: textList([], /^subnet-[0-9a-f]{8,17}$/, 'a JSON list of subnet ids such as ["subnet-0abcdef1234567890"]',
        "With vpcId: subnets of that VPC in other zones in which elastic groups may also launch; public ones (an internet " +
        "gateway route) with workerNetwork public, private ones that give no public IP with workerNetwork private."),
};


/** Keys that shape a network the stack builds itself, and so mean nothing in a VPC it is given. */
const OWN_NETWORK_KEYS = ["vpcCidr", "subnetCidr", "privateSubnetCidr", "availabilityZone", "natGateway", "elasticZones",
    "elasticSubnetCidrs", "natGatewayPerZone"] as const;

const cidrOf = (block: string) => parseCidr(block)!;
const insideVpc = (key: "subnetCidr" | "privateSubnetCidr", block: string, vpcCidr: string): Problem | undefined =>
    inside(cidrOf(block), cidrOf(vpcCidr), 28) ? undefined
        : { key, expected: `an IPv4 CIDR block inside vpcCidr ${vpcCidr}, with a prefix from /${cidrOf(vpcCidr).prefix} to /28` };
/** AWS reserves five addresses of every subnet; the nodes need the rest. */
const roomFor = (key: "subnetCidr" | "privateSubnetCidr", block: string, needed: number, what: string): Problem | undefined =>
    usableAddresses(cidrOf(block)) >= needed ? undefined
        : { key, expected: `a subnet with room for ${needed} ${what} (it has ${usableAddresses(cidrOf(block))} usable addresses)` };
const builtHere = (v: Pick<Settings, "vpcId">) => v.vpcId === "";
const privateMode = (v: Pick<Settings, "workerNetwork">) => v.workerNetwork === "private";

// ── Elastic zones ────────────────────────────────────────────────────────────────────────────────────────────────

const elasticMax = (v: Pick<Settings, "workerGroups">) => v.workerGroups.reduce((sum, g) => sum + (g.maxCount ?? 0), 0);
const hasElastic = (v: Pick<Settings, "workerGroups">) => v.workerGroups.some((g) => g.maxCount !== undefined);
const toNumber = (block: ParsedCidr) => block.address.toByteArray().reduce((n, byte) => n * 256 + byte, 0);
const toCidr = (n: number, prefix: number) => `${[24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".")}/${prefix}`;

/** Blocks of PREFIX inside VPC that overlap none of TAKEN, from its bottom up (or its top down). */
function freeBlocks(vpc: ParsedCidr, prefix: number, taken: ParsedCidr[], count: number, fromTop = false): string[] {
    const size = 2 ** (32 - prefix);
    const blocks = 2 ** (prefix - vpc.prefix);
    const found: string[] = [];
    for (let i = 0; i < blocks && found.length < count; i++) {
        const block = toCidr(toNumber(vpc) + (fromTop ? blocks - 1 - i : i) * size, prefix);
        if (!taken.some((t) => overlaps(t, cidrOf(block)))) {
            found.push(block);
            taken = [...taken, cidrOf(block)];
        }
    }
    return found;
}

/** The worker subnet of each elastic zone, and with a NAT gateway per zone the small public subnet it sits in. */
export interface ZoneSubnet {
    zone: string;
    /** The workers' subnet in that zone. */
    cidrBlock: string;
    /** The /28 public subnet of the zone's own NAT gateway (natGatewayPerZone). */
    natCidrBlock?: string;
}

type ZoneSettings = Pick<Settings, "elasticZones" | "elasticSubnetCidrs" | "natGatewayPerZone" | "natGateway" | "vpcCidr" |
    "subnetCidr" | "privateSubnetCidr" | "workerNetwork">;

/** The blocks the stack's own subnets take: the head's, and the private workers' in private mode. */
const ownBlocks = (v: ZoneSettings) => [cidrOf(v.subnetCidr), ...(privateMode(v) ? [cidrOf(v.privateSubnetCidr)] : [])];

/** Each elastic zone's subnets: elasticSubnetCidrs where given, else the first free blocks of the workers' size. */
export function zoneSubnets(v: ZoneSettings): ZoneSubnet[] {
    const vpc = cidrOf(v.vpcCidr);
    const workerPrefix = cidrOf(privateMode(v) ? v.privateSubnetCidr : v.subnetCidr).prefix;
    const blocks = v.elasticSubnetCidrs.length > 0 ? v.elasticSubnetCidrs
        : freeBlocks(vpc, workerPrefix, ownBlocks(v), v.elasticZones.length);
    const perZoneNat = v.natGatewayPerZone && privateMode(v) && v.natGateway;
    // The NAT gateways' subnets come from the VPC's top, away from the workers' blocks.
    const natBlocks = perZoneNat ? freeBlocks(vpc, 28, [...ownBlocks(v), ...blocks.map(cidrOf)], v.elasticZones.length, true) : [];
    return v.elasticZones.map((zone, i) => ({ zone, cidrBlock: blocks[i], ...(perZoneNat ? { natCidrBlock: natBlocks[i] } : {}) }));
}

const ZONE_RULES: Rule[] = [
    rule(["elasticZones", "workerGroups"], (v) => v.elasticZones.length > 0 && !hasElastic(v) ? {
        key: "elasticZones",
        expected: "empty unless a workerGroups entry is elastic (minCount and maxCount): fixed groups stay in the head's zone",
    } : undefined),
    rule(["elasticZones", "availabilityZone"], (v) => v.availabilityZone !== "" && v.elasticZones.includes(v.availabilityZone) ? {
        key: "elasticZones", expected: `zones other than availabilityZone ${v.availabilityZone}, the head's, which elastic groups use already`,
    } : undefined),
    rule(["elasticZones", "elasticSubnetCidrs"], (v) => v.elasticSubnetCidrs.length > 0 &&
        v.elasticSubnetCidrs.length !== v.elasticZones.length ? {
            key: "elasticSubnetCidrs",
            expected: `one block per entry of elasticZones (${v.elasticZones.length}), or empty to derive them`,
        } : undefined),
    rule(["vpcId", "elasticZones", "elasticSubnetCidrs", "natGatewayPerZone", "natGateway", "vpcCidr", "subnetCidr",
        "privateSubnetCidr", "workerNetwork", "workerGroups"], (v) => {
        if (!builtHere(v) || v.elasticZones.length === 0 ||
            (v.elasticSubnetCidrs.length > 0 && v.elasticSubnetCidrs.length !== v.elasticZones.length)) {
            return undefined;
        }
        const zones = zoneSubnets(v);
        const given = v.elasticSubnetCidrs.length > 0;
        if (zones.some((z) => z.cidrBlock === undefined)) {
            return { key: "elasticZones", expected: `at most ${zones.filter((z) => z.cidrBlock !== undefined).length} zones: ` +
                `vpcCidr ${v.vpcCidr} has no more free blocks the size of the workers' subnet; list fewer zones, or give ` +
                "elasticSubnetCidrs" };
        }
        if (zones.some((z) => v.natGatewayPerZone && z.natCidrBlock === undefined && privateMode(v) && v.natGateway)) {
            return { key: "natGatewayPerZone", expected: `false: vpcCidr ${v.vpcCidr} has no free /28 left for each zone's NAT gateway` };
        }
        const problems: Problem[] = [];
        const key = given ? "elasticSubnetCidrs" : "elasticZones";
        zones.forEach((z, i) => {
            const block = cidrOf(z.cidrBlock);
            const clash = [...ownBlocks(v), ...zones.slice(0, i).map((o) => cidrOf(o.cidrBlock))].find((o) => overlaps(o, block));
            if (!inside(block, cidrOf(v.vpcCidr), 28)) {
                problems.push({ key, expected: `blocks inside vpcCidr ${v.vpcCidr}, with a prefix up to /28; ${z.cidrBlock} is not` });
            } else if (clash) {
                problems.push({ key, expected: `blocks that overlap no other subnet; ${z.cidrBlock} overlaps ${toCidr(toNumber(clash), clash.prefix)}` });
            } else if (usableAddresses(block) < elasticMax(v)) {
                problems.push({ key, expected: `subnets with room for the elastic groups' ${elasticMax(v)} workers; ${z.cidrBlock} ` +
                    `has ${usableAddresses(block)} usable addresses` });
            }
        });
        return problems;
    }),
    rule(["natGatewayPerZone", "workerNetwork", "natGateway", "elasticZones"], (v) =>
        v.natGatewayPerZone && !(privateMode(v) && v.natGateway && v.elasticZones.length > 0) ? {
            key: "natGatewayPerZone",
            expected: "false unless workerNetwork is private, natGateway is true and elasticZones lists a zone: only private " +
                "workers in other zones egress through a NAT gateway of their own",
        } : undefined),
    rule(["vpcId", "elasticSubnetIds", "workerGroups", "subnetId", "privateSubnetId"], (v) => {
        if (v.elasticSubnetIds.length === 0) {
            return undefined;
        }
        if (v.vpcId === "") {
            return { key: "elasticSubnetIds", expected: "empty unless vpcId is set: in the stack's own VPC, list elasticZones" };
        }
        if (!hasElastic(v)) {
            return { key: "elasticSubnetIds", expected: "empty unless a workerGroups entry is elastic (minCount and maxCount)" };
        }
        const own = v.elasticSubnetIds.find((id) => id === v.subnetId || id === v.privateSubnetId);
        return own ? { key: "elasticSubnetIds", expected: `subnets other than subnetId and privateSubnetId; ${own} is one of them` }
            : undefined;
    }),
];

const NETWORK_RULES: Rule[] = [
    rule(["vpcId", "vpcCidr", "subnetCidr"], (v) => builtHere(v) ? insideVpc("subnetCidr", v.subnetCidr, v.vpcCidr) : undefined),
    // In private mode the public subnet holds the head and the NAT gateway, and the private one the workers.
    rule(["vpcId", "subnetCidr", "workerNetwork", "workerCount", "workerGroups"], (v) => !builtHere(v) ? undefined
        : privateMode(v) ? roomFor("subnetCidr", v.subnetCidr, 2, "addresses (the head and the NAT gateway)")
            : roomFor("subnetCidr", v.subnetCidr, totalWorkers(v) + 1, "nodes")),
    rule(["vpcId", "workerNetwork", "vpcCidr", "privateSubnetCidr"], (v) =>
        builtHere(v) && privateMode(v) ? insideVpc("privateSubnetCidr", v.privateSubnetCidr, v.vpcCidr) : undefined),
    rule(["vpcId", "workerNetwork", "subnetCidr", "privateSubnetCidr"], (v) =>
        builtHere(v) && privateMode(v) && overlaps(cidrOf(v.privateSubnetCidr), cidrOf(v.subnetCidr)) ? {
            key: "privateSubnetCidr",
            expected: `an IPv4 CIDR block that does not overlap subnetCidr ${v.subnetCidr}, such as ` +
                `${v.subnetCidr === defaultOf("privateSubnetCidr") ? "10.0.3.0/24" : defaultOf("privateSubnetCidr")}`,
        } : undefined),
    rule(["vpcId", "workerNetwork", "privateSubnetCidr", "workerCount", "workerGroups"], (v) =>
        builtHere(v) && privateMode(v) ? roomFor("privateSubnetCidr", v.privateSubnetCidr, totalWorkers(v), "workers") : undefined),
    rule(["natGateway", "workerNetwork"], (v) => !v.natGateway && !privateMode(v) ? {
        key: "natGateway",
        expected: "true (or unset) with workerNetwork public: only private workers egress through a NAT gateway",
    } : undefined),
    rule(["natGateway", "bootstrapRay", "packageIndexUrl", "rayImage"], (v) =>
        !v.natGateway && v.bootstrapRay && v.packageIndexUrl === "" && !v.rayImage ? {
            key: "natGateway",
            expected: "true unless rayImage is true or packageIndexUrl is set: without a NAT gateway private workers have no " +
                "internet, so Ray and uv must be in their image already or come from a package index they reach inside the network",
        } : undefined),
    // vpcId, subnetId and privateSubnetId: whether the subnets belong to the VPC and route where they must is asked
    // of AWS (src/existing-network.ts).
    rule(["vpcId", "subnetId", "privateSubnetId"], (v) => v.vpcId !== "" ? undefined
        : (["subnetId", "privateSubnetId"] as const).filter((key) => v[key] !== "")
            .map((key) => ({ key, expected: "empty unless vpcId is set: the stack builds its own VPC and subnets" }))),
    rule(["vpcId", "subnetId"], (v) => v.vpcId !== "" && v.subnetId === "" ? {
        key: "subnetId", expected: `the id of a subnet of ${v.vpcId} for the head, since vpcId is set`,
    } : undefined),
    rule(["vpcId", "workerNetwork", "subnetId", "privateSubnetId"], (v) => {
        if (v.vpcId === "") {
            return undefined;
        }
        if (privateMode(v) && v.privateSubnetId === "") {
            return { key: "privateSubnetId",
                expected: `the id of a subnet of ${v.vpcId} for the workers, since workerNetwork is private and vpcId is set` };
        }
        if (!privateMode(v) && v.privateSubnetId !== "") {
            return { key: "privateSubnetId", expected: "empty with workerNetwork public: the workers share the head's subnet" };
        }
        return v.privateSubnetId !== "" && v.privateSubnetId === v.subnetId ? { key: "privateSubnetId",
            expected: `a subnet other than subnetId ${v.subnetId}: private workers need a subnet without the head's public route` }
            : undefined;
    }),
    ...OWN_NETWORK_KEYS.map((key) => rule(["vpcId", key], (v) =>
        v.vpcId !== "" && JSON.stringify(v[key]) !== JSON.stringify(defaultOf(key)) ? {
            key,
            expected: `its default (unset) with vpcId ${v.vpcId}: the stack builds no network in a VPC it is given, so ` +
                "the VPC's own subnets and routes decide this",
        } : undefined)),
];

// ── Access and the bootstrap ─────────────────────────────────────────────────────────────────────────────────────

const ACCESS_KEYS = {
    sshUser: text("ubuntu", /^[a-z_][a-z0-9_-]{0,31}$/, "a Unix user name such as ubuntu", "Login user on the nodes."),
    sshIdentityFile: text("", /^[^\s]*$/, "a file path without spaces, or empty",
        "Private key path written as IdentityFile into sshConfig; empty means ~/.ssh/ray-cluster-<stack>.pem."),
    connectVia: choice("public", ["public", "private"] as const, "Address the bootstrap uses to SSH to the nodes, public " +
        "or private (from inside the VPC or over a VPN)."),
    bootstrapRay: flag(true, "Install and start Ray on the nodes; false builds the infrastructure only."),
    rayImage: flag(false, "Build a Ray-ready image of each base AMI (its Ray, uv, venv, AWS SDK and node scripts installed " +
        "by a builder instance that is then terminated) and boot every node and scale-up from it: nothing is installed at " +
        "boot and nodes need no package index. The first `pulumi up` takes a few minutes longer; a new Ray release, installer, " +
        "index, node script or pinned amiId builds a new image, which only nodes launched later boot. A new Ubuntu or Deep " +
        "Learning AMI release alone builds nothing (see rayImageRefresh)."),
    rayImageRefresh: text("", /^[A-Za-z0-9._:-]{0,64}$/,
        "up to 64 letters, digits, dots, dashes, underscores or colons, such as 2027-01-15, or empty",
        "Change (to today's date, say) to rebuild the Ray-ready images of the default bases, Canonical Ubuntu 24.04 and the " +
        "Deep Learning AMI, from their newest release; images of a pinned amiId are not rebuilt."),
    rayVersion: text(DEFAULT_RAY_VERSION, /^\d+\.\d+\.\d+$/, `an exact Ray release such as ${DEFAULT_RAY_VERSION}`,
        "Exact Ray release installed on every node (2.52.0 or later, for token authentication).",
        { holds: (version) => !semver.lt(version, MIN_RAY_VERSION),
            expected: `a Ray release of ${MIN_RAY_VERSION} or later (the first with token authentication)` }),
    packageIndexUrl: text("", /^$|^https?:\/\/[^\s'"\\]+$/,
        "an http(s) URL of a PEP 503 package index such as https://pypi.example.com/simple/, or empty for PyPI",
        "PEP 503 package index URL that replaces PyPI on the nodes (a mirror or an air-gapped index); empty uses PyPI."),
    pythonInstaller: choice("uv", ["uv", "pip"] as const, "Python package installer on the nodes, uv (fast) or pip."),
    bootstrapTimeoutSeconds: integer(600, 30, 7200, "Bound, in seconds, on each wait of the bootstrap (SSH, cloud-init, the " +
        "head's GCS, the cluster check)."),
};

const ACCESS_RULES: Rule[] = [
    rule(["rayImage", "bootstrapRay"], (v) => v.rayImage && !v.bootstrapRay ? {
        key: "rayImage",
        expected: "false when bootstrapRay is false: the image holds the Ray the bootstrap would install, and nothing would run it",
    } : undefined),
];

// ── Data and cost ────────────────────────────────────────────────────────────────────────────────────────────────

const DATA_AND_COST_KEYS = {
    bucketForceDestroy: flag(false, "Let `pulumi destroy` delete buckets that still hold objects, with every version. Leave " +
        "false to keep data."),
    autostopIdleMinutes: integer(0, 0, MAX_AUTOSTOP_MINUTES, "Minutes of continuous idleness (no Ray job, task, actor or " +
        "demand, no SSH session on the head) after which the head stops every instance of this stack; 0 turns autostop " +
        "off. At most 10080."),
};

const DATA_AND_COST_RULES: Rule[] = [
    rule(["autostopIdleMinutes", "bootstrapRay"], (v) => v.autostopIdleMinutes > 0 && !v.bootstrapRay ? {
        key: "autostopIdleMinutes",
        expected: "0 when bootstrapRay is false: autostop judges idleness from Ray, which is not installed",
    } : undefined),
];

// ── The contract ─────────────────────────────────────────────────────────────────────────────────────────────────

/** Every key this program reads, in the order Pulumi.yaml declares them. */
export const SETTINGS = { ...NODE_KEYS, ...NETWORK_KEYS, ...ACCESS_KEYS, ...DATA_AND_COST_KEYS } satisfies Record<string, KeySchema>;
export type ConfigKey = keyof typeof SETTINGS;
export const CONFIG_KEYS = Object.keys(SETTINGS) as ConfigKey[];
/** Each key's value once parsed and defaulted. */
export type Settings = { [K in ConfigKey]: z.output<(typeof SETTINGS)[K]> };
/** A key's value when the stack does not set it. */
export const defaultOf = <K extends ConfigKey>(key: K) => (SETTINGS[key] as KeySchema).parse(undefined) as Settings[K];
/** How the errors of each structured key name its entries. */
export const ENTRIES = { workerGroups: { label: groupLabel, fields: Object.keys(GROUP_FIELDS), noun: "group", schema: groupEntry } };

/** A rule over several keys; it runs once each of its keys has a valid value, and may find problems with any of them. */
interface Rule {
    keys: readonly ConfigKey[];
    check: (values: Settings, given: (key: ConfigKey) => boolean) => Problem | Problem[] | undefined;
}
function rule<K extends ConfigKey>(keys: K[], check: (values: Pick<Settings, K>, given: (key: ConfigKey) => boolean) =>
    Problem | Problem[] | undefined): Rule {
    return { keys, check };
}
const RULES = [...NODE_RULES, ...NETWORK_RULES, ...ZONE_RULES, ...ACCESS_RULES, ...DATA_AND_COST_RULES];

/** An existing VPC the cluster is placed in, instead of a network of its own. */
export interface ExistingNetwork {
    /** The VPC. */
    vpcId: string;
    /** The head's subnet, which routes to an internet gateway unless connectVia is private. */
    subnetId: string;
    /** The workers' subnet with workerNetwork private; empty puts them in subnetId. */
    privateSubnetId: string;
    /** Subnets in other zones where elastic groups may also launch. */
    elasticSubnetIds: string[];
}

/** The validated, fully defaulted settings of one stack. Everything downstream takes plain values from here. */
export type ClusterConfig = Omit<Settings, "workerSpot" | "workerGroups" | "vpcId" | "subnetId" | "privateSubnetId" |
    "elasticSubnetIds"> & {
    /** Pulumi project name, used in tags and resource names. */
    project: string;
    /** Pulumi stack name, used in tags and the default identity file. */
    stack: string;
    /** Every worker group, the default `worker` group (workerCount × workerInstanceType) first. */
    workerGroups: WorkerGroup[];
    /** The existing VPC and subnets the cluster goes into; undefined builds a network of its own. */
    existingNetwork?: ExistingNetwork;
    /** In a network of its own: each elastic zone's subnets, derived or given. */
    elasticZoneSubnets: ZoneSubnet[];
};
/** How the bootstrap reaches the nodes over SSH. */
export type ConnectVia = Settings["connectVia"];
/** Where workers live: beside the head in its public subnet, or in a private subnet reached only through the head. */
export type WorkerNetwork = Settings["workerNetwork"];

/** Raw values as `pulumi config` passes them: text, with lists and structured values as JSON. */
export type RawValues = Partial<Record<ConfigKey, string>>;

/** Reads the `ray-cluster` namespace of the stack config and validates it before any resource exists. */
export function loadConfig(): ClusterConfig {
    const namespace = pulumi.getProject();
    const config = new pulumi.Config(namespace);
    const raw: RawValues = {};
    for (const key of CONFIG_KEYS) {
        const value = config.get(key);
        if (value !== undefined) {
            raw[key] = value;
        }
    }
    return parseConfig(raw, { project: namespace, stack: pulumi.getStack(), namespace }, Object.keys(pulumi.runtime.allConfig()));
}

interface ParseContext {
    project: string;
    stack: string;
    namespace: string;
}

/**
 * Turns raw values into a validated ClusterConfig, or fails with every problem at once: each key's own, then each
 * rule whose keys are all valid. `fullKeys` are every key the stack sets, of any namespace, for unknown ones.
 */
export function parseConfig(raw: RawValues, ctx: ParseContext, fullKeys: string[] = []): ClusterConfig {
    const problems: Problem[] = unknownKeys(ctx.namespace, fullKeys);
    const values: Partial<Settings> = {};
    for (const key of CONFIG_KEYS) {
        const parsed = (SETTINGS[key] as KeySchema).safeParse(raw[key]);
        if (parsed.success) {
            (values as Record<string, unknown>)[key] = parsed.data;
        } else {
            problems.push(...problemsOf(key, raw[key], parsed.error.issues, key in ENTRIES ? ENTRIES[key as keyof typeof ENTRIES] : undefined));
        }
    }
    const given = (key: ConfigKey) => raw[key] !== undefined;
    for (const { keys, check } of RULES) {
        if (keys.every((key) => key in values)) {
            const found = check(values as Settings, given) ?? [];
            problems.push(...(Array.isArray(found) ? found : [found]).map((p) => ({
                ...p, value: p.entry === undefined ? raw[p.key as ConfigKey] : p.value,
            })));
        }
    }
    if (problems.length > 0) {
        throw new ConfigError(ctx.namespace, problems);
    }
    // The default group's settings and the VPC's ids become workerGroups and existingNetwork.
    const { workerSpot, workerGroups, vpcId, subnetId, privateSubnetId, elasticSubnetIds, ...plain } = values as Settings;
    return {
        ...plain,
        project: ctx.project,
        stack: ctx.stack,
        sshIdentityFile: plain.sshIdentityFile || `~/.ssh/${ctx.project}-${ctx.stack}.pem`,
        workerGroups: resolveGroups({ ...plain, workerSpot, workerGroups }, given("volumeSizeGb")),
        existingNetwork: vpcId === "" ? undefined : { vpcId, subnetId, privateSubnetId, elasticSubnetIds },
        elasticZoneSubnets: vpcId === "" ? zoneSubnets({ ...(values as Settings) }) : [],
    };
}

/** Keys of this program's namespace that it does not read, so a typo never silently yields a default. */
function unknownKeys(namespace: string, fullKeys: string[]): Problem[] {
    return fullKeys
        .filter((full) => full.startsWith(`${namespace}:`))
        .map((full) => full.slice(namespace.length + 1))
        .filter((key) => !(CONFIG_KEYS as string[]).includes(key))
        .map((key) => {
            const near = CONFIG_KEYS.find((k) => k.toLowerCase() === key.toLowerCase());
            return { key, unknown: "key" as const, expected: near ? ` (did you mean '${namespace}:${near}'?)`
                : `; known keys: ${CONFIG_KEYS.join(", ")}` };
        });
}

/** Tags every taggable resource carries, so a stack's resources can be found and attributed. */
export function clusterTags(config: Pick<ClusterConfig, "project" | "stack">): Record<string, string> {
    return {
        "ray-cluster:project": config.project,
        "ray-cluster:stack": config.stack,
    };
}
