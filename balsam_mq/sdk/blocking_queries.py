"""Queries and managers without ``await``: each call runs the async one on the background
loop (:mod:`balsam_mq.sdk.portal`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, cast, overload

from balsam_mq.sdk import futures, persist
from balsam_mq.sdk.capture import capturing
from balsam_mq.sdk.client import current_client, use_client
from balsam_mq.sdk.managers import JobManager, Manager
from balsam_mq.sdk.portal import call, portal
from balsam_mq.sdk.progress import ShowProgress, check_progress
from balsam_mq.sdk.query import Query
from balsam_mq.sdk.steer import Steered
from balsam_mq.sdk.view import JobView

T = TypeVar("T")
J = TypeVar("J", bound=JobView)


class BlockingQuery(Generic[T]):
    """:class:`~balsam_mq.sdk.query.Query` with plain calls; ``for x in query`` and
    ``query[0]`` fetch (as in Balsam), ``len()`` and ``bool()`` are refused."""

    def __init__(self, query: Query[T]) -> None:
        self.query = query

    def __repr__(self) -> str:
        return repr(self.query)

    def __len__(self) -> int:
        raise TypeError("len() of a query would do I/O: use query.count()")

    def __bool__(self) -> bool:
        raise TypeError("a query has no truth value: use query.exists()")

    def all(self) -> BlockingQuery[T]:
        return self

    def filter(self, **filters: Any) -> BlockingQuery[T]:
        return BlockingQuery(self.query.filter(**filters))

    def order_by(self, *fields: str) -> BlockingQuery[T]:
        return BlockingQuery(self.query.order_by(*fields))

    @overload
    def __getitem__(self, window: slice) -> BlockingQuery[T]: ...

    @overload
    def __getitem__(self, window: int) -> T: ...

    def __getitem__(self, window: slice | int) -> BlockingQuery[T] | T:
        """``query[10:20]`` narrows the query; ``query[0]`` fetches the first match."""
        if isinstance(window, slice):
            return BlockingQuery(self.query[window])
        query, index = self.query, window

        async def item() -> T:
            return await query[index]

        return call(item)

    def __iter__(self) -> Iterator[T]:
        return iter(self.fetch())

    def fetch(self) -> list[T]:
        return call(self.query.fetch)

    def count(self) -> int:
        return call(self.query.count)

    def exists(self) -> bool:
        return call(self.query.exists)

    def first(self) -> T | None:
        return call(self.query.first)

    def get(self, **filters: Any) -> T:
        return call(self.query.get, **filters)

    def update(self, **fields: Any) -> int:
        return call(self.query.update, **fields)

    def delete(self) -> int:
        return call(self.query.delete)

    def kill(self) -> Steered:
        """Jobs only: stop every match that has not finished (see the async one)."""
        return call(self.query.kill)

    def reset(self, *, descendants: bool = False) -> Steered:
        """Jobs only: run every FAILED or JOB_FINISHED match again (see the async one)."""
        return call(self.query.reset, descendants=descendants)


class BlockingManager(Generic[T]):
    """A manager with plain calls, wrapping the async one."""

    def __init__(self, manager: Manager[T]) -> None:
        self.manager = manager

    def __repr__(self) -> str:
        return f"<blocking {self.manager!r}>"

    def all(self) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.all())

    def filter(self, **filters: Any) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.filter(**filters))

    def order_by(self, *fields: str) -> BlockingQuery[T]:
        return BlockingQuery(self.manager.order_by(*fields))

    def get(self, **filters: Any) -> T:
        return call(self.manager.get, **filters)

    def first(self) -> T | None:
        return call(self.manager.first)

    def count(self) -> int:
        return call(self.manager.count)

    def create(self, *args: Any, **fields: Any) -> T:
        create = cast(Callable[..., Awaitable[T]], getattr(self.manager, "create"))  # noqa: B009
        return call(create, *args, **fields)

    def lookup(self, *args: Any, **kwargs: Any) -> Any:
        """``Site.objects.lookup(name)``, ``ApplicationDefinition.objects.lookup(name)``."""
        lookup = cast(Callable[..., Awaitable[Any]], getattr(self.manager, "lookup"))  # noqa: B009
        return call(lookup, *args, **kwargs)


class BlockingJobManager(BlockingManager[J]):
    manager: JobManager[J]

    def create(self, workdir: str, app_id: Any = None, **fields: Any) -> J:
        job = self.manager.model(workdir, app_id, **fields)
        captured = capturing()
        if captured is not None:
            captured.record(job)
            return job
        call(persist.create_views, [job])
        return job

    def bulk_create(self, jobs: Iterable[J]) -> list[J]:
        jobs = list(jobs)
        captured = capturing()
        if captured is not None:
            for job in jobs:
                captured.record(job)
            return jobs
        call(persist.create_views, list(jobs))
        return jobs

    def refresh(self, jobs: Sequence[J]) -> None:
        call(persist.refresh_views, jobs)

    def bulk_update(self, jobs: Iterable[J]) -> None:
        call(self.manager.bulk_update, jobs)

    def wait(
        self,
        jobs: Sequence[J],
        return_when: futures.ReturnWhen = "ALL_COMPLETED",
        timeout: float | None = None,
        poll_interval: float | None = None,
    ) -> futures.DoneAndNotDone[J]:
        return call(self.manager.wait, jobs, return_when, timeout, poll_interval)

    def as_completed(
        self,
        jobs: Sequence[J],
        timeout: float | None = None,
        *,
        progress: ShowProgress = False,
    ) -> Iterator[J]:
        """``for job in Job.objects.as_completed(jobs, timeout=60, progress=True)``."""
        client = current_client()
        steps = futures.as_completed(list(jobs), timeout, progress=check_progress(progress))
        done = object()

        async def step() -> Any:
            async with use_client(client):
                try:
                    return await steps.__anext__()
                except StopAsyncIteration:
                    return done

        try:
            while (item := portal().call(step)) is not done:
                yield cast(J, item)
        finally:
            portal().call(steps.aclose)
