"""Seeing work: `job logs` (and --follow), the counts, filters and live view of `job ls`, and
`job show` telling what a job waits for, its time per state and its traceback once."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import traceback
from datetime import datetime, timedelta

import anyio
from cli_helpers import Cli, Running, World, adders, drive
from support.waiting import until
from typer.testing import CliRunner

from balsam_mq.cli import app
from balsam_mq.domain import Actor, Change, JobState, utcnow
from balsam_mq.domain.serialization import serialize_exception
from balsam_mq.relay import Relay
from balsam_mq.sdk import Job
from balsam_mq.store import Store

S = JobState
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def ids(cli: Cli, *args: str) -> list[int]:
    return [job["id"] for job in await cli.json("job", "ls", *args)]


# --- job logs -----------------------------------------------------------------------------


async def test_logs_prints_both_files_or_says_why_it_cannot(cli: Cli, world: World) -> None:
    await adders(1)
    workdir = world.path / "data" / "add/0"
    assert await cli.error("job", "logs", "1") == (
        f"error: job 1: the directory of site 'polaris', {world.path} on login1, is not on "
        f"this machine ({os.uname().nodename}); run this command there"
    )
    world.path.mkdir()
    assert await cli.error("job", "logs", "1") == (
        f"error: job 1 is PREPROCESSED and has no output yet: neither {workdir}/job.out "
        f"nor {workdir}/balsam.log exists"
    )
    assert await cli.error("job", "logs", "9") == "error: job 9 does not exist"

    workdir.mkdir(parents=True)
    (workdir / "job.out").write_text("sum is 1\n")
    only = await cli.ok("job", "logs", "1")
    assert only.stdout == f"==> {workdir}/job.out <==\nsum is 1\n"
    assert only.stderr == f"no balsam.log yet ({workdir}/balsam.log)\n"
    (workdir / "balsam.log").write_text("preprocess ran\nno newline at the end")
    both = await cli.ok("job", "logs", "1")
    assert both.stdout == (
        f"==> {workdir}/job.out <==\nsum is 1\n\n"
        f"==> {workdir}/balsam.log <==\npreprocess ran\nno newline at the end"
    )
    assert both.stderr == ""
    help_text = CliRunner().invoke(app, ["job", "logs", "--help"]).stdout
    assert "Example:  balsam-mq job logs 12 --follow" in help_text


async def test_logs_follow_until_the_job_ends_or_ctrl_c(
    cli: Cli, world: World, store: Store, relay: Relay
) -> None:
    (job,) = await adders(1)
    assert job.id is not None
    await drive(store, [job.id], S.RUNNING)
    workdir = world.path / "data" / "add/0"
    workdir.mkdir(parents=True)
    out, log = workdir / "job.out", workdir / "balsam.log"
    out.write_text("started\n")

    follow = ("job", "logs", "1", "--follow", "--follow-seconds", "60")
    async with Running.start(*follow) as logs:
        assert await logs.until(lambda line: line == "started") == [f"==> {out} <==", "started"]
        code, err = await logs.interrupt()  # Ctrl-C: a quiet end
    assert (code, err) == (0, f"no balsam.log yet ({log})\n")

    async with Running.start(*follow) as logs:
        await logs.until(lambda line: line == "started")
        with log.open("a") as stream:
            stream.write("postprocess: hello\n")
        lines = await logs.until(lambda line: line == "postprocess: hello")
        assert lines == ["", f"==> {log} <==", "postprocess: hello"]
        with out.open("a") as stream:
            stream.write("step 2\n")
        lines = await logs.until(lambda line: line == "step 2")
        assert lines == ["", f"==> {out} <==", "step 2"]
        with out.open("a") as stream:
            stream.write("last words\n")
        await drive(store, [job.id], S.JOB_FINISHED, result=1)  # ends the follow by itself
        assert await logs.until(lambda line: line == "last words") == ["last words"]
        with anyio.fail_after(30):
            assert await logs.process.wait() == 0
        assert logs.process.stderr is not None
        err = b"".join([chunk async for chunk in logs.process.stderr]).decode()
    assert err == f"no balsam.log yet ({log})\njob 1 is JOB_FINISHED\n"
    # a final job's files are printed, not followed
    again = await cli.ok("job", "logs", "1", "-f")
    assert again.stdout == (
        f"==> {out} <==\nstarted\nstep 2\nlast words\n\n==> {log} <==\npostprocess: hello\n"
    )


# --- job ls: counts, filters, windows -----------------------------------------------------


async def test_ls_counts_per_state_and_new_filters(cli: Cli, world: World, store: Store) -> None:
    await adders(3, tags={"run": "H2O"})  # 1-3
    await adders(2, tags={"run": "CO2", "size": "big"})  # 4-5
    await adders(1)  # 6: no tags
    await drive(store, [1, 2], S.JOB_FINISHED, result=0)
    await drive(store, [3], S.FAILED)
    await drive(store, [4], S.RUNNING)

    counts = {"PREPROCESSED": 2, "RUNNING": 1, "JOB_FINISHED": 2, "FAILED": 1}
    assert await cli.json("job", "ls", "--by-state") == counts
    plain = (await cli.ok("job", "ls", "--by-state")).stdout.splitlines()
    assert plain == ["PREPROCESSED\t2", "RUNNING\t1", "JOB_FINISHED\t2", "FAILED\t1"]
    assert await cli.json(
        "job", "ls", "--by-state", "--tag", "run=H2O", "--state-not", "failed"
    ) == {"JOB_FINISHED": 2}

    # state names in any case; --state-not leaves out; both kinds must hold
    assert await ids(cli, "--state", "running") == [4]
    assert await ids(cli, "--state-not", "Job_Finished", "--state-not", "PREPROCESSED") == [3, 4]
    assert await ids(cli, "--state", "FAILED", "--state-not", "failed") == []
    assert (await cli.error("job", "ls", "--state", "done", code=2)).startswith(
        "error: jobs filter 'state': unknown job state 'done'; expected one of: CREATED,"
    )
    # tags by key alone, or with other tags
    assert await ids(cli, "--tag-key", "run") == [1, 2, 3, 4, 5]
    assert await ids(cli, "--tag-key", "size", "--tag", "run=CO2") == [4, 5]
    assert await ids(cli, "--tag-key", "size", "--tag", "run=H2O") == []

    # changed since an age or a time
    assert await ids(cli, "--since", "1h", "--limit", "0") == [1, 2, 3, 4, 5, 6]
    later = (utcnow() + timedelta(seconds=1)).isoformat()
    assert await ids(cli, "--since", later) == []
    before_update = utcnow().isoformat()
    await Job.objects.filter(id=5).update(**{"tags.seen": "yes"})
    assert await ids(cli, "--since", before_update) == [5]
    assert "is neither a time (2024-05-01T12:00) nor an age" in await cli.error(
        "job", "ls", "--since", "yesterday", code=2
    )

    # a window further on, and one past the end
    page = await cli.ok("job", "ls", "--offset", "2", "--limit", "2")
    assert [line.split("\t")[0] for line in page.stdout.splitlines()] == ["3", "4"]
    assert page.stderr == "showing jobs 3-4 of 6\n"
    assert await ids(cli, "--offset", "4") == [5, 6]
    past = await cli.ok("job", "ls", "--offset", "10")
    assert (past.stdout, past.stderr) == ("", "no jobs after the first 10 of 6\n")


# --- job ls --watch on a terminal ---------------------------------------------------------


class Terminal:
    """`balsam-mq` in a pseudo-terminal: rich takes it for a terminal and draws live."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "balsam_mq.cli", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.output = b""

    def text(self) -> str:
        """Everything shown so far, without control codes."""
        try:
            while chunk := os.read(self.master, 65536):
                self.output += chunk
        except (BlockingIOError, OSError):  # nothing more for now; EIO once it exited
            pass
        return ANSI.sub("", self.output.decode(errors="replace")).replace("\r", "")

    def last_frame(self) -> str:
        """The last drawing of the table (from its last header on)."""
        text = self.text()
        return text[text.rindex("workdir") :] if "workdir" in text else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


