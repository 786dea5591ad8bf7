"""Managers (``Job.objects``, ``Site.objects``, ...): entry points to the shared :class:`Query`,
plus what each resource adds (job creation and futures, site and batch job creation)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from balsam_mq.domain import (
    BatchJob as BatchJobDocument,
    BatchJobState,
    Site as SiteDocument,
    parse_state,
)
from balsam_mq.domain.queries import (
    UNCHANGEABLE,
    UNDELETABLE,
    Condition,
    QuerySpec,
    Resource,
    parse_condition,
)
from balsam_mq.errors import JobError, NotFound, QueryError
from balsam_mq.sdk import futures, persist, refs, steer
from balsam_mq.sdk.capture import Ready, capturing
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.feed import EventFeed
from balsam_mq.sdk.fields import field_updates
from balsam_mq.sdk.progress import ShowProgress, check_progress
from balsam_mq.sdk.query import Query
from balsam_mq.sdk.view import JobView

T = TypeVar("T")
J = TypeVar("J", bound=JobView)


class Manager(Generic[T]):
    """What every resource's ``objects`` offers: the start of a query, and its shortcuts."""

    resource: ClassVar[Resource]
    refs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, model: type[T]) -> None:
        self.model = model

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.model.__name__}>"

    def wrap(self, document: Any) -> T:
        from_document: Callable[[Any], T] = getattr(self.model, "_from_document")  # noqa: B009
        return from_document(document)

    def all(self) -> Query[T]:
        return Query(self)

    def filter(self, **filters: Any) -> Query[T]:
        return self.all().filter(**filters)

    def order_by(self, *fields: str) -> Query[T]:
        return self.all().order_by(*fields)

    async def get(self, **filters: Any) -> T:
        return await self.all().get(**filters)

    async def first(self) -> T | None:
        return await self.all().first()

    async def count(self) -> int:
        return await self.all().count()

    def check_ref(self, key: str, value: Any) -> None:
        """Refuse a bad value of a filter :meth:`resolve` will resolve, when it is built."""

    async def resolve(self, client: Client, key: str, value: Any) -> list[Condition]:
        """Conditions for a filter that names other documents (``app=``, ``site=``)."""
        if key == "site":
            return [Condition("site_id", "in", await refs.site_ids(client, value))]
        raise QueryError(f"{self.resource} cannot be filtered by {key!r}")

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int:
        return await client.backend.update(spec, fields)

    async def delete_matching(self, client: Client, spec: QuerySpec) -> int:
        return await client.backend.delete(spec)

    async def kill_matching(self, client: Client, spec: QuerySpec) -> steer.Steered:
        raise QueryError(f"only jobs can be killed, not {self.resource}")

    async def reset_matching(
        self, client: Client, spec: QuerySpec, *, descendants: bool
    ) -> steer.Steered:
        raise QueryError(f"only jobs can be reset, not {self.resource}")


