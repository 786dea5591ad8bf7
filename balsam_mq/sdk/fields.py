"""Job fields as users see them and as they are stored — the one field table — with their
checks and conversions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from balsam_mq.domain import Job as JobDocument, Resources
from balsam_mq.domain.serialization import serialize_parameters
from balsam_mq.domain.storable import described, storage_problem
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
# a job's own retry policy, overriding its app's (None: the app's)
RETRY_FIELDS: tuple[str, ...] = ("max_retries", "retry_backoff_s")
# attributes a new job is given (keywords of ``Job(...)`` and of ``App.submit(...)``)
NEW_JOB_FIELDS: tuple[str, ...] = (
    "tags",
    "data",
    "parent_ids",
    "transfers",
    *RETRY_FIELDS,
    *RESOURCE_FIELDS,
)
# stored fields a new job's creator gives it (its site is its app's; the rest the store sets)
CREATED_FIELDS: tuple[str, ...] = (
    "app_id",
    "workdir",
    "parameters",
    "resources",
    *(f for f in NEW_JOB_FIELDS if f not in RESOURCE_FIELDS),
)
# attributes a user may change and save; compared with the snapshot taken at load time
TRACKED: tuple[str, ...] = (
    "workdir",
    "tags",
    "data",
    "transfers",
    "state_data",
    "return_code",
    "batch_job_id",
    *RETRY_FIELDS,
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


def check_strings(label: str, field: str, value: Any) -> None:
    """A ``str -> str`` mapping (tags, transfers)."""
    problem = _strings_problem(field, value)
    if problem is not None:
        raise JobError(f"{label}: {problem}")


def check_ids(label: str, value: Any) -> None:
    """``parent_ids``: a list of job ids."""
    problem = _ids_problem(value)
    if problem is not None:
        raise JobError(f"{label}: {problem}")


def check_data(label: str, value: Any) -> None:
    """``data`` of a job: a mapping with str keys that MongoDB can store, at most
    ``domain.storable.DATA_LIMIT`` bytes as stored."""
    problem = _data_problem("data", value)
    if problem is not None:
        raise JobError(f"{label}: {problem}")


def check_field(label: str, name: str, value: Any) -> None:
    """Refuse ``value`` for the attribute ``name`` (see :func:`field_problem`)."""
    problem = field_problem(name, value)
    if problem is not None:
        raise JobError(f"{label}: {problem}")


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as the job attribute ``name`` (a row of :data:`PATHS`),
    naming the field; ``None`` if it can be stored. The one check of a value a user assigns
    or saves, or a hook leaves on its job."""
    if name == "workdir":
        return workdir_problem(value)
    if name in ("tags", "transfers"):
        return _strings_problem(name, value)
    if name in ("data", "state_data"):
        return _data_problem(name, value)
    if name == "parent_ids":
        return _ids_problem(value)
    try:
        if name in RESOURCE_FIELDS:
            Resources(**{name: value})
        else:
            JobDocument.model_validate({**_PROBE, name: value})
    except ValidationError as exc:
        return first_error(exc)
    return None


def _strings_problem(field: str, value: Any) -> str | None:
    if type(value) is not dict and not isinstance(value, Mapping):  # most often a dict
        return f"{field} must be a mapping of str to str, got {described(value)}"
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:  # the common case, without isinstance
            if not isinstance(k, str) or not isinstance(v, str):
                return f"{field} must map str to str, got {k!r}: {v!r}"
        if not k or "." in k or k[0] == "$":  # a key queries and updates could not name
            return f"{field} key {k!r} must be non-empty, without '.' and not start with '$'"
    return None


def _ids_problem(value: Any) -> str | None:
    if type(value) is not list and not isinstance(value, list | tuple):
        return f"parent_ids must be a list of job ids, got {described(value)}"
    for v in value:
        if type(v) is not int and (not isinstance(v, int) or isinstance(v, bool)):
            return f"parent_ids must be job ids (int), got {v!r}"
    return None


def _data_problem(field: str, value: Any) -> str | None:
    if type(value) is not dict and not isinstance(value, Mapping):
        return f"{field} must be a mapping with str keys, got {described(value)}"
    return storage_problem(field, value)  # keys included


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
                check_data(label, {key: value})
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
            check_field(label, name, value)
            out[name] = value
    return out


_PROBE = {"app_id": 0, "site_id": 0, "workdir": "x"}


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


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "string_type": "a string"}


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "value"
    expected = _EXPECTED.get(err["type"])
    if expected is not None:
        return f"field {field!r}: expected {expected}, got {described(err['input'])}"
    return f"field {field!r}: {err['msg']}"


def workdir_problem(workdir: Any) -> str | None:
    """What makes ``workdir`` no path below a site's ``data/`` (``None``: nothing), as far as
    its text tells; symlinks on the site's disk are for ``sdk.workdirs``."""
    if not isinstance(workdir, str) or not workdir.strip():
        return f"workdir must be a non-empty relative path, got {workdir!r}"
    if "\x00" in workdir:
        return f"workdir {workdir!r} contains a NUL character"
    if workdir.startswith("/") or ".." in workdir.split("/"):
        return f"workdir {workdir!r} must be relative to the site's data directory"
    return None


def check_workdir(workdir: Any) -> str:
    """A workdir as a site resolves it: a relative POSIX path that stays below ``data/``."""
    problem = workdir_problem(workdir)
    if problem is not None:
        raise JobError(f"Job {problem}")
    return str(workdir)
