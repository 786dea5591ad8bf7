"""What `job kill`, `job reset`, `job modify` and `job rm` do with the jobs they select
(`job.py` parses their options): through the SDK, with what happened to each job said on
stdout, as lines or as one JSON document."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import typer

from balsam_mq.cli.common import confirm, run
from balsam_mq.cli.job_views import JobFilters
from balsam_mq.cli.output import print_json, progress
from balsam_mq.domain.states import JobState
from balsam_mq.errors import NotFound

if TYPE_CHECKING:
    from balsam_mq.sdk import Job, Query
    from balsam_mq.sdk.steer import Steered

S = JobState
# the states of a job that has not run (yet, or again): a kill fails it before it runs
BEFORE_RUN = frozenset({S.AWAITING_PARENTS, S.READY, S.STAGED_IN, S.PREPROCESSED, S.RESTART_READY})
SHOWN_IDS = 20  # ids listed on one line of output; the others are counted


async def _selected(filters: JobFilters) -> Query[Job]:
    """The query of the selection; ids given that name no job are an error (nothing done)."""
    from balsam_mq.sdk import Job

    if filters.ids:
        found = {row["id"] for row in await Job.objects.filter(id=filters.ids).values("id")}
        missing = sorted(set(filters.ids) - found)
        if missing:
            raise NotFound(f"job(s) {', '.join(map(str, missing))} do not exist")
    return await filters.query()


def _noun(count: int) -> str:
    return "job" if count == 1 else "jobs"


def _ids(ids: Iterable[int], states: dict[int, JobState] | None = None) -> str:
    """``3, 4`` or ``3 (RUNNING), 4 (FAILED)``: the first ids (with their state, if given),
    then how many more."""
    listed = sorted(ids)
    shown = [f"{i} ({states[i].value})" if states else str(i) for i in listed[:SHOWN_IDS]]
    more = len(listed) - SHOWN_IDS
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _json(steered: Steered | None) -> dict[str, Any]:
    if steered is None:
        return {"moved": {}, "left": {}}
    return {
        "moved": {
            str(i): {"from": before.value, "to": after.value}
            for i, (before, after) in sorted(steered.moved.items())
        },
        "left": {str(i): state.value for i, state in sorted(steered.left.items())},
    }


def _steer(
    filters: JobFilters,
    question: Callable[[int], str],
    doing: str,
    act: Callable[[Query[Job]], Awaitable[Steered]],
    yes: bool,
) -> Steered | None:
    """Select, confirm (``question(count)``) and ``act`` on the selection (``doing`` it,
    says the progress line); ``None`` when nothing matched."""

    async def main() -> Steered | None:
        query = await _selected(filters)
        count = await query.count()
        if not count:
            return None
        await anyio.to_thread.run_sync(confirm, question(count), yes)
        with progress(f"{doing} {count} {_noun(count)}", None):
            return await act(query)

    return run(main)


def kill_jobs(filters: JobFilters, *, yes: bool, as_json: bool) -> None:
    """`job kill`: every selected job that has not finished fails, "killed by the user"; the
    launcher of a RUNNING one terminates its process group."""

    async def kill(query: Query[Job]) -> Steered:
        return await query.kill()

    steered = _steer(filters, lambda n: f"Kill {n} {_noun(n)}?", "Killing", kill, yes)
    if as_json:
        print_json(_json(steered))
        return
    if steered is None:
        typer.echo("killed 0 jobs: none matches")
        return
    groups: dict[str, list[int]] = defaultdict(list)
    for job_id, (before, _) in steered.moved.items():
        if before is S.RUNNING:
            groups["running"].append(job_id)
        else:
            groups["before" if before in BEFORE_RUN else "after"].append(job_id)
    lines = {
        "running": "killed {n} running {noun}",
        "before": "failed {n} {noun} before {they} ran",
        "after": "failed {n} {noun} after {their} run",
    }
    for group, line in lines.items():
        if groups[group]:
            n = len(groups[group])
            words = {"noun": _noun(n), "they": "it" if n == 1 else "they"}
            words["their"] = "its" if n == 1 else "their"
            typer.echo(f"{line.format(n=n, **words)}: {_ids(groups[group])}")
    if steered.left:
        n = len(steered.left)
        typer.echo(f"left {n} finished {_noun(n)} alone: {_ids(steered.left, steered.left)}")


def reset_jobs(filters: JobFilters, *, descendants: bool, yes: bool, as_json: bool) -> None:
    """`job reset`: every selected FAILED or JOB_FINISHED job (and with ``descendants`` the
    jobs depending on one, transitively) runs again from READY."""

    async def reset(query: Query[Job]) -> Steered:
        return await query.reset(descendants=descendants)

    def question(n: int) -> str:
        them = " and the jobs depending on " + ("it" if n == 1 else "them")
        return f"Reset {n} {_noun(n)}{them if descendants else ''}?"

    steered = _steer(filters, question, "Resetting", reset, yes)
    if as_json:
        print_json(_json(steered))
        return
    if steered is None:
        typer.echo("reset 0 jobs: none matches")
        return
    by_state: dict[JobState, list[int]] = defaultdict(list)
    for job_id, (_, after) in steered.moved.items():
        by_state[after].append(job_id)
    why = {S.AWAITING_PARENTS: " (waiting for a parent)", S.FAILED: " again (a parent FAILED)"}
    for state in JobState:
        if by_state[state]:
            n = len(by_state[state])
            typer.echo(
                f"reset {n} {_noun(n)}, now {state.value}{why.get(state, '')}: "
                f"{_ids(by_state[state])}"
            )
    if steered.left:
        n = len(steered.left)
        typer.echo(
            f"left {n} {_noun(n)} alone (not FAILED or JOB_FINISHED): "
            f"{_ids(steered.left, steered.left)}"
        )


def modify_jobs(filters: JobFilters, changes: dict[str, Any], *, as_json: bool) -> None:
    """`job modify`: ``changes`` (``Query.update`` keywords) on every selected job, in one
    transaction; with ``as_json`` the ids of the jobs selected are said too."""

    async def main() -> tuple[int, list[int]]:
        query = await _selected(filters)
        ids = await _ids_of(query) if as_json else []
        with progress("Updating jobs", None, enabled=not as_json):
            return await query.update(**changes), ids

    updated, ids = run(main)
    if as_json:
        print_json({"updated": updated, "ids": ids})
        return
    typer.echo(f"updated {updated} {_noun(updated)}")


def delete_jobs(filters: JobFilters, *, yes: bool, as_json: bool) -> None:
    """`job rm`: every selected job deleted (a RUNNING one killed first), once confirmed;
    with ``as_json`` the ids of the jobs deleted are said too."""
    from balsam_mq.sdk import Job

    async def main() -> tuple[int, list[int]]:
        query = await filters.query()
        count = await query.count()
        if not count:
            return 0, []
        await anyio.to_thread.run_sync(confirm, f"Delete {count} {_noun(count)}?", yes)
        ids = await _ids_of(query) if as_json else []
        with progress(f"Deleting {count} {_noun(count)}", None, enabled=not as_json):
            deleted = await query.delete()
        if ids:  # those of the jobs listed that are gone (not those that left the selection)
            kept = {row["id"] for row in await Job.objects.filter(id=ids).values("id")}
            ids = [i for i in ids if i not in kept]
        return deleted, ids

    deleted, ids = run(main)
    if as_json:
        print_json({"deleted": deleted, "ids": ids})
        return
    typer.echo(f"deleted {deleted} {_noun(deleted)}")


async def _ids_of(query: Query[Job]) -> list[int]:
    return sorted(row["id"] for row in await query.values("id"))
