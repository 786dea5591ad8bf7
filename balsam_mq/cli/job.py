"""`balsam-mq job ls | create | modify | kill | reset | rm | show | logs`: jobs from the command
line, through the SDK."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer

from balsam_mq.cli.common import (
    JsonOption,
    moment,
    parse_json_object,
    parse_pairs,
    run,
    run_until_interrupted,
    state_name,
    with_options,
)
from balsam_mq.cli.job_create import create
from balsam_mq.cli.job_views import (
    JobFilters,
    Listing,
    count_states,
    fetch_listing,
    show_counts,
    show_listing,
)
from balsam_mq.cli.output import print_json
from balsam_mq.domain.states import parse_state

app = typer.Typer(
    help="List, create, modify, kill, reset, delete and inspect jobs.", no_args_is_help=True
)

# --- the job selection: its options are declared once, here, and taken by every command
# that selects jobs (ls, rm, kill, reset, modify) through `selects_jobs` ------------------

IdsArgument = Annotated[
    list[int] | None,
    typer.Argument(metavar="IDS", help="The ids of the jobs (the filters given hold too)."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _filters(
    ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this job id (repeatable).")
    ] = None,
    states: Annotated[
        list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
    states_not: Annotated[
        list[str] | None,
        typer.Option("--state-not", help="Leave out jobs in this state (repeatable)."),
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="Only jobs tagged key=value (repeatable).")
    ] = None,
    tag_keys: Annotated[
        list[str] | None,
        typer.Option("--tag-key", help="Only jobs that have this tag, any value (repeatable)."),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Only jobs with this parameter value, name=value; the value is read as "
            "JSON where it parses (n=3 is the number, n='\"3\"' the text) (repeatable).",
        ),
    ] = None,
    app_ref: Annotated[
        str | None, typer.Option("--app", "-a", help="Only jobs of this app (name or id).")
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            "--site", "-s", help="Only jobs at this site (name or id; 'all': every site)."
        ),
    ] = None,
    workdir: Annotated[
        str | None, typer.Option("--workdir", help="Only jobs whose workdir contains this text.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only jobs changed since this time: an age (30m, 2h, 1d, 1w) or ISO 8601.",
        ),
    ] = None,
) -> JobFilters:
    """The job filters: every command that selects jobs takes these options."""
    if since is not None:
        moment(since, "--since")  # a malformed time is a usage error before any I/O
    tag_filter: dict[str, str | None] = {key: None for key in tag_keys or []}
    tag_filter.update({k: str(v) for k, v in parse_pairs(tags, "--tag").items()})
    return JobFilters(
        ids=list(ids or []),
        states=[state_name(s) for s in states or []],
        states_not=[state_name(s) for s in states_not or []],
        tags=tag_filter,
        params=parse_pairs(params, "--param", json_values=True),
        app=app_ref,
        site=None if site == "all" else site,
        workdir=workdir,
        since=since,
    )


selects_jobs = with_options(_filters, into="filters")


def _chosen(filters: JobFilters, ids: list[int] | None, hint: str = "--state, --tag") -> JobFilters:
    """``filters`` with the ids given as arguments; neither ids nor a filter is a usage error
    (a command that changes or deletes jobs never means all of them)."""
    chosen = replace(filters, ids=[*filters.ids, *(ids or [])])
    if not chosen.given():
        raise typer.BadParameter(f"give job ids or at least one filter ({hint}, ...)")
    return chosen


@app.command("ls")
@selects_jobs
def ls(
    filters: JobFilters,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            help="Sort by this field; -FIELD sorts descending (default: id; live --watch: "
            "-last_update).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Show at most N jobs (0: all).")
    ] = 100,
    offset: Annotated[
        int, typer.Option("--offset", min=0, help="Skip the first N jobs of the order.")
    ] = 0,
    by_state: Annotated[
        bool, typer.Option("--by-state", help="Count the jobs in each state instead.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the listing up to date until Ctrl-C.")
    ] = False,
    watch_seconds: Annotated[float | None, typer.Option("--watch-seconds", hidden=True)] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs, filtered and ordered, or count them per state; --watch follows job events.

    Filters of different kinds must all hold; a repeated --id or --state means any
    of them; state names may be in any case. With --watch on a terminal a live view
    shows the counts per state, a progress bar and the jobs changed last on top, until
    Ctrl-C (a relay must run: the site agent runs one); off a terminal each listing
    is printed again, with --json as one JSON array per line.

    Example:  balsam-mq job ls --state FAILED --tag run=H2O --order-by -last_update --limit 20
    """
    if watch:
        from balsam_mq.cli.job_watch import Watch, watch_display

        view = Watch(filters, order_by, limit, offset, as_json=as_json, by_state=by_state)
        run_until_interrupted(lambda: watch_display(view), watch_seconds)
        return
    if by_state:
        show_counts(run(lambda: count_states(filters)), as_json=as_json)
        return

    async def main() -> Listing:
        return await fetch_listing(filters, order_by or "id", limit, whole=as_json, offset=offset)

    show_listing(run(main), as_json=as_json)


app.command()(create)

