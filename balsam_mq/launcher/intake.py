"""What a batch of runnable-queue deliveries asks of a launcher, sorted before any claim.

A delivery announces jobs by their events (each moved a job into a runnable state).
:class:`Announced` gathers, per job, the first event that announced it; once the jobs
are read, :func:`triage` sorts them: dropped (moved on since that event: a later event
covers them), deferred back to the queue with a delay (a restart in its backoff, other
tags, a job this allocation can never run: *unfit*), or candidates to claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from balsam_mq.domain import RUNNABLE_STATES, App, Delivery, Job, JobState
from balsam_mq.domain.pipeline import retry_wait_s
from balsam_mq.launcher.config import LauncherConfig
from balsam_mq.launcher.fit import tags_match, unfit_reason
from balsam_mq.launcher.nodes import NodePool


@dataclass
class Announced:
    """The jobs a batch of deliveries announces as runnable, each by its first event."""

    event: dict[int, str] = field(default_factory=dict)  # job id -> the announcing event's id
    state: dict[int, str] = field(default_factory=dict)  # job id -> the state it announced
    message: dict[int, str] = field(default_factory=dict)  # job id -> the message carrying it
    app_ids: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, batch: Sequence[Delivery]) -> Announced:
        found = cls()
        for d in batch:
            for event in d.events():
                if event.job_id is None or event.to_state not in RUNNABLE_STATES:
                    continue
                if event.job_id in found.event:
                    continue
                found.event[event.job_id] = event.id or d.message_id
                found.state[event.job_id] = event.to_state
                found.message[event.job_id] = d.message_id
                if event.app_id is not None:
                    found.app_ids.add(event.app_id)
        return found


@dataclass
class Triage:
    """The announced jobs, sorted. ``deferrals``: event id -> seconds before the event
    is offered again; ``dropped``: how many are gone or moved on."""

    candidates: list[Job] = field(default_factory=list)
    deferrals: dict[str, float] = field(default_factory=dict)
    unfit: list[tuple[Job, str]] = field(default_factory=list)  # with why
    dropped: int = 0


def triage(
    announced: Announced,
    jobs: Sequence[Job],
    apps: Mapping[int | None, App],
    *,
    config: LauncherConfig,
    pool: NodePool,
    remaining_s: float,
    now: datetime,
) -> Triage:
    """Sort ``jobs`` (those of ``announced`` found in the store) for this launcher."""
    triaged = Triage(dropped=len(set(announced.event) - {j.id for j in jobs}))
    for job in jobs:
        assert job.id is not None
        if job.state != announced.state[job.id]:
            triaged.dropped += 1  # moved on since this event: a later one covers it
            continue
        event_id = announced.event[job.id]
        wait = backoff_left(job, apps.get(job.app_id), now)
        if wait > 0:  # a restart waits its backoff, then comes back here
            triaged.deferrals[event_id] = wait
            continue
        if not tags_match(job.tags, config.filter_tags):
            triaged.deferrals[event_id] = config.settings.other_tags_delay_s
            continue
        reason = unfit_reason(
            job.resources, pool, job_mode=config.job_mode, remaining_s=remaining_s
        )
        if reason is not None:
            triaged.deferrals[event_id] = config.settings.unfit_delay_s
            triaged.unfit.append((job, reason))
            continue
        triaged.candidates.append(job)
    return triaged


def backoff_left(job: Job, app: App | None, now: datetime) -> float:
    """Seconds a restarted job still waits before it may run (``pipeline.retry_wait_s``
    after it entered RESTART_READY); 0 for any other job."""
    if job.state is not JobState.RESTART_READY or not job.restarts:
        return 0.0
    backoff = App.model_fields["retry_backoff_s"].default if app is None else app.retry_backoff_s
    if job.retry_backoff_s is not None:
        backoff = job.retry_backoff_s
    due = job.last_update.timestamp() + retry_wait_s(job.restarts, backoff)
    return max(0.0, due - now.timestamp())
