"""The direct backend: the SDK on MongoDB (every write with its events row) and RabbitMQ
(only to hear about finished jobs; the relay publishes every event)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from bson.errors import InvalidDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, ServerSelectionTimeoutError

from balsam_mq.broker import Topology, close_channel
from balsam_mq.broker.dead import list_parked, take_parked
from balsam_mq.domain import (
    Actor,
    App,
    BatchJob,
    BatchJobState,
    Change,
    Job,
    JobState,
    ParkedMessage,
    Site,
    SiteRemoval,
    TransitionResult,
)
from balsam_mq.domain.queries import UNDELETABLE, Condition, QuerySpec
from balsam_mq.errors import JobError, NotFound, QueryError, Unavailable, brief
from balsam_mq.sdk.stream import EventStream
from balsam_mq.sdk.watch import FinishedEvents, Subscription
from balsam_mq.store import Store


class DirectBackend:
    """Implements :class:`~balsam_mq.sdk.backend.Backend` with a :class:`Store` and AMQP."""

    def __init__(
        self, store: Store, connection: AbstractRobustConnection, topology: Topology
    ) -> None:
        self.store = store
        self.connection = connection
        self.topology = topology
        self._finished = FinishedEvents(connection, topology)

    async def aclose(self) -> None:
        await self._finished.aclose()

    # --- any resource ---------------------------------------------------------------------

    async def find(self, spec: QuerySpec) -> list[Any]:
        return await self.store.queries.find(spec)

    def iterate(self, spec: QuerySpec) -> AsyncIterator[Any]:
        return self.store.queries.iterate(spec)

    async def count(self, spec: QuerySpec) -> int:
        return await self.store.queries.count(spec)

    async def values(self, spec: QuerySpec, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        return await self.store.queries.values(spec, fields)

    async def update(self, spec: QuerySpec, fields: Mapping[str, Any]) -> int:
        return await self.store.queries.update(spec, fields)

    async def delete(self, spec: QuerySpec) -> int:
        if spec.resource in UNDELETABLE:
            raise QueryError(UNDELETABLE[spec.resource])
        return await self.store.queries.delete(spec)

    # --- sites and apps -------------------------------------------------------------------

    async def create_site(self, site: Site) -> Site:
        return await self.store.sites.create(site)

    async def sync_app(self, app: App) -> App:
        return await self.store.apps.upsert(app)

    async def delete_site(self, site_id: int, *, force: bool, dry_run: bool) -> SiteRemoval:
        """The documents go in one transaction; then the site's work queues are deleted
        (their messages name jobs that no longer exist)."""
        removal = await self.store.sites.remove(site_id, force=force, dry_run=dry_run)
        if not dry_run:
            channel = await self.connection.channel()
            try:
                for spec in self.topology.site(site_id).all():
                    await channel.queue_delete(spec.name)
            finally:
                await close_channel(channel)
        return removal

    # --- jobs -----------------------------------------------------------------------------

    async def create_jobs(
        self,
        documents: Iterable[dict[str, Any]],
        count: int,
        created: Callable[[int, list[dict[str, Any]]], None],
        apps: Mapping[int, App],
        *,
        atomic: bool = False,
    ) -> None:
        """A transaction per chunk: ids, initial states and creation events (the steps
        with no work followed from ``apps``, the versions the jobs were checked against).
        ``atomic``: one transaction for all of them (at most ``store.creation.CREATE_CHUNK``)."""
        try:
            await self.store.jobs.create_documents(
                documents, count, created, apps=apps, atomic=atomic
            )
        except InvalidDocument as exc:
            raise JobError(f"a job cannot be stored (its data is not BSON): {exc}") from exc

    async def get_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        try:
            return await self.store.jobs.get_many(job_ids)
        except (ConnectionFailure, ServerSelectionTimeoutError) as exc:
            raise Unavailable(f"MongoDB cannot be reached: {brief(exc)}") from exc

    async def transition_jobs(self, changes: Sequence[Change]) -> TransitionResult:
        return await self.store.jobs.transition(changes)

    async def set_job_states(
        self,
        spec: QuerySpec,
        state: JobState,
        state_data: Mapping[str, Any],
        fields: Mapping[str, Any],
    ) -> int:
        """Move every matched job from its current state to ``state`` (as the user) and set
        ``fields`` on all of them, in one transaction. Jobs already there only get ``fields``."""
        docs = await self.store.queries.project(spec, ("state",))
        ids = [d["_id"] for d in docs]
        changes = [
            Change(d["_id"], JobState(d["state"]), state, dict(state_data), by=Actor.USER)
            for d in docs
            if d["state"] != state.value
        ]
        id_spec = QuerySpec("jobs", (Condition("id", "in", ids),))

        async def extra(session: AsyncClientSession) -> None:
            if fields:
                await self.store.queries.update(id_spec, fields, session=session)

        result = await self.store.jobs.transition(changes, extra=extra)
        return len(ids) - len(result.unmoved)

    # --- batch jobs -----------------------------------------------------------------------

    async def create_batch_job(self, batch_job: BatchJob) -> BatchJob:
        return await self.store.batch_jobs.create(batch_job)

    async def set_batch_job_states(
        self, spec: QuerySpec, state: BatchJobState, fields: Mapping[str, Any]
    ) -> int:
        ids = [d["_id"] for d in await self.store.queries.project(spec, ())]
        if ids:
            await self.store.batch_jobs.set_state(ids, state, fields=dict(fields))
        return len(ids)

    # --- futures --------------------------------------------------------------------------

    async def watch_finished(self, job_ids: Iterable[int], site_ids: Iterable[int]) -> Subscription:
        return await self._finished.subscribe(job_ids, site_ids)

    # --- live events ----------------------------------------------------------------------

    async def subscribe_events(self, routing_keys: Sequence[str]) -> EventStream:
        return await EventStream.open(self.connection, self.topology, routing_keys)

    # --- parked messages ------------------------------------------------------------------

    async def parked(self, limit: int | None = None) -> list[ParkedMessage]:
        return await list_parked(self.connection, self.topology, limit=limit)

    async def replay_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        """The jobs a message failed go back to where they waited: their new events carry
        the work, so the message itself is republished only when none of its own jobs
        returned (a dependency release, a cleanup)."""
        chosen = await self._chosen_parked(message_ids)
        if not chosen:
            return []
        returned = await self.store.jobs.replay_parked(sorted(chosen))

        def republish(message: ParkedMessage) -> bool:
            return not set(message.job_ids) & set(returned.get(message.message_id, ()))

        return await take_parked(
            self.connection, self.topology, lambda m: m.message_id in chosen, replay=republish
        )

    async def purge_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        chosen = await self._chosen_parked(message_ids)
        return await take_parked(self.connection, self.topology, lambda m: m.message_id in chosen)

    async def _chosen_parked(self, message_ids: Collection[str] | None) -> set[str]:
        """The ids of the parked messages named (all of them for ``None``); an unknown id
        is an error naming it."""
        present = {m.message_id for m in await self.parked()}
        if message_ids is None:
            return present
        missing = sorted(set(message_ids) - present)
        if missing:
            raise NotFound(f"no parked message {', '.join(missing)} (see `balsam-mq dead ls`)")
        return set(message_ids)
