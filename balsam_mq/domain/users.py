"""Gateway users and their access tokens: the token's text form and what is stored of it.

A token reads ``bmq_<token id>_<secret>``. Only the SHA-256 of the secret is stored
(the secret is 32 random bytes: no salt or slow hash is needed to make guessing it
hopeless), so a copy of the database gives nobody a working token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from balsam_mq.domain.models import utcnow
from balsam_mq.errors import AuthError

PREFIX = "bmq"
_TOKEN = re.compile(rf"^{PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenRecord(BaseModel):
    """One token of a user, as stored: its id and the hash of its secret."""

    id: str
    hash: str
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class User(BaseModel):
    name: str
    created_at: datetime = Field(default_factory=utcnow)
    tokens: list[TokenRecord] = Field(default_factory=list)


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: the only moment its secret exists outside its holder."""

    user: str
    record: TokenRecord
    secret: str

    @property
    def text(self) -> str:
        return f"{PREFIX}_{self.record.id}_{self.secret}"


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise AuthError(
            f"user name {name!r} is not allowed: 1-64 letters, digits or . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def new_token(user: str, expires_in: timedelta | None = None) -> IssuedToken:
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    record = TokenRecord(
        id=secrets.token_hex(8),
        hash=secret_hash(secret),
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
    )
    return IssuedToken(user, record, secret)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(text: str) -> tuple[str, str]:
    """``(token id, secret)`` of a token's text; :class:`AuthError` if it is not one."""
    found = _TOKEN.match(text.strip())
    if found is None:
        raise AuthError("the token is malformed (a balsam_mq token reads bmq_<id>_<secret>)")
    return found.group(1), found.group(2)


def secret_matches(record: TokenRecord, secret: str) -> bool:
    return hmac.compare_digest(record.hash, secret_hash(secret))


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"2w"``, ``"45s"`` as a timedelta."""
    found = _DURATION.match(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 90m, 2w or 45s")
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])
