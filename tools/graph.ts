/** Compares and describes resource graphs rendered under mocks: what a config change would do, without AWS. */
import { argumentOf, mockImageId, RegisteredResource, Rendered, reveal } from "./render";

export interface ChangedResource {
    name: string;
    type: string;
    /** Top-level inputs whose values differ. */
    inputs: string[];
    /** Whether the set of dependencies differs. */
    dependencies: boolean;
    /** Changed inputs the provider cannot update in place: any of them replaces the resource. */
    replacedBy: string[];
}

/**
 * Inputs the AWS and command providers cannot change in place (ForceNew in their schemas), for the types this
 * program creates: a change to any of them deletes the resource and creates it again.
 */
export const REPLACE_ON: Record<string, string[]> = {
    "aws:ec2/instance:Instance": ["ami", "availabilityZone", "subnetId", "associatePublicIpAddress", "keyName", "privateIp",
        "instanceMarketOptions", "placementGroup", "tenancy"],
    "aws:ec2/subnet:Subnet": ["vpcId", "cidrBlock", "availabilityZone"],
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/securityGroup:SecurityGroup": ["vpcId", "name", "description"],
    "aws:ec2/routeTable:RouteTable": ["vpcId"],
    "aws:ec2/route:Route": ["routeTableId", "destinationCidrBlock"],
    "aws:ec2/routeTableAssociation:RouteTableAssociation": ["subnetId"],
    "aws:ec2/natGateway:NatGateway": ["allocationId", "subnetId", "connectivityType"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["vpcId", "serviceName", "vpcEndpointType"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ["securityGroupId"],
    "aws:ec2/amiFromInstance:AmiFromInstance": ["name", "sourceInstanceId", "snapshotWithoutReboot"],
    "command:remote:Command": ["triggers"],
};

export interface GraphDiff {
    added: string[];
    removed: string[];
    changed: ChangedResource[];
}

const stable = (value: unknown) => JSON.stringify(value);

/** What turning graph `before` into graph `after` adds, removes and changes, by resource URN. */
export function diffGraphs(before: RegisteredResource[], after: RegisteredResource[]): GraphDiff {
    const a = new Map(before.map((r) => [r.urn, r]));
    const b = new Map(after.map((r) => [r.urn, r]));
    const changed: ChangedResource[] = [];
    for (const [urn, old] of a) {
        const next = b.get(urn);
        if (!next) {
            continue;
        }
        const keys = [...new Set([...Object.keys(old.inputs), ...Object.keys(next.inputs)])].sort();
        const inputs = keys.filter((key) => stable(old.inputs[key]) !== stable(next.inputs[key]));
        const dependencies = stable(old.dependencies) !== stable(next.dependencies);
        if (inputs.length > 0 || dependencies) {
            const ignored = new Set(next.options.ignoreChanges);
            const replacedBy = inputs.filter((key) => (REPLACE_ON[old.type] ?? []).includes(key) && !ignored.has(key));
            changed.push({ name: old.name, type: old.type, inputs, dependencies, replacedBy });
        }
    }
    return {
        added: after.filter((r) => !a.has(r.urn)).map((r) => r.name),
        removed: before.filter((r) => !b.has(r.urn)).map((r) => r.name),
        changed,
    };
}

/** The properties worth showing for each resource type in a plain plan. */
const KEY_PROPERTIES: Record<string, string[]> = {
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["cidrBlock", "availabilityZone"],
    "aws:ec2/route:Route": ["destinationCidrBlock"],
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ["ipProtocol", "fromPort", "toPort", "cidrIpv4"],
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ["ipProtocol", "cidrIpv4"],
    "aws:ec2/instance:Instance": ["instanceType", "ami", "instanceMarketOptions", "associatePublicIpAddress"],
    "aws:ec2/natGateway:NatGateway": ["connectivityType"],
    "aws:ec2/vpcEndpoint:VpcEndpoint": ["vpcEndpointType", "serviceName"],
    "aws:ec2transitgateway/instanceState:InstanceState": ["state"],
    "aws:s3/bucket:Bucket": ["forceDestroy"],
    "tls:index/privateKey:PrivateKey": ["algorithm"],
};

/** The script and arguments of a bootstrap command, without the script's body. */
export function commandSummary(create: string): string {
    // An argument may be quoted and span lines (a file's content): it is shown on one line.
    const match = /' ([a-z-]+\.sh)((?: (?:'(?:[^']|'\\'')*'|[^ ']+))*)$/.exec(create);
    return match ? `${match[1]}${match[2].replace(/\s*\n\s*/g, " ")}` : create.slice(0, 80);
}

