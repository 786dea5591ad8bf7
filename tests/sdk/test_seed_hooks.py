"""The user documentation's lifecycle hooks, example by example, run the way the site agent will
(stored class loaded, hook called with no event loop, outcome committed in one transaction);
plus what Balsam could not do: ``super()`` in app methods and in-place ``self.job.data``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.driving import forget_hooks

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import Actor, Change, JobState
from balsam_mq.sdk import Client, Site
from balsam_mq.sdk.app import app_for_job
from balsam_mq.store import Store

S = JobState
Drive = CommitHook = Any


async def relaunch(store: Store, job_id: Any, outcome: JobState) -> None:
    """RESTART_READY -> RUNNING -> ``outcome``, as the launcher reports a rerun."""
    for src, dst in ((S.RESTART_READY, S.RUNNING), (S.RUNNING, outcome)):
        result = await store.jobs.transition([Change(job_id, src, dst, by=Actor.LAUNCHER)])
        assert result.all_moved


async def test_preprocess_advances_or_fails_with_searchable_data(
    client: Client, site: Site, store: Store, drive: Drive, commit_hook: CommitHook
) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe -inp input.nw"

        def preprocess(self):  # type: ignore[no-untyped-def]
            # Can read anything from self.job.data
            coordinates = self.job.data["input_coords"]

            # Run arbitrary methods defined on the class:
            success = self.generate_input(coordinates)

            # Advance the job state
            if success:
                # Ready to run
                self.job.state = "PREPROCESSED"
            else:
                # Fail the job and attach searchable data
                # to the failure event
                self.job.state = "FAILED"
                self.job.state_data = {"error": "Preproc got bad coordinates"}

        def generate_input(self, coordinates):  # type: ignore[no-untyped-def]
            return all(c >= 0 for c in coordinates)

    good = await MySimulation.submit("sim/good", data={"input_coords": [1, 2]})
    bad = await MySimulation.submit("sim/bad", data={"input_coords": [-1, 2]})
    await drive([good.id, bad.id], S.STAGED_IN)
    for job in (good, bad):
        await commit_hook("MySimulation", job.id, "preprocess", Actor.PREPROCESS)
    assert (await store.jobs.get(good.id)).state == S.PREPROCESSED
    failed = await store.jobs.get(bad.id)
    assert failed.state == S.FAILED
    assert failed.state_data == {"error": "Preproc got bad coordinates"}
    history = await store.events.for_job(bad.id)
    assert history[-1].to_state == "FAILED"
    assert history[-1].state_data == {"error": "Preproc got bad coordinates"}


async def test_shell_preamble_reads_the_job(client: Client, site: Site, store: Store) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe"

        def shell_preamble(self):  # type: ignore[no-untyped-def]
            return f"""
            module load conda/tensorflow
            export FOO={self.job.data["env_vars"]["foo"]}
            """

    job = await MySimulation.submit("sim/1", data={"env_vars": {"foo": "bar"}})
    # as the launcher calls it: the stored class, self.job the stored job
    loaded = (await ApplicationDefinition.load_by_site("polaris"))["MySimulation"]
    preamble = app_for_job(loaded, await store.jobs.get(job.id)).shell_preamble()
    lines = [line.strip() for line in preamble.strip().splitlines()]
    assert lines == ["module load conda/tensorflow", "export FOO=bar"]


async def test_postprocess_parses_output_and_may_restart(
    client: Client,
    site: Site,
    store: Store,
    drive: Drive,
    commit_hook: CommitHook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe"

        def postprocess(self):  # type: ignore[no-untyped-def]
            with open("out.hdf") as fp:
                # Call your own result parser:
                results = self.parse_results(fp)

            if self.is_converged(results):
                self.job.state = "POSTPROCESSED"
            else:
                # Call your own input file fixer:
                self.fix_input()
                self.job.state = "RESTART_READY"

        def parse_results(self, fp):  # type: ignore[no-untyped-def]
            return {"energy_delta": float(fp.read())}

        def is_converged(self, results):  # type: ignore[no-untyped-def]
            return results["energy_delta"] < 1e-6

        def fix_input(self):  # type: ignore[no-untyped-def]
            self.job.data = {**self.job.data, "fixed": True}

    job = await MySimulation.submit("sim/1")
    await drive([job.id], S.RUN_DONE)
    monkeypatch.chdir(tmp_path)  # hooks run in the job's workdir
    (tmp_path / "out.hdf").write_text("0.5")
    await commit_hook("MySimulation", job.id, "postprocess", Actor.POSTPROCESS)
    restarted = await store.jobs.get(job.id)  # type: ignore[arg-type]
    assert restarted.state == S.RESTART_READY and restarted.data == {"fixed": True}
    await relaunch(store, job.id, S.RUN_DONE)
    (tmp_path / "out.hdf").write_text("0.0000001")
    await commit_hook("MySimulation", job.id, "postprocess", Actor.POSTPROCESS)
    # nothing to stage out: POSTPROCESSED passes through to the end in the same write
    history = await store.events.for_job(job.id)  # type: ignore[arg-type]
    assert [e.to_state for e in history[-3:]] == ["POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]


async def test_handle_timeout_fails_and_creates_a_follow_up_job(
    client: Client, site: Site, store: Store, drive: Drive, commit_hook: CommitHook
) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe --steps {{ steps }}"

        def handle_timeout(self):  # type: ignore[no-untyped-def]
            # Sorry, not retrying slow runs:
            self.job.state = "FAILED"
            self.job.state_data = {"reason": "Job Timed out"}

            # Create another, faster run:
            new_job_params = self.next_run_kwargs()
            Job.objects.create(**new_job_params)

        def next_run_kwargs(self):  # type: ignore[no-untyped-def]
            return {
                "workdir": self.job.workdir + "-faster",
                "app_id": self.job.app_id,
                "parameters": {"steps": self.job.parameters["steps"] // 2},
                "tags": {"follows": str(self.job.id)},
            }

    job = await MySimulation.submit("sim/slow", steps=1000)
    await drive([job.id], S.RUN_TIMEOUT)
    outcome = await commit_hook("MySimulation", job.id, "handle_timeout", Actor.TIMEOUT)
    assert len(outcome.created_jobs()) == 1
    failed = await store.jobs.get(job.id)  # type: ignore[arg-type]
    assert failed.state == S.FAILED and failed.state_data == {"reason": "Job Timed out"}
    follow_up = await Job.objects.get(tags={"follows": str(job.id)})
    assert follow_up.workdir == "sim/slow-faster" and follow_up.state == S.PREPROCESSED
    assert follow_up.parameters == {"steps": 500} and follow_up.app_id == job.app_id


async def test_handle_error_retries_three_times_then_fails(
    client: Client, site: Site, store: Store, drive: Drive, commit_hook: CommitHook
) -> None:
    class MySimulation(ApplicationDefinition):
        site = "polaris"
        command_template = "sim.exe"

        def handle_error(self):  # type: ignore[no-untyped-def]
            dat = self.job.data
            retry_count = dat.get("retry_count", 0)

            if retry_count <= 3:
                self.fix_inputs()
                self.job.state = "RESTART_READY"
                self.job.data = {**dat, "retry_count": retry_count + 1}
            else:
                self.job.state = "FAILED"
                self.job.state_data = {"reason": "Exceeded maximum retries"}

        def fix_inputs(self):  # type: ignore[no-untyped-def]
            pass

    job = await MySimulation.submit("sim/flaky")
    await drive([job.id], S.RUN_ERROR)
    states = []
    for _ in range(5):
        await commit_hook("MySimulation", job.id, "handle_error", Actor.ERROR)
        current = await store.jobs.get(job.id)  # type: ignore[arg-type]
        states.append((current.state.value, current.data.get("retry_count")))
        if current.state == S.RESTART_READY:
            await relaunch(store, job.id, S.RUN_ERROR)
    assert states == [("RESTART_READY", n) for n in (1, 2, 3, 4)] + [("FAILED", 4)]
    assert current.state_data == {"reason": "Exceeded maximum retries"}


@pytest.mark.parametrize(
    ("start", "hook", "by", "end"),
    [
        (S.STAGED_IN, "preprocess", Actor.PREPROCESS, S.PREPROCESSED),
        (S.RUN_DONE, "postprocess", Actor.POSTPROCESS, S.POSTPROCESSED),
        (S.RUN_TIMEOUT, "handle_timeout", Actor.TIMEOUT, S.RESTART_READY),
        (S.RUN_ERROR, "handle_error", Actor.ERROR, S.FAILED),
    ],
)
async def test_default_hooks_move_the_job_forward(
    client: Client,
    site: Site,
    store: Store,
    drive: Drive,
    commit_hook: CommitHook,
    start: JobState,
    hook: str,
    by: Actor,
    end: JobState,
) -> None:
    class Plain(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

    await Plain.sync()
    # stored without its hooks list (by an earlier version): every hook step is taken by
    # its consumer, which calls the hook; the default one moves the job on (the job names
    # the app, so the version read is the stored one, not the one this client synced)
    await forget_hooks(store, (await store.apps.by_name("Plain"))[0].id or 0)
    job = await Job.objects.create("plain/1", app_id="Plain")
    await drive([job.id], start)
    before = len(await store.events.for_job(job.id))  # type: ignore[arg-type]
    await commit_hook("Plain", job.id, hook, by)
    moved = (await store.events.for_job(job.id))[before]  # type: ignore[arg-type]
    assert (moved.from_state, moved.to_state, moved.by) == (start, end, by)


async def test_in_place_changes_of_job_data_are_persisted(
    client: Client, site: Site, store: Store, drive: Drive, commit_hook: CommitHook
) -> None:
    class Tally(ApplicationDefinition):
        site = "polaris"
        command_template = "true"

        def preprocess(self):  # type: ignore[no-untyped-def]
            self.job.data["seen"] = True  # a new key
            self.job.data["history"].append("preprocessed")  # a nested list append
            self.job.state = "PREPROCESSED"

    job = await Tally.submit("tally/1", data={"history": ["created"]})
    await drive([job.id], S.STAGED_IN)
    await commit_hook("Tally", job.id, "preprocess", Actor.PREPROCESS)
    stored = await store.jobs.get(job.id)  # type: ignore[arg-type]
    assert stored.state == S.PREPROCESSED
    assert stored.data == {"history": ["created", "preprocessed"], "seen": True}


async def test_super_in_hooks_and_in_run(
    client: Client, site: Site, store: Store, drive: Drive, commit_hook: CommitHook
) -> None:
    class Base(ApplicationDefinition):
        site = "polaris"

        def preprocess(self):  # type: ignore[no-untyped-def]
            self.job.data = {**self.job.data, "base": True}
            self.job.state = "PREPROCESSED"

        def scale(self, x):  # type: ignore[no-untyped-def]
            return x * 10

        def run(self, x):  # type: ignore[no-untyped-def]
            return x

    class Child(Base):
        def preprocess(self):  # type: ignore[no-untyped-def]
            super().preprocess()
            self.job.data["child"] = True

        def run(self, x):  # type: ignore[no-untyped-def]
            return super().scale(x) + super().run(1)

    job = await Child.submit("child/1", x=4)
    await drive([job.id], S.STAGED_IN)
    await commit_hook("Child", job.id, "preprocess", Actor.PREPROCESS)
    stored = await store.jobs.get(job.id)  # type: ignore[arg-type]
    assert stored.state == S.PREPROCESSED and stored.data == {"base": True, "child": True}
    loaded = (await ApplicationDefinition.load_by_site("polaris"))["Child"]
    assert loaded is not Child
    assert loaded(job)._run_with({"x": 4}) == 41
