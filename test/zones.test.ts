/**
 * Elastic groups across availability zones, under mocks: a worker subnet per zone (public, or private with a shared
 * or a per-zone NAT gateway), the autoscaler's node types listing every subnet and the head allowed to launch into
 * each, the checks on every subnet's blocks and addresses, subnets of your own VPC, and a plan for one zone that is
 * exactly today's.
 */
import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { checkPolicies } from "./harness/policy";
import { byName, byType, MOCK_ACCOUNT_ID, MockSubnet, mockSubnetsFor, Rendered, render, reveal, StackConfig } from "../tools/render";

const ELASTIC: StackConfig = { workerCount: 1, workerGroups: [{ name: "cpu", instanceType: "c7i.2xlarge", maxCount: 10 }] };
const ZONES: StackConfig = { ...ELASTIC, availabilityZone: "us-east-1a", elasticZones: ["us-east-1b", "us-east-1c"] };
const SUBNET = "aws:ec2/subnet:Subnet";

async function rendered(config: StackConfig, subnets?: Record<string, MockSubnet>): Promise<Rendered> {
    const r = await render(config, { subnets: subnets ?? mockSubnetsFor(config) });
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}
const nodeTypes = (r: Rendered) => JSON.parse(reveal(byName(r, "ray-cluster-headnode-autoscaler").inputs).create
    .match(/--config '([^']+)'/)![1]).available_node_types;
const nodeConfig = (r: Rendered) => nodeTypes(r).cpu.node_config;
/** The autoscaler's worker node types: one per elastic group, whatever the zones. */
const workerTypes = (r: Rendered) => Object.keys(nodeTypes(r)).filter((type) => type !== "ray.head");
const idOf = (name: string) => `${name}-id`;

async function allowed(r: Rendered, subnetId: string): Promise<string> {
    const policy = JSON.parse(byName(r, "ray-cluster-autoscaler").inputs.policy);
    const result = await runSimulation({
        identityPolicies: [{ name: "autoscaler", policy }], serviceControlPolicies: [], resourceControlPolicies: [], resourcePolicy: undefined,
        request: { action: "ec2:RunInstances", principal: `arn:aws:iam::${MOCK_ACCOUNT_ID}:role/ray-cluster-head-role-0123456`,
            resource: { accountId: MOCK_ACCOUNT_ID, resource: `arn:aws:ec2:us-east-1:${MOCK_ACCOUNT_ID}:subnet/${subnetId}` }, contextVariables: {} },
    } as never, {});
    return (result as unknown as { overallResult: string }).overallResult;
}

