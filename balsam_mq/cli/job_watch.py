"""`job ls --watch`: the selection shown again after every burst of job events, live on a
terminal (counts per state, a progress bar, the jobs changed last on top), else re-printed."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import typer
from rich.text import Text

from balsam_mq.cli.job_views import (
    COLUMNS,
    JobFilters,
    Listing,
    count_rows,
    count_states,
    counts_json,
    fetch_listing,
    listing_json,
    rows,
)
from balsam_mq.cli.output import build_table, console, print_json, show_table, state_text
from balsam_mq.domain.states import TERMINAL_STATES, JobState

if TYPE_CHECKING:
    from rich.console import RenderableType

WATCH_INTERVAL = 0.25  # seconds: at most one re-query this often, however many events arrive
LIVE_ORDER = "-last_update"  # the live view's default order: a job that changes comes on top


@dataclass(frozen=True)
class Watch:
    """What `job ls --watch` was asked for."""

    filters: JobFilters
    order_by: str | None  # None: the default (ids; on the live view, the last changed first)
    limit: int
    offset: int = 0
    as_json: bool = False
    by_state: bool = False  # counts only, no jobs


@dataclass
class Snapshot:
    """One showing of the selection: counts per state, jobs, or both (the live view)."""

    counts: dict[JobState, int] | None = None
    listing: Listing | None = None
    at: datetime = field(default_factory=datetime.now)


def follow_filters(resolved: dict[str, Any]) -> dict[str, Any]:
    """Event filters that let through every event that may change the listing: the
    job events of its sites, apps and ids (other filters are checked by re-querying)."""
    out: dict[str, Any] = {"kind": "job"}
    for job_key, event_key in (("site_id", "site_id"), ("app_id", "app_id"), ("id", "job_id")):
        if job_key in resolved:
            out[event_key] = resolved[job_key]
    return out


async def watch_display(watch: Watch) -> None:
    """Show the selection, then again after every burst of job events, until cancelled."""
    from balsam_mq.sdk import EventLog

    live = not watch.as_json and console().is_terminal
    order = watch.order_by or (LIVE_ORDER if live else "id")
    resolved = await watch.filters.resolve()

    async def snapshot() -> Snapshot:
        counts = listing = None
        if live or watch.by_state:
            counts = await count_states(watch.filters, resolved)
        if not watch.by_state:
            listing = await fetch_listing(
                watch.filters,
                order,
                watch.limit,
                resolved,
                whole=watch.as_json,
                offset=watch.offset,
            )
        return Snapshot(counts, listing)

    async with EventLog.objects.follow(**follow_filters(resolved)) as feed:
        with _renderer(watch.as_json, live) as render:
            render(await snapshot())
            last = anyio.current_time()
            async for _ in feed.batches():
                # at most one re-query per interval: a burst of events becomes one showing
                await anyio.sleep(max(0.0, last + WATCH_INTERVAL - anyio.current_time()))
                render(await snapshot())
                last = anyio.current_time()


@contextmanager
def _renderer(as_json: bool, live: bool) -> Iterator[Callable[[Snapshot], None]]:
    if not live:
        yield _reprinter(as_json)
        return
    from rich.live import Live

    with Live(console=console(), auto_refresh=False) as screen:

        def update(snapshot: Snapshot) -> None:
            screen.update(live_view(snapshot), refresh=True)

        yield update


def _reprinter(as_json: bool) -> Callable[[Snapshot], None]:
    """Off a terminal (or with --json): each showing printed after the previous one, and
    only when it changed."""
    shown: list[Any] = []

    def reprint(snapshot: Snapshot) -> None:
        if snapshot.listing is not None:
            content: Any = listing_json(snapshot.listing) if as_json else rows(snapshot.listing)
        else:
            content = counts_json(snapshot.counts or {})
        if shown == [content]:
            return
        shown[:] = [content]
        if as_json:
            print_json(content, lines=True)
            return
        if snapshot.listing is not None:
            show_table(COLUMNS, content)
        else:
            show_table(["state", "jobs"], count_rows(snapshot.counts or {}))
        typer.echo("")
        sys.stdout.flush()

    return reprint


def live_view(snapshot: Snapshot) -> RenderableType:
    """The live view: counts per state, the progress bar (finished and failed of all
    selected), the jobs (those changed last on top, unless ordered otherwise), a caption."""
    from rich.console import Group

    counts = snapshot.counts or {}
    total = sum(counts.values())
    parts: list[RenderableType] = [_counts_line(counts), _progress(counts, total)]
    listing = snapshot.listing
    caption = f"{total} jobs · {snapshot.at:%H:%M:%S} · Ctrl-C stops watching"
    if listing is not None:
        parts.append(build_table(COLUMNS, rows(listing)))
        window = listing.window_text()
        if window is not None:
            caption = f"{window} · {snapshot.at:%H:%M:%S} · Ctrl-C stops watching"
    parts.append(Text(caption, style="dim"))
    return Group(*parts)


def _counts_line(counts: dict[JobState, int]) -> Text:
    if not counts:
        return Text("no jobs", style="dim")
    line = Text()
    for i, (state, n) in enumerate(counts.items()):
        if i:
            line.append("  ")
        line.append_text(state_text(state.value))
        line.append(f" {n}")
    return line


def _progress(counts: dict[JobState, int], total: int) -> RenderableType:
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    finished = counts.get(JobState.JOB_FINISHED, 0)
    failed = counts.get(JobState.FAILED, 0)
    ended = sum(n for s, n in counts.items() if s in TERMINAL_STATES)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=40)
    grid.add_column()
    grid.add_row(
        ProgressBar(total=max(total, 1), completed=ended, width=40),
        Text(f"{ended}/{total} done ({finished} finished, {failed} failed)"),
    )
    return grid
