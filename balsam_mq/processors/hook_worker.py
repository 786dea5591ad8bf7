"""Inside a hook worker process: load the app class, run one hook in the job's workdir.

Runs with no event loop (an ``async def`` hook gets one of its own), the job's workdir
as current directory, and stdout/stderr appended to ``balsam.log`` there. It returns
what the hook changed; the agent commits it with the transition. Any exception in the
hook is caught here and reported with its traceback, never raised into the pool.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balsam_mq.domain import Job
from balsam_mq.domain.serialization import deserialize_app, serialize


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
    job_id: int
    state: str | None = None  # the state the hook set, if it set one
    state_data: dict[str, Any] = field(default_factory=dict)  # with a state change
    fields: dict[str, Any] = field(default_factory=dict)  # other changed fields (``data``...)
    created: str | None = None  # serialized list of the (unsaved SDK) jobs the hook created
    error: str | None = None  # traceback of an exception the hook raised


_classes: dict[tuple[int, str], type] = {}


def _app_class(request: HookRequest) -> type:
    key = (request.app_id, request.app_version)
    if key not in _classes:
        for old in [k for k in _classes if k[0] == request.app_id]:
            del _classes[old]
        _classes[key] = deserialize_app(request.serialized_class, what=f"App {request.app_name!r}")
    return _classes[key]


def run_hook(request: HookRequest) -> HookOutcome:
    from balsam_mq.sdk import hooks

    job = Job.from_doc(request.job)
    assert job.id is not None
    try:
        cls = _app_class(request)
        with hooks.in_workdir(Path(request.workdir)):
            outcome = hooks.run_hook(cls, job, request.hook)
        return HookOutcome(
            job_id=job.id,
            state=outcome.state.value if outcome.state is not None else None,
            state_data=outcome.state_data,
            fields=outcome.fields,
            created=serialize(outcome.created, what="jobs created by a hook")
            if outcome.created
            else None,
        )
    except Exception:
        return HookOutcome(job_id=job.id, error=traceback.format_exc()[-8000:])
