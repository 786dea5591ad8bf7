"""What stage-in and stage-out share: a batch of jobs' transfer slots planned, moved in one
go per location (``processors.transfers.move``), each slot's :class:`TransferItem`
written before and after, and a verdict per job.

A slot already DONE (an earlier attempt, before the agent restarted or while another
slot of the job waited) is not moved again. A slot whose source does not exist yet
waits, uncounted; a slot that fails (an unreachable host, a timeout) is tried again
with the consumer's backoff until it has failed ``transfers.max_attempts`` times, and
then fails its job, naming the slot and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from balsam_mq.domain import TransferItem, TransferState, utcnow
from balsam_mq.errors import BalsamError
from balsam_mq.processors.consumers.base import Pending
from balsam_mq.processors.context import AgentContext
from balsam_mq.processors.transfers import Direction, Outcome, Transfer, move, plan

T = TransferState


@dataclass
class Staged:
    """The verdict on each job of a batch."""

    done: list[int] = field(default_factory=list)  # every slot arrived (or none to move)
    failed: dict[int, str] = field(default_factory=dict)  # job id -> reason
    waiting: dict[int, list[str]] = field(default_factory=dict)  # job id -> missing sources
    retrying: dict[int, list[str]] = field(default_factory=dict)  # job id -> slot errors


async def stage(ctx: AgentContext, pending: list[Pending], direction: Direction) -> Staged:
    """Move the ``direction`` slots of the ``pending`` jobs; see the module's doc."""
    settings = ctx.config.transfers
    apps = await ctx.apps.get_many(p.job.app_id for p in pending)
    verdict = Staged()
    planned: dict[int, list[Transfer]] = {}
    for p in pending:
        app = apps.get(p.job.app_id)
        if app is None or not p.job.transfers:
            verdict.done.append(p.id)
            continue
        try:
            transfers = plan(
                app.doc,
                p.job,
                direction,
                settings.locations,
                ctx.site_dir.workdir(p.job.workdir),
            )
        except BalsamError as exc:
            verdict.failed[p.id] = str(exc)
            continue
        if transfers:
            planned[p.id] = transfers
        else:
            verdict.done.append(p.id)
    if not planned:
        return verdict
    earlier = await ctx.store.transfer_items.of_jobs(planned, direction)
    items = {
        t.key: earlier.get(t.key) or _new_item(ctx.site.id, t)
        for transfers in planned.values()
        for t in transfers
    }
    todo = [
        t for transfers in planned.values() for t in transfers if items[t.key].state is not T.DONE
    ]
    started = utcnow()
    await ctx.store.transfer_items.record(
        [
            items[t.key].model_copy(
                update={"state": T.ACTIVE, "started_at": started, "last_update": started}
            )
            for t in todo
        ]
    )
    absent: list[Transfer] = []
    if direction == "out":  # an output that is not there fails its job, without a try
        absent = [t for t in todo if not _present(t.local, t.recursive)]
        todo = [t for t in todo if _present(t.local, t.recursive)]
        for t in absent:
            missing_at = utcnow()
            items[t.key] = items[t.key].model_copy(
                update={
                    "state": T.WAITING,
                    "error": "the output does not exist",
                    "finished_at": missing_at,
                    "last_update": missing_at,
                }
            )
    outcomes = await move(
        todo,
        settings=settings,
        staging=ctx.site_dir.staging,
        globus_tokens=ctx.site_dir.globus_tokens,
    )
    written = [items[t.key] for t in absent]
    for t in todo:
        items[t.key] = _after(items[t.key], outcomes[t.key], settings.max_attempts)
        written.append(items[t.key])
    await ctx.store.transfer_items.record(written)
    for job_id, transfers in planned.items():
        mine = [(t, items[t.key]) for t in transfers]
        given_up = [f"slot {t.slot!r}: {i.error}" for t, i in mine if i.state is T.FAILED]
        missing = [
            str(t.remote) if direction == "in" else str(t.local)
            for t, i in mine
            if i.state is T.WAITING
        ]
        if given_up:
            verdict.failed[job_id] = "; ".join(given_up)
        elif direction == "out" and missing:
            verdict.failed[job_id] = "output " + ", ".join(missing) + " is missing"
        elif all(i.state is T.DONE for _, i in mine):
            verdict.done.append(job_id)
        elif missing:
            verdict.waiting[job_id] = missing
        else:
            errors = [f"slot {t.slot!r}: {i.error}" for t, i in mine if i.state is T.ERROR]
            verdict.retrying[job_id] = errors
    return verdict


def _present(path: Path, recursive: bool) -> bool:
    return path.is_dir() if recursive else path.is_file()


def _new_item(site_id: int | None, t: Transfer) -> TransferItem:
    assert site_id is not None
    return TransferItem(
        job_id=t.job_id,
        site_id=site_id,
        slot=t.slot,
        direction=t.direction,
        location=t.location,
        protocol=t.protocol,
        remote_path=str(t.remote),
        local_path=str(t.local),
        recursive=t.recursive,
    )


def _after(item: TransferItem, outcome: Outcome, max_attempts: int) -> TransferItem:
    """``item`` once ``outcome`` is known."""
    update: dict[str, object] = {
        "task_id": outcome.task_id,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "last_update": utcnow(),
    }
    if outcome.done:
        update.update(state=T.DONE, bytes=outcome.bytes, error=None)
    elif outcome.missing:
        update.update(state=T.WAITING, error="the source does not exist (yet)")
    else:
        failures = item.failures + 1
        state = T.FAILED if failures >= max_attempts else T.ERROR
        update.update(state=state, failures=failures, error=outcome.error)
    return item.model_copy(update=update)
