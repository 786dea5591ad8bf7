"""What a query may ask for: the filterable fields of each resource, and the query as data.

A :class:`QuerySpec` is what the SDK hands to its backend. Field names and operators
are checked here, when the query is built; the translation to MongoDB lives in ``store/queries.py``.

Filter keywords are ``field`` or ``field__op`` with op one of ``in``, ``ne``, ``nin``,
``gt``, ``gte``, ``lt``, ``lte``, ``contains`` (text fields). For jobs, ``tags`` and
``parameters`` take a dict of entries the job must have (``None``: the key is present),
or ``"key:value"`` / ``"key"`` strings (a parameter's value is read as JSON where it
parses: ``"x:5"`` is 5, ``'x:"5"'`` the text); ``parent_id`` matches any of the parents.
A list, tuple or set given to a plain ``field`` means "any of these".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from balsam_mq.domain.models import App, BatchJob, BatchJobState, Event, Job, Site, TransferItem
from balsam_mq.domain.states import JobState, parse_state
from balsam_mq.domain.storable import is_json_value
from balsam_mq.errors import QueryError

Resource = Literal["jobs", "sites", "apps", "batch_jobs", "events", "transfer_items"]
Op = Literal["eq", "in", "ne", "nin", "gt", "gte", "lt", "lte", "contains", "has"]

# field kinds decide which operators and values are accepted
Kind = Literal["int", "str", "time", "state", "bstate", "tags", "params", "ids", "bool", "oid"]

FIELDS: dict[Resource, dict[str, Kind]] = {
    "jobs": {
        "id": "int",
        "app_id": "int",
        "site_id": "int",
        "batch_job_id": "int",
        "session_id": "int",
        "owner": "str",
        "workdir": "str",
        "state": "state",
        "return_code": "int",
        "last_update": "time",
        "created_at": "time",
        "parent_ids": "ids",
        "tags": "tags",
        "parameters": "params",
    },
    "sites": {
        "id": "int",
        "name": "str",
        "hostname": "str",
        "path": "str",
        "owner": "str",
        "created_at": "time",
    },
    "apps": {
        "id": "int",
        "site_id": "int",
        "name": "str",
        "description": "str",
        "last_update": "time",
    },
    "batch_jobs": {
        "id": "int",
        "site_id": "int",
        "scheduler_id": "str",
        "project": "str",
        "queue": "str",
        "job_mode": "str",
        "state": "bstate",
        "num_nodes": "int",
        "created_at": "time",
        "start_time": "time",
        "end_time": "time",
    },
    "events": {
        "id": "oid",
        "kind": "str",
        "site_id": "int",
        "job_id": "int",
        "app_id": "int",
        "batch_job_id": "int",
        "from_state": "str",
        "to_state": "str",
        "seq": "int",
        "by": "str",
        "timestamp": "time",
    },
    "transfer_items": {
        "id": "oid",
        "job_id": "int",
        "site_id": "int",
        "slot": "str",
        "direction": "str",
        "location": "str",
        "protocol": "str",
        "state": "str",
        "task_id": "str",
        "failures": "int",
        "last_update": "time",
    },
}

# the model of each resource's documents
MODELS: dict[Resource, Any] = {
    "jobs": Job,
    "sites": Site,
    "apps": App,
    "batch_jobs": BatchJob,
    "events": Event,
    "transfer_items": TransferItem,
}

# fields a plain update may not set: ids, and states (their changes go through a
# transition, which writes their events)
GUARDED: dict[Resource, frozenset[str]] = {
    "jobs": frozenset({"state", "_id", "id"}),
    "batch_jobs": frozenset({"state", "_id", "id"}),
    "events": frozenset({"_id", "id"}),
    "transfer_items": frozenset({"_id", "id"}),
    "sites": frozenset({"_id", "id"}),
    "apps": frozenset({"_id", "id", "site_id", "name"}),
}
# resources whose documents are records nobody deletes, and why
UNDELETABLE: dict[Resource, str] = {
    "events": "the event log is append-only: events cannot be deleted",
    "transfer_items": "transfer items are the site's record of its transfers: "
    "they cannot be deleted",
}
# resources whose documents no plain update may change, and why
UNCHANGEABLE: dict[Resource, str] = {
    "events": "the event log is append-only: events cannot be changed",
}
# resources whose documents get a new last_update with every update
STAMPED: frozenset[Resource] = frozenset({"jobs", "apps"})
# Balsam's spellings, kept so its scripts work unchanged
ALIASES: dict[str, str] = {
    "parent_id": "parent_ids",
    "last_update_before": "last_update__lt",
    "last_update_after": "last_update__gt",
    "timestamp_before": "timestamp__lt",
    "timestamp_after": "timestamp__gt",
    "created_before": "created_at__lt",
    "created_after": "created_at__gt",
}

_OPS: frozenset[str] = frozenset(
    {"eq", "in", "ne", "nin", "gt", "gte", "lt", "lte", "contains", "has"}
)
_RANGE_KINDS: frozenset[str] = frozenset({"int", "time", "str", "oid"})
# dict fields filtered by their entries (op ``has``): tags hold text, parameters JSON values
_KEYED: tuple[Kind, ...] = ("tags", "params")


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: Any


@dataclass(frozen=True)
class QuerySpec:
    """A query as data: conditions (all must hold), ordering, and a ``[start:stop]`` window."""

    resource: Resource
    conditions: tuple[Condition, ...] = ()
    order: tuple[str, ...] = ()  # field names, "-" prefix for descending
    start: int = 0
    stop: int | None = None

    @property
    def windowed(self) -> bool:
        return self.start > 0 or self.stop is not None


def parse_condition(resource: Resource, key: str, value: Any) -> Condition:
    """One ``filter(key=value)`` keyword as a checked :class:`Condition`."""
    key = ALIASES.get(key, key)
    name, _, op_text = key.partition("__")
    fields = FIELDS[resource]
    if name not in fields:
        known = ", ".join(sorted(set(fields) | {a for a, t in ALIASES.items() if t in fields}))
        raise QueryError(f"{resource} cannot be filtered by {name!r}; known fields: {known}")
    kind = fields[name]
    if op_text and op_text not in _OPS:
        raise QueryError(f"{resource} filter {key!r}: unknown operator {op_text!r}")
    op = cast(Op, op_text or "eq")
    if kind == "tags":
        return Condition(name, "has", _tags(value))
    if kind == "params":
        return Condition(name, "has", _params(value))
    if kind == "ids":  # any of the listed ids is among the field's ids
        return Condition(name, "in", _ints(key, _listed(value)))
    if op in ("gt", "gte", "lt", "lte") and kind not in _RANGE_KINDS:
        raise QueryError(f"{resource} filter {key!r}: {name} has no ordering")
    if op == "contains":
        if kind != "str" or not isinstance(value, str):
            raise QueryError(f"{resource} filter {key!r}: contains needs a text field and a str")
        return Condition(name, "contains", value)
    many = isinstance(value, list | tuple | set | frozenset)
    if op == "eq" and many:
        op = "in"
    elif op == "ne" and many:
        op = "nin"
    if op in ("in", "nin"):
        values = [_value(resource, key, kind, v) for v in _listed(value)]
        return Condition(name, op, values)
    return Condition(name, op, _value(resource, key, kind, value))


def check_fields(resource: Resource, fields: Iterable[str]) -> tuple[str, ...]:
    """Fields a query may return alone (``values()``): those it may filter by."""
    out = tuple(fields)
    for name in out:
        if name not in FIELDS[resource]:
            known = ", ".join(sorted(FIELDS[resource]))
            raise QueryError(f"{resource} has no field {name!r} to return; fields: {known}")
    if not out:
        raise QueryError(f"{resource}: name the fields to return")
    return out


def field_value(resource: Resource, name: str, stored: Any) -> Any:
    """A stored field value as queries give it (states as enums, event ids as text)."""
    if stored is None:
        return None
    kind = FIELDS[resource][name]
    if kind == "state":
        return JobState(stored)
    if kind == "bstate":
        return BatchJobState(stored)
    if kind == "oid":
        return str(stored)
    return stored


def check_order(resource: Resource, fields: Iterable[str]) -> tuple[str, ...]:
    out = []
    for f in fields:
        name = f.removeprefix("-")
        if FIELDS[resource].get(name) in (None, *_KEYED, "ids"):
            known = ", ".join(orderable(resource))
            raise QueryError(f"{resource} cannot be ordered by {name!r}; fields: {known}")
        out.append(f)
    return tuple(out)


def orderable(resource: Resource) -> list[str]:
    """The fields ``order_by`` accepts for ``resource``."""
    return sorted(f for f, kind in FIELDS[resource].items() if kind not in (*_KEYED, "ids"))


def matches(conditions: Iterable[Condition], values: Mapping[str, Any]) -> bool:
    """Whether a document's ``values`` (its fields, ``id`` included) meet every condition,
    with the meaning the store gives them: for checking live events against a filter."""
    return all(_holds(c, values.get(c.field)) for c in conditions)


def _holds(cond: Condition, value: Any) -> bool:
    wanted = cond.value
    if cond.op == "has":
        entries = value if isinstance(value, Mapping) else {}
        return all(k in entries and (v is None or entries[k] == v) for k, v in wanted.items())
    if isinstance(value, list) and cond.op in ("eq", "in"):  # a list field: any element
        return any(_holds(cond, v) for v in value)
    if cond.op == "eq":
        return bool(value == wanted)
    if cond.op == "in":
        return value in wanted
    if cond.op == "ne":
        return bool(value != wanted)
    if cond.op == "nin":
        return value not in wanted
    if cond.op == "contains":
        return isinstance(value, str) and wanted in value
    if value is None:
        return False
    try:
        if cond.op == "gt":
            return bool(value > wanted)
        if cond.op == "gte":
            return bool(value >= wanted)
        if cond.op == "lt":
            return bool(value < wanted)
        return bool(value <= wanted)
    except TypeError:
        return False


def _listed(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]


def _ints(key: str, values: list[Any]) -> list[int]:
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise QueryError(f"filter {key!r}: expected integer ids, got {v!r}")
    return values


def _value(resource: str, key: str, kind: Kind, value: Any) -> Any:
    if kind == "state":
        try:
            return JobState(parse_state(str(value)))
        except ValueError as exc:
            raise QueryError(f"{resource} filter {key!r}: {exc}") from None
    if kind == "bstate":
        try:
            return BatchJobState(str(value))
        except ValueError:
            names = ", ".join(s.value for s in BatchJobState)
            raise QueryError(
                f"{resource} filter {key!r}: unknown state {value!r}; known: {names}"
            ) from None
    if kind == "int":
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise QueryError(f"{resource} filter {key!r}: expected an integer, got {value!r}")
    elif kind == "time":
        if not isinstance(value, datetime):
            raise QueryError(f"{resource} filter {key!r}: expected a datetime, got {value!r}")
    elif kind in ("str", "oid") and value is not None and not isinstance(value, str):
        raise QueryError(f"{resource} filter {key!r}: expected a str, got {value!r}")
    return value


def _tags(value: Any) -> dict[str, str | None]:
    """Tags as ``{key: value}``; ``None`` means "the key is present"."""
    if isinstance(value, dict):
        return {str(k): None if v is None else str(v) for k, v in value.items()}
    out: dict[str, str | None] = {}
    for item in _listed(value):
        if not isinstance(item, str):
            raise QueryError(f"tags filter: expected a dict or 'key:value' strings, got {item!r}")
        k, sep, v = item.partition(":")
        out[k] = v if sep else None
    return out


def _params(value: Any) -> dict[str, Any]:
    """Parameter entries as ``{name: JSON value}``; ``None`` means "the parameter is given"."""
    if isinstance(value, dict):
        out = dict(value)
    else:
        out = {}
        for item in _listed(value):
            if not isinstance(item, str):
                raise QueryError(
                    f"parameters filter: expected a dict or 'name:value' strings, got {item!r}"
                )
            k, sep, text = item.partition(":")
            out[k] = json_or_text(text) if sep else None
    for k, v in out.items():
        if not isinstance(k, str) or (v is not None and not is_json_value(v)):
            raise QueryError(
                f"parameters filter {k!r}: only JSON values (text, numbers, true/false, "
                f"lists, dicts) are stored queryably, got {v!r}"
            )
    return out


def json_or_text(text: str) -> Any:
    """``text`` read as JSON where it parses (``5``, ``true``, ``[1, 2]``), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
