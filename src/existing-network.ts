import * as aws from "@pulumi/aws";
import { ConfigError, ConnectVia, ExistingNetwork } from "./config";
import { Problem } from "./config-schema";
import { ClusterPlacement } from "./network";

/** What the cluster needs of a VPC it is given, beyond the ids' shape that config validation checks. */
export interface ExistingNetworkNeeds {
    /** The config namespace, for messages that name the keys. */
    namespace: string;
    /** How the bootstrap reaches the head: from the internet, or from inside the network. */
    connectVia: ConnectVia;
    /** Whether the workers install Ray from PyPI, and so need a way to the internet. */
    workersNeedInternet: boolean;
    /** How many workers the stack places in the workers' subnet. */
    workers: number;
    /** The most workers the elastic groups may launch into any one of elasticSubnetIds. */
    elasticWorkers: number;
    /** The stack's tags, which find the instances it already has in a subnet. */
    tags: Record<string, string>;
}

/** A subnet's default route: through an internet gateway, through something else (NAT, transit), or none. */
type DefaultRoute = "internet-gateway" | "other" | "none";

/**
 * Looks the given subnets up in AWS and checks them before any resource exists: each belongs to vpcId, the head's
 * subnet routes to an internet gateway unless the bootstrap connects privately, and private workers' subnet gives
 * no public IP and has a way to PyPI unless a package index replaces it. Every problem found is reported at once.
 * Creates nothing: the VPC, its gateways and route tables stay the owner's.
 */
