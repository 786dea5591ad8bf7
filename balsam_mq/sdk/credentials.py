"""Gateway tokens kept for their user by ``balsam-mq login``: one JSON file, readable by its
owner only, mapping each gateway URL to its token."""

from __future__ import annotations

import json
import os
from pathlib import Path

from balsam_mq.errors import AuthError, ConfigError


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the stored tokens: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path}: expected a JSON object of gateway URL -> token")
    return data


def store_token(path: Path, url: str, token: str) -> None:
    """Keep ``token`` for ``url`` (written with mode 0600, atomically)."""
    tokens = _read(path)
    tokens[url.rstrip("/")] = token
    _write(path, tokens)


def _write(path: Path, tokens: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out, indent=2)
    os.chmod(temp, 0o600)
    os.replace(temp, path)


def forget_token(path: Path, url: str | None) -> list[str]:
    """Remove the token of ``url`` (all of them for ``None``); the URLs removed."""
    tokens = _read(path)
    gone = sorted(tokens) if url is None else [u for u in tokens if u == url.rstrip("/")]
    for u in gone:
        del tokens[u]
    if tokens:
        _write(path, tokens)
    else:
        path.unlink(missing_ok=True)
    return gone


def token_for(path: Path, url: str) -> str:
    token = _read(path).get(url.rstrip("/"))
    if token is None:
        raise AuthError(
            f"no token for the gateway {url}: run `balsam-mq login {url}` (or set BALSAM_TOKEN)"
        )
    return token
