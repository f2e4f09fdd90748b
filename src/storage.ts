import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** The four stages of the ML pipeline, each with its own bucket; the keys name the `bucketNames` output. */
export const BUCKET_PURPOSES = {
    stagingData: "staging-data",
    featureStore: "feature-store",
    modelStore: "model-store",
    results: "results",
} as const;

export type BucketPurpose = keyof typeof BUCKET_PURPOSES;

/** Inputs of the pipeline's buckets. */
export interface PipelineBucketsArgs {
    /** Whether `pulumi destroy` may delete buckets that still hold objects (and all their versions). */
    forceDestroy: boolean;
    /** Tags every resource carries. */
    tags: Record<string, string>;
}

/** Versioned, encrypted, private buckets that refuse plain-HTTP access. */
export class PipelineBuckets extends pulumi.ComponentResource {
    public readonly buckets: Record<BucketPurpose, aws.s3.Bucket>;
    public readonly bucketNames: pulumi.Output<Record<BucketPurpose, string>>;
    public readonly bucketArns: pulumi.Output<string>[];

    constructor(name: string, args: PipelineBucketsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("ray-cluster:storage:PipelineBuckets", name, {}, opts);

        const entries = (Object.keys(BUCKET_PURPOSES) as BucketPurpose[]).map((purpose) => {
            const bucketName = `${name}-${BUCKET_PURPOSES[purpose]}`;
            return [purpose, this.secureBucket(bucketName, args)] as const;
        });
        this.buckets = Object.fromEntries(entries) as Record<BucketPurpose, aws.s3.Bucket>;
        this.bucketArns = entries.map(([, bucket]) => bucket.arn);
        this.bucketNames = pulumi.output(Object.fromEntries(
            entries.map(([purpose, bucket]) => [purpose, bucket.bucket]),
        ) as Record<BucketPurpose, pulumi.Output<string>>);

        this.registerOutputs({ bucketNames: this.bucketNames });
    }

    private secureBucket(bucketName: string, args: PipelineBucketsArgs): aws.s3.Bucket {
        const opts = { parent: this };
        const bucket = new aws.s3.Bucket(bucketName, {
            forceDestroy: args.forceDestroy,
            tags: { ...args.tags, Name: bucketName },
        }, opts);

        new aws.s3.BucketVersioning(`${bucketName}-versioning`, {
            bucket: bucket.id,
            versioningConfiguration: { status: "Enabled" },
        }, opts);

        new aws.s3.BucketServerSideEncryptionConfiguration(`${bucketName}-sse`, {
            bucket: bucket.id,
            rules: [{
                applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" },
                bucketKeyEnabled: true,
            }],
        }, opts);

        const publicAccessBlock = new aws.s3.BucketPublicAccessBlock(`${bucketName}-public-access`, {
            bucket: bucket.id,
            blockPublicAcls: true,
            blockPublicPolicy: true,
            ignorePublicAcls: true,
            restrictPublicBuckets: true,
        }, opts);

        new aws.s3.BucketOwnershipControls(`${bucketName}-ownership`, {
            bucket: bucket.id,
            rule: { objectOwnership: "BucketOwnerEnforced" },
        }, opts);

        new aws.s3.BucketPolicy(`${bucketName}-tls-only`, {
            bucket: bucket.id,
            policy: pulumi.jsonStringify({
                Version: "2012-10-17",
                Statement: [{
                    Sid: "DenyInsecureTransport",
                    Effect: "Deny",
                    Principal: "*",
                    Action: "s3:*",
                    Resource: [bucket.arn, pulumi.interpolate`${bucket.arn}/*`],
                    Condition: { Bool: { "aws:SecureTransport": "false" } },
                }],
            }),
        // S3 rejects a bucket policy while the public access block is still being applied.
        }, { ...opts, dependsOn: [publicAccessBlock] });

        return bucket;
    }
}
