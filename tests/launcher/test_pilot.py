"""The pilot against the real stack: claims, runs, outcomes, job.out, run() apps, unfit jobs."""

from __future__ import annotations

from launcher_helpers import World, python_app_class
from support.waiting import wait_for_states

from balsam_mq.domain import JobState, ParameterSpec
from balsam_mq.domain.serialization import deserialize, deserialize_exception

S = JobState

ADDER = """
class Adder:
    def run(self, x, y):
        print("adding", x, y)
        return x + y
"""

FAILER = """
class Failer:
    def run(self, message):
        raise ValueError(message)
"""


async def test_shell_jobs_run_to_done_or_error_with_output(world: World) -> None:
    app = await world.app(
        "Echo",
        command_template="echo {{ greeting }} $GREETING_ENV {{ who }}; exit {{ code }}",
        parameters={
            "greeting": ParameterSpec(),
            "code": ParameterSpec(),
            "who": ParameterSpec(required=False, default="world"),
        },
        environment_variables={"GREETING_ENV": "from-app-env"},
    )
    ok, bad = await world.jobs(
        app, [{"greeting": "hello", "code": 0}, {"greeting": "oops", "code": 3}]
    )
    pilot = world.start_pilot(world.config())
    states = await wait_for_states(world.store, [ok, bad], [S.RUN_DONE, S.RUN_ERROR])
    assert states == {ok: S.RUN_DONE, bad: S.RUN_ERROR}
    report = await world.finish(pilot)
    assert report.claimed == 2 and report.done == 1 and report.errors == 1

    done, failed = await world.store.jobs.get_many([ok, bad])
    assert done.return_code == 0 and done.session_id == pilot.session_id
    out = (world.data / done.workdir / "job.out").read_text()
    assert out == "hello from-app-env world\n"
    assert failed.return_code == 3
    assert failed.state_data["return_code"] == 3
    assert "oops from-app-env world" in failed.state_data["output_tail"]
    events = await world.store.events.for_job(bad)
    assert [e.to_state for e in events][-2:] == ["RUNNING", "RUN_ERROR"]
    session = await pilot.sessions.raw(report.session_id or 0)
    assert session is not None and session["state"] == "STOPPED"


async def test_missing_parameter_is_a_run_error_naming_it(world: World) -> None:
    app = await world.app("Needy", command_template="echo {{ needed }}")
    (job_id,) = await world.jobs(app, [{}])
    pilot = world.start_pilot(world.config())
    await wait_for_states(world.store, [job_id], [S.RUN_ERROR])
    await world.finish(pilot)
    job = await world.store.jobs.get(job_id)
    assert "'needed' is undefined" in job.state_data["error"]
    assert "App 'Needy'" in job.state_data["error"]


