"""`balsam-mq job ls | create | modify | rm | show`: jobs from the command line, through the SDK."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer

from balsam_mq.cli.common import (
    confirm,
    parse_json_object,
    parse_pairs,
    print_json,
    progress,
    run,
    run_until_interrupted,
)
from balsam_mq.cli.job_views import (
    JobFilters,
    Listing,
    fetch_listing,
    job_json,
    job_line,
    show_details,
    show_listing,
    watch_display,
)
from balsam_mq.domain.states import parse_state
from balsam_mq.errors import NotFound

app = typer.Typer(help="List, create, modify, delete and inspect jobs.", no_args_is_help=True)

# --- options shared by the commands that select jobs (ls, rm) ----------------------------

IdOption = Annotated[list[int] | None, typer.Option("--id", help="Only this job id (repeatable).")]
StateOption = Annotated[
    list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
]
TagOption = Annotated[
    list[str] | None, typer.Option("--tag", help="Only jobs tagged key=value (repeatable).")
]
AppOption = Annotated[
    str | None, typer.Option("--app", "-a", help="Only jobs of this app (name or id).")
]
SiteOption = Annotated[
    str | None, typer.Option("--site", "-s", help="Only jobs at this site (name or id).")
]
WorkdirOption = Annotated[
    str | None, typer.Option("--workdir", help="Only jobs whose workdir contains this text.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _filters(
    ids: list[int] | None,
    states: list[str] | None,
    tags: list[str] | None,
    app_ref: str | None,
    site: str | None,
    workdir: str | None,
) -> JobFilters:
    return JobFilters(
        ids=list(ids or []),
        states=list(states or []),
        tags={k: str(v) for k, v in parse_pairs(tags, "--tag").items()},
        app=app_ref,
        site=None if site == "all" else site,
        workdir=workdir,
    )


@app.command("ls")
def ls(
    ids: IdOption = None,
    states: StateOption = None,
    tags: TagOption = None,
    app_ref: AppOption = None,
    site: SiteOption = None,
    workdir: WorkdirOption = None,
    order_by: Annotated[
        str, typer.Option("--order-by", help="Sort by this field; -FIELD sorts descending.")
    ] = "id",
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Show at most N jobs (0: all).")
    ] = 100,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the listing up to date until Ctrl-C.")
    ] = False,
    watch_seconds: Annotated[float | None, typer.Option("--watch-seconds", hidden=True)] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, filtered and ordered; --watch re-lists on every job event.

    Filters of different kinds must all hold; a repeated --id or --state means any
    of them. With --watch a live table follows the site's job events (a relay must
    run: the site agent runs one); off a terminal each listing is printed again,
    with --json as one JSON array per line.

    Example:  balsam-mq job ls --state FAILED --tag run=H2O --order-by -last_update --limit 20
    """
    filters = _filters(ids, states, tags, app_ref, site, workdir)
    if watch:
        run_until_interrupted(
            lambda: watch_display(filters, order_by, limit, as_json=as_json), watch_seconds
        )
        return

    async def main() -> Listing:
        return await fetch_listing(filters, order_by, limit, whole=as_json)

    show_listing(run(main), as_json=as_json)


