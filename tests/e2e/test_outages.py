"""A site rides out a broker outage and a database crash with jobs in flight: the agent, its
relay and a launcher stay up, running jobs finish, every job ends once, nothing is
restarted by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import E2E, SETTINGS_YML, S, wait_for_file
from support.broker_control import ctl, needs_own_node
from support.invariants import assert_invariants
from support.services import free_port, start_mongod
from support.waiting import wait_for_states

from balsam_mq import ApplicationDefinition, EventLog, Job, stack
from balsam_mq.processors.reaper import Reaper


@dataclass
class Mongod:
    """The test's own mongod, to kill and restart on its data."""

    root: Path
    port: int
    pid: int

    async def kill(self) -> None:
        await asyncio.to_thread(stack.stop_mongod, self.pid, crash=True)  # reaped

    async def start(self) -> None:
        self.pid = await asyncio.to_thread(start_mongod, self.root, self.port)


@pytest.fixture
def mongod(tmp_path: Path) -> Iterator[Mongod]:
    port = free_port()
    server = Mongod(tmp_path / "mongod", port, start_mongod(tmp_path / "mongod", port))
    yield server
    stack.stop_mongod(server.pid)


@pytest.fixture
def site_settings() -> str:
    """Launchers cannot heartbeat while the database is away: a grace well over the outage
    and the reconnection (a reaped launcher's jobs would run again)."""
    return SETTINGS_YML.replace("grace_s: 3", "grace_s: 30")


@pytest.fixture
def mongo_url(mongod: Mongod) -> str:
    """This module's tests stop their database: each has its own."""
    return stack.mongo_url(mongod.port)


def counted_app() -> type[ApplicationDefinition]:
    class Counted(ApplicationDefinition):
        site = "e2e"
        command_template = "echo run >> runs.log && sleep {{ seconds }}"

    return Counted


async def _submit(n: int) -> list[int]:
    """``n`` jobs, the first two long enough to be running across the outage."""
    app = counted_app()
    jobs: list[Any] = await Job.objects.bulk_create(
        [
            app.submit(f"c/{i}", seconds=3 if i < 2 else 0.05, save=False, node_packing_count=2)
            for i in range(n)
        ]
    )
    return [j.id for j in jobs]


async def _each_ran_once(e2e: E2E, ids: list[int]) -> None:
    await wait_for_states(e2e.store, ids, [S.JOB_FINISHED], timeout=120)
    report = await assert_invariants(e2e.store, ids)
    assert report.final == {"JOB_FINISHED": len(ids)}
    for i in range(len(ids)):
        assert (e2e.site_dir.data / f"c/{i}/runs.log").read_text() == "run\n"
    assert set((await e2e.running_events(ids)).values()) == {1}


@needs_own_node
@pytest.mark.usefixtures("broker_restored")
async def test_jobs_flow_on_through_a_broker_outage(e2e: E2E) -> None:
    ids = await _submit(30)
    pilot = await e2e.start_pilot(settings={"cores_per_node": 2})
    for i in range(2):  # the two long jobs are running when the broker goes
        await wait_for_file(e2e.site_dir.data / f"c/{i}/runs.log")
    await asyncio.to_thread(ctl, "stop_app")
    try:
        await asyncio.sleep(4)
    finally:
        await asyncio.to_thread(ctl, "start_app")
    await _each_ran_once(e2e, ids)
    assert pilot.claiming, pilot.report.stop_reason  # the launcher took no harm


async def test_jobs_flow_on_through_a_database_crash(e2e: E2E, mongod: Mongod) -> None:
    ids = await _submit(30)
    pilot = await e2e.start_pilot(settings={"cores_per_node": 2})
    for i in range(2):
        await wait_for_file(e2e.site_dir.data / f"c/{i}/runs.log")
    await mongod.kill()
    await asyncio.sleep(5)  # the long jobs end meanwhile: their outcomes wait
    await mongod.start()
    await _each_ran_once(e2e, ids)
    assert pilot.claiming, pilot.report.stop_reason


