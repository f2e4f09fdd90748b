/**
 * `pulumi destroy` as the engine runs it over a rendered graph: every resource goes, dependents before what they
 * depend on, and a resource whose `deletedWith` names a resource that goes too is dropped from the state without
 * its provider's delete (https://www.pulumi.com/docs/iac/concepts/options/deletedwith/).
 */
import { RegisteredResource } from "../../tools/render";

export interface DestroyPlan {
    /** Resources whose delete runs, in an order the engine could run them. */
    deletes: RegisteredResource[];
    /** Resources dropped without a delete, because their deletedWith target goes too. */
    skipped: RegisteredResource[];
}

export function destroyPlan(resources: RegisteredResource[]): DestroyPlan {
    const going = new Set(resources.map((r) => r.urn));
    const remaining = [...resources];
    const order: RegisteredResource[] = [];
    // Delete a resource once nothing that is still there depends on it.
    while (remaining.length > 0) {
        const ready = remaining.filter((r) => !remaining.some((other) => other !== r &&
            (other.dependencies.includes(r.urn) || other.parent === r.urn)));
        if (ready.length === 0) {
            throw new Error("the resource graph has a cycle");
        }
        for (const r of ready) {
            remaining.splice(remaining.indexOf(r), 1);
            order.push(r);
        }
    }
    const skip = (r: RegisteredResource) => r.options.deletedWith !== "" && going.has(r.options.deletedWith);
    return { deletes: order.filter((r) => !skip(r)), skipped: order.filter(skip) };
}
