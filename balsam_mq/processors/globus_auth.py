"""Globus credentials of a site: the native-app login that keeps a refresh token in a file
created 0600, the transfer client that refreshes its access token from it (writing
refreshed tokens back the same way), and what Globus answered, in one line."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from globus_sdk import (
    GlobusAPIError,
    GlobusError,
    NativeAppAuthClient,
    OAuthTokenResponse,
    RefreshTokenAuthorizer,
    TransferClient,
)
from globus_sdk.scopes import TransferScopes

from balsam_mq.errors import ConfigError

log = logging.getLogger(__name__)

LOGIN_COMMAND = "balsam-mq site globus-login SITE_DIR"
RESOURCE_SERVER = "transfer.api.globus.org"
LOGIN_CODES = ("invalid_grant", "AuthenticationFailed")  # and any 401


def login(tokens: Path, client_id: str, *, prompt: Callable[[str], str]) -> None:
    """Log in to Globus (native-app flow, with a refresh token) and keep the tokens in
    ``tokens``, a file only its owner can read. ``prompt`` is shown the URL to open and
    returns the authorization code pasted back; a refused code is a ConfigError.

    Example: ``login(site_dir / "globus-tokens.json", client_id, prompt=typer.prompt)``
    """
    auth = NativeAppAuthClient(client_id)
    auth.oauth2_start_flow(requested_scopes=TransferScopes.all, refresh_tokens=True)
    url = auth.oauth2_get_authorize_url()
    code = prompt(f"Log in to Globus at\n\n  {url}\n\nthen paste the authorization code").strip()
    try:
        response = auth.oauth2_exchange_code_for_tokens(code)
    except GlobusError as exc:
        answer = said(exc, hint=False)
        raise ConfigError(f"Globus login with client {client_id!r} failed: {answer}") from None
    write_tokens(tokens, {"client_id": client_id, "tokens": response.by_resource_server})


def said(exc: GlobusError, *, hint: bool = True) -> str:
    """What Globus answered, in one line, with the login command when it is the cure."""
    if not isinstance(exc, GlobusAPIError):
        return f"{type(exc).__name__}: {exc}"[:500]
    raw = exc.raw_json if isinstance(exc.raw_json, dict) else {}
    code = exc.code if exc.code not in (None, "Error") else raw.get("error", exc.code)
    message = exc.message or raw.get("error_description")
    text = f"{exc.http_status} {code}{': ' + message if message else ''}"[:500]
    if hint and (exc.http_status == 401 or code in LOGIN_CODES):
        text += f"; log in again with `{LOGIN_COMMAND}`"
    return text


def transfer_client(tokens: Path, client_id: str) -> list[Any] | str:
    """A transfer client refreshing its access token from ``tokens`` (and the login client
    it uses), or why there is none."""
    try:
        stored = json.loads(tokens.read_text())
        entry = stored["tokens"][RESOURCE_SERVER]
        refresh_token = str(entry["refresh_token"])
    except FileNotFoundError:
        return f"no Globus login at {tokens}: run `{LOGIN_COMMAND}`"
    except (OSError, ValueError, LookupError, TypeError) as exc:
        return f"Globus tokens at {tokens} are unreadable ({exc!r}): run `{LOGIN_COMMAND}`"

    def refreshed(response: OAuthTokenResponse) -> None:
        new = response.by_resource_server.get(RESOURCE_SERVER, {})
        entry.update({k: v for k, v in new.items() if v is not None})  # a kept refresh token
        try:
            write_tokens(tokens, stored)
        except OSError as exc:  # the new token still serves this batch
            log.warning("cannot write refreshed Globus tokens to %s: %s", tokens, exc)

    auth = NativeAppAuthClient(client_id)
    authorizer = RefreshTokenAuthorizer(
        refresh_token,
        auth,
        access_token=entry.get("access_token"),
        expires_at=entry.get("expires_at_seconds"),
        on_refresh=refreshed,
    )
    return [TransferClient(authorizer=authorizer, app_name="balsam_mq"), auth]


def write_tokens(path: Path, stored: dict[str, Any]) -> None:
    """``stored`` as ``path``, through a temporary created 0600 beside it and renamed."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            os.fchmod(out.fileno(), 0o600)  # whatever the umask
            json.dump(stored, out, indent=2)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
