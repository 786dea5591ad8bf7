"""The hook pool: app hooks run in worker processes, one hook at a time per process."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from balsam_mq.processors.hook_worker import HookOutcome, HookRequest, run_hook


@dataclass
class HookRunner:
    """Runs :func:`run_hook` requests in ``workers`` spawned processes.

    A worker that dies (a hook calling ``os._exit``, the OOM killer) breaks the pool;
    the runner replaces it and reports the hooks that were in it as failed, so their
    batch is retried by the consumer runner rather than lost.
    """

    workers: int = 2
    _pool: ProcessPoolExecutor | None = field(default=None, init=False)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    async def run(self, request: HookRequest) -> HookOutcome:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), run_hook, request)
        except BrokenProcessPool:
            self.close()
            raise

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