/** Commands in an order the engine could run them: each after everything it depends on. */
export function commandOrder(resources: RegisteredResource[]): RegisteredResource[][] {
    const commands = resources.filter((r) => r.type === "command:remote:Command");
    const urns = new Set(commands.map((c) => c.urn));
    const done = new Set<string>();
    const waves: RegisteredResource[][] = [];
    while (done.size < commands.length) {
        const wave = commands.filter((c) => !done.has(c.urn) &&
            c.dependencies.every((d) => !urns.has(d) || done.has(d)));
        if (wave.length === 0) {
            throw new Error("the command graph has a cycle");
        }
        wave.forEach((c) => done.add(c.urn));
        waves.push(wave);
    }
    return waves;
}

/** A plain-text plan: every resource with its key properties, then the bootstrap commands in waves. */
export function planText(resources: RegisteredResource[], reveal: (value: any) => any): string {
    const lines = [`${resources.length} resources`];
    for (const r of resources) {
        const props = (KEY_PROPERTIES[r.type] ?? []).filter((k) => r.inputs[k] !== undefined)
            .map((k) => `${k}=${stable(r.inputs[k])}`);
        const name = r.inputs.tags?.Name && r.type === "aws:ec2/instance:Instance" ? ` (${r.inputs.tags.Name})` : "";
        lines.push(`  ${r.type} ${r.name}${name}${props.length ? `  ${props.join(" ")}` : ""}`);
    }
    lines.push("", "bootstrap commands (each wave runs in parallel, after the one before):");
    commandOrder(resources).forEach((wave, i) => {
        for (const c of wave) {
            const inputs = reveal(c.inputs);
            lines.push(`  ${i + 1}. ${c.name} @ ${inputs.connection.host}: ${commandSummary(inputs.create)}`);
        }
    });
    return lines.join("\n");
}

/** A plain-text diff. */
export function diffText(diff: GraphDiff): string {
    const replaced = diff.changed.filter((c) => c.replacedBy.length > 0);
    const lines = [`+ ${diff.added.length} to add, - ${diff.removed.length} to remove, ~ ${diff.changed.length} to change ` +
        `(${replaced.length} of them replaced)`];
    diff.added.forEach((name) => lines.push(`  + ${name}`));
    diff.removed.forEach((name) => lines.push(`  - ${name}`));
    for (const c of diff.changed) {
        const what = [...c.inputs, ...(c.dependencies ? ["(dependencies)"] : [])].join(", ");
        lines.push(c.replacedBy.length > 0
            ? `  +- ${c.name}: REPLACED, since ${c.replacedBy.join(", ")} cannot change in place (changes: ${what})`
            : `  ~ ${c.name}: ${what}`);
    }
    return lines.join("\n");
}

/**
 * The AMI each node type boots, the head's and each group's, elastic ones from the autoscaler's config: a Ray-ready
 * image the stack builds is named by its image name.
 */
export function imagesByNodeType(rendered: Rendered): Record<string, string> {
    const built = new Map(rendered.resources.filter((r) => r.type === "aws:ec2/amiFromInstance:AmiFromInstance")
        .map((r) => [mockImageId(r.inputs.name), `${r.inputs.name} (Ray-ready)`]));
    const named = (id: string) => built.get(id) ?? id;
    const types: Record<string, string> = {};
    for (const r of rendered.resources.filter((x) => x.type === "aws:ec2/instance:Instance" && x.inputs.tags?.["ray-cluster:group"])) {
        types[r.inputs.tags["ray-cluster:group"]] = named(r.inputs.ami);
    }
    const autoscaler = rendered.resources.find((r) => r.type === "command:remote:Command" && r.name.endsWith("-autoscaler"));
    if (autoscaler) {
        const config = JSON.parse(argumentOf(reveal(autoscaler.inputs).create, "--config"));
        for (const [type, spec] of Object.entries(config.available_node_types as Record<string, { node_config: { ImageId?: string } }>)) {
            if (spec.node_config.ImageId) {
                types[`${type} (elastic)`] = named(spec.node_config.ImageId);
            }
        }
    }
    return types;
}
