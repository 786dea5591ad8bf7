"""Running one app hook for one job — the one way hooks run — and what it did, as the agent
commits it.

In a hook worker process, :func:`run_hook` loads the app class, makes the job's workdir
the current directory with stdout/stderr appended to its ``balsam.log``
(``site.workdir.in_workdir``) and calls the hook through :func:`call_hook`: ``self.job``
is the user's view of the stored job, job creation is captured (nothing is written from
the worker), an ``async def`` hook runs on a loop of its own. It returns a
:class:`HookOutcome`; the agent turns it into the transition and the new jobs it commits
in one transaction. An exception in the hook is caught and reported with its traceback,
never raised into the pool; nor is a ``sys.exit()`` the hook calls.
"""

from __future__ import annotations

import inspect
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from balsam_mq.domain import Actor, Change, Job, JobState, pipeline
from balsam_mq.domain.serialization import deserialize, deserialize_app, serialize
from balsam_mq.errors import AppError
from balsam_mq.orphans import die_with_parent
from balsam_mq.sdk.app import app_for_job
from balsam_mq.sdk.capture import capture
from balsam_mq.sdk.fields import field_problem, field_updates
from balsam_mq.site.workdir import in_workdir

HOOKS = frozenset(pipeline.HOOKS)


@dataclass(frozen=True)
class HookRequest:
    app_id: int
    app_version: str
    app_name: str
    serialized_class: str
    hook: str
    job: dict[str, Any]  # the domain Job, as a document
    workdir: str


@dataclass(frozen=True)
class HookOutcome:
    """What one hook call did to its job."""

    job_id: int
    state: JobState | None = None  # the state the hook set, if it changed it
    state_data: dict[str, Any] = field(default_factory=dict)  # with a state change
    fields: dict[str, Any] = field(default_factory=dict)  # other changed fields, stored paths
    created: str | None = None  # the (unsaved SDK) jobs the hook created, serialized
    error: str | None = None  # why the hook did not finish: its job fails with this reason
    traceback: str | None = None  # of what the hook raised (or its sys.exit)

    def created_jobs(self) -> list[Any]:
        """The jobs the hook created, unsaved (the agent creates them with its transition)."""
        if self.created is None:
            return []
        jobs: list[Any] = deserialize(self.created, what="jobs created by a hook")
        return jobs

    def change(self, expect: JobState, by: Actor) -> Change | None:
        """The transition to commit, or ``None`` if the hook left the state alone
        (its field changes, if any, are in :attr:`fields`)."""
        if self.state is None:
            return None
        return Change(self.job_id, expect, self.state, self.state_data, self.fields, by=by)


def call_hook(app_class: type, document: Job, hook: str) -> HookOutcome:
    """Call ``hook`` of ``app_class`` for the job ``document`` here (no event loop needed),
    with job creation captured; what it changed on ``self.job``, ``data`` changed in place
    included. An exception in the hook propagates.

    A hook that sets a state without setting ``state_data`` records nothing with it,
    except when it takes its step's default move (``domain.pipeline.DEFAULT_MOVES``):
    then the move's own ``state_data`` is recorded, as when the app leaves the step to
    the agent — e.g. ``handle_error`` → FAILED keeps the launcher's ``return_code`` and
    ``output_tail``.

    A value the hook left on its job that cannot be stored (a set in ``data``, ``data``
    over its size limit: ``sdk.fields.field_problem``) makes an error outcome naming the
    hook, the field and why: its job fails, not the agent's commit of the whole batch."""
    if hook not in HOOKS:
        raise AppError(f"App {app_class.__name__!r}: {hook!r} is not a hook ({sorted(HOOKS)})")
    assert document.id is not None
    app = app_for_job(app_class, document)
    with capture() as captured:
        returned = getattr(app, hook)()
        if inspect.isawaitable(returned):
            awaitable = returned

            async def finish() -> Any:
                return await awaitable

            anyio.run(finish)
    job = app.job
    changes = job._changes()
    state = changes.pop("state", None)
    # state_data belongs to the transition; without one it is an ordinary field change
    state_data: dict[str, Any] = {}
    if state is not None:
        if "state_data" in changes:
            state_data = changes.pop("state_data")
        else:  # the default move's state_data, if the hook took it (diagnostics kept)
            move = pipeline.DEFAULT_MOVES[pipeline.STATE_OF_HOOK[hook]]
            state_data = move.state_data(job.state_data) if state is move.to else {}
    for name, value in (*changes.items(), ("state_data", state_data)):
        problem = None if name == "parameters" else field_problem(name, value)
        if problem is not None:
            reason = f"{hook} set {name} to a value that cannot be stored: {problem}"
            return HookOutcome(document.id, error=reason)
    return HookOutcome(
        job_id=document.id,
        state=state,
        state_data=dict(state_data),
        fields=field_updates(changes, job._label()),
        created=serialize(captured.jobs, what="jobs created by a hook") if captured.jobs else None,
    )


_classes: dict[tuple[int, str], type] = {}


def _app_class(request: HookRequest) -> type:
    key = (request.app_id, request.app_version)
    if key not in _classes:
        for old in [k for k in _classes if k[0] == request.app_id]:
            del _classes[old]
        _classes[key] = deserialize_app(request.serialized_class, what=f"App {request.app_name!r}")
    return _classes[key]


def start_worker() -> None:
    """A hook worker's initializer: it ends with the agent (even one SIGKILLed), and
    Ctrl-C in the agent's terminal does not interrupt its hooks (the agent drains), nor
    does a SIGHUP (the agent reloads its settings; its terminal closing ends nothing)."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def run_hook(request: HookRequest) -> HookOutcome:
    """In a worker process: the hook of ``request``, run in its job's workdir."""
    job = Job.from_doc(request.job)
    assert job.id is not None
    try:
        cls = _app_class(request)
        with in_workdir(Path(request.workdir)):
            return call_hook(cls, job, request.hook)
    except SystemExit as exc:  # the hook's own exit, not the worker's: its job fails
        reason = f"{request.hook} called sys.exit({exc.code!r})"
        return HookOutcome(job.id, error=reason, traceback=traceback.format_exc()[-8000:])
    except KeyboardInterrupt:  # the hook's own: workers ignore the terminal's Ctrl-C
        reason = f"{request.hook} raised KeyboardInterrupt"
        return HookOutcome(job.id, error=reason, traceback=traceback.format_exc()[-8000:])
    except Exception:
        reason = f"{request.hook} raised"
        return HookOutcome(job.id, error=reason, traceback=traceback.format_exc()[-8000:])
