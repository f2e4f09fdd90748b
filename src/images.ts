import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DLAMI_SSM_PARAMETER } from "./groups";

/** Canonical's AWS account, the only publisher trusted for the default image. */
export const CANONICAL_OWNER_ID = "099720109477";
export const UBUNTU_2404_AMD64_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*";

/**
 * The images nodes boot: a pinned AMI as given, else the latest Canonical Ubuntu 24.04 (or, for NVIDIA GPU types,
 * AWS's Deep Learning Base AMI from its public SSM parameter). Each default is looked up once, and only when some
 * node boots it.
 */
export class NodeImages {
    private ubuntu?: pulumi.Output<string>;
    private deepLearning?: pulumi.Output<string>;

    constructor(private readonly parent: pulumi.Resource) {}

    /** The AMI of a node of this image choice; empty amiId looks one up. */
    imageFor(amiId: string, gpu: boolean): pulumi.Input<string> {
        if (amiId !== "") {
            return amiId;
        }
        return gpu ? this.deepLearningImage() : this.ubuntuImage();
    }

    private ubuntuImage(): pulumi.Output<string> {
        return this.ubuntu ??= aws.ec2.getAmiOutput({
            owners: [CANONICAL_OWNER_ID],
            mostRecent: true,
            filters: [
                { name: "name", values: [UBUNTU_2404_AMD64_NAME] },
                { name: "architecture", values: ["x86_64"] },
                { name: "virtualization-type", values: ["hvm"] },
                { name: "root-device-type", values: ["ebs"] },
            ],
        }, { parent: this.parent }).id;
    }

    private deepLearningImage(): pulumi.Output<string> {
        return this.deepLearning ??= aws.ssm.getParameterOutput({ name: DLAMI_SSM_PARAMETER }, { parent: this.parent }).value;
    }
}
