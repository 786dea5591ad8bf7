"""Query syntax: a :class:`QuerySpec` as a MongoDB filter, sort and window, and the bulk
reads, counts, field updates and deletes the SDK's lazy queries run."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from balsam_mq.domain import utcnow
from balsam_mq.domain.models import STEP_FIELDS, THEN, plain
from balsam_mq.domain.queries import (
    FIELDS,
    GUARDED,
    MODELS,
    STAMPED,
    UNCHANGEABLE,
    Condition,
    QuerySpec,
    Resource,
    field_value,
)
from balsam_mq.errors import QueryError, StoreError
from balsam_mq.store.events import stored_match, unfold
from balsam_mq.store.schema import APPS, BATCH_JOBS, EVENTS, JOBS, SITES, TRANSFER_ITEMS

COLLECTIONS: dict[Resource, str] = {
    "jobs": JOBS,
    "sites": SITES,
    "apps": APPS,
    "batch_jobs": BATCH_JOBS,
    "transfer_items": TRANSFER_ITEMS,
    "events": EVENTS,
}
_MONGO_OPS = {"ne": "$ne", "gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


def to_filter(spec: QuerySpec) -> dict[str, Any]:
    """The MongoDB filter matching every condition of ``spec``."""
    clauses = [c for cond in spec.conditions for c in _clauses(spec.resource, cond)]
    if not clauses:
        return {}
    merged: dict[str, Any] = {}
    for clause in clauses:
        ((key, value),) = clause.items()
        if key in merged:
            return {"$and": clauses}
        merged[key] = value
    return merged


def to_sort(spec: QuerySpec) -> list[tuple[str, int]]:
    """The sort order; ``_id`` last so that windows are stable, in the direction of the key
    before it, so that one index on (field, _id) serves both directions."""
    keys = [
        (_path(f.removeprefix("-")), DESCENDING if f.startswith("-") else ASCENDING)
        for f in spec.order
    ]
    if not any(k == "_id" for k, _ in keys):
        keys.append(("_id", keys[-1][1] if keys else ASCENDING))
    return keys


def _path(field: str) -> str:
    return "_id" if field == "id" else field


def _clauses(resource: Resource, cond: Condition) -> list[dict[str, Any]]:
    path = _path(cond.field)
    value = plain(cond.value)
    if FIELDS[resource].get(cond.field) == "oid":
        value = [_oid(v) for v in value] if isinstance(value, list) else _oid(value)
    if cond.op == "has":
        return [
            {f"{path}.{k}": {"$exists": True} if v is None else plain(v)}
            for k, v in cond.value.items()
        ]
    if cond.op == "eq":
        return [{path: value}]
    if cond.op == "in":
        return [{path: {"$in": value}}]
    if cond.op == "nin":
        return [{path: {"$nin": value}}]
    if cond.op == "contains":
        return [{path: {"$regex": re.escape(value)}}]
    return [{path: {_MONGO_OPS[cond.op]: value}}]


def _oid(value: Any) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise QueryError(f"events filter 'id': {value!r} is not an event id") from None


# conditions that hold for an event only where they hold for a value of its stored
# document (a field of any of its steps): not so for ``ne`` and ``nin``
_POSITIVE = frozenset({"eq", "in", "gt", "gte", "lt", "lte", "contains", "has"})


def event_stages(
    spec: QuerySpec, *, ordered: bool, only: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The aggregation of the events ``spec`` asks for, from the stored documents (each
    of them the steps of a job in one transaction: ``domain.models.THEN``), with its
    window. The documents are narrowed before they are unfolded, by the conditions a
    document's values can be checked against, and sorted then too, with the indexes,
    where every key of the order is a document's own (or the id, which its steps
    follow); the events are filtered in full after. With ``only``, the events carry
    those fields alone (and their ids): nothing else is unfolded."""
    positive = (
        c for cond in spec.conditions if cond.op in _POSITIVE for c in _clauses(spec.resource, cond)
    )
    pre = stored_match(positive)
    stages: list[dict[str, Any]] = [{"$match": pre}] if pre else []
    sort = to_sort(spec)
    if only is not None:
        needed = {*only, *(_path(c.field) for c in spec.conditions), *(k for k, _ in sort)}
        kept = {f: 1 for f in needed}
        kept.update({f"{THEN}.{f}": 1 for f in needed if f in STEP_FIELDS})
        stages.append({"$project": kept})
    late_sort: list[dict[str, Any]] = []
    if not ordered:
        stages += unfold()
    elif all(key == "_id" or key not in STEP_FIELDS for key, _ in sort):
        stages += [{"$sort": dict(sort)}, *unfold(reverse=sort[-1][1] == DESCENDING)]
    else:
        stages += unfold()
        late_sort = [{"$sort": dict(sort)}]
    match = to_filter(spec)
    if match:
        stages.append({"$match": match})
    stages += late_sort
    if spec.start:
        stages.append({"$skip": spec.start})
    if spec.stop is not None:
        stages.append({"$limit": max(spec.stop - spec.start, 1)})
    return stages


