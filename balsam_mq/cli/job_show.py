"""`job show`: one job in full, with what it waits for, its time in each state, and its
output tail and traceback printed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pymongo.errors import PyMongoError
from rich.text import Text

from balsam_mq.cli.common import run
from balsam_mq.cli.job_views import Listing, job_json
from balsam_mq.cli.output import print_json, show_fields, show_table, span, state_text, when
from balsam_mq.domain.models import utcnow
from balsam_mq.domain.states import RUNNABLE_STATES, TERMINAL_STATES, JobState
from balsam_mq.errors import BalsamError, NotFound
from balsam_mq.settings import load_settings

if TYPE_CHECKING:
    from balsam_mq.sdk import EventLog, Job
    from balsam_mq.settings import Settings

S = JobState
# batch jobs that hold, or will hold, an allocation where a launcher may run
ACTIVE_BATCH_JOBS = ("pending_submission", "queued", "running")
BELOW = "<printed below>"  # stands for a job's output tail where it is printed in full


@dataclass(frozen=True)
class RunPlace:
    """Where a job ran (or runs): the launcher session that claimed it, its host and pid;
    ``unknown`` says why they could not be read."""

    session_id: int
    host: str | None = None
    pid: int | None = None
    batch_job_id: int | None = None
    state: str | None = None  # the session's: RUNNING, STOPPED or LOST
    unknown: str | None = None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.session_id,
            "host": self.host,
            "pid": self.pid,
            "batch_job_id": self.batch_job_id,
            "state": self.state,
            "unknown": self.unknown,
        }

    def text(self) -> str:
        if self.host is None:
            return f"unknown ({self.unknown})"
        return f"{self.host} (launcher pid {self.pid})" if self.pid else self.host


async def run_place(session_id: int) -> RunPlace:
    """The launcher session ``session_id``, read from MongoDB as `site status` reads them
    (sessions are a site's records, not an SDK resource), or through the gateway's
    sessions page (of the caller's sites only)."""
    settings = load_settings()
    try:
        if settings.gateway_url:
            doc = await _gateway_session(session_id)
        else:
            doc = await _stored_session(settings, session_id)
    except (BalsamError, PyMongoError) as exc:
        return RunPlace(session_id, unknown=f"launcher session {session_id}: {exc}")
    if doc is None:
        return RunPlace(session_id, unknown=f"launcher session {session_id} has no record")
    return RunPlace(
        session_id,
        host=doc.get("hostname") or None,
        pid=doc.get("pid") or None,
        batch_job_id=doc.get("batch_job_id"),
        state=doc.get("state"),
        unknown=None if doc.get("hostname") else f"launcher session {session_id} names no host",
    )


async def _stored_session(settings: Settings, session_id: int) -> dict[str, Any] | None:
    from balsam_mq.store import open_store

    async with open_store(
        settings.mongodb_url, settings.db, init_schema=False, timeout_ms=5000
    ) as store:
        return await store.sessions.raw(session_id)


async def _gateway_session(session_id: int) -> dict[str, Any] | None:
    from balsam_mq.sdk.client import get_client
    from balsam_mq.sdk.http import HttpBackend

    backend = (await get_client()).backend
    if not isinstance(backend, HttpBackend):
        return None
    page = await backend.call("GET", "/page/sessions", params={"id": session_id, "limit": 1})
    items: list[dict[str, Any]] = page["items"]
    return items[0] if items else None


@dataclass
class Details:
    """One job and what its display reads besides: its site, history, and what it may
    be waiting for (its parents' states, its app's transfer slots, the site's batch jobs)."""

    job: Job
    listing: Listing
    site_path: str
    hostname: str
    events: list[EventLog]
    parents: dict[int, JobState] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)  # transfer slot -> "in" or "out"
    batch_jobs: int | None = None  # the site's active batch jobs (for a runnable job)
    ran: RunPlace | None = None  # where it ran or runs (a job a launcher claimed)
    now: datetime = field(default_factory=utcnow)


async def load_details(job_id: int) -> Details:
    from balsam_mq.sdk import App, BatchJob, EventLog, Job, Site

    job = await Job.objects.filter(id=job_id).first()
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    site = await Site.objects.filter(id=job.site_id).first()
    events = await EventLog.objects.filter(job_id=job_id).order_by("seq")
    details = Details(
        job,
        await Listing.of([job]),
        site.path if site else "",
        site.hostname if site else "",
        events,
    )
    if job.state == S.AWAITING_PARENTS and job.parent_ids:
        rows = await Job.objects.filter(id=list(job.parent_ids)).values("id", "state")
        details.parents = {row["id"]: row["state"] for row in rows}
    if job.state in (S.READY, S.POSTPROCESSED) and job.transfers:
        app = await App.objects.filter(id=job.app_id).first()
        if app is not None:
            details.slots = {name: slot.direction for name, slot in app.transfers.items()}
    if job.state in RUNNABLE_STATES:
        active = BatchJob.objects.filter(site_id=job.site_id, state=list(ACTIVE_BATCH_JOBS))
        details.batch_jobs = await active.count()
    if job.session_id is not None:
        details.ran = await run_place(job.session_id)
    return details


# --- why a job is not moving --------------------------------------------------------------


def waiting_for(d: Details) -> str | None:
    """What the job waits for, derived from its state and what the display read; ``None``
    for a final job."""
    job, state = d.job, d.job.state
    if state in TERMINAL_STATES:
        return None
    if state == S.CREATED:
        return "its creation to complete"
    if state == S.AWAITING_PARENTS:
        return _parents(job, d.parents)
    if state == S.READY:
        return "the site agent's stage-in" + _transfers(job, d.slots, "in")
    if state == S.STAGED_IN:
        return "the site agent's preprocess hook"
    if state in RUNNABLE_STATES:
        text = "a launcher of its site to claim it"
        if job.unfit:
            text += "; the last launcher that saw it cannot run it (see unfit)"
        if d.batch_jobs == 0:
            text += (
                "; no batch job of its site is queued or running (balsam-mq queue submit,"
                " or start balsam-mq launcher)"
            )
        return text
    if state == S.RUNNING:
        held = f" in launcher session {job.session_id}" if job.session_id is not None else ""
        return f"its run to end{held}"
    if state == S.RUN_DONE:
        return "the site agent's postprocess hook"
    if state == S.RUN_ERROR:
        return "the site agent's error handling (handle_error)"
    if state == S.RUN_TIMEOUT:
        return "the site agent's timeout handling (handle_timeout)"
    if state == S.POSTPROCESSED:
        return "the site agent's stage-out" + _transfers(job, d.slots, "out")
    return "the site agent to finish its stage-out"  # STAGED_OUT


def _parents(job: Job, parents: dict[int, JobState]) -> str:
    missing = [p for p in job.parent_ids if p not in parents]
    failed = [p for p in job.parent_ids if parents.get(p) == S.FAILED]
    pending = [p for p in job.parent_ids if parents.get(p) not in (None, S.FAILED, S.JOB_FINISHED)]
    if failed:
        named = ", ".join(f"{p} (FAILED)" for p in failed)
        return f"the site agent's dependency resolver to fail it: parent {named}"
    parts = []
    if pending:
        parts.append(
            "parents to finish: " + ", ".join(f"{p} ({parents[p].value})" for p in pending)
        )
    if missing:
        parts.append("parents that do not exist: " + ", ".join(map(str, missing)))
    if not parts:
        return "the site agent's dependency resolver to release it (every parent finished)"
    return "; ".join(parts)


def _transfers(job: Job, slots: dict[str, str], direction: str) -> str:
    names = sorted(name for name in job.transfers if slots.get(name) == direction)
    return f" (transfers: {', '.join(names)})" if names else " (no transfers)"


# --- time in each state -------------------------------------------------------------------


@dataclass
class Stay:
    """The time a job spent in one state, over all its entries into it."""

    seconds: float = 0.0
    entries: int = 0


def time_per_state(events: list[EventLog], now: datetime) -> dict[str, Stay]:
    """Each state the job entered, in order of first entry: the time until it left (the
    next event), or until ``now`` for the state it is in (none for a final state)."""
    stays: dict[str, Stay] = {}
    for i, event in enumerate(events):
        if i + 1 < len(events):
            end: datetime | None = events[i + 1].timestamp
        elif event.to_state in TERMINAL_STATES:
            end = None
        else:
            end = now
        if end is None:
            continue
        stay = stays.setdefault(event.to_state, Stay())
        stay.seconds += max(0.0, (end - event.timestamp).total_seconds())
        stay.entries += 1
    return stays


def _stays_text(stays: dict[str, Stay]) -> str:
    """The states the job spent time in (steps passed through in the same write take none)."""
    parts = []
    for state, stay in stays.items():
        if stay.seconds > 0:
            times = f" ({stay.entries} times)" if stay.entries > 1 else ""
            parts.append(f"{state} {span(stay.seconds)}{times}")
    return ", ".join(parts) or "-"


# --- output and traceback, once -----------------------------------------------------------


def split_output(tail: str, traceback: str) -> tuple[str, bool]:
    """``(output before the traceback, whether the tail ends with the traceback)``: a run()
    job prints its traceback to job.out, so its tail and its traceback end alike."""
    t, b = tail.rstrip(), traceback.rstrip()
    if not t or not b:
        return tail, False
    common = 0
    for x, y in zip(reversed(t), reversed(b), strict=False):
        if x != y:
            break
        common += 1
    if common == len(b) or common == len(t):  # the whole traceback, or a tail cut inside it
        return t[: len(t) - common].rstrip(), True
    return tail, False


def _data(state_data: dict[str, Any], tail: str) -> dict[str, Any]:
    """``state_data`` with the output tail printed below (``tail``) standing in for it."""
    if tail.strip() and state_data.get("output_tail") == tail:
        return {**state_data, "output_tail": BELOW}
    return state_data


def show_details(job_id: int, *, as_json: bool) -> None:
    details = run(lambda: load_details(job_id))
    job = details.job
    workdir = _workdir_path(job, details.site_path)
    doc = job_json(job, details.listing)
    waits = waiting_for(details)
    stays = time_per_state(details.events, details.now)
    if as_json:
        print_json(
            {
                **doc,
                "workdir_path": workdir,
                "run_host": details.ran.host if details.ran else None,
                "launcher_session": details.ran.json() if details.ran else None,
                "waiting_for": waits,
                "time_per_state": {
                    state: {"seconds": stay.seconds, "entries": stay.entries}
                    for state, stay in stays.items()
                },
                "events": [e.model_dump(mode="json") for e in details.events],
            }
        )
        return
    traceback = doc["exception"]["traceback"] if "exception" in doc else ""
    tail = str(job.state_data.get("output_tail") or "")
    before, tail_is_traceback = split_output(tail, traceback)

    pairs: list[tuple[str, str | Text]] = [
        ("job", str(job.id)),
        ("state", state_text(job.state.value)),
    ]
    if waits is not None:
        since = details.events[-1].timestamp if details.events else job.last_update
        if since is not None:  # how long, said after what it waits for, before remarks
            what, semicolon, remarks = waits.partition(";")
            so_far = span((details.now - since).total_seconds())
            waits = f"{what} ({so_far} so far){semicolon}{remarks}"
        pairs.append(("waiting for", waits))
    pairs += [
        ("app", f"{doc['app']} (id {job.app_id})"),
        ("site", f"{doc['site']} (id {job.site_id})"),
        ("workdir", job.workdir),
    ]
    if workdir:
        host = f" on {details.hostname}" if details.hostname else ""
        pairs.append(("workdir path", f"{workdir}{host}"))
    for name in ("parameters", "tags", "data", "parent_ids", "transfers"):
        if doc[name]:
            pairs.append((name, repr(doc[name])))
    if job.state_data:
        pairs.append(("state_data", repr(_data(job.state_data, tail))))
    pairs.append(("resources", _resources(doc)))
    if job.launch_params:
        pairs.append(("launch params", repr(job.launch_params)))
    if job.return_code is not None:
        pairs.append(("return code", str(job.return_code)))
    if details.ran is not None:
        pairs.append(("run host", details.ran.text()))
    if job.session_id is not None:
        pairs.append(("launcher session", str(job.session_id)))
    if job.batch_job_id is not None:
        pairs.append(("batch job", str(job.batch_job_id)))
    if job.unfit:
        pairs.append(("unfit", _unfit(job.unfit)))
    pairs += [("created", when(job.created_at)), ("updated", when(job.last_update))]
    pairs.append(("time per state", _stays_text(stays)))
    if "result" in doc:
        pairs.append(("result", repr(doc["result"])))
    if "exception" in doc:
        exc = doc["exception"]
        if exc["type"] == "JobFailed" and not exc["traceback"]:  # its message is state_data
            pairs.append(("exception", "JobFailed (none stored: state_data says why)"))
        else:
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
                repr(_data(e.state_data, tail)) if e.state_data else "",
            ]
            for e in details.events
        ],
    )
    shown_tail = before if tail_is_traceback else tail.rstrip()
    if shown_tail:
        typer.echo("")
        typer.echo("the end of job.out:")
        typer.echo(shown_tail)
    if traceback:
        typer.echo("")
        typer.echo(traceback.rstrip())


def _unfit(unfit: dict[str, Any]) -> str:
    """Why the last launcher that saw the job cannot run it, and which launcher."""
    at = unfit.get("at")
    moment = when(at) if isinstance(at, datetime) else str(at or "")
    who = f"launcher session {unfit.get('session_id', '?')}"
    if unfit.get("hostname"):
        who += f" on {unfit['hostname']}"
    return f"{unfit.get('reason', '?')} ({who}{', ' + moment if moment else ''})"


def _workdir_path(job: Job, site_path: str) -> str | None:
    return str(job.resolve_workdir(Path(site_path) / "data")) if site_path else None


def _resources(doc: dict[str, Any]) -> str:
    names = ("num_nodes", "ranks_per_node", "threads_per_rank", "threads_per_core")
    text = " ".join(f"{n}={doc[n]}" for n in names)
    text += f" gpus_per_rank={doc['gpus_per_rank']} node_packing_count={doc['node_packing_count']}"
    return text + f" wall_time_min={doc['wall_time_min']}"
