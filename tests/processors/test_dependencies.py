"""The dependency resolver: DAGs finish in order; a failed parent fails its whole subtree."""

from __future__ import annotations

import random
from typing import Any

from agent_helpers import S, SiteEnv, StandInLauncher
from support.waiting import wait_for_states

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.store import Store


class Step(ApplicationDefinition):
    site = "polaris"
    command_template = "step {{ n }}"


async def _dag(n: int = 50) -> tuple[list[Any], dict[int, list[int]]]:
    """Chains and diamonds: every job after the first few has 1 or 2 earlier parents."""
    rng = random.Random(7)
    jobs: list[Any] = []
    parents: dict[int, list[int]] = {}
    for i in range(n):
        if i < 3:
            ps: list[int] = []
        elif i % 5 == 0:  # diamond joins
            ps = rng.sample([j.id for j in jobs[-6:]], 2)
        else:  # chains
            ps = [jobs[-1].id] if i % 2 else [jobs[-3].id]
        job = await Step.submit(f"dag/{i}", n=i, parent_ids=ps)
        jobs.append(job)
        parents[job.id] = ps
    return jobs, parents


async def test_dag_of_50_finishes_in_dependency_order(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    jobs, parents = await _dag()
    ids = [j.id for j in jobs]
    await wait_for_states(store, ids, [S.JOB_FINISHED], 120)
    history = await store.events.history(ids)
    finished = {
        i: next(e.timestamp for e in h if e.to_state == "JOB_FINISHED") for i, h in history.items()
    }
    for child, ps in parents.items():
        ready = next(e for e in history[child] if e.to_state == "READY")
        for p in ps:
            assert ready.timestamp >= finished[p], f"job {child} released before parent {p}"
        if ps:
            assert ready.from_state == "AWAITING_PARENTS"


async def test_failed_parent_fails_its_subtree_with_the_reason(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    root = await Step.submit("sub/root", n=0)
    child = await Step.submit("sub/child", n=1, parent_ids=[root.id])
    grandchild = await Step.submit("sub/grandchild", n=2, parent_ids=[child.id])
    other = await Step.submit("sub/other", n=3)
    sibling = await Step.submit("sub/sibling", n=4, parent_ids=[other.id, child.id])
    launcher.outcome = lambda job: (
        (S.RUN_ERROR, {"return_code": 2}) if job.workdir == "sub/root" else (S.RUN_DONE, {})
    )
    await start_agent()
    subtree = [root.id, child.id, grandchild.id, sibling.id]
    await wait_for_states(store, subtree, [S.FAILED], 60)
    await wait_for_states(store, [other.id], [S.JOB_FINISHED], 60)
    for job_id, parent in ((child.id, root.id), (grandchild.id, child.id), (sibling.id, child.id)):
        doc = await store.jobs.get(job_id)
        assert doc.state_data["reason"] == f"parent job {parent} failed"
        assert doc.state_data["failed_parent"] == parent
        assert doc.state_data["failed_ancestor"] == root.id
    assert root.id in launcher.runs and child.id not in launcher.runs


async def test_parent_restarted_after_failure_releases_children_created_afterwards(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    attempts: list[int] = []

    def flaky(job: Any) -> Any:  # the parent's first run fails, every other run succeeds
        attempts.append(job.id)
        first_try = job.workdir == "re/parent" and attempts.count(job.id) == 1
        return (S.RUN_ERROR, {"return_code": 1}) if first_try else (S.RUN_DONE, {})

    launcher.outcome = flaky
    await start_agent()
    parent = await Step.submit("re/parent", n=0)
    await wait_for_states(store, [parent.id], [S.FAILED], 60)
    orphan = await Step.submit("re/orphan", n=1, parent_ids=[parent.id])
    assert orphan.state == "FAILED"  # created under a failed parent: fails at once
    await Job.objects.filter(id=parent.id).update(state="RESTART_READY")
    child = await Step.submit("re/child", n=2, parent_ids=[parent.id])
    await wait_for_states(store, [parent.id, child.id], [S.JOB_FINISHED], 60)
    doc = await store.jobs.get(orphan.id)
    assert doc.state == S.FAILED
    assert doc.state_data["reason"] == f"parent job {parent.id} failed"
