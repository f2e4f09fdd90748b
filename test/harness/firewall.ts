/**
 * The stack's security groups as packet filters on the booted test hosts. It reads the rendered resources (groups,
 * their ingress and egress rules, each instance's groups) and gives each host an nftables ruleset in its own network
 * namespace, which stands in for its ENI: stateful like a security group, input and output dropped unless a rule of
 * one of its groups admits them. A group reference admits every address of every host in that group. Each dropped
 * flow is recorded, so a test that fails can say what the groups blocked.
 */
import { RegisteredResource, render, reveal, StackConfig } from "../../tools/render";

const GROUP = "aws:ec2/securityGroup:SecurityGroup";
const INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule";
const INSTANCE = "aws:ec2/instance:Instance";

/** One rule of a security group, as AWS evaluates it. */
export interface GroupRule {
    /** The rule resource's name, for messages and for taking a rule out. */
    name: string;
    direction: "ingress" | "egress";
    /** Name of the group the rule belongs to. */
    group: string;
    /** tcp, udp, icmp or -1 (every protocol). */
    protocol: string;
    fromPort?: number;
    toPort?: number;
    /** The peer: a CIDR block, or the name of a group whose members it admits. */
    cidr?: string;
    peerGroup?: string;
}

/** The nftables table every host's ruleset lives in; replacing it is atomic. */
export const TABLE = "inet ray_cluster_sg";

/** What the groups blocked on one host: source → destination, protocol and port. */
export interface BlockedFlow {
    node: string;
    direction: "in" | "out";
    source: string;
    destination: string;
    protocol: string;
    port: number;
}

export class SecurityGroupFirewall {
    /** Group names of each node, from its instance's vpcSecurityGroupIds (or join, for an instance launched later). */
    readonly groupsOf: Record<string, string[]>;
    readonly rules: GroupRule[];

    /**
     * `addresses` gives every address a node has (a private head has one on each bridge): a group reference admits
     * them all, as AWS admits the private addresses of every ENI in the group.
     */
    constructor(resources: RegisteredResource[], private readonly addresses: (node: string) => string[]) {
        // Under the mocks every resource's id is its name with -id, which is what the rules and instances reference.
        const groupById = new Map(resources.filter((r) => r.type === GROUP).map((group) => [`${group.name}-id`, group.name]));
        const groupName = (id: string) => {
            const name = groupById.get(id);
            if (!name) {
                throw new Error(`security group ${id} is not one the stack created`);
            }
            return name;
        };
        this.groupsOf = Object.fromEntries(resources.filter((r) => r.type === INSTANCE).map((instance) => {
            const inputs = reveal(instance.inputs);
            return [inputs.tags.Name as string, (inputs.vpcSecurityGroupIds as string[]).map(groupName)];
        }));
        this.rules = resources.filter((r) => r.type === INGRESS || r.type === EGRESS).map((r): GroupRule => {
            const inputs = reveal(r.inputs);
            return {
                name: r.name,
                direction: r.type === INGRESS ? "ingress" : "egress",
                group: groupName(inputs.securityGroupId),
                protocol: String(inputs.ipProtocol),
                fromPort: inputs.fromPort,
                toPort: inputs.toPort,
                cidr: inputs.cidrIpv4,
                peerGroup: inputs.referencedSecurityGroupId ? groupName(inputs.referencedSecurityGroupId) : undefined,
            };
        }).sort((a, b) => a.name.localeCompare(b.name));
        for (const rule of this.rules) {
            if (rule.cidr === undefined && rule.peerGroup === undefined) {
                throw new Error(`rule ${rule.name} names no peer the test rig can enforce (IPv6 or a prefix list?)`);
            }
        }
    }

    /** Every node in the given group, by name: a ruleset never depends on the order resources registered in. */
    members(group: string): string[] {
        return Object.keys(this.groupsOf).filter((node) => this.groupsOf[node].includes(group)).sort();
    }

    /** Makes a node a member of the given groups, as an instance launched outside the stack's graph is. */
    join(node: string, groups: string[]): void {
        for (const group of groups) {
            if (!this.rules.some((r) => r.group === group) && !Object.values(this.groupsOf).some((g) => g.includes(group))) {
                throw new Error(`no security group ${group}`);
            }
        }
        this.groupsOf[node] = [...groups];
    }

