"""Ray autoscaler utilization scorer that falls back to another node type when EC2 refuses one.

Ray's v1 autoscaler records each node type whose launch failed (insufficient capacity, a spot or quota refusal) in
its availability tracker for 30 minutes, but its default scorer ignores that record, so it keeps asking for the
refused type while another type could serve the same demand (ray#20774). This scorer ranks every type EC2 has not
refused recently above any it has, and otherwise ranks as Ray's default does. The head's ray-autoscaler.service
selects it through RAY_AUTOSCALER_UTILIZATION_SCORER, Ray's own setting for this.
"""

from ray.autoscaler._private.resource_demand_scheduler import _resource_based_utilization_scorer


def prefer_available(node_resources, resources, node_type, *, node_availability_summary):
    score = _resource_based_utilization_scorer(
        node_resources, resources, node_availability_summary=node_availability_summary)
    if score is None:
        return None
    record = node_availability_summary.node_availabilities.get(node_type)
    return (record is None or record.is_available, *score)
