"""Who is calling: the bearer token of every request but ``/healthz``, checked against the
stored hashes (a verdict is reused for a few seconds, so a revocation takes effect
within :data:`CACHE_S`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from balsam_mq.domain import utcnow
from balsam_mq.errors import AuthError
from balsam_mq.store import Store

CACHE_S = 5.0
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Caller:
    user: str
    token_id: str
    expires_at: datetime | None


class Authenticator:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._verdicts: dict[str, tuple[float, Caller]] = {}

    async def caller(self, token: str) -> Caller:
        now = time.monotonic()
        known = self._verdicts.get(token)
        if known is not None and now - known[0] < CACHE_S:
            caller = known[1]
        else:
            user, record = await self._store.users.authenticate(token)
            caller = Caller(user.name, record.id, record.expires_at)
            if len(self._verdicts) >= _CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[token] = (now, caller)
        check_expiry(caller)
        return caller


def check_expiry(caller: Caller) -> None:
    if caller.expires_at is not None and utcnow() >= caller.expires_at:
        raise AuthError(
            f"the token expired at {caller.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one "
            f"(`balsam-mq user token {caller.user}`) and run `balsam-mq login` again"
        )


def bearer(request: Request) -> str:
    """The token of a request: ``Authorization: Bearer <token>`` (or, for the browser's
    status page and event stream, the ``balsam_token`` cookie)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    cookie = request.cookies.get("balsam_token")
    if cookie:
        return cookie
    if header:
        raise AuthError("the Authorization header must read `Bearer <token>`")
    raise AuthError(
        "this request needs a token: run `balsam-mq login URL` (or send "
        "`Authorization: Bearer <token>`)"
    )
