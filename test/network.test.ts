import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { diffGraphs, diffText } from "../tools/graph";
import { byName, byType, MockSubnet, Rendered, render, reveal, StackConfig } from "../tools/render";

const INSTANCE = "aws:ec2/instance:Instance";
const COMMAND = "command:remote:Command";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
/** Types that make up a network; a stack placed in a given VPC creates none of them. */
const NETWORK_TYPES = ["aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip", "aws:ec2/routeTable:RouteTable", "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/vpcEndpoint:VpcEndpoint"];

const PRIVATE: StackConfig = { workerNetwork: "private", workerCount: 2 };
const VPC = "vpc-0abc12345678def00";
const HEAD_SUBNET = "subnet-0aaa1111bbbb2222c";
const WORKER_SUBNET = "subnet-0ddd3333eeee4444f";
const OWN_VPC: StackConfig = { vpcId: VPC, subnetId: HEAD_SUBNET };
const OWN_VPC_PRIVATE: StackConfig = { ...OWN_VPC, workerNetwork: "private", privateSubnetId: WORKER_SUBNET };

/** Private workers' addresses as AWS would give them: the head in 10.0.1.0/24, workers in 10.0.2.0/24 without public IPs. */
const privateAddresses = (node: string) => (node === "headnode"
    ? { privateIp: "10.0.1.10", publicIp: "198.51.100.10" }
    : { privateIp: `10.0.2.${10 + Number(node.split("-").pop())}`, publicIp: "" });

async function rendered(config: StackConfig, subnets?: Record<string, MockSubnet>): Promise<Rendered> {
    const r = await render(config, { addresses: privateAddresses, subnets });
    assert.equal(r.error, undefined, String(r.error?.stack));
    return r;
}

const nodes = (r: Rendered) => Object.fromEntries(byType(r, INSTANCE).map((i) => [i.inputs.tags.Name, i.inputs]));
const idOf = (r: Rendered, name: string) => `${name}-id`;

