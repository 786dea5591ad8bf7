"""`balsam-mq site init | ls | agent`: create and list sites, run a site's agent."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Annotated

import anyio
import typer
from rich.table import Table

from balsam_mq.cli.common import console
from balsam_mq.domain import Site
from balsam_mq.errors import ConfigError
from balsam_mq.settings import load_settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import open_store

app = typer.Typer(help="Create, list and run sites.", no_args_is_help=True)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Directory of the new site.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Unique site name.")],
) -> None:
    """Create a site directory (settings.yml, data/, logs/) and register the site.

    Example:  balsam-mq site init ~/sites/laptop --name laptop
    """
    path = path.expanduser().resolve()
    if (path / "settings.yml").exists():
        raise ConfigError(f"{path} is already a site (settings.yml exists)")

    async def create() -> Site:
        settings = load_settings()
        async with open_store(settings.mongodb_url, settings.db) as store:
            site = await store.sites.create(
                Site(name=name, hostname=socket.gethostname(), path=str(path))
            )
        assert site.id is not None
        SiteDirectory.create(path, name=name, site_id=site.id)
        return site

    site = anyio.run(create)
    typer.echo(f"site {site.name!r} (id {site.id}) created at {path}")
    typer.echo(f"run its agent with:  balsam-mq site agent {path}")


@app.command("ls")
def ls(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the registered sites.

    Example:  balsam-mq site ls --json
    """

    async def fetch() -> list[Site]:
        settings = load_settings()
        async with open_store(settings.mongodb_url, settings.db) as store:
            return await store.sites.all()

    sites = anyio.run(fetch)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json") for s in sites], indent=2))
        return
    out = console()
    if not out.is_terminal:
        for s in sites:
            typer.echo(f"{s.id}\t{s.name}\t{s.hostname}\t{s.path}")
        return
    table = Table(box=None, header_style="bold")
    for column in ("id", "name", "hostname", "path"):
        table.add_column(column)
    for s in sites:
        table.add_row(str(s.id), s.name, s.hostname, s.path)
    out.print(table)


@app.command()
def agent(
    path: Annotated[Path, typer.Argument(help="The site directory.")] = Path("."),
) -> None:
    """Run the site agent in the foreground: hooks, transfers, dependencies, cleanup, reaping.

    Logs go to PATH/logs/agent.log. SIGINT or SIGTERM stops it cleanly: batches in hand
    commit or stay unacknowledged for the next agent, never half-applied.

    Example:  balsam-mq site agent ~/sites/laptop
    """
    from balsam_mq.processors.main import run_agent

    anyio.run(run_agent, load_settings(), path)
