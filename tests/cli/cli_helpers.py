"""Helpers of the CLI tests: invoking `balsam-mq`, the test world (a site, two apps), moving
jobs through their states as the site agent and launcher would."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import typer
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream
from support.driving import drive_jobs
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from balsam_mq.cli import app
from balsam_mq.domain import JobState
from balsam_mq.sdk import ApplicationDefinition, Job, Site
from balsam_mq.store import Store

S = JobState


class Adder(ApplicationDefinition):
    """Adds two numbers."""

    site = "polaris"

    def run(self, x: int, y: int = 1) -> int:
        return x + y


class Sim(ApplicationDefinition):
    site = "polaris"
    command_template = "sim --mode {{ mode }} -inp {{ input_filename }}"
    parameters = {
        "input_filename": {"required": True},
        "mode": {"required": False, "default": "explore", "help": "The simulation mode"},
    }
    transfers = {
        "result": {
            "required": False,
            "direction": "out",
            "local_path": "job.out",
            "description": "Calculation stdout",
        },
    }
    cleanup_files = ["*.hdf", "*.h5"]


@dataclass
class World:
    site: Site
    path: Path


async def make_world(tmp_path: Path) -> World:
    path = tmp_path / "polaris"
    site = await Site.objects.create(name="polaris", path=str(path), hostname="login1")
    await Adder.sync()
    await Sim.sync()
    return World(site, path)


async def adders(n: int, **kwargs: Any) -> list[Job]:
    """``n`` Adder jobs in workdirs add/0 ... add/<n-1>."""
    jobs = [Adder.submit(f"add/{i}", x=i, save=False, **kwargs) for i in range(n)]
    return await Job.objects.bulk_create(jobs)


def commands() -> Iterator[tuple[str, Any]]:
    """(`group command`, the click command) of every leaf command, visible or not: found by
    walking the typer app, so that a new command is held to what every command must do."""

    root = typer.main.get_command(app)
    ctx = typer.Context(root)

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        if isinstance(command, TyperGroup):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), command

    yield from walk(root, [])


class Cli:
    """``await cli("job", "ls")``: `balsam-mq` run in a worker thread (it runs its own loop)."""

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return await anyio.to_thread.run_sync(
            lambda: runner.invoke(app, list(args), input=input, catch_exceptions=False)
        )

    async def ok(self, *args: str, input: str | None = None) -> Result:
        result = await self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self.ok(*args, "--json")).stdout)

    async def error(self, *args: str, code: int = 1) -> str:
        """The one `error:` line of a failing command."""
        result = await self(*args)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0]


async def drive(store: Store, job_ids: Sequence[int], to: JobState, **kw: Any) -> None:
    """Move jobs to ``to`` with the transitions the agent and launcher make."""
    await drive_jobs(store, job_ids, to, **kw)


class Running:
    """`balsam-mq` as a real process (for commands that run until Ctrl-C), read line by line."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self._buffer = ""
        assert process.stdout is not None
        self._stdout = TextReceiveStream(process.stdout)

    @classmethod
    @asynccontextmanager
    async def start(cls, *args: str) -> AsyncIterator[Running]:
        command = [sys.executable, "-m", "balsam_mq.cli", *args]
        async with await anyio.open_process(command, env=dict(os.environ)) as process:
            running = cls(process)
            try:
                yield running
            finally:
                if process.returncode is None:
                    process.kill()

    async def line(self, timeout: float = 30) -> str:
        """The next line of stdout (without its newline)."""
        with anyio.fail_after(timeout):
            while "\n" not in self._buffer:
                self._buffer += await self._stdout.receive()
        line, self._buffer = self._buffer.split("\n", 1)
        return line

    async def until(self, predicate: Callable[[str], bool], timeout: float = 30) -> list[str]:
        """Lines up to and including the first one ``predicate`` accepts."""
        lines: list[str] = []
        with anyio.fail_after(timeout):
            while not lines or not predicate(lines[-1]):
                lines.append(await self.line())
        return lines

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit code and what went to stderr."""
        self.process.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            code = await self.process.wait()
        assert self.process.stderr is not None
        err = b"".join([chunk async for chunk in self.process.stderr]).decode()
        return code, err
