"""Whether a job is for this launcher at all: its tags, its shape, the time left."""

from __future__ import annotations

from collections.abc import Mapping

from balsam_mq.domain import Resources
from balsam_mq.launcher.nodes import Demand, NodePool


def tags_match(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in wanted.items())


def unfit_reason(
    resources: Resources, pool: NodePool, *, job_mode: str, remaining_s: float
) -> str | None:
    """Why this launcher can never run a job of this shape, or None if it can.

    Serial mode runs single-node single-rank jobs; the allocation bounds nodes, cores
    and GPUs; a job's ``wall_time_min`` must fit in the time the launcher has left.
    """
    r = resources
    if job_mode == "serial" and (r.num_nodes > 1 or r.ranks_per_node > 1):
        return (
            f"serial mode runs single-node single-rank jobs; job asks {r.num_nodes} "
            f"node(s) x {r.ranks_per_node} rank(s)"
        )
    reason = pool.unfit_reason(Demand.of(r))
    if reason is not None:
        return reason
    if r.wall_time_min and r.wall_time_min * 60 > remaining_s:
        return f"needs {r.wall_time_min} min; launcher has {remaining_s / 60:.1f} min left"
    return None
