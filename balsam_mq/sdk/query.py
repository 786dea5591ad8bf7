"""The one lazy, immutable query shared by every manager (Site, App, Job, BatchJob, EventLog).

Building a query (``filter``, ``order_by``, slicing) does no I/O; ``await`` on a
method does exactly one round trip (two when names must be resolved to ids first).
No dunder touches the network: ``len(q)`` and ``bool(q)`` are refused with a hint, and
``q[0]`` is a coroutine that fetches when awaited (``await q[0]``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Generator, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar, overload

from balsam_mq.domain.queries import (
    Condition,
    QuerySpec,
    Resource,
    check_fields,
    check_order,
    parse_condition,
)
from balsam_mq.errors import QueryError
from balsam_mq.sdk.client import Client, get_client
from balsam_mq.sdk.steer import Steered

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Source(Protocol[T_co]):
    """What a query asks of the manager it comes from (``managers.Manager``)."""

    resource: ClassVar[Resource]
    refs: ClassVar[frozenset[str]]
    model: Any

    def check_ref(self, key: str, value: Any) -> None: ...

    async def resolve(self, client: Client, key: str, value: Any) -> list[Condition]: ...

    def wrap(self, document: Any) -> T_co: ...

    async def update_matching(
        self, client: Client, spec: QuerySpec, fields: Mapping[str, Any]
    ) -> int: ...

    async def delete_matching(self, client: Client, spec: QuerySpec) -> int: ...

    async def kill_matching(self, client: Client, spec: QuerySpec) -> Steered: ...

    async def reset_matching(
        self, client: Client, spec: QuerySpec, *, descendants: bool
    ) -> Steered: ...


class Query(Generic[T]):
    """``Job.objects.filter(state="FAILED", tags={"run": "H2O"}).order_by("-last_update")[:10]``

    Example::

        failed = Job.objects.filter(state="FAILED")
        print(await failed.count())
        async for job in failed[:100]:
            ...
        await failed.update(state="RESTART_READY")
    """

    __slots__ = ("_conditions", "_manager", "_order", "_refs", "_start", "_stop")

    def __init__(
        self,
        manager: Source[T],
        conditions: tuple[Condition, ...] = (),
        refs: tuple[tuple[str, Any], ...] = (),
        order: tuple[str, ...] = (),
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        self._manager = manager
        self._conditions = conditions
        self._refs = refs
        self._order = order
        self._start = start
        self._stop = stop

    def _copy(self, **changes: Any) -> Query[T]:
        values = {
            "conditions": self._conditions,
            "refs": self._refs,
            "order": self._order,
            "start": self._start,
            "stop": self._stop,
            **changes,
        }
        return Query(self._manager, **values)

    # --- building (no I/O) ----------------------------------------------------------------

    def all(self) -> Query[T]:
        return self

    def filter(self, **filters: Any) -> Query[T]:
        """Narrow the query; every keyword must hold (see ``domain/queries.py`` for the
        operators). Unknown fields and bad values are refused here, before any I/O."""
        conditions = list(self._conditions)
        refs = list(self._refs)
        resource = self._manager.resource
        for key, value in filters.items():
            if key in self._manager.refs:
                self._manager.check_ref(key, value)
                refs.append((key, value))
            else:
                conditions.append(parse_condition(resource, key, value))
        return self._copy(conditions=tuple(conditions), refs=tuple(refs))

    def order_by(self, *fields: str) -> Query[T]:
        """Order by fields (``"-last_update"`` for descending); replaces an earlier order."""
        return self._copy(order=check_order(self._manager.resource, fields))

    @overload
    def __getitem__(self, window: slice) -> Query[T]: ...

    @overload
    def __getitem__(self, window: int) -> Coroutine[Any, Any, T]: ...

    def __getitem__(self, window: slice | int) -> Query[T] | Coroutine[Any, Any, T]:
        """``q[10:20]``: the query narrowed to a window (no I/O); ``await q[i]``: the
        ``i``-th match (fetched when awaited; :class:`IndexError` if there is none)."""
        if isinstance(window, int) and not isinstance(window, bool):
            if window < 0:
                raise QueryError("query indexes cannot be negative")
            return self._nth(window)
        if not isinstance(window, slice):
            raise TypeError(f"a query is indexed by an int or a slice, not {window!r}")
        if window.step not in (None, 1):
            raise QueryError("query slices cannot have a step")
        lo, hi = window.start or 0, window.stop
        if lo < 0 or (hi is not None and hi < 0):
            raise QueryError("query slices cannot be negative")
        start = self._start + lo
        stop = self._stop if hi is None else self._start + hi
        if self._stop is not None and stop is not None:
            stop = min(stop, self._stop)
        return self._copy(start=start, stop=stop)

    async def _nth(self, index: int) -> T:
        found = await self[index : index + 1].fetch()
        if not found:
            raise IndexError(f"{self!r} has no item {index}")
        return found[0]

    def __repr__(self) -> str:
        parts = [f"{c.field}__{c.op}={c.value!r}" for c in self._conditions]
        parts += [f"{k}={v!r}" for k, v in self._refs]
        text = f"<Query {self._manager.resource}"
        if parts:
            text += " filter(" + ", ".join(parts) + ")"
        if self._order:
            text += " order_by(" + ", ".join(self._order) + ")"
        if self._start or self._stop is not None:
            text += f" [{self._start}:{'' if self._stop is None else self._stop}]"
        return text + ">"

    def __len__(self) -> int:
        raise TypeError("len() of a query would do I/O: use `await query.count()`")

    def __bool__(self) -> bool:
        raise TypeError("a query has no truth value: use `await query.exists()`")

    # --- running (I/O) --------------------------------------------------------------------

    async def spec(self, client: Client | None = None) -> QuerySpec:
        """The query as data, with names (apps, sites) resolved to ids."""
        client = client or await get_client()
        conditions = list(self._conditions)
        for key, value in self._refs:
            conditions.extend(await self._manager.resolve(client, key, value))
        return QuerySpec(
            self._manager.resource, tuple(conditions), self._order, self._start, self._stop
        )

    async def fetch(self) -> list[T]:
        """Every matching item, in order."""
        client = await get_client()
        docs = await client.backend.find(await self.spec(client))
        return [self._manager.wrap(d) for d in docs]

    def __await__(self) -> Generator[Any, None, list[T]]:
        """``await query`` is ``await query.fetch()``."""
        return self.fetch().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        """Stream the matches from one cursor."""
        client = await get_client()
        async for doc in client.backend.iterate(await self.spec(client)):
            yield self._manager.wrap(doc)

    async def values(self, *fields: str) -> list[dict[str, Any]]:
        """Only ``fields`` of every match, as dicts, in order: one round trip that reads
        nothing else (no parameters, results or tracebacks unless named). The fields are
        those ``filter`` accepts, ``id`` included.

        Example::

            rows = await Job.objects.filter(state="FAILED").order_by("-id")[:50].values(
                "id", "workdir", "tags"
            )
        """
        names = check_fields(self._manager.resource, fields)
        client = await get_client()
        return await client.backend.values(await self.spec(client), names)

    async def count(self) -> int:
        client = await get_client()
        return await client.backend.count(await self.spec(client))

    async def exists(self) -> bool:
        return bool(await self[:1].count())

    async def first(self) -> T | None:
        found = await self[:1].fetch()
        return found[0] if found else None

    async def get(self, **filters: Any) -> T:
        """The one item matching; otherwise the model's ``DoesNotExist`` (a
        :class:`NotFound`) or ``MultipleObjectsReturned`` (a :class:`MultipleResults`).

        Example::

            try:
                job = await Job.objects.get(tags={"system": "H2O"})
            except Job.DoesNotExist:
                ...
        """
        query = self.filter(**filters) if filters else self
        found = await query[:2].fetch()
        model: Any = self._manager.model  # every model carries its own two errors
        if not found:
            raise model.DoesNotExist(f"no {self._manager.resource} match {query!r}")
        if len(found) > 1:
            raise model.MultipleObjectsReturned(
                f"more than one of {self._manager.resource} match {query!r}"
            )
        return found[0]

    async def update(self, **fields: Any) -> int:
        """Set ``fields`` on every match in one call; returns how many were updated.

        For jobs, ``state=`` moves each matched job from its current state (as the user,
        checked by the state table) in the same transaction, and ``**{"tags.run": "H2O"}``
        or ``**{"data.note": ...}`` set one entry of ``tags`` or ``data``, keeping the others.
        """
        client = await get_client()
        return await self._manager.update_matching(client, await self.spec(client), fields)

    async def delete(self) -> int:
        """Delete every match in one call; returns how many were deleted. Running jobs are
        killed first (see :meth:`kill`)."""
        client = await get_client()
        return await self._manager.delete_matching(client, await self.spec(client))

    async def kill(self) -> Steered:
        """Jobs only: stop every match that has not finished. It fails, with
        ``state_data["reason"] == "killed by the user"``: a RUNNING job's launcher hears it
        and terminates the run's process group within seconds (its outcome is dropped), a
        job that has not run never starts. Finished jobs are left alone (``.left``).

        Example::

            killed = await Job.objects.filter(tags={"run": "H2O"}).kill()
            print(killed.was("RUNNING"), "were running;", killed.left, "had ended")
        """
        client = await get_client()
        return await self._manager.kill_matching(client, await self.spec(client))

    async def reset(self, *, descendants: bool = False) -> Steered:
        """Jobs only: every FAILED or JOB_FINISHED match runs again from READY (stage-in,
        preprocess and the parents' check again; what its last run left is dropped). A job
        with an unfinished parent waits for it (AWAITING_PARENTS); one with a FAILED parent
        fails again, naming it. ``descendants``: the jobs that depend on a match,
        transitively, are reset too (and wait for it). Other jobs are left alone.

        Example::

            await Job.objects.filter(id=[3]).reset(descendants=True)
        """
        client = await get_client()
        spec = await self.spec(client)
        return await self._manager.reset_matching(client, spec, descendants=descendants)
