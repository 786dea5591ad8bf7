"""``GET /events/stream``: the caller's events as Server-Sent Events (see ``gateway.streams``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from balsam_mq.domain.queries import parse_condition
from balsam_mq.domain.wire import spec_from_params
from balsam_mq.gateway.deps import Mine, Svc, Who
from balsam_mq.gateway.streams import parse_last_event_id
from balsam_mq.sdk.feed import routing_keys

router = APIRouter()

_STREAM_PARAMS = frozenset({"key", "tags"})


@router.get(
    "/events/stream",
    summary="Live events (Server-Sent Events), resumable with Last-Event-ID",
    response_class=StreamingResponse,
)
async def stream(
    request: Request,
    svc: Svc,
    who: Who,
    mine: Mine,
    key: Annotated[
        list[str] | None, Query(description="routing keys to bind (default: from the filters)")
    ] = None,
    tags: Annotated[list[str] | None, Query(description="'key:value' or 'key'")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Filters are event fields as in a listing (``site_id``, ``job_id__in``, ``to_state``,
    ...) plus ``tags`` (of the event's job). Each event is ``event: event`` with its JSON;
    ``event: gap`` says events may have been missed (read the event log for the time the
    stream was away); ``event: error`` ends a stream whose token expired."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in _STREAM_PARAMS]
    spec = spec_from_params("events", params)
    tag_filter = None if not tags else parse_condition("jobs", "tags", tags).value
    resume = parse_last_event_id(last_event_id or request.query_params.get("last_event_id"))
    found = None if resume is None else svc.streams.find(resume[0], who.user)
    if found is not None and resume is not None:
        chosen, after, gap = found, resume[1], False
    else:
        keys = key or routing_keys(spec)
        chosen = await svc.streams.open(mine, keys, spec.conditions, tag_filter)
        after, gap = 0, resume is not None
    return StreamingResponse(
        svc.streams.send(chosen, after, who, gap),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