async def test_watch_draws_counts_progress_and_the_last_changed_first(
    cli: Cli, world: World, store: Store, relay: Relay
) -> None:
    await adders(3)
    await drive(store, [1], S.JOB_FINISHED, result=1)
    await drive(store, [2], S.FAILED)
    screen = Terminal("job", "ls", "--watch", "--watch-seconds", "60")
    try:
        await until(lambda: "2/3 done (1 finished, 1 failed)" in screen.text(), timeout=30)
        shown = screen.text()
        assert "PREPROCESSED 1  JOB_FINISHED 1  FAILED 1" in shown
        assert "3 jobs" in shown and "Ctrl-C stops watching" in shown

        await adders(1)  # job 4, the newest: on top
        await until(lambda: "4 jobs" in screen.text())
        rows = [line.split() for line in screen.last_frame().splitlines()[1:]]
        ids = [int(row[0]) for row in rows if row[1:3] == ["polaris", "Adder"]]
        assert ids[0] == 4 and ids[-1] == 3 and sorted(ids) == [1, 2, 3, 4]
        assert "PREPROCESSED 2  JOB_FINISHED 1  FAILED 1" in screen.text()

        await drive(store, [3, 4], S.JOB_FINISHED, result=1)
        await until(lambda: "4/4 done (3 finished, 1 failed)" in screen.text())

        screen.process.send_signal(signal.SIGINT)
        await until(lambda: screen.process.poll() is not None, timeout=30)
        screen.text()
        assert screen.process.returncode == 0, screen.text()[-2000:]
    finally:
        screen.close()


# --- job show -----------------------------------------------------------------------------


