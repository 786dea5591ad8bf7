"""The site agent end to end on real services: hooks, retries, follow-up jobs, reload."""

from __future__ import annotations

import os
from typing import Any

from agent_helpers import Lingering, S, SiteEnv, StandInLauncher, bad_among_good, hook_pid
from support.invariants import assert_invariants
from support.waiting import process_gone, until, wait_for_states

from balsam_mq import ApplicationDefinition, Job
from balsam_mq.domain import JobState
from balsam_mq.store import Store

FULL_PATH = [
    ("CREATED", "READY"),
    ("READY", "STAGED_IN"),
    ("STAGED_IN", "PREPROCESSED"),
    ("PREPROCESSED", "RUNNING"),
    ("RUNNING", "RUN_DONE"),
    ("RUN_DONE", "POSTPROCESSED"),
    ("POSTPROCESSED", "STAGED_OUT"),
    ("STAGED_OUT", "JOB_FINISHED"),
]


class Noop(ApplicationDefinition):
    site = "polaris"
    command_template = "true"


async def _ids(jobs: list[Any]) -> list[int]:
    return [j.id for j in jobs]


async def test_500_jobs_flow_through_default_hooks_to_finished(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    jobs = await Job.objects.bulk_create([Noop.submit(f"noop/{i}", save=False) for i in range(500)])
    ids = [j.id for j in jobs]
    await wait_for_states(store, ids, [S.JOB_FINISHED], 120)
    histories = await store.events.history(ids)
    for events in histories.values():
        assert [(e.from_state, e.to_state) for e in events] == FULL_PATH
    assert sorted(launcher.runs) == sorted(ids)  # each ran exactly once
    assert (await assert_invariants(store, ids)).final == {"JOB_FINISHED": 500}


class MySimulation(ApplicationDefinition):
    """The seed's handle_error example: retry with fixed inputs, give up after that."""

    site = "polaris"
    command_template = "simulate --fixed {{ fixed }}"
    parameters = {"fixed": {"required": False, "default": 0}}

    def fix_inputs(self) -> None:
        with open("fixes.log", "a") as f:
            f.write("fixed\n")

    def handle_error(self) -> None:
        dat = self.job.data
        retry_count = dat.get("retry_count", 0)

        if retry_count <= 3:
            self.fix_inputs()
            self.job.state = "RESTART_READY"
            self.job.data = {**dat, "retry_count": retry_count + 1}
        else:
            self.job.state = "FAILED"
            self.job.state_data = {"reason": "Exceeded maximum retries"}


async def test_seed_handle_error_retries_then_fails(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    launcher.outcome = lambda job: (S.RUN_ERROR, {"return_code": 1})
    await start_agent()
    job = await MySimulation.submit("sim/1")
    await wait_for_states(store, [job.id], [S.FAILED], 60)
    done = await store.jobs.get(job.id)
    assert done.state_data == {"reason": "Exceeded maximum retries"}
    # retry_count 0..3 pass the `<= 3` test: four restarts, five runs, as the code says
    assert done.data == {"retry_count": 4}
    assert launcher.runs.count(job.id) == 5
    fixes = site.dir.workdir("sim/1") / "fixes.log"
    assert fixes.read_text().count("fixed") == 4  # hooks ran in the workdir
    history = [(e.from_state, e.to_state) for e in await store.events.for_job(job.id)]
    assert history.count(("RUN_ERROR", "RESTART_READY")) == 4
    await assert_invariants(store, [job.id])


class Converging(ApplicationDefinition):
    """postprocess chooses RESTART_READY until converged, counting in job.data in place."""

    site = "polaris"
    command_template = "step"

    def postprocess(self) -> None:
        self.job.data.setdefault("iterations", []).append(len(self.job.data.get("iterations", [])))
        print("postprocess iteration", len(self.job.data["iterations"]))
        if len(self.job.data["iterations"]) < 3:
            self.job.state = "RESTART_READY"
        else:
            self.job.state = "POSTPROCESSED"


async def test_postprocess_can_restart_and_in_place_data_persists(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    job = await Converging.submit("conv/1")
    await wait_for_states(store, [job.id], [S.JOB_FINISHED], 60)
    done = await store.jobs.get(job.id)
    assert done.data == {"iterations": [0, 1, 2]}
    assert launcher.runs.count(job.id) == 3
    log = (site.dir.workdir("conv/1") / "balsam.log").read_text()
    assert "postprocess iteration 3" in log  # hook stdout goes to balsam.log


class SlowSim(ApplicationDefinition):
    """The seed's handle_timeout example: fail the slow run, create a faster follow-up."""

    site = "polaris"
    command_template = "sim --speed {{ speed }}"

    def next_run_kwargs(self) -> dict[str, Any]:
        return {
            "workdir": self.job.workdir + "-fast",
            "app_id": "SlowSim",
            "parameters": {"speed": self.job.parameters["speed"] * 2},
        }

    def handle_timeout(self) -> None:
        self.job.state = "FAILED"
        self.job.state_data = {"reason": "Job Timed out"}
        new_job_params = self.next_run_kwargs()
        Job.objects.create(**new_job_params)


async def test_hook_creates_follow_up_job_in_the_same_commit(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    launcher.outcome = lambda job: (
        (S.RUN_TIMEOUT, {}) if job.workdir == "slow/1" else (S.RUN_DONE, {})
    )
    await start_agent()
    job = await SlowSim.submit("slow/1", speed=1)
    follow_ups: list[Any] = []

    async def follow_up_finished() -> bool:
        follow_ups[:] = [j async for j in Job.objects.filter(workdir="slow/1-fast")]
        return bool(follow_ups) and follow_ups[0].state == "JOB_FINISHED"

    await until(follow_up_finished, 60)
    failed = await store.jobs.get(job.id)
    assert failed.state == JobState.FAILED
    assert failed.state_data == {"reason": "Job Timed out"}
    assert len(follow_ups) == 1 and follow_ups[0].parameters == {"speed": 2}
    # the follow-up's creation was committed with the hook's outcome, right after it
    failed_at = next(e for e in await store.events.for_job(job.id) if e.to_state == "FAILED")
    created_at = (await store.events.for_job(follow_ups[0].id))[0]
    assert (created_at.from_state, created_at.to_state) == ("CREATED", "READY")
    assert int(created_at.id or "0", 16) > int(failed_at.id or "0", 16)


class Broken(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self) -> None:
        if self.job.workdir.endswith("bad"):
            raise RuntimeError("cannot prepare " + self.job.workdir)
        self.job.state = "PREPROCESSED"


class Illegal(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self) -> None:
        self.job.state = "JOB_FINISHED"


async def test_failing_or_illegal_hook_fails_only_its_job(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    good = await Broken.submit("b/good")
    bad = await Broken.submit("b/bad")
    illegal = await Illegal.submit("b/illegal")
    await wait_for_states(store, [good.id], [S.JOB_FINISHED], 60)
    await wait_for_states(store, [bad.id, illegal.id], [S.FAILED], 60)
    bad_doc = await store.jobs.get(bad.id)
    assert bad_doc.state_data["reason"] == "preprocess raised"
    assert "RuntimeError: cannot prepare b/bad" in bad_doc.state_data["traceback"]
    illegal_doc = await store.jobs.get(illegal.id)
    assert illegal_doc.state_data["reason"] == (
        "preprocess set state JOB_FINISHED, not allowed from STAGED_IN"
    )


class Spawning(ApplicationDefinition):
    """postprocess creates a SlowSim job, without its required parameter for workdirs "*bad"."""

    site = "polaris"
    command_template = "x"

    def postprocess(self) -> None:
        speed = {} if self.job.workdir.endswith("bad") else {"speed": 1}
        Job.objects.create(workdir=self.job.workdir + "-child", app_id="SlowSim", parameters=speed)
        self.job.state = "POSTPROCESSED"


async def test_a_hook_creating_an_invalid_job_fails_only_its_own_job(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await SlowSim.sync()
    bad, good = await Job.objects.bulk_create(
        [Spawning.submit("sp/bad", save=False), Spawning.submit("sp/good", save=False)]
    )
    await start_agent()  # both are waiting: their hooks mostly run in one batch
    await wait_for_states(store, [bad.id], [S.FAILED], 60)
    await wait_for_states(store, [good.id], [S.JOB_FINISHED], 60)
    reason = (await store.jobs.get(bad.id)).state_data["reason"]
    assert reason.startswith("postprocess created an invalid job: ")
    assert "speed" in reason
    children = [j.workdir async for j in Job.objects.filter(workdir__contains="sp/")]
    assert sorted(children) == ["sp/bad", "sp/good", "sp/good-child"]


class Hoarder(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def postprocess(self) -> None:
        if self.job.workdir.endswith("bad"):
            self.job.data["seen"] = {1, 2}  # changed in place: MongoDB cannot store a set
        self.job.state = "POSTPROCESSED"


async def test_a_hook_leaving_a_value_that_cannot_be_stored_fails_only_its_job(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    bad, good = await Job.objects.bulk_create(
        [Hoarder.submit("h/bad", save=False), Hoarder.submit("h/good", save=False)]
    )
    await start_agent()  # both are waiting: their hooks mostly run in one batch
    await wait_for_states(store, [bad.id], [S.FAILED], 60)
    await wait_for_states(store, [good.id], [S.JOB_FINISHED], 60)
    assert (await store.jobs.get(bad.id)).state_data == {
        "reason": "postprocess set data to a value that cannot be stored: "
        "data['seen'] is a set {1, 2}, which MongoDB cannot store"
    }


class Noting(ApplicationDefinition):
    """handle_error writes a note, then leaves the rest to the default (super())."""

    site = "polaris"
    command_template = "x"

    def handle_error(self) -> None:
        print("exit code", self.job.state_data["return_code"])
        super().handle_error()


async def test_handle_error_calling_super_keeps_the_launchers_diagnostics(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    recorded = {"return_code": 2, "output_tail": "No such file"}
    launcher.outcome = lambda job: (S.RUN_ERROR, {"return_code": 2}, recorded)
    await start_agent()
    overriding = await Noting.submit("n/1")
    default = await Noop.submit("n/2")
    await wait_for_states(store, [overriding.id, default.id], [S.FAILED], 60)
    for job in (overriding, default):
        assert (await store.jobs.get(job.id)).state_data == {"reason": "run error", **recorded}
    log = site.dir.workdir("n/1") / "balsam.log"
    assert log.read_text() == "exit code 2\n"


class Versioned(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self) -> None:
        self.job.data = {"version": 1}
        self.job.state = "PREPROCESSED"


async def test_resynced_app_is_used_by_the_next_hook_without_restart(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    first = await Versioned.submit("v/1")
    await wait_for_states(store, [first.id], [S.JOB_FINISHED], 60)

    class Versioned2(ApplicationDefinition):  # same app name, new code
        site = "polaris"
        command_template = "x"

        def preprocess(self) -> None:
            self.job.data = {"version": 2}
            self.job.state = "PREPROCESSED"

    Versioned2.__name__ = Versioned2.__qualname__ = "Versioned"
    second = await Versioned2.submit("v/2")
    await wait_for_states(store, [second.id], [S.JOB_FINISHED], 60)
    assert (await store.jobs.get(first.id)).data == {"version": 1}
    assert (await store.jobs.get(second.id)).data == {"version": 2}


class Crashing(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self) -> None:

        if self.job.workdir == "crash/bad":
            os._exit(3)  # takes the hook's worker process down with it
        self.job.state = "PREPROCESSED"


async def test_hook_killing_its_worker_fails_only_its_job(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent()
    bad, state_data = await bad_among_good(store, Crashing, "crash")
    assert state_data == {"reason": f"the worker process running preprocess for job {bad} died"}


class Exiting(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def postprocess(self) -> None:
        import sys

        if self.job.workdir == "exit/bad":
            sys.exit(3)
        self.job.state = "POSTPROCESSED"


async def test_a_hook_calling_sys_exit_fails_its_job_and_the_agent_runs_on(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    agent = await start_agent()
    _, state_data = await bad_among_good(store, Exiting, "exit")
    assert state_data["reason"] == "postprocess called sys.exit(3)"
    assert "SystemExit: 3" in state_data["traceback"]
    later = await Exiting.submit("exit/later")  # the agent is still there
    await wait_for_states(store, [later.id], [S.JOB_FINISHED], 60)
    assert agent.state == "RUNNING"


class Stuck(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self) -> None:
        import time

        if self.job.workdir == "stuck/bad":
            time.sleep(3600)
        self.job.state = "PREPROCESSED"


async def test_a_hook_that_never_returns_is_stopped_and_fails_only_its_job(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    await start_agent("hooks:\n  timeout_s: 2\n")
    _, state_data = await bad_among_good(store, Stuck, "stuck")
    assert state_data == {"reason": "preprocess did not return within 2 s"}
    later = await Stuck.submit("stuck/later")  # a new pool serves the next jobs
    await wait_for_states(store, [later.id], [S.JOB_FINISHED], 60)


async def test_a_stopping_agent_does_not_wait_for_a_hook_that_never_returns(
    client: Any, store: Store, site: SiteEnv, start_agent: Any, launcher: StandInLauncher
) -> None:
    agent = await start_agent()
    job = await Lingering.submit("hang/1")
    pid = await hook_pid(site.dir.workdir("hang/1") / "hook.pid")
    await agent.stop(grace=1)
    await until(lambda: agent.state == "STOPPED", 15)
    await until(lambda: process_gone(pid), 15)  # the worker stuck in the hook was killed
    assert (await store.jobs.get(job.id)).state == S.STAGED_IN  # for the next agent


FRAGILE_MODULE = """
from balsam_mq import ApplicationDefinition


class Fragile(ApplicationDefinition):
    site = "polaris"
    command_template = "x"

    def preprocess(self):
        self.job.state = "PREPROCESSED"
"""


async def test_an_app_its_site_cannot_load_fails_its_jobs_and_spares_the_batch(
    client: Any,
    store: Store,
    site: SiteEnv,
    start_agent: Any,
    launcher: StandInLauncher,
    tmp_path: Any,
    monkeypatch: Any,
) -> None:
    """Stored by reference to a module the site cannot import: its jobs fail naming the
    import error, and the jobs of other apps in the same batches finish."""
    import importlib
    import sys

    (tmp_path / "fragile_science.py").write_text(FRAGILE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from fragile_science import Fragile  # type: ignore[import-not-found]

    await Fragile.sync()
    fragile = [await Fragile.submit(f"fragile/{i}") for i in range(3)]
    healthy = [await Versioned.submit(f"healthy/{i}") for i in range(3)]
    sys.modules.pop("fragile_science")  # the module is gone from the site
    monkeypatch.undo()
    (tmp_path / "fragile_science.py").unlink()
    importlib.invalidate_caches()
    await start_agent()
    await wait_for_states(store, [j.id for j in healthy], [S.JOB_FINISHED], 60)
    await wait_for_states(store, [j.id for j in fragile], [S.FAILED], 60)
    for job in fragile:
        reason = (await store.jobs.get(job.id)).state_data["reason"]
        assert reason.startswith("preprocess cannot run: App 'Fragile'")
        assert "fragile_science" in reason
