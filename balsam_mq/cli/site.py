"""`balsam-mq site init | ls | rm | sync | agent | start | stop | status | reload`: create,
list and remove sites, sync apps to them, run a site's agent (foreground or background)."""

from __future__ import annotations

import socket
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer
from rich.table import Table

from balsam_mq.cli.app import app_json
from balsam_mq.cli.common import JsonOption, confirm, fail, run
from balsam_mq.cli.output import console, note, print_json, progress
from balsam_mq.domain import Site
from balsam_mq.errors import BalsamError, ConfigError
from balsam_mq.settings import load_settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import open_store

if TYPE_CHECKING:
    from balsam_mq.domain import App, SiteRemoval

app = typer.Typer(
    help="Create, list and remove sites, sync apps, run agents.", no_args_is_help=True
)


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Directory of the new site.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Unique site name.")],
    as_json: JsonOption = False,
) -> None:
    """Create a site directory (settings.yml, data/, logs/) and register the site.

    --json prints the site as `site ls --json` lists it.

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
    if as_json:
        print_json(site.model_dump(mode="json"))
        return
    typer.echo(f"site {site.name!r} (id {site.id}) created at {path}")
    typer.echo(f"start its agent with:  balsam-mq site start {path}")


@app.command("ls")
def ls(as_json: JsonOption = False) -> None:
    """List the registered sites.

    Example:  balsam-mq site ls --json
    """

    async def fetch() -> list[Site]:
        from balsam_mq.sdk import Site as SiteView

        return list(await SiteView.objects.order_by("id"))

    sites = run(fetch)
    if as_json:
        print_json([s.model_dump(mode="json") for s in sites])
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
    exclusive: Annotated[
        bool,
        typer.Option(
            "--exclusive",
            help="Refuse to run if another agent of the site holds its pid file "
            "(else run alongside it).",
        ),
    ] = False,
) -> None:
    """Run the site agent in the foreground: hooks, transfers, dependencies, cleanup, reaping.

    Logs go to PATH/logs/agent.log (rotated), its pid to PATH/agent.pid. SIGINT or SIGTERM
    stops it cleanly: batches in hand commit or stay unacknowledged for the next agent,
    never half-applied. SIGHUP reloads settings.yml.

    Example:  balsam-mq site agent ~/sites/laptop
    """
    from balsam_mq.processors.main import run_agent

    anyio.run(partial(run_agent, exclusive=exclusive), load_settings(), path)


@app.command("rm")
def rm(
    site: Annotated[str, typer.Argument(metavar="SITE", help="The site's name or id.")],
    force: Annotated[
        bool, typer.Option("--force", help="Also delete its jobs and active batch jobs.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remove a site with its apps, batch jobs and work queues.

    A site that still has jobs or active batch jobs is refused unless --force, which
    deletes them too (allocations already in a scheduler are not cancelled: they are
    listed). The event log is kept and the site directory on disk is left alone.
    Stop the site's agent first.

    Example:  balsam-mq site rm laptop --force --yes
    """

    async def main() -> SiteRemoval:
        from balsam_mq.sdk import Site as SdkSite

        found = await SdkSite.objects.lookup(site)
        plan = await found.delete(force=force, dry_run=True)
        await anyio.to_thread.run_sync(confirm, f"Remove {_describe(plan)}?", yes)
        with progress(f"Removing site {found.name!r}", None, enabled=not as_json):
            return await found.delete(force=force)

    removal = run(main)
    if as_json:
        print_json(removal.model_dump(mode="json"))
        return
    typer.echo(f"removed {_describe(removal)}; the event log is kept")
    if removal.site.path:
        typer.echo(f"its directory {removal.site.path} is left on disk")
    for b in removal.active_batch_jobs:
        typer.echo(
            f"warning: batch job {b.id} ({b.state.value}, scheduler id {b.scheduler_id or '-'})"
            " may still hold an allocation: cancel it with the scheduler",
            err=True,
        )


def _describe(removal: SiteRemoval) -> str:
    parts = [
        _count(removal.apps, "app"),
        _count(removal.batch_jobs, "batch job"),
        _count(removal.jobs, "job"),
    ]
    return f"site {removal.site.name!r} (id {removal.site.id}) with " + ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@app.command()
