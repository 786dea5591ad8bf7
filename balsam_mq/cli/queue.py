"""`balsam-mq queue submit | ls | rm`: a site's batch jobs (pilot allocations)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer
from rich.table import Table

from balsam_mq.cli.common import JsonOption
from balsam_mq.cli.output import console, print_json
from balsam_mq.domain import BatchJob, BatchJobState
from balsam_mq.errors import ConfigError, NotFound
from balsam_mq.launcher.config import parse_filter_tags
from balsam_mq.settings import load_settings
from balsam_mq.store import Store, open_store

app = typer.Typer(help="Submit, list and delete batch jobs (launcher allocations).")
B = BatchJobState
ACTIVE = [B.PENDING_SUBMISSION, B.QUEUED, B.RUNNING, B.PENDING_DELETION]

SiteOption = Annotated[
    str, typer.Option("--site", "-s", envvar="BALSAM_SITE", help="Site name or id.")
]


async def _site_id(store: Store, site: str) -> int:
    from balsam_mq.launcher.main import resolve_site

    found = await resolve_site(store, site)
    assert found.id is not None
    return found.id


@app.command()
def submit(
    site: SiteOption,
    num_nodes: Annotated[int, typer.Option("--num-nodes", "-n", min=1, help="Nodes.")],
    wall_time: Annotated[int, typer.Option("--wall-time", "-t", min=1, help="Minutes.")],
    queue: Annotated[str, typer.Option("--queue", "-q", help="Scheduler queue.")] = "",
    project: Annotated[str, typer.Option("--project", "-A", help="Allocation.")] = "",
    job_mode: Annotated[str, typer.Option("--job-mode", help="mpi or serial.")] = "mpi",
    filter_tags: Annotated[
        list[str] | None,
        typer.Option("--filter-tags", help="Run only jobs with this tag (k=v; repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ask the site agent to submit a batch job that runs a launcher.

    Example:  balsam-mq queue submit --site polaris -n 4 -t 60 -q debug -A datascience
    """
    if job_mode not in ("mpi", "serial"):
        raise ConfigError("--job-mode must be mpi or serial")
    tags = parse_filter_tags(filter_tags or [])

    async def create() -> BatchJob:
        settings = load_settings()
        async with open_store(settings.mongodb_url, settings.db) as store:
            return await store.batch_jobs.create(
                BatchJob(
                    site_id=await _site_id(store, site),
                    num_nodes=num_nodes,
                    wall_time_min=wall_time,
                    queue=queue,
                    project=project,
                    job_mode=job_mode,
                    filter_tags=tags,
                )
            )

    batch_job = anyio.run(create)
    if as_json:
        print_json(batch_job.model_dump(mode="json"))
        return
    typer.echo(
        f"BatchJob {batch_job.id}: {num_nodes} node(s), {wall_time} min, pending submission "
        "(the site agent submits it)"
    )


@app.command("ls")
def ls(
    site: Annotated[
        str,
        typer.Option(
            "--site", "-s", envvar="BALSAM_SITE", help="Site name or id ('all': every site)."
        ),
    ],
    history: Annotated[
        bool, typer.Option("--history", help="Include finished and failed batch jobs.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List a site's batch jobs (active ones unless --history).

    Example:  balsam-mq queue ls --site polaris --json
    """

    async def fetch() -> list[BatchJob]:
        settings = load_settings()
        async with open_store(settings.mongodb_url, settings.db) as store:
            site_id = None if site == "all" else await _site_id(store, site)
            return await store.batch_jobs.for_site(site_id, None if history else ACTIVE)

    batch_jobs = anyio.run(fetch)
    if as_json:
        print_json([b.model_dump(mode="json") for b in batch_jobs])
        return
    rows = [_row(b) for b in batch_jobs]
    columns = ["id", "scheduler_id", "state", "nodes", "wall_min", "queue", "project", "mode"]
    if site == "all":
        columns.insert(1, "site_id")
    out = console()
    if not out.is_terminal:
        for row in rows:
            typer.echo("\t".join(str(row[c]) for c in columns))
        return
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    out.print(table)


def _row(b: BatchJob) -> dict[str, Any]:
    return {
        "id": b.id,
        "site_id": b.site_id,
        "scheduler_id": b.scheduler_id or "-",
        "state": b.state.value,
        "nodes": b.num_nodes,
        "wall_min": b.wall_time_min,
        "queue": b.queue or "-",
        "project": b.project or "-",
        "mode": b.job_mode,
    }


@app.command()
def rm(
    batch_job_id: Annotated[int, typer.Argument(help="The batch job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Delete a batch job (its launcher moves running jobs to RUN_TIMEOUT).

    Not yet submitted: withdrawn. Queued or running: the site agent deletes it.
    --json prints {"id", "outcome", "state"}: outcome withdrawn, deletion_requested or
    already_requested, state the batch job's state now.

    Example:  balsam-mq queue rm 12
    """

    async def delete() -> tuple[str, BatchJobState]:
        settings = load_settings()
        async with open_store(settings.mongodb_url, settings.db) as store:
            current = await store.batch_jobs.get(batch_job_id)
            if current.state in (B.FINISHED, B.SUBMIT_FAILED):
                raise NotFound(f"BatchJob {batch_job_id} is already {current.state.value}")
            if await store.batch_jobs.set_state(
                [batch_job_id], B.FINISHED, expect=[B.PENDING_SUBMISSION]
            ):
                return "withdrawn", B.FINISHED
            moved = await store.batch_jobs.set_state(
                [batch_job_id], B.PENDING_DELETION, expect=[B.QUEUED, B.RUNNING]
            )
            if moved:
                return "deletion_requested", B.PENDING_DELETION
            return "already_requested", (await store.batch_jobs.get(batch_job_id)).state

    outcome, state = anyio.run(delete)
    if as_json:
        print_json({"id": batch_job_id, "outcome": outcome, "state": state.value})
        return
    typer.echo(f"BatchJob {batch_job_id}: {OUTCOMES[outcome]}")


OUTCOMES = {
    "withdrawn": "withdrawn before submission",
    "deletion_requested": "deletion requested",
    "already_requested": "deletion already requested",
}