describe("private workers under mocks", () => {
    test("topology: a private subnet in the head's zone, a NAT gateway in the public one, and S3 through an endpoint", async () => {
        const r = await rendered(PRIVATE);
        const privateSubnet = byName(r, "ray-cluster-private-subnet").inputs;
        const publicSubnet = byName(r, "ray-cluster-subnet").inputs;
        assert.equal(privateSubnet.cidrBlock, "10.0.2.0/24");
        assert.equal(privateSubnet.mapPublicIpOnLaunch, false);
        assert.equal(privateSubnet.availabilityZone, publicSubnet.availabilityZone);
        assert.equal(privateSubnet.vpcId, idOf(r, "ray-cluster-vpc"));

        const eip = byName(r, "ray-cluster-private-nat-eip").inputs;
        assert.equal(eip.domain, "vpc");
        const nat = byName(r, "ray-cluster-private-nat");
        assert.equal(nat.inputs.subnetId, idOf(r, "ray-cluster-subnet"), "the NAT gateway sits in the public subnet");
        assert.equal(nat.inputs.allocationId, "eipalloc-ray-cluster-private-nat-eip");
        assert.ok(nat.dependencies.includes(byName(r, "ray-cluster-igw").urn), "after the internet gateway");

        const route = byName(r, "ray-cluster-private-default-route").inputs;
        assert.deepEqual([route.routeTableId, route.destinationCidrBlock, route.natGatewayId],
            [idOf(r, "ray-cluster-private-rt"), "0.0.0.0/0", idOf(r, "ray-cluster-private-nat")]);
        const association = byName(r, "ray-cluster-private-rta").inputs;
        assert.deepEqual([association.subnetId, association.routeTableId],
            [idOf(r, "ray-cluster-private-subnet"), idOf(r, "ray-cluster-private-rt")]);

        const endpoint = byName(r, "ray-cluster-s3-endpoint").inputs;
        assert.equal(endpoint.vpcEndpointType, "Gateway");
        assert.equal(endpoint.serviceName, "com.amazonaws.us-east-1.s3");
        assert.deepEqual(endpoint.routeTableIds, [idOf(r, "ray-cluster-rt"), idOf(r, "ray-cluster-private-rt")]);
    });

    test("no worker has a public IP; workers boot in the private subnet after its NAT route, the head in the public one", async () => {
        const r = await rendered(PRIVATE);
        const all = nodes(r);
        assert.equal(all.headnode.subnetId, idOf(r, "ray-cluster-subnet"));
        assert.equal(all.headnode.associatePublicIpAddress, undefined, "the head takes its public subnet's public IP");
        for (const worker of ["worker-1", "worker-2"]) {
            assert.equal(all[worker].subnetId, idOf(r, "ray-cluster-private-subnet"), worker);
            assert.equal(all[worker].associatePublicIpAddress, false, worker);
            assert.ok(byName(r, `ray-cluster-${worker}`).dependencies.includes(byName(r, "ray-cluster-private-default-route").urn));
        }
        assert.deepEqual(r.outputs.workerPublicIps, []);
        assert.deepEqual(r.outputs.workerPrivateIps, ["10.0.2.11", "10.0.2.12"]);
        assert.match(r.outputs.workerNetwork, /^private: workers have no public IP/);
    });

    test("SSH reaches workers from cluster members only; outside CIDRs reach the head's own group", async () => {
        const r = await rendered({ ...PRIVATE, sshAllowedCidrs: ["203.0.113.0/24"], dashboardAllowedCidrs: ["203.0.113.7/32"] });
        const all = nodes(r);
        const cluster = idOf(r, "ray-cluster-sg");
        const head = idOf(r, "ray-cluster-head-sg");
        assert.deepEqual(all.headnode.vpcSecurityGroupIds, [cluster, head]);
        for (const worker of ["worker-1", "worker-2"]) {
            assert.deepEqual(all[worker].vpcSecurityGroupIds, [cluster], worker);
        }
        for (const rule of byType(r, INGRESS)) {
            if (rule.inputs.cidrIpv4 !== undefined) {
                assert.equal(rule.inputs.securityGroupId, head, `${rule.name} admits ${rule.inputs.cidrIpv4} to the head alone`);
            } else {
                assert.deepEqual([rule.inputs.securityGroupId, rule.inputs.referencedSecurityGroupId], [cluster, cluster], rule.name);
            }
        }
        assert.equal(byType(r, INGRESS).filter((x) => x.inputs.cidrIpv4 !== undefined).length, 3, "ssh, dashboard, client");
    });

    test("every worker command goes through the head; the head's own commands do not", async () => {
        for (const connectVia of ["public", "private"]) {
            const r = await rendered({ ...PRIVATE, connectVia, autostopIdleMinutes: 30 });
            const headHost = connectVia === "public" ? "198.51.100.10" : "10.0.1.10";
            const commands = byType(r, COMMAND).map((c) => ({ name: c.name, connection: reveal(c.inputs).connection }));
            const toWorkers = commands.filter((c) => /-(worker-\d)-/.test(c.name));
            assert.equal(toWorkers.length, 8, "prepare, job environment, install and start on each of 2 workers");
            for (const { name, connection } of toWorkers) {
                assert.match(connection.host, /^10\.0\.2\.1[12]$/, `${name} dials the worker's private IP`);
                assert.ok(connection.proxy, `${name} has a proxy`);
                assert.equal(connection.proxy.host, headHost, `${name} goes through the head (${connectVia})`);
                assert.equal(connection.proxy.user, "ubuntu");
                assert.equal(connection.proxy.privateKey, connection.privateKey);
                assert.ok(connection.proxy.dialErrorLimit >= 10 && connection.proxy.perDialTimeout > 0, "the proxy waits for the head too");
            }
            for (const { name, connection } of commands.filter((c) => !toWorkers.includes(c))) {
                assert.equal(connection.host, headHost, name);
                assert.equal(connection.proxy, undefined, name);
            }
        }
    });

    test("public workers are dialled directly, as before", async () => {
        const r = await render({ workerCount: 2 });
        for (const c of byType(r, COMMAND)) {
            assert.equal(reveal(c.inputs).connection.proxy, undefined, c.name);
        }
        assert.deepEqual(byName(r, "ray-cluster-s3-endpoint").inputs.routeTableIds, [idOf(r, "ray-cluster-rt")],
            "the S3 endpoint serves public mode too");
        assert.equal(byType(r, "aws:ec2/natGateway:NatGateway").length, 0);
    });

    test("sshConfig: each worker by its private IP with ProxyJump headnode", async () => {
        const r = await rendered({ ...PRIVATE, sshIdentityFile: "~/.ssh/rc.pem" });
        assert.equal(r.outputs.sshConfig, [
            "Host headnode",
            "    HostName 198.51.100.10",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/rc.pem",
            "    IdentitiesOnly yes",
            "",
            "Host worker-1",
            "    HostName 10.0.2.11",
            "    ProxyJump headnode",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/rc.pem",
            "    IdentitiesOnly yes",
            "",
            "Host worker-2",
            "    HostName 10.0.2.12",
            "    ProxyJump headnode",
            "    User ubuntu",
            "    IdentityFile ~/.ssh/rc.pem",
            "    IdentitiesOnly yes",
            "",
        ].join("\n"));
    });

    test("without a NAT gateway: no Elastic IP, no default route, the S3 endpoint stays", async () => {
        const r = await rendered({ ...PRIVATE, natGateway: false, packageIndexUrl: "https://pypi.example.com/simple/" });
        for (const type of ["aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip"]) {
            assert.equal(byType(r, type).length, 0, type);
        }
        const routes = byType(r, "aws:ec2/route:Route").map((x) => x.name);
        assert.deepEqual(routes, ["ray-cluster-default-route"], "only the public subnet's internet route");
        assert.deepEqual(byName(r, "ray-cluster-s3-endpoint").inputs.routeTableIds, [idOf(r, "ray-cluster-rt"), idOf(r, "ray-cluster-private-rt")]);
        assert.ok(byName(r, "ray-cluster-worker-1").dependencies.includes(byName(r, "ray-cluster-private-rta").urn));
    });
});

