"""The hook pool: app hooks run in worker processes, one hook at a time per process."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from balsam_mq.processors.hook_worker import HookOutcome, HookRequest, run_hook


class HookRunner:
    """Runs :func:`run_hook` requests in ``workers`` spawned processes.

    A hook that kills its worker (``os._exit``, a segfault, the OOM killer) breaks the
    whole pool. The runner then starts a new pool and runs each request that was in the
    broken one again, alone; a request that breaks the pool when alone is the culprit
    and gets an error outcome (its job fails with the reason), so one such hook neither
    fails its neighbours nor stalls its queue.
    """

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self._alone = asyncio.Lock()

    def _executor(self) -> tuple[ProcessPoolExecutor, int]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
            self._generation += 1
        return self._pool, self._generation

    def _discard(self, generation: int) -> None:
        if self._pool is not None and generation == self._generation:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _submit(self, request: HookRequest) -> HookOutcome:
        pool, generation = self._executor()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, run_hook, request)
        except BrokenProcessPool:
            self._discard(generation)
            raise

    async def run(self, request: HookRequest) -> HookOutcome:
        try:
            return await self._submit(request)
        except BrokenProcessPool:
            pass
        async with self._alone:
            try:
                return await self._submit(request)
            except BrokenProcessPool:
                job_id = int(request.job.get("_id", 0))
                return HookOutcome(
                    job_id=job_id,
                    error=f"the worker process running {request.hook} for job {job_id} died",
                )

    async def run_many(self, requests: list[HookRequest]) -> list[HookOutcome]:
        return list(await asyncio.gather(*(self.run(r) for r in requests)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> HookRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