# in `job modify` --state and --tag say what to set: its state and tag filters are renamed
MODIFY_FILTERS = {"--state": "--from-state", "--tag": "--with-tag", "--tag-key": "--with-tag-key"}


@app.command()
@with_options(_filters, into="filters", rename=MODIFY_FILTERS)
def modify(
    ids: IdsArgument = None,
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
    *,
    filters: JobFilters,
    as_json: JsonOption = False,
) -> None:
    """Change the state, tags or data of jobs (by id or by filters) in one transaction.

    A state change follows the state table as the user (FAILED -> RESTART_READY, any
    pending or RUNNING state -> FAILED, FAILED or JOB_FINISHED -> READY, ...); an
    illegal one changes nothing. Tags and data keys are set one by one: the others are
    kept. The filters are those of `job ls`, with --from-state, --with-tag and
    --with-tag-key for its --state, --tag and --tag-key (which say here what to set).
    --json prints {"updated": N, "ids": [...]}.

    Example:  balsam-mq job modify --from-state FAILED --with-tag run=H2O --state RESTART_READY
    """
    changes: dict[str, Any] = {}
    if state is not None:
        try:
            changes["state"] = parse_state(state_name(state))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--state") from None
    for key, value in parse_pairs(tags, "--tag").items():
        changes[f"tags.{key}"] = value
    for key, value in parse_json_object(data_json, "--data-json").items():
        changes[f"data.{key}"] = value
    if not changes:
        raise typer.BadParameter("nothing to change: give --state, --tag or --data-json")
    chosen = _chosen(filters, ids, "--from-state, --with-tag")
    from balsam_mq.cli.job_steer import modify_jobs

    modify_jobs(chosen, changes, as_json=as_json)


@app.command("rm")
@selects_jobs
def rm(
    ids: IdsArgument = None,
    *,
    filters: JobFilters,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete jobs by id or by the filters of `job ls` (at least one is needed).

    Their event history stays in the event log. A RUNNING job is killed first.
    --json prints {"deleted": N, "ids": [...]}.

    Example:  balsam-mq job rm --state FAILED --tag run=H2O --yes
    """
    from balsam_mq.cli.job_steer import delete_jobs

    delete_jobs(_chosen(filters, ids), yes=yes, as_json=as_json)


@app.command()
@selects_jobs
def kill(
    ids: IdsArgument = None,
    *,
    filters: JobFilters,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Kill jobs by id or by the filters of `job ls`: each unfinished one fails.

    Its reason is "killed by the user". A RUNNING job's launcher terminates its process
    group within seconds (a relay must run: the site agent runs one); a job that has
    not run never starts. Finished jobs are left alone, and the output says so.

    Example:  balsam-mq job kill --tag run=H2O --state RUNNING --yes
    """
    from balsam_mq.cli.job_steer import kill_jobs

    kill_jobs(_chosen(filters, ids), yes=yes, as_json=as_json)


@app.command()
@selects_jobs
def reset(
    ids: IdsArgument = None,
    *,
    filters: JobFilters,
    descendants: Annotated[
        bool,
        typer.Option("--descendants", help="Reset the jobs depending on them too (transitively)."),
    ] = False,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Run FAILED or JOB_FINISHED jobs (by id or by the filters of `job ls`) again.

    They re-enter at READY: stage-in, preprocess and the check of their parents run
    again. A job with an unfinished parent waits for it; one with a FAILED parent fails again,
    naming it. With --descendants the jobs that depend on them are reset too and wait
    for them. Jobs in other states are left alone, and the output says so.

    Example:  balsam-mq job reset 12 --descendants --yes
    """
    from balsam_mq.cli.job_steer import reset_jobs

    reset_jobs(_chosen(filters, ids), descendants=descendants, yes=yes, as_json=as_json)


@app.command()
def show(
    job_id: Annotated[int, typer.Argument(metavar="JOB_ID", help="The job's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a job: what it waits for, its fields, workdir path, time in each state, event
    history, and result or exception (the output tail and traceback printed once).

    Example:  balsam-mq job show 12
    """
    from balsam_mq.cli.job_show import show_details

    show_details(job_id, as_json=as_json)


@app.command()
def logs(
    job_id: Annotated[int, typer.Argument(metavar="JOB_ID", help="The job's id.")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Go on printing what they gain until the job ends or Ctrl-C."
        ),
    ] = False,
    follow_seconds: Annotated[float | None, typer.Option("--follow-seconds", hidden=True)] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's job.out (its run's output) and balsam.log (its hooks' output).

    They are read from the job's workdir under the site's data/ directory, so this runs
    where that directory is (the site's machine, or a shared file system). With
    --follow it goes on until the job is JOB_FINISHED or FAILED, or until Ctrl-C.
    --json (not with --follow) prints both files' paths and text (null: not written yet).

    Example:  balsam-mq job logs 12 --follow
    """
    from balsam_mq.cli.job_logs import follow_logs, locate, logs_json, show_logs

    if follow and as_json:
        raise typer.BadParameter("--json prints the files once: not with --follow")
    if follow:
        run_until_interrupted(lambda: follow_logs(job_id), follow_seconds)
    elif as_json:
        print_json(logs_json(run(lambda: locate(job_id))))
    else:
        show_logs(run(lambda: locate(job_id)))
