import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SecurityGroupFirewall } from "./harness/firewall";
import { defaultAddresses, render, StackConfig } from "../tools/render";

/** The firewall the end-to-end rig would enforce for a config, with the mocks' addresses. */
async function firewallFor(config: StackConfig): Promise<SecurityGroupFirewall> {
    const rendered = await render(config);
    assert.equal(rendered.error, undefined);
    return new SecurityGroupFirewall(rendered.resources, (node) => [defaultAddresses(node).privateIp]);
}

const lines = (ruleset: string, chain: "input" | "output") =>
    ruleset.split(`chain ${chain} {`)[1].split("\n    }")[0].split("\n").map((l) => l.trim()).filter((l) => l.startsWith("ip "));

describe("the end-to-end rig's packet filters come from the rendered security groups", () => {
    test("public workers: SSH from sshAllowedCidrs, everything from members, all egress; nothing else comes in", async () => {
        const firewall = await firewallFor({ sshAllowedCidrs: ["203.0.113.0/24"] });
        assert.deepEqual(firewall.groupsOf, { headnode: ["ray-cluster-sg"], "worker-1": ["ray-cluster-sg"], "worker-2": ["ray-cluster-sg"] });
        for (const node of ["headnode", "worker-1"]) {
            const ruleset = firewall.ruleset(node);
            assert.deepEqual(lines(ruleset, "input"), [
                'ip saddr { 10.0.1.10, 10.0.1.11, 10.0.1.12 } accept comment "ray-cluster-intra-cluster"',
                'ip saddr { 203.0.113.0/24 } tcp dport 22 accept comment "ray-cluster-ssh-203-0-113-0-24"',
            ], node);
            assert.deepEqual(lines(ruleset, "output"), ['ip daddr { 0.0.0.0/0 } accept comment "ray-cluster-egress-all"'], node);
            assert.match(ruleset, /type filter hook input priority filter; policy drop;\n\s+ct state established,related accept/);
            assert.match(ruleset, /add @blocked_in \{ ip saddr \. ip daddr \. meta l4proto \. th dport \}\n\s+\}/);
        }
    });

    test("a change in the stack's groups changes what the rig enforces: the dashboard's CIDR opens 8265 and 10001", async () => {
        const firewall = await firewallFor({ dashboardAllowedCidrs: ["198.51.100.7/32"] });
        const input = lines(firewall.ruleset("headnode"), "input");
        assert.ok(input.includes('ip saddr { 198.51.100.7/32 } tcp dport 8265 accept comment "ray-cluster-dashboard-198-51-100-7-32"'));
        assert.ok(input.includes('ip saddr { 198.51.100.7/32 } tcp dport 10001 accept comment "ray-cluster-client-198-51-100-7-32"'));
    });

    test("private workers: only the head has the outside's rules, a worker admits members alone", async () => {
        const firewall = await firewallFor({ workerNetwork: "private", sshAllowedCidrs: ["203.0.113.0/24"] });
        assert.deepEqual(firewall.groupsOf.headnode, ["ray-cluster-sg", "ray-cluster-head-sg"]);
        assert.deepEqual(lines(firewall.ruleset("worker-1"), "input"),
            ['ip saddr { 10.0.1.10, 10.0.1.11, 10.0.1.12 } accept comment "ray-cluster-intra-cluster"']);
        assert.ok(lines(firewall.ruleset("headnode"), "input").some((l) => l.includes("tcp dport 22")));
    });

    test("taking out a rule takes it out of every member's filter, and an unknown rule is an error", async () => {
        const firewall = await firewallFor({});
        const without = firewall.without("ray-cluster-intra-cluster");
        for (const node of ["headnode", "worker-2"]) {
            assert.ok(!without.ruleset(node).includes("intra-cluster"), node);
            assert.ok(firewall.ruleset(node).includes("intra-cluster"), `${node}: the original is untouched`);
        }
        assert.throws(() => firewall.without("ray-cluster-worker-ports"), /no rule ray-cluster-worker-ports; have .*ray-cluster-intra-cluster/);
    });
});