    /** A copy with the named rules taken out, as if the stack had never created them. */
    without(...ruleNames: string[]): SecurityGroupFirewall {
        for (const name of ruleNames) {
            if (!this.rules.some((r) => r.name === name)) {
                throw new Error(`no rule ${name}; have ${this.rules.map((r) => r.name).join(", ")}`);
            }
        }
        const copy = Object.create(SecurityGroupFirewall.prototype) as SecurityGroupFirewall;
        Object.assign(copy, this, { rules: this.rules.filter((r) => !ruleNames.includes(r.name)) });
        return copy;
    }

    /** The nftables ruleset of one node: its groups' rules, stateful, everything else dropped and recorded. */
    ruleset(node: string): string {
        const groups = this.groupsOf[node];
        if (!groups) {
            throw new Error(`no instance named ${node}`);
        }
        const mine = this.rules.filter((r) => groups.includes(r.group));
        const chain = (direction: "ingress" | "egress") => {
            const peer = direction === "ingress" ? "saddr" : "daddr";
            return mine.filter((r) => r.direction === direction).map((r) => {
                const peers = r.cidr !== undefined ? [r.cidr] : this.members(r.peerGroup!).flatMap(this.addresses);
                if (peers.length === 0) {
                    return `        # ${r.name}: no member of ${r.peerGroup} yet`;
                }
                return `        ip ${peer} { ${peers.join(", ")} } ${match(r)}accept comment "${r.name}"`;
            });
        };
        const record = (set: string) =>
            `        meta l4proto { tcp, udp } add @${set} { ip saddr . ip daddr . meta l4proto . th dport }`;
        return [
            `table ${TABLE}`,
            `delete table ${TABLE}`,
            `table ${TABLE} {`,
            "    set blocked_in { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; }",
            "    set blocked_out { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic; size 4096; }",
            "    chain input {",
            "        type filter hook input priority filter; policy drop;",
            "        ct state established,related accept",
            "        iif lo accept",
            // IPv4 only, as the stack's rules are: neighbour discovery and the like go unfiltered.
            "        meta nfproto ipv6 accept",
            ...chain("ingress"),
            record("blocked_in"),
            "    }",
            "    chain output {",
            "        type filter hook output priority filter; policy drop;",
            "        ct state established,related accept",
            "        oif lo accept",
            "        meta nfproto ipv6 accept",
            ...chain("egress"),
            record("blocked_out"),
            "    }",
            "}",
            "",
        ].join("\n");
    }
}

/** The part of an nftables rule that matches a rule's protocol and ports. */
function match(rule: GroupRule): string {
    if (rule.protocol === "-1" || rule.protocol === "all") {
        return "";
    }
    if (rule.protocol === "icmp") {
        return "meta l4proto icmp ";
    }
    const ports = rule.fromPort === rule.toPort ? `${rule.fromPort}` : `${rule.fromPort}-${rule.toPort}`;
    return `${rule.protocol} dport ${ports} `;
}

/** Parses `nft -j list set` output of a blocked set into flows. */
export function parseBlocked(node: string, direction: "in" | "out", json: string): BlockedFlow[] {
    const doc = JSON.parse(json) as { nftables: Array<{ set?: { elem?: unknown[] } }> };
    const elems = doc.nftables.find((entry) => entry.set)?.set?.elem ?? [];
    return elems.map((elem) => {
        const value = (elem as { elem?: { val: unknown } }).elem?.val ?? elem;
        const [source, destination, protocol, port] = (value as { concat: Array<string | number> }).concat;
        return { node, direction, source: String(source), destination: String(destination), protocol: String(protocol), port: Number(port) };
    });
}

/** The firewall of the stack a config renders, before any host exists: hosts are launched behind it. */
export async function stackFirewall(config: StackConfig, addresses: (node: string) => string[]): Promise<SecurityGroupFirewall> {
    const rendered = await render(config);
    if (rendered.error) {
        throw rendered.error;
    }
    return new SecurityGroupFirewall(rendered.resources, addresses);
}
