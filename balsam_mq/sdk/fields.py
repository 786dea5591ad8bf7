"""Job fields as users see them and as they are stored — the one field table — with their
checks and conversions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from balsam_mq.domain import Job as JobDocument, Resources
from balsam_mq.domain.serialization import serialize_parameters
from balsam_mq.errors import JobError, QueryError

# --- the field table: the SDK Job's attributes, derived from the stored model -----------

RESOURCE_FIELDS: tuple[str, ...] = tuple(Resources.model_fields)
# stored fields that are not attributes of their own: the id is ``_id`` in the store,
# ``parameters`` are deserialized on access, each resource field is an attribute,
# ``result``/``exception`` come from ``result()``, and a new ``state`` is checked
_NOT_ATTRIBUTES = frozenset({"id", "parameters", "resources", "result", "exception", "state"})
# attribute -> its path in the stored document
PATHS: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in JobDocument.model_fields if name not in _NOT_ATTRIBUTES},
    **{name: ("resources", name) for name in RESOURCE_FIELDS},
}
# attributes a new job is given (keywords of ``Job(...)`` and of ``App.submit(...)``)
NEW_JOB_FIELDS: tuple[str, ...] = ("tags", "data", "parent_ids", "transfers", *RESOURCE_FIELDS)
# attributes a user may change and save; compared with the snapshot taken at load time
TRACKED: tuple[str, ...] = (
    "workdir",
    "tags",
    "data",
    "transfers",
    "state_data",
    "return_code",
    "batch_job_id",
    *RESOURCE_FIELDS,
)
_EDITABLE = frozenset({*TRACKED, "parameters"})
_ENTRY_FIELDS = frozenset({"tags", "data"})  # dicts whose entries can be set one by one


def clone(value: Any) -> Any:
    """A copy of JSON-like data, deep enough to notice in-place changes later."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


_EMPTY = object()  # snapshot of an empty dict or list: nothing to copy


_ATOMS = frozenset({str, int, float, bool, type(None)})


def snapshot(value: Any) -> Any:
    """What :func:`unchanged` compares a field with later."""
    kind = type(value)
    if kind in _ATOMS:  # most fields: nothing to copy
        return value
    if (kind is dict or kind is list) and not value:
        return _EMPTY
    return clone(value)


def unchanged(current: Any, saved: Any) -> bool:
    if saved is _EMPTY:
        return type(current) in (dict, list) and not current
    return bool(current == saved)


def check_strings(label: str, field: str, value: Mapping[str, Any] | None) -> dict[str, str]:
    """A ``str -> str`` mapping (tags, transfers), copied."""
    out = dict(value or {})
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise JobError(f"{label}: {field} must map str to str, got {k!r}: {v!r}")
    return out


def check_ids(label: str, value: Any) -> list[int]:
    out = list(value or [])
    for v in out:
        if not isinstance(v, int) or isinstance(v, bool):
            raise JobError(f"{label}: parent_ids must be job ids (int), got {v!r}")
    return out


def field_updates(fields: Mapping[str, Any], label: str = "Job") -> dict[str, Any]:
    """User field values as stored field paths and values, each checked.

    ``num_nodes`` becomes ``resources.num_nodes``; ``parameters`` is serialized.
    ``tags.<key>`` and ``data.<key>`` set one entry and keep the others.
    ``state`` is not a field: it changes by transition.
    """
    out: dict[str, Any] = {}
    for name, value in fields.items():
        field, dot, key = name.partition(".")
        if dot and field in _ENTRY_FIELDS:
            if not key or "." in key or key.startswith("$"):
                raise QueryError(f"{label}: {name!r}: an entry key is one word without '.' or '$'")
            if field in fields:
                raise QueryError(f"{label}: {field!r} and {name!r} cannot be set together")
            if field == "tags" and not isinstance(value, str):
                raise JobError(f"{label}: tags must map str to str, got {key!r}: {value!r}")
            if field == "data":
                _check_field(label, "data", {key: value})
            out[name] = value
            continue
        if name not in _EDITABLE:
            allowed = ", ".join(sorted(_EDITABLE | {"state", "tags.<key>", "data.<key>"}))
            raise QueryError(f"{label}: field {name!r} cannot be updated; fields: {allowed}")
        if name == "parameters":
            out[name] = serialize_parameters(dict(value), what=f"{label} parameters")
        elif name in RESOURCE_FIELDS:
            checked = check_resources(label, **{name: value})
            out[f"resources.{name}"] = getattr(checked, name)
        else:
            _check_field(label, name, value)
            out[name] = value
    return out


_PROBE = {"app_id": 0, "site_id": 0, "workdir": "x"}


def _check_field(label: str, name: str, value: Any) -> None:
    if name == "workdir":
        check_workdir(value)
        return
    try:
        JobDocument.model_validate({**_PROBE, name: value})
    except ValidationError as exc:
        raise JobError(f"{label}: {first_error(exc)}") from None


def check_resources(label: str, **values: Any) -> Resources:
    try:
        return Resources(**values)
    except ValidationError as exc:
        raise JobError(f"{label}: {first_error(exc)}") from None


_STORED_RESOURCES: dict[tuple[Any, ...], dict[str, Any]] = {}
_REMEMBERED = 1024  # distinct resource requests kept


def stored_resources(label: str, values: tuple[Any, ...]) -> dict[str, Any]:
    """The ``resources`` document of a job whose :data:`RESOURCE_FIELDS` have ``values``,
    checked by :class:`Resources`. Remembered per distinct values (the jobs of a bulk
    creation mostly share theirs), so the dict returned is shared: never change it."""
    try:
        key = tuple((type(v), tuple(v.items()) if type(v) is dict else v) for v in values)
        stored = _STORED_RESOURCES.get(key)
    except TypeError:  # unhashable values: checked below, and not remembered
        key, stored = None, None
    if stored is None:
        checked = check_resources(label, **dict(zip(RESOURCE_FIELDS, values, strict=True)))
        stored = checked.model_dump()
        if key is not None:
            if len(_STORED_RESOURCES) >= _REMEMBERED:
                _STORED_RESOURCES.clear()
            _STORED_RESOURCES[key] = stored
    return stored


def check_container(label: str, field: str, value: Any) -> None:
    """Refuse a dict field that is not a mapping, or ``parent_ids`` that is not a list."""
    kind, name = (list | tuple, "list") if field == "parent_ids" else (Mapping, "dict")
    if not isinstance(value, kind):
        raise JobError(f"{label}: {field} must be a {name}, got {type(value).__name__}")


def check_data(label: str, value: Any) -> None:
    """``data`` of a job: a dict with str keys (its values are for MongoDB to store)."""
    check_container(label, "data", value)
    for k in value:
        if not isinstance(k, str):
            raise JobError(f"{label}: data keys must be str, got {k!r}")


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "value"
    return f"field {field!r}: {err['msg']}"


def check_workdir(workdir: Any) -> str:
    """A workdir as a site resolves it: a relative POSIX path that stays below ``data/``."""
    if not isinstance(workdir, str) or not workdir.strip():
        raise JobError(f"Job workdir must be a non-empty relative path, got {workdir!r}")
    if workdir.startswith("/") or ".." in workdir.split("/"):
        raise JobError(f"Job workdir {workdir!r} must be relative to the site's data directory")
    return workdir
