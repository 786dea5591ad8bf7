"""How the site agent runs a hook: capture (job creation without I/O, with or without await),
call_hook / run_hook and the HookOutcome they report, the jobs hooks create prepared on the
agent's client."""

from __future__ import annotations

import pickle
import re
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from balsam_mq import ApplicationDefinition, Job, blocking
from balsam_mq.domain import Actor, Change, Job as JobDocument, JobState
from balsam_mq.domain.serialization import serialize_app
from balsam_mq.errors import AppError
from balsam_mq.processors.hook_worker import HookRequest, call_hook, run_hook
from balsam_mq.sdk import capture, client
from balsam_mq.sdk.persist import prepare_views
from balsam_mq.store import Store

S = JobState


class Spawner(ApplicationDefinition):
    site = "polaris"
    command_template = "spawn {{ n }}"

    def postprocess(self):  # type: ignore[no-untyped-def]
        child = Job.objects.create("child/a", app_id=Spawner, parameters={"n": 1})
        assert child.id is None  # returned at once, not saved
        Job("child/b", app_id="Spawner", parameters={"n": 2}).save()  # no await: fine
        Job.objects.bulk_create([Spawner.submit("child/c", n=3, save=False)])
        Spawner.submit("child/d", n=4)
        self.job.data["children"] = 4
        self.job.state = "POSTPROCESSED"

    async def handle_error(self):  # type: ignore[no-untyped-def]
        job = await Job.objects.create("retry", app_id=Spawner, parameters={"n": 0})
        await Spawner.submit("retry2", n=0)
        self.job.state_data = {"created": job.workdir}
        self.job.state = "FAILED"


def document(state: JobState = S.RUN_DONE, **fields: object) -> JobDocument:
    return JobDocument(id=7, app_id=1, site_id=1, workdir="w/7", state=state, **fields)  # type: ignore[arg-type]


def test_capture_records_creations_without_io() -> None:
    assert not client._defaults  # no default client exists before ...
    outcome = call_hook(Spawner, document(data={"children": 0}), "postprocess")
    assert not client._defaults  # ... nor after: nothing did I/O
    created = outcome.created_jobs()
    assert [j.workdir for j in created] == ["child/a", "child/b", "child/c", "child/d"]
    assert all(j.id is None for j in created)
    assert outcome.state == S.POSTPROCESSED and outcome.state_data == {}
    assert outcome.fields == {"data": {"children": 4}}
    change = outcome.change(S.RUN_DONE, Actor.POSTPROCESS)
    assert change == Change(
        7, S.RUN_DONE, S.POSTPROCESSED, {}, {"data": {"children": 4}}, Actor.POSTPROCESS
    )


def test_captured_creations_can_be_awaited() -> None:
    outcome = call_hook(Spawner, document(S.RUN_ERROR), "handle_error")  # an async def hook
    assert [j.workdir for j in outcome.created_jobs()] == ["retry", "retry2"]
    assert (outcome.state, outcome.state_data) == (S.FAILED, {"created": "retry"})


def test_blocking_api_is_captured_too() -> None:
    with capture() as captured:
        job = blocking.Job.objects.create("b/1", app_id="Spawner", parameters={"n": 1})
        blocking.Job("b/2", app_id="Spawner", parameters={"n": 1}).save()
    assert [j.workdir for j in captured.jobs] == ["b/1", "b/2"]
    assert isinstance(job, blocking.Job) and job.id is None