describe("public to private, as npm run plan -- --diff shows it", () => {
    test("the workers are replaced (subnet and public IP cannot change in place); the head, buckets and key stay", async () => {
        const before = await render({ workerCount: 2 });
        const after = await render(PRIVATE);
        const diff = diffGraphs(before.resources, after.resources);
        const replaced = diff.changed.filter((c) => c.replacedBy.length > 0);
        assert.deepEqual(replaced.filter((c) => c.type === INSTANCE).map((c) => [c.name, c.replacedBy]), [
            ["ray-cluster-worker-1", ["associatePublicIpAddress", "subnetId"]],
            ["ray-cluster-worker-2", ["associatePublicIpAddress", "subnetId"]],
        ]);
        const head = diff.changed.find((c) => c.name === "ray-cluster-headnode");
        assert.deepEqual(head?.inputs, ["vpcSecurityGroupIds"], "the head only gains its own security group, in place");
        assert.deepEqual(diff.removed, []);
        for (const kept of byType(before, "aws:s3/bucket:Bucket").map((b) => b.name).concat(["ray-cluster-vpc", "ray-cluster-subnet"])) {
            assert.ok(!diff.changed.some((c) => c.name === byName(before, kept).name), kept);
        }
        const text = diffText(diff);
        assert.match(text, /^ {2}\+- ray-cluster-worker-1: REPLACED, since associatePublicIpAddress, subnetId cannot change in place/m);
        assert.match(text, /^ {2}\+ ray-cluster-private-nat$/m);
        assert.match(text, /^ {2}~ ray-cluster-headnode: vpcSecurityGroupIds/m);
    });
});

