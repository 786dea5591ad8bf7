"""Pilot time and sharing: wall time, stop requests, idle exit, unfit jobs, two launchers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from launcher_helpers import World
from support.waiting import until, wait_for_states

from balsam_mq.domain import JobState
from balsam_mq.launcher.pilot import PilotState

S = JobState


async def test_wall_time_stops_claims_then_kills_running_jobs_to_run_timeout(
    world: World,
) -> None:
    app = await world.app("Long", command_template="echo started; sleep 60")
    (long_job,) = await world.jobs(app, [{}])
    config = world.config(wall_time_min=0.05, settings={"drain_margin_s": 1.5})
    pilot = world.start_pilot(config)
    await wait_for_states(world.store, [long_job], [S.RUNNING])
    await pilot.claiming_stopped.wait()
    assert pilot.state is PilotState.DRAINING
    (late,) = await world.jobs(app, [{}])  # arrives after claiming stopped: left for others
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert report.timed_out == 1 and report.claimed == 1
    assert report.stop_reason == "wall time nearly over"
    job = await world.store.jobs.get(long_job)
    assert job.state is S.RUN_TIMEOUT
    assert job.state_data["reason"] == "launcher wall time reached"
    assert (world.data / job.workdir / "job.out").read_text() == "started\n"
    assert (await world.store.jobs.get(late)).state is S.PREPROCESSED


async def test_stop_request_terminates_running_jobs_to_run_timeout(world: World) -> None:
    app = await world.app("Long", command_template="sleep 60")
    ids = await world.jobs(app, [{}, {}], node_packing_count=2)
    pilot = world.start_pilot(world.config())
    await wait_for_states(world.store, ids, [S.RUNNING])
    started = time.monotonic()
    pilot.request_stop("launcher received SIGTERM")
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert time.monotonic() - started < 10
    assert report.timed_out == 2
    states = await world.store.jobs.states(ids)
    assert set(states.values()) == {S.RUN_TIMEOUT}
    job = await world.store.jobs.get(ids[0])
    assert job.state_data["reason"] == "launcher received SIGTERM"


async def test_idle_launcher_exits_after_idle_timeout(world: World) -> None:
    app = await world.app("Quick", command_template="true")
    (job_id,) = await world.jobs(app, [{}])
    pilot = world.start_pilot(world.config(settings={"idle_timeout_s": 0.5}))
    report = await asyncio.wait_for(world.pilots[0][1], 30)
    assert report.stop_reason == "idle for 0.5 s"
    assert report.done == 1
    assert (await world.store.jobs.get(job_id)).state is S.RUN_DONE
    assert pilot.state is PilotState.STOPPED


async def test_job_too_big_stays_runnable_marked_and_runs_on_a_launcher_that_fits(
    world: World,
) -> None:
    app = await world.app("Wide", command_template="echo wide")
    (wide,) = await world.jobs(app, [{}], num_nodes=2)
    small_app = await world.app("Small", command_template="echo small")
    (small,) = await world.jobs(small_app, [{}])
    quick = {"unfit_delay_s": 1}
    one_node = world.start_pilot(world.config(settings=quick), nodes=1)
    await wait_for_states(world.store, [small], [S.RUN_DONE])

    async def marked() -> bool:
        return (await world.store.jobs.get(wide)).unfit is not None

    await until(marked)
    job = await world.store.jobs.get(wide)
    assert job.state is S.PREPROCESSED  # neither lost nor run
    assert job.unfit is not None
    assert job.unfit["session_id"] == one_node.session_id
    assert job.unfit["reason"] == "needs 2 nodes; this launcher has 1"
    report = await world.finish(one_node)
    assert report.deferred >= 1 and report.claimed == 1
    # the message was deferred, not dropped: a two-node launcher gets it
    two_nodes = world.start_pilot(world.config(settings=quick), nodes=2)
    await wait_for_states(world.store, [wide], [S.RUN_DONE], timeout=30)
    await world.finish(two_nodes)
    job = await world.store.jobs.get(wide)
    assert job.unfit is None and job.session_id == two_nodes.session_id


async def test_a_job_waiting_for_room_is_held_not_spun(world: World) -> None:
    app = await world.app("Sleep", command_template="sleep 0.5")
    (first,) = await world.jobs(app, [{}])
    (wide,) = await world.jobs(app, [{}], num_nodes=2)
    pilot = world.start_pilot(world.config(), nodes=2, cores=1)
    await wait_for_states(world.store, [first, wide], [S.RUN_DONE])
    report = await world.finish(pilot)
    assert report.claimed == 2 and report.deferred == 0
    assert pilot._consumer.handled == 2  # each message handled once: no requeue loop


async def test_two_launchers_share_200_jobs_and_none_runs_twice(world: World) -> None:
    app = await world.app("True", command_template="true")
    first = world.start_pilot(world.config(), cores=4)
    second = world.start_pilot(world.config(), cores=4)
    for pilot in (first, second):  # both take work as it arrives
        await asyncio.wait_for(pilot.ready.wait(), 30)
    ids = await world.jobs(app, [{} for _ in range(200)], node_packing_count=8)
    await wait_for_states(world.store, ids, [S.RUN_DONE], timeout=120)
    a = await world.finish(first)
    b = await world.finish(second)
    assert a.claimed + b.claimed == 200
    assert a.claimed > 0 and b.claimed > 0
    running = Counter()
    async for event in world.store.events.iterate(site_id=world.site_id, to_state="RUNNING"):
        running[event.job_id] += 1
    assert set(running) == set(ids)
    assert set(running.values()) == {1}
    sessions = {j.session_id for j in await world.store.jobs.get_many(ids)}
    assert sessions == {first.session_id, second.session_id}
