"""`balsam-mq transfer ls`: the transfer items, one per job, direction and slot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from balsam_mq.cli.common import JsonOption, run, site_filter
from balsam_mq.cli.output import print_json, show_table, when

if TYPE_CHECKING:
    from balsam_mq.sdk import TransferItem

app = typer.Typer()

COLUMNS = ["job", "dir", "slot", "location", "state", "bytes", "task", "tries", "finished", "error"]


@app.command("ls")
def ls(
    job_ids: Annotated[
        list[int] | None, typer.Option("--job", help="Only this job's items (repeatable).")
    ] = None,
    site: Annotated[
        str | None,
        site_filter("items"),
    ] = None,
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only items in this state: pending, active, waiting, error, done, failed "
            "(repeatable).",
        ),
    ] = None,
    direction: Annotated[
        str | None, typer.Option("--direction", help="Only 'in' (stage-in) or 'out' items.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Show at most N items (0: all).")
    ] = 100,
    as_json: JsonOption = False,
) -> None:
    """List transfer items: each slot of each job, its state, the batch it moved in
    (task), bytes, failed tries and the last error; newest first.

    Example:  balsam-mq transfer ls --state error --state failed
    """
    from balsam_mq.domain import TransferState

    wanted = [s.lower() for s in states or []]
    known = {s.value for s in TransferState}
    for state in wanted:
        if state not in known:
            raise typer.BadParameter(
                f"unknown state {state!r}; known: {', '.join(sorted(known))}",
                param_hint="--state",
            )
    if direction not in (None, "in", "out"):
        raise typer.BadParameter("expected 'in' or 'out'", param_hint="--direction")

    async def fetch() -> list[TransferItem]:
        from balsam_mq.sdk import Site, TransferItem

        filters: dict[str, Any] = {}
        if job_ids:
            filters["job_id"] = job_ids
        if site is not None and site != "all":
            filters["site_id"] = (await Site.objects.lookup(site)).id
        if wanted:
            filters["state"] = wanted
        if direction is not None:
            filters["direction"] = direction
        query = TransferItem.objects.filter(**filters).order_by("-last_update")
        return list(await (query[:limit] if limit else query))

    items = run(fetch)
    if as_json:
        print_json([item.model_dump(mode="json") for item in items])
        return
    show_table(
        COLUMNS,
        (
            [
                str(i.job_id),
                i.direction,
                i.slot,
                i.location,
                i.state.value,
                f"{i.bytes:,}",
                i.task_id or "-",
                str(i.failures),
                when(i.finished_at),
                i.error or "",
            ]
            for i in items
        ),
    )
