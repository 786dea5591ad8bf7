"""The reaper: jobs of a silent launcher session time out; live and stopped sessions are left."""

from __future__ import annotations

from datetime import timedelta

from balsam_mq.domain import Actor, Change, Job, JobState, Session, utcnow
from balsam_mq.processors.reaper import Reaper
from balsam_mq.store import Store

S = JobState


async def _running_job(store: Store, session_id: int) -> int:
    (job,) = await store.jobs.create_many([Job(app_id=1, site_id=1, workdir=f"r/{session_id}")])
    assert job.id is not None
    await store.db["jobs"].update_one({"_id": job.id}, {"$set": {"state": "PREPROCESSED"}})
    await store.jobs.transition(
        [
            Change(
                job.id,
                S.PREPROCESSED,
                S.RUNNING,
                fields={"session_id": session_id},
                by=Actor.LAUNCHER,
            )
        ]
    )
    return job.id


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
    jobs = {s: await _running_job(store, s) for s in (live.id, silent.id)}

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
