"""The reaper: jobs of a silent launcher session time out; live and stopped sessions are left."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
from support.driving import running_job
from support.services import free_port, start_mongod
from support.waiting import until

from balsam_mq import stack
from balsam_mq.domain import JobState, Session, utcnow
from balsam_mq.processors.reaper import Reaper
from balsam_mq.store import Store, open_store

S = JobState


async def test_only_jobs_of_silent_sessions_are_reaped(store: Store) -> None:
    live = await store.sessions.create(Session(site_id=1))
    silent = await store.sessions.create(Session(site_id=1))
    stopped = await store.sessions.create(Session(site_id=1))
    assert live.id and silent.id and stopped.id
    await store.sessions.end(stopped.id, stop_reason="wall time")
    old = utcnow() - timedelta(seconds=120)
    await store.db["sessions"].update_many(
        {"_id": {"$in": [silent.id, stopped.id]}}, {"$set": {"heartbeat": old}}
    )
    jobs = {s: await running_job(store, s) for s in (live.id, silent.id)}

    reaped = await Reaper(store, 1, grace=60, interval=1).reap_once()

    assert reaped == [jobs[silent.id]]
    states = await store.jobs.states(list(jobs.values()))
    assert states == {jobs[live.id]: S.RUNNING, jobs[silent.id]: S.RUN_TIMEOUT}
    doc = await store.jobs.get(jobs[silent.id])
    assert doc.state_data == {"reason": f"launcher session {silent.id} stopped heartbeating"}
    lost = await store.sessions.raw(silent.id)
    assert lost is not None and lost["state"] == "LOST"
    assert not await store.sessions.heartbeat(silent.id)  # a late heartbeat learns it was reaped
    assert await store.sessions.heartbeat(live.id)
    assert (await store.sessions.raw(stopped.id) or {})["state"] == "STOPPED"  # record kept
    assert await Reaper(store, 1, grace=60, interval=1).reap_once() == []


async def test_jobs_a_session_ended_without_reporting_are_reaped_after_the_grace(
    store: Store,
) -> None:
    """A launcher that ends its session and dies before committing its runs' outcomes (a
    crash on its way out) leaves RUNNING jobs of an ended session: they time out too."""
    long_ago = await store.sessions.create(Session(site_id=1))
    just_now = await store.sessions.create(Session(site_id=1))
    assert long_ago.id and just_now.id
    jobs = {s: await running_job(store, s) for s in (long_ago.id, just_now.id)}
    for session_id in (long_ago.id, just_now.id):
        await store.sessions.end(session_id, stop_reason="crashed")
    old = utcnow() - timedelta(seconds=120)
    await store.db["sessions"].update_one(
        {"_id": long_ago.id}, {"$set": {"ended_at": old, "heartbeat": old}}
    )

    reaped = await Reaper(store, 1, grace=60, interval=1).reap_once()

    assert reaped == [jobs[long_ago.id]]  # the other one's last report may be on its way
    doc = await store.jobs.get(jobs[long_ago.id])
    assert (doc.state, doc.state_data) == (
        S.RUN_TIMEOUT,
        {"reason": f"launcher session {long_ago.id} ended without reporting this job"},
    )
    assert (await store.jobs.get(jobs[just_now.id])).state == S.RUNNING
    assert (await store.sessions.raw(long_ago.id) or {})["state"] == "STOPPED"  # kept as is


async def test_the_reaper_outlives_a_mongod_outage_and_spares_launchers_silenced_by_it(
    tmp_path: Path,
) -> None:
    """Its own mongod, stopped under the running reaper and started again on the same data:
    the passes in between are skipped; once it is back, launchers get a full grace to
    heartbeat again before anyone is reaped, then a silent one is."""
    port = free_port()

    def start() -> int:
        return start_mongod(tmp_path, port)

    pid = await anyio.to_thread.run_sync(start)
    try:
        async with open_store(stack.mongo_url(port), "reaper_outage", timeout_ms=500) as store:
            survivor = await store.sessions.create(Session(site_id=1))
            silent = await store.sessions.create(Session(site_id=1))
            assert survivor.id is not None and silent.id is not None
            kept, reaped = (
                await running_job(store, survivor.id),
                await running_job(store, silent.id),
            )
            reaper = Reaper(store, 1, grace=5, interval=0.2)
            async with anyio.create_task_group() as tg:
                tg.start_soon(reaper.run)
                await anyio.to_thread.run_sync(stack.stop_mongod, pid)
                await until(lambda: reaper.skipped >= 2, 30)  # the reaper goes on
                pid = await anyio.to_thread.run_sync(start)
                # both were silent through the outage, longer than the grace
                old = utcnow() - timedelta(seconds=120)
                await store.db["sessions"].update_many({}, {"$set": {"heartbeat": old}})
                await until(lambda: reaper.back, 30)
                assert set((await store.jobs.states([kept, reaped])).values()) == {S.RUNNING}

                async def beat() -> None:  # the survivor beats again, as a launcher does
                    assert survivor.id is not None
                    while True:
                        await store.sessions.heartbeat(survivor.id)
                        await anyio.sleep(0.5)

                tg.start_soon(beat)

                async def timed_out() -> bool:
                    return (await store.jobs.states([reaped]))[reaped] is S.RUN_TIMEOUT

                await until(timed_out, 30)
                assert (await store.jobs.states([kept]))[kept] is S.RUNNING
                tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(stack.stop_mongod, pid)
