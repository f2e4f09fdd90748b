/**
 * How AWS authorizes the EC2 and IAM calls the emulator recorded (ec2_emulator.py --requests): each call becomes the
 * IAM requests EC2 evaluates for it (action, resource ARN, condition keys), which an IAM policy simulator
 * (@cloud-copilot/iam-simulate) decides against the caller's policies. A RunInstances call, for instance, is allowed
 * only if its instance, volume, subnet, groups, key pair, interface and image each are, its launch tags may be
 * created, and the instance profile's role may be passed to EC2.
 */
import { runSimulation } from "@cloud-copilot/iam-simulate";
import * as fs from "node:fs";
import * as path from "node:path";
import { byType, Rendered, reveal } from "../../tools/render";

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
}

/** One IAM request AWS evaluates for a call. */
export interface Authorization {
    action: string;
    resource: string;
    context: Record<string, string | string[]>;
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

/** PREFIX.1, PREFIX.2, … in the caller's order. */
function numbered(params: Record<string, string>, prefix: string): string[] {
    return Object.keys(params).filter((k) => new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.\\d+$`).test(k))
        .sort((a, b) => Number(a.split(".").pop()) - Number(b.split(".").pop())).map((k) => params[k]);
}

/** Key → value of PREFIX.N.Key / PREFIX.N.Value pairs. */
function tagPairs(params: Record<string, string>, prefix: string): Record<string, string> {
    const tags: Record<string, string> = {};
    for (const key of Object.keys(params)) {
        const m = new RegExp(`^${prefix.replace(/\./g, "\\.")}\\.(\\d+)\\.Key$`).exec(key);
        if (m) {
            tags[params[key]] = params[`${prefix}.${m[1]}.Value`] ?? "";
        }
    }
    return tags;
}

const requestTags = (tags: Record<string, string>) => ({
    ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])), "aws:TagKeys": Object.keys(tags),
});
const resourceTags = (tags: Record<string, string>) => Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]));

/** The IAM requests AWS evaluates for one call, as the EC2 and IAM service authorization references list them. */
export function authorizationsOf(call: ApiCall, facts: AccountFacts): Authorization[] {
    const p = call.params;
    const arn = (resource: string) => `arn:aws:ec2:${facts.region}:${facts.account}:${resource}`;
    const action = `${call.service ?? "ec2"}:${call.action}`;
    switch (action) {
        case "ec2:RunInstances": {
            // Tags by resource type, as the request's TagSpecifications give them.
            const specs = new Map<string, Record<string, string>>();
            for (const key of Object.keys(p).filter((k) => /^TagSpecification\.\d+\.ResourceType$/.test(k))) {
                specs.set(p[key], tagPairs(p, key.replace(/ResourceType$/, "Tag")));
            }
            const interfacePrefix = "NetworkInterface.1.";
            const subnet = p.SubnetId ?? p[`${interfacePrefix}SubnetId`];
            const groups = [...numbered(p, "SecurityGroupId"), ...numbered(p, `${interfacePrefix}SecurityGroupId`)];
            const launch: Authorization[] = [
                { action, resource: arn("instance/*"), context: requestTags(specs.get("instance") ?? {}) },
                { action, resource: arn("volume/*"), context: requestTags(specs.get("volume") ?? {}) },
                { action, resource: arn("network-interface/*"), context: {} },
                { action, resource: `arn:aws:ec2:${facts.region}::image/${p.ImageId}`, context: {} },
                ...(subnet ? [{ action, resource: arn(`subnet/${subnet}`), context: {} }] : []),
                ...groups.map((g) => ({ action, resource: arn(`security-group/${g}`), context: {} })),
                ...(p.KeyName ? [{ action, resource: arn(`key-pair/${p.KeyName}`), context: {} }] : []),
            ];
            const tagging = [...specs.entries()].map(([type, tags]) => ({ action: "ec2:CreateTags", resource: arn(`${type}/*`),
                context: { ...requestTags(tags), "ec2:CreateAction": "RunInstances" } }));
            const profile = p["IamInstanceProfile.Arn"];
            const pass = profile ? [{ action: "iam:PassRole", resource: facts.roleOfProfile(profile),
                context: { "iam:PassedToService": "ec2.amazonaws.com" } }] : [];
            return [...launch, ...tagging, ...pass];
        }
        case "ec2:CreateTags":
            return numbered(p, "ResourceId").map((id) => ({ action, resource: arn(`instance/${id}`),
                context: { ...resourceTags(facts.tagsOf(id)), ...requestTags(tagPairs(p, "Tag")) } }));
        case "ec2:TerminateInstances":
        case "ec2:StopInstances":
        case "ec2:StartInstances":
            return numbered(p, "InstanceId").map((id) => ({ action, resource: arn(`instance/${id}`), context: resourceTags(facts.tagsOf(id)) }));
        default:
            // Describe* and the like have no resource-level permissions: AWS evaluates them on "*".
            return [{ action, resource: "*", context: {} }];
    }
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
