"""Resetting jobs under a running site agent: a failed DAG reset from its root with the
descendants runs again in dependency order, each step of the pipeline taken again."""

from __future__ import annotations

from typing import Any

from agent_helpers import S, SiteEnv, StandInLauncher
from support.waiting import wait_for_states

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.store import Store


class Prep(ApplicationDefinition):
    """Its own preprocess: the agent's preprocess consumer runs it on every pass."""

    site = "polaris"
    command_template = "prep {{ n }}"

    def preprocess(self) -> None:
        self.job.data = {**self.job.data, "preprocessed": self.job.data.get("preprocessed", 0) + 1}
        self.job.state = "PREPROCESSED"


async def test_a_failed_dag_reset_with_its_descendants_runs_again_in_order(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    broken = True

    def outcome(job: Any) -> Any:  # the root fails until it is "fixed"
        failing = broken and job.workdir == "dag/root"
        return (S.RUN_ERROR, {"return_code": 1}) if failing else (S.RUN_DONE, {})

    launcher.outcome = outcome
    await start_agent()
    root = await Prep.submit("dag/root", n=0)
    child = await Prep.submit("dag/child", n=1, parent_ids=[root.id])
    grandchild = await Prep.submit("dag/grandchild", n=2, parent_ids=[child.id])
    ids = [root.id, child.id, grandchild.id]
    await wait_for_states(store, ids, [S.FAILED], 60)
    assert launcher.runs == [root.id]

    broken = False
    reset = await Job.objects.filter(id=root.id).reset(descendants=True)
    assert sorted(reset.moved) == sorted(ids)
    await wait_for_states(store, ids, [S.JOB_FINISHED], 60)
    assert launcher.runs == [root.id, *ids]  # each ran once more, in order
    history = await store.events.history(ids)
    for parent_id, child_id in ((root.id, child.id), (child.id, grandchild.id)):
        finished = max(e.timestamp for e in history[parent_id] if e.to_state == "JOB_FINISHED")
        ready = [e for e in history[child_id] if e.to_state == "READY"][-1]
        assert ready.from_state == "AWAITING_PARENTS" and ready.timestamp >= finished
    # the root's preprocess ran twice: once when created, once when reset
    assert (await store.jobs.get(root.id)).data["preprocessed"] == 2
