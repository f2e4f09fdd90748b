/** Runs the policy pack's policies against rendered resources, the way the policy engine hands them over. */
import { PolicyResource, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
import { policies } from "../../policy/policies";
import { RegisteredResource, reveal } from "../../tools/render";

export interface Violation {
    policy: string;
    resource?: string;
    message: string;
}

/**
 * A resource's props as the engine hands them to policies: the inputs after the provider's check, which adds
 * autonamed names such as a bucket's (the mock's state stands in for it), with secrets revealed.
 */
export function policyProps(r: RegisteredResource): Record<string, any> {
    return reveal({ ...r.outputs, ...r.inputs });
}

/** Policy resources with their dependencies linked. */
export function toPolicyResources(resources: RegisteredResource[]): PolicyResource[] {
    const byUrn = new Map<string, PolicyResource>();
    for (const r of resources) {
        byUrn.set(r.urn, {
            type: r.type, name: r.name, urn: r.urn, props: policyProps(r), dependencies: [], propertyDependencies: {},
            opts: { protect: r.options.protect, ignoreChanges: r.options.ignoreChanges, aliases: [], additionalSecretOutputs: r.options.additionalSecretOutputs, customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 } },
            isType: () => false,
            asType: () => undefined,
        } as unknown as PolicyResource);
    }
    for (const r of resources) {
        byUrn.get(r.urn)!.dependencies = r.dependencies.map((urn) => byUrn.get(urn)).filter((d): d is PolicyResource => !!d);
    }
    return [...byUrn.values()];
}

/** Every violation each policy reports for these resources. */
export async function checkPolicies(resources: RegisteredResource[]): Promise<Violation[]> {
    const policyResources = toPolicyResources(resources);
    const violations: Violation[] = [];
    for (const policy of policies) {
        if ("validateResource" in policy) {
            const validate = (policy as ResourceValidationPolicy).validateResource;
            for (const resource of policyResources) {
                for (const check of validate === undefined ? [] : Array.isArray(validate) ? validate : [validate]) {
                    await check({ ...resource, opts: resource.opts, getConfig: () => ({}) } as any,
                        (message: string) => violations.push({ policy: policy.name, resource: resource.name, message }));
                }
            }
        } else {
            await (policy as StackValidationPolicy).validateStack({ resources: policyResources, getConfig: () => ({}) } as any,
                (message: string, urn?: string) => violations.push({ policy: policy.name, resource: urn, message }));
        }
    }
    return violations;
}
