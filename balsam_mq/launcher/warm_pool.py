"""Warm interpreters for single-rank Python jobs on the launcher's host: a pool of workers.

A fresh ``python -m balsam_mq.launcher.python_runner`` pays for the interpreter, for
importing dill, pydantic and the SDK, and for importing the app's own module before
``run()`` starts (half a second or more). The warm pool pays that once per worker: a
server process imports the runtime and forks *workers*; a worker runs jobs one after
another, each with the job's working directory, environment, ``job.out`` (stdout and
stderr) and ``sys.path`` as a fresh process would have them, restored afterwards, and
keeps app classes loaded per app version. Spec and result travel over the pipes, not
through files.

What a job shares with the jobs that ran before it in the same worker: the modules it
imported and their global state. A ``run()`` that needs a process of its own (it
changes interpreter-wide state, starts threads that outlive it, relies on
``atexit``) belongs to an app run with ``launcher.warm_pool: false``. A job that
exits the worker (``os._exit``, a crash, a kill) ends with that exit status and its
worker is replaced; ``sys.exit(n)`` in ``run()`` is exit code ``n``.

A worker retires after ``worker_jobs`` jobs (the server closes its end once the last
result is in; the next job gets a freshly forked worker): each job sets variables such
as ``BALSAM_JOB_ID`` to a value of its own, and the C library keeps every value it was
ever given, so a worker that ran for ever would grow by a few dozen bytes a job.

Used only for ``run()`` apps with one rank, no ``shell_preamble`` and the launcher's
own interpreter; every other job takes the ordinary path.

The server and its workers are ``launcher/warm_server.py`` (a process of its own); this
module is the launcher's side. Protocol, one line per message, a short header then JSON
the server passes on untouched: launcher → server ``run <job id> {"cwd", "env",
"output", "spec"}`` and ``kill <job id> <signum>``; server → launcher ``@@warm ready
<pid>`` and ``@@warm done <job id> <exit code> {payload}``; server → worker the run's
JSON, worker → server ``<exit code> {payload}``. A job is one line each way between each
pair: a kill reaches the job wherever it is, waiting for a worker (it ends there, as if
killed by ``signum``) or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from balsam_mq.launcher.runs import Launch, LaunchSpec
from balsam_mq.launcher.warm_server import PREFIX, WORKER_JOBS


class WarmRun:
    def __init__(self, pool: WarmPool, job_id: int, exit: asyncio.Future[int]) -> None:
        self._pool = pool
        self.job_id = job_id
        self.exit = exit
        self.payload: dict[str, Any] | None = None  # run()'s result or exception

    async def wait(self) -> int:
        return await asyncio.shield(self.exit)

    async def kill(self, grace: float) -> None:
        """SIGTERM to the job's worker (and what it started), SIGKILL after ``grace``."""
        if self.exit.done():
            return
        await self._pool.signal(self.job_id, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exit), grace)
        except TimeoutError:
            await self._pool.signal(self.job_id, signal.SIGKILL)
            await asyncio.wait([self.exit])
        except RuntimeError:  # the pool itself went away: so did the job
            pass


class WarmPool:
    """Example::

    pool = WarmPool()
    await pool.start()
    run = await pool.launch(spec)     # spec.python_run is set
    code = await run.wait()           # run.payload: the result or exception
    await pool.close()
    """

    def __init__(self, *, worker_jobs: int = WORKER_JOBS) -> None:
        self._worker_jobs = worker_jobs
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
            "balsam_mq.launcher.warm_server",
            str(self._worker_jobs),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        ready = await asyncio.wait_for(self._process.stdout.readline(), timeout)
        if not ready.startswith(PREFIX.encode() + b"ready "):
            raise RuntimeError(f"warm pool did not start: {ready!r}")
        self.server_pid = int(ready.split()[2])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        try:
            prefix = PREFIX.encode()
            while line := await self._process.stdout.readline():
                if not line.startswith(prefix):
                    continue
                op, job_id, value, *rest = line[len(prefix) :].split(b" ", 3)
                run = self._runs.get(int(job_id))
                if run is None:
                    continue
                if op == b"done":
                    del self._runs[run.job_id]
                    run.payload = json.loads(rest[0]) if rest else None
                    run.payload = run.payload or None
                    run.exit.set_result(int(value))
        finally:
            for run in self._runs.values():
                if not run.exit.done():
                    run.exit.set_exception(RuntimeError("the warm pool exited"))
            self._runs.clear()

    async def _send(self, line: bytes) -> None:
        if not self.alive or self._process is None or self._process.stdin is None:
            raise RuntimeError("the warm pool is not running")
        self._process.stdin.write(line + b"\n")
        await self._process.stdin.drain()

    async def launch(self, spec: LaunchSpec) -> Launch:
        run = WarmRun(self, spec.job_id, asyncio.get_running_loop().create_future())
        self._runs[spec.job_id] = run
        request = {
            "cwd": spec.cwd,
            "env": dict(spec.env),
            "output": str(spec.output_path),
            "spec": spec.python_run,
        }
        await self._send(f"run {spec.job_id} ".encode() + json.dumps(request).encode())
        return run

    async def signal(self, job_id: int, signum: int) -> None:
        """Signal the worker running ``job_id`` (and what it started), if it still does."""
        with contextlib.suppress(RuntimeError, OSError):
            await self._send(f"kill {job_id} {int(signum)}".encode())

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
