"""The EventLog examples of Balsam's user guide page "Debugging, Monitoring, and Analytics"
(docs/user-guide/monitoring.md of argonne-lcf/balsam, section "The EventLog API"), each
run twice: as the page writes it on ``balsam_mq.blocking`` (only the import line changed)
and with ``await`` on ``balsam_mq``.

Numbers the page writes for ids (``job_id=[123, 124, 125]``, ``batch_job_id=123``) are
the ids of the jobs and batch job the test made.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from compat_helpers import Drive, Example, hello_jobs

import balsam_mq as mq
from balsam_mq.domain import JobState, utcnow
from balsam_mq.domain.models import expand_event_doc
from balsam_mq.store import Store

S = JobState


def keys(events: list[Any]) -> list[tuple[Any, ...]]:
    """What tells events apart, in a stable order."""
    return sorted((e.kind, e.job_id, e.batch_job_id, e.seq, e.to_state) for e in events)


async def stored_events(store: Store, **match: Any) -> list[tuple[Any, ...]]:
    """The keys of the stored events whose documents match a MongoDB filter of their
    own fields (the expectation)."""
    docs = [d async for d in store.db["events"].find(match, {"_id": 0})]
    return keys([mq.EventLog(**e) for d in docs for e in expand_event_doc(d)])


async def test_print_the_events_of_tagged_jobs(
    example: Example, hello_app: mq.App, drive: Drive, capsys: pytest.CaptureFixture[str]
) -> None:
    """``for evt in EventLog.objects.filter(tags={"experiment": "foo"}):``
    ``print(evt.job_id)  # Job ID`` ``print(evt.timestamp)  # Time of state change (UTC)``
    ``print(evt.from_state)  # From which state the job transitioned``
    ``print(evt.to_state)  # To which state`` ``print(evt.data)  # optional payload``"""
    foo, _ = await hello_jobs(("foo", {"experiment": "foo"}), ("bar", {"experiment": "bar"}))
    await drive([foo.id], S.RUNNING)

    def script() -> None:
        from balsam_mq.blocking import EventLog

        for evt in EventLog.objects.filter(tags={"experiment": "foo"}):
            print(evt.job_id)  # Job ID
            print(evt.timestamp)  # Time of state change (UTC)
            print(evt.from_state)  # From which state the job transitioned
            print(evt.to_state)  # To which state
            print(evt.data)  # optional payload

    async def coroutine() -> None:
        from balsam_mq import EventLog

        async for evt in EventLog.objects.filter(tags={"experiment": "foo"}):
            print(evt.job_id)  # Job ID
            print(evt.timestamp)  # Time of state change (UTC)
            print(evt.from_state)  # From which state the job transitioned
            print(evt.to_state)  # To which state
            print(evt.data)  # optional payload

    capsys.readouterr()
    await example.run(script, coroutine)
    printed = capsys.readouterr().out.splitlines()
    history = await mq.EventLog.objects.filter(job_id=foo.id).order_by("timestamp", "seq")
    assert [e.to_state for e in history] == [
        "READY",
        "STAGED_IN",
        "PREPROCESSED",
        "RUNNING",
    ]
    assert printed == [
        line
        for e in history
        for line in (str(foo.id), str(e.timestamp), e.from_state, e.to_state, str(e.data))
    ]


async def test_events_of_a_set_of_job_ids(example: Example, hello_app: mq.App) -> None:
    """``EventLog.objects.filter(job_id=[123, 124, 125])``"""
    jobs = await hello_jobs(*((f"w/{n}", {}) for n in range(4)))
    job_ids = [j.id for j in jobs[:3]]

    def script() -> list[Any]:
        from balsam_mq.blocking import EventLog

        return list(EventLog.objects.filter(job_id=job_ids))

    async def coroutine() -> list[Any]:
        from balsam_mq import EventLog

        return await EventLog.objects.filter(job_id=job_ids)

    found = await example.run(script, coroutine)
    assert {e.job_id for e in found} == set(job_ids)
    assert len(found) == 3 * 3  # each created PREPROCESSED: READY, STAGED_IN, PREPROCESSED


