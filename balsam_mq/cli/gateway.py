"""`balsam-mq gateway` serves the HTTP API; `balsam-mq login URL` / `logout` keep a user's token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from balsam_mq.cli.common import JsonOption, fail
from balsam_mq.cli.output import print_json
from balsam_mq.settings import load_settings

app = typer.Typer()


@app.command("gateway")
def gateway(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    relay: Annotated[
        bool, typer.Option(help="also publish the event log to RabbitMQ (a relay)")
    ] = True,
) -> None:
    """Serve the HTTP gateway for remote users (on BALSAM_MONGODB_URL and BALSAM_AMQP_URL).

    Example:  balsam-mq gateway --host 0.0.0.0 --port 8443 --ssl-certfile c.pem --ssl-keyfile k.pem
    """
    import uvicorn

    from balsam_mq.gateway import create_app

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("give both --ssl-certfile and --ssl-keyfile, or neither")
    settings = load_settings()
    uvicorn.run(
        create_app(settings, relay=relay),
        host=host,
        port=port,
        ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
        ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


@app.command("login")
def login(
    url: Annotated[str, typer.Argument(help="the gateway, https://host[:port]")],
    token: Annotated[
        str | None, typer.Option(help="the token (default: asked for, not echoed)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a token against the gateway and keep it for URL in your credentials file
    (mode 0600); then `export BALSAM_GATEWAY_URL=URL` to use the gateway.

    --json prints {"url", "user", "expires_at"} (null: no expiry).

    Example:  balsam-mq login https://balsam.example.org
    """
    from balsam_mq.sdk.credentials import store_token
    from balsam_mq.sdk.http import HttpBackend
    from balsam_mq.settings import Settings

    url = Settings(gateway_url=url).gateway_url or url
    if token is None:
        token = typer.prompt("token", hide_input=True, err=True)  # stdout: the result

    async def whoami() -> dict[str, str]:
        backend = HttpBackend(url, token.strip())
        try:
            answer: dict[str, str] = await backend.call("GET", "/whoami")
            return answer
        finally:
            await backend.aclose()

    who = anyio.run(whoami)
    settings = load_settings()
    store_token(settings.credentials, url, token.strip())
    if as_json:
        print_json({"url": url, "user": who["user"], "expires_at": who.get("expires_at")})
        return
    until = who.get("expires_at") or "no expiry"
    typer.echo(f"logged in to {url} as {who['user']} (token valid until: {until})")
    typer.echo(f"use it with: export BALSAM_GATEWAY_URL={url}")


@app.command("logout")
def logout(
    url: Annotated[
        str | None, typer.Argument(help="the gateway (default: every stored token)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Forget the stored token of URL (or all of them).

    --json prints {"logged_out": [the gateways whose token was forgotten]}.

    Example:  balsam-mq logout https://balsam.example.org
    """
    from balsam_mq.sdk.credentials import forget_token

    gone = forget_token(load_settings().credentials, url)
    if not gone:
        fail(f"no token stored for {url}" if url else "no token stored")
    if as_json:
        print_json({"logged_out": gone})
        return
    for u in gone:
        typer.echo(f"logged out of {u}")
