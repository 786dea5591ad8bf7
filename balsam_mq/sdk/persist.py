"""Job I/O: from user jobs to stored documents (apps resolved, inputs checked) and back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from balsam_mq.domain import Actor, App, Change, JobState
from balsam_mq.domain import Job as JobDocument
from balsam_mq.domain.appspec import app_label, check_job_inputs
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.errors import JobError, NotFound
from balsam_mq.sdk import refs
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.fields import field_updates

if TYPE_CHECKING:
    from balsam_mq.sdk.job import Job


def _id_spec(ids: list[int]) -> QuerySpec:
    return QuerySpec("jobs", (Condition("id", "in", ids),))


async def check_jobs(
    jobs: Sequence[Job], client: Client | None = None, *, sync: bool = True
) -> list[tuple[App, str]]:
    """The app of each unsaved job (resolved once per distinct reference) and its serialized
    parameters, after checking its parameters and transfers against the app. Apps given
    as classes are synced if this client has not (unless ``sync`` is false); nothing else
    is written."""
    client = client or await get_client()
    resolved: dict[tuple[Any, Any], tuple[App, str]] = {}
    sites: dict[int, str] = {}
    checked: list[tuple[App, str]] = []
    for job in jobs:
        if job.id is not None:
            raise JobError(f"Job {job.id} is already saved")
        key = (_hashable(job._app_ref), _hashable(job._site_ref))
        entry = resolved.get(key)
        if entry is None:
            app = await refs.resolve_job_app(
                client, job._app_ref, job._site_ref, job._label(), sync=sync
            )
            if app.site_id not in sites:
                sites[app.site_id] = await refs.site_name(client, app.site_id)
            entry = resolved[key] = (app, app_label(app.name, sites[app.site_id]))
        app, label = entry
        check_job_inputs(app, label, job._label(), job.parameters, job.transfers)
        checked.append((app, job._serialized_parameters()))
    return checked


async def prepare_jobs(jobs: Sequence[Job], client: Client | None = None) -> list[JobDocument]:
    """New job documents for jobs created inside hooks (captured, possibly shipped from a
    worker process with dill): apps resolved once per distinct reference, parameters and
    transfers checked. Nothing is written, and no app is synced: an app class stands for
    the app stored under its site and name."""
    checked = await check_jobs(jobs, client, sync=False)
    return [_document(job, app, text) for job, (app, text) in zip(jobs, checked, strict=True)]


def _document(job: Job, app: App, parameters: str) -> JobDocument:
    assert app.id is not None
    return job._to_document(app.id, app.site_id, parameters)


def _hashable(ref: Any) -> Any:
    try:
        hash(ref)
    except TypeError:
        return id(ref)
    return ref


CHUNK = 10_000  # jobs prepared and written together: bounds the client's memory


async def create_jobs(jobs: Iterable[Job]) -> None:
    """Create ``jobs`` in as few round trips as the store allows; each job object gets its
    id, state and app/site ids.

    Every job is checked before the first one is written, so bad inputs create nothing.
    The documents are then built and written :data:`CHUNK` jobs per transaction, which
    bounds the client's memory; should a later chunk fail to be written (data MongoDB
    cannot store), the earlier chunks stay created and their job objects have ids.
    """
    jobs = list(jobs)
    if len({id(j) for j in jobs}) != len(jobs):
        raise JobError("the same Job object appears twice in one bulk_create")
    client = await get_client()
    checked = await check_jobs(jobs, client)
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        documents = [
            _document(job, app, text)
            for job, (app, text) in zip(chunk, checked[start : start + CHUNK], strict=True)
        ]
        created = await client.backend.create_jobs(documents)
        for job, doc in zip(chunk, created, strict=True):
            job._load(doc)


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
