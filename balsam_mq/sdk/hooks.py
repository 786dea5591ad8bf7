"""Running one lifecycle hook for one job, as the site agent will: build ``self.job``, call the
hook with job creation captured, and report what the hook changed.

Example (inside the agent's worker, for a batch of STAGED_IN jobs)::

    outcome = run_hook(app_class, job_document, "preprocess")
    change = outcome.change(expect=JobState.STAGED_IN, by=Actor.PREPROCESS)
    new_jobs = await prepare_jobs(outcome.created)  # apps resolved, inputs checked

    async def create(session):
        await store.jobs.create_many(new_jobs, session=session)

    await store.jobs.transition([change], extra=create)

Hooks run with the current working directory and output redirection the caller sets
up with :func:`in_workdir` (the job's workdir and its ``balsam.log``); a plain ``def``
hook runs as is, an ``async def`` hook is awaited (:func:`arun_hook`) or run on a fresh
event loop (:func:`run_hook`, for worker threads that have none).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from balsam_mq.domain import Actor, Change, Job as JobDocument, JobState, pipeline
from balsam_mq.errors import AppError
from balsam_mq.sdk.capture import capture
from balsam_mq.sdk.fields import field_updates
from balsam_mq.sdk.job import Job
from balsam_mq.sdk.persist import prepare_jobs

HOOKS = frozenset({*pipeline.HOOKS, "shell_preamble"})

__all__ = [
    "HOOKS",
    "HookOutcome",
    "HookSession",
    "app_for_job",
    "arun_hook",
    "prepare_jobs",
    "run_hook",
]


@dataclass
class HookOutcome:
    """What one hook call did to its job."""

    job: Job  # the ``self.job`` the hook saw, after the hook
    state: JobState | None  # the state the hook set, None if unchanged
    state_data: dict[str, Any]
    fields: dict[str, Any]  # other changed fields, as stored paths (``data``, ``resources.x``)
    created: list[Job] = field(default_factory=list)  # jobs the hook created (unsaved)
    returned: Any = None  # the hook's return value (shell_preamble's lines)

    @property
    def data(self) -> dict[str, Any] | None:
        """The job's new ``data`` if the hook changed it (in place or by assignment)."""
        data: dict[str, Any] | None = self.fields.get("data")
        return data

    def change(self, expect: JobState, by: Actor) -> Change | None:
        """The transition to commit, or ``None`` if the hook left the state alone
        (its field changes, if any, are in :attr:`fields`)."""
        if self.state is None:
            return None
        assert self.job.id is not None
        return Change(self.job.id, expect, self.state, self.state_data, self.fields, by=by)


LOG_FILE = "balsam.log"  # in a job's workdir: what its hooks printed


@contextlib.contextmanager
def in_workdir(workdir: Path) -> Iterator[None]:
    """Inside the block, the current directory is ``workdir`` (created if needed) and
    output appends to its ``balsam.log``: Python's ``sys.stdout`` and ``sys.stderr``, and
    this process's file descriptors 1 and 2 (child processes, C code). Where a hook runs.

    The process-wide state changes for the block: call hooks in it without awaiting."""
    workdir.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(workdir)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with (
        open(workdir / LOG_FILE, "ab", buffering=0) as log,
        open(workdir / LOG_FILE, "a", buffering=1) as text,
        contextlib.redirect_stdout(text),
        contextlib.redirect_stderr(text),
    ):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            os.chdir(previous)


def app_for_job(app_class: type, document: JobDocument) -> Any:
    """An instance of ``app_class`` whose ``self.job`` is the user's view of ``document``."""
    return app_class(Job._from_document(document))


class HookSession:
    """``self.job`` for one hook call, with job creation captured while inside the block.

    Example::

        with HookSession(app_class, document) as session:
            session.app.postprocess()
        outcome = session.changes()
    """

    def __init__(self, app_class: type, document: JobDocument) -> None:
        self.job = Job._from_document(document)
        self.app = app_class(self.job)
        self.created: list[Job] = []
        self._capture: Any = None

    def __enter__(self) -> HookSession:
        self._capture = capture()
        self._captured = self._capture.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.created = list(self._captured.jobs)
        self._capture.__exit__(*exc_info)

    def changes(self, returned: Any = None) -> HookOutcome:
        """What the hook changed on ``self.job``, in-place changes of ``data`` included."""
        changes = self.job._changes()
        state = changes.pop("state", None)
        # state_data belongs to the transition; without one it is an ordinary field change
        state_data = changes.pop("state_data", {}) if state is not None else {}
        return HookOutcome(
            job=self.job,
            state=state,
            state_data=dict(state_data),
            fields=field_updates(changes, self.job._label()),
            created=self.created,
            returned=returned,
        )


def _check_hook(app_class: type, hook: str) -> None:
    if hook not in HOOKS:
        raise AppError(f"App {app_class.__name__!r}: {hook!r} is not a hook ({sorted(HOOKS)})")


def run_hook(app_class: type, document: JobDocument, hook: str) -> HookOutcome:
    """Call ``hook`` of ``app_class`` for the job ``document`` (no event loop needed)."""
    _check_hook(app_class, hook)
    with HookSession(app_class, document) as session:
        returned = getattr(session.app, hook)()
        if inspect.isawaitable(returned):
            awaitable = returned

            async def finish() -> Any:
                return await awaitable

            returned = anyio.run(finish)
    return session.changes(returned)


async def arun_hook(app_class: type, document: JobDocument, hook: str) -> HookOutcome:
    """:func:`run_hook` inside an event loop: an ``async def`` hook is awaited."""
    _check_hook(app_class, hook)
    with HookSession(app_class, document) as session:
        returned = getattr(session.app, hook)()
        if inspect.isawaitable(returned):
            returned = await returned
    return session.changes(returned)