async def test_a_shell_job_whose_workdir_cannot_be_made_fails_naming_why(world: World) -> None:
    # a shell job's workdir is made as it starts: here its parent is a file
    blocked = await world.app("Blocked", command_template="true")
    fine = await world.app("Fine", command_template="echo fine")
    (world.data / "Blocked").write_text("not a directory")
    (stuck,) = await world.jobs(blocked, [{}])
    (ok,) = await world.jobs(fine, [{}])
    pilot = world.start_pilot(world.config(), cores=1)
    await wait_for_states(world.store, [stuck, ok], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    failed, done = await world.store.jobs.get_many([stuck, ok])
    assert failed.state is S.RUN_ERROR
    assert str(world.data / failed.workdir) in failed.state_data["error"]
    assert done.state is S.RUN_DONE  # the launcher goes on with the next job
    assert (world.data / done.workdir / "job.out").read_text() == "fine\n"


async def test_run_apps_return_values_and_exceptions_travel_with_dill(world: World) -> None:
    adder = await world.app("Adder", cls=python_app_class(ADDER, "Adder"))
    failer = await world.app("Failer", cls=python_app_class(FAILER, "Failer"))
    (add,) = await world.jobs(adder, [{"x": 3, "y": 7}])
    (fail,) = await world.jobs(failer, [{"message": "bad input"}])
    pilot = world.start_pilot(world.config())
    await wait_for_states(world.store, [add, fail], [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    done, failed = await world.store.jobs.get_many([add, fail])
    assert done.state is S.RUN_DONE
    assert done.result is not None and deserialize(done.result) == 10
    assert (world.data / done.workdir / "job.out").read_text() == "adding 3 7\n"
    assert failed.state is S.RUN_ERROR and failed.return_code == 1
    assert failed.exception is not None
    exc = deserialize_exception(failed.exception, failed.traceback)
    assert isinstance(exc, ValueError) and str(exc) == "bad input"
    assert failed.traceback is not None and "ValueError: bad input" in failed.traceback
    # nothing of the launcher's plumbing is left in the workdir
    assert sorted(p.name for p in (world.data / done.workdir).iterdir()) == ["job.out"]


async def test_jobs_pack_onto_cores_and_share_them(world: World) -> None:
    app = await world.app(
        "Sleep", command_template="date +%s.%N > start; sleep 0.3; date +%s.%N > end"
    )
    ids = await world.jobs(app, [{} for _ in range(6)], node_packing_count=4)
    pilot = world.start_pilot(world.config(), nodes=1, cores=2)
    await wait_for_states(world.store, ids, [S.RUN_DONE])
    await world.finish(pilot)
    # never more than 2 at once (2 cores), though 4 would fit the node's occupancy
    timeline = []
    for job in await world.store.jobs.get_many(ids):
        workdir = world.data / job.workdir
        timeline.append((float((workdir / "start").read_text()), 1))
        timeline.append((float((workdir / "end").read_text()), -1))
    level = peak = 0
    for _, step in sorted(timeline):
        level += step
        peak = max(peak, level)
    assert peak == 2


async def test_each_job_gets_its_own_gpus(world: World) -> None:
    app = await world.app("Gpu", command_template="echo $CUDA_VISIBLE_DEVICES; sleep 0.2")
    ids = await world.jobs(app, [{} for _ in range(4)], gpus_per_rank=1, node_packing_count=2)
    pilot = world.start_pilot(world.config(), nodes=1, cores=4, gpus=2)
    await wait_for_states(world.store, ids, [S.RUN_DONE])
    await world.finish(pilot)
    seen = [
        (world.data / j.workdir / "job.out").read_text().strip()
        for j in await world.store.jobs.get_many(ids)
    ]
    assert sorted(seen) == ["0", "0", "1", "1"]


async def test_filter_tags_leave_other_jobs_for_other_launchers(world: World) -> None:
    app = await world.app("Tagged", command_template="true")
    (mine,) = await world.jobs(app, [{}], tags={"run": "H2O"})
    (other,) = await world.jobs(app, [{}], tags={"run": "CO2"})
    quick = {"other_tags_delay_s": 1}
    pilot = world.start_pilot(world.config(filter_tags={"run": "H2O"}, settings=quick))
    await wait_for_states(world.store, [mine], [S.RUN_DONE])
    second = world.start_pilot(world.config(filter_tags={"run": "CO2"}, settings=quick))
    await wait_for_states(world.store, [other], [S.RUN_DONE], timeout=30)
    first = await world.finish(pilot)
    await world.finish(second)
    assert first.claimed == 1
    job = await world.store.jobs.get(other)
    assert job.session_id == second.session_id and job.unfit is None


async def test_simple_commands_run_without_a_shell_and_others_through_bash(world: World) -> None:
    simple = await world.app("Simple", command_template="sleep 0")
    builtin = await world.app("Builtin", command_template="cd")  # a shell builtin only
    missing = await world.app("Missing", command_template="no-such-command-here --flag")
    shell = await world.app("Shell", command_template="echo one && echo two > two.txt")
    ids = [(await world.jobs(app, [{}]))[0] for app in (simple, builtin, missing, shell)]
    pilot = world.start_pilot(world.config())
    await wait_for_states(world.store, ids, [S.RUN_DONE, S.RUN_ERROR])
    await world.finish(pilot)
    jobs = await world.store.jobs.get_many(ids)
    assert [(j.state, j.return_code) for j in jobs] == [
        (S.RUN_DONE, 0),
        (S.RUN_DONE, 0),  # not executable directly: bash ran it
        (S.RUN_ERROR, 127),  # as a shell reports it
        (S.RUN_DONE, 0),
    ]
    out = (world.data / jobs[2].workdir / "job.out").read_text()
    assert "no-such-command-here: command not found" in out
    assert (world.data / jobs[3].workdir / "two.txt").read_text() == "two\n"
