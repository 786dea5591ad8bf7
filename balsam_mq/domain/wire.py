"""The JSON forms the HTTP gateway and its client exchange: queries, changes, their results.

A query travels as ``{"where": [[field, op, value], ...], "order": [...], "start": 0,
"stop": 100}``; each condition is checked again on arrival by the same function that
checks a ``filter()`` keyword (``queries.parse_condition``), so a query the SDK refuses
is refused by the gateway with the same message. Times travel as ISO 8601 text, states
as their names. A listing's URL takes the same filter keywords as query parameters
(``?state=RUNNING&tags=run:H2O&order_by=-id&limit=50``), converted by field kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, get_args

from pydantic_core import to_jsonable_python

from balsam_mq.domain.changes import Change, TransitionResult
from balsam_mq.domain.models import BatchJobState
from balsam_mq.domain.queries import (
    FIELDS,
    Condition,
    Kind,
    QuerySpec,
    Resource,
    check_fields,
    check_order,
    parse_condition,
)
from balsam_mq.domain.states import JobState
from balsam_mq.domain.storable import storable_key
from balsam_mq.errors import QueryError

RESOURCES: tuple[Resource, ...] = get_args(Resource)
MAX_PAGE = 1000  # documents per page of a query
MAX_CREATE = 1000  # jobs (or changes) per request; larger creations go in chunks
# words of a listing's URL that are not filters
WINDOW_PARAMS = frozenset({"order_by", "offset", "limit"})


def jsonable(value: Any) -> Any:
    """``value`` with times as ISO text and enums as their values."""
    return to_jsonable_python(value)


def resource(name: str) -> Resource:
    if name not in RESOURCES:
        raise QueryError(f"unknown resource {name!r}; known: {', '.join(RESOURCES)}")
    return name


# --- queries ------------------------------------------------------------------------------


def spec_to_wire(spec: QuerySpec) -> dict[str, Any]:
    return {
        "where": [[c.field, c.op, jsonable(c.value)] for c in spec.conditions],
        "order": list(spec.order),
        "start": spec.start,
        "stop": spec.stop,
    }


def spec_from_wire(res: Resource, data: Mapping[str, Any]) -> QuerySpec:
    """The query of ``data`` (see :func:`spec_to_wire`), every condition checked."""
    unknown = sorted(set(data) - {"where", "order", "start", "stop"})
    if unknown:
        raise QueryError(f"query: unknown field(s) {unknown}; known: where, order, start, stop")
    where = data.get("where") or []
    if not isinstance(where, list):
        raise QueryError("query.where: expected a list of [field, op, value]")
    conditions = []
    for i, item in enumerate(where):
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise QueryError(f"query.where[{i}]: expected [field, op, value], got {item!r}")
        field, op, value = item
        if not isinstance(field, str) or not isinstance(op, str):
            raise QueryError(f"query.where[{i}]: field and op must be text")
        conditions.append(_tag_names(_condition(res, field, op, value)))
    order = data.get("order") or []
    if not isinstance(order, list) or not all(isinstance(o, str) for o in order):
        raise QueryError("query.order: expected a list of field names")
    start = data.get("start", 0)
    stop = data.get("stop")
    if not _is_int(start) or start < 0:
        raise QueryError(f"query.start: expected an integer >= 0, got {start!r}")
    if stop is not None and (not _is_int(stop) or stop < 0):
        raise QueryError(f"query.stop: expected an integer >= 0 or null, got {stop!r}")
    return QuerySpec(res, tuple(conditions), check_order(res, order), start, stop)


def _condition(res: Resource, field: str, op: str, value: Any) -> Condition:
    kind = FIELDS[res].get(field)
    if kind is None:
        return parse_condition(res, field, value)  # the error names the known fields
    key = field if op in ("eq", "has") or kind in ("tags", "params", "ids") else f"{field}__{op}"
    return parse_condition(res, key, _decoded(res, field, kind, value))


def _tag_names(cond: Condition) -> Condition:
    """``cond``, unless it looks an entry (a tag, a parameter) up by a name no entry can
    have in MongoDB (empty, dotted or ``$``-led: a path MongoDB refuses or reads as
    nested fields)."""
    if cond.op == "has":
        for name in cond.value:
            if not storable_key(name):
                raise QueryError(
                    f"{cond.field} filter: {name!r} is not an entry name (empty, with '.', "
                    "or with a leading '$')"
                )
    return cond


def _decoded(res: Resource, field: str, kind: Kind, value: Any) -> Any:
    if isinstance(value, list):
        return [_decoded(res, field, kind, v) for v in value]
    if kind == "time" and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise QueryError(f"{res} filter {field!r}: {value!r} is not an ISO 8601 time") from None
    return value


def spec_from_params(res: Resource, params: Sequence[tuple[str, str]]) -> QuerySpec:
    """The query of a listing's URL parameters: filter keywords (repeated for "any of"),
    ``order_by`` (comma-separated), ``offset`` and ``limit``."""
    values: dict[str, list[str]] = {}
    for key, text in params:
        values.setdefault(key, []).append(text)
    conditions = []
    for key, texts in values.items():
        if key in WINDOW_PARAMS:
            continue
        name = key.partition("__")[0]
        kind = FIELDS[res].get(name)
        typed = [_typed(res, key, kind, t) for t in texts]
        condition = parse_condition(res, key, typed if len(typed) > 1 else typed[0])
        conditions.append(_tag_names(condition))
    order = [o for text in values.get("order_by", []) for o in text.split(",") if o]
    offset = _int_param("offset", values.get("offset", ["0"])[-1])
    limit = values.get("limit")
    stop = None if limit is None else offset + _int_param("limit", limit[-1])
    return QuerySpec(res, tuple(conditions), check_order(res, order), offset, stop)


def _typed(res: Resource, key: str, kind: Kind | None, text: str) -> Any:
    if kind in ("int", "ids"):
        try:
            return int(text)
        except ValueError:
            raise QueryError(f"{res} filter {key!r}: expected an integer, got {text!r}") from None
    if kind == "time":
        return _decoded(res, key, kind, text)
    return text


def _int_param(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name}: expected an integer, got {text!r}") from None
    if value < 0:
        raise QueryError(f"{name}: expected an integer >= 0, got {value}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- values() rows --------------------------------------------------------------------------


def fields_from_wire(res: Resource, fields: Any) -> tuple[str, ...]:
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise QueryError("fields: expected a list of field names")
    return check_fields(res, fields)


def values_from_wire(
    res: Resource, fields: Iterable[str], rows: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """``values()`` rows as the direct backend gives them (times, states typed again)."""
    kinds = {f: FIELDS[res][f] for f in fields}
    return [{f: _typed_value(kinds[f], row.get(f)) for f in kinds} for row in rows]


def _typed_value(kind: Kind, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return datetime.fromisoformat(value)
    if kind == "state":
        return JobState(value)
    if kind == "bstate":
        return BatchJobState(value)
    return value


# --- transitions --------------------------------------------------------------------------


def change_to_wire(change: Change) -> dict[str, Any]:
    return {
        "job_id": change.job_id,
        "expect": change.expect.value,
        "to": change.to.value,
        "state_data": jsonable(change.state_data),
        "fields": jsonable(change.fields),
    }


def result_to_wire(result: TransitionResult) -> dict[str, Any]:
    return {
        "moved": result.moved,
        "unmoved": {str(k): None if v is None else v.value for k, v in result.unmoved.items()},
        "final": {str(k): v.value for k, v in result.final.items()},
    }


def result_from_wire(data: Mapping[str, Any]) -> TransitionResult:
    return TransitionResult(
        moved=list(data["moved"]),
        unmoved={int(k): None if v is None else JobState(v) for k, v in data["unmoved"].items()},
        final={int(k): JobState(v) for k, v in data["final"].items()},
    )
