import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DLAMI_SSM_PARAMETER } from "./groups";

/** Canonical's AWS account, the only publisher trusted for the default image. */
export const CANONICAL_OWNER_ID = "099720109477";
export const UBUNTU_2404_AMD64_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

/** The lookup of the latest Canonical Ubuntu 24.04 amd64 image. */
export const UBUNTU_IMAGE_QUERY: aws.ec2.GetAmiArgs = {
    owners: [CANONICAL_OWNER_ID],
    mostRecent: true,
    filters: [
        { name: "name", values: [UBUNTU_2404_AMD64_NAME] },
        { name: "architecture", values: ["x86_64"] },
        { name: "virtualization-type", values: ["hvm"] },
        { name: "root-device-type", values: ["ebs"] },
    ],
};

/** Where nodes' AMIs come from: the nodes and the autoscaler's node types ask it, never AWS directly. */
export interface ImageSource {
    /** The AMI a node of this image choice boots (amiId as configured; empty means the default for gpu or not). */
    imageFor(amiId: string, gpu: boolean): pulumi.Input<string>;
    /** Whether a new AMI for this choice replaces running nodes: only an AMI the user pins does. */
    replacesRunningNodes(amiId: string): boolean;
}

/**
 * The images nodes boot: a pinned AMI as given, else the latest Canonical Ubuntu 24.04 (or, for NVIDIA GPU types,
 * AWS's Deep Learning Base AMI from its public SSM parameter). Each default is looked up once, and only when some
 * node boots it.
 */
export class NodeImages implements ImageSource {
    private ubuntu?: pulumi.Output<string>;
    private deepLearning?: pulumi.Output<string>;

    constructor(private readonly parent: pulumi.Resource) {}

    imageFor(amiId: string, gpu: boolean): pulumi.Input<string> {
        if (amiId !== "") {
            return amiId;
        }
        return gpu ? this.deepLearningImage() : this.ubuntuImage();
    }

    // Canonical and AWS publish new images often; a looked-up AMI must not replace running nodes on the next
    // `pulumi up`. An AMI the user pins is a deliberate choice and does replace them.
    replacesRunningNodes(amiId: string): boolean {
        return amiId !== "";
    }

    private ubuntuImage(): pulumi.Output<string> {
        return this.ubuntu ??= aws.ec2.getAmiOutput(UBUNTU_IMAGE_QUERY, { parent: this.parent }).id;
    }

    private deepLearningImage(): pulumi.Output<string> {
        return this.deepLearning ??= aws.ssm.getParameterOutput({ name: DLAMI_SSM_PARAMETER }, { parent: this.parent }).value;
    }
}

/**
 * What finds the default base of an image choice, as opposed to what it finds: the Ubuntu lookup (owner, release,
 * architecture) or the Deep Learning AMI's SSM parameter. Its answer changes whenever Canonical or AWS publish; the
 * lookup changes only with this program.
 */
export function defaultImageLookup(gpu: boolean): string {
    return gpu ? `ssm:${DLAMI_SSM_PARAMETER}` : `ec2:${JSON.stringify(UBUNTU_IMAGE_QUERY)}`;
}

/** The base AMI of an image choice, resolved now: for what must be known before any resource is registered. */
export async function resolveBaseImage(amiId: string, gpu: boolean): Promise<string> {
    if (amiId !== "") {
        return amiId;
    }
    return gpu ? (await aws.ssm.getParameter({ name: DLAMI_SSM_PARAMETER })).value : (await aws.ec2.getAmi(UBUNTU_IMAGE_QUERY)).id;
}
