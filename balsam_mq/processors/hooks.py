"""The hook pool: app hooks run in worker processes, one hook at a time per process."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from balsam_mq.processors.hook_worker import HookOutcome, HookRequest, run_hook, start_worker


class HookRunner:
    """Runs :func:`run_hook` requests in ``workers`` spawned processes.

    A hook that kills its worker (``os._exit``, a segfault, the OOM killer) breaks the
    whole pool. The runner then starts a new pool and runs each request that was in the
    broken one again, alone; a request that breaks the pool when alone is the culprit
    and gets an error outcome (its job fails with the reason), so one such hook neither
    fails its neighbours nor stalls its queue.

    A hook still running after ``timeout`` seconds gets an error outcome, and the pool's
    processes are killed (one of them is stuck in it): the other requests in that pool
    run again in a new one, as after a break.
    """

    def __init__(self, workers: int = 2, timeout: float = 600.0) -> None:
        self.workers = workers
        self.timeout = timeout
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self._alone = asyncio.Lock()

    def _executor(self) -> tuple[ProcessPoolExecutor, int]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,  # no orphan hooks run on after a killed agent
            )
            self._generation += 1
        return self._pool, self._generation

    def _discard(self, generation: int, *, kill: bool = False) -> None:
        if self._pool is not None and generation == self._generation:
            pool, self._pool = self._pool, None
            if kill:
                _kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)

    async def _submit(self, request: HookRequest) -> HookOutcome:
        pool, generation = self._executor()
        future = asyncio.get_running_loop().run_in_executor(pool, run_hook, request)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except BrokenProcessPool:
            self._discard(generation)
            raise
        except TimeoutError:
            self._discard(generation, kill=True)
            raise

    async def run(self, request: HookRequest) -> HookOutcome:
        job_id = int(request.job.get("_id", 0))
        try:
            return await self._submit(request)
        except BrokenProcessPool:
            pass
        except TimeoutError:
            return self._timed_out(request, job_id)
        async with self._alone:
            try:
                return await self._submit(request)
            except BrokenProcessPool:
                return HookOutcome(
                    job_id=job_id,
                    error=f"the worker process running {request.hook} for job {job_id} died",
                )
            except TimeoutError:
                return self._timed_out(request, job_id)

    def _timed_out(self, request: HookRequest, job_id: int) -> HookOutcome:
        return HookOutcome(
            job_id=job_id, error=f"{request.hook} did not return within {self.timeout:g} s"
        )

    async def run_many(self, requests: list[HookRequest]) -> list[HookOutcome]:
        return list(await asyncio.gather(*(self.run(r) for r in requests)))

    def close(self) -> None:
        """Stop the pool; a worker still in a hook is killed (the agent does not wait for
        it: its job is redelivered to the next agent)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            _kill_workers(pool)
            pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> HookRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL every worker process of ``pool``. The executor gives no way to stop a task
    that runs: its process table is the only handle on a worker stuck in a hook."""
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