@needs_own_node
@pytest.mark.usefixtures("broker_restored")
async def test_a_feed_hands_out_the_events_committed_while_the_broker_was_away(e2e: E2E) -> None:
    """What `balsam-mq events --follow` reads: it outlives the outage and misses nothing."""
    app = counted_app()
    await app.sync()
    async with EventLog.objects.follow(site=e2e.site_id) as feed:
        await asyncio.to_thread(ctl, "stop_app")
        try:  # committed to MongoDB meanwhile; no relay can publish them
            jobs = await Job.objects.bulk_create(
                [app.submit(f"f/{i}", seconds=0, save=False) for i in range(3)]
            )
        finally:
            await asyncio.to_thread(ctl, "start_app")
        wanted = {j.id for j in jobs}
        seen: set[int] = set()

        async def read() -> None:
            async for batch in feed.batches():
                seen.update(e.job_id for e in batch if e.job_id in wanted)
                if seen == wanted:
                    return

        await asyncio.wait_for(read(), 90)
    assert seen == wanted


@pytest.mark.parametrize("site_settings", [SETTINGS_YML.replace("grace_s: 3", "grace_s: 6")])
async def test_a_launcher_stopped_while_the_database_is_down_exits_and_its_jobs_run_again(
    e2e: E2E, mongod: Mongod
) -> None:
    """SIGTERM during an outage: the launcher kills its runs and exits after its stop
    timeout, counting the outcomes it could not commit; once the database is back the
    reaper settles those jobs and they run again under the next launcher."""

    jobs = await Job.objects.bulk_create(
        [twice_app().submit(f"s/{i}", save=False, node_packing_count=2) for i in range(2)]
    )
    ids = [j.id for j in jobs]
    pilot = await e2e.start_pilot(settings={"cores_per_node": 2, "stop_timeout_s": 2})
    for i in range(2):
        await wait_for_file(e2e.site_dir.data / f"s/{i}/runs.log")
    await mongod.kill()
    pilot.request_stop("test stops it")
    task = next(t for p, t in e2e.pilots if p is pilot)
    report = await asyncio.wait_for(asyncio.shield(task), 20)
    assert report.uncommitted == 2
    await mongod.start()
    await wait_for_states(e2e.store, ids, [S.RESTART_READY], timeout=60)
    await e2e.start_pilot(settings={"cores_per_node": 2})
    await wait_for_states(e2e.store, ids, [S.JOB_FINISHED], timeout=60)
    await assert_invariants(e2e.store, ids)
    for i in range(2):
        assert (e2e.site_dir.data / f"s/{i}/runs.log").read_text() == "run\nrun\n"


def twice_app() -> type[ApplicationDefinition]:
    """Its first run of a job hangs; the second ends at once."""

    class Twice(ApplicationDefinition):
        site = "e2e"
        command_template = "echo run >> runs.log; [ $(wc -l < runs.log) -gt 1 ] || sleep 60"

    return Twice


async def test_a_launcher_taken_for_dead_kills_its_runs_and_goes_on_as_a_new_session(
    e2e: E2E,
) -> None:
    """What a launcher cut off from the services longer than the reaper's grace finds when
    it is back: its jobs were timed out and wait to run again. It kills the runs it still
    has (their outcomes must not land on the jobs' next runs) and claims under a new
    session; each job runs twice and finishes once."""
    jobs = await Job.objects.bulk_create(
        [twice_app().submit(f"t/{i}", save=False, node_packing_count=2) for i in range(2)]
    )
    ids = [j.id for j in jobs]
    pilot = await e2e.start_pilot(settings={"cores_per_node": 2})
    for i in range(2):
        await wait_for_file(e2e.site_dir.data / f"t/{i}/runs.log")
    first = pilot.session_id
    # the reaper of a site whose grace ran out for this launcher
    assert sorted(await Reaper(e2e.store, e2e.site_id, grace=0, interval=1).reap_once()) == ids
    await wait_for_states(e2e.store, ids, [S.JOB_FINISHED], timeout=30)
    assert pilot.session_id != first and pilot.claiming
    await assert_invariants(e2e.store, ids)
    for i in range(2):
        assert (e2e.site_dir.data / f"t/{i}/runs.log").read_text() == "run\nrun\n"
    async for event in e2e.store.events.iterate(site_id=e2e.site_id, to_state="RUN_TIMEOUT"):
        assert "stopped heartbeating" in event.state_data["reason"]  # the reaper's, only
    assert set((await e2e.running_events(ids)).values()) == {2}
