/**
 * Renders the program under Pulumi mocks and records every resource the engine would see: type, name, inputs,
 * parent, dependencies and options. Tests, the plan script, the policy runner and the benchmarks share it.
 */
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "crypto";
import * as path from "path";

// Internal runtime modules: the mock monitor and the settings that hold it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const settings = require("@pulumi/pulumi/runtime/settings");
// eslint-disable-next-line @typescript-eslint/no-require-imports
const stack = require("@pulumi/pulumi/runtime/stack");

export const PROJECT = "ray-cluster";
export const PROGRAM = path.resolve(__dirname, "..", "index.ts");

/** A resource as registered with the engine. */
export interface RegisteredResource {
    type: string;
    name: string;
    urn: string;
    parent: string;
    custom: boolean;
    inputs: Record<string, any>;
    /** The state the mock returned: inputs plus what the provider computes, such as autonamed bucket names. */
    outputs: Record<string, any>;
    /** URNs this resource depends on: explicit dependsOn plus every input's resource. */
    dependencies: string[];
    options: {
        deleteBeforeReplace: boolean;
        ignoreChanges: string[];
        additionalSecretOutputs: string[];
        customTimeouts?: { create: string; update: string; delete: string };
        protect: boolean;
        retainOnDelete: boolean;
        /** URN of the resource whose deletion makes this one's delete unnecessary: the engine then skips it. */
        deletedWith: string;
    };
}

/** What a mock returns for a resource: its id and its output state. */
export type ResourceMock = (args: pulumi.runtime.MockResourceArgs) => Promise<Record<string, any> | undefined>;

export interface RenderOptions {
    /** Stack name; "dev" by default. */
    stack?: string;
    /** The program to run: index.ts of this checkout by default, or of a copy (a changed script). */
    program?: string;
    /** Instance addresses by `Name` tag; the default gives head 10.0.1.10 and worker-i 10.0.1.(10+i). */
    addresses?: (nodeName: string) => { privateIp: string; publicIp: string };
    /**
     * The key each tls PrivateKey resource generates, by resource name (real, distinct keys for end-to-end runs); by
     * default each gets a mock key of its own, so no key can stand in for another.
     */
    privateKeys?: (resourceName: string) => { privateKeyOpenssh: string; publicKeyOpenssh: string };
    /**
     * Launches a machine for each EC2 instance (end-to-end runs), given its `Name` tag, its inputs and what the
     * account resolves them to (the key pair's public key, the instance profile's role); may return the instance id
     * the emulated EC2 gave it.
     */
    launchInstance?: (nodeName: string, inputs: Record<string, any>, account: LaunchFacts) => Promise<string | void>;
    /** Brings an instance to the state an InstanceState resource asks for (end-to-end runs), given its `Name` tag. */
    setInstanceState?: (nodeName: string, state: string) => Promise<void>;
    /**
     * Ids of resources by name, where they must be ones an emulated EC2 knows (end-to-end runs with elastic groups:
     * Ray's autoscaler launches into the stack's subnet and security groups); every other id is `<name>-id`.
     */
    resourceIds?: Record<string, string>;
    /** Runs a remote.Command (end-to-end runs) and returns its stdout and stderr; or nothing, for the mocks' own. */
    runCommand?: (inputs: Record<string, any>, name: string) => Promise<{ stdout: string; stderr: string } | undefined>;
    /**
     * The account's own AMIs by id, with their tags, as aws.ec2.getAmiIds and getAmi find them (Ray-ready images an
     * earlier `pulumi up` built); none by default.
     */
    images?: Record<string, { tags: Record<string, string> }>;
    /** What the lookup of the newest Canonical Ubuntu image finds (a new release); ami-0123456789abcdef0 by default. */
    ubuntuImageId?: string;
    /** Makes an AMI from its source instance (end-to-end runs); returns the new image's id. */
    createImage?: (resourceName: string, inputs: Record<string, any>) => Promise<string>;
    /**
     * The subnets an existing-VPC lookup finds, by id; the default makes the configured subnetId a public subnet
     * and privateSubnetId a NAT-routed one, both of the configured vpcId.
     */
    subnets?: Record<string, MockSubnet>;
    /**
     * Called each time a resource is registered, with every resource registered so far, in order: what a `pulumi up`
     * has created by then (end-to-end runs: the roles and policies a booted node's calls are authorized against).
     */
    registered?: (resources: readonly RegisteredResource[]) => void;
}

