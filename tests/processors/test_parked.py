"""A message a site cannot handle is parked and its jobs fail with the reason; replaying
it (``balsam-mq dead retry``) brings them back where they waited."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from agent_helpers import S, SiteEnv, StandInLauncher
from support.waiting import wait_for_states

import balsam_mq.blocking as blocking
from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import PARKED_KEY, Actor
from balsam_mq.errors import NotFound
from balsam_mq.processors.consumers.preprocess import PreprocessConsumer
from balsam_mq.sdk import DeadLetters
from balsam_mq.settings import Settings
from balsam_mq.store import Store

# the retry, delay and dead-letter mechanics on both kinds of queue
pytestmark = pytest.mark.parametrize("settings", ["classic", "quorum"], indirect=True)


class Prepared(ApplicationDefinition):
    site = "polaris"
    command_template = "true"

    def preprocess(self) -> None:
        self.job.state = "PREPROCESSED"


class Broken(Exception):
    pass


async def test_a_parked_message_fails_its_jobs_with_the_reason_and_replaying_it_finishes_them(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(self: PreprocessConsumer, pending: Any) -> None:
        raise Broken("the preprocess consumer is broken")

    monkeypatch.setattr(PreprocessConsumer, "process", broken)
    agent = await start_agent(max_attempts=2)
    job = await Prepared.submit("parked/1")
    assert job.id is not None
    await wait_for_states(store, [job.id], [S.FAILED], 60)

    failed = await store.jobs.get(job.id)
    assert "could not handle this job and parked its message" in failed.state_data["reason"]
    assert "Broken: the preprocess consumer is broken" in failed.state_data["reason"]
    mark = failed.state_data[PARKED_KEY]
    assert mark["from"] == "STAGED_IN"
    assert mark["queue"] == agent.topology.site(site.id).preprocess.name

    [parked] = await DeadLetters.list()
    assert parked.message_id == mark["message"]
    assert parked.job_ids == [job.id]
    assert parked.attempts == 2
    assert parked.queue == mark["queue"]
    assert parked.site_id == site.id
    assert parked.summary.endswith("Broken: the preprocess consumer is broken")
    assert "Traceback" in parked.error
    assert await DeadLetters.list(site=site.id) == [parked]
    assert await DeadLetters.list(site="elsewhere") == []

    monkeypatch.undo()  # the cause is fixed
    [replayed] = await DeadLetters.retry([parked.message_id])
    assert replayed.message_id == parked.message_id
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)
    assert await DeadLetters.list() == []
    history = (await store.events.history([job.id]))[job.id]
    moves = [(e.from_state, e.to_state, e.by) for e in history]
    assert ("STAGED_IN", "FAILED", Actor.PREPROCESS) in moves
    assert ("FAILED", "STAGED_IN", Actor.REPLAY) in moves
    assert moves[-1][1] == "JOB_FINISHED"
    assert launcher.runs == [job.id]  # handled again, and run once


async def test_purging_a_parked_message_leaves_its_jobs_failed(
    client: Any,
    settings: Settings,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(self: PreprocessConsumer, pending: Any) -> None:
        raise Broken("no")

    monkeypatch.setattr(PreprocessConsumer, "process", broken)
    await start_agent(max_attempts=1)
    jobs = await Job.objects.bulk_create(
        [Prepared.submit(f"purged/{i}", save=False) for i in range(3)]
    )
    ids = [j.id for j in jobs]
    await wait_for_states(store, ids, [S.FAILED], 60)
    parked = await DeadLetters.list()
    assert sorted(j for m in parked for j in m.job_ids) == sorted(ids)
    with pytest.raises(NotFound, match="no parked message nonesuch"):
        await DeadLetters.purge(["nonesuch"])
    # the blocking facade sees the same queue, from code with no event loop

    def listed_without_await() -> list[str]:
        with blocking.connect(settings):
            return [m.message_id for m in blocking.DeadLetters.list()]

    assert await anyio.to_thread.run_sync(listed_without_await) == [m.message_id for m in parked]
    assert len(await DeadLetters.purge()) == len(parked)
    assert await DeadLetters.list() == []
    assert set((await store.jobs.states(ids)).values()) == {S.FAILED}
