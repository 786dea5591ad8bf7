"""One running job: what to start (LaunchSpec), the local subprocess, job.out, and killing it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from balsam_mq.launcher.command import RUN_SPEC_FILE

if TYPE_CHECKING:
    from balsam_mq.launcher.warm_pool import WarmPool

OUTPUT_FILE = "job.out"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one job on a node; plain data, so it can cross to a worker."""

    job_id: int
    script: str  # bash script text: preamble + wrapped command
    cwd: str
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
    """Starts jobs on the allocation's nodes."""

    async def launch(self, spec: LaunchSpec, node_index: int) -> Launch: ...

    async def close(self) -> None: ...


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()
_SETPRIV = shutil.which("setpriv") if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the launcher dies (Linux only)."""
    prctl = getattr(_LIBC, "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalRun:
    """A job's bash process on this host, in its own process group."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.payload: dict[str, Any] | None = None

    async def wait(self) -> int:
        return await self.process.wait()

    async def kill(self, grace: float) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        if self.process.returncode is not None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), grace)
        except TimeoutError:
            pass
        # members of the group may outlive bash: the group goes in any case
        _signal_group(self.pid, signal.SIGKILL)
        await self.process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def start_local(spec: LaunchSpec, *, base_env: Mapping[str, str] | None = None) -> LocalRun:
    """Start ``spec`` with bash on this host; stdout and stderr append to its job.out."""
    env = {**(os.environ if base_env is None else base_env), **spec.env}
    out = _open_output(spec)
    # util-linux's setpriv sets the parent-death signal without a Python preexec_fn,
    # which would force a slow fork of this (large) process for every job
    argv = ["bash", "-c", spec.script]
    preexec = None if _SETPRIV else _die_with_parent
    if _SETPRIV:
        argv = [_SETPRIV, "--pdeathsig", "TERM", *argv]
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
    finally:
        os.close(out)
    return LocalRun(process)


def _open_output(spec: LaunchSpec) -> int:
    """The job's workdir made, its job.out opened for appending (a descriptor)."""
    Path(spec.cwd).mkdir(parents=True, exist_ok=True)
    return os.open(spec.output_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


class LocalExecutor:
    """Runs every job on this host (a workstation, or the MPI-mode launch node).

    With a warm pool, single-rank Python jobs are forked from warm interpreters.
    """

    def __init__(self, warm: WarmPool | None = None) -> None:
        self.warm = warm

    async def launch(self, spec: LaunchSpec, node_index: int) -> Launch:
        if spec.warm and self.warm is not None and self.warm.alive:
            return await self.warm.launch(spec)
        spec.write_run_spec()
        return await start_local(spec)

    async def close(self) -> None:
        if self.warm is not None:
            await self.warm.close()


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
