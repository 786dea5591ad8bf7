"""Claiming ahead of free slots: batched claims for short jobs, none for long ones, and jobs
claimed ahead given back when the room they were claimed for does not come."""

from __future__ import annotations

import asyncio
from collections import Counter

from launcher_helpers import World
from support.waiting import until, wait_for_states

from balsam_mq.domain import JobState

S = JobState


async def test_short_jobs_are_claimed_many_per_transaction(world: World) -> None:
    app = await world.app("True", command_template="true")
    ids = await world.jobs(app, [{} for _ in range(300)], node_packing_count=2)
    pilot = world.start_pilot(world.config(), cores=2)
    await wait_for_states(world.store, ids, [S.RUN_DONE], timeout=120)
    report = await world.finish(pilot)
    assert report.claimed == 300 and report.done == 300
    claims = Counter()  # one claim transaction stamps its events with one time
    async for event in world.store.events.iterate(site_id=world.site_id, to_state="RUNNING"):
        claims[event.timestamp] += 1
    assert sum(claims.values()) == 300
    assert len(claims) < 150  # not one round trip per freed slot
    assert max(claims.values()) > 2  # more than the 2 free slots at once: claimed ahead


async def test_a_busy_launcher_holds_no_job_back_from_another(world: World) -> None:
    app = await world.app("Long", command_template="sleep 60")
    first = world.start_pilot(world.config(), cores=1)
    await asyncio.wait_for(first.ready.wait(), 30)
    (a,) = await world.jobs(app, [{}])
    await wait_for_states(world.store, [a], [S.RUNNING])
    second = world.start_pilot(world.config(), cores=1)
    await asyncio.wait_for(second.ready.wait(), 30)
    (b,) = await world.jobs(app, [{}])  # the first launcher is full: the second runs it
    await wait_for_states(world.store, [b], [S.RUNNING], timeout=30)
    sessions = {j.id: j.session_id for j in await world.store.jobs.get_many([a, b])}
    assert sessions == {a: first.session_id, b: second.session_id}


async def test_jobs_claimed_ahead_are_given_back_when_room_does_not_come(world: World) -> None:
    quick = await world.app("Quick", command_template="sleep 0.05")
    slow = await world.app("Slow", command_template="sleep 60")
    settings = {"claim_ahead_s": 0.2, "claim_ahead_max": 3}
    pilot = world.start_pilot(world.config(settings=settings), cores=1)
    await asyncio.wait_for(pilot.ready.wait(), 30)
    fast = await world.jobs(quick, [{} for _ in range(8)])
    long = await world.jobs(slow, [{} for _ in range(4)])
    await wait_for_states(world.store, fast, [S.RUN_DONE], timeout=60)
    # the pace of the quick jobs had slow ones claimed ahead behind the first slow one;
    # after 10 x claim_ahead_s without room they are back in the queue for others
    back: list[int] = []

    async def given_back() -> bool:
        back[:] = [
            e.job_id or 0
            async for e in world.store.events.iterate(site_id=world.site_id)
            if (e.from_state, e.to_state, e.by) == ("RUNNING", "RESTART_READY", "launcher")
        ]
        return bool(back)

    await until(given_back, timeout=30)
    given = await world.store.jobs.get_many(back)
    assert all(j.state_data["reason"] == "given back unstarted: no room for 2 s" for j in given)
    states = await world.store.jobs.states(long)
    assert list(states.values()).count(S.RUNNING) == 1  # one runs; the rest wait unclaimed
    pilot.request_stop("test over")
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert report.timed_out == 1


async def test_jobs_a_launcher_cannot_take_go_back_in_their_place(world: World) -> None:
    """Runnable jobs created together share a message; a full launcher gives the part it
    cannot take back where it was in the queue, ahead of jobs that became runnable later."""
    app = await world.app("Long", command_template="sleep 60")
    a, b, c = await world.jobs(app, [{}, {}, {}])
    (d,) = await world.jobs(app, [{}])  # queued behind them before any launcher runs
    first = world.start_pilot(world.config(), cores=1)
    await wait_for_states(world.store, [a], [S.RUNNING])
    await until(lambda: first.report.given_back >= 1, timeout=30)
    second = world.start_pilot(world.config(), cores=1)
    await wait_for_states(world.store, [b], [S.RUNNING], timeout=30)
    states = await world.store.jobs.states([c, d])
    assert states == {c: S.PREPROCESSED, d: S.PREPROCESSED}
    sessions = {j.id: j.session_id for j in await world.store.jobs.get_many([a, b])}
    assert sessions == {a: first.session_id, b: second.session_id}