async def test_events_of_the_jobs_that_ran_in_a_batch_job(
    example: Example, hello_app: mq.App, theta_gpu: mq.Site, store: Store, drive: Drive
) -> None:
    """Get ``EventLogs`` for all the Jobs that ran in a particular ``BatchJob``:
    ``EventLog.objects.filter(batch_job_id=123)``"""
    batch = await mq.BatchJob.objects.create(site_id=theta_gpu.id, num_nodes=1)
    other = await mq.BatchJob.objects.create(site_id=theta_gpu.id, num_nodes=1)
    ran, ran_elsewhere, waiting = await hello_jobs(("a", {}), ("b", {}), ("c", {}))
    # what a launcher of each batch job records on the jobs it claims
    await mq.Job.objects.filter(id=ran.id).update(batch_job_id=batch.id)
    await mq.Job.objects.filter(id=ran_elsewhere.id).update(batch_job_id=other.id)
    await drive([ran.id, ran_elsewhere.id], S.JOB_FINISHED)
    await mq.BatchJob.objects.filter(id=batch.id).update(state="queued")
    batch_id = batch.id

    def script() -> list[Any]:
        from balsam_mq.blocking import EventLog

        return list(EventLog.objects.filter(batch_job_id=batch_id))

    async def coroutine() -> list[Any]:
        from balsam_mq import EventLog

        return await EventLog.objects.filter(batch_job_id=batch_id)

    found = keys(await example.run(script, coroutine))
    # the job's whole history, and the batch job's own changes
    assert found == sorted(
        await stored_events(store, job_id=ran.id)
        + await stored_events(store, kind="batchjob", batch_job_id=batch.id)
    )
    assert {k[1] for k in found} == {ran.id, None}
    assert [k[4] for k in found if k[0] == "batchjob"] == ["pending_submission", "queued"]
    assert waiting.id not in {k[1] for k in found}


async def test_events_into_and_out_of_a_state(
    example: Example, hello_app: mq.App, drive: Drive
) -> None:
    """Queries by ``to_state`` and ``from_state``, filters the page lists among "the most
    useful": ``EventLog.objects.filter(to_state="RUNNING")``,
    ``EventLog.objects.filter(from_state="RUNNING", to_state="RUN_ERROR")``"""
    ok, bad, _idle = await hello_jobs(("ok", {}), ("bad", {}), ("idle", {}))
    await drive([ok.id], S.JOB_FINISHED)
    await drive([bad.id], S.FAILED)  # through RUN_ERROR

    def script() -> tuple[list[int], list[int]]:
        from balsam_mq.blocking import EventLog

        started = EventLog.objects.filter(to_state="RUNNING")
        errors = EventLog.objects.filter(from_state="RUNNING", to_state="RUN_ERROR")
        return sorted(e.job_id for e in started), [e.job_id for e in errors]

    async def coroutine() -> tuple[list[int], list[int]]:
        from balsam_mq import EventLog

        started = EventLog.objects.filter(to_state="RUNNING")
        errors = EventLog.objects.filter(from_state="RUNNING", to_state="RUN_ERROR")
        return sorted([e.job_id async for e in started]), [e.job_id async for e in errors]

    assert await example.run(script, coroutine) == ([ok.id, bad.id], [bad.id])  # not idle


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
async def test_events_after_a_time(
    example: Example, hello_app: mq.App, store: Store, drive: Drive
) -> None:
    """A query by time, with the ``timestamp_after`` filter the page lists:
    ``yesterday = datetime.utcnow() - timedelta(days=1)``
    ``EventLog.objects.filter(timestamp_after=yesterday, to_state="RUNNING")`` (naive UTC
    datetimes, as ``datetime.utcnow()`` gives them)."""
    old, recent = await hello_jobs(("old", {}), ("recent", {}))
    await drive([old.id, recent.id], S.RUNNING)
    two_days_ago = utcnow() - timedelta(days=2)
    await store.db["events"].update_many({"job_id": old.id}, {"$set": {"timestamp": two_days_ago}})

    def script() -> list[int]:
        from datetime import datetime, timedelta

        from balsam_mq.blocking import EventLog

        yesterday = datetime.utcnow() - timedelta(days=1)
        started = EventLog.objects.filter(timestamp_after=yesterday, to_state="RUNNING")
        return [e.job_id for e in started]

    async def coroutine() -> list[int]:
        from datetime import datetime, timedelta

        from balsam_mq import EventLog

        yesterday = datetime.utcnow() - timedelta(days=1)
        started = EventLog.objects.filter(timestamp_after=yesterday, to_state="RUNNING")
        return [e.job_id async for e in started]

    assert await example.run(script, coroutine) == [recent.id]