async def show(cli: Cli, job_id: int) -> dict[str, str]:
    """The ``name: value`` lines of `job show` (before its history)."""
    out = (await cli.ok("job", "show", str(job_id))).stdout
    head = out.split("\n\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines())


async def test_show_tells_what_a_job_waits_for(cli: Cli, world: World, store: Store) -> None:
    a, b = await adders(2)  # 1, 2
    assert a.id is not None and b.id is not None
    waiting = Job("child", app_id="Adder", parameters={"x": 1}, parent_ids=[1, 2])
    await waiting.save()  # 3
    await drive(store, [2], S.JOB_FINISHED, result=1)

    runnable = await show(cli, 1)
    assert re.fullmatch(
        r"a launcher of its site to claim it \(\S+ so far\); no batch job of its site is "
        r"queued or running \(balsam-mq queue submit, or start balsam-mq launcher\)",
        runnable["waiting for"],
    )
    note = {"session_id": 7, "hostname": "nid01", "reason": "needs 4 nodes, has 1", "at": utcnow()}
    await store.jobs.update_fields_if(1, S.PREPROCESSED, {"unfit": note})
    unfit = await show(cli, 1)
    assert "the last launcher that saw it cannot run it (see unfit)" in unfit["waiting for"]
    assert unfit["unfit"].startswith("needs 4 nodes, has 1 (launcher session 7 on nid01, 20")

    assert (await show(cli, 3))["waiting for"].startswith("parents to finish: 1 (PREPROCESSED) (")

    await store.jobs.update_fields_if(1, S.PREPROCESSED, {"unfit": None})
    await drive(store, [1], S.RUNNING)
    await store.jobs.update_fields_if(1, S.RUNNING, {"session_id": 7})
    running = await show(cli, 1)
    assert running["waiting for"].startswith("its run to end in launcher session 7 (")
    assert running["launcher session"] == "7"
    assert "RUNNING" in running["time per state"]

    out = Job(
        "sim/1",
        app_id="Sim",
        parameters={"input_filename": "a"},
        transfers={"result": "laptop:/results/1.out"},
    )
    await out.save()  # 4
    assert out.id is not None
    await drive(store, [out.id], S.POSTPROCESSED)
    staging = await show(cli, out.id)
    assert staging["waiting for"].startswith("the site agent's stage-out (transfers: result) (")

    finished = await show(cli, 2)
    assert "waiting for" not in finished
    shown = await cli.json("job", "show", "2")
    assert shown["waiting_for"] is None
    stays = shown["time_per_state"]
    assert list(stays) == [e["to_state"] for e in shown["events"]][:-1]  # each once, in order
    first, last = shown["events"][0]["timestamp"], shown["events"][-1]["timestamp"]
    spent = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    assert abs(sum(s["seconds"] for s in stays.values()) - spent) < 1e-6
    assert (await cli.json("job", "show", "1"))["waiting_for"].startswith("its run to end")


def failing_run() -> BaseException:
    def compute(x: int) -> int:
        raise ValueError(f"bad input {x}")

    try:
        compute(3)
    except ValueError as exc:
        return exc
    raise AssertionError("compute did not raise")


async def test_show_prints_the_output_tail_and_traceback_once(
    cli: Cli, world: World, store: Store
) -> None:
    (py, sh) = await adders(2)
    assert py.id is not None and sh.id is not None
    await drive(store, [py.id, sh.id], S.RUNNING)
    error = failing_run()
    text, tb = serialize_exception(error)
    assert tb == "".join(traceback.format_exception(error))
    tail = "loading 3\n" + tb  # what the Python runner left in job.out
    await store.jobs.transition(
        [
            Change(
                py.id,
                S.RUNNING,
                S.RUN_ERROR,
                {"return_code": 1, "output_tail": tail},
                {"return_code": 1, "exception": text, "traceback": tb},
                Actor.LAUNCHER,
            ),
            Change(
                sh.id,
                S.RUNNING,
                S.RUN_ERROR,
                {"return_code": 2, "output_tail": "sim: no input deck\n"},
                {"return_code": 2},
                Actor.LAUNCHER,
            ),
        ]
    )
    out = (await cli.ok("job", "show", str(py.id))).stdout
    assert out.count("Traceback (most recent call last):") == 1
    assert out.count("in compute") == 1
    assert out.count("loading 3") == 1
    assert "the end of job.out:\nloading 3\n\nTraceback (most recent call last):" in out
    assert out.rstrip().endswith("ValueError: bad input 3")
    assert "exception: ValueError: bad input 3" in out
    assert "'output_tail': '<printed below>'" in out
    history = [line for line in out.splitlines() if "\tRUN_ERROR\t" in line or "\tFAILED\t" in line]
    assert len(history) == 2 and all("<printed below>" in line for line in history)

    out = (await cli.ok("job", "show", str(sh.id))).stdout
    assert out.count("sim: no input deck") == 1
    assert "exception: JobFailed (none stored: state_data says why)" in out
    assert out.rstrip().endswith("the end of job.out:\nsim: no input deck")
    # scripts get every field as stored
    shown = await cli.json("job", "show", str(py.id))
    assert shown["state_data"]["output_tail"] == tail
    assert shown["exception"]["traceback"] == tb