def test_state_data_without_a_transition_is_a_field_change() -> None:
    class Annotate(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def postprocess(self):  # type: ignore[no-untyped-def]
            self.job.state_data = {"note": "not a transition"}

    outcome = call_hook(Annotate, document(S.RUN_DONE), "postprocess")
    assert outcome.state is None and outcome.change(S.RUN_DONE, Actor.POSTPROCESS) is None
    assert outcome.fields == {"state_data": {"note": "not a transition"}}


def test_default_hooks_keep_what_the_launcher_recorded_also_when_called_by_super() -> None:
    class Plain(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

    class Noting(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def handle_error(self) -> None:
            print("failed with", self.job.state_data["return_code"])
            super().handle_error()

        def handle_timeout(self) -> None:
            super().handle_timeout()

    recorded = {"return_code": 3, "output_tail": "boom"}
    for app in (Plain, Noting):
        failed = call_hook(app, document(S.RUN_ERROR, state_data=recorded), "handle_error")
        assert (failed.state, failed.state_data) == (
            S.FAILED,
            {"reason": "run error", "return_code": 3, "output_tail": "boom"},
        )
        lost = {"reason": "launcher lost"}
        timed_out = call_hook(app, document(S.RUN_TIMEOUT, state_data=lost), "handle_timeout")
        assert (timed_out.state, timed_out.state_data) == (S.RESTART_READY, lost)
        done = call_hook(app, document(S.RUN_DONE, state_data={"return_code": 0}), "postprocess")
        assert (done.state, done.state_data) == (S.POSTPROCESSED, {})


def postprocess_request(app: type, workdir: Path) -> HookRequest:
    """A request to run ``app``'s postprocess for job 7 (workers cache app classes by id
    and version: each app gets a version of its own)."""
    return HookRequest(
        app_id=1,
        app_version=app.__name__,
        app_name=app.__name__,
        serialized_class=serialize_app(app, what=app.__name__),
        hook="postprocess",
        job={**document().to_doc(), "_id": 7},
        workdir=str(workdir),
    )


def test_run_hook_reports_what_the_hook_raised_with_its_traceback(tmp_path: Path) -> None:
    class Broken(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def postprocess(self) -> None:
            print("about to fail")
            raise RuntimeError("no output file")

    outcome = run_hook(postprocess_request(Broken, tmp_path / "w"))
    assert outcome.state is None and outcome.error == "postprocess raised"
    assert outcome.traceback is not None and outcome.traceback.startswith("Traceback")
    assert "RuntimeError: no output file" in outcome.traceback
    assert (tmp_path / "w" / "balsam.log").read_text() == "about to fail\n"


def test_a_hook_raising_keyboard_interrupt_fails_its_job_not_its_worker(tmp_path: Path) -> None:
    class Interrupting(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def postprocess(self) -> None:
            raise KeyboardInterrupt

    outcome = run_hook(postprocess_request(Interrupting, tmp_path / "w"))
    assert outcome.error == "postprocess raised KeyboardInterrupt"
    assert outcome.traceback is not None and "KeyboardInterrupt" in outcome.traceback


def test_unknown_hooks_are_refused() -> None:
    with pytest.raises(AppError, match="'run' is not a hook"):
        call_hook(Spawner, document(), "run")


async def test_captured_jobs_are_prepared_for_the_agents_transaction(
    client: client.Client, site: object, store: object
) -> None:
    await Spawner.sync()
    outcome = await anyio.to_thread.run_sync(call_hook, Spawner, document(), "postprocess")
    prepared = await prepare_views(outcome.created_jobs())
    assert [(d.workdir, d.app_id) for d in prepared] == [
        (f"child/{c}", prepared[0].app_id) for c in "abcd"
    ]
    assert all(d.id is None and d.site_id == prepared[0].site_id for d in prepared)


async def test_captured_jobs_cross_a_process_boundary_and_never_sync(
    client: client.Client, site: object, store: Store
) -> None:
    """The agent's workers ship captured jobs back with dill; preparing them resolves a
    class by its site and name instead of syncing the copy that travelled."""

    class Parent(ApplicationDefinition):
        site = "polaris"
        command_template = "parent"

        def postprocess(self):  # type: ignore[no-untyped-def]
            Child.submit("next", n=self.job.data["n"] + 1)
            self.job.state = "POSTPROCESSED"

    class Child(ApplicationDefinition):
        site = "polaris"
        command_template = "child {{ n }}"

    await Parent.sync()
    await Child.sync()
    loaded = (await ApplicationDefinition.load_by_site("polaris"))["Parent"]
    outcome = await anyio.to_thread.run_sync(
        call_hook, loaded, document(data={"n": 1}), "postprocess"
    )
    shipped = outcome.created_jobs()  # as it crossed from the worker: serialized with dill
    assert shipped[0]._app_ref is not Child  # a copy, unknown to the client
    (prepared,) = await prepare_views(shipped)
    (child_app,) = await store.apps.by_name("Child")
    assert (prepared.app_id, prepared.workdir) == (child_app.id, "next")
    assert await store.events.count(kind="app") == 2  # nothing was synced again


class Hoarder(ApplicationDefinition):
    """Hooks that leave on their job what MongoDB cannot store, changed in place (an
    assignment is refused where it is made: see the next test)."""

    site = "polaris"
    command_template = "true"
    keep: Any = None  # what postprocess puts in data

    def postprocess(self) -> None:
        self.job.data["kept"] = self.keep
        self.job.state = "POSTPROCESSED"

    def handle_error(self) -> None:
        self.job.state_data["seen"] = {1, 2}
        self.job.state = "FAILED"


@pytest.mark.parametrize(
    ("keep", "why"),
    [
        ({1, 2}, r"data\['kept'\] is a set \{1, 2\}, which MongoDB cannot store"),
        (socket.socket, r"data\['kept'\] is a socket <socket.socket"),
        ("x" * (5 * 2**20), r"data takes 5,242,\d+ bytes as stored, over the limit of 4,194,304"),
    ],
    ids=["set", "socket", "too-large"],
)
def test_a_value_a_hook_leaves_that_cannot_be_stored_fails_its_job_at_the_hook(
    keep: Any, why: str
) -> None:
    with socket.socket() as sock:
        app = type("Hoarder", (Hoarder,), {"keep": sock if keep is socket.socket else keep})
        outcome = call_hook(app, document(), "postprocess")
    assert outcome.error is not None and outcome.traceback is None
    assert re.match("postprocess set data to a value that cannot be stored: " + why, outcome.error)
    assert (outcome.state, outcome.fields, outcome.created) == (None, {}, None)
    failed = call_hook(Hoarder, document(S.RUN_ERROR), "handle_error")
    assert failed.error == (
        "handle_error set state_data to a value that cannot be stored: "
        "state_data['seen'] is a set {1, 2}, which MongoDB cannot store"
    )


def test_run_hook_reports_an_unstorable_value_from_its_worker(tmp_path: Path) -> None:
    class Locks(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def postprocess(self) -> None:
            import threading

            if self.job.workdir.endswith("assigned"):
                self.job.data = {"lock": threading.Lock()}  # refused here: the hook raises
            self.job.data["lock"] = threading.Lock()  # neither storable nor picklable
            self.job.state = "POSTPROCESSED"

    def request(workdir: str) -> HookRequest:
        at_once = postprocess_request(Locks, tmp_path / "w")
        return replace(at_once, job={**at_once.job, "workdir": workdir})

    outcome = pickle.loads(pickle.dumps(run_hook(request("w/in-place"))))  # as workers send it
    assert outcome.error is not None and outcome.error.startswith(
        "postprocess set data to a value that cannot be stored: data['lock'] is a lock <unlocked"
    )
    raised = run_hook(request("w/assigned"))
    assert raised.error == "postprocess raised" and raised.traceback is not None
    assert "JobError: Job 7: data['lock'] is a lock <unlocked" in raised.traceback