export async function placeInExistingNetwork(network: ExistingNetwork, needs: ExistingNetworkNeeds): Promise<ClusterPlacement> {
    const key = (name: string) => `'${needs.namespace}:${name}'`;
    const problems: Problem[] = [];
    const lookUp = async (configKey: string, id: string) => {
        try {
            return await aws.ec2.getSubnet({ id });
        } catch (e) {
            const reason = firstLine((e as Error).message);
            problems.push({ key: configKey, value: id, expected: "a subnet this account can see in the stack's region " +
                `(the lookup failed${reason === "" ? "" : `: ${reason}`})` });
            return undefined;
        }
    };
    const [head, workers] = await Promise.all([
        lookUp("subnetId", network.subnetId),
        network.privateSubnetId !== "" ? lookUp("privateSubnetId", network.privateSubnetId) : undefined,
    ]);
    for (const [configKey, subnet] of [["subnetId", head], ["privateSubnetId", workers]] as const) {
        if (subnet && subnet.vpcId !== network.vpcId) {
            problems.push({ key: configKey, value: subnet.id,
                expected: `a subnet of vpcId ${network.vpcId}; it belongs to ${subnet.vpcId}` });
        }
    }
    // With elasticSubnetIds, Ray's node types name their subnets, this one first, without the interface that refuses
    // a public IP (Ray's provider never moves an interface to another subnet): the subnet itself must give none.
    // Alone, it may: the stack's workers and the single-subnet node types refuse a public IP themselves.
    if (workers?.mapPublicIpOnLaunch && network.elasticSubnetIds.length > 0) {
        problems.push({ key: "privateSubnetId", value: workers.id, expected: "a private subnet that gives instances no public " +
            `IP on launch (MapPublicIpOnLaunch false) with elasticSubnetIds; ${workers.id} gives instances public IPs on launch` });
    }
    // Head and workers share a zone, as in a network the stack builds: Ray's chatter between them would otherwise
    // cross zones, slower and billed per GB each way.
    if (head && workers && workers.availabilityZone !== head.availabilityZone) {
        problems.push({ key: "privateSubnetId", value: workers.id, expected: `a subnet in the head's availability zone ` +
            `${head.availabilityZone} (that of subnetId ${head.id}); it is in ${workers.availabilityZone}` });
    }
    const placed: Array<[string, aws.ec2.GetSubnetResult | undefined, number, string]> = workers
        ? [["subnetId", head, 1, "the head"], ["privateSubnetId", workers, needs.workers, `${needs.workers} workers`]]
        : [["subnetId", head, 1 + needs.workers, `the head and ${needs.workers} workers`]];
    for (const [configKey, subnet, nodes, what] of placed) {
        if (!subnet) {
            continue;
        }
        // Addresses this stack's instances already hold in the subnet are theirs again on an update.
        const held = await instancesOfStack(subnet.id, needs.tags);
        if (subnet.availableIpAddressCount + held < nodes) {
            problems.push({ key: configKey, value: subnet.id, expected: `a subnet with ${nodes} free addresses for ${what} ` +
                `(it has ${subnet.availableIpAddressCount} free${held > 0 ? `, and this stack's nodes hold ${held}` : ""})` });
        }
    }
    await checkElasticSubnets(network, needs, head, workers ?? head, problems, lookUp);
    const headRoute = head ? await defaultRoute(network.vpcId, head.id) : undefined;
    if (head && headRoute !== "internet-gateway" && needs.connectVia === "public") {
        problems.push({ key: "subnetId", value: head.id, expected: "a public subnet whose default route leads to an " +
            `internet gateway (it has ${headRoute === "none" ? "no default route" : "a default route elsewhere"}); ` +
            `or set ${key("connectVia")} to private when this machine reaches the VPC over a VPN or from inside it` });
    }
    if (workers && needs.workersNeedInternet && await defaultRoute(network.vpcId, workers.id) === "none") {
        problems.push({ key: "privateSubnetId", value: workers.id, expected: "a subnet with a default route (a NAT gateway, " +
            `say) so the workers can install Ray from PyPI; or set ${key("packageIndexUrl")} to a package index they reach ` +
            "inside the network" });
    }
    if (problems.length > 0 || !head) {
        throw new ConfigError(needs.namespace, problems);
    }
    return {
        vpcId: network.vpcId,
        headSubnetId: head.id,
        workerSubnetId: workers?.id ?? head.id,
        privateWorkers: workers !== undefined,
        headBootDependencies: [],
        workerBootDependencies: [],
        elasticSubnetIds: network.elasticSubnetIds,
        elasticBootDependencies: [],
    };
}

/**
 * The elastic groups' subnets in other zones: each of vpcId, in a zone of its own (none the head's), with room for the
 * elastic groups, and reachable as the workers' own: public ones route to an internet gateway and give public IPs;
 * private ones give none, as privateSubnetId must not, and route somewhere unless a package index inside the network
 * replaces PyPI.
 */
async function checkElasticSubnets(network: ExistingNetwork, needs: ExistingNetworkNeeds, head: aws.ec2.GetSubnetResult | undefined,
    workers: aws.ec2.GetSubnetResult | undefined, problems: Problem[],
    lookUp: (key: string, id: string) => Promise<aws.ec2.GetSubnetResult | undefined>): Promise<void> {
    const key = "elasticSubnetIds";
    const subnets = await Promise.all(network.elasticSubnetIds.map((id) => lookUp(key, id)));
    const zones = new Set([head?.availabilityZone, workers?.availabilityZone]);
    const privateWorkers = network.privateSubnetId !== "";
    for (const subnet of subnets) {
        if (!subnet) {
            continue;
        }
        if (subnet.vpcId !== network.vpcId) {
            problems.push({ key, value: subnet.id, expected: `subnets of vpcId ${network.vpcId}; ${subnet.id} belongs to ${subnet.vpcId}` });
            continue;
        }
        if (zones.has(subnet.availabilityZone)) {
            problems.push({ key, value: subnet.id, expected: `subnets each in a zone of its own, none the head's (${head?.availabilityZone}); ` +
                `${subnet.id} is in ${subnet.availabilityZone}, which another subnet of the stack is in` });
        }
        zones.add(subnet.availabilityZone);
        const held = await instancesOfStack(subnet.id, needs.tags);
        if (subnet.availableIpAddressCount + held < needs.elasticWorkers) {
            problems.push({ key, value: subnet.id, expected: `subnets with ${needs.elasticWorkers} free addresses for the elastic ` +
                `groups; ${subnet.id} has ${subnet.availableIpAddressCount}` });
        }
        const route = await defaultRoute(network.vpcId, subnet.id);
        if (!privateWorkers && !(route === "internet-gateway" && subnet.mapPublicIpOnLaunch)) {
            problems.push({ key, value: subnet.id, expected: "public subnets with workerNetwork public: a default route to an " +
                `internet gateway and public IPs on launch; ${subnet.id} has ${route === "internet-gateway" ? "no public IPs on launch"
                    : "no internet gateway route"}` });
        }
        if (privateWorkers && subnet.mapPublicIpOnLaunch) {
            problems.push({ key, value: subnet.id, expected: "private subnets that give instances no public IP on launch " +
                `(MapPublicIpOnLaunch false) with workerNetwork private: ${subnet.id} gives instances public IPs on launch` });
        }
        if (privateWorkers && needs.workersNeedInternet && route === "none") {
            problems.push({ key, value: subnet.id, expected: "subnets with a default route (a NAT gateway, say) so the workers can " +
                `install Ray from PyPI; ${subnet.id} has none` });
        }
    }
}

/** How many instances of this stack, in any state but terminated, sit in the subnet. */
async function instancesOfStack(subnetId: string, tags: Record<string, string>): Promise<number> {
    const found = await aws.ec2.getInstances({
        filters: [{ name: "subnet-id", values: [subnetId] }],
        instanceTags: tags,
        instanceStateNames: ["pending", "running", "stopping", "stopped"],
    });
    return found.ids.length;
}

/** The default route of a subnet's route table: its own association, or else the VPC's main table. */
async function defaultRoute(vpcId: string, subnetId: string): Promise<DefaultRoute> {
    let table: aws.ec2.GetRouteTableResult;
    try {
        table = await aws.ec2.getRouteTable({ subnetId });
    } catch {
        // A subnet with no association of its own uses the main table, which the subnet filter does not find.
        table = await aws.ec2.getRouteTable({ vpcId, filters: [{ name: "association.main", values: ["true"] }] });
    }
    const route = table.routes.find((r) => r.cidrBlock === "0.0.0.0/0");
    if (!route) {
        return "none";
    }
    return route.gatewayId.startsWith("igw-") ? "internet-gateway" : "other";
}

function firstLine(text: string): string {
    return text.split("\n").map((line) => line.trim()).find((line) => line !== "") ?? "";
}