def _steps_counted(spec: QuerySpec) -> dict[str, Any] | None:
    """How many of a stored document's events meet the conditions of ``spec`` on a step's
    fields (an aggregation expression), where they are all equalities or ``in`` lists;
    else None."""
    on_steps = [c for c in spec.conditions if _path(c.field) in STEP_FIELDS]
    if any(c.op not in ("eq", "in") for c in on_steps):
        return None

    def holds(step: str) -> dict[str, Any]:
        tests = []
        for c in on_steps:
            ((path, value),) = _clauses(spec.resource, c)[0].items()
            wanted = value["$in"] if c.op == "in" else value
            tests.append({"$in" if c.op == "in" else "$eq": [f"{step}{path}", wanted]})
        return {"$and": tests} if tests else {"$literal": True}

    later = {"$filter": {"input": {"$ifNull": [f"${THEN}", []]}, "as": "s", "cond": holds("$$s.")}}
    return {"$add": [{"$cond": [holds("$"), 1, 0]}, {"$size": later}]}


def _event_count(spec: QuerySpec) -> list[dict[str, Any]]:
    """The aggregation counting the events ``spec`` asks for (as ``{"n": ...}``): each
    matching document's matching steps added up, nothing unfolded, where
    :func:`_steps_counted` can check the steps in place; else the events unfolded."""
    steps = None if spec.windowed else _steps_counted(spec)
    if steps is None:
        return [*event_stages(spec, ordered=False, only=()), {"$count": "n"}]
    on_document = [c for c in spec.conditions if _path(c.field) not in STEP_FIELDS]
    match = to_filter(QuerySpec(spec.resource, tuple(on_document)))
    on_steps = (c for c in spec.conditions if _path(c.field) in STEP_FIELDS)
    pre = stored_match(clause for c in on_steps for clause in _clauses(spec.resource, c))
    match = {"$and": [match, pre]} if match and pre else match or pre
    return [
        *([{"$match": match}] if match else []),
        {"$group": {"_id": None, "n": {"$sum": steps}}},
    ]


