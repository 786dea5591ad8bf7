"""Parked messages (the dead-letter queue) of the caller's sites: list, replay, discard."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from balsam_mq.domain import ParkedMessage
from balsam_mq.gateway.deps import Mine, Services, Svc
from balsam_mq.gateway.scope import Scope

router = APIRouter()


class Chosen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = None  # None: all of the caller's


async def _mine(svc: Services, mine: Scope) -> list[ParkedMessage]:
    sites = set(await mine.site_ids())
    out = []
    for message in await svc.backend.parked():
        owners = {e.site_id for e in message.events()}
        if owners and owners <= sites:
            out.append(message)
    return out


def _dump(message: ParkedMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "queue": message.queue,
        "routing_key": message.routing_key,
        "attempts": message.attempts,
        "error": message.error,
        "parked_at": message.parked_at,
        "body": message.body.decode("utf-8", "replace"),
    }


@router.get("/dead", summary="Parked messages of the caller's sites, oldest first")
async def parked(
    svc: Svc, mine: Mine, limit: Annotated[int | None, Query(ge=0)] = None
) -> dict[str, Any]:
    messages = await _mine(svc, mine)
    return {"items": [_dump(m) for m in messages[:limit]]}


async def _chosen(svc: Services, mine: Scope, ids: list[str] | None) -> list[str]:
    from balsam_mq.errors import NotFound

    mine_ids = [m.message_id for m in await _mine(svc, mine)]
    if ids is None:
        return mine_ids
    missing = sorted(set(ids) - set(mine_ids))
    if missing:
        raise NotFound(f"no parked message {', '.join(missing)}")
    return ids


@router.post(
    "/dead/replay", summary="Replay parked messages: their jobs return to where they waited"
)
async def replay(body: Chosen, svc: Svc, mine: Mine) -> dict[str, Any]:
    ids = await _chosen(svc, mine, body.ids)
    done = await svc.backend.replay_parked(ids) if ids else []
    return {"items": [_dump(m) for m in done]}


@router.post("/dead/purge", summary="Discard parked messages; their jobs stay FAILED")
async def purge(body: Chosen, svc: Svc, mine: Mine) -> dict[str, Any]:
    ids = await _chosen(svc, mine, body.ids)
    done = await svc.backend.purge_parked(ids) if ids else []
    return {"items": [_dump(m) for m in done]}