class JobManager(Manager[J]):
    """``Job.objects``: queries, creation in bulk, and waiting for many jobs."""

    resource = "jobs"
    refs = frozenset({"app", "app_name", "site"})

    async def resolve(self, client: Client, key: str, value: Any) -> list[Condition]:
        if key in ("app", "app_name"):
            return [Condition("app_id", "in", await refs.app_ids(client, value))]
        return await super().resolve(client, key, value)

    def create(self, workdir: str, app_id: Any = None, **fields: Any) -> Awaitable[J]:
        """Create and save one job: ``await Job.objects.create(workdir=..., app_id=App, ...)``."""
        captured = capturing()
        if captured is not None:
            captured_job: Callable[..., J] = getattr(self.model, "_captured", self.model)
            job = captured_job(workdir, app_id, **fields)
            captured.record(job)
            return cast(Awaitable[J], job)
        return self._create(self.model(workdir, app_id, **fields))

    async def _create(self, job: J) -> J:
        await persist.create_views([job])
        return job

    def bulk_create(self, jobs: Iterable[J]) -> Awaitable[list[J]]:
        """Create many unsaved jobs in one call (a few ``insert_many`` round trips)."""
        jobs = list(jobs)
        captured = capturing()
        if captured is not None:
            for job in jobs:
                captured.record(job)
            return Ready(jobs)
        return self._bulk_create(jobs)

    async def _bulk_create(self, jobs: list[J]) -> list[J]:
        await persist.create_views(list(jobs))
        return jobs

    async def refresh(self, jobs: Sequence[J]) -> None:
        """Reload many jobs in one query."""
        await persist.refresh_views(jobs)

    async def bulk_update(self, jobs: Iterable[J]) -> None:
        """Save the changes of many loaded jobs, each its own, in order (one write per
        changed job; unchanged ones cost nothing). Every job must be saved already:
        new jobs go to :meth:`bulk_create`.

        Example::

            for job in failed:
                job.num_nodes = 16 if job.return_code == 1 else 2
            await Job.objects.bulk_update(failed)
        """
        jobs = list(jobs)
        for job in jobs:
            if job.id is None:
                raise JobError(f"{job._label()} is not saved: bulk_create() creates new jobs")
        for job in jobs:
            await persist.save_view(job)

    async def wait(
        self,
        jobs: Sequence[J],
        return_when: futures.ReturnWhen = "ALL_COMPLETED",
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> futures.DoneAndNotDone[J]:
        """``(done, not_done)`` when ``return_when`` holds or after ``timeout`` seconds.

        Finished jobs are announced by events, so nothing polls: ``poll_interval`` (from
        Balsam, where ``wait`` polled) is accepted and unused."""
        return await futures.wait(jobs, return_when, timeout)

    def as_completed(
        self,
        jobs: Sequence[J],
        timeout: float | None = None,
        *,
        progress: ShowProgress = False,
    ) -> AsyncGenerator[J, None]:
        """``async for job in Job.objects.as_completed(jobs, timeout=60)``: each as it ends.

        ``progress=True`` shows a bar (done, failed, remaining) on stderr when it is a
        terminal; ``progress="always"`` shows it wherever stderr goes."""
        return futures.as_completed(jobs, timeout, progress=check_progress(progress))

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int:
        values = dict(fields)
        if "state" not in values:
            return await client.backend.update(spec, field_updates(values, "Job query update"))
        try:
            state = parse_state(str(values.pop("state")))
        except ValueError as exc:
            raise QueryError(f"Job query update: {exc}") from None
        state_data = values.pop("state_data", {})
        return await client.backend.set_job_states(
            spec, state, state_data, field_updates(values, "Job query update")
        )

    async def delete_matching(self, client: Client, spec: QuerySpec) -> int:
        return await steer.delete(client, spec)

    async def kill_matching(self, client: Client, spec: QuerySpec) -> steer.Steered:
        return await steer.kill(client, spec)

    async def reset_matching(
        self, client: Client, spec: QuerySpec, *, descendants: bool
    ) -> steer.Steered:
        return await steer.reset(client, spec, descendants=descendants)


class SiteManager(Manager[T]):
    resource = "sites"

    async def create(self, name: str, **fields: Any) -> T:
        """Register a site: ``await Site.objects.create(name="polaris", path="/projects/x")``."""
        client = await get_client()
        return self.wrap(await client.backend.create_site(SiteDocument(name=name, **fields)))

    async def resolve(self, client: Client, key: str, value: Any) -> list[Condition]:
        raise QueryError(f"sites cannot be filtered by {key!r}")

    async def lookup(self, ref: Any) -> T:
        """The one site ``ref`` names: a name, an id (also as digits) or a Site;
        :class:`NotFound` if there is none.

        Example::

            site = await Site.objects.lookup("polaris")
        """
        client = await get_client()
        return self.wrap(await refs.lookup_site(client, ref))


class AppManager(Manager[T]):
    resource = "apps"
    refs = frozenset({"site"})

    async def lookup(self, ref: Any, site: Any = None) -> list[T]:
        """Every stored app ``ref`` names (a name, ``"module.Class"``, an id, also as
        digits), at ``site`` if given; :class:`NotFound` if there is none.

        Example::

            apps = await App.objects.lookup("Sleeper", site="polaris")
        """
        client = await get_client()
        if isinstance(ref, str) and ref.isdigit():
            ref = int(ref)
        conditions = [Condition("id", "in", await refs.app_ids(client, ref))]
        where = ""
        if site is not None:
            found = await refs.lookup_site(client, site)
            conditions.append(Condition("site_id", "eq", found.id))
            where = f" at site {found.name!r}"
        apps = await client.backend.find(QuerySpec("apps", tuple(conditions), ("id",)))
        if not apps:
            raise NotFound(f"no app {ref!r}{where}")
        return [self.wrap(a) for a in apps]


class BatchJobManager(Manager[T]):
    resource = "batch_jobs"
    refs = frozenset({"site"})

    async def create(self, site_id: int, **fields: Any) -> T:
        """Ask for a pilot allocation: ``await BatchJob.objects.create(site_id=3, num_nodes=2,
        wall_time_min=30, queue="debug", project="proj", job_mode="mpi")``."""
        client = await get_client()
        document = BatchJobDocument(site_id=site_id, **fields)
        return self.wrap(await client.backend.create_batch_job(document))

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int:
        values = dict(fields)
        if "state" not in values:
            return await client.backend.update(spec, values)
        try:
            state = BatchJobState(values.pop("state"))
        except ValueError as exc:
            raise QueryError(f"batch job update: {exc}") from None
        return await client.backend.set_batch_job_states(spec, state, values)


class EventLogManager(Manager[T]):
    """``EventLog.objects``. Two filters name jobs rather than fields of an event:
    ``tags=`` (the events of the jobs with those tags) and ``batch_job_id=`` (the batch
    job's own events and those of the jobs that ran in it, as Balsam lists them); each
    costs one more round trip, to find the jobs, whose ids a live feed keeps as they were
    when it opened."""

    resource = "events"
    refs = frozenset({"site", "tags", "batch_job_id"})

    def check_ref(self, key: str, value: Any) -> None:
        if key in ("tags", "batch_job_id"):
            parse_condition("jobs", key, value)  # what resolve() asks of the jobs

    async def resolve(self, client: Client, key: str, value: Any) -> list[Condition]:
        if key == "tags":
            return [Condition("job_id", "in", await _job_ids(client, "tags", value))]
        if key == "batch_job_id":
            batch = parse_condition("events", key, value)  # eq one id, or in a list of them
            batch_ids = batch.value if batch.op == "in" else [batch.value]
            ran = await _job_ids(client, key, value)
            # (its own events) or (events of its jobs), as conditions that must all hold:
            # a batch job's events name no job, job events name no batch job
            return [
                Condition("kind", "in", ["job", "batchjob"]),
                Condition("batch_job_id", "in", [*batch_ids, None]),
                Condition("job_id", "in", [*ran, None]),
            ]
        return await super().resolve(client, key, value)

    def follow(self, history: int | None = 0, **filters: Any) -> EventFeed[T]:
        """Matching events live, after the ``history`` latest stored ones (None: all of
        them); filters are those of ``filter()``. Use it as ``async with``, then ``async for``.

        Example::

            async with EventLog.objects.follow(job_id=42, history=10) as feed:
                async for event in feed:
                    print(event.from_state, "->", event.to_state)
        """
        return EventFeed(self.filter(**filters), history)

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int:
        raise QueryError(UNCHANGEABLE["events"])

    async def delete_matching(self, client: Client, spec: QuerySpec) -> int:
        raise QueryError(UNDELETABLE["events"])


class TransferItemManager(Manager[T]):
    """``TransferItem.objects``: the site's record of its transfers, one item per job,
    direction and slot, written by the site agent; read-only here.

    Example::

        async for item in TransferItem.objects.filter(job_id=42):
            print(item.slot, item.direction, item.state, item.bytes, item.error)
    """

    resource = "transfer_items"
    refs = frozenset({"site"})

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int:
        raise QueryError("transfer items are written by the site agent: they cannot be updated")

    async def delete_matching(self, client: Client, spec: QuerySpec) -> int:
        raise QueryError(UNDELETABLE["transfer_items"])


async def _job_ids(client: Client, key: str, value: Any) -> list[int]:
    """The ids of the jobs that ``filter(key=value)`` matches."""
    spec = QuerySpec("jobs", (parse_condition("jobs", key, value),))
    return [row["id"] for row in await client.backend.values(spec, ("id",))]
