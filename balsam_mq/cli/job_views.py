"""Job selections and what `job ls` shows of them: listings (a window of rows) and counts
per state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from rich.text import Text

from balsam_mq.cli.common import moment
from balsam_mq.cli.output import note, print_json, show_table, state_text, when
from balsam_mq.domain.states import JobState

if TYPE_CHECKING:
    from balsam_mq.sdk import Job, Query

COLUMNS = ["id", "site", "app", "workdir", "state", "tags", "updated"]
# a listing counts the jobs it does not show up to this many; beyond, it says "more than"
COUNT_CAP = 10_000


@dataclass(frozen=True)
class JobFilters:
    """The job selection of `job ls` and `job rm`, as the user typed it."""

    ids: list[int] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    states_not: list[str] = field(default_factory=list)
    tags: dict[str, str | None] = field(default_factory=dict)  # None: the key, any value
    params: dict[str, Any] = field(default_factory=dict)  # parameter values (JSON)
    app: str | None = None
    site: str | None = None
    workdir: str | None = None
    since: str | None = None  # changed since this time or age (an age slides as time passes)

    def given(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

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
        if self.states_not:
            filters["state__nin"] = self.states_not
        if self.tags:
            filters["tags"] = self.tags
        if self.params:
            filters["parameters"] = self.params
        if self.workdir:
            filters["workdir__contains"] = self.workdir
        return filters

    async def query(self, resolved: dict[str, Any] | None = None) -> Query[Job]:
        """The SDK query (``resolved``: the keywords of an earlier :meth:`resolve`); an age
        given to ``since`` counts back from now, each time a query is made."""
        from balsam_mq.sdk import Job

        keywords = resolved if resolved is not None else await self.resolve()
        if self.since is not None:
            keywords = {**keywords, "last_update__gte": moment(self.since, "--since")}
        return Job.objects.filter(**keywords)

    def possible_states(self) -> list[JobState]:
        """The states a selected job may be in, by the state filters alone."""
        return [
            s
            for s in JobState
            if (not self.states or s.value in self.states) and s.value not in self.states_not
        ]


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
    offset: int = 0  # the matches skipped before the first shown
    at: datetime = field(default_factory=datetime.now)

    @classmethod
    async def of(
        cls, jobs: Sequence[Job | JobRow], total: int | None = None, offset: int = 0
    ) -> Listing:
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
            offset,
        )

    def site(self, job: Job | JobRow) -> str:
        return self.sites.get(job.site_id or 0, str(job.site_id))

    def app(self, job: Job | JobRow) -> str:
        return self.apps.get(job.app_id or 0, str(job.app_id))

    def total_text(self) -> str:
        return f"more than {COUNT_CAP}" if self.total > COUNT_CAP else str(self.total)

    def window_text(self) -> str | None:
        """What a window that leaves jobs out shows (``showing 20 of 57 jobs``); ``None``
        when it shows every match."""
        shown, total = len(self.jobs), self.total_text()
        if not self.offset:
            return f"showing {shown} of {total} jobs" if self.total > shown else None
        if not shown:
            return f"no jobs after the first {self.offset} of {total}"
        return f"showing jobs {self.offset + 1}-{self.offset + shown} of {total}"


async def fetch_listing(
    filters: JobFilters,
    order_by: str,
    limit: int,
    resolved: dict[str, Any] | None = None,
    *,
    whole: bool = False,
    offset: int = 0,
) -> Listing:
    """The listing of ``filters``: whole jobs (``whole``, for JSON), else their rows; the
    ``limit`` (0: all) matches after the first ``offset``."""
    query = (await filters.query(resolved)).order_by(order_by)
    window = query[offset : offset + limit] if limit else query[offset:]
    jobs: Sequence[Job | JobRow]
    if whole:
        jobs = await window
    else:
        jobs = [JobRow(**row) for row in await window.values(*ROW_FIELDS)]
    total = offset + len(jobs)
    if (limit and len(jobs) == limit) or (offset and not jobs):
        total = await query[: COUNT_CAP + 1].count()
    return await Listing.of(jobs, total, offset)


def job_json(job: Job, listing: Listing) -> dict[str, Any]:
    """A job for scripts: every field, plus its site's and app's names."""
    return {**job.display(), "site": listing.site(job), "app": listing.app(job)}


def job_line(doc: dict[str, Any]) -> str:
    return (
        f"job {doc['id']} ({doc['app']} at site {doc['site']}, workdir {doc['workdir']}): "
        f"{doc['state']}"
    )


def rows(listing: Listing) -> list[list[str | Text]]:
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


def listing_json(listing: Listing) -> list[dict[str, Any]]:
    return [job_json(j, listing) for j in listing.jobs if not isinstance(j, JobRow)]


def show_listing(listing: Listing, *, as_json: bool) -> None:
    if as_json:
        print_json(listing_json(listing))
    else:
        show_table(COLUMNS, rows(listing))
    window = listing.window_text()
    if window is not None:
        note(f"{window} (--limit 0 shows all)" if not listing.offset else window)


# --- counts per state -------------------------------------------------------------------


async def count_states(
    filters: JobFilters, resolved: dict[str, Any] | None = None
) -> dict[JobState, int]:
    """How many selected jobs are in each state (those with none left out), in the order
    of the lifecycle: one count per state the filters allow, made together."""
    query = await filters.query(resolved)
    counts: dict[JobState, int] = {}

    async def count(state: JobState) -> None:
        counts[state] = await query.filter(state=state.value).count()

    async with anyio.create_task_group() as tg:
        for state in filters.possible_states():
            tg.start_soon(count, state)
    return {s: counts[s] for s in JobState if counts.get(s)}


def counts_json(counts: dict[JobState, int]) -> dict[str, int]:
    return {state.value: n for state, n in counts.items()}


def count_rows(counts: dict[JobState, int]) -> list[list[str | Text]]:
    return [[state_text(state.value), str(n)] for state, n in counts.items()]


def show_counts(counts: dict[JobState, int], *, as_json: bool) -> None:
    """``job ls --by-state``: a table (plain ``STATE<tab>N`` lines off a terminal), or a
    JSON object ``{"STATE": N}``; states with no job are left out."""
    if as_json:
        print_json(counts_json(counts))
        return
    show_table(["state", "jobs"], count_rows(counts))
