"""An in-memory backend: the SDK's whole API with no MongoDB or RabbitMQ, for tests of SDK logic
and for trying things out.

It keeps the same rules as the direct backend — the state table, the steps with no work
passed through at creation and on every transition (``domain.pipeline``), one event per
step, the same query fields and operators (``domain.queries``), the same fields a plain
update may not touch — in plain dictionaries of one process. Nothing runs jobs: move them
with ``transition_jobs`` (or ``Job.objects.filter(...).update(state=...)``) the way a site
agent and a launcher would. Watches and event subscriptions are told of every event as
it is recorded.

Example::

    client = Client(MemoryBackend())
    async with use_client(client):
        await Site.objects.create(name="laptop")
        job = await Adder.submit("add/1", x=1, y=2)
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from balsam_mq.domain import (
    Actor,
    App,
    BatchJob,
    BatchJobState,
    Change,
    Event,
    Job,
    JobState,
    ParkedMessage,
    Site,
    SiteRemoval,
    TransitionResult,
    check_transition,
    utcnow,
)
from balsam_mq.domain.pipeline import (
    REENTRY_CLEARS,
    Work,
    reentering,
    reentry_steps,
    restarts_after,
    starting_state,
    steps,
)
from balsam_mq.domain.queries import (
    FIELDS,
    GUARDED,
    MODELS,
    STAMPED,
    UNDELETABLE,
    QuerySpec,
    Resource,
    field_value,
    matches,
)
from balsam_mq.errors import BalsamError, InUse, JobError, NotFound, QueryError, StoreError
from balsam_mq.sdk.memory_feeds import EventFeed, FinishedFeed

_ACTIVE = frozenset(
    {
        BatchJobState.PENDING_SUBMISSION,
        BatchJobState.QUEUED,
        BatchJobState.RUNNING,
        BatchJobState.PENDING_DELETION,
    }
)


def _values(resource: Resource, doc: Any) -> dict[str, Any]:
    """The queryable fields of a model, as queries compare them."""
    return {name: field_value(resource, name, getattr(doc, name)) for name in FIELDS[resource]}


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def _field_key(field: str) -> Callable[[Any], tuple[int, Any]]:
    return lambda doc: _sort_key(getattr(doc, field))


class MemoryBackend:
    """Implements :class:`~balsam_mq.sdk.backend.Backend` in this process's memory."""

    def __init__(self) -> None:
        self._docs: dict[Resource, dict[Any, Any]] = {r: {} for r in MODELS}
        self._ids = {r: itertools.count(1) for r in MODELS}
        self._event_ids = itertools.count(1)
        self._finished: list[FinishedFeed] = []
        self._subscriptions: list[EventFeed] = []

    async def aclose(self) -> None:
        self._finished.clear()
        self._subscriptions.clear()

    # --- any resource ---------------------------------------------------------------------

    def _matching(self, spec: QuerySpec) -> list[Any]:
        docs = [
            d
            for d in self._docs[spec.resource].values()
            if matches(spec.conditions, _values(spec.resource, d))
        ]
        # ties in the order of the last key's direction, as the direct backend breaks them
        docs.sort(key=_field_key("id"), reverse=bool(spec.order) and spec.order[-1][0] == "-")
        for name in reversed(spec.order):
            field = name.removeprefix("-")
            docs.sort(key=_field_key(field), reverse=name.startswith("-"))
        if spec.stop is not None and spec.stop <= spec.start:
            return []
        return docs[spec.start : spec.stop]

    async def find(self, spec: QuerySpec) -> list[Any]:
        return [d.model_copy(deep=True) for d in self._matching(spec)]

    async def iterate(self, spec: QuerySpec) -> AsyncIterator[Any]:
        for doc in await self.find(spec):
            yield doc

    async def count(self, spec: QuerySpec) -> int:
        return len(self._matching(spec))

    async def values(self, spec: QuerySpec, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            {f: field_value(spec.resource, f, getattr(d, f)) for f in fields}
            for d in self._matching(spec)
        ]

    async def update(self, spec: QuerySpec, fields: Mapping[str, Any]) -> int:
        guarded = sorted(set(fields) & GUARDED[spec.resource])
        if guarded:
            raise StoreError(f"{spec.resource}: {guarded} cannot be set by a plain update")
        matched = self._matching(spec)
        values = dict(fields)
        if spec.resource in STAMPED:
            values["last_update"] = utcnow()
        for doc in matched:
            self._put(spec.resource, self._set(spec.resource, doc, values))
        return len(matched)

    async def delete(self, spec: QuerySpec) -> int:
        if spec.resource in UNDELETABLE:
            raise QueryError(UNDELETABLE[spec.resource])
        matched = self._matching(spec)
        for doc in matched:
            del self._docs[spec.resource][doc.id]
        return len(matched)

    def _set(self, resource: Resource, doc: Any, paths: Mapping[str, Any]) -> Any:
        """``doc`` with stored ``paths`` (``data``, ``resources.num_nodes``, ``tags.k``) set."""
        stored = doc.to_doc()
        for path, value in paths.items():
            *parents, last = path.split(".")
            target = stored
            for key in parents:
                target = target.setdefault(key, {})
            target[last] = value
        return MODELS[resource].from_doc(stored)

    def _put(self, resource: Resource, doc: Any) -> Any:
        self._docs[resource][doc.id] = doc
        return doc

    # --- sites and apps -------------------------------------------------------------------

    async def create_site(self, site: Site) -> Site:
        if any(s.name == site.name and s.owner == site.owner for s in self._docs["sites"].values()):
            raise BalsamError(f"Site {site.name!r} already exists")
        new = site.model_copy(update={"id": next(self._ids["sites"])})
        self._put("sites", new)
        return new.model_copy(deep=True)

    async def sync_app(self, app: App) -> App:
        existing = next(
            (
                a
                for a in self._docs["apps"].values()
                if (a.site_id, a.name) == (app.site_id, app.name)
            ),
            None,
        )
        app_id = existing.id if existing is not None else next(self._ids["apps"])
        stored = app.model_copy(update={"id": app_id, "last_update": utcnow()})
        self._put("apps", stored)
        self._record(
            Event(
                id=self._event_id(),
                kind="app",
                site_id=app.site_id,
                app_id=app_id,
                to_state="synced",
                timestamp=stored.last_update,
            )
        )
        return stored.model_copy(deep=True)

    async def delete_site(self, site_id: int, *, force: bool, dry_run: bool) -> SiteRemoval:
        site = self._docs["sites"].get(site_id)
        if site is None:
            raise NotFound(f"Site {site_id} does not exist")

        def owned(resource: Resource) -> list[Any]:
            return [d for d in self._docs[resource].values() if d.site_id == site_id]

        removal = SiteRemoval(
            site=site,
            jobs=len(owned("jobs")),
            apps=len(owned("apps")),
            batch_jobs=len(owned("batch_jobs")),
            active_batch_jobs=[b for b in owned("batch_jobs") if b.state in _ACTIVE],
        )
        if not force and removal.in_use:
            raise InUse(removal.refusal())
        if not dry_run:
            for resource in ("jobs", "apps", "batch_jobs"):
                for doc in owned(resource):
                    del self._docs[resource][doc.id]
            del self._docs["sites"][site_id]
        return removal

    # --- jobs -----------------------------------------------------------------------------

    async def create_jobs(
        self,
        documents: Iterable[dict[str, Any]],
        count: int,
        created: Callable[[int, list[dict[str, Any]]], None],
        apps: Mapping[int, App],
    ) -> None:
        """All at once: a job of an unfinished parent waits, of a failed one fails."""
        docs = list(documents)
        if len(docs) != count:
            raise StoreError(f"create_jobs: {len(docs)} documents for a count of {count}")
        jobs = self._docs["jobs"]
        for doc in docs:
            missing = [p for p in doc["parent_ids"] if p not in jobs]
            if missing:
                raise JobError(f"parent job(s) {missing} do not exist")
        stored = []
        for doc in docs:
            job = Job.from_doc(doc).model_copy(update={"id": next(self._ids["jobs"])})
            parents = [(p, jobs[p].state, jobs[p].state_data) for p in job.parent_ids]
            state, state_data = starting_state(parents)
            change = Change(0, JobState.CREATED, state, state_data, by=Actor.CLIENT)
            self._put("jobs", job)
            self._follow(job, change, apps)
            stored.append({**self._docs["jobs"][job.id].to_doc()})
        created(0, stored)

    async def get_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        jobs = self._docs["jobs"]
        return [jobs[i].model_copy(deep=True) for i in job_ids if i in jobs]

    async def transition_jobs(self, changes: Sequence[Change]) -> TransitionResult:
        for c in changes:
            check_transition(c.job_id, c.expect, c.to, c.by)
        moved: list[int] = []
        unmoved: dict[int, JobState | None] = {}
        final: dict[int, JobState] = {}
        # a reset sees its parents as the batch leaves them: parents (lower ids) go first
        resets = any(reentering(c) for c in changes)
        for c in sorted(changes, key=lambda c: c.job_id) if resets else changes:
            job = self._docs["jobs"].get(c.job_id)
            if job is None or job.state is not c.expect:
                unmoved[c.job_id] = None if job is None else job.state
                continue
            final[c.job_id] = self._follow(job, c, None)
            moved.append(c.job_id)
        return TransitionResult(moved=moved, unmoved=unmoved, final=final)

    def _follow(self, job: Job, change: Change, apps: Mapping[int, App] | None) -> JobState:
        """Apply ``change`` to ``job`` and pass every following step with no work (a reset
        goes where its parents let it, as in the store: ``pipeline.reentry_steps``)."""
        app = (apps or {}).get(job.app_id) or self._docs["apps"].get(job.app_id)
        work = None if app is None else Work.of(app, job.transfers)
        has_children = any(job.id in j.parent_ids for j in self._docs["jobs"].values())
        fields = dict(change.fields)
        if reentering(change):
            jobs = self._docs["jobs"]
            parents = [(p, jobs[p].state, jobs[p].state_data) for p in job.parent_ids if p in jobs]
            taken = reentry_steps(change, parents, work, has_children=has_children)
            fields = {**REENTRY_CLEARS, **fields}
        else:
            limit = App.model_fields["max_retries"].default if app is None else app.max_retries
            if job.max_retries is not None:
                limit = job.max_retries
            taken = steps(
                change, work, has_children=has_children, restarts=job.restarts, max_retries=limit
            )
        now = utcnow()
        fields.update(
            state_data=taken[-1].state_data,
            last_update=now,
            restarts=restarts_after(taken, job.restarts),
        )
        moved = self._set("jobs", job, fields).model_copy(
            update={"state": taken[-1].to, "seq": job.seq + len(taken)}
        )
        self._put("jobs", moved)
        for i, step in enumerate(taken, start=1):
            self._record(
                Event(
                    id=self._event_id(),
                    site_id=job.site_id,
                    job_id=job.id,
                    app_id=job.app_id,
                    from_state=step.from_state.value,
                    to_state=step.to.value,
                    seq=job.seq + i,
                    by=step.by,
                    timestamp=now,
                    state_data=step.state_data,
                    quiet=step.quiet,
                )
            )
        return taken[-1].to

    async def set_job_states(
        self,
        spec: QuerySpec,
        state: JobState,
        state_data: Mapping[str, Any],
        fields: Mapping[str, Any],
    ) -> int:
        matched = self._matching(spec)
        changes = [
            Change(j.id, j.state, state, dict(state_data), by=Actor.USER)
            for j in matched
            if j.state is not state and j.id is not None
        ]
        for c in changes:  # all or nothing: an illegal move writes nothing
            check_transition(c.job_id, c.expect, c.to, c.by)
        result = await self.transition_jobs(changes)
        if fields:
            ids = [j.id for j in matched]
            for job_id in ids:
                self._put("jobs", self._set("jobs", self._docs["jobs"][job_id], fields))
        return len(matched) - len(result.unmoved)

    # --- batch jobs -----------------------------------------------------------------------

    async def create_batch_job(self, batch_job: BatchJob) -> BatchJob:
        new = batch_job.model_copy(update={"id": next(self._ids["batch_jobs"])})
        self._put("batch_jobs", new)
        return new.model_copy(deep=True)

    async def set_batch_job_states(
        self, spec: QuerySpec, state: BatchJobState, fields: Mapping[str, Any]
    ) -> int:
        matched = self._matching(spec)
        for doc in matched:
            updated = self._set("batch_jobs", doc, fields).model_copy(update={"state": state})
            self._put("batch_jobs", updated)
        return len(matched)

    # --- futures and live events ----------------------------------------------------------

    async def watch_finished(self, job_ids: Iterable[int], site_ids: Iterable[int]) -> FinishedFeed:
        watch = FinishedFeed(set(job_ids))
        self._finished.append(watch)
        return watch

    async def subscribe_events(self, routing_keys: Sequence[str]) -> EventFeed:
        watch = EventFeed(routing_keys)
        self._subscriptions.append(watch)
        return watch

    # nothing consumes here, so nothing is ever parked
    async def parked(self, limit: int | None = None) -> list[ParkedMessage]:
        return []

    async def replay_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        return self._no_parked(message_ids)

    async def purge_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        return self._no_parked(message_ids)

    def _no_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        if message_ids:
            raise NotFound(f"no parked message {', '.join(sorted(message_ids))}")
        return []

    def _event_id(self) -> str:
        return f"{next(self._event_ids):024x}"

    def _record(self, event: Event) -> None:
        self._put("events", event)
        self._finished = [w for w in self._finished if not w.closed]
        self._subscriptions = [w for w in self._subscriptions if not w.closed]
        for watch in self._finished:
            watch.tell(event)
        for subscription in self._subscriptions:
            subscription.tell(event)
