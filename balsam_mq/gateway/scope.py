"""What a caller owns, and what a caller's writes may contain.

A site belongs to the user who created it through the gateway; its apps, jobs, batch
jobs and events belong to the site's owner (only the owner syncs apps to a site or
creates jobs on it, so everything on a site is its owner's). Every query a caller sends
is narrowed to the caller's sites; an object outside them does not exist for the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from balsam_mq.domain import App, BatchJob, Job, Resources, Site
from balsam_mq.domain.models import plain
from balsam_mq.domain.queries import GUARDED, MODELS, Condition, QuerySpec, Resource
from balsam_mq.domain.serialization import MAX_BYTES, stored_parameters_problem
from balsam_mq.errors import NotFound, QueryError
from balsam_mq.sdk.fields import CREATED_FIELDS, PATHS, TRACKED, field_problem, first_error
from balsam_mq.store import Store

# the top-level fields a caller may set with a plain update, per resource: a job's user
# attributes (the SDK's field table), and everything but identity, ownership and
# placement (a site id: moving a document onto a site is writing to it) elsewhere
_SERVER_SET = frozenset({"id", "_id", "owner", "site_id", "created_at", "last_update"})
UPDATABLE: dict[Resource, frozenset[str]] = {
    "jobs": frozenset({PATHS[name][0] for name in TRACKED} | {"parameters"}),
    "sites": frozenset(Site.model_fields) - _SERVER_SET,
    "apps": frozenset(App.model_fields) - _SERVER_SET - GUARDED["apps"],
    "batch_jobs": frozenset(BatchJob.model_fields) - _SERVER_SET - GUARDED["batch_jobs"],
    "events": frozenset(),  # the event log is append-only
    "transfer_items": frozenset(),  # the site's record of its transfers
}
# stored job path -> the SDK attribute whose check applies to it
_ATTRIBUTE = {path: name for name, path in PATHS.items()}


class Scope:
    """One request's caller and the ids of the sites the caller owns (read once)."""

    def __init__(self, user: str, store: Store) -> None:
        self.user = user
        self._store = store
        self._site_ids: list[int] | None = None

    async def site_ids(self) -> list[int]:
        if self._site_ids is None:
            docs = self._store.db["sites"].find({"owner": self.user}, {"_id": 1})
            self._site_ids = sorted([d["_id"] async for d in docs])
        return self._site_ids

    async def narrow(self, spec: QuerySpec) -> QuerySpec:
        """``spec`` limited to what the caller owns."""
        if spec.resource == "sites":
            mine = Condition("owner", "eq", self.user)
        else:
            mine = Condition("site_id", "in", await self.site_ids())
        return replace(spec, conditions=(*spec.conditions, mine))

    async def own_site(self, site_id: int) -> None:
        """:class:`NotFound` unless the caller owns site ``site_id``."""
        if site_id not in await self.site_ids():
            raise NotFound(f"Site {site_id} does not exist")


def one(resource: Resource, object_id: int | str) -> QuerySpec:
    return QuerySpec(resource, (Condition("id", "eq", object_id),))


# --- request bodies derived from the domain models ----------------------------------------


def body_model(name: str, model: type[BaseModel], fields: tuple[str, ...]) -> type[BaseModel]:
    """A request body of ``fields`` of ``model`` (same types, constraints and defaults),
    refusing any other field."""
    definitions: dict[str, Any] = {
        f: (model.model_fields[f].annotation, model.model_fields[f]) for f in fields
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **definitions)


SiteCreate = body_model("SiteCreate", Site, ("name", "hostname", "path", "settings", "owner"))
AppSync = body_model(
    "AppSync", App, tuple(f for f in App.model_fields if f not in ("id", "last_update"))
)
BatchJobCreate = body_model(
    "BatchJobCreate",
    BatchJob,
    ("site_id", "project", "queue", "num_nodes", "wall_time_min", "job_mode", "filter_tags"),
)
JobCreate = body_model("JobCreate", Job, CREATED_FIELDS)


