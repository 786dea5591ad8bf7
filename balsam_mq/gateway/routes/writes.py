"""Creating sites, syncing apps, creating jobs in bulk and batch jobs, and moving states:
each checked whole before anything is written, on the caller's own sites only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from balsam_mq.domain import (
    Actor,
    App,
    BatchJob,
    BatchJobState,
    Change,
    JobState,
    Site,
    parse_state,
)
from balsam_mq.domain.models import new_job_doc
from balsam_mq.domain.queries import Condition, QuerySpec
from balsam_mq.domain.wire import result_to_wire
from balsam_mq.errors import JobError, NotFound, QueryError
from balsam_mq.gateway.deps import Mine, Svc
from balsam_mq.gateway.limits import MAX_CREATE
from balsam_mq.gateway.routes.resources import spec_of, stored_answer
from balsam_mq.gateway.scope import (
    AppSync,
    BatchJobCreate,
    JobCreate,
    SiteCreate,
    checked_update,
    job_problem,
    size_problem,
)

router = APIRouter()

_NEW = new_job_doc()  # every stored field of a job, in order


@router.post("/sites", status_code=201, summary="Register a site (the caller owns it)")
async def create_site(body: SiteCreate, svc: Svc, mine: Mine) -> Any:  # type: ignore[valid-type]
    fields = body.model_dump()  # type: ignore[attr-defined]
    if fields["owner"] not in ("", mine.user):
        raise QueryError(
            f"owner: a site created through the gateway belongs to its creator "
            f"({mine.user!r}), not {fields['owner']!r}"
        )
    site = Site(**{**fields, "owner": mine.user})
    return (await svc.backend.create_site(site)).model_dump(mode="json")


@router.put("/apps", summary="Sync an app to one of the caller's sites (create or replace)")
async def sync_app(body: AppSync, svc: Svc, mine: Mine) -> Any:  # type: ignore[valid-type]
    app = App(**body.model_dump())  # type: ignore[attr-defined]
    await mine.own_site(app.site_id)
    problem = size_problem("serialized_class", app.serialized_class)
    if problem is not None:
        raise QueryError(f"App {app.name!r}: {problem}")
    return (await svc.backend.sync_app(app)).model_dump(mode="json")


class JobsCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobCreate] = Field(max_length=MAX_CREATE)  # type: ignore[valid-type]


@router.post("/jobs", status_code=201, summary="Create jobs (all or none)")
async def create_jobs(body: JobsCreate, svc: Svc, mine: Mine) -> Response:
    """Every job is checked before the first is written: one bad job creates none. Its
    site is its app's, which must be one of the caller's sites."""
    jobs: list[Any] = body.jobs
    for i, job in enumerate(jobs):
        problem = job_problem(job)
        if problem is not None:
            raise JobError(f"jobs[{i}]: {problem}")
    app_ids = sorted({j.app_id for j in jobs})
    site_ids = await mine.site_ids()
    apps = await svc.backend.find(
        QuerySpec("apps", (Condition("id", "in", app_ids), Condition("site_id", "in", site_ids)))
    )
    known: dict[int, App] = {a.id: a for a in apps if a.id is not None}
    missing = [a for a in app_ids if a not in known]
    if missing:
        raise NotFound(f"App(s) {missing} do not exist")
    parent_ids = sorted({p for j in jobs for p in j.parent_ids})
    if parent_ids:
        found = await svc.backend.values(
            await mine.narrow(QuerySpec("jobs", (Condition("id", "in", parent_ids),))), ("id",)
        )
        absent = sorted(set(parent_ids) - {row["id"] for row in found})
        if absent:
            raise JobError(f"parent job(s) {absent} do not exist")
    documents = []
    for job in jobs:
        doc = dict(_NEW)  # its shared containers are all replaced here, or by the store
        doc.update(job.model_dump())
        doc["site_id"] = known[job.app_id].site_id
        doc["owner"] = mine.user
        documents.append(doc)
    stored: list[dict[str, Any]] = [{}] * len(documents)

    def created(offset: int, docs: list[dict[str, Any]]) -> None:
        stored[offset : offset + len(docs)] = docs

    await svc.backend.create_jobs(documents, len(documents), created, known, atomic=True)
    return stored_answer(stored, 201)


class ChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: int
    expect: JobState
    to: JobState
    state_data: dict[str, Any] = Field(default_factory=dict)
    fields: dict[str, Any] = Field(default_factory=dict)


class ChangesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    changes: list[ChangeIn] = Field(max_length=MAX_CREATE)


@router.post("/jobs/transition", summary="Move jobs from an expected state (as the user)")
async def transition(body: ChangesIn, svc: Svc, mine: Mine) -> dict[str, Any]:
    """Each job moves only if it is still in ``expect`` and the move is one a user may
    make; jobs that are not the caller's are reported as not existing."""
    ids = sorted({c.job_id for c in body.changes})
    spec = await mine.narrow(QuerySpec("jobs", (Condition("id", "in", ids),)))
    visible = {row["id"] for row in await svc.backend.values(spec, ("id",))}
    changes = [
        Change(
            c.job_id,
            c.expect,
            c.to,
            checked_state_data(c.state_data),
            checked_update("jobs", c.fields),
            by=Actor.USER,
        )
        for c in body.changes
        if c.job_id in visible
    ]
    result = await svc.backend.transition_jobs(changes)
    for job_id in ids:
        if job_id not in visible:
            result.unmoved[job_id] = None
    return result_to_wire(result)


def checked_state_data(state_data: dict[str, Any]) -> dict[str, Any]:
    return checked_update("jobs", {"state_data": state_data})["state_data"] if state_data else {}


class JobStateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    where: list[tuple[str, str, Any]] = Field(default_factory=list)
    state: str
    state_data: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)


@router.post("/jobs/state", summary="Move every matching job to a state (as the user)")
async def set_job_states(body: JobStateBody, svc: Svc, mine: Mine) -> dict[str, int]:
    try:
        state = JobState(parse_state(body.state))
    except ValueError as exc:
        raise QueryError(f"state: {exc}") from None
    spec = await mine.narrow(spec_of(body, "jobs"))
    fields = checked_update("jobs", body.set)
    moved = await svc.backend.set_job_states(
        spec, state, checked_state_data(body.state_data), fields
    )
    return {"updated": moved}


@router.post("/batch_jobs", status_code=201, summary="Ask for a pilot allocation")
async def create_batch_job(body: BatchJobCreate, svc: Svc, mine: Mine) -> Any:  # type: ignore[valid-type]
    batch_job = BatchJob(**body.model_dump())  # type: ignore[attr-defined]
    await mine.own_site(batch_job.site_id)
    return (await svc.backend.create_batch_job(batch_job)).model_dump(mode="json")


class BatchStateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    where: list[tuple[str, str, Any]] = Field(default_factory=list)
    state: BatchJobState
    set: dict[str, Any] = Field(default_factory=dict)


@router.post("/batch_jobs/state", summary="Move every matching batch job to a state")
async def set_batch_job_states(body: BatchStateBody, svc: Svc, mine: Mine) -> dict[str, int]:
    spec = await mine.narrow(spec_of(body, "batch_jobs"))
    fields = checked_update("batch_jobs", body.set)
    return {"updated": await svc.backend.set_batch_job_states(spec, body.state, fields)}