describe("elastic zones in the stack's own network", () => {
    test("one zone, as every stack so far: no subnet, route or gateway more, and the node types name the one subnet", async () => {
        const r = await rendered(ELASTIC);
        assert.deepEqual(byType(r, SUBNET).map((s) => s.name), ["ray-cluster-subnet"]);
        assert.deepEqual(byType(r, "ray-cluster:network:ElasticZones"), []);
        assert.deepEqual(nodeConfig(r).SubnetIds, [idOf("ray-cluster-subnet")]);
        const privateOne = await rendered({ ...ELASTIC, workerNetwork: "private" });
        assert.equal(nodeConfig(privateOne).NetworkInterfaces[0].SubnetId, idOf("ray-cluster-private-subnet"),
            "one private subnet keeps the interface that refuses a public IP");
    });

    test("public workers: a public subnet per zone, with the first free blocks of the workers' size, on the public route table; " +
        "the node types list the head's zone first and the head may launch into each", async () => {
        const r = await rendered(ZONES);
        const subnets = byType(r, SUBNET).filter((s) => s.name.startsWith("ray-cluster-zones-"));
        assert.deepEqual(subnets.map((s) => [s.name, s.inputs.availabilityZone, s.inputs.cidrBlock, s.inputs.mapPublicIpOnLaunch]), [
            ["ray-cluster-zones-us-east-1b-subnet", "us-east-1b", "10.0.0.0/24", true],
            ["ray-cluster-zones-us-east-1c-subnet", "us-east-1c", "10.0.2.0/24", true],
        ]);
        for (const zone of ["us-east-1b", "us-east-1c"]) {
            assert.equal(byName(r, `ray-cluster-zones-${zone}-rta`).inputs.routeTableId, idOf("ray-cluster-rt"));
        }
        assert.deepEqual(nodeConfig(r).SubnetIds, ["ray-cluster-subnet", ...subnets.map((s) => s.name)].map(idOf));
        for (const subnet of nodeConfig(r).SubnetIds) {
            assert.equal(await allowed(r, subnet), "Allowed", subnet);
        }
        assert.equal(await allowed(r, "subnet-0other0000000000"), "ImplicitlyDenied");
        // Fixed groups stay in the head's zone.
        for (const instance of byType(r, "aws:ec2/instance:Instance")) {
            assert.equal(instance.inputs.subnetId, idOf("ray-cluster-subnet"), instance.name);
        }
    });

    test("private workers, one NAT gateway: each zone's private subnet routes to the head zone's NAT and is on the S3 endpoint; " +
        "the group's one node type names the three subnets, the head zone's first, with the workers' groups and no interface, " +
        "and each of them gives no public IP", async () => {
        const r = await rendered({ ...ZONES, workerNetwork: "private" });
        assert.equal(byType(r, "aws:ec2/natGateway:NatGateway").length, 1);
        for (const zone of ["us-east-1b", "us-east-1c"]) {
            const subnet = byName(r, `ray-cluster-zones-${zone}-subnet`);
            assert.equal(subnet.inputs.mapPublicIpOnLaunch, false);
            assert.equal(byName(r, `ray-cluster-zones-${zone}-default-route`).inputs.natGatewayId, idOf("ray-cluster-private-nat"));
        }
        assert.deepEqual(byType(r, SUBNET).filter((s) => s.name.startsWith("ray-cluster-zones-")).map((s) => s.inputs.cidrBlock),
            ["10.0.0.0/24", "10.0.3.0/24"], "free of the public (10.0.1.0/24) and private (10.0.2.0/24) subnets");
        const endpoint = byName(r, "ray-cluster-s3-endpoint").inputs.routeTableIds;
        assert.ok(endpoint.includes(idOf("ray-cluster-zones-us-east-1b-rt")) && endpoint.includes(idOf("ray-cluster-zones-us-east-1c-rt")));
        assert.deepEqual(workerTypes(r), ["cpu"]);
        const config = nodeConfig(r);
        assert.equal(config.NetworkInterfaces, undefined);
        assert.deepEqual(config.SecurityGroupIds, [idOf("ray-cluster-sg")]);
        assert.deepEqual(config.SubnetIds, ["ray-cluster-private-subnet", "ray-cluster-zones-us-east-1b-subnet",
            "ray-cluster-zones-us-east-1c-subnet"].map(idOf));
        // With no interface of ours, the subnet decides: the head zone's one as much as the others.
        for (const subnetId of config.SubnetIds) {
            const subnet = byType(r, SUBNET).find((s) => idOf(s.name) === subnetId);
            assert.equal(subnet?.inputs.mapPublicIpOnLaunch, false, subnetId);
        }
    });

    test("private workers, a NAT gateway per zone: each zone's NAT sits in a /28 public subnet of that zone, from the VPC's top", async () => {
        const r = await rendered({ ...ZONES, workerNetwork: "private", natGatewayPerZone: true });
        // Public: the subnet's route table sends 0.0.0.0/0 to the internet gateway.
        const internet = byName(r, "ray-cluster-default-route").inputs;
        assert.deepEqual([internet.destinationCidrBlock, internet.gatewayId], ["0.0.0.0/0", idOf("ray-cluster-igw")]);
        for (const zone of ["us-east-1b", "us-east-1c"]) {
            const association = byName(r, `ray-cluster-zones-${zone}-nat-rta`).inputs;
            assert.deepEqual([association.subnetId, association.routeTableId],
                [idOf(`ray-cluster-zones-${zone}-nat-subnet`), internet.routeTableId], zone);
        }
        assert.equal(byType(r, "aws:ec2/natGateway:NatGateway").length, 3);
        assert.deepEqual(["us-east-1b", "us-east-1c"].map((zone) => [byName(r, `ray-cluster-zones-${zone}-nat-subnet`).inputs.cidrBlock,
            byName(r, `ray-cluster-zones-${zone}-nat-subnet`).inputs.availabilityZone,
            byName(r, `ray-cluster-zones-${zone}-nat`).inputs.subnetId,
            byName(r, `ray-cluster-zones-${zone}-default-route`).inputs.natGatewayId]), [
            ["10.0.255.240/28", "us-east-1b", idOf("ray-cluster-zones-us-east-1b-nat-subnet"), idOf("ray-cluster-zones-us-east-1b-nat")],
            ["10.0.255.224/28", "us-east-1c", idOf("ray-cluster-zones-us-east-1c-nat-subnet"), idOf("ray-cluster-zones-us-east-1c-nat")],
        ]);
    });

    test("the policy pack passes every layout: one NAT, a NAT per zone, public workers", async () => {
        for (const config of [ZONES, { ...ZONES, workerNetwork: "private" }, { ...ZONES, workerNetwork: "private", natGatewayPerZone: true }]) {
            assert.deepEqual(await checkPolicies((await rendered(config)).resources), [], JSON.stringify(config));
        }
    });

    const bad: Array<{ what: string; config: StackConfig; key: string; expected: RegExp }> = [
        { what: "zones with no elastic group", config: { elasticZones: ["us-east-1b"] }, key: "elasticZones",
            expected: /empty unless a workerGroups entry is elastic/ },
        { what: "the head's own zone", config: { ...ELASTIC, availabilityZone: "us-east-1a", elasticZones: ["us-east-1a"] },
            key: "elasticZones", expected: /zones other than availabilityZone us-east-1a/ },
        { what: "a zone twice", config: { ...ELASTIC, elasticZones: ["us-east-1b", "us-east-1b"] }, key: "elasticZones",
            expected: /each once; 'us-east-1b' is there twice/ },
        { what: "a malformed zone", config: { ...ELASTIC, elasticZones: ["east"] }, key: "elasticZones", expected: /'east' is not one/ },
        { what: "fewer blocks than zones", config: { ...ZONES, elasticSubnetCidrs: ["10.0.8.0/24"] }, key: "elasticSubnetCidrs",
            expected: /one block per entry of elasticZones \(2\)/ },
        { what: "a block over the head's subnet", config: { ...ZONES, elasticSubnetCidrs: ["10.0.1.0/24", "10.0.9.0/24"] },
            key: "elasticSubnetCidrs", expected: /10\.0\.1\.0\/24 overlaps 10\.0\.1\.0\/24/ },
        { what: "a block outside the VPC", config: { ...ZONES, elasticSubnetCidrs: ["10.1.0.0/24", "10.0.9.0/24"] },
            key: "elasticSubnetCidrs", expected: /inside vpcCidr 10\.0\.0\.0\/16/ },
        { what: "a block too small for the elastic groups", config: { ...ZONES, elasticSubnetCidrs: ["10.0.8.0/28", "10.0.9.0/24"],
            workerGroups: [{ name: "cpu", instanceType: "c7i.2xlarge", maxCount: 12 }] },
        key: "elasticSubnetCidrs", expected: /room for the elastic groups' 12 workers; 10\.0\.8\.0\/28 has 11 usable addresses/ },
        { what: "more zones than the VPC has room for", config: { ...ELASTIC, vpcCidr: "10.0.0.0/23", subnetCidr: "10.0.0.0/24",
            elasticZones: ["us-east-1b", "us-east-1c"] }, key: "elasticZones", expected: /at most 1 zones/ },
        { what: "a NAT gateway per zone for public workers", config: { ...ZONES, natGatewayPerZone: true }, key: "natGatewayPerZone",
            expected: /false unless workerNetwork is private/ },
        { what: "zones in a VPC of your own", config: { ...ELASTIC, vpcId: "vpc-0abc12345678def00", subnetId: "subnet-0aaa1111bbbb2222c",
            elasticZones: ["us-east-1b"] }, key: "elasticZones", expected: /its default \(unset\) with vpcId/ },
        { what: "subnet ids without a VPC of your own", config: { ...ELASTIC, elasticSubnetIds: ["subnet-0bbb1111bbbb2222c"] },
            key: "elasticSubnetIds", expected: /empty unless vpcId is set/ },
    ];
    for (const { what, config, key, expected } of bad) {
        test(`fails before any resource with ${what}, naming ${key}`, async () => {
            const r = await render(config, { subnets: mockSubnetsFor(config) });
            assert.ok(r.error, "the program must fail");
            assert.match(r.error.message, new RegExp(`invalid config 'ray-cluster:${key}'`));
            assert.match(r.error.message, expected);
            assert.deepEqual(r.resources.map((x) => x.name), [], "no resource was registered");
        });
    }
});

describe("elastic subnets in a VPC of your own", () => {
    const VPC = "vpc-0abc12345678def00";
    const HEAD = "subnet-0aaa1111bbbb2222c";
    const WORKERS = "subnet-0ddd3333eeee4444f";
    const B = "subnet-0bbb5555cccc6666d";
    const C = "subnet-0ccc7777dddd8888e";
    const OWN: StackConfig = { ...ELASTIC, vpcId: VPC, subnetId: HEAD, elasticSubnetIds: [B, C] };

    test("the node types list the head's subnet and then each given one, and the head may launch into each", async () => {
        const r = await rendered(OWN);
        assert.deepEqual(nodeConfig(r).SubnetIds, [HEAD, B, C]);
        assert.deepEqual(byType(r, SUBNET), []);
        for (const subnet of [HEAD, B, C]) {
            assert.equal(await allowed(r, subnet), "Allowed");
        }
    });

    test("private workers: the group's one node type names the workers' subnet, then each given one, with no interface, and " +
        "the head may launch into each; any of them that gives public IPs on launch fails before any resource", async () => {
        const config = { ...OWN, workerNetwork: "private", privateSubnetId: WORKERS };
        const r = await rendered(config);
        assert.deepEqual(workerTypes(r), ["cpu"]);
        assert.deepEqual(nodeConfig(r).SubnetIds, [WORKERS, B, C]);
        assert.equal(nodeConfig(r).NetworkInterfaces, undefined);
        for (const subnet of nodeConfig(r).SubnetIds) {
            assert.equal(await allowed(r, subnet), "Allowed", subnet);
            // With no interface of ours, the subnet decides: the workers' own (the head's zone) as much as the others.
            const subnets = mockSubnetsFor(config);
            subnets[subnet] = { ...subnets[subnet], mapPublicIpOnLaunch: true };
            const mapping = await render(config, { subnets });
            assert.match(String(mapping.error?.message), new RegExp(`${subnet} gives instances public IPs on launch`), subnet);
            assert.deepEqual(mapping.resources.map((x) => x.name), [], subnet);
        }
    });

    test("private workers in several zones: the workers' own subnet (the head's zone) that maps public IPs fails before any " +
        "resource, naming privateSubnetId", async () => {
        const config = { ...OWN, workerNetwork: "private", privateSubnetId: WORKERS };
        const subnets = mockSubnetsFor(config);
        subnets[WORKERS] = { ...subnets[WORKERS], mapPublicIpOnLaunch: true };
        const r = await render(config, { subnets });
        assert.ok(r.error, "the program must fail");
        assert.match(r.error.message, new RegExp(`invalid config 'ray-cluster:privateSubnetId': got "${WORKERS}", expected a private ` +
            `subnet that gives instances no public IP on launch \\(MapPublicIpOnLaunch false\\) with elasticSubnetIds; ${WORKERS} gives instances public IPs on launch`));
        assert.deepEqual(r.resources.map((x) => x.name), []);
    });

    const cases: Array<{ what: string; config: StackConfig; change: Record<string, Partial<MockSubnet>>; expected: RegExp }> = [
        { what: "a subnet in the head's zone", config: OWN, change: { [B]: { availabilityZone: "us-east-1a" } },
            expected: new RegExp(`${B} is in us-east-1a, which another subnet of the stack is in`) },
        { what: "two subnets in one zone", config: OWN, change: { [C]: { availabilityZone: "us-east-1b" } },
            expected: new RegExp(`${C} is in us-east-1b`) },
        { what: "a subnet of another VPC", config: OWN, change: { [B]: { vpcId: "vpc-0fff9999eeee8888d" } },
            expected: /belongs to vpc-0fff9999eeee8888d/ },
        { what: "too few free addresses", config: OWN, change: { [C]: { availableIpAddressCount: 4 } },
            expected: new RegExp(`10 free addresses for the elastic groups; ${C} has 4`) },
        { what: "a public worker subnet with no internet gateway", config: OWN, change: { [B]: { defaultRoute: "nat-0123456789abcdef0" } },
            expected: /public subnets with workerNetwork public/ },
        { what: "a private worker subnet that maps public IPs", config: { ...OWN, workerNetwork: "private", privateSubnetId: WORKERS },
            change: { [C]: { mapPublicIpOnLaunch: true } }, expected: new RegExp(`${C} gives instances public IPs on launch`) },
    ];
    for (const { what, config, change, expected } of cases) {
        test(`fails before any resource with ${what}`, async () => {
            const subnets = mockSubnetsFor(config);
            for (const [id, fields] of Object.entries(change)) {
                subnets[id] = { ...subnets[id], ...fields };
            }
            const r = await render(config, { subnets });
            assert.ok(r.error, "the program must fail");
            assert.match(r.error.message, /invalid config 'ray-cluster:elasticSubnetIds'/);
            assert.match(r.error.message, expected);
            assert.deepEqual(r.resources.map((x) => x.name), []);
        });
    }
});
