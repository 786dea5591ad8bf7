"""Warm interpreters for single-rank Python jobs on the launcher's host: a fork server.

A fresh ``python -m balsam_mq.launcher.python_runner`` pays for the interpreter and
for importing dill, pydantic and the SDK before ``run()`` starts (about half a second).
The fork server pays that once: it imports them, then forks one child per job. Each
child is a new process (its own session, environment, cwd and job.out, nothing left
over from other jobs) that runs the python runner and exits with its code.

Used only for ``run()`` apps with one rank, no ``shell_preamble`` and the launcher's
own interpreter; every other job takes the ordinary path.

Protocol on the server's stdin: ``{"op": "run", "job_id", "cwd", "env", "output", "spec"}``
lines; on its stdout: ``@@warm {"op": "started", "job_id", "pid"}`` and
``@@warm {"op": "done", "job_id", "rc"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import sys
from typing import Any

from balsam_mq.launcher.runs import Launch, LaunchSpec

PREFIX = "@@warm "
_PRELOAD = (
    "dill",
    "balsam_mq.domain",
    "balsam_mq.domain.serialization",
    "balsam_mq.launcher.python_runner",
    "balsam_mq.sdk.hooks",
    "balsam_mq.sdk.definition",
)


# --- the server (its own process) ------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the job, run it, exit with its code."""
    code = 1
    try:
        os.setsid()
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # die with the launcher
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(request["cwd"])
        out = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.environ.update(request["env"])
        from balsam_mq.launcher.python_runner import main

        code = main(request["spec"])
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _emit(report: dict[str, Any]) -> None:
    sys.stdout.write(PREFIX + json.dumps(report) + "\n")
    sys.stdout.flush()


def serve() -> int:
    import importlib

    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    children: dict[int, int] = {}  # pid -> job id
    stdin = sys.stdin.fileno()
    buffer = b""
    _emit({"op": "ready", "pid": os.getpid()})
    open_input = True
    while open_input or children:
        readable, _, _ = select.select([stdin] if open_input else [], [], [], 0.01)
        if readable:
            chunk = os.read(stdin, 1 << 16)
            if not chunk:
                open_input = False  # the launcher is gone or done: finish what runs
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGTERM)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(request)
                children[pid] = int(request["job_id"])
                _emit({"op": "started", "job_id": request["job_id"], "pid": pid})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            job_id = children.pop(pid, None)
            if job_id is not None:
                _emit({"op": "done", "job_id": job_id, "rc": os.waitstatus_to_exitcode(status)})
    return 0


# --- the launcher's side ---------------------------------------------------------------


class WarmRun:
    def __init__(self, exit: asyncio.Future[int]) -> None:
        self.exit = exit
        self.pid: int | None = None
        self.started = asyncio.Event()

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def kill(self, grace: float) -> None:
        await self.started.wait()
        if self.exit.done() or self.pid is None:
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exit), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await asyncio.shield(self.exit)

    def _signal(self, signum: int) -> None:
        """The job and its process group (the child may not have made its group yet)."""
        assert self.pid is not None
        for send in (os.kill, os.killpg):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                send(self.pid, signum)


class WarmPool:
    """Example::

    pool = WarmPool()
    await pool.start()
    run = await pool.launch(spec)     # spec.warm is True
    code = await run.wait()
    await pool.close()
    """

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._runs: dict[int, WarmRun] = {}
        self.server_pid: int | None = None

    @property
    def alive(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def start(self, timeout: float = 60.0) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "balsam_mq.launcher.warm_pool",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        if not ready.startswith(PREFIX.encode()):
            raise RuntimeError(f"warm pool did not start: {ready!r}")
        self.server_pid = int(json.loads(ready[len(PREFIX) :])["pid"])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            while line := await self._process.stdout.readline():
                text = line.decode(errors="replace")
                if not text.startswith(PREFIX):
                    continue
                report = json.loads(text[len(PREFIX) :])
                run = self._runs.get(int(report["job_id"]))
                if run is None:
                    continue
                if report["op"] == "started":
                    run.pid = int(report["pid"])
                    run.started.set()
                elif report["op"] == "done":
                    del self._runs[int(report["job_id"])]
                    run.exit.set_result(int(report["rc"]))
        finally:
            for run in self._runs.values():
                run.started.set()
                if not run.exit.done():
                    run.exit.set_exception(RuntimeError("the warm pool exited"))
            self._runs.clear()

    async def launch(self, spec: LaunchSpec) -> Launch:
        if not self.alive or self._process is None or self._process.stdin is None:
            raise RuntimeError("the warm pool is not running")
        run = WarmRun(asyncio.get_running_loop().create_future())
        self._runs[spec.job_id] = run
        request = {
            "op": "run",
            "job_id": spec.job_id,
            "cwd": spec.cwd,
            "env": dict(spec.env),
            "output": str(spec.output_path),
            "spec": spec.python_spec,
        }
        self._process.stdin.write((json.dumps(request) + "\n").encode())
        await self._process.stdin.drain()
        return run

    async def close(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


if __name__ == "__main__":
    sys.exit(serve())
