"""Job I/O in documents: new jobs checked and created (apps resolved, inputs checked), changes
saved, documents read and deleted. Views of jobs are made elsewhere (``view``)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from balsam_mq.domain import Actor, App, Change, Job as JobDocument, JobState
from balsam_mq.domain.appspec import app_label, job_input_problem
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.errors import JobError, NotFound
from balsam_mq.sdk import refs, steer
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.fields import field_updates
from balsam_mq.sdk.view import JobView, NewJob
from balsam_mq.sdk.workdirs import DataDirectory


def _id_spec(ids: list[int]) -> QuerySpec:
    return QuerySpec("jobs", (Condition("id", "in", ids),))


async def _check(
    new: Sequence[NewJob], client: Client, *, sync: bool = True, on_disk: bool = True
) -> list[App]:
    """The app of each new job (resolved once per distinct reference), its parameters and
    transfers checked against the app, and (if ``on_disk``) its workdir against its
    site's ``data/`` directory where that is on this machine (``sdk.workdirs``). Apps
    given as classes are synced if this client has not (unless ``sync`` is false);
    nothing else is written."""
    resolved: dict[tuple[Any, Any], App] = {}
    # jobs with the same app, parameter names and transfers pass the same input checks
    passed: set[tuple[Any, ...]] = set()
    data_dirs: dict[int, DataDirectory | None] = {}
    apps = []
    for job in new:
        key = (_hashable(job.app_ref), _hashable(job.site_ref))
        app = resolved.get(key)
        if app is None:
            app = resolved[key] = await refs.lookup_app(
                client, job.app_ref, job.site_ref, where=job.label, sync=sync
            )
        inputs = (id(app), tuple(job.parameters), *job.transfers.items())
        if inputs not in passed:
            problem = job_input_problem(app, job.parameters, job.transfers)
            if problem is not None:
                label = app_label(app.name, await refs.site_name(client, app.site_id))
                raise JobError(f"{job.label} of {label}: {problem}")
            passed.add(inputs)
        if not on_disk:
            data_dir = None
        elif app.site_id in data_dirs:
            data_dir = data_dirs[app.site_id]
        else:
            data_dir = data_dirs[app.site_id] = await _data_dir(client, app.site_id)
        if data_dir is not None:
            escape = data_dir.escape(job.workdir)
            if escape is not None:
                raise JobError(f"{job.label}: {escape}")
        apps.append(app)
    return apps


async def _data_dir(client: Client, site_id: int) -> DataDirectory | None:
    return DataDirectory.on_this_machine(await refs.site_path(client, site_id))


def _documents(new: Sequence[NewJob], apps: Sequence[App]) -> Iterator[dict[str, Any]]:
    """The stored documents of the new jobs, built one by one as the store reads them."""
    for job, app in zip(new, apps, strict=True):
        doc = job.document()
        doc["app_id"] = app.id
        doc["site_id"] = app.site_id
        yield doc


async def prepare(new: Sequence[NewJob], client: Client) -> list[JobDocument]:
    """New job documents for jobs created inside hooks (captured, possibly shipped from a
    worker process with dill): apps resolved once per distinct reference, parameters and
    transfers checked. Nothing is written, and no app is synced: an app class stands for
    the app stored under its site and name. Workdirs are not looked for on disk here: a
    refusal would fail the agent's whole batch, and the site checks each where it is made."""
    apps = await _check(new, client, sync=False, on_disk=False)
    return [JobDocument.from_doc(doc) for doc in _documents(new, apps)]


def _hashable(ref: Any) -> Any:
    try:
        hash(ref)
    except TypeError:
        return id(ref)
    return ref


async def create(
    new: Sequence[NewJob], created: Callable[[int, list[dict[str, Any]]], None]
) -> None:
    """Create the ``new`` jobs in as few round trips as the store allows;
    ``created(offset, documents)`` receives their stored documents a chunk at a time.

    Every job is checked before the first one is written, so bad inputs create nothing.
    The documents are then built as the store writes them, a chunk of jobs per
    transaction (which bounds the client's memory); should a chunk fail to be written
    (data MongoDB cannot store), no chunk is sent after it, and those already sent stay
    created.
    """
    client = await get_client()
    with _collector_paused():
        apps = await _check(new, client)
        known = {app.id: app for app in apps if app.id is not None}
        await client.backend.create_jobs(_documents(new, apps), len(new), created, known)


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