def sync(
    source: Annotated[
        str,
        typer.Argument(metavar="SOURCE", help="A Python file (my_apps.py) or module (pkg.apps)."),
    ],
    as_json: JsonOption = False,
) -> None:
    """Sync every ApplicationDefinition subclass defined in a Python file or module.

    Each class goes to the site its `site` attribute names; all are checked before
    the first is stored. Classes of a file travel by value (the site needs nothing
    else); classes of a module by reference (it must be importable where apps run).
    Then a running agent of each of those sites (its directory on this machine) is
    told to reload its settings, as `site reload` does; the output says which.
    --json prints {"apps": [...], "agents": [{"site", "reloaded", "pid", "message"}]}.

    Example:  balsam-mq site sync my_apps.py
    """

    async def main() -> tuple[list[tuple[App, str]], list[Site]]:
        from balsam_mq.sdk import Site as SdkSite, load_definitions, sync_definitions

        classes = load_definitions(source)
        with progress("Syncing apps", len(classes), enabled=not as_json) as advance:
            apps = await sync_definitions(classes, on_synced=lambda _: advance(1))
        sites = {s.id: s async for s in SdkSite.objects.filter(id=[a.site_id for a in apps])}
        named = [(a, sites[a.site_id].name if a.site_id in sites else str(a.site_id)) for a in apps]
        return named, [sites[i] for i in dict.fromkeys(a.site_id for a in apps) if i in sites]

    from balsam_mq.cli.site_agent import reload_agent_of

    synced, sites = run(main)
    reloads = [reload_agent_of(site) for site in sites]
    if as_json:
        print_json(
            {
                "apps": [app_json(a, site) for a, site in synced],
                "agents": [r.json() for r in reloads],
            }
        )
    else:
        for a, site_name in synced:
            kind = "command template" if a.command_template is not None else "run()"
            typer.echo(f"synced app {a.name!r} (id {a.id}, {kind}) to site {site_name!r}")
        for r in reloads:
            if r.error is None:
                typer.echo(r.message)
    failed = [r.message for r in reloads if r.error is not None]
    if failed:
        fail("\n".join(failed))


# --- the agent in the background ----------------------------------------------------------

SiteDirArgument = Annotated[Path, typer.Argument(help="The site directory.")]

# `site status` exit codes, for scripts (documented in docs/cli.md)
STATUS_RUNNING, STATUS_NOT_RUNNING, STATUS_ELSEWHERE, STATUS_UNKNOWN = 0, 1, 3, 4


@app.command()
def start(
    path: SiteDirArgument = Path("."),
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait until it runs.")
    ] = 60,
    as_json: JsonOption = False,
) -> None:
    """Start the site's agent in the background (detached, in a session of its own).

    It logs to PATH/logs/agent.log (its own output, such as a crash, to PATH/logs/agent.out)
    and writes its pid to PATH/agent.pid. Refused while an agent of the site runs; a stale
    pid file is removed. Returns once the agent runs. --json prints {"site", "pid", "host",
    "started_at", "log", "stale_pid_file_removed"}.

    Example:  balsam-mq site start ~/sites/laptop
    """
    from balsam_mq.cli.site_agent import agent_json
    from balsam_mq.cli.site_views import pid_of
    from balsam_mq.site.control import start_agent

    site_dir, config = SiteDirectory.open(path)
    started = start_agent(site_dir, config, timeout=timeout)
    if started.stale is not None:
        note(f"removed a stale pid file ({pid_of(started.stale)})")
    if as_json:
        stale = {"stale_pid_file_removed": started.stale is not None}
        print_json({**agent_json(site_dir, started.record), **stale})
        return
    typer.echo(
        f"agent of site {config.name!r} running (pid {started.record.pid}); "
        f"log: {site_dir.agent_log}"
    )