def job_problem(job: Any) -> str | None:
    """What is wrong with a new job's fields beyond their types, naming the field."""
    for name in ("workdir", "tags", "data", "parent_ids", "transfers"):
        problem = field_problem(name, getattr(job, name))
        if problem is not None:
            return problem
    return parameters_problem(job.parameters)


def parameters_problem(stored: Any) -> str | None:
    """Stored parameters must be a dict of JSON values and dill texts within the size
    limit: checked without loading anything (``serialization.peek`` runs none of the
    payload's code)."""
    problem = stored_parameters_problem(stored)
    return None if problem is None else f"parameters: {problem}"


def size_problem(field: str, text: str) -> str | None:
    if len(text) > MAX_BYTES:
        return f"{field} takes {len(text):,} bytes serialized, over the limit of {MAX_BYTES:,}"
    return None


# --- plain updates ---------------------------------------------------------------------------


def checked_update(resource: Resource, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` of a plain update, each allowed for the caller and of its field's type,
    in stored form; :class:`QueryError` naming the first that is not."""
    allowed = UPDATABLE[resource]
    out: dict[str, Any] = {}
    for key, value in fields.items():
        top = key.split(".", 1)[0]
        if top not in allowed:
            listed = ", ".join(sorted(allowed)) or "none (append-only)"
            raise QueryError(f"{resource}: {key!r} cannot be updated; updatable fields: {listed}")
        problem = _path_problem(key) or _value_problem(resource, key, value)
        if problem is not None:
            raise QueryError(f"{resource} update {key!r}: {problem}")
        out[key] = plain(_typed(resource, key, value))
    return out


def _path_problem(key: str) -> str | None:
    if any(not part or part.startswith("$") for part in key.split(".")):
        return "a field path is names joined by '.', none of them empty or led by '$'"
    return None


def _value_problem(resource: Resource, key: str, value: Any) -> str | None:
    if resource == "jobs":
        if key.partition(".")[0] == "parameters":
            if key != "parameters":
                return "parameters are replaced whole: update 'parameters'"
            return parameters_problem(value)
        if key == "resources":
            return resources_problem(value)
        name = _ATTRIBUTE.get(tuple(key.split(".")))
        if name is not None:
            return field_problem(name, value)
        top, _, entry = key.partition(".")
        if top in ("tags", "transfers") and "." in entry:
            return f"{top} entries are one level deep: '{top}.<name>'"
        if top in ("tags", "transfers") and not isinstance(value, str):
            return f"{top} entries must be str, got {type(value).__name__}"
        if top in ("data", "state_data"):
            return field_problem(top, {entry: value})
        return None
    if "." in key:
        return _entry_problem(resource, key, value)
    try:
        _adapter(resource, key).validate_python(value)
    except ValidationError as exc:
        return first_error(exc)
    return None


def _entry_problem(resource: Resource, key: str, value: Any) -> str | None:
    """An entry of a dict field (settings, parameters, filter_tags...): of the dict's value
    type, and one level deep unless the dict holds anything."""
    top, _, entry = key.partition(".")
    annotation = MODELS[resource].model_fields[top].annotation
    if get_origin(annotation) is not dict:
        return f"{top!r} has no entries: update it whole"
    item = get_args(annotation)[1]
    if item is Any:
        return None
    if "." in entry:
        return f"{top} entries are one level deep: '{top}.<name>'"
    try:
        TypeAdapter(item).validate_python(value)
    except ValidationError as exc:
        return first_error(exc)
    return None


def _typed(resource: Resource, key: str, value: Any) -> Any:
    """The value as the model holds it (times from ISO text, nested models as dicts)."""
    if "." in key or (resource == "jobs" and key != "resources"):
        return value
    typed = _adapter(resource, key).validate_python(value)
    return typed.model_dump() if isinstance(typed, BaseModel) else typed


@cache
def _adapter(resource: Resource, name: str) -> TypeAdapter[Any]:
    info = MODELS[resource].model_fields[name]
    if info.metadata:
        return TypeAdapter(Annotated[(info.annotation, *info.metadata)])
    return TypeAdapter(info.annotation)


def resources_problem(value: Any) -> str | None:
    try:
        Resources.model_validate(value)
    except ValidationError as exc:
        return first_error(exc)
    return None
