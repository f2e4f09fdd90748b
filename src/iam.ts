import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** Inputs of the nodes' IAM identity. */
export interface NodeRoleArgs {
    /** ARNs of the buckets the nodes may use, and no others. */
    bucketArns: pulumi.Input<string>[];
    /** Whose role this is, in its description: the head's or the workers'. */
    holder: string;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** Object-level actions Ray jobs need to read, write and clean up pipeline data. */
export const OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
];

/** Bucket-level actions for listing and locating the buckets. */
export const BUCKET_ACTIONS = ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketLocation"];

/**
 * An instance profile whose role reaches this stack's buckets and nothing else, so jobs need no access keys. The head
 * and the workers each have one: only the head's gets EC2 grants (autostop, the autoscaler).
 */
export class NodeRole extends pulumi.ComponentResource {
    public readonly role: aws.iam.Role;
    public readonly instanceProfile: aws.iam.InstanceProfile;

    constructor(name: string, args: NodeRoleArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:iam:NodeRole", name, {}, opts);

        this.role = new aws.iam.Role(`${name}-role`, {
            description: `Ray cluster ${args.holder}: access to this stack's pipeline buckets`,
            assumeRolePolicy: JSON.stringify({
                Version: "2012-10-17",
                Statement: [{
                    Effect: "Allow",
                    Principal: { Service: "ec2.amazonaws.com" },
                    Action: "sts:AssumeRole",
                }],
            }),
            tags: args.tags,
        }, { parent: this });

        const bucketArns = pulumi.all(args.bucketArns);
        new aws.iam.RolePolicy(`${name}-buckets`, {
            role: this.role.id,
            policy: bucketArns.apply((arns) => JSON.stringify({
                Version: "2012-10-17",
                Statement: [
                    { Sid: "Buckets", Effect: "Allow", Action: BUCKET_ACTIONS, Resource: arns },
                    { Sid: "Objects", Effect: "Allow", Action: OBJECT_ACTIONS, Resource: arns.map((arn) => `${arn}/*`) },
                ],
            })),
        }, { parent: this });

        this.instanceProfile = new aws.iam.InstanceProfile(`${name}-profile`, {
            role: this.role.name,
            tags: args.tags,
        }, { parent: this });

        this.registerOutputs({ instanceProfileName: this.instanceProfile.name });
    }
}
