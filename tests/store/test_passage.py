"""Steps with no work are passed through in the transaction that reaches them, each recorded
as its own event; events nobody acts on are quiet (routed apart from the work queues)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from balsam_mq.domain import Actor, App, Change, Event, Job, JobState, TransferSlot
from balsam_mq.domain.models import STEP_FIELDS, THEN, expand_event_doc
from balsam_mq.domain.pipeline import HOOKS, Work, has_work, passage
from balsam_mq.store import Store

S = JobState


async def _app(store: Store, name: str, **fields: object) -> int:
    app = await store.apps.upsert(App(site_id=1, name=name, command_template="true", **fields))  # type: ignore[arg-type]
    assert app.id is not None
    return app.id


def _steps(history: Sequence[Event]) -> list[tuple[str | None, str, str | None, bool]]:
    return [(e.from_state, e.to_state, e.by, e.quiet) for e in history]


async def test_a_job_with_nothing_to_do_before_its_run_is_created_runnable(store: Store) -> None:
    plain = await _app(store, "Plain", hooks=[])
    (job,) = await store.jobs.create_many([Job(app_id=plain, site_id=1, workdir="p")])
    assert job.id is not None and job.state == S.PREPROCESSED and job.seq == 3
    assert _steps(await store.events.for_job(job.id)) == [
        ("CREATED", "READY", "client", True),
        ("READY", "STAGED_IN", "stage_in", True),
        ("STAGED_IN", "PREPROCESSED", "preprocess", False),  # the launchers' work
    ]
    stored = await store.jobs.get(job.id)
    assert (stored.state, stored.seq) == (S.PREPROCESSED, 3)


async def test_work_stops_the_passage_where_it_is(store: Store) -> None:
    custom = await _app(store, "Custom", hooks=["preprocess", "postprocess"])
    unknown = await _app(store, "Older")  # stored without a hooks list
    staged = await _app(
        store,
        "Staged",
        hooks=[],
        transfers={"deck": TransferSlot(direction="in", local_path="in.nw")},
    )
    jobs = await store.jobs.create_many(
        [
            Job(app_id=custom, site_id=1, workdir="c"),
            Job(app_id=unknown, site_id=1, workdir="u"),
            Job(app_id=staged, site_id=1, workdir="s", transfers={"deck": "laptop:/d.nw"}),
            Job(app_id=staged, site_id=1, workdir="n"),  # slot not used: nothing to stage
        ]
    )
    # unknown hooks stop at the first hook step; a used stage-in slot at READY
    assert [j.state for j in jobs] == [S.STAGED_IN, S.STAGED_IN, S.READY, S.PREPROCESSED]
    quiet = [[e.quiet for e in await store.events.for_job(j.id or 0)] for j in jobs]
    assert quiet == [[True, False], [True, False], [False], [True, True, False]]


async def test_a_finished_run_passes_through_to_the_end(store: Store) -> None:
    plain = await _app(store, "Plain", hooks=[])
    cleaned = await _app(store, "Cleaned", hooks=[], cleanup_files=["*.tmp"])
    custom = await _app(store, "Custom", hooks=["postprocess"])
    jobs = await store.jobs.create_many(
        [Job(app_id=a, site_id=1, workdir=f"w{a}") for a in (plain, cleaned, custom)]
    )
    ids = [j.id or 0 for j in jobs]
    claims = [Change(i, S.PREPROCESSED, S.RUNNING, by=Actor.LAUNCHER) for i in ids]
    assert (await store.jobs.transition(claims)).final == dict.fromkeys(ids, S.RUNNING)
    done = [Change(i, S.RUNNING, S.RUN_DONE, fields={"return_code": 0}) for i in ids]
    result = await store.jobs.transition(done)
    assert result.final == {ids[0]: S.JOB_FINISHED, ids[1]: S.JOB_FINISHED, ids[2]: S.RUN_DONE}
    plain_history = _steps(await store.events.for_job(ids[0]))
    assert plain_history[-4:] == [
        ("RUNNING", "RUN_DONE", None, True),
        ("RUN_DONE", "POSTPROCESSED", "postprocess", True),
        ("POSTPROCESSED", "STAGED_OUT", "stage_out", True),
        ("STAGED_OUT", "JOB_FINISHED", "stage_out", True),  # no cleanup, no children
    ]
    cleaned_end = (await store.events.for_job(ids[1]))[-1]
    assert (cleaned_end.to_state, cleaned_end.quiet) == ("JOB_FINISHED", False)  # cleanup
    assert (await store.events.for_job(ids[2]))[-1].routing_key == "job.1.RUN_DONE"
    assert (await store.jobs.get(ids[0])).return_code == 0


async def test_defaults_keep_what_the_launcher_recorded(store: Store) -> None:
    plain = await _app(store, "Plain", hooks=[])
    jobs = await store.jobs.create_many(
        [Job(app_id=plain, site_id=1, workdir=f"w{i}") for i in range(2)]
    )
    a, b = (j.id or 0 for j in jobs)
    await store.jobs.transition(
        [Change(i, S.PREPROCESSED, S.RUNNING, by=Actor.LAUNCHER) for i in (a, b)]
    )
    await store.jobs.transition(
        [
            Change(a, S.RUNNING, S.RUN_ERROR, {"return_code": 2, "output_tail": "boom"}),
            Change(b, S.RUNNING, S.RUN_TIMEOUT, {"reason": "launcher wall time reached"}),
        ]
    )
    failed, restart = await store.jobs.get_many([a, b])
    assert failed.state == S.FAILED
    assert failed.state_data == {"reason": "run error", "return_code": 2, "output_tail": "boom"}
    assert restart.state == S.RESTART_READY
    assert restart.state_data == {"reason": "launcher wall time reached"}
    end = (await store.events.for_job(b))[-1]
    assert (end.to_state, end.by, end.quiet) == ("RESTART_READY", "timeout", False)


async def test_the_end_of_a_job_with_children_goes_to_the_resolver(store: Store) -> None:
    plain = await _app(store, "Plain", hooks=[])
    (parent,) = await store.jobs.create_many([Job(app_id=plain, site_id=1, workdir="p")])
    assert parent.id is not None
    (child,) = await store.jobs.create_many(
        [Job(app_id=plain, site_id=1, workdir="c", parent_ids=[parent.id])]
    )
    assert child.state == S.AWAITING_PARENTS
    await store.jobs.transition([Change(parent.id, S.PREPROCESSED, S.FAILED, by=Actor.USER)])
    end = (await store.events.for_job(parent.id))[-1]
    assert (end.to_state, end.quiet, end.routing_key) == ("FAILED", False, "job.1.FAILED")


def test_passage_follows_the_default_moves_until_work() -> None:
    none = Work(hooks=frozenset(), stage_in=False, stage_out=False, cleanup=False)
    assert [m.to for m in passage(S.READY, none)] == [S.STAGED_IN, S.PREPROCESSED]
    assert [m.to for m in passage(S.RUN_DONE, none)] == [
        S.POSTPROCESSED,
        S.STAGED_OUT,
        S.JOB_FINISHED,
    ]
    assert passage(S.READY, None) == []  # unknown work: nothing is passed
    assert passage(S.RUNNING, none) == []
    staging = Work(hooks=frozenset(HOOKS), stage_in=True, stage_out=False, cleanup=False)
    assert passage(S.READY, staging) == []
    assert [m.to for m in passage(S.POSTPROCESSED, staging)] == [S.STAGED_OUT, S.JOB_FINISHED]


@pytest.mark.parametrize("state", list(S), ids=[s.value for s in S])
def test_work_that_cannot_be_ruled_out_is_assumed(state: JobState) -> None:
    none = Work(hooks=frozenset(), stage_in=False, stage_out=False, cleanup=False)
    unknown_hooks = Work(hooks=None, stage_in=False, stage_out=False, cleanup=False)
    launchers = state in (S.PREPROCESSED, S.RESTART_READY)
    assert has_work(state, none) is launchers
    assert has_work(state, unknown_hooks) is (
        launchers or state in (S.STAGED_IN, S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT)
    )
    if state not in (S.CREATED, S.AWAITING_PARENTS, S.RUNNING, S.STAGED_OUT, S.FAILED):
        assert has_work(state, None)  # nothing known: sent to whoever may act
    assert has_work(state, none, has_children=True) is (
        launchers or state in (S.FAILED, S.JOB_FINISHED)
    )


async def test_stored_event_documents_are_those_of_the_model(store: Store) -> None:
    plain = await _app(store, "Plain", hooks=[])
    (job,) = await store.jobs.create_many([Job(app_id=plain, site_id=1, workdir="p")])
    assert job.id is not None
    await store.jobs.transition([Change(job.id, S.PREPROCESSED, S.RUNNING, by=Actor.LAUNCHER)])
    await store.jobs.transition(
        [Change(job.id, S.RUNNING, S.RUN_ERROR, {"return_code": 2, "nested": {"s": S.FAILED}})]
    )
    raw = [d async for d in store.db["events"].find({"job_id": job.id}).sort("seq")]
    # one document per transaction: creation, claim, the run's end and the failure
    assert [len(d.get(THEN, [])) for d in raw] == [2, 0, 1]
    fields = [f for f in Event.model_fields if f != "id"]
    for doc in raw:  # built directly, field by field: the model's fields, in order
        assert [k for k in doc if k != THEN] == ["_id", *fields]
        for step in doc.get(THEN, []):  # the steps after the first: their own fields only
            assert sorted(step) == sorted(STEP_FIELDS)
    events = [e for doc in raw for e in expand_event_doc(doc)]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert len({e["_id"] for e in events}) == 6
    for event in events:
        assert Event.from_doc(event).to_doc() == {k: v for k, v in event.items() if k != "_id"}
    raw = events
    assert raw[-1]["state_data"] == {
        "reason": "run error",
        "return_code": 2,
        "nested": {"s": "FAILED"},
    }