/** What EC2 resolves an instance's inputs to: what its metadata then serves. */
export interface LaunchFacts {
    /** Public key of the key pair its keyName names. */
    publicKey?: string;
    /** Name of the role its instance profile holds. */
    role?: string;
}

/** A subnet of the mocked account, as aws.ec2.getSubnet and aws.ec2.getRouteTable describe it. */
export interface MockSubnet {
    vpcId: string;
    /** Target of the default route of its route table (igw-…, nat-…), or "" for none. */
    defaultRoute: string;
    /** False when it has no route table of its own and uses its VPC's main one, whose default route is mainRoute. */
    associated?: boolean;
    /** The default route of its VPC's main table. */
    mainRoute?: string;
    cidrBlock?: string;
    availabilityZone?: string;
    /** Free addresses; 250 unless said. */
    availableIpAddressCount?: number;
    /** Instances of this stack already in the subnet (an update of a deployed stack). */
    stackInstances?: number;
    /** Whether instances get public IPs on launch; by default, when the default route leads to an internet gateway. */
    mapPublicIpOnLaunch?: boolean;
}

/** The subnets `npm run plan` and the mocks tests see for a config with vpcId: the ones it names, as it expects them. */
export function mockSubnetsFor(config: StackConfig): Record<string, MockSubnet> {
    // Keys as a stack file names them (ray-cluster:vpcId) or as tests do (vpcId).
    const value = (key: string) => toConfigStrings(config)[`${PROJECT}:${key}`] ?? "";
    const vpcId = value("vpcId");
    const subnets: Record<string, MockSubnet> = {};
    if (value("subnetId") !== "") {
        subnets[value("subnetId")] = { vpcId, defaultRoute: "igw-0123456789abcdef0", cidrBlock: "172.31.0.0/20" };
    }
    if (value("privateSubnetId") !== "") {
        subnets[value("privateSubnetId")] = { vpcId, defaultRoute: "nat-0123456789abcdef0", cidrBlock: "172.31.16.0/20" };
    }
    // Each elastic subnet in a zone of its own after the head's (a), as the workers' subnet routes.
    const elastic = JSON.parse(value("elasticSubnetIds") || "[]") as string[];
    elastic.forEach((id, i) => {
        subnets[id] = { vpcId, defaultRoute: value("privateSubnetId") !== "" ? "nat-0123456789abcdef0" : "igw-0123456789abcdef0",
            cidrBlock: `172.31.${32 + 16 * i}.0/20`, availabilityZone: `us-east-1${"bcdef"[i]}` };
    });
    return subnets;
}

export interface Rendered {
    resources: RegisteredResource[];
    outputs: Record<string, any>;
    /** The error the program failed with, if it failed. */
    error?: Error;
}

export function defaultAddresses(nodeName: string): { privateIp: string; publicIp: string } {
    const [, group, number] = /^(.*)-(\d+)$/.exec(nodeName) ?? [nodeName, nodeName, "0"];
    if (nodeName === "headnode" || group === "worker") {
        const index = nodeName === "headnode" ? 0 : Number(number);
        const third = Math.floor((10 + index) / 250);
        const fourth = (10 + index) % 250;
        return { privateIp: `10.0.${1 + third}.${fourth}`, publicIp: `198.51.${100 + third}.${fourth}` };
    }
    // Other groups get a block of their own, chosen by name, so that adding a group moves no other node.
    const block = 10 + [...group].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 200, 7);
    const fourth = 10 + Number(number);
    return { privateIp: `10.0.${block}.${fourth}`, publicIp: `203.0.${block}.${fourth}` };
}

