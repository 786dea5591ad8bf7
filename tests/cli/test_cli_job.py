"""`balsam-mq job create | modify | rm | show` against the real stack."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio.lowlevel
import pytest
import typer
from cli_helpers import Cli, World, adders, commands, drive
from support.driving import running_job

from balsam_mq.cli.job import MODIFY_FILTERS, _filters
from balsam_mq.domain import JobState, Session, utcnow
from balsam_mq.sdk import Job, Site
from balsam_mq.store import Store

S = JobState
STATES = ", ".join(s.value for s in JobState)


async def test_create_parses_params_tags_and_resources(cli: Cli, world: World) -> None:
    created = await cli.json(
        "job", "create", "--app", "Adder", "--workdir", "test/1",
        "-p", "x=5", "--param", 'y={"a": [1, 2]}',
        "--tag", "run=H2O", "--tag", "size=1",
        "--data-json", '{"note": "hi"}',
        "-n", "2", "--ranks-per-node", "4", "--threads-per-rank", "2", "--threads-per-core", "2",
        "--gpus-per-rank", "0.5", "--node-packing-count", "3", "--wall-time-min", "30",
        "--launch-param", "cpu-bind=depth", "--max-retries", "1", "--retry-backoff", "30",
    )  # fmt: skip
    assert created["id"] == 1 and created["state"] == "PREPROCESSED"
    assert created["site"] == "polaris" and created["app"] == "Adder"
    assert created["parameters"] == {"x": 5, "y": {"a": [1, 2]}}
    assert created["tags"] == {"run": "H2O", "size": "1"}  # tags stay text
    assert created["data"] == {"note": "hi"}
    job = await Job.objects.get(id=1)
    assert (job.num_nodes, job.ranks_per_node, job.threads_per_rank, job.threads_per_core) == (
        2, 4, 2, 2,
    )  # fmt: skip
    assert (job.gpus_per_rank, job.node_packing_count, job.wall_time_min) == (0.5, 3, 30)
    assert job.launch_params == {"cpu-bind": "depth"}
    assert (job.max_retries, job.retry_backoff_s) == (1, 30.0)

    child = await cli.ok(
        "job", "create", "-a", "2", "--workdir", "sim/1", "-p", "input_filename=in.nw",
        "-p", "mode=fast", "--parent", "1", "--transfer", "result=laptop:/data/out.txt",
    )  # fmt: skip
    assert child.stdout == "created job 2 (Sim at site polaris, workdir sim/1): AWAITING_PARENTS\n"
    sim = await Job.objects.get(id=2)
    assert sim.parameters == {"input_filename": "in.nw", "mode": "fast"}  # text when not JSON
    assert sim.parent_ids == [1] and sim.transfers == {"result": "laptop:/data/out.txt"}


async def test_create_errors(cli: Cli, world: World) -> None:
    base = ["job", "create", "--workdir", "w"]
    assert await cli.error(*base, "--app", "Adder", "-p", "x", code=2) == (
        "error: Invalid value for --param: 'x' must look like key=value "
        "(see 'balsam-mq job create --help')"
    )
    assert await cli.error(*base, "--app", "Adder", "-p", "=3", code=2)
    assert "not valid JSON" in await cli.error(
        *base, "--app", "Adder", "-p", "x=1", "--data-json", "{", code=2
    )
    assert "must be a JSON object" in await cli.error(
        *base, "--app", "Adder", "-p", "x=1", "--data-json", "[1]", code=2
    )
    assert await cli.error(*base, "--app", "Nope", "-p", "x=1") == (
        "error: Job 'w': no app named 'Nope'"
    )
    assert "missing required parameter" in (await cli.error(*base, "--app", "Adder")).lower()
    assert "site 'nowhere' does not exist" in await cli.error(
        *base, "--app", "Adder", "--site", "nowhere", "-p", "x=1"
    )
    assert await Job.objects.count() == 0


async def test_modify_state_tags_and_data(cli: Cli, world: World) -> None:
    jobs = await adders(3, tags={"run": "H2O"}, data={"keep": 1})
    result = await cli.ok(
        "job", "modify", "1", "2", "--state", "FAILED", "--tag", "retry=1", "--tag", "why=test",
        "--data-json", '{"note": "by hand"}',
    )  # fmt: skip
    assert result.stdout == "updated 2 jobs\n"
    await Job.objects.refresh(jobs)
    assert [j.state for j in jobs] == [S.FAILED, S.FAILED, S.PREPROCESSED]
    assert jobs[0].tags == {"run": "H2O", "retry": "1", "why": "test"}
    assert jobs[0].data == {"keep": 1, "note": "by hand"}
    assert jobs[2].tags == {"run": "H2O"}
    assert (await cli.ok("job", "modify", "1", "--state", "RESTART_READY")).stdout == (
        "updated 1 job\n"
    )


async def test_modify_errors(cli: Cli, world: World, store: Store) -> None:
    await adders(2)
    await drive(store, [2], S.RUNNING)
    assert await cli.error("job", "modify", "1", "--state", "RUN_DONE") == (
        "error: Job 1: transition PREPROCESSED -> RUN_DONE by user is not allowed; "
        "a user may move a PREPROCESSED job to FAILED"
    )
    assert await cli.error("job", "modify", "2", "--state", "RESTART_READY") == (
        "error: Job 2: transition RUNNING -> RESTART_READY by user is not allowed; "
        "a user may move a RUNNING job to FAILED"
    )
    # refused before anything is read: 999 does not exist either
    assert await cli.error("job", "modify", "999", "--state", "DONE", code=2) == (
        f"error: Invalid value for --state: unknown job state 'DONE'; expected one of: {STATES}"
        " (see 'balsam-mq job modify --help')"
    )
    assert await cli.error("job", "modify", "1", "7", "9", "--tag", "a=b") == (
        "error: job(s) 7, 9 do not exist"
    )
    assert "nothing to change" in await cli.error("job", "modify", "1", code=2)
    assert await cli.error("job", "modify", "--with-tag", "x", "--state", "FAILED", code=2) == (
        "error: Invalid value for --with-tag: 'x' must look like key=value "
        "(see 'balsam-mq job modify --help')"
    )  # named as modify spells its tag filter
    assert [j.state async for j in Job.objects.order_by("id")] == [S.PREPROCESSED, S.RUNNING]


async def test_rm_by_ids_and_by_filters(cli: Cli, world: World) -> None:
    await adders(4, tags={"run": "H2O"})
    await adders(2, tags={"run": "CO2"})
    declined = await cli("job", "rm", "--tag", "run=H2O", input="n\n")
    assert declined.exit_code == 1 and "Delete 4 jobs?" in declined.stderr
    assert await Job.objects.count() == 6
    confirmed = await cli.ok("job", "rm", "--tag", "run=H2O", input="y\n")
    assert confirmed.stdout.endswith("deleted 4 jobs\n")  # after the typed answer
    assert (await cli.ok("job", "rm", "5", "--yes")).stdout == "deleted 1 job\n"
    assert (await cli.ok("job", "rm", "--state", "FAILED", "-y")).stdout == "deleted 0 jobs\n"
    assert [j.id async for j in Job.objects.all()] == [6]
    assert "give job ids or at least one filter" in await cli.error("job", "rm", code=2)
    assert await cli.error("job", "rm", "--site", "nowhere", "-y") == (
        "error: site 'nowhere' does not exist"
    )


def options(command: Any) -> set[str]:
    return {opt for param in getattr(command, "params", []) for opt in getattr(param, "opts", [])}


def filter_options() -> set[str]:
    """The options `_filters` declares: the one definition of the job filters."""
    probe = typer.Typer(add_completion=False)
    probe.command()(_filters)
    return options(typer.main.get_command(probe))


@pytest.mark.parametrize("command", ["ls", "rm", "kill", "reset", "modify"])
def test_every_command_that_selects_jobs_takes_the_filters_of_ls(command: str) -> None:
    filters = filter_options()
    assert {"--state-not", "--since", "--tag-key", "--site", "--id"} <= filters
    if command == "modify":  # its --state and --tag say what to set
        filters = {MODIFY_FILTERS.get(name, name) for name in filters}
    assert filters <= options(dict(commands())[f"job {command}"])


async def next_millisecond() -> str:
    """A time (ISO 8601) after every job change so far, before any change from now on: the
    next whole millisecond (timestamps keep milliseconds), once the clock has passed it."""
    now = utcnow()
    boundary = now.replace(microsecond=now.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
    while utcnow() < boundary:
        await anyio.lowlevel.checkpoint()
    return boundary.isoformat()


async def test_rm_takes_the_filters_of_ls(cli: Cli, world: World, store: Store) -> None:
    await adders(6, tags={"run": "H2O"})  # jobs 1-6 in workdirs add/0 ... add/5
    await drive(store, [1, 2], S.FAILED)
    await drive(store, [3], S.JOB_FINISHED)
    since = await next_millisecond()
    await cli.ok("job", "modify", "4", "--tag", "touched=yes")  # changed since then

    async def removes(*filters: str) -> list[int]:
        """What `job rm` deletes with these filters, checked to be what `job ls` lists."""
        listed = [j["id"] for j in await cli.json("job", "ls", *filters)]
        removed = await cli.json("job", "rm", *filters, "--yes")
        assert removed == {"deleted": len(listed), "ids": listed}
        assert not await Job.objects.filter(id=listed).count()
        return listed

    assert await removes("--since", since) == [4]
    assert await removes("--state-not", "PREPROCESSED", "--state-not", "FAILED") == [3]
    assert await removes("--site", "all", "--app", "Adder", "--workdir", "add/5") == [6]
    assert await removes("--param", 'x="1"') == []  # the text "1" is not the number 1
    assert await removes("--param", "x=1", "--state", "failed") == [2]  # jobs x=0...5
    assert await removes("--id", "1", "--id", "5", "--state", "FAILED", "--tag-key", "run") == [1]
    assert [j.id async for j in Job.objects.order_by("id")] == [5]
    assert await removes("--since", since) == []  # nothing else changed since


async def test_show_says_where_a_job_ran(cli: Cli, world: World, store: Store) -> None:
    assert world.site.id is not None
    session = await store.sessions.create(
        Session(site_id=world.site.id, hostname="nid01", pid=4242, batch_job_id=7)
    )
    assert session.id is not None
    job_id = await running_job(store, session.id, site_id=world.site.id)
    lines = (await cli.ok("job", "show", str(job_id))).stdout.split("\n\n", 1)[0]
    fields = dict(line.split(": ", 1) for line in lines.splitlines())
    assert fields["run host"] == "nid01 (launcher pid 4242)"
    assert fields["launcher session"] == str(session.id)

    await drive(store, [job_id], S.JOB_FINISHED)
    await store.sessions.end(session.id)
    shown = await cli.json("job", "show", str(job_id))
    assert shown["run_host"] == "nid01"
    assert shown["launcher_session"] == {
        "id": session.id,
        "host": "nid01",
        "pid": 4242,
        "batch_job_id": 7,
        "state": "STOPPED",
        "unknown": None,
    }
    (never,) = await adders(1)  # a job no launcher claimed ran nowhere
    not_run = await cli.json("job", "show", str(never.id))
    assert (not_run["run_host"], not_run["launcher_session"]) == (None, None)
    assert "run host" not in (await cli.ok("job", "show", str(never.id))).stdout


async def test_show_a_finished_job(cli: Cli, world: World, store: Store) -> None:
    (job,) = await adders(1, tags={"run": "H2O"})
    assert job.id is not None
    await drive(store, [job.id], S.JOB_FINISHED, result={"sum": 1})
    lines = (await cli.ok("job", "show", "1")).stdout.splitlines()
    assert lines[:6] == [
        "job: 1",
        "state: JOB_FINISHED",
        "app: Adder (id 1)",
        "site: polaris (id 1)",
        "workdir: add/0",
        f"workdir path: {world.path / 'data' / 'add/0'} on login1",
    ]
    assert "parameters: {'x': 0}" in lines
    assert "result: {'sum': 1}" in lines
    history = [line.split("\t")[1:4] for line in lines[lines.index("") + 1 :]]
    assert history[0] == ["CREATED", "READY", "client"]
    assert history[-1] == ["STAGED_OUT", "JOB_FINISHED", "stage_out"]
    assert len(history) == 8

    shown = await cli.json("job", "show", "1")
    assert shown["result"] == {"sum": 1}
    assert shown["workdir_path"] == str(world.path / "data" / "add/0")
    assert [e["to_state"] for e in shown["events"]][-2:] == ["STAGED_OUT", "JOB_FINISHED"]


async def test_show_a_failed_job_and_errors(cli: Cli, world: World, store: Store) -> None:
    await adders(2)
    await drive(store, [1], S.FAILED, exception=ValueError("bad input"))
    await drive(store, [2], S.FAILED)
    out = (await cli.ok("job", "show", "1")).stdout
    assert "exception: ValueError: bad input" in out
    assert "Traceback" in out or "ValueError" in out.splitlines()[-1]
    shown = await cli.json("job", "show", "2")
    assert shown["exception"]["type"] == "JobFailed"
    await Site.objects.filter(id=world.site.id).update(path="")
    assert (await cli.json("job", "show", "2"))["workdir_path"] is None
    assert await cli.error("job", "show", "99") == "error: job 99 does not exist"


async def test_show_reads_parameters_and_results_without_loading_them(
    cli: Cli, world: World, store: Store
) -> None:
    """The CLI runs none of a job's stored code: what is not plain data is named, not loaded."""

    class Opaque:  # defined here: stored by value, its code travels with it
        pass

    (job,) = await adders(1)
    await drive(store, [job.id], S.JOB_FINISHED, result=Opaque())
    shown = await cli.json("job", "show", str(job.id))
    assert shown["parameters"] == {"x": 0}
    assert "stored with dill, not loaded here" in shown["result"]
    assert "result: <" in (await cli.ok("job", "show", str(job.id))).stdout
