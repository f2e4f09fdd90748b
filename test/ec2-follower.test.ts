/**
 * The rig's EC2 follower, with its emulator, hosts and firewall stood in for: it follows each call in order, and a
 * host's shutdown never holds up the test's own process, whose SSH replies and timestamps go on meanwhile.
 */
import * as assert from "node:assert/strict";
import { test } from "node:test";
import { Ec2Call, Ec2Emulator, Ec2Follower, FollowingHosts } from "./harness/ec2-emulator";
import { SecurityGroupFirewall } from "./harness/firewall";

/** Hosts that record what the follower asked of them; each power-off ends when the test says so. */
class StandInHosts implements FollowingHosts {
    readonly events: string[] = [];
    readonly offs = new Map<string, { done: () => void; fail: (e: Error) => void }>();
    place(): void {}
    launch(node: string): void {
        this.events.push(`launch ${node}`);
    }
    powerOffInBackground(node: string): Promise<void> {
        this.events.push(`power off ${node}`);
        return new Promise((done, fail) => this.offs.set(node, { done, fail }));
    }
    enforce(): void {}
}

function follow(calls: Ec2Call[]): { follower: Ec2Follower; hosts: StandInHosts } {
    const ec2 = { calls: () => calls, registered: new Set<string>() } as unknown as Ec2Emulator;
    const firewall = { join: () => undefined } as unknown as SecurityGroupFirewall;
    const hosts = new StandInHosts();
    return { follower: new Ec2Follower(ec2, hosts, firewall, {}, () => []), hosts };
}

const run = (id: string, privateIp: string): Ec2Call => ({ at: 1, action: "RunInstances", instanceType: "c7i.xlarge", instances: [{ id, privateIp }] });
const terminate = (id: string): Ec2Call => ({ at: 2, action: "TerminateInstances", instanceIds: [id] });

test("sync returns while a terminated host is still shutting down, and the host counts as off only once it is", async () => {
    const calls = [run("i-1", "10.213.0.5"), terminate("i-1")];
    const { follower, hosts } = follow(calls);
    follower.sync();
    const [instance] = follower.launched();
    assert.deepEqual(hosts.events, ["launch i-1", "power off i-1"]);
    assert.equal(instance.poweredOffAt, undefined, "off before its shutdown ended");
    // The test's process runs on: a timer fires while the shutdown goes on.
    await new Promise((resolve) => setTimeout(resolve, 20));
    follower.sync();
    assert.deepEqual(hosts.events, ["launch i-1", "power off i-1"], "a second sync powered the host off again");
    hosts.offs.get("i-1")!.done();
    await follower.settled();
    assert.ok(instance.poweredOffAt !== undefined);
});

test("a launch given the address of a host still shutting down waits for that host to be off, and the calls after it wait too", async () => {
    const calls = [run("i-1", "10.213.0.5"), terminate("i-1"), run("i-2", "10.213.0.5"), terminate("i-2")];
    const { follower, hosts } = follow(calls);
    follower.sync();
    follower.sync();
    assert.deepEqual(hosts.events, ["launch i-1", "power off i-1"]);
    hosts.offs.get("i-1")!.done();
    await follower.settled();
    follower.sync();
    assert.deepEqual(hosts.events, ["launch i-1", "power off i-1", "launch i-2", "power off i-2"]);
    hosts.offs.get("i-2")!.done();
    await follower.stop();
});

test("a host that fails to power off keeps the reason, and does not hold its address", async () => {
    const calls = [run("i-1", "10.213.0.5"), terminate("i-1"), run("i-2", "10.213.0.5")];
    const { follower, hosts } = follow(calls);
    follower.sync();
    hosts.offs.get("i-1")!.fail(new Error("i-1 did not power off: machines.sh stop ended with 1"));
    await follower.settled();
    follower.sync();
    const [first] = follower.launched();
    assert.deepEqual([first.poweredOffAt, first.powerOffError], [undefined, "i-1 did not power off: machines.sh stop ended with 1"]);
    assert.deepEqual(hosts.events, ["launch i-1", "power off i-1", "launch i-2"]);
});