/** A stable, fake cluster status, shaped like verify-cluster.sh's output. */
function fakeVerifyStdout(create: string): string {
    const nodes = [...create.matchAll(/--expect '?([a-z0-9-]+)=([0-9.]+)/g)].map((m) => ({ name: m[1], ip: m[2], alive: true }));
    const elasticNodes = Object.fromEntries([...create.matchAll(/--count-group ([a-z0-9-]+)/g)].map((m) => [m[1], 0]));
    return JSON.stringify({ address: "", expectedNodes: nodes.length, aliveNodes: nodes.length, nodes, elasticNodes });
}

/** The id EC2 gives an image of this name, here: stable, so that two renders of one stack agree. */
export function mockImageId(name: string): string {
    return `ami-${createHash("sha256").update(name).digest("hex").slice(0, 17)}`;
}

/** The AMIs a render's `pulumi up` leaves in the account, with their tags: what the next render's lookups find. */
export function deployedImages(rendered: Rendered): Record<string, { tags: Record<string, string> }> {
    return Object.fromEntries(rendered.resources.filter((r) => r.type === "aws:ec2/amiFromInstance:AmiFromInstance")
        .map((r) => [mockImageId(r.inputs.name), { tags: r.inputs.tags }]));
}

/** A mock key of the resource's own: its public key names the resource (ssh-ed25519 AAAAmock-<name> ray-cluster). */
export function mockPrivateKey(resourceName: string): { privateKeyOpenssh: string; publicKeyOpenssh: string } {
    return {
        privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\nmock-${resourceName}\n-----END OPENSSH PRIVATE KEY-----\n`,
        publicKeyOpenssh: `ssh-ed25519 AAAAmock-${resourceName} ray-cluster\n`,
    };
}

/** The region of a stack whose config sets no `aws:region` (the real provider would refuse to run without one). */
export const DEFAULT_MOCK_REGION = "us-east-1";
/** The Deep Learning AMI the mocked SSM parameter names, and the size of its root snapshot. */
export const MOCK_DLAMI_ID = "ami-0d1a0123456789abc";
export const MOCK_DLAMI_SNAPSHOT_GB = 75;

/** The mocked account. */
export const MOCK_ACCOUNT_ID = "123456789012";
const SIZE_VCPUS: Record<string, number> = { nano: 2, micro: 2, small: 2, medium: 2, large: 2, xlarge: 4, metal: 96 };

/** What DescribeInstanceTypes says of a type, from its size alone (2xlarge: 8 vCPUs); an NVIDIA family has one GPU. */
export function mockInstanceType(instanceType: string): Record<string, unknown> {
    const size = instanceType.split(".")[1];
    const multiple = /^(\d+)xlarge$/.exec(size);
    const defaultVcpus = multiple ? Number(multiple[1]) * 4 : SIZE_VCPUS[size] ?? 2;
    const gpu = /^(g4dn|g5|g6|g6e|p3|p4d|p5)\./.test(instanceType);
    return { id: instanceType, instanceType, defaultVcpus, memorySize: defaultVcpus * 4096,
        gpuses: gpu ? [{ count: 1, manufacturer: "NVIDIA", memorySize: 24576, name: "A10G" }] : [] };
}

function outputsFor(args: pulumi.runtime.MockResourceArgs, options: RenderOptions, region: string,
    commandResult?: { stdout: string; stderr: string }): Record<string, any> {
    const inputs = args.inputs;
    switch (args.type) {
        case "aws:ec2transitgateway/instanceState:InstanceState":
            return { ...inputs, region, force: false };
        case "aws:ec2/instance:Instance":
            return { ...inputs, ...(options.addresses ?? defaultAddresses)(inputs.tags?.Name ?? args.name), arn: `arn:aws:ec2:::instance/${args.name}` };
        case "aws:ec2/eip:Eip":
            return { ...inputs, allocationId: `eipalloc-${args.name}`, publicIp: "198.51.100.200" };
        case "aws:s3/bucket:Bucket":
            return { ...inputs, bucket: `${args.name}-0123456`, arn: `arn:aws:s3:::${args.name}-0123456` };
        case "aws:ec2/keyPair:KeyPair":
            return { ...inputs, keyName: `${args.name}-0123456` };
        case "aws:iam/role:Role":
            return { ...inputs, name: `${args.name}-0123456`, arn: `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/${args.name}-0123456` };
        case "aws:iam/instanceProfile:InstanceProfile":
            return { ...inputs, name: `${args.name}-0123456`, arn: `arn:aws:iam::${MOCK_ACCOUNT_ID}:instance-profile/${args.name}-0123456` };
        case "tls:index/privateKey:PrivateKey":
            return {
                ...inputs,
                ...(options.privateKeys ?? mockPrivateKey)(args.name),
            };
        case "random:index/randomPassword:RandomPassword":
            return { ...inputs, result: "mock-token-0123456789abcdef0123456789abcdef0123" };
        case "command:remote:Command":
            return { ...inputs, ...(commandResult ?? { stdout: inputs.create?.includes("verify-cluster.sh") ? fakeVerifyStdout(inputs.create) : "", stderr: "" }) };
        default:
            return { ...inputs };
    }
}

const rpc = require("@pulumi/pulumi/runtime/rpc"); // eslint-disable-line @typescript-eslint/no-require-imports

/** Whether a deserialized value is a secret, as the engine received it. */
export function isSecret(value: unknown): boolean {
    return typeof value === "object" && value !== null &&
        (value as Record<string, unknown>)[rpc.specialSigKey] === rpc.specialSecretSig;
}

/** The value with every secret wrapper removed, as the provider sees it. */
export function reveal(value: any): any {
    if (isSecret(value)) {
        return reveal(value.value);
    }
    if (Array.isArray(value)) {
        return value.map(reveal);
    }
    if (typeof value === "object" && value !== null) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, reveal(v)]));
    }
    return value;
}

/** The mocked account, in the stack's own region: every region-bearing answer (zones, endpoints, ARNs) uses it. */
function mocks(options: RenderOptions, region: string): pulumi.runtime.Mocks {
    /** Node name by instance id, as EC2 would answer a lookup. */
    const nodeOf = new Map<string, string>();
    /** Instances launched without a public IP (private workers), by id. */
    const noPublicIp = new Set<string>();
    /** Public key by key pair name, and role by instance profile name, as the account holds them. */
    const keyPairs = new Map<string, string>();
    const profiles = new Map<string, string>();
    const subnets = options.subnets ?? {};
    const subnet = (id: string): MockSubnet => {
        const found = subnets[id];
        if (!found) {
            throw new Error(`no matching EC2 Subnet found (${id})`);
        }
        return found;
    };
    return {
        newResource: async (args) => {
            let id = options.resourceIds?.[args.name] ?? `${args.name}-id`;
            if (args.type === "aws:ec2/instance:Instance") {
                const nodeName = args.inputs.tags?.Name ?? args.name;
                const inputs = reveal(args.inputs);
                id = (await options.launchInstance?.(nodeName, inputs,
                    { publicKey: keyPairs.get(inputs.keyName), role: profiles.get(inputs.iamInstanceProfile) })) || id;
                nodeOf.set(id, nodeName);
                if (args.inputs.associatePublicIpAddress === false) {
                    noPublicIp.add(id);
                }
            }
            if (args.type === "aws:ec2/amiFromInstance:AmiFromInstance") {
                id = options.createImage ? await options.createImage(args.name, reveal(args.inputs)) : mockImageId(args.inputs.name);
            }
            if (args.type === "aws:ec2transitgateway/instanceState:InstanceState") {
                await options.setInstanceState?.(nodeOf.get(args.inputs.instanceId) ?? args.inputs.instanceId, args.inputs.state);
            }
            if (args.type === "aws:ec2/keyPair:KeyPair") {
                const state = outputsFor(args, options, region);
                keyPairs.set(state.keyName, reveal(args.inputs).publicKey);
            }
            if (args.type === "aws:iam/instanceProfile:InstanceProfile") {
                profiles.set(outputsFor(args, options, region).name, reveal(args.inputs).role);
            }
            const result = args.type === "command:remote:Command" && options.runCommand
                ? await options.runCommand(reveal(args.inputs), args.name)
                : undefined;
            return { id, state: outputsFor(args, options, region, result) };
        },
        call: (args) => {
            switch (args.token) {
                case "aws:ec2/getInstance:getInstance": {
                    const nodeName = nodeOf.get(args.inputs.instanceId);
                    if (!nodeName) {
                        throw new Error(`getInstance: no instance ${args.inputs.instanceId}`);
                    }
                    const addresses = (options.addresses ?? defaultAddresses)(nodeName);
                    return { id: args.inputs.instanceId, instanceId: args.inputs.instanceId, instanceState: "running",
                        ...addresses, publicIp: noPublicIp.has(args.inputs.instanceId) ? "" : addresses.publicIp };
                }
                case "aws:ec2/getVpcEndpointService:getVpcEndpointService":
                    return { serviceName: `com.amazonaws.${region}.${args.inputs.service}`, serviceType: args.inputs.serviceType,
                        id: `com.amazonaws.${region}.${args.inputs.service}` };
                case "aws:ec2/getSubnet:getSubnet": {
                    const found = subnet(args.inputs.id);
                    return { id: args.inputs.id, vpcId: found.vpcId, cidrBlock: found.cidrBlock ?? "172.31.0.0/20",
                        availabilityZone: found.availabilityZone ?? `${region}a`, mapPublicIpOnLaunch: found.mapPublicIpOnLaunch ?? found.defaultRoute.startsWith("igw-"),
                        availableIpAddressCount: found.availableIpAddressCount ?? 250 };
                }
                case "aws:ec2/getInstances:getInstances": {
                    const subnetId = args.inputs.filters.find((f: { name: string }) => f.name === "subnet-id").values[0];
                    const count = subnet(subnetId).stackInstances ?? 0;
                    return { id: region, ids: Array.from({ length: count }, (_, i) => `i-${subnetId}-${i}`), privateIps: [], publicIps: [],
                        instanceStateNames: args.inputs.instanceStateNames };
                }
                case "aws:ec2/getRouteTable:getRouteTable": {
                    const routes = (target: string) => (target === "" ? [] : [{ cidrBlock: "0.0.0.0/0",
                        gatewayId: target.startsWith("igw-") ? target : "", natGatewayId: target.startsWith("nat-") ? target : "" }]);
                    if (args.inputs.subnetId !== undefined) {
                        const found = subnet(args.inputs.subnetId);
                        if (found.associated === false) {
                            throw new Error("query returned no results. Please change your search criteria and try again");
                        }
                        return { id: `rtb-${args.inputs.subnetId}`, vpcId: found.vpcId, routes: routes(found.defaultRoute) };
                    }
                    const main = Object.values(subnets).find((x) => x.vpcId === args.inputs.vpcId && x.associated === false);
                    return { id: `rtb-main-${args.inputs.vpcId}`, vpcId: args.inputs.vpcId, routes: routes(main?.mainRoute ?? "") };
                }
                case "aws:index/getPartition:getPartition":
                    return { partition: "aws", dnsSuffix: "amazonaws.com", id: "aws" };
                case "aws:index/getAvailabilityZones:getAvailabilityZones":
                    return { names: ["a", "b", "c"].map((zone) => `${region}${zone}`), zoneIds: [1, 2, 3].map((n) => `${region}-az${n}`) };
                case "aws:ec2/getAmiIds:getAmiIds": {
                    const filters = (args.inputs.filters ?? []) as Array<{ name: string; values: string[] }>;
                    const ids = Object.entries(options.images ?? {}).filter(([, image]) => filters.every((f) =>
                        !f.name.startsWith("tag:") || f.values.includes(image.tags[f.name.slice(4)]))).map(([imageId]) => imageId);
                    return { id: region, ids, owners: args.inputs.owners, filters };
                }
                case "aws:ec2/getAmi:getAmi": {
                    const byId = (args.inputs.filters ?? []).find((f: { name: string }) => f.name === "image-id");
                    const own = byId && options.images?.[byId.values[0]];
                    if (own) {
                        return { id: byId.values[0], name: own.tags.Name ?? byId.values[0], tags: own.tags, rootDeviceName: "/dev/sda1",
                            blockDeviceMappings: [{ deviceName: "/dev/sda1", ebs: { volume_size: "8" } }] };
                    }
                    return byId
                        ? { id: byId.values[0], name: "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20261101",
                            rootDeviceName: "/dev/sda1", blockDeviceMappings: [{ deviceName: "/dev/sda1", ebs: { volume_size: String(MOCK_DLAMI_SNAPSHOT_GB) } }] }
                        : { id: options.ubuntuImageId ?? "ami-0123456789abcdef0", name: "ubuntu-noble-24.04-amd64-server-20261101",
                            rootDeviceName: "/dev/sda1", blockDeviceMappings: [{ deviceName: "/dev/sda1", ebs: { volume_size: "8" } }] };
                }
                case "aws:ec2/getInstanceType:getInstanceType":
                    return mockInstanceType(args.inputs.instanceType);
                case "aws:index/getCallerIdentity:getCallerIdentity":
                    return { accountId: MOCK_ACCOUNT_ID, arn: `arn:aws:iam::${MOCK_ACCOUNT_ID}:user/mock`, userId: "AIDAMOCK", id: MOCK_ACCOUNT_ID };
                case "aws:ssm/getParameter:getParameter":
                    return { name: args.inputs.name, value: MOCK_DLAMI_ID, type: "String", version: 1 };
                default:
                    throw new Error(`unexpected invoke ${args.token}`);
            }
        },
    };
}

/** Stack config as `pulumi config set` would store it: strings, lists as JSON. */
export type StackConfig = Record<string, string | number | boolean | string[] | Record<string, unknown>[]>;

export function toConfigStrings(config: StackConfig): Record<string, string> {
    return Object.fromEntries(Object.entries(config).map(([key, value]) => [
        key.includes(":") ? key : `${PROJECT}:${key}`,
        typeof value === "string" ? value : JSON.stringify(value),
    ]));
}

/** Installs mocks and a recorder on the mock monitor, then returns the recorder's list. */
export async function installMocks(options: RenderOptions, region = DEFAULT_MOCK_REGION): Promise<RegisteredResource[]> {
    await pulumi.runtime.setMocks(mocks(options, region), PROJECT, options.stack ?? "dev", false);
    const resources: RegisteredResource[] = [];
    const monitor = settings.getMonitor();
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: (err: any, resp: any) => void) => {
        register(req, (err: any, resp: any) => {
            if (!err) {
                const timeouts = req.getCustomtimeouts();
                resources.push({
                    type: req.getType(),
                    name: req.getName(),
                    urn: resp.getUrn(),
                    parent: req.getParent(),
                    custom: req.getCustom(),
                    inputs: pulumi.runtime.deserializeProperties(req.getObject()),
                    outputs: pulumi.runtime.deserializeProperties(resp.getObject()),
                    dependencies: [...req.getDependenciesList()].sort(),
                    options: {
                        deleteBeforeReplace: req.getDeletebeforereplace(),
                        ignoreChanges: req.getIgnorechangesList(),
                        additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
                        customTimeouts: timeouts ? { create: timeouts.getCreate(), update: timeouts.getUpdate(), delete: timeouts.getDelete() } : undefined,
                        protect: req.getProtect() ?? false,
                        retainOnDelete: req.getRetainondelete() ?? false,
                        deletedWith: req.getDeletedwith() ?? "",
                    },
                });
                options.registered?.(resources);
            }
            callback(err, resp);
        });
    };
    return resources;
}

/** Runs index.ts once under mocks with the given config. */
export async function render(config: StackConfig = {}, options: RenderOptions = {}): Promise<Rendered> {
    const region = typeof config["aws:region"] === "string" ? config["aws:region"] : DEFAULT_MOCK_REGION;
    const resources = await installMocks({ ...options, subnets: options.subnets ?? mockSubnetsFor(config) }, region);
    pulumi.runtime.setAllConfig(toConfigStrings(config), []);
    const program = options.program ?? PROGRAM;
    delete require.cache[program];
    let error: Error | undefined;
    let outputs: Record<string, any> = {};
    // The program's own error is caught inside the stack's init, as the CLI reports it, so that no promise of the
    // stack resource is left rejected behind the test.
    outputs = (await stack.runInPulumiStack(async () => {
        try {
            const loaded = require(program); // eslint-disable-line @typescript-eslint/no-require-imports
            // The CLI's runner calls a program that exports a function, and awaits what it returns.
            return typeof loaded === "function" ? await loaded() : loaded;
        } catch (e) {
            error = e as Error;
            return {};
        }
    })) ?? {};
    await settings.waitForRPCs();
    return { resources: resources.filter((r) => r.type !== "pulumi:pulumi:Stack"), outputs, error };
}

/** The value a rendered command text (scriptCommand's quoting) passes for `flag`: its arguments follow the script. */
export function argumentOf(commandText: string, flag: string): string {
    const matches = [...commandText.matchAll(new RegExp(`${flag} ('((?:[^']|'\\\\'')*)'|[^\\s']+)`, "g"))];
    const match = matches[matches.length - 1];
    if (!match) {
        throw new Error(`no ${flag} in the command`);
    }
    return match[2] !== undefined ? match[2].replace(/'\\''/g, "'") : match[1];
}

/** The resources of one type, by logical name. */
export function byType(rendered: Rendered, type: string): RegisteredResource[] {
    return rendered.resources.filter((r) => r.type === type);
}

export function byName(rendered: Rendered, name: string): RegisteredResource {
    const found = rendered.resources.find((r) => r.name === name);
    if (!found) {
        throw new Error(`no resource named ${name}; have ${rendered.resources.map((r) => r.name).join(", ")}`);
    }
    return found;
}
