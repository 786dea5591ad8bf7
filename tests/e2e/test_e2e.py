"""The seed's apps end to end: SDK → site agent → real launchers → results, errors, timeouts."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from e2e_helpers import E2E, S, wait_for_file
from support.waiting import wait_for_states

from balsam_mq import ApplicationDefinition, Job


def seed_apps() -> dict[str, type[ApplicationDefinition]]:
    class Sleeper(ApplicationDefinition):
        site = "e2e"
        command_template = "sleep {{ sleeptime }} && echo goodbye"

    class Adder(ApplicationDefinition):
        site = "e2e"

        def run(self, x, y):  # type: ignore[no-untyped-def]
            return x + y

    class Raiser(ApplicationDefinition):
        site = "e2e"

        def run(self, value):  # type: ignore[no-untyped-def]
            raise ValueError(f"bad value {value}")

    class Exit3(ApplicationDefinition):
        site = "e2e"
        command_template = "echo about to fail; exit 3"

        def handle_error(self) -> None:
            self.job.state = "FAILED"
            self.job.state_data = {"reason": "exit code seen by handle_error"}

    class Greeter(ApplicationDefinition):
        site = "e2e"
        command_template = "echo $GREETING from $FROM_APP"
        environment_variables = {"FROM_APP": "the app"}

        def shell_preamble(self) -> list[str]:
            import os

            print(f"preamble of {self.job.workdir}")  # to the job's balsam.log
            with open("preamble-ran-here", "w") as f:  # in the job's workdir
                f.write(os.getcwd())
            return [f"export GREETING=hello-{self.job.data['who']}"]

    return {c.__name__: c for c in (Sleeper, Adder, Raiser, Exit3, Greeter)}


async def test_sleeper_adder_raiser_and_a_failing_command(e2e: E2E) -> None:
    apps = seed_apps()
    sleeper = await apps["Sleeper"].submit("test/sleep_1", sleeptime=0.2)
    adder = await apps["Adder"].submit("test/5plus5", x=5, y=5)
    raiser = await apps["Raiser"].submit("test/raise", value=7)
    failing = await apps["Exit3"].submit("test/exit3")
    greeter = await apps["Greeter"].submit("test/greet", data={"who": "polaris"})
    pilot = await e2e.start_pilot()
    assert await adder.result(timeout=60) == 10
    assert await sleeper.result(timeout=60) is None
    with pytest.raises(ValueError, match="bad value 7"):
        await raiser.result(timeout=60)
    await wait_for_states(e2e.store, [failing.id], [S.FAILED])
    await wait_for_states(e2e.store, [greeter.id], [S.JOB_FINISHED])
    await e2e.finish(pilot)
    greeting = (e2e.site_dir.data / "test/greet/job.out").read_text()
    assert greeting == "hello-polaris from the app\n"  # preamble, then command, one bash
    greet_dir = (e2e.site_dir.data / "test/greet").resolve()
    assert (greet_dir / "preamble-ran-here").read_text() == str(greet_dir)
    assert "preamble of test/greet\n" in (greet_dir / "balsam.log").read_text()
    assert (e2e.site_dir.data / "test/sleep_1/job.out").read_text() == "goodbye\n"
    events = await e2e.store.events.for_job(failing.id)
    run_error = next(e for e in events if e.to_state == "RUN_ERROR")
    assert run_error.state_data["return_code"] == 3
    assert "about to fail" in run_error.state_data["output_tail"]
    failed = await e2e.store.jobs.get(failing.id)
    assert failed.state_data == {"reason": "exit code seen by handle_error"}


@pytest.mark.mpi
async def test_numpy_plus_mpi_on_two_ranks(e2e: E2E) -> None:
    import numpy as np

    class NumpyPlusMPI(ApplicationDefinition):
        site = "e2e"

        def run(self, *dims):  # type: ignore[no-untyped-def]
            from mpi4py import MPI

            if MPI.COMM_WORLD.Get_rank() == 0:
                return np.random.rand(*dims) + MPI.COMM_WORLD.Get_size()

    job = await NumpyPlusMPI.submit("test/parallel", dims=[5], ranks_per_node=2)
    pilot = await e2e.start_pilot()
    value = await job.result(timeout=60)
    await e2e.finish(pilot)
    assert value.shape == (5,)
    assert ((value >= 2) & (value < 3)).all()  # rank 0 saw a world of 2


async def test_job_killed_at_wall_time_restarts_and_finishes_under_a_second_launcher(
    e2e: E2E,
) -> None:
    class Once(ApplicationDefinition):
        """Slow the first time (killed at wall time), quick when run again."""

        site = "e2e"
        command_template = (
            "if [ -f started ]; then echo second run; else touch started; sleep 60; fi"
        )

    job = await Once.submit("test/once")
    first = await e2e.start_pilot(wall_time_min=0.05, settings={"drain_margin_s": 1})
    await wait_for_states(e2e.store, [job.id], [S.RESTART_READY, S.RUNNING], timeout=30)
    report = await asyncio.wait_for(e2e.pilots[0][1], 30)
    assert report.timed_out == 1
    second = await e2e.start_pilot()
    assert await job.result(timeout=60) is None
    await e2e.finish(second)
    history = [(e.to_state, e.by) for e in await e2e.store.events.for_job(job.id)]
    assert ("RUN_TIMEOUT", "launcher") in history and ("RESTART_READY", "timeout") in history
    assert [s for s, _ in history].count("RUNNING") == 2
    assert (e2e.site_dir.data / "test/once/job.out").read_text() == "second run\n"
    finished = await e2e.store.jobs.get(job.id)
    assert finished.session_id == second.session_id != first.session_id


async def test_two_launchers_share_200_jobs_none_twice(e2e: E2E) -> None:
    apps = seed_apps()
    first = await e2e.start_pilot(settings={"cores_per_node": 4})
    second = await e2e.start_pilot(settings={"cores_per_node": 4})
    for pilot in (first, second):  # both take work as it arrives
        await asyncio.wait_for(pilot.ready.wait(), 30)
    jobs: list[Any] = await Job.objects.bulk_create(
        [
            apps["Adder"].submit(f"add/{i}", x=i, y=1, save=False, node_packing_count=4)
            for i in range(200)
        ]
    )
    ids = [j.id for j in jobs]
    await wait_for_states(e2e.store, ids, [S.JOB_FINISHED], timeout=180)
    a, b = await e2e.finish(first), await e2e.finish(second)
    assert a.claimed + b.claimed == 200 and a.claimed > 0 and b.claimed > 0
    assert set((await e2e.running_events(ids)).values()) == {1}
    results = {j.id: await j.result(timeout=10) for j in jobs}
    assert results == {j.id: i + 1 for i, j in enumerate(jobs)}


async def test_sigkilled_launcher_jobs_are_reaped_and_finish_under_a_new_launcher(
    e2e: E2E,
) -> None:
    class Marked(ApplicationDefinition):
        site = "e2e"
        command_template = "if [ -f started ]; then echo again; else touch started; sleep 60; fi"

    jobs: list[Any] = await Job.objects.bulk_create(
        [Marked.submit(f"marked/{i}", save=False, node_packing_count=2) for i in range(2)]
    )
    ids = [j.id for j in jobs]
    process = await e2e.start_process("--wall-time", "10", "--cores-per-node", "2")
    await wait_for_states(e2e.store, ids, [S.RUNNING], timeout=60)
    for i in range(2):  # claimed is not yet started: wait until both really run
        await wait_for_file(e2e.site_dir.data / f"marked/{i}/started")
    process.send_signal(signal.SIGKILL)
    await process.wait()
    # the reaper sees the silent session: RUN_TIMEOUT → handle_timeout → RESTART_READY
    await wait_for_states(e2e.store, ids, [S.RESTART_READY], timeout=30)
    pilot = await e2e.start_pilot(settings={"cores_per_node": 2})
    await wait_for_states(e2e.store, ids, [S.JOB_FINISHED], timeout=60)
    await e2e.finish(pilot)
    for job_id in ids:
        history = [(e.to_state, e.by) for e in await e2e.store.events.for_job(job_id)]
        assert ("RUN_TIMEOUT", "reaper") in history
        assert [s for s, _ in history].count("RUNNING") == 2


async def test_a_run_that_always_fails_is_retried_with_backoff_then_failed(e2e: E2E) -> None:
    class Missing(ApplicationDefinition):
        """The README's worked example gone wrong: its binary is not installed."""

        site = "e2e"
        command_template = "no-such-solver-on-this-machine --deck input.nw"
        max_retries = 2
        retry_backoff_s = 0.3

        def handle_error(self) -> None:
            self.job.state = "RESTART_READY"  # always: the cap ends the loop

    job = await Missing.submit("retry/1")
    pilot = await e2e.start_pilot()
    await wait_for_states(e2e.store, [job.id], [S.FAILED])
    await e2e.finish(pilot)
    failed = await e2e.store.jobs.get(job.id)
    assert failed.restarts == 2
    assert failed.state_data["reason"].startswith("restarted 2 times already")
    assert "max_retries=2" in failed.state_data["reason"]
    events = await e2e.store.events.for_job(job.id)
    path = [e.to_state for e in events if e.to_state in ("RUNNING", "RESTART_READY", "FAILED")]
    assert path == ["RUNNING", "RESTART_READY", "RUNNING", "RESTART_READY", "RUNNING", "FAILED"]
    # each restart waited its backoff (0.3 s, then 0.6 s) before it ran again
    restarts = [e.timestamp for e in events if e.to_state == "RESTART_READY"]
    reruns = [e.timestamp for e in events if e.to_state == "RUNNING"][1:]
    waits = [(run - ready).total_seconds() for ready, run in zip(restarts, reruns, strict=True)]
    assert waits[0] >= 0.3 and waits[1] >= 0.6, waits
