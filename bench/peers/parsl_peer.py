"""Parsl's HighThroughputExecutor with a LocalProvider and 2 workers. "Done" for Parsl: the
app's future resolved in the submitting process's memory (nothing is stored)."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import parsl
from _env import scratch
from parsl.app.app import bash_app, python_app
from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.providers import LocalProvider
from workloads import Run, check_sum, latencies


@bash_app
def shell(workdir: str, stdout: str = "", stderr: str = "") -> str:
    return f"cd {workdir} && true"


@python_app
def add(x: int, y: int) -> int:
    return x + y


def measure(n: int, k: int) -> Run:
    """One run of W1, W2 and W3 with a fresh executor."""
    # the workers import this module to run the apps
    here = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    tmp = str(scratch("bench-parsl-"))  # kept until the bench ends
    config = Config(
        executors=[
            HighThroughputExecutor(
                label="htex",
                max_workers_per_node=2,
                provider=LocalProvider(  # type: ignore[no-untyped-call]
                    init_blocks=1, min_blocks=1, max_blocks=1
                ),
            )
        ],
        run_dir=f"{tmp}/runinfo",
    )
    with parsl.load(config):
        add(0, 0).result(timeout=120)  # the workers are up

        t0 = time.perf_counter()
        futures = [
            shell(f"{tmp}/w1/{i}", stdout=f"{tmp}/w1/{i}/job.out", stderr=f"{tmp}/w1/{i}/job.out")
            for i in range(n)
        ]
        codes = [f.result(timeout=900) for f in concurrent.futures.as_completed(futures)]
        w1 = time.perf_counter() - t0
        assert codes == [0] * n, "a W1 job failed"

        t0 = time.perf_counter()
        futures = [add(i, 1) for i in range(n)]
        total = sum(f.result() for f in concurrent.futures.as_completed(futures, timeout=900))
        w2 = time.perf_counter() - t0
        check_sum(n, total)

        p50, p95 = latencies(lambda: add(1, 1).result(timeout=60), k)
    return Run(w1, w2, p50, p95)
