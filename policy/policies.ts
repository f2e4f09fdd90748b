/**
 * The ray-cluster policies: what "secure by default" means, checked on the resources a preview would create.
 * Kept apart from index.ts so the tests run exactly these objects against the program's resources.
 */
import {
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationPolicy,
} from "@pulumi/policy";

export const STACK_TAG = "ray-cluster:stack";
export const PROJECT_TAG = "ray-cluster:project";

/** Ports a Ray cluster serves without authentication unless token auth is on: GCS, dashboard, client, workers. */
export const RAY_PORT_RANGES: Array<[number, number]> = [[6379, 6379], [8265, 8265], [10001, 10001], [10002, 19999]];

const PUBLIC_CIDRS = new Set(["0.0.0.0/0", "::/0"]);

/** AWS resource types of this program that take no tags; every other aws: resource must carry both tags. */
export const UNTAGGABLE_TYPES = new Set([
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:ec2transitgateway/instanceState:InstanceState",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPolicy:BucketPolicy",
]);

/** Actions that take instances down; a grant of either must name this stack's instances by tag. */
const POWER_ACTIONS = ["ec2:StopInstances", "ec2:TerminateInstances"];

/** Whether an IAM action pattern (with * and ? wildcards, case-insensitive) covers ACTION. */
export function actionMatches(pattern: string, action: string): boolean {
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`, "i");
    return regex.test(action);
}

const INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
const LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule";
const SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup";
const INSTANCE = "aws:ec2/instance:Instance";
/** The instance tag that names a node's group, and the head's group. */
const GROUP_TAG = "ray-cluster:group";
const HEAD_GROUP_VALUE = "headnode";
const BUCKET = "aws:s3/bucket:Bucket";
const IMAGE = "aws:ec2/amiFromInstance:AmiFromInstance";
/** The tag an image builder carries: the key of the image it builds (src/ray-image.ts). */
const IMAGE_KEY_TAG = "ray-cluster:image-key";
const IAM_POLICY_TYPES = new Set(["aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy", "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy"]);

/** One ingress permission, whatever resource shape it came from. */
interface Ingress {
    protocol: string;
    fromPort: number;
    toPort: number;
    cidrs: string[];
}

/** The ingress permissions a resource grants: rule resources, legacy rules and inline security-group rules. */
export function ingressOf(args: { type: string; props: Record<string, any> }): Ingress[] {
    const p = args.props;
    const all = (protocol: unknown) => protocol === "-1" || protocol === "all";
    const one = (protocol: string, from: number | undefined, to: number | undefined, cidrs: unknown[]): Ingress => ({
        protocol,
        fromPort: all(protocol) ? 0 : from ?? 0,
        toPort: all(protocol) ? 65535 : to ?? 65535,
        cidrs: cidrs.filter((c): c is string => typeof c === "string"),
    });
    switch (args.type) {
        case INGRESS_RULE:
            return [one(p.ipProtocol, p.fromPort, p.toPort, [p.cidrIpv4, p.cidrIpv6])];
        case LEGACY_RULE:
            return p.type === "ingress" ? [one(p.protocol, p.fromPort, p.toPort, [...(p.cidrBlocks ?? []), ...(p.ipv6CidrBlocks ?? [])])] : [];
        case SECURITY_GROUP:
            return (p.ingress ?? []).map((r: any) => one(r.protocol, r.fromPort, r.toPort, [...(r.cidrBlocks ?? []), ...(r.ipv6CidrBlocks ?? [])]));
        default:
            return [];
    }
}

/** What in user data reaches the network at boot: cloud-init's package modules and downloads in its commands. */
const USER_DATA_NETWORK: Array<[RegExp, string]> = [
    [/^\s*package_(update|upgrade|reboot_if_required)\s*:\s*true/m, "package_update/package_upgrade"],
    [/^\s*packages\s*:/m, "packages"],
    [/^\s*(apt|snap)\s*:/m, "apt/snap sources"],
    [/\b(apt-get|apt|yum|dnf|snap)\s+(-\S+\s+)*(install|update|upgrade|refresh)\b/, "a package manager"],
    [/\b(curl|wget|pip3?\s+install|uv\s+pip\s+install)\b/, "a download"],
];

const isPublic = (rule: Ingress) => rule.cidrs.some((c) => PUBLIC_CIDRS.has(c));

const resourcePolicy = (name: string, description: string,
    validate: (args: ResourceValidationArgs, report: ReportViolation) => void): ResourceValidationPolicy =>
    ({ name, description, enforcementLevel: "mandatory", validateResource: validate });

const stackPolicy = (name: string, description: string,
    validate: (resources: PolicyResource[], report: ReportViolation) => void): StackValidationPolicy =>
    ({ name, description, enforcementLevel: "mandatory", validateStack: (args, report) => validate(args.resources, report) });

/** The bucket's companion resources of one type: those that depend on it (bucket ids are unknown in a preview). */
function companions(bucket: PolicyResource, resources: PolicyResource[], type: string): PolicyResource[] {
    return resources.filter((r) => r.type === type && r.dependencies.some((d) => d.urn === bucket.urn));
}

function parsePolicy(text: unknown): any | undefined {
    if (typeof text !== "string") {
        return undefined; // Unknown until apply in a preview; checked again on update.
    }
    try {
        return JSON.parse(text);
    } catch {
        return undefined;
    }
}

const asList = <T>(value: T | T[] | undefined): T[] => (value === undefined ? [] : Array.isArray(value) ? value : [value]);

export const policies: Array<ResourceValidationPolicy | StackValidationPolicy> = [
    resourcePolicy("security-group-public-ingress-ssh-only",
        "No ingress from 0.0.0.0/0 or ::/0 on any port but 22.",
        (args, report) => {
            for (const rule of ingressOf(args).filter(isPublic)) {
                if (!(rule.protocol === "tcp" && rule.fromPort === 22 && rule.toPort === 22)) {
                    report(`public ingress (${rule.cidrs.join(", ")}) on ${rule.protocol} ${rule.fromPort}-${rule.toPort}; only SSH (tcp 22) may be public`);
                }
            }
        }),
    resourcePolicy("security-group-no-public-ray-ports",
        "No public rule whose port range contains a Ray port (6379, 8265, 10001, 10002-19999).",
        (args, report) => {
            for (const rule of ingressOf(args).filter(isPublic)) {
                const hit = RAY_PORT_RANGES.find(([from, to]) => rule.fromPort <= to && from <= rule.toPort);
                if (hit) {
                    report(`public ingress ${rule.fromPort}-${rule.toPort} reaches Ray port(s) ${hit[0]}-${hit[1]}, which run code for anyone who connects`);
                }
            }
        }),
    resourcePolicy("instance-imdsv2-required", "Instances require IMDSv2 session tokens.", (args, report) => {
        if (args.type === INSTANCE && args.props.metadataOptions?.httpTokens !== "required") {
            report("metadataOptions.httpTokens must be \"required\" (IMDSv2)");
        }
    }),
    resourcePolicy("instance-root-volume-encrypted", "Instance root volumes are encrypted.", (args, report) => {
        if (args.type === INSTANCE && args.props.rootBlockDevice?.encrypted !== true) {
            report("rootBlockDevice.encrypted must be true");
        }
    }),
    resourcePolicy("instance-no-secrets-in-user-data",
        "User data carries no secret material: anything on the instance can read it.", (args, report) => {
            const userData = args.props.userData;
            if (args.type === INSTANCE && typeof userData === "string" &&
                /PRIVATE KEY|auth_token|RAY_AUTH_TOKEN|AKIA[0-9A-Z]{16}|aws_secret_access_key|password\s*[:=]/i.test(userData)) {
                report("userData contains secret material (a private key, token, password or access key)");
            }
        }),
    resourcePolicy("node-commands-carry-no-aws-keys",
        "The commands the stack runs on nodes carry no AWS access keys: jobs get credentials from the instance role " +
        "through IMDSv2, which refreshes them, and a key written on a node outlives its purpose.", (args, report) => {
            if (args.type !== "command:remote:Command") {
                return;
            }
            const text = [args.props.create, args.props.update, args.props.stdin, JSON.stringify(args.props.environment ?? {})]
                .filter((part) => typeof part === "string").join("\n");
            if (/\b(AKIA|ASIA)[0-9A-Z]{16}\b|AWS_SECRET_ACCESS_KEY\s*=|AWS_SESSION_TOKEN\s*=|aws_secret_access_key\s*=/.test(text)) {
                report("the command carries an AWS access key; nodes use their instance role's credentials (IMDSv2)");
            }
        }),
    resourcePolicy("instance-user-data-offline",
        "User data installs and downloads nothing: apt or a download at boot puts the network and the dpkg lock on " +
        "every boot's critical path, and fails on a node without internet.", (args, report) => {
            const userData = args.props.userData;
            if (args.type !== INSTANCE || typeof userData !== "string") {
                return;
            }
            const found = USER_DATA_NETWORK.filter(([pattern]) => pattern.test(userData)).map(([, what]) => what);
            if (found.length > 0) {
                report(`userData needs the network at boot: ${found.join(", ")}; install from the bootstrap instead`);
            }
        }),
    stackPolicy("private-workers-no-public-ip",
        "A worker outside the head's subnet is a private worker (workerNetwork private): it has no public IP, so " +
        "nothing on the internet can reach it except through the head.", (resources, report) => {
            const instances = resources.filter((r) => r.type === INSTANCE);
            const head = instances.find((r) => r.props.tags?.[GROUP_TAG] === HEAD_GROUP_VALUE);
            for (const worker of instances.filter((r) => r !== head)) {
                const subnet = worker.props.subnetId;
                const elsewhere = typeof subnet === "string" && typeof head?.props.subnetId === "string" && subnet !== head.props.subnetId;
                if (elsewhere && worker.props.associatePublicIpAddress !== false) {
                    report(`${worker.props.tags?.Name ?? worker.name} sits in a private subnet (${subnet}) but does not set ` +
                        "associatePublicIpAddress to false", worker.urn);
                }
            }
        }),
    resourcePolicy("image-builder-terminates-itself",
        "An image builder is terminated when it powers off: a finished build, a failed one and its deadline all power it " +
        "off, so none leaves an instance running.", (args, report) => {
            if (args.type === INSTANCE && args.props.tags?.[IMAGE_KEY_TAG] !== undefined &&
                args.props.instanceInitiatedShutdownBehavior !== "terminate") {
                report("an image builder must set instanceInitiatedShutdownBehavior to \"terminate\"");
            }
        }),
    resourcePolicy("image-never-public", "No image of the stack is shared with everyone: it holds the stack's scripts and venv.",
        (args, report) => {
            if (args.type === "aws:ec2/amiLaunchPermission:AmiLaunchPermission" && args.props.group === "all") {
                report("an AMI launch permission for group \"all\" makes the image public");
            }
        }),
    stackPolicy("private-workers-without-nat-boot-ray-images",
        "In a network the stack builds without a NAT gateway, private workers have no internet: each boots a Ray-ready " +
        "image the stack builds, unless every Ray install names a package index (--index-url) they reach inside the network.",
        (resources, report) => {
            if (!resources.some((r) => r.type === "aws:ec2/vpc:Vpc") || resources.some((r) => r.type === "aws:ec2/natGateway:NatGateway")) {
                return;
            }
            // A node command's text ends with its script's name and arguments (src/scripts.ts scriptCommand).
            const installArgs = resources.filter((r) => r.type === "command:remote:Command" && typeof r.props.create === "string")
                .map((r) => /' install-ray\.sh ([^\n]*)$/.exec(r.props.create)?.[1]).filter((a): a is string => a !== undefined);
            if (installArgs.length > 0 && installArgs.every((a) => / --index-url /.test(` ${a}`))) {
                return;
            }
            for (const worker of resources.filter((r) => r.type === INSTANCE && r.props.associatePublicIpAddress === false)) {
                if (!worker.dependencies.some((d) => d.type === IMAGE)) {
                    report(`${worker.props.tags?.Name ?? worker.name} is a private worker with no NAT gateway and no package index ` +
                        "inside the network, so it cannot install Ray: boot it from a Ray-ready image (rayImage)", worker.urn);
                }
            }
        }),
    stackPolicy("private-subnets-give-no-public-ip",
        "A subnet whose route table does not lead to an internet gateway gives no public IP on launch: Ray's autoscaler " +
        "launches private workers into such subnets by subnet alone (elastic zones), so the subnet itself must keep them " +
        "off the internet.", (resources, report) => {
            const dependsOn = (r: PolicyResource, type: string) => r.dependencies.filter((d) => d.type === type);
            const publicTables = new Set(resources
                .filter((r) => r.type === "aws:ec2/route:Route" && r.props.destinationCidrBlock === "0.0.0.0/0" &&
                    dependsOn(r, "aws:ec2/internetGateway:InternetGateway").length > 0)
                .flatMap((r) => dependsOn(r, "aws:ec2/routeTable:RouteTable").map((t) => t.urn)));
            const publicSubnets = new Set(resources
                .filter((r) => r.type === "aws:ec2/routeTableAssociation:RouteTableAssociation" &&
                    dependsOn(r, "aws:ec2/routeTable:RouteTable").some((t) => publicTables.has(t.urn)))
                .flatMap((r) => dependsOn(r, "aws:ec2/subnet:Subnet").map((s) => s.urn)));
            for (const subnet of resources.filter((r) => r.type === "aws:ec2/subnet:Subnet" && r.props.mapPublicIpOnLaunch === true)) {
                if (!publicSubnets.has(subnet.urn)) {
                    report(`${subnet.props.tags?.Name ?? subnet.name} gives public IPs on launch but does not route to an internet ` +
                        "gateway: set mapPublicIpOnLaunch to false", subnet.urn);
                }
            }
        }),
    stackPolicy("bucket-versioning-enabled", "Every bucket has versioning enabled.", (resources, report) => {
        for (const bucket of resources.filter((r) => r.type === BUCKET)) {
            const on = companions(bucket, resources, "aws:s3/bucketVersioning:BucketVersioning")
                .some((v) => v.props.versioningConfiguration?.status === "Enabled");
            if (!on) {
                report(`bucket ${bucket.name} has no BucketVersioning with status Enabled`);
            }
        }
    }),
    stackPolicy("bucket-server-side-encryption", "Every bucket encrypts objects at rest by default.", (resources, report) => {
        for (const bucket of resources.filter((r) => r.type === BUCKET)) {
            const on = companions(bucket, resources, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
                .some((c) => (c.props.rules ?? []).some((rule: any) =>
                    ["AES256", "aws:kms", "aws:kms:dsse"].includes(rule.applyServerSideEncryptionByDefault?.sseAlgorithm)));
            if (!on) {
                report(`bucket ${bucket.name} has no default server-side encryption`);
            }
        }
    }),
    stackPolicy("bucket-public-access-blocked", "Every bucket blocks all four kinds of public access.", (resources, report) => {
        const flags = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"];
        for (const bucket of resources.filter((r) => r.type === BUCKET)) {
            const on = companions(bucket, resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
                .some((b) => flags.every((flag) => b.props[flag] === true));
            if (!on) {
                report(`bucket ${bucket.name} does not set all of ${flags.join(", ")} to true`);
            }
        }
    }),
    stackPolicy("bucket-owner-enforced", "Every bucket disables ACLs with BucketOwnerEnforced ownership.", (resources, report) => {
        for (const bucket of resources.filter((r) => r.type === BUCKET)) {
            const on = companions(bucket, resources, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
                .some((o) => o.props.rule?.objectOwnership === "BucketOwnerEnforced");
            if (!on) {
                report(`bucket ${bucket.name} has no BucketOwnerEnforced ownership controls`);
            }
        }
    }),
    stackPolicy("bucket-tls-only", "Every bucket policy denies requests that do not use TLS.", (resources, report) => {
        for (const bucket of resources.filter((r) => r.type === BUCKET)) {
            const denies = companions(bucket, resources, "aws:s3/bucketPolicy:BucketPolicy").some((p) => {
                const doc = parsePolicy(p.props.policy);
                return doc === undefined && typeof p.props.policy !== "string" ||
                    asList(doc?.Statement).some((s: any) => s.Effect === "Deny" &&
                        String(s.Condition?.Bool?.["aws:SecureTransport"]) === "false");
            });
            if (!denies) {
                report(`bucket ${bucket.name} has no policy denying aws:SecureTransport = false`);
            }
        }
    }),
    resourcePolicy("iam-no-wildcard-action", "No IAM policy allows the \"*\" action.", (args, report) => {
        if (!IAM_POLICY_TYPES.has(args.type)) {
            return;
        }
        for (const statement of asList(parsePolicy(args.props.policy)?.Statement) as any[]) {
            if (statement.Effect === "Allow" && asList(statement.Action).some((a: string) => a === "*" || a === "s3:*")) {
                report(`statement ${statement.Sid ?? ""} allows ${JSON.stringify(statement.Action)}`);
            }
        }
    }),
    resourcePolicy("iam-instance-stop-terminate-tag-scoped",
        "Any grant that can stop or terminate instances is confined to this stack's instances by their tags.", (args, report) => {
            if (!IAM_POLICY_TYPES.has(args.type)) {
                return;
            }
            for (const statement of asList(parsePolicy(args.props.policy)?.Statement) as any[]) {
                const grants = asList(statement.Action).filter((a: string) => POWER_ACTIONS.some((power) => actionMatches(a, power)));
                if (statement.Effect !== "Allow" || grants.length === 0) {
                    continue;
                }
                const equals = statement.Condition?.StringEquals ?? {};
                const missing = [STACK_TAG, PROJECT_TAG].filter((tag) => {
                    const value = equals[`aws:ResourceTag/${tag}`];
                    return typeof value !== "string" || value === "" || /[*?]/.test(value);
                });
                if (missing.length > 0) {
                    report(`statement ${statement.Sid ?? ""} allows ${grants.join(", ")} without a StringEquals condition ` +
                        `on ${missing.map((tag) => `aws:ResourceTag/${tag}`).join(" and ")}: it could stop other stacks' instances`);
                }
            }
        }),
    resourcePolicy("iam-launch-scoped-to-stack",
        "A grant to launch instances, tag them or pass a role is confined to this stack: RunInstances only with the " +
        "stack's tags on the request and only from named images, CreateTags only at launch or on the stack's own " +
        "instances, PassRole only on a named role and only to EC2, CreateServiceLinkedRole only for a named service; " +
        "never ec2:* or iam:*.", (args, report) => {
            if (!IAM_POLICY_TYPES.has(args.type)) {
                return;
            }
            for (const statement of asList(parsePolicy(args.props.policy)?.Statement) as any[]) {
                if (statement.Effect !== "Allow") {
                    continue;
                }
                const actions = asList(statement.Action) as string[];
                const sid = `statement ${statement.Sid ?? ""}`;
                const broad = actions.filter((a) => /^(ec2|iam):\*$/.test(a));
                if (broad.length > 0) {
                    report(`${sid} allows ${broad.join(", ")}`);
                    continue;
                }
                const tagged = (prefix: string) => [STACK_TAG, PROJECT_TAG].every((tag) => {
                    const value = statement.Condition?.StringEquals?.[`${prefix}/${tag}`];
                    return typeof value === "string" && value !== "" && !/[*?]/.test(value);
                });
                const resources = asList(statement.Resource) as string[];
                const launches = actions.some((a) => actionMatches(a, "ec2:RunInstances"));
                if (launches && resources.some((r) => r === "*" || /:(instance|volume|spot-instances-request)\//.test(r)) && !tagged("aws:RequestTag")) {
                    report(`${sid} allows ec2:RunInstances without StringEquals conditions on aws:RequestTag/${PROJECT_TAG} ` +
                        `and aws:RequestTag/${STACK_TAG}: it could launch instances that belong to no stack`);
                }
                const anyImage = resources.filter((r) => /:image\/[^/]*[*?]/.test(r));
                if (launches && anyImage.length > 0) {
                    report(`${sid} allows ec2:RunInstances from ${anyImage.join(", ")}: it could boot any image in the region; ` +
                        "name each image the nodes boot");
                }
                if (actions.some((a) => actionMatches(a, "ec2:CreateTags")) &&
                    statement.Condition?.StringEquals?.["ec2:CreateAction"] !== "RunInstances" && !tagged("aws:ResourceTag")) {
                    report(`${sid} allows ec2:CreateTags beyond launch and this stack's instances: it could re-tag another ` +
                        "stack's instances into this one's grants");
                }
                const service = statement.Condition?.StringEquals?.["iam:AWSServiceName"];
                if (actions.some((a) => actionMatches(a, "iam:CreateServiceLinkedRole")) &&
                    (typeof service !== "string" || service === "" || /[*?]/.test(service))) {
                    report(`${sid} allows iam:CreateServiceLinkedRole without a StringEquals condition on iam:AWSServiceName ` +
                        "naming one service: it could create any service's role");
                }
                if (actions.some((a) => actionMatches(a, "iam:PassRole")) &&
                    (resources.some((r) => r.includes("*")) || statement.Condition?.StringEquals?.["iam:PassedToService"] !== "ec2.amazonaws.com")) {
                    report(`${sid} allows iam:PassRole on ${JSON.stringify(statement.Resource)} without naming one role and ` +
                        "iam:PassedToService ec2.amazonaws.com");
                }
            }
        }),
    stackPolicy("iam-s3-only-on-stack-buckets",
        "S3 actions apply only to this stack's buckets, never to \"*\".", (resources, report) => {
            const buckets = new Set(resources.filter((r) => r.type === BUCKET).map((b) => b.props.bucket).filter(Boolean));
            for (const resource of resources.filter((r) => IAM_POLICY_TYPES.has(r.type))) {
                for (const statement of asList(parsePolicy(resource.props.policy)?.Statement) as any[]) {
                    if (statement.Effect !== "Allow" || !asList(statement.Action).some((a: string) => a.startsWith("s3:") || a === "*")) {
                        continue;
                    }
                    for (const arn of asList(statement.Resource) as string[]) {
                        const bucket = /^arn:aws:s3:::([^/*]+)(\/\*)?$/.exec(arn)?.[1];
                        if (!bucket || !buckets.has(bucket)) {
                            report(`${resource.name} allows S3 actions on ${arn}, which is not one of this stack's buckets`);
                        }
                    }
                }
            }
        }),
    resourcePolicy("tags-stack-and-project", "Every taggable resource carries the stack and project tags.", (args, report) => {
        if (!args.type.startsWith("aws:") || UNTAGGABLE_TYPES.has(args.type)) {
            return;
        }
        for (const tag of [STACK_TAG, PROJECT_TAG]) {
            if (!args.props.tags?.[tag]) {
                report(`missing tag ${tag}`);
            }
        }
    }),
];
