"""Job I/O: from user jobs to stored documents (apps resolved, inputs checked) and back."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from balsam_mq.domain import Actor, App, Change, Job as JobDocument, JobState
from balsam_mq.domain.appspec import app_label, job_input_problem
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.errors import JobError, NotFound
from balsam_mq.sdk import refs
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.fields import field_updates

if TYPE_CHECKING:
    from balsam_mq.sdk.job import Job


def _id_spec(ids: list[int]) -> QuerySpec:
    return QuerySpec("jobs", (Condition("id", "in", ids),))


@dataclass
class _Checked:
    """New jobs once every check has passed: the app, serialized parameters and
    ``resources`` document of each (in lists: no object per job to collect)."""

    apps: list[App] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)

    def documents(self, jobs: Sequence[Job]) -> Iterator[dict[str, Any]]:
        """The stored documents of ``jobs`` (the jobs checked, in order), built one by one."""
        for job, app, parameters, resources in zip(
            jobs, self.apps, self.parameters, self.resources, strict=True
        ):
            assert app.id is not None
            yield job._new_document(app.id, app.site_id, parameters, resources)


async def _check_jobs(jobs: Sequence[Job], client: Client, *, sync: bool = True) -> _Checked:
    """Each unsaved job checked: its app resolved (once per distinct reference), its
    parameters and transfers checked against the app, its fields checked, its parameters
    serialized. Apps given as classes are synced if this client has not (unless ``sync``
    is false); nothing else is written."""
    resolved: dict[tuple[Any, Any], App] = {}
    # jobs with the same app, parameter names and transfers pass the same input checks
    passed: set[tuple[Any, ...]] = set()
    checked = _Checked()
    for job in jobs:
        if job.id is not None:
            raise JobError(f"Job {job.id} is already saved")
        key = (_hashable(job._app_ref), _hashable(job._site_ref))
        app = resolved.get(key)
        if app is None:
            app = resolved[key] = await refs.lookup_app(
                client, job._app_ref, job._site_ref, where=job._label(), sync=sync
            )
        resources = job._check_new()
        parameters = job.parameters
        inputs = (id(app), tuple(parameters), *job.transfers.items())
        if inputs not in passed:
            problem = job_input_problem(app, parameters, job.transfers)
            if problem is not None:
                label = app_label(app.name, await refs.site_name(client, app.site_id))
                raise JobError(f"{job._label()} of {label}: {problem}")
            passed.add(inputs)
        checked.resources.append(resources)
        checked.parameters.append(job._serialized_parameters())
        checked.apps.append(app)
    return checked


async def prepare_jobs(jobs: Sequence[Job], client: Client | None = None) -> list[JobDocument]:
    """New job documents for jobs created inside hooks (captured, possibly shipped from a
    worker process with dill): apps resolved once per distinct reference, parameters and
    transfers checked. Nothing is written, and no app is synced: an app class stands for
    the app stored under its site and name."""
    checked = await _check_jobs(jobs, client or await get_client(), sync=False)
    return [JobDocument.from_doc(doc) for doc in checked.documents(jobs)]


def _hashable(ref: Any) -> Any:
    try:
        hash(ref)
    except TypeError:
        return id(ref)
    return ref


async def create_jobs(jobs: Iterable[Job]) -> None:
    """Create ``jobs`` in as few round trips as the store allows; each job object gets its
    id, state and app/site ids.

    Every job is checked before the first one is written, so bad inputs create nothing.
    The documents are then built as the store writes them, a chunk of jobs per
    transaction (which bounds the client's memory); should a chunk fail to be written
    (data MongoDB cannot store), no chunk is sent after it, and those already sent stay
    created, their job objects with ids.
    """
    jobs = list(jobs)
    if len({id(j) for j in jobs}) != len(jobs):
        raise JobError("the same Job object appears twice in one bulk_create")
    client = await get_client()

    def created(offset: int, docs: list[dict[str, Any]]) -> None:
        for job, doc in zip(jobs[offset : offset + len(docs)], docs, strict=True):
            job._load_stored(doc)

    with _collector_paused():
        checked = await _check_jobs(jobs, client)
        apps = {app.id: app for app in checked.apps if app.id is not None}
        await client.backend.create_jobs(checked.documents(jobs), len(jobs), created, apps)


_pauses = 0  # bulk creations running in this process


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused inside the block (if it was running), until
    the last of concurrent pauses ends.

    A bulk creation keeps hundreds of thousands of acyclic containers (documents, events)
    alive until their chunk is written. The collector promotes them as they survive, and
    each full collection they trigger walks every object of the process: with 100,000
    jobs, a quarter of the client's time. Reference counting still frees them at once;
    cycles made meanwhile are collected once the pause ends."""
    global _pauses
    if not gc.isenabled() and not _pauses:  # paused by the program itself: leave it so
        yield
        return
    gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if not _pauses:
            gc.enable()


async def save_job(job: Job) -> None:
    if job.id is None:
        await create_jobs([job])
        return
    changes = job._changes()
    if not changes:
        return
    client = await get_client()
    label = job._label()
    state = changes.pop("state", None)
    state_data = changes.pop("state_data", {}) if state is not None else {}
    fields = field_updates(changes, label)
    if state is not None:
        expect = job._saved_state or JobState.CREATED
        result = await client.backend.transition_jobs(
            [Change(job.id, expect, state, dict(state_data), fields, by=Actor.USER)]
        )
        if not result.all_moved:
            found = result.unmoved[job.id]
            if found is None:
                raise NotFound(f"{label} does not exist")
            raise JobError(
                f"{label}: its state changed to {found.value} since it was loaded "
                f"(expected {expect.value}); refresh it and try again"
            )
    else:
        matched = await client.backend.update(_id_spec([job.id]), fields)
        if not matched:
            raise NotFound(f"{label} does not exist")
    await refresh_jobs([job], client)


async def refresh_jobs(jobs: Sequence[Job], client: Client | None = None) -> None:
    """Reload ``jobs`` in one query."""
    client = client or await get_client()
    ids = []
    for job in jobs:
        if job.id is None:
            raise JobError(f"{job._label()} is not saved")
        ids.append(job.id)
    found = {d.id: d for d in await client.backend.get_jobs(ids)}
    for job in jobs:
        doc = found.get(job.id)
        if doc is None:
            raise NotFound(f"Job {job.id} does not exist")
        job._load(doc)


async def delete_job(job: Job) -> None:
    assert job.id is not None
    client = await get_client()
    if not await client.backend.delete(_id_spec([job.id])):
        raise NotFound(f"Job {job.id} does not exist")
    job.id = None
    job._saved = None
