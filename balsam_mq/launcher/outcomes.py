"""A run in progress and the transition its end becomes: RUN_DONE, RUN_ERROR or RUN_TIMEOUT."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from balsam_mq.domain import Actor, App, Change, Job, JobState
from balsam_mq.launcher.nodes import Placement
from balsam_mq.launcher.prepare import read_result
from balsam_mq.launcher.runs import OUTPUT_FILE, Launch, output_tail

S = JobState


@dataclass
class ActiveRun:
    job: Job
    placement: Placement
    launch: Launch
    workdir: Path
    python: bool  # a run() app: its result file is read at the end
    app: App | None = None  # the version of its app it runs with
    timeout_reason: str | None = None  # set when the launcher kills it
    moved_on: str | None = None  # set when its job left RUNNING under it: killed, no outcome
    started: float = field(default_factory=time.monotonic)
    # its job's fields that a transition decides on, as its claim left them
    known: Mapping[str, Any] | None = None

    @property
    def job_id(self) -> int:
        assert self.job.id is not None
        return self.job.id


def outcome(run: ActiveRun, code: int | None, error: str | None, *, tail_chars: int) -> Change:
    """The transition that ends ``run``, with its return code and result or exception.

    Killed by the launcher → RUN_TIMEOUT (with the reason); exit 0 → RUN_DONE; anything
    else → RUN_ERROR with the return code and the tail of job.out in ``state_data``.
    """
    fields: dict[str, Any] = {"return_code": code}
    if run.python:
        fields.update(run.launch.payload or read_result(run.workdir))
    # on the run's own claim, as the claim left the job
    end = partial(
        Change,
        run.job_id,
        S.RUNNING,
        by=Actor.LAUNCHER,
        held_by=run.job.session_id,
        known=run.known,
    )
    if run.timeout_reason is not None:
        elapsed = round(time.monotonic() - run.started, 3)
        return end(S.RUN_TIMEOUT, {"reason": run.timeout_reason, "elapsed_s": elapsed}, fields)
    if code == 0 and error is None:
        return end(S.RUN_DONE, {}, fields)
    tail = output_tail(run.workdir / OUTPUT_FILE, tail_chars)
    data: dict[str, Any] = {"return_code": code, "output_tail": tail}
    if error is not None:
        data["error"] = error
    return end(S.RUN_ERROR, data, fields)


def launch_failure(job: Job, exc: Exception) -> Change:
    """A claimed job that could not be started (bad template, missing app...)."""
    assert job.id is not None
    return Change(
        job.id,
        S.RUNNING,
        S.RUN_ERROR,
        {"error": str(exc)},
        by=Actor.LAUNCHER,
        held_by=job.session_id,
    )