async def save(
    job_id: int, site_id: int | None, label: str, expect: JobState, changes: dict[str, Any]
) -> JobDocument:
    """Write the ``changes`` of a saved job (user attributes, ``state`` included) and give
    its document back. A changed state is a transition made as the user from ``expect``,
    refused if the job has moved on since it was loaded. A new workdir is checked against
    the site's ``data/`` as at creation."""
    client = await get_client()
    state = changes.pop("state", None)
    state_data = changes.pop("state_data", {}) if state is not None else {}
    fields = field_updates(changes, label)
    if "workdir" in fields and site_id is not None:
        data_dir = await _data_dir(client, site_id)
        escape = None if data_dir is None else data_dir.escape(fields["workdir"])
        if escape is not None:
            raise JobError(f"{label}: {escape}")
    if state is not None:
        result = await client.backend.transition_jobs(
            [Change(job_id, expect, state, dict(state_data), fields, by=Actor.USER)]
        )
        if not result.all_moved:
            found = result.unmoved[job_id]
            if found is None:
                raise NotFound(f"{label} does not exist")
            raise JobError(
                f"{label}: its state changed to {found.value} since it was loaded "
                f"(expected {expect.value}); refresh it and try again"
            )
    elif fields:
        if not await client.backend.update(_id_spec([job_id]), fields):
            raise NotFound(f"{label} does not exist")
    doc = (await get([job_id])).get(job_id)
    if doc is None:
        raise NotFound(f"{label} does not exist")
    return doc


async def get(job_ids: Sequence[int]) -> dict[int, JobDocument]:
    """The stored documents of ``job_ids`` that exist, in one query."""
    client = await get_client()
    return {d.id: d for d in await client.backend.get_jobs(job_ids) if d.id is not None}


async def delete(job_id: int) -> None:
    """Delete a job (killed first if it runs: ``steer.delete``)."""
    client = await get_client()
    if not await steer.delete(client, _id_spec([job_id])):
        raise NotFound(f"Job {job_id} does not exist")


# --- views: the I/O of the async and the blocking Job ------------------------------------


async def create_views(jobs: list[JobView]) -> None:
    """Create unsaved ``jobs``; each gets its id, state and app/site ids (see
    :func:`create`: bad inputs create nothing)."""
    if len({id(j) for j in jobs}) != len(jobs):
        raise JobError("the same Job object appears twice in one bulk_create")

    def created(offset: int, docs: list[dict[str, Any]]) -> None:
        for job, doc in zip(jobs[offset : offset + len(docs)], docs, strict=True):
            job._load_stored(doc)

    await create([job._new() for job in jobs], created)


async def prepare_views(jobs: Sequence[JobView], client: Client | None = None) -> list[JobDocument]:
    """The documents of unsaved ``jobs`` (created by hooks), checked (see :func:`prepare`)."""
    return await prepare([job._new() for job in jobs], client or await get_client())


async def save_view(job: JobView) -> None:
    if job.id is None:
        await create_views([job])
        return
    changes = job._changes()
    if changes:
        expect = job._saved_state or JobState.CREATED
        job._load(await save(job.id, job.site_id, job._label(), expect, changes))


async def refresh_views(jobs: Sequence[JobView]) -> None:
    """Reload ``jobs`` in one query."""
    ids = []
    for job in jobs:
        if job.id is None:
            raise JobError(f"{job._label()} is not saved")
        ids.append(job.id)
    found = await get(ids)
    for job in jobs:
        assert job.id is not None
        doc = found.get(job.id)
        if doc is None:
            raise NotFound(f"Job {job.id} does not exist")
        job._load(doc)


async def kill_view(job: JobView) -> bool:
    """Kill a saved job (``steer.kill``) and reload it; whether it was moved (a finished
    job is left alone)."""
    job_id = _saved_id(job)
    done = await steer.kill(await get_client(), _id_spec([job_id]))
    await refresh_views([job])
    return job_id in done.moved


async def reset_view(job: JobView, descendants: bool = False) -> bool:
    """Reset a saved job (``steer.reset``) and reload it; whether it was moved (only a
    FAILED or JOB_FINISHED job is)."""
    job_id = _saved_id(job)
    done = await steer.reset(await get_client(), _id_spec([job_id]), descendants=descendants)
    await refresh_views([job])
    return job_id in done.moved


def _saved_id(job: JobView) -> int:
    if job.id is None:
        raise JobError(f"{job._label()} is not saved")
    return job.id


async def delete_view(job: JobView) -> None:
    if job.id is None:
        raise JobError(f"{job._label()} is not saved")
    await delete(job.id)
    job._forget()
