"""One running job: what to start (LaunchSpec), the local process, job.out, and killing it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from balsam_mq.launcher.command import RUN_SPEC_FILE
from balsam_mq.launcher.sentinel import MARK as SENTINEL_MARK, Sentinel

if TYPE_CHECKING:
    from balsam_mq.launcher.warm_pool import WarmPool

OUTPUT_FILE = "job.out"


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one job on a node; plain data, so it can cross to a worker."""

    job_id: int
    script: str  # bash script text: preamble + wrapped command
    cwd: str
    argv: tuple[str, ...] = ()  # the same, executed directly (a simple command, no preamble)
    env: Mapping[str, str] = field(default_factory=dict)  # on top of the node's environment
    output: str = ""  # job.out; default <cwd>/job.out
    python_run: Mapping[str, Any] | None = None  # a run() job's spec (the runner's input)
    warm: bool = False  # a run() job the warm pool may run (one rank, no preamble...)

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else Path(self.cwd) / OUTPUT_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "script": self.script,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "env": dict(self.env),
            "output": str(self.output_path),
            "python_run": dict(self.python_run) if self.python_run is not None else None,
            "warm": self.warm,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LaunchSpec:
        return cls(
            job_id=int(data["job_id"]),
            script=str(data["script"]),
            argv=tuple(str(a) for a in data.get("argv", ())),
            cwd=str(data["cwd"]),
            env=dict(data.get("env", {})),
            output=str(data.get("output", "")),
            python_run=data.get("python_run"),
            warm=bool(data.get("warm", False)),
        )

    def write_run_spec(self) -> None:
        """The spec file the script's ``python -m ...python_runner`` reads (run() jobs run
        through their script: fresh interpreters, several ranks, MPI workers)."""
        if self.python_run is not None:
            Path(self.cwd).mkdir(parents=True, exist_ok=True)
            (Path(self.cwd) / RUN_SPEC_FILE).write_text(json.dumps(self.python_run))


class Launch(Protocol):
    """A started job, wherever it runs. ``payload``: a run() job's result or exception, when
    it came back with the exit (a warm worker's); else it is read from the result file."""

    payload: dict[str, Any] | None

    async def wait(self) -> int: ...

    async def kill(self, grace: float) -> None: ...


class Executor(Protocol):
    """Starts jobs on the allocation's nodes. ``makes_workdirs``: a job's missing workdir
    is made when it starts (else it is made before ``launch``)."""

    makes_workdirs: bool

    async def launch(self, spec: LaunchSpec, node_index: int) -> Launch: ...

    async def close(self) -> None: ...


class LocalRun:
    """A job's process on this host, in its own process group (its id is the group's).

    Its end is watched through a pidfd on the event loop (Linux 5.3+): no thread, no
    polling. Elsewhere a thread waits for it.
    """

    def __init__(self, process: subprocess.Popen[bytes], sentinel: Sentinel | None) -> None:
        self.process = process
        self.pid = process.pid
        self.payload: dict[str, Any] | None = None
        self._sentinel = sentinel
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if sentinel is not None:
            sentinel.watch(self.pid)
        self._watch()

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfds here: a thread waits
            waiter = loop.run_in_executor(None, self.process.wait)
            waiter.add_done_callback(lambda f: self._ended(f.result()))
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._ended(self.process.wait())  # exited: returns at once

        loop.add_reader(pidfd, readable)

    def _ended(self, code: int) -> None:
        if self._sentinel is not None:
            self._sentinel.release(self.pid)
        if not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def kill(self, grace: float) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        if self._exit.done():
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._exit), grace)
        except TimeoutError:
            pass
        # members of the group may outlive its leader: the group goes in any case
        _signal_group(self.pid, signal.SIGKILL)
        await asyncio.shield(self._exit)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def start_local(
    spec: LaunchSpec,
    *,
    sentinel: Sentinel | None = None,
    base_env: Mapping[str, str] | None = None,
) -> LocalRun:
    """Start ``spec`` on this host, stdout and stderr appended to its job.out: its ``argv``
    directly when it has one (a simple command, nothing in between), else its script
    with bash. A command that cannot be executed directly (not found: a shell builtin,
    say) runs through bash, which reports it as a shell would."""
    env = {**(os.environ if base_env is None else base_env), **spec.env}
    if sentinel is not None:  # found by it even if the launcher dies before registering
        env[SENTINEL_MARK] = str(sentinel.pid)
    out = open_output(spec.output_path)
    try:
        if spec.argv:
            try:
                return LocalRun(_popen(list(spec.argv), spec.cwd, env, out), sentinel)
            except (FileNotFoundError, PermissionError, NotADirectoryError):
                pass
        return LocalRun(_popen(["bash", "-c", spec.script], spec.cwd, env, out), sentinel)
    finally:
        os.close(out)


def _popen(argv: list[str], cwd: str, env: Mapping[str, str], out: int) -> subprocess.Popen[bytes]:
    # no preexec_fn: CPython then starts the child with vfork, cheap for a big process;
    # the sentinel, not a parent-death signal, ends the job if the launcher dies
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def open_output(path: str | Path) -> int:
    """A job's job.out opened for appending (a descriptor), its directory (the workdir)
    made first if it is missing. The ``mkdir`` comes first because a new job's workdir
    is missing: one call then, and no failed ``open``."""
    workdir = os.path.dirname(path)
    try:
        os.mkdir(workdir)
    except FileExistsError:
        pass
    except FileNotFoundError:  # its parents too
        os.makedirs(workdir, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class LocalExecutor:
    """Runs every job on this host (a workstation, or the MPI-mode launch node).

    With a warm pool, single-rank Python jobs run in warm interpreters. The others are
    started directly, watched by a sentinel process (started with the first job) that
    ends them if the launcher dies.
    """

    makes_workdirs = True  # a warm worker, or the start of a job's process, makes it

    def __init__(self, warm: WarmPool | None = None, *, kill_grace: float = 5.0) -> None:
        self.warm = warm
        self._kill_grace = kill_grace
        self._sentinel: Sentinel | None = None

    async def launch(self, spec: LaunchSpec, node_index: int) -> Launch:
        if spec.warm and self.warm is not None and self.warm.alive:
            return await self.warm.launch(spec)
        if self._sentinel is None:
            self._sentinel = await Sentinel.start(grace=self._kill_grace)
        spec.write_run_spec()
        return start_local(spec, sentinel=self._sentinel)

    async def close(self) -> None:
        if self.warm is not None:
            await self.warm.close()
        if self._sentinel is not None:
            await self._sentinel.close()
            self._sentinel = None


def output_tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` characters of a job's output (empty if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit * 4))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")[-limit:]
