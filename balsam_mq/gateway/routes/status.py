"""Health and identity: ``/healthz`` (no token) and ``/whoami``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from balsam_mq.gateway.deps import Svc, Who

router = APIRouter()


@router.get("/healthz", summary="Whether the gateway reaches MongoDB and RabbitMQ (no token)")
async def healthz(svc: Svc) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        await svc.store.client.admin.command("ping")
        checks["mongodb"] = "ok"
    except Exception as exc:
        checks["mongodb"] = f"unreachable: {type(exc).__name__}"
    checks["rabbitmq"] = "ok" if not svc.amqp.is_closed else "reconnecting"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"ok": healthy, **checks}, status_code=200 if healthy else 503)


@router.get("/whoami", summary="The caller and its token's expiry")
async def whoami(who: Who) -> dict[str, Any]:
    expires = None if who.expires_at is None else who.expires_at.isoformat()
    return {"user": who.user, "token_id": who.token_id, "expires_at": expires}
