"""`balsam-mq events`: the event log (every state change), latest first or followed live."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from balsam_mq.cli.common import JsonOption, run, run_until_interrupted, site_filter
from balsam_mq.cli.output import console, print_json, show_table, state_text, when

if TYPE_CHECKING:
    from balsam_mq.sdk import EventLog

app = typer.Typer()

COLUMNS = ["time", "site", "subject", "from", "to", "by", "data"]


@app.command()
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    job_id: Annotated[int | None, typer.Option("--job", help="Only this job's events.")] = None,
    site: Annotated[
        str | None,
        site_filter("events"),
    ] = None,
    limit: Annotated[
        int,
        typer.Option("--limit", min=0, help="Show the N latest stored events first (0: all)."),
    ] = 50,
    follow_seconds: Annotated[float | None, typer.Option("--follow-seconds", hidden=True)] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the event log: the latest events, oldest first; --follow streams new ones.

    Every job state change is an event (so are app syncs and batch job changes).
    --follow listens on RabbitMQ (a relay must run: the site agent runs one) and
    prints each event as it is committed. With --json the listing is one array, and
    with --follow one JSON object per line.

    Example:  balsam-mq events --site polaris --follow
    """

    async def filters() -> dict[str, Any]:
        from balsam_mq.sdk import Site

        out: dict[str, Any] = {}
        if job_id is not None:
            out["job_id"] = job_id
        if site is not None and site != "all":
            out["site_id"] = (await Site.objects.lookup(site)).id
        return out

    if follow:

        async def stream() -> None:
            from balsam_mq.sdk import EventLog

            names: dict[int, str] = {}
            async with EventLog.objects.follow(history=limit or None, **await filters()) as feed:
                async for batch in feed.batches():
                    await _learn_sites(names, batch)
                    _print_events(batch, names, as_json=as_json, stream=True)

        run_until_interrupted(stream, follow_seconds)
        return

    async def latest() -> tuple[list[EventLog], dict[int, str]]:
        from balsam_mq.sdk import EventLog

        query = EventLog.objects.filter(**await filters()).order_by("-timestamp", "-id")
        found = list(reversed(await (query[:limit] if limit else query)))
        names: dict[int, str] = {}
        await _learn_sites(names, found)
        return found, names

    found, names = run(latest)
    _print_events(found, names, as_json=as_json, stream=False)


async def _learn_sites(names: dict[int, str], events: list[EventLog]) -> None:
    from balsam_mq.sdk import Site

    unknown = sorted({e.site_id for e in events} - names.keys())
    if unknown:
        names.update({s.id or 0: s.name async for s in Site.objects.filter(id=unknown)})


def _subject(e: EventLog) -> str:
    if e.kind == "job":
        return f"job {e.job_id}"
    if e.kind == "app":
        return f"app {e.app_id}"
    return f"batch job {e.batch_job_id}"


def _row(e: EventLog, names: dict[int, str]) -> list[str | Text]:
    return [
        when(e.timestamp),
        names.get(e.site_id, str(e.site_id)),
        _subject(e),
        e.from_state or "-",
        state_text(e.to_state),
        e.by.value if e.by else "-",
        repr(e.state_data) if e.state_data else "",
    ]


def _print_events(
    events: list[EventLog], names: dict[int, str], *, as_json: bool, stream: bool
) -> None:
    if as_json:
        docs = [{**e.model_dump(mode="json"), "site": names.get(e.site_id)} for e in events]
        if stream:
            for doc in docs:
                print_json(doc, lines=True)
        else:
            print_json(docs)
        return
    out = console()
    if stream and out.is_terminal:
        for e in events:  # one styled line per event: a table cannot grow while printed
            out.print(Text(" ").join(Text(c) if isinstance(c, str) else c for c in _row(e, names)))
        return
    show_table(COLUMNS, [_row(e, names) for e in events])
    sys.stdout.flush()