@app.command()
def create(
    app_ref: Annotated[str, typer.Option("--app", "-a", help="The app (name or id).")],
    workdir: Annotated[str, typer.Option("--workdir", help="Relative to the site's data/.")],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="A parameter key=value; the value is JSON if it parses."
        ),
    ] = None,
    tags: Annotated[list[str] | None, typer.Option("--tag", help="A tag key=value.")] = None,
    parents: Annotated[
        list[int] | None, typer.Option("--parent", help="Run after this job finishes.")
    ] = None,
    transfers: Annotated[
        list[str] | None, typer.Option("--transfer", help="A transfer slot=alias:/path.")
    ] = None,
    data_json: Annotated[
        str | None, typer.Option("--data-json", help="The job's data, a JSON object.")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="The app's site, if its name is ambiguous.")
    ] = None,
    num_nodes: Annotated[int | None, typer.Option("--num-nodes", "-n", min=1)] = None,
    ranks_per_node: Annotated[int | None, typer.Option("--ranks-per-node", min=1)] = None,
    threads_per_rank: Annotated[int | None, typer.Option("--threads-per-rank", min=1)] = None,
    threads_per_core: Annotated[int | None, typer.Option("--threads-per-core", min=1)] = None,
    gpus_per_rank: Annotated[float | None, typer.Option("--gpus-per-rank", min=0)] = None,
    node_packing_count: Annotated[int | None, typer.Option("--node-packing-count", min=1)] = None,
    wall_time_min: Annotated[int | None, typer.Option("--wall-time-min", min=0)] = None,
    launch_params: Annotated[
        list[str] | None, typer.Option("--launch-param", help="A launcher option key=value.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a job; its parameters are checked against the app's.

    Example:  balsam-mq job create --app Adder --workdir test/1 -p x=5 -p y=5 --tag run=demo
    """
    resources: dict[str, Any] = {
        "num_nodes": num_nodes,
        "ranks_per_node": ranks_per_node,
        "threads_per_rank": threads_per_rank,
        "threads_per_core": threads_per_core,
        "gpus_per_rank": gpus_per_rank,
        "node_packing_count": node_packing_count,
        "wall_time_min": wall_time_min,
    }
    fields: dict[str, Any] = {
        "parameters": parse_pairs(params, "--param", json_values=True),
        "tags": parse_pairs(tags, "--tag"),
        "data": parse_json_object(data_json, "--data-json"),
        "parent_ids": list(parents or []),
        "transfers": parse_pairs(transfers, "--transfer"),
        "launch_params": parse_pairs(launch_params, "--launch-param"),
        **{k: v for k, v in resources.items() if v is not None},
    }

    async def main() -> dict[str, Any]:
        from balsam_mq.sdk import Job

        job = Job(
            workdir, app_id=int(app_ref) if app_ref.isdigit() else app_ref, site=site, **fields
        )
        await job.save()
        listing = await Listing.of([job])
        return job_json(job, listing)

    document = run(main)
    if as_json:
        print_json(document)
        return
    typer.echo(f"created {job_line(document)}")


@app.command()
def modify(
    ids: Annotated[list[int], typer.Argument(metavar="IDS", help="The ids of the jobs to change.")],
    state: Annotated[
        str | None,
        typer.Option(
            "--state", help="Move to this state (allowed moves only, e.g. RESTART_READY)."
        ),
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Set the tag key=value (others kept).")
    ] = None,
    data_json: Annotated[
        str | None,
        typer.Option("--data-json", help="A JSON object whose keys are set in the job's data."),
    ] = None,
) -> None:
    """Change jobs' state, tags or data, all jobs in one transaction.

    A state change follows the state table as the user (FAILED -> RESTART_READY, any
    pending state -> FAILED, ...); an illegal one changes nothing. Tags and data keys
    are set one by one: the others are kept.

    Example:  balsam-mq job modify 12 13 --state RESTART_READY --tag retry=1
    """
    changes: dict[str, Any] = {}
    if state is not None:
        try:
            changes["state"] = parse_state(state)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--state") from None
    for key, value in parse_pairs(tags, "--tag").items():
        changes[f"tags.{key}"] = value
    for key, value in parse_json_object(data_json, "--data-json").items():
        changes[f"data.{key}"] = value
    if not changes:
        raise typer.BadParameter("nothing to change: give --state, --tag or --data-json")

    async def main() -> int:
        from balsam_mq.sdk import Job

        query = Job.objects.filter(id=ids)
        found = {row["id"] for row in await query.values("id")}
        missing = sorted(set(ids) - found)
        if missing:
            raise NotFound(f"job(s) {', '.join(map(str, missing))} do not exist")
        with progress(f"Updating {len(found)} jobs", None):
            return await query.update(**changes)

    updated = run(main)
    typer.echo(f"updated {updated} job{'' if updated == 1 else 's'}")


@app.command("rm")
def rm(
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="IDS", help="Ids of jobs to delete.")
    ] = None,
    states: StateOption = None,
    tags: TagOption = None,
    app_ref: AppOption = None,
    site: SiteOption = None,
    workdir: WorkdirOption = None,
    yes: YesOption = False,
) -> None:
    """Delete jobs by id or by the filters of `job ls` (at least one is needed).

    Their event history stays in the event log.

    Example:  balsam-mq job rm --state FAILED --tag run=H2O --yes
    """
    filters = _filters(ids, states, tags, app_ref, site, workdir)
    if not filters.given():
        raise typer.BadParameter("give job ids or at least one filter (--state, --tag, ...)")

    async def main() -> int:
        query = await filters.query()
        count = await query.count()
        if not count:
            return 0
        noun = "job" if count == 1 else "jobs"
        await anyio.to_thread.run_sync(confirm, f"Delete {count} {noun}?", yes)
        with progress(f"Deleting {count} {noun}", None):
            return await query.delete()

    deleted = run(main)
    typer.echo(f"deleted {deleted} job{'' if deleted == 1 else 's'}")


@app.command()
def show(
    job_id: Annotated[int, typer.Argument(metavar="JOB_ID", help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a job: its fields, workdir path, event history, and result or exception.

    Example:  balsam-mq job show 12
    """
    show_details(job_id, as_json=as_json)
