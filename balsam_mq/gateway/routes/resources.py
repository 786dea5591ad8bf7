"""Reading, updating and deleting any resource, the caller's only: listings with the SDK's
filters, ordering and pages; queries, counts and field values; updates and deletions one
at a time, by list of ids, or by filter."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from balsam_mq.domain.queries import FIELDS, MODELS, QuerySpec, Resource
from balsam_mq.domain.wire import (
    RESOURCES,
    fields_from_wire,
    jsonable,
    resource,
    spec_from_params,
    spec_from_wire,
)
from balsam_mq.errors import NotFound, QueryError
from balsam_mq.gateway.deps import Mine, Svc
from balsam_mq.gateway.limits import DEFAULT_PAGE, MAX_PAGE
from balsam_mq.gateway.scope import checked_update, one

router = APIRouter()

Kind = StrEnum("Kind", {r: r for r in RESOURCES})  # type: ignore[misc]


class QueryBody(BaseModel):
    """A query: conditions ``[field, op, value]`` (all must hold), ordering, and the window
    ``[start:stop]`` of at most the page limit."""

    model_config = ConfigDict(extra="forbid")

    where: list[tuple[str, str, Any]] = Field(default_factory=list)
    order: list[str] = Field(default_factory=list)
    start: int = Field(default=0, ge=0)
    stop: int | None = Field(default=None, ge=0)


class ValuesBody(QueryBody):
    fields: list[str]


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    where: list[tuple[str, str, Any]] = Field(default_factory=list)
    set: dict[str, Any]


class SetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set: dict[str, Any]


class WhereBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    where: list[tuple[str, str, Any]] = Field(default_factory=list)


def paged(spec: QuerySpec) -> QuerySpec:
    """``spec`` if its window is at most a page; a window-less query gets the first page."""
    if spec.stop is None:
        return replace(spec, stop=spec.start + MAX_PAGE)
    if spec.stop - spec.start > MAX_PAGE:
        raise QueryError(
            f"a page holds at most {MAX_PAGE} documents; asked for {spec.stop - spec.start}"
        )
    return spec


def spec_of(body: BaseModel, res: str) -> QuerySpec:
    """The checked query of a request body's ``where`` (and window, if it has one)."""
    data = body.model_dump(include={"where", "order", "start", "stop"})
    data["where"] = [list(w) for w in data.get("where", [])]
    return spec_from_wire(resource(res), data)


def items_answer(items: list[BaseModel]) -> Response:
    """``{"items": [...]}`` of documents, written by pydantic's own JSON encoder (listings
    are the gateway's busiest answers)."""
    body = b'{"items":[' + b",".join(i.__pydantic_serializer__.to_json(i) for i in items) + b"]}"
    return Response(body, media_type="application/json")


def stored_answer(docs: list[dict[str, Any]], status: int = 200) -> Response:
    """``{"items": [...]}`` of documents in their stored form (``_id`` named ``id``)."""
    items = [{"id" if k == "_id" else k: v for k, v in d.items()} for d in docs]
    body = json.dumps({"items": items}, default=_iso, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@router.get("/{kind}", summary="List documents")
async def listing(
    kind: Kind,
    request: Request,
    svc: Svc,
    mine: Mine,
    order_by: Annotated[str | None, Query(description="fields, comma-separated; -desc")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=0, le=MAX_PAGE)] = DEFAULT_PAGE,
) -> Response:
    """Filters are the SDK's keywords as query parameters, repeated for "any of":
    ``?state=RUNNING&state=READY&tags=run:H2O&site_id=3&last_update__gt=2026-11-30T10:00``."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "limit"]
    params.append(("limit", str(limit)))
    spec = await mine.narrow(spec_from_params(resource(kind.value), params))
    return items_answer(await svc.backend.find(spec))


@router.post("/{kind}/query", summary="Query documents")
async def query(kind: Kind, body: QueryBody, svc: Svc, mine: Mine) -> Response:
    spec = await mine.narrow(paged(spec_of(body, kind.value)))
    return items_answer(await svc.backend.find(spec))


@router.post("/{kind}/count", summary="Count documents")
async def count(kind: Kind, body: QueryBody, svc: Svc, mine: Mine) -> dict[str, int]:
    spec = await mine.narrow(spec_of(body, kind.value))
    return {"count": await svc.backend.count(spec)}


@router.post("/{kind}/values", summary="Some fields of each document")
async def values(kind: Kind, body: ValuesBody, svc: Svc, mine: Mine) -> dict[str, Any]:
    fields = fields_from_wire(resource(kind.value), body.fields)
    spec = await mine.narrow(paged(spec_of(body, kind.value)))
    return {"rows": jsonable(await svc.backend.values(spec, fields))}


@router.patch("/{kind}", summary="Update every match (a filter, or ids with id__in)")
async def update(kind: Kind, body: UpdateBody, svc: Svc, mine: Mine) -> dict[str, int]:
    res = resource(kind.value)
    fields = checked_update(res, body.set)
    spec = await mine.narrow(spec_of(body, kind.value))
    return {"updated": await svc.backend.update(spec, fields) if fields else 0}


@router.post("/{kind}/delete", summary="Delete every match")
async def delete(kind: Kind, body: WhereBody, svc: Svc, mine: Mine) -> dict[str, int]:
    spec = await mine.narrow(spec_of(body, kind.value))
    if spec.resource == "sites":
        raise QueryError("sites are removed one at a time: DELETE /sites/{id}")
    return {"deleted": await svc.backend.delete(spec)}


@router.get("/{kind}/{object_id}", summary="One document")
async def get(kind: Kind, object_id: str, svc: Svc, mine: Mine) -> Any:
    res = resource(kind.value)
    found = await svc.backend.find(await mine.narrow(one(res, _id(res, object_id))))
    if not found:
        raise NotFound(f"{MODELS[res].__name__} {object_id} does not exist")
    return found[0].model_dump(mode="json")


@router.patch("/{kind}/{object_id}", summary="Update one document")
async def update_one(kind: Kind, object_id: str, body: SetBody, svc: Svc, mine: Mine) -> Any:
    res = resource(kind.value)
    fields = checked_update(res, body.set)
    spec = await mine.narrow(one(res, _id(res, object_id)))
    if fields:
        matched = await svc.backend.update(spec, fields)
    else:
        matched = await svc.backend.count(spec)
    if not matched:
        raise NotFound(f"{MODELS[res].__name__} {object_id} does not exist")
    return (await svc.backend.find(spec))[0].model_dump(mode="json")


@router.delete("/{kind}/{object_id}", summary="Delete one document (a site with what it owns)")
async def delete_one(
    kind: Kind,
    object_id: str,
    svc: Svc,
    mine: Mine,
    force: bool = False,
    dry_run: bool = False,
) -> Any:
    res = resource(kind.value)
    spec = await mine.narrow(one(res, _id(res, object_id)))
    if res == "sites":
        if not await svc.backend.count(spec):
            raise NotFound(f"Site {object_id} does not exist")
        removal = await svc.backend.delete_site(int(object_id), force=force, dry_run=dry_run)
        return removal.model_dump(mode="json")
    if not await svc.backend.delete(spec):
        raise NotFound(f"{MODELS[res].__name__} {object_id} does not exist")
    return {"deleted": 1}


def _id(res: Resource, text: str) -> int | str:
    if FIELDS[res]["id"] == "oid":  # events, transfer items: ObjectIds, as hex
        return text
    try:
        return int(text)
    except ValueError:
        raise NotFound(f"{res} have integer ids, not {text!r}") from None
