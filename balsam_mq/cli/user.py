"""`balsam-mq user create|token|revoke|ls`: the gateway's users and their tokens, managed by an
operator with access to the database (BALSAM_MONGODB_URL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
import typer

from balsam_mq.cli.common import JsonOption, fail
from balsam_mq.cli.output import print_json
from balsam_mq.settings import load_settings

if TYPE_CHECKING:
    from datetime import datetime

    from balsam_mq.domain.users import TokenRecord, User
    from balsam_mq.store import Store

T = TypeVar("T")

app = typer.Typer(help="Gateway users and their access tokens (needs database access).")


def _store_call(body: Callable[[Store], Awaitable[T]]) -> T:
    """``body(store)`` on the database of the environment's settings."""
    from balsam_mq.store import open_store

    settings = load_settings()

    async def main() -> T:
        async with open_store(settings.mongodb_url, settings.db) as store:
            return await body(store)

    return anyio.run(main)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="the user's name (their login)")],
    as_json: JsonOption = False,
) -> None:
    """Create a user; give them a token with `balsam-mq user token NAME`.

    --json prints the user: {"name", "created_at", "tokens": []}.

    Example:  balsam-mq user create alice
    """
    user = _store_call(lambda store: store.users.create(name))
    if as_json:
        print_json(_user_json(user, user.created_at))
        return
    typer.echo(f"created user {user.name!r}; next: balsam-mq user token {user.name}")


@app.command("token")
def token(
    name: Annotated[str, typer.Argument(help="the user")],
    expires: Annotated[
        str | None, typer.Option(help="lifetime, like 30d, 12h, 2w (default: no expiry)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a new token for a user and print it (only its hash is stored: it cannot be
    shown again). The user runs `balsam-mq login URL` and pastes it.

    --json prints {"user", "id", "token", "created_at", "expires_at"}.

    Example:  balsam-mq user token alice --expires 30d
    """
    from balsam_mq.domain.users import parse_duration

    lifetime: timedelta | None = None
    if expires is not None:
        try:
            lifetime = parse_duration(expires)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--expires") from None
    issued = _store_call(lambda store: store.users.issue_token(name, lifetime))
    if as_json:
        print_json({"user": name, **_token_json(issued.record), "token": issued.text})
        return
    until = issued.record.expires_at
    typer.echo(
        f"token {issued.record.id} for {name!r}"
        + (f", valid until {until:%Y-%m-%d %H:%M} UTC" if until else ", no expiry")
        + " (shown once; keep it secret):",
        err=True,
    )
    typer.echo(issued.text)


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="the user")],
    token_id: Annotated[
        str | None, typer.Option("--token", help="one token's id (default: all of them)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a user's tokens (all, or one with --token); requests with them fail at once
    (within a few seconds on a running gateway).

    --json prints {"user", "token": the id given or null, "revoked": N}.

    Example:  balsam-mq user revoke alice
    """
    count = _store_call(lambda store: store.users.revoke(name, token_id))
    if as_json:
        print_json({"user": name, "token": token_id, "revoked": count})
        return
    typer.echo(f"revoked {count} token(s) of {name!r}")


@app.command("ls")
def ls(as_json: JsonOption = False) -> None:
    """Users with their live tokens.

    --json prints a list of users, each with its live tokens (ids and times, never a
    token's text or hash); no users is an empty list there, an error otherwise.

    Example:  balsam-mq user ls
    """
    from balsam_mq.domain import utcnow

    users = _store_call(lambda store: store.users.all())
    now = utcnow()
    if as_json:
        print_json([_user_json(user, now) for user in users])
        return
    if not users:
        fail("no users yet: create one with `balsam-mq user create NAME`")
    for user in users:
        live = [t for t in user.tokens if t.usable(now)]
        typer.echo(f"{user.name}\t{len(live)} live token(s)")
        for t in live:
            until = f"until {t.expires_at:%Y-%m-%d %H:%M}" if t.expires_at else "no expiry"
            typer.echo(f"  {t.id}\t{until}")


def _user_json(user: User, now: datetime) -> dict[str, Any]:
    """A user and its tokens usable at ``now``."""
    live = [_token_json(t) for t in user.tokens if t.usable(now)]
    return {"name": user.name, "created_at": user.created_at, "tokens": live}


def _token_json(record: TokenRecord) -> dict[str, Any]:
    return {"id": record.id, "created_at": record.created_at, "expires_at": record.expires_at}
