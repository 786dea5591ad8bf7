"""Helpers of the site-agent tests: waiting for states, the stand-in launcher, path checks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.waiting import until, wait_for_states

import balsam_mq
from balsam_mq import ApplicationDefinition
from balsam_mq.domain import Actor, Change, Delivery, Job, JobState, Site
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store

S = JobState


async def all_in(store: Store, ids: Sequence[int], *states: JobState) -> bool:
    found = await store.jobs.states(list(ids))
    return len(found) == len(ids) and all(s in states for s in found.values())


@dataclass
class SiteEnv:
    site: Site
    dir: SiteDirectory

    @property
    def id(self) -> int:
        assert self.site.id is not None
        return self.site.id


# (state, job fields) or (state, job fields, state_data) the launcher reports
Outcome = Callable[
    [Job], tuple[JobState, dict[str, Any]] | tuple[JobState, dict[str, Any], dict[str, Any]]
]


@dataclass
class StandInLauncher:
    """Claims runnable jobs and reports ``outcome(job)`` (default: RUN_DONE)."""

    store: Store
    outcome: Outcome = field(default=lambda job: (S.RUN_DONE, {}))
    runs: list[int] = field(default_factory=list)

    async def handle(self, batch: Sequence[Delivery]) -> None:
        events = {e.job_id: e.to_state for d in batch for e in d.events()}
        claims = [
            Change(i, S(state), S.RUNNING, fields={"session_id": 1}, by=Actor.LAUNCHER)
            for i, state in events.items()
            if i is not None
        ]
        claimed = await self.store.jobs.transition(claims)
        jobs = await self.store.jobs.get_many(claimed.moved)
        self.runs += claimed.moved
        changes = []
        for job in jobs:
            to, fields, *state_data = self.outcome(job)
            assert job.id is not None
            changes.append(
                Change(job.id, S.RUNNING, to, *state_data, fields=fields, by=Actor.LAUNCHER)
            )
        await self.store.jobs.transition(changes)


class Lingering(ApplicationDefinition):
    """A hook that writes its process id to ``hook.pid`` in the workdir, then takes its time."""

    site = "polaris"
    command_template = "true"

    def preprocess(self) -> None:
        with open("hook.pid", "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)


async def hook_pid(pid_file: Path) -> int:
    """The process id a :class:`Lingering` hook wrote, once it runs."""
    await until(lambda: pid_file.exists() and pid_file.read_text() != "", 60)
    return int(pid_file.read_text())


async def bad_among_good(store: Store, app: Any, prefix: str) -> tuple[int, dict[str, Any]]:
    """Jobs ``<prefix>/ok1``, ``<prefix>/bad`` and ``<prefix>/ok2`` of ``app``, once the good
    ones finished and the bad one failed: its id and ``state_data``."""
    jobs = await balsam_mq.Job.objects.bulk_create(
        [app.submit(f"{prefix}/{name}", save=False) for name in ("ok1", "bad", "ok2")]
    )
    ok = [j.id for j in jobs if j.workdir != f"{prefix}/bad"]
    bad = next(j.id for j in jobs if j.workdir == f"{prefix}/bad")
    await wait_for_states(store, ok, [S.JOB_FINISHED], 60)
    await wait_for_states(store, [bad], [S.FAILED], 60)
    return bad, (await store.jobs.get(bad)).state_data
