/**
 * Ray-ready images on the booted hosts, as EC2 makes them with CreateImage (aws.ec2.AmiFromInstance): each image
 * builder the stack launches becomes a host of its own, booted from its request's user data and key pair, and an
 * image of it is its root volume's files, which hosts launched later with that image id boot from. The end-to-end
 * test and the benchmarks share it.
 */
import * as crypto from "node:crypto";
import { SecurityGroupFirewall } from "./firewall";
import { BootedHosts } from "./machines";
import type { LaunchFacts } from "../../tools/render";

/** The `Name` tag of the stack's builder for the default Ubuntu base (src/ray-image.ts). */
export const BUILDER_NAME = "ubuntu-image-builder";

export class ImageBuilds {
    /** The account's own images, with their tags, as the stack's image lookups find them (render's `images`). */
    readonly account: Record<string, { tags: Record<string, string> }> = {};
    /** Builders launched so far: the Nth is host imgbuild-N. */
    builds = 0;
    private readonly hostOf = new Map<string, string>();

    /** `octets`: where successive builders sit on the public bridge, one per build. */
    constructor(private readonly hosts: BootedHosts, private readonly octets: number[]) {}

    /** The rig host of the Nth builder (a short name: a host's veth is named after its first 12 characters). */
    static host(n: number): string {
        return `imgbuild-${n}`;
    }

    /** The host of the latest builder: where the stack's builder resource is, for its addresses. */
    current(): string {
        return ImageBuilds.host(this.builds);
    }

    /** The address the next builder gets, which an emulated EC2 may need before the launch. */
    nextAddress(): string {
        const octet = this.octets[this.builds];
        if (octet === undefined) {
            throw new Error(`no address left for builder ${this.builds + 1}; have ${this.octets.length}`);
        }
        const host = ImageBuilds.host(this.builds + 1);
        this.hosts.place(host, { public: octet });
        return this.hosts.address(host);
    }

    /**
     * Launches a builder as EC2 would from its request (user data, key pair, image), in the security groups it names,
     * on a host of its own; records the instance id the emulated EC2 (or the caller) gave it.
     */
    launch(inputs: Record<string, any>, account: LaunchFacts, instanceId: string, firewall: SecurityGroupFirewall, groups: string[]): string {
        this.nextAddress();
        const host = ImageBuilds.host(++this.builds);
        firewall.join(host, groups);
        this.hosts.launch(host, { userData: inputs.userData, publicKey: account.publicKey, instanceId, imageId: inputs.ami }, firewall);
        this.hostOf.set(instanceId, host);
        return host;
    }

    /** The address a render gives the builder: the host of the latest build. */
    address(): string {
        return this.hosts.address(this.current());
    }

    /** AmiFromInstance: EC2 stops the source instance, snapshots its root volume and starts it again. */
    async createImage(inputs: Record<string, any>): Promise<string> {
        const host = this.hostOf.get(inputs.sourceInstanceId);
        if (!host) {
            throw new Error(`InvalidInstanceID.NotFound: ${inputs.sourceInstanceId} is no builder this rig launched`);
        }
        const imageId = `ami-${crypto.randomBytes(9).toString("hex").slice(0, 17)}`;
        this.hosts.snapshot(host, imageId);
        this.account[imageId] = { tags: inputs.tags };
        return imageId;
    }
}