describe("a VPC of your own under mocks", () => {
    for (const [label, config] of [["public workers", OWN_VPC], ["private workers", OWN_VPC_PRIVATE]] as const) {
        test(`${label}: no network resource is created and the instances land in the given subnets`, async () => {
            const r = await rendered(config);
            for (const type of NETWORK_TYPES) {
                assert.deepEqual(byType(r, type).map((x) => x.name), [], type);
            }
            const all = nodes(r);
            assert.equal(all.headnode.subnetId, HEAD_SUBNET);
            const workerSubnet = config.privateSubnetId ?? HEAD_SUBNET;
            for (const worker of ["worker-1", "worker-2"]) {
                assert.equal(all[worker].subnetId, workerSubnet, worker);
                assert.equal(all[worker].associatePublicIpAddress, config === OWN_VPC_PRIVATE ? false : undefined, worker);
            }
            for (const group of byType(r, "aws:ec2/securityGroup:SecurityGroup")) {
                assert.equal(group.inputs.vpcId, VPC, group.name);
            }
        });
    }

    const other: Record<string, MockSubnet> = {
        [HEAD_SUBNET]: { vpcId: VPC, defaultRoute: "igw-0123456789abcdef0" },
        [WORKER_SUBNET]: { vpcId: VPC, defaultRoute: "nat-0123456789abcdef0" },
    };
    const cases: Array<{ what: string; config: StackConfig; subnets: Record<string, MockSubnet>; key: string; value: string; expected: RegExp }> = [
        { what: "the head's subnet belongs to another VPC", config: OWN_VPC,
            subnets: { ...other, [HEAD_SUBNET]: { vpcId: "vpc-0fff9999eeee8888d", defaultRoute: "igw-0123456789abcdef0" } },
            key: "subnetId", value: HEAD_SUBNET, expected: /expected a subnet of vpcId vpc-0abc12345678def00; it belongs to vpc-0fff9999eeee8888d/ },
        { what: "the workers' subnet belongs to another VPC", config: OWN_VPC_PRIVATE,
            subnets: { ...other, [WORKER_SUBNET]: { vpcId: "vpc-0fff9999eeee8888d", defaultRoute: "nat-0123456789abcdef0" } },
            key: "privateSubnetId", value: WORKER_SUBNET, expected: /expected a subnet of vpcId vpc-0abc12345678def00/ },
        { what: "the head's subnet has no internet gateway", config: OWN_VPC,
            subnets: { ...other, [HEAD_SUBNET]: { vpcId: VPC, defaultRoute: "nat-0123456789abcdef0" } },
            key: "subnetId", value: HEAD_SUBNET, expected: /default route leads to an internet gateway \(it has a default route elsewhere\); or set 'ray-cluster:connectVia' to private/ },
        { what: "the head's subnet uses a main table with no default route", config: OWN_VPC,
            subnets: { ...other, [HEAD_SUBNET]: { vpcId: VPC, defaultRoute: "", associated: false, mainRoute: "" } },
            key: "subnetId", value: HEAD_SUBNET, expected: /it has no default route/ },
        { what: "the workers' subnet has no way out and no package index replaces PyPI", config: OWN_VPC_PRIVATE,
            subnets: { ...other, [WORKER_SUBNET]: { vpcId: VPC, defaultRoute: "" } },
            key: "privateSubnetId", value: WORKER_SUBNET, expected: /a default route .* so the workers can install Ray from PyPI; or set 'ray-cluster:packageIndexUrl'/ },
        { what: "the subnet does not exist", config: OWN_VPC, subnets: {},
            key: "subnetId", value: HEAD_SUBNET, expected: /expected a subnet this account can see in the stack's region \(the lookup failed/ },
    ];
    for (const { what, config, subnets, key, value, expected } of cases) {
        test(`fails before any resource when ${what}`, async () => {
            const r = await render(config, { subnets });
            assert.ok(r.error, "the program must fail");
            assert.match(r.error.message, new RegExp(`^invalid config 'ray-cluster:${key}': got "${value}"`));
            assert.match(r.error.message, expected);
            assert.deepEqual(r.resources.map((x) => x.name), [], "no resource was registered");
        });
    }

    test("private workers' one subnet may map public IPs: the stack builds on it, and each worker refuses a public IP itself", async () => {
        const r = await render(OWN_VPC_PRIVATE, { subnets: { ...other,
            [WORKER_SUBNET]: { ...other[WORKER_SUBNET], mapPublicIpOnLaunch: true } } });
        assert.equal(r.error, undefined, String(r.error?.message));
        for (const worker of ["worker-1", "worker-2"]) {
            const inputs = byName(r, `ray-cluster-${worker}`).inputs;
            assert.deepEqual([inputs.subnetId, inputs.associatePublicIpAddress], [WORKER_SUBNET, false], worker);
        }
    });

    test("every lookup problem is reported at once: the head's subnet in another VPC and the workers' with no way out", async () => {
        const r = await render(OWN_VPC_PRIVATE, { subnets: {
            [HEAD_SUBNET]: { vpcId: "vpc-0fff9999eeee8888d", defaultRoute: "igw-0123456789abcdef0" },
            [WORKER_SUBNET]: { vpcId: VPC, defaultRoute: "" },
        } });
        const message = r.error?.message ?? "";
        assert.match(message, /^2 problems in the stack's config:$/m);
        assert.match(message, new RegExp(`^- invalid config 'ray-cluster:subnetId': got "${HEAD_SUBNET}", expected a subnet of vpcId ${VPC}`, "m"));
        assert.match(message, new RegExp(`^- invalid config 'ray-cluster:privateSubnetId': got "${WORKER_SUBNET}", expected a subnet with a default route`, "m"));
        assert.deepEqual(r.resources.map((x) => x.name), []);
    });

    test("private workers' subnet in another zone than the head's fails, naming both zones", async () => {
        const r = await render(OWN_VPC_PRIVATE, { subnets: { ...other, [WORKER_SUBNET]: { ...other[WORKER_SUBNET], availabilityZone: "us-east-1b" } } });
        assert.match(r.error?.message ?? "", new RegExp(`^invalid config 'ray-cluster:privateSubnetId': got "${WORKER_SUBNET}", expected a ` +
            `subnet in the head's availability zone us-east-1a \\(that of subnetId ${HEAD_SUBNET}\\); it is in us-east-1b$`));
        assert.equal(r.resources.length, 0);
    });

    test("a subnet without a free address for every node it would hold fails, naming the subnet and the figures", async () => {
        const full = (id: string, free: number) => ({ [id]: { ...other[id], availableIpAddressCount: free } });
        const publicMode = await render({ ...OWN_VPC, workerCount: 4 }, { subnets: { ...other, ...full(HEAD_SUBNET, 3) } });
        assert.match(publicMode.error?.message ?? "", new RegExp(`^invalid config 'ray-cluster:subnetId': got "${HEAD_SUBNET}", ` +
            "expected a subnet with 5 free addresses for the head and 4 workers \\(it has 3 free\\)$"));
        const privateMode = await render({ ...OWN_VPC_PRIVATE, workerCount: 2, workerGroups: [{ name: "cpu", instanceType: "c7i.large", count: 3 }] },
            { subnets: { ...other, ...full(WORKER_SUBNET, 4), ...full(HEAD_SUBNET, 1) } });
        assert.match(privateMode.error?.message ?? "", new RegExp(`^invalid config 'ray-cluster:privateSubnetId': got "${WORKER_SUBNET}", ` +
            "expected a subnet with 5 free addresses for 5 workers \\(it has 4 free\\)$"));
        assert.equal(privateMode.resources.length + publicMode.resources.length, 0);
    });

    test("on an update, the addresses the stack's own nodes hold count as theirs: a full subnet that holds them passes", async () => {
        await rendered({ ...OWN_VPC, workerCount: 4 }, { ...other, [HEAD_SUBNET]: { ...other[HEAD_SUBNET], availableIpAddressCount: 0, stackInstances: 5 } });
        const grown = await render({ ...OWN_VPC, workerCount: 6 },
            { subnets: { ...other, [HEAD_SUBNET]: { ...other[HEAD_SUBNET], availableIpAddressCount: 1, stackInstances: 5 } } });
        assert.match(grown.error?.message ?? "", /expected a subnet with 7 free addresses for the head and 6 workers \(it has 1 free, and this stack's nodes hold 5\)/);
    });

    test("lookups that pass: a head subnet without an internet gateway with connectVia private, a main-table " +
        "internet route, an isolated workers' subnet with a package index", async () => {
        await rendered({ ...OWN_VPC, connectVia: "private" }, { [HEAD_SUBNET]: { vpcId: VPC, defaultRoute: "" } });
        await rendered(OWN_VPC, { [HEAD_SUBNET]: { vpcId: VPC, defaultRoute: "", associated: false, mainRoute: "igw-0123456789abcdef0" } });
        await rendered({ ...OWN_VPC_PRIVATE, packageIndexUrl: "https://pypi.example.com/simple/" },
            { ...other, [WORKER_SUBNET]: { vpcId: VPC, defaultRoute: "" } });
    });
});
