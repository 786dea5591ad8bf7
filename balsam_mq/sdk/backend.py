"""The one interface the SDK's managers talk to; ``direct`` (MongoDB + RabbitMQ) implements it.

Its methods take and return domain types, so managers, queries and futures do not
depend on how a backend reaches the data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol

from balsam_mq.domain import (
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
)
from balsam_mq.domain.queries import QuerySpec


class FinishedWatch(Protocol):
    """Notifications that watched jobs reached JOB_FINISHED or FAILED."""

    async def next(self) -> set[int] | None:
        """Ids announced since the last call (waits for one); ``None``: re-check them all
        (the stream was interrupted and events may have been missed)."""
        ...

    def close(self) -> None: ...


class EventWatch(Protocol):
    """Events published under some routing keys since the subscription was made."""

    async def next(self) -> list[Event] | None:
        """Events received since the last call (waits for one); ``None``: the stream was
        interrupted and events may have been missed."""
        ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    async def aclose(self) -> None: ...

    # any resource, through a QuerySpec
    async def find(self, spec: QuerySpec) -> list[Any]: ...

    def iterate(self, spec: QuerySpec) -> AsyncIterator[Any]: ...

    async def count(self, spec: QuerySpec) -> int: ...

    async def values(self, spec: QuerySpec, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        """Only ``fields`` of each match (names of ``domain.queries.FIELDS``)."""
        ...

    async def update(self, spec: QuerySpec, fields: Mapping[str, Any]) -> int: ...

    async def delete(self, spec: QuerySpec) -> int: ...

    # sites and apps
    async def create_site(self, site: Site) -> Site: ...

    async def sync_app(self, app: App) -> App: ...

    async def delete_site(self, site_id: int, *, force: bool, dry_run: bool) -> SiteRemoval:
        """Remove a site with its apps and batch jobs (and jobs, if ``force``)."""
        ...

    # jobs
    async def create_jobs(
        self,
        documents: Iterable[dict[str, Any]],
        count: int,
        created: Callable[[int, list[dict[str, Any]]], None],
        apps: Mapping[int, App],
    ) -> None:
        """Create ``count`` new jobs from their documents (``Job.to_doc()`` without ``_id``,
        checked against ``apps``; read lazily, a chunk at a time); ``created(offset,
        documents)`` receives each chunk's stored documents as it is written."""
        ...

    async def get_jobs(self, job_ids: Sequence[int]) -> list[Job]: ...

    async def transition_jobs(self, changes: Sequence[Change]) -> TransitionResult: ...

    async def set_job_states(
        self,
        spec: QuerySpec,
        state: JobState,
        state_data: Mapping[str, Any],
        fields: Mapping[str, Any],
    ) -> int: ...

    # batch jobs
    async def create_batch_job(self, batch_job: BatchJob) -> BatchJob: ...

    async def set_batch_job_states(
        self, spec: QuerySpec, state: BatchJobState, fields: Mapping[str, Any]
    ) -> int: ...

    # futures
    async def watch_finished(
        self, job_ids: Iterable[int], site_ids: Iterable[int]
    ) -> FinishedWatch:
        """Subscribe first; whatever finishes after this returns is announced."""
        ...

    # live events
    async def subscribe_events(self, routing_keys: Sequence[str]) -> EventWatch:
        """Bound before it returns: every event published afterwards under a key arrives."""
        ...

    # parked messages (the dead-letter queue)
    async def parked(self, limit: int | None = None) -> list[ParkedMessage]:
        """Parked messages, oldest first."""
        ...

    async def replay_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        """Replay these parked messages (``None``: all): the jobs they failed return to where
        they waited, the rest go back to their queue. The messages replayed."""
        ...

    async def purge_parked(self, message_ids: Collection[str] | None) -> list[ParkedMessage]:
        """Discard these parked messages (``None``: all); their jobs stay FAILED."""
        ...
