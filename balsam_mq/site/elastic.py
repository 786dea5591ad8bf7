"""The elastic queue: batch jobs sized to the site's runnable backlog, none when it is empty.

Each step measures the backlog in nodes (every runnable job counts ``num_nodes /
node_packing_count``; only jobs matching ``filter_tags``), subtracts what elastic batch
jobs waiting in the queue will bring, and submits one more batch job for the rest
(between ``min_nodes`` and ``max_nodes``, ``max_wall_time_min`` long) while fewer than
``max_queued`` are waiting. When the backlog is empty it submits nothing and deletes
its batch jobs still waiting in the queue; running ones end on their launcher's idle
timeout.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from balsam_mq.domain import RUNNABLE_STATES, BatchJob, BatchJobState, utcnow
from balsam_mq.errors import invalid_settings
from balsam_mq.store import Store
from balsam_mq.store.schema import JOBS

log = logging.getLogger(__name__)
B = BatchJobState
M = TypeVar("M", bound=BaseModel)


class ElasticQueueSettings(BaseModel):
    """The ``elastic_queue:`` section of a site's settings.yml.

    Example::

        elastic_queue:
          enabled: true
          project: datascience
          queue: debug
          min_nodes: 1
          max_nodes: 8
          max_queued: 2
          max_wall_time_min: 60
          idle_timeout_s: 120
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=False, description="Submit batch jobs sized to the runnable backlog."
    )
    project: str = Field(default="", description="The project (account) charged for them.")
    queue: str = Field(default="", description="The scheduler queue they are submitted to.")
    job_mode: Literal["serial", "mpi"] = Field(
        default="mpi", description="Their launchers' job mode."
    )
    filter_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Only jobs with these tags count in the backlog, and only they run.",
    )
    min_nodes: int = Field(default=1, ge=1, description="Nodes of the smallest batch job.")
    max_nodes: int = Field(default=1, ge=1, description="Nodes of the largest batch job.")
    max_queued: int = Field(
        default=1, ge=1, description="Elastic batch jobs waiting in the queue at once."
    )
    max_wall_time_min: int = Field(default=60, ge=1, description="Wall time of each, in minutes.")
    idle_timeout_s: float = Field(
        default=60.0, gt=0, description="Their launchers exit after this many idle seconds."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ElasticQueueSettings:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes {self.min_nodes} > max_nodes {self.max_nodes}")
        return self


def parse_section(model: type[M], name: str, raw: dict[str, Any]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid_settings("settings.yml", exc, key=lambda key: f"{name}.{key}") from None


class ElasticQueue:
    def __init__(self, store: Store, site_id: int, settings: ElasticQueueSettings) -> None:
        self.store = store
        self.site_id = site_id
        self.settings = settings

    async def backlog_nodes(self) -> float:
        """Nodes the runnable jobs (matching the filter tags) would fill."""
        match: dict[str, Any] = {
            "site_id": self.site_id,
            "state": {"$in": [s.value for s in RUNNABLE_STATES]},
        }
        for key, value in self.settings.filter_tags.items():
            match[f"tags.{key}"] = value
        pipeline = [
            {"$match": match},
            {
                "$group": {
                    "_id": None,
                    "nodes": {
                        "$sum": {
                            "$divide": [
                                {"$ifNull": ["$resources.num_nodes", 1]},
                                {"$ifNull": ["$resources.node_packing_count", 1]},
                            ]
                        }
                    },
                }
            },
        ]
        cursor = await self.store.db[JOBS].aggregate(pipeline)
        rows = [row async for row in cursor]
        return float(rows[0]["nodes"]) if rows else 0.0

    async def mine(self, states: list[BatchJobState]) -> list[BatchJob]:
        jobs = await self.store.batch_jobs.for_site(self.site_id, states)
        return [b for b in jobs if b.status_info.get("elastic")]

    async def step(self) -> BatchJob | None:
        """One decision; returns the batch job it created, if any."""
        s = self.settings
        backlog = await self.backlog_nodes()
        waiting = await self.mine([B.PENDING_SUBMISSION, B.QUEUED])
        if backlog <= 0:
            await self._withdraw(waiting)
            return None
        uncovered = backlog - sum(b.num_nodes for b in waiting)
        if uncovered <= 0 or len(waiting) >= s.max_queued:
            return None
        nodes = min(max(math.ceil(uncovered - 1e-9), s.min_nodes), s.max_nodes)
        created = await self.store.batch_jobs.create(
            BatchJob(
                site_id=self.site_id,
                project=s.project,
                queue=s.queue,
                num_nodes=nodes,
                wall_time_min=s.max_wall_time_min,
                job_mode=s.job_mode,
                filter_tags=s.filter_tags,
                status_info={"elastic": True, "idle_timeout_s": s.idle_timeout_s},
            )
        )
        log.info(
            "elastic queue: backlog %.1f node(s); submitting BatchJob %s of %d node(s)",
            backlog,
            created.id,
            nodes,
        )
        return created

    async def _withdraw(self, waiting: list[BatchJob]) -> None:
        for b in waiting:
            assert b.id is not None
            if b.state is B.PENDING_SUBMISSION:
                await self.store.batch_jobs.set_state(
                    [b.id], B.FINISHED, fields={"end_time": utcnow()}, expect=[B.PENDING_SUBMISSION]
                )
            else:
                await self.store.batch_jobs.set_state([b.id], B.PENDING_DELETION, expect=[B.QUEUED])
            log.info("elastic queue: backlog empty; withdrawing BatchJob %s", b.id)