class QueryRepository:
    """Runs :class:`QuerySpec` queries on any resource and returns its domain models."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._db = db

    def _coll(self, spec: QuerySpec) -> AsyncCollection[dict[str, Any]]:
        return self._db[COLLECTIONS[spec.resource]]

    async def _docs(
        self,
        spec: QuerySpec,
        projection: Mapping[str, Any] | None = None,
        session: AsyncClientSession | None = None,
        batch_size: int = 0,
    ) -> AsyncIterator[dict[str, Any]]:
        """The matching stored documents, in order (for events: one per event)."""
        if spec.resource == "events":
            pipeline = event_stages(spec, ordered=True, only=projection)
            cursor = await self._coll(spec).aggregate(
                pipeline, session=session, allowDiskUse=True, batchSize=batch_size or None
            )
            async for d in cursor:
                yield d
            return
        found = self._coll(spec).find(to_filter(spec), projection, session=session)
        found = found.sort(to_sort(spec))
        if spec.start:
            found = found.skip(spec.start)
        if spec.stop is not None:
            found = found.limit(max(spec.stop - spec.start, 0))
        if batch_size:
            found = found.batch_size(batch_size)
        async for d in found:
            yield d

    async def find(self, spec: QuerySpec) -> list[Any]:
        """The matching documents as models, in order."""
        if spec.stop is not None and spec.stop <= spec.start:
            return []
        model = MODELS[spec.resource]
        return [model.from_doc(d) async for d in self._docs(spec)]

    async def iterate(self, spec: QuerySpec, *, batch_size: int = 2000) -> AsyncIterator[Any]:
        """The matching documents as models, streamed from one cursor."""
        if spec.stop is not None and spec.stop <= spec.start:
            return
        model = MODELS[spec.resource]
        async for d in self._docs(spec, batch_size=batch_size):
            yield model.from_doc(d)

    async def count(self, spec: QuerySpec) -> int:
        """How many documents match (within the window). A filtered count runs MongoDB's
        ``count`` command, which counts index entries alone where an index holds every
        condition. Without conditions the documents themselves are counted: the command
        would read the collection's statistics, which an unclean shutdown can leave off.
        Events are counted one per step (``domain.models.THEN``)."""
        if spec.stop is not None and spec.stop <= spec.start:
            return 0
        if spec.resource == "events":
            pipeline = _event_count(spec)
            async for d in await self._coll(spec).aggregate(pipeline, allowDiskUse=True):
                return int(d["n"])
            return 0
        options: dict[str, Any] = {}
        if spec.start:
            options["skip"] = spec.start
        if spec.stop is not None:
            options["limit"] = spec.stop - spec.start
        match = to_filter(spec)
        if not match:
            return await self._coll(spec).count_documents(match, **options)
        reply = await self._db.command("count", COLLECTIONS[spec.resource], query=match, **options)
        return int(reply["n"])

    async def project(
        self,
        spec: QuerySpec,
        fields: tuple[str, ...],
        *,
        session: AsyncClientSession | None = None,
    ) -> list[dict[str, Any]]:
        """Only ``fields`` (plus ``_id``) of the matching documents, raw."""
        if spec.stop is not None and spec.stop <= spec.start:
            return []
        projection = {f: 1 for f in fields} or {"_id": 1}  # an empty one would return all
        return [d async for d in self._docs(spec, projection, session)]

    async def values(self, spec: QuerySpec, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        """Only ``fields`` (names of ``domain.queries.FIELDS``) of the matching documents,
        as queries give them; nothing else is read."""
        paths = {name: _path(name) for name in fields}
        docs = await self.project(spec, tuple(paths.values()))
        return [
            {name: field_value(spec.resource, name, d.get(path)) for name, path in paths.items()}
            for d in docs
        ]

    async def _match(self, spec: QuerySpec, session: AsyncClientSession | None) -> dict[str, Any]:
        """A filter for the spec's documents; a windowed spec is resolved to its ids first."""
        if not spec.windowed:
            return to_filter(spec)
        ids = [d["_id"] for d in await self.project(spec, (), session=session)]
        return {"_id": {"$in": ids}}

    async def update(
        self,
        spec: QuerySpec,
        fields: Mapping[str, Any],
        *,
        session: AsyncClientSession | None = None,
    ) -> int:
        """Set ``fields`` (dotted paths allowed) on every match in one ``update_many``.

        Returns the number of documents matched. State changes are refused here: they
        go through the transition functions, which write their events.
        """
        if spec.resource in UNCHANGEABLE:
            raise QueryError(UNCHANGEABLE[spec.resource])
        guarded = sorted(set(fields) & GUARDED[spec.resource])
        if guarded:
            raise StoreError(f"{spec.resource}: {guarded} cannot be set by a plain update")
        values = {k: plain(v) for k, v in fields.items()}
        if spec.resource in STAMPED:
            values["last_update"] = utcnow()
        if not values:
            return 0
        match = await self._match(spec, session)
        result = await self._coll(spec).update_many(match, {"$set": values}, session=session)
        return int(result.matched_count)

    async def delete(self, spec: QuerySpec, *, session: AsyncClientSession | None = None) -> int:
        """Delete every match in one ``delete_many``; returns how many were deleted."""
        match = await self._match(spec, session)
        result = await self._coll(spec).delete_many(match, session=session)
        return int(result.deleted_count)
