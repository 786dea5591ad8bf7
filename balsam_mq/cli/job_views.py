"""Job selections and what the job commands show: listings, the live listing, one job in full."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import typer
from rich.text import Text

from balsam_mq.cli.common import (
    build_table,
    console,
    note,
    print_json,
    run,
    show_fields,
    show_table,
    state_text,
    when,
)
from balsam_mq.errors import NotFound

if TYPE_CHECKING:
    from balsam_mq.domain import JobState
    from balsam_mq.sdk import EventLog, Job, Query

WATCH_INTERVAL = 0.25  # seconds: at most one re-query this often, however many events arrive
COLUMNS = ["id", "site", "app", "workdir", "state", "tags", "updated"]
# a listing counts the jobs it does not show up to this many; beyond, it says "more than"
COUNT_CAP = 10_000


@dataclass(frozen=True)
class JobFilters:
    """The job selection of `job ls` and `job rm`, as the user typed it."""

    ids: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    app: str | None = None
    site: str | None = None
    workdir: str | None = None

    def given(self) -> bool:
        return bool(self.ids or self.states or self.tags or self.app or self.site or self.workdir)

    async def resolve(self) -> dict[str, Any]:
        """The SDK filter keywords; an unknown site or app is an error, not an empty list."""
        from balsam_mq.sdk import App, Site

        filters: dict[str, Any] = {}
        site_id = None
        if self.site is not None:
            site_id = filters["site_id"] = (await Site.objects.lookup(self.site)).id
        if self.app is not None:
            apps = await App.objects.lookup(self.app, site=site_id)
            filters["app_id"] = [a.id for a in apps]
        if self.ids:
            filters["id"] = self.ids
        if self.states:
            filters["state"] = self.states
        if self.tags:
            filters["tags"] = self.tags
        if self.workdir:
            filters["workdir__contains"] = self.workdir
        return filters

    async def query(self, resolved: dict[str, Any] | None = None) -> Query[Job]:
        """The SDK query (``resolved``: the keywords of an earlier :meth:`resolve`)."""
        from balsam_mq.sdk import Job

        return Job.objects.filter(**(resolved if resolved is not None else await self.resolve()))


@dataclass(frozen=True)
class JobRow:
    """What the table of a listing shows of a job, read alone (no parameters, data,
    results or tracebacks)."""

    id: int
    site_id: int
    app_id: int
    workdir: str
    state: JobState
    tags: dict[str, str]
    last_update: datetime | None


ROW_FIELDS = tuple(f.name for f in fields(JobRow))


@dataclass
class Listing:
    """Jobs (whole, or their rows) with the names of their sites and apps, and how many
    matched in all (counted up to :data:`COUNT_CAP` and one more)."""

    jobs: Sequence[Job | JobRow]
    sites: dict[int, str]
    apps: dict[int, str]
    total: int
    at: datetime = field(default_factory=datetime.now)

    @classmethod
    async def of(cls, jobs: Sequence[Job | JobRow], total: int | None = None) -> Listing:
        from balsam_mq.sdk import App, Site

        site_ids = sorted({j.site_id for j in jobs if j.site_id is not None})
        app_ids = sorted({j.app_id for j in jobs if j.app_id is not None})
        sites = await Site.objects.filter(id=site_ids).values("id", "name")
        apps = await App.objects.filter(id=app_ids).values("id", "name")
        return cls(
            jobs,
            {d["id"]: d["name"] for d in sites},
            {d["id"]: d["name"] for d in apps},
            len(jobs) if total is None else total,
        )

    def site(self, job: Job | JobRow) -> str:
        return self.sites.get(job.site_id or 0, str(job.site_id))

    def app(self, job: Job | JobRow) -> str:
        return self.apps.get(job.app_id or 0, str(job.app_id))

    def total_text(self) -> str:
        return f"more than {COUNT_CAP}" if self.total > COUNT_CAP else str(self.total)


async def fetch_listing(
    filters: JobFilters,
    order_by: str,
    limit: int,
    resolved: dict[str, Any] | None = None,
    *,
    whole: bool = False,
) -> Listing:
    """The listing of ``filters``: whole jobs (``whole``, for JSON), else their rows."""
    query = (await filters.query(resolved)).order_by(order_by)
    window = query[:limit] if limit else query
    jobs: Sequence[Job | JobRow]
    if whole:
        jobs = await window
    else:
        jobs = [JobRow(**row) for row in await window.values(*ROW_FIELDS)]
    total = len(jobs)
    if limit and total == limit:
        total = await query[: COUNT_CAP + 1].count()
    return await Listing.of(jobs, total)


def job_json(job: Job, listing: Listing) -> dict[str, Any]:
    """A job for scripts: every field, plus its site's and app's names."""
    return {**job.display(), "site": listing.site(job), "app": listing.app(job)}


def job_line(doc: dict[str, Any]) -> str:
    return (
        f"job {doc['id']} ({doc['app']} at site {doc['site']}, workdir {doc['workdir']}): "
        f"{doc['state']}"
    )


def _rows(listing: Listing) -> list[list[str | Text]]:
    return [
        [
            str(j.id),
            listing.site(j),
            listing.app(j),
            j.workdir,
            state_text(j.state.value),
            ",".join(f"{k}={v}" for k, v in j.tags.items()),
            when(j.last_update),
        ]
        for j in listing.jobs
    ]


def _json(listing: Listing) -> list[dict[str, Any]]:
    return [job_json(j, listing) for j in listing.jobs if not isinstance(j, JobRow)]


def show_listing(listing: Listing, *, as_json: bool) -> None:
    if as_json:
        print_json(_json(listing))
    else:
        show_table(COLUMNS, _rows(listing))
    if listing.total > len(listing.jobs):
        shown = len(listing.jobs)
        note(f"showing {shown} of {listing.total_text()} jobs (--limit 0 shows all)")


# --- the live listing -------------------------------------------------------------------


def follow_filters(resolved: dict[str, Any]) -> dict[str, Any]:
    """Event filters that let through every event that may change the listing: the
    job events of its sites, apps and ids (other filters are checked by re-querying)."""
    out: dict[str, Any] = {"kind": "job"}
    for job_key, event_key in (("site_id", "site_id"), ("app_id", "app_id"), ("id", "job_id")):
        if job_key in resolved:
            out[event_key] = resolved[job_key]
    return out


async def watch_display(filters: JobFilters, order_by: str, limit: int, *, as_json: bool) -> None:
    """Show the listing, then again after every burst of job events, until cancelled."""
    from balsam_mq.sdk import EventLog

    resolved = await filters.resolve()
    async with EventLog.objects.follow(**follow_filters(resolved)) as feed:
        with _renderer(as_json) as render:
            render(await fetch_listing(filters, order_by, limit, resolved, whole=as_json))
            last = anyio.current_time()
            async for _ in feed.batches():
                # at most one re-query per interval: a burst of events becomes one listing
                await anyio.sleep(max(0.0, last + WATCH_INTERVAL - anyio.current_time()))
                render(await fetch_listing(filters, order_by, limit, resolved, whole=as_json))
                last = anyio.current_time()


@contextmanager
def _renderer(as_json: bool) -> Iterator[Callable[[Listing], None]]:
    out = console()
    if as_json or not out.is_terminal:
        shown: list[Any] = []

        def reprint(listing: Listing) -> None:
            content = _json(listing) if as_json else _rows(listing)
            if shown == [content]:  # printed again only when something changed
                return
            shown[:] = [content]
            if as_json:
                print_json(content, lines=True)
                return
            show_table(COLUMNS, _rows(listing))
            typer.echo("")
            sys.stdout.flush()

        yield reprint
        return
    from rich.console import Group
    from rich.live import Live

    with Live(console=out, auto_refresh=False) as live:

        def update(listing: Listing) -> None:
            when_ = f"{listing.at:%H:%M:%S}"
            caption = f"{listing.total_text()} jobs · {when_} · Ctrl-C stops watching"
            if listing.total > len(listing.jobs):
                caption = f"showing {len(listing.jobs)} of " + caption
            table = build_table(COLUMNS, _rows(listing))
            live.update(Group(table, Text(caption, style="dim")), refresh=True)

        yield update


# --- one job in full --------------------------------------------------------------------


@dataclass
class Details:
    job: Job
    listing: Listing
    site_path: str
    hostname: str
    events: list[EventLog]


def show_details(job_id: int, *, as_json: bool) -> None:
    async def main() -> Details:
        from balsam_mq.sdk import EventLog, Job, Site

        job = await Job.objects.filter(id=job_id).first()
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        site = await Site.objects.filter(id=job.site_id).first()
        events = await EventLog.objects.filter(job_id=job_id).order_by("seq")
        return Details(
            job,
            await Listing.of([job]),
            site.path if site else "",
            site.hostname if site else "",
            events,
        )

    details = run(main)
    job = details.job
    workdir = _workdir_path(job, details.site_path)
    doc = job_json(job, details.listing)
    if as_json:
        print_json(
            {
                **doc,
                "workdir_path": workdir,
                "events": [e.model_dump(mode="json") for e in details.events],
            }
        )
        return
    outcome = doc
    pairs: list[tuple[str, str | Text]] = [
        ("job", str(job.id)),
        ("state", state_text(job.state.value)),
        ("app", f"{doc['app']} (id {job.app_id})"),
        ("site", f"{doc['site']} (id {job.site_id})"),
        ("workdir", job.workdir),
    ]
    if workdir:
        host = f" on {details.hostname}" if details.hostname else ""
        pairs.append(("workdir path", f"{workdir}{host}"))
    for name in ("parameters", "tags", "data", "parent_ids", "transfers", "state_data"):
        if doc[name]:
            pairs.append((name, repr(doc[name])))
    pairs.append(("resources", _resources(doc)))
    if job.launch_params:
        pairs.append(("launch params", repr(job.launch_params)))
    if job.return_code is not None:
        pairs.append(("return code", str(job.return_code)))
    if job.batch_job_id is not None:
        pairs.append(("batch job", str(job.batch_job_id)))
    pairs += [("created", when(job.created_at)), ("updated", when(job.last_update))]
    if "result" in outcome:
        pairs.append(("result", repr(outcome["result"])))
    if "exception" in outcome:
        exc = outcome["exception"]
        pairs.append(("exception", f"{exc['type']}: {exc['message']}"))
    show_fields(pairs)
    typer.echo("")
    show_table(
        ["time", "from", "to", "by", "data"],
        [
            [
                when(e.timestamp),
                e.from_state or "-",
                state_text(e.to_state),
                e.by.value if e.by else "-",
                repr(e.state_data) if e.state_data else "",
            ]
            for e in details.events
        ],
    )
    if "exception" in outcome and outcome["exception"]["traceback"]:
        typer.echo("")
        typer.echo(outcome["exception"]["traceback"].rstrip())


def _workdir_path(job: Job, site_path: str) -> str | None:
    return str(job.resolve_workdir(Path(site_path) / "data")) if site_path else None


def _resources(doc: dict[str, Any]) -> str:
    names = ("num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core")
    text = " ".join(f"{n}={doc[n]}" for n in names)
    text += f" gpus_per_rank={doc['gpus_per_rank']} node_packing_count={doc['node_packing_count']}"
    return text + f" wall_time_min={doc['wall_time_min']}"
