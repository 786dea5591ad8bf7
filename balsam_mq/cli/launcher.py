"""`balsam-mq launcher`: run a pilot that claims and runs a site's jobs until its wall time."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from pydantic import ValidationError

from balsam_mq.errors import invalid_settings
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings, parse_filter_tags
from balsam_mq.settings import Settings, load_settings

app = typer.Typer()


@app.command()
def launcher(
    site: Annotated[
        str, typer.Option("--site", "-s", envvar="BALSAM_SITE", help="Site name or id.")
    ],
    wall_time: Annotated[
        float, typer.Option("--wall-time", "-t", min=0.01, help="Minutes this launcher may run.")
    ],
    job_mode: Annotated[
        str,
        typer.Option(
            "--job-mode",
            help="mpi: any job, launched with the site's app-run; "
            "serial: single-rank jobs, one MPI worker per node.",
        ),
    ] = "mpi",
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            "-n",
            min=1,
            help="Use only N nodes of the allocation (on a workstation: play N nodes).",
        ),
    ] = None,
    filter_tags: Annotated[
        list[str] | None,
        typer.Option("--filter-tags", help="Run only jobs with this tag (k=v; repeatable)."),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--idle-timeout", min=0.01, help="Exit after this many idle seconds."),
    ] = None,
    app_run: Annotated[
        str | None,
        typer.Option("--app-run", help="Override the site's app-run: mpich|openmpi|srun|local."),
    ] = None,
    cores_per_node: Annotated[
        int | None,
        typer.Option(
            "--cores-per-node", min=1, help="Override the cores per node (else discovered)."
        ),
    ] = None,
    gpus_per_node: Annotated[
        int | None,
        typer.Option(
            "--gpus-per-node",
            min=0,
            help="Override the GPUs per node (else from CUDA_VISIBLE_DEVICES).",
        ),
    ] = None,
    batch_job_id: Annotated[
        int | None, typer.Option("--batch-job-id", help="The BatchJob this pilot runs in.")
    ] = None,
) -> None:
    """Claim and run the site's runnable jobs on this allocation's nodes.

    Inside a batch job the Slurm or PBS nodes are discovered; elsewhere it runs
    on this host. It stops claiming near the wall time and moves jobs still
    running to RUN_TIMEOUT at its end, or at once on SIGTERM/SIGINT.
    Defaults come from the `launcher:` section of the site's settings.yml.

    Example:  balsam-mq launcher --site laptop --wall-time 30 --job-mode serial
    """
    if job_mode not in ("mpi", "serial"):
        raise typer.BadParameter("must be mpi or serial", param_hint="--job-mode")
    settings = load_settings()
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from balsam_mq.broker.connection import quiet_reconnection_logs

    quiet_reconnection_logs()
    overrides: dict[str, Any] = {
        "app_run": app_run,
        "cores_per_node": cores_per_node,
        "gpus_per_node": gpus_per_node,
        "idle_timeout_s": idle_timeout,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:  # refused here, before connecting: a usage error names the option
        LauncherSettings.model_validate(overrides)
    except ValidationError as exc:
        problem = invalid_settings("invalid option", exc, key=lambda k: "--" + k.replace("_", "-"))
        raise typer.BadParameter(str(problem).removeprefix("invalid option: ")) from None
    tags = parse_filter_tags(filter_tags or [])
    report = anyio.run(
        _run,
        settings,
        site,
        {
            "wall_time_min": wall_time,
            "job_mode": job_mode,
            "nodes": nodes,
            "filter_tags": tags,
            "batch_job_id": batch_job_id,
        },
        overrides,
    )
    typer.echo(json.dumps(dataclasses.asdict(report)))


async def _run(
    settings: Settings, site_ref: str, options: dict[str, Any], overrides: dict[str, Any]
) -> Any:
    from balsam_mq.launcher.main import resolve_site, run_launcher, site_launcher_settings
    from balsam_mq.store import open_store

    async with open_store(settings.mongodb_url, settings.db) as store:
        site = await resolve_site(store, site_ref)
    assert site.id is not None
    site_path = Path(site.path)
    base = site_launcher_settings(site_path)
    _log_to_site(site_path)
    launcher_settings = LauncherSettings.model_validate({**base.model_dump(), **overrides})
    config = LauncherConfig(
        site_id=site.id, data_dir=site_path / "data", settings=launcher_settings, **options
    )
    return await run_launcher(settings, config)


def _log_to_site(site_path: Path) -> None:
    """When the site's directory is here, the full log goes to its
    ``logs/launcher-<host>-<pid>.log`` (rotated as its ``logs:`` settings say) and stderr
    keeps the warnings and errors; elsewhere everything stays on stderr."""
    from balsam_mq.site.config import load_config
    from balsam_mq.site.directory import SiteDirectory
    from balsam_mq.site.logs import rotating_handler

    site_dir = SiteDirectory(site_path)
    if not site_dir.settings_file.is_file():
        return
    path = site_dir.logs / f"launcher-{socket.gethostname()}-{os.getpid()}.log"
    log = logging.getLogger("balsam_mq.launcher")
    try:
        handler = rotating_handler(path, load_config(site_dir.settings_file).logs)
    except OSError as exc:
        log.warning("cannot write %s (%s): the log stays on stderr", path, exc)
        return
    root = logging.getLogger()
    root.addHandler(handler)
    log.info("launcher log: %s", path)
    for other in root.handlers:
        if other is not handler:
            other.setLevel(logging.WARNING)
