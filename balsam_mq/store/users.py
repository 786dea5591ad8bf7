"""User repository: gateway users and the hashes of their tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from balsam_mq.domain import utcnow
from balsam_mq.domain.users import (
    IssuedToken,
    TokenRecord,
    User,
    check_user_name,
    new_token,
    parse_token,
    secret_matches,
)
from balsam_mq.errors import AuthError, BalsamError, NotFound
from balsam_mq.store.schema import USERS


def _user(doc: dict[str, Any]) -> User:
    return User(name=doc["username"], created_at=doc["created_at"], tokens=doc.get("tokens", []))


class UserRepository:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._users = db[USERS]

    async def create(self, name: str) -> User:
        user = User(name=check_user_name(name))
        try:
            await self._users.insert_one(
                {"username": user.name, "created_at": user.created_at, "tokens": []}
            )
        except DuplicateKeyError:
            raise BalsamError(f"user {name!r} already exists") from None
        return user

    async def get(self, name: str) -> User:
        doc = await self._users.find_one({"username": name})
        if doc is None:
            raise NotFound(f"no user {name!r} (create it with `balsam-mq user create {name}`)")
        return _user(doc)

    async def all(self) -> list[User]:
        return [_user(d) async for d in self._users.find().sort("username")]

    async def issue_token(self, name: str, expires_in: timedelta | None = None) -> IssuedToken:
        """A new token for user ``name``; only its hash is kept."""
        issued = new_token(name, expires_in)
        result = await self._users.update_one(
            {"username": name}, {"$push": {"tokens": issued.record.model_dump()}}
        )
        if result.matched_count == 0:
            raise NotFound(f"no user {name!r} (create it with `balsam-mq user create {name}`)")
        return issued

    async def revoke(self, name: str, token_id: str | None = None) -> int:
        """Revoke one token of ``name`` (all of them for ``None``); how many were live."""
        user = await self.get(name)
        now = utcnow()
        live = [
            t.id
            for t in user.tokens
            if t.revoked_at is None and (token_id is None or t.id == token_id)
        ]
        if token_id is not None and token_id not in {t.id for t in user.tokens}:
            raise NotFound(f"user {name!r} has no token {token_id!r}")
        for tid in live:
            await self._users.update_one(
                {"username": name, "tokens.id": tid}, {"$set": {"tokens.$.revoked_at": now}}
            )
        return len(live)

    async def authenticate(
        self, token: str, now: datetime | None = None
    ) -> tuple[User, TokenRecord]:
        """The user a token belongs to and its record; :class:`AuthError` naming why not."""
        token_id, secret = parse_token(token)
        doc = await self._users.find_one({"tokens.id": token_id})
        if doc is None:
            raise AuthError("the token is not known (it may belong to another deployment)")
        user = _user(doc)
        record = next(t for t in user.tokens if t.id == token_id)
        if not secret_matches(record, secret):
            raise AuthError("the token is not known (it may belong to another deployment)")
        if record.revoked_at is not None:
            raise AuthError(f"the token was revoked at {record.revoked_at:%Y-%m-%d %H:%M} UTC")
        when = now or utcnow()
        if record.expires_at is not None and when >= record.expires_at:
            raise AuthError(
                f"the token expired at {record.expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one "
                f"(`balsam-mq user token {user.name}`) and run `balsam-mq login` again"
            )
        return user, record
