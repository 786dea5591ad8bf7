"""`balsam-mq job kill | reset`, `job modify` by filters, and `job rm` of a running job, against
the real stack (jobs moved by hand the way the agent and launcher move them)."""

from __future__ import annotations

import pytest
from cli_helpers import Cli, World, adders, drive
from typer.testing import CliRunner

from balsam_mq.cli import app
from balsam_mq.domain import JobState
from balsam_mq.sdk import ApplicationDefinition, Job
from balsam_mq.store import Store

S = JobState


class Post(ApplicationDefinition):
    """Rests in RUN_DONE until its postprocess hook runs."""

    site = "polaris"
    command_template = "echo post"

    def postprocess(self) -> None:
        self.job.state = "POSTPROCESSED"


@pytest.mark.parametrize("command", ["kill", "reset"])
def test_help_shows_an_example(command: str) -> None:
    result = CliRunner().invoke(app, ["job", command, "--help"])
    assert result.exit_code == 0
    assert f"Example:  balsam-mq job {command}" in result.stdout


async def states(*ids: int) -> list[JobState]:
    jobs = {j.id: j for j in await Job.objects.filter(id=list(ids))}
    return [jobs[i].state for i in ids]


async def test_kill_says_what_it_did_to_each_job(cli: Cli, world: World, store: Store) -> None:
    running, finished, queued, other = (j.id for j in await adders(4, tags={"run": "H2O"}))
    assert running and finished and queued and other
    (ran,) = [(await Post.submit("post/1", tags={"run": "H2O"})).id]
    assert ran is not None
    await drive(store, [running], S.RUNNING)
    await drive(store, [finished], S.JOB_FINISHED)
    await drive(store, [ran], S.RUN_DONE)

    assert await cli.error("job", "kill", "1", "99", "--yes") == "error: job(s) 99 do not exist"
    assert "give job ids or at least one filter" in await cli.error("job", "kill", code=2)
    declined = await cli("job", "kill", "--tag", "run=H2O", input="n\n")
    assert declined.exit_code == 1 and "Kill 5 jobs?" in declined.stderr
    assert await states(running, queued) == [S.RUNNING, S.PREPROCESSED]

    out = await cli.ok("job", "kill", str(running), str(finished), str(queued), str(ran), "-y")
    assert out.stdout.splitlines() == [
        f"killed 1 running job: {running}",
        f"failed 1 job before it ran: {queued}",
        f"failed 1 job after its run: {ran}",
        f"left 1 finished job alone: {finished} (JOB_FINISHED)",
    ]
    assert (
        await states(running, finished, queued, ran) == [S.FAILED, S.JOB_FINISHED] + [S.FAILED] * 2
    )
    for job in await Job.objects.filter(state="FAILED"):
        assert job.state_data == {"reason": "killed by the user"}

    by_filter = await cli.json("job", "kill", "--tag", "run=H2O", "--yes")
    assert by_filter["moved"] == {str(other): {"from": "PREPROCESSED", "to": "FAILED"}}
    assert set(by_filter["left"].values()) == {"FAILED", "JOB_FINISHED"}
    none = await cli.ok("job", "kill", "--tag", "run=CO2", "--yes")
    assert none.stdout == "killed 0 jobs: none matches\n"


async def test_reset_reruns_jobs_and_their_descendants(
    cli: Cli, world: World, store: Store
) -> None:
    (parent,) = await adders(1)
    assert parent.id is not None
    await drive(store, [parent.id], S.FAILED)
    child = await Job.objects.create(
        "add/child", app_id="Adder", parameters={"x": 1}, parent_ids=[parent.id]
    )
    assert child.state is S.FAILED  # created under a failed parent
    assert child.id is not None
    (done,) = await adders(1, tags={"done": "yes"})
    assert done.id is not None
    await drive(store, [done.id], S.JOB_FINISHED, result=1)

    alone = await cli.ok("job", "reset", str(child.id), "--yes")
    assert alone.stdout == f"reset 1 job, now FAILED again (a parent FAILED): {child.id}\n"
    both = await cli.ok("job", "reset", str(parent.id), "--descendants", "--yes")
    assert both.stdout.splitlines() == [
        f"reset 1 job, now AWAITING_PARENTS (waiting for a parent): {child.id}",
        f"reset 1 job, now PREPROCESSED: {parent.id}",
    ]
    assert await states(parent.id, child.id) == [S.PREPROCESSED, S.AWAITING_PARENTS]
    again = await cli.ok("job", "reset", "--state", "PREPROCESSED", "--yes")
    assert again.stdout == (
        f"left 1 job alone (not FAILED or JOB_FINISHED): {parent.id} (PREPROCESSED)\n"
    )
    finished = await cli.json("job", "reset", "--tag", "done=yes", "--yes")
    assert finished == {
        "moved": {str(done.id): {"from": "JOB_FINISHED", "to": "PREPROCESSED"}},
        "left": {},
    }
    await done.refresh()
    assert done.state is S.PREPROCESSED and done._f_result is None  # the last run is gone
    declined = await cli("job", "reset", str(done.id), input="n\n")
    assert declined.exit_code == 1 and "Reset 1 job?" in declined.stderr


async def test_modify_selects_by_filters(cli: Cli, world: World, store: Store) -> None:
    h2o = [j.id for j in await adders(3, tags={"run": "H2O"})]
    co2 = [j.id for j in await adders(1, tags={"run": "CO2"})]
    await drive(store, [*h2o[:2], *co2], S.FAILED)
    result = await cli.ok(
        "job", "modify", "--from-state", "FAILED", "--with-tag", "run=H2O",
        "--state", "RESTART_READY", "--tag", "retry=1",
    )  # fmt: skip
    assert result.stdout == "updated 2 jobs\n"
    assert await states(*h2o, *co2) == [S.RESTART_READY, S.RESTART_READY, S.PREPROCESSED, S.FAILED]
    assert (await Job.objects.get(id=h2o[0])).tags == {"run": "H2O", "retry": "1"}
    assert "give job ids or at least one filter" in await cli.error(
        "job", "modify", "--state", "FAILED", code=2
    )
    by_app = await cli.ok("job", "modify", "--app", "Adder", "--from-state", "FAILED",
                          "--state", "READY")  # fmt: skip
    assert by_app.stdout == "updated 1 job\n"
    assert await states(*co2) == [S.PREPROCESSED]  # reset: READY and on, no work to do there


async def test_rm_of_a_running_job_kills_it_first(cli: Cli, world: World, store: Store) -> None:
    (job,) = await adders(1)
    assert job.id is not None
    await drive(store, [job.id], S.RUNNING)
    assert (await cli.ok("job", "rm", str(job.id), "--yes")).stdout == "deleted 1 job\n"
    last = (await store.events.for_job(job.id))[-1]
    assert (last.from_state, last.to_state) == ("RUNNING", "FAILED")
    assert last.state_data == {"reason": "killed by the user: the job was deleted"}
    assert await Job.objects.count() == 0