@app.command()
def stop(
    path: SiteDirArgument = Path("."),
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="Seconds to wait for its drain.")
    ] = 60,
    as_json: JsonOption = False,
) -> None:
    """Stop the site's agent: SIGTERM, then wait while it drains (the batches in hand commit
    or go back to their queues), and its pid file is gone.

    Exits 0 once it has stopped, or if none was running; 1 if it still drains after
    --timeout (it goes on draining: run stop again to wait longer). --json prints
    {"site", "stopped", "pid", "host", "stale_pid_file_removed"}.

    Example:  balsam-mq site stop ~/sites/laptop
    """
    from balsam_mq.cli.site_views import pid_of
    from balsam_mq.site.control import stop_agent
    from balsam_mq.site.pidfile import Liveness

    site_dir = SiteDirectory.find(path)
    found = stop_agent(site_dir, timeout=timeout)
    name = site_dir.name()
    if as_json:
        record = found.record if found.alive else None
        print_json(
            {
                "site": name,
                "stopped": found.alive,
                "pid": record.pid if record else None,
                "host": record.host if record else None,
                "stale_pid_file_removed": found.liveness is Liveness.STALE,
            }
        )
        return
    if found.alive:
        typer.echo(f"agent of site {name!r} stopped ({pid_of(found)})")
    elif found.liveness is Liveness.STALE:
        typer.echo(f"no agent of site {name!r} was running; removed a stale pid file")
    else:
        typer.echo(f"no agent of site {name!r} is running")


@app.command("reload")
def reload_(path: SiteDirArgument = Path("."), as_json: JsonOption = False) -> None:
    """Have the site's agent reload settings.yml (SIGHUP), checked here first.

    A malformed file is refused (the error names the key) and the agent is not disturbed.
    The agent applies what it can at once, and its log says which changes reach only
    launchers started afterwards and which need a restart (`site stop`, `site start`).
    --json prints the agent told: {"site", "pid", "host", "started_at", "log"}.

    Example:  balsam-mq site reload ~/sites/laptop
    """
    from balsam_mq.cli.site_agent import agent_json, reloading
    from balsam_mq.site.control import reload_agent

    site_dir = SiteDirectory.find(path)
    record = reload_agent(site_dir)
    if as_json:
        print_json(agent_json(site_dir, record))
        return
    typer.echo(reloading(site_dir, record))


@app.command("globus-login")
def globus_login(path: SiteDirArgument = Path("."), as_json: JsonOption = False) -> None:
    """Log the site in to Globus (the native-app flow): open the URL shown, log in, paste
    the code back.

    The tokens go to globus-tokens.json in the site directory, readable by its owner only;
    the agent refreshes them as it moves data to and from globus:// locations. Needs
    transfers.globus_client_id in settings.yml. --json prints {"site", "tokens"}.

    Example:  balsam-mq site globus-login ~/sites/polaris
    """
    from balsam_mq.processors.globus_auth import login

    site_dir = SiteDirectory.find(path)
    client_id = site_dir.config().transfers.globus_client_id
    if client_id is None:
        fail(
            f"{site_dir.settings_file}: set transfers.globus_client_id (the id of a Globus "
            "native app you registered) before logging in"
        )
    login(site_dir.globus_tokens, client_id, prompt=lambda text: typer.prompt(text, err=True))
    if as_json:
        print_json({"site": site_dir.name(), "tokens": str(site_dir.globus_tokens)})
        return
    typer.echo(f"logged in to Globus; tokens in {site_dir.globus_tokens} (mode 600)")


@app.command()
def status(path: SiteDirArgument = Path("."), as_json: JsonOption = False) -> None:
    """Whether the site's agent runs, and the site's launcher sessions (heartbeats).

    Each session is alive, or silent when it missed three heartbeats, with its host, pid,
    batch job, start and the number of RUNNING jobs it holds.
    Exit codes: 0 the agent runs (or is starting); 1 it does not; 3 its pid file names
    another host (not checkable here); 4 PATH is not a site directory.

    Example:  balsam-mq site status ~/sites/laptop --json
    """
    from balsam_mq.cli.site_views import sessions_of, show_status, status_json
    from balsam_mq.site.pidfile import Liveness, find_agent

    try:
        site_dir = SiteDirectory.find(path)
    except BalsamError as exc:
        fail(str(exc), code=STATUS_UNKNOWN)
    found = find_agent(site_dir.pid_file)
    sessions, problem = anyio.run(sessions_of, site_dir)
    if as_json:
        print_json(status_json(site_dir, found, sessions, problem))
    else:
        show_status(site_dir, found, sessions, problem)
    if found.liveness is Liveness.ELSEWHERE:
        raise typer.Exit(STATUS_ELSEWHERE)
    raise typer.Exit(STATUS_RUNNING if found.alive else STATUS_NOT_RUNNING)
