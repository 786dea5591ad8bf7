"""Celery 5 on the local RabbitMQ: a prefork worker with concurrency 2, results over ``rpc://``
or stored in MongoDB. "Done" for Celery: the task's result received (rpc) or stored
and read back (MongoDB).

This module is also the worker's Celery app (``celery -A peers.celery_peer worker``);
its broker, result backend and queue come from ``BENCH_CELERY_*`` variables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _env import scratch
from celery import Celery, group
from workloads import Run, check_sum, latencies

app = Celery(
    "bench_peer",
    broker=os.environ.get("BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "rpc://"),
)
app.conf.task_default_queue = os.environ.get("BENCH_CELERY_QUEUE", "bench-celery")
app.conf.broker_connection_retry_on_startup = True
app.conf.mongodb_backend_settings = {"database": os.environ.get("BENCH_CELERY_DB", "celery")}
# The client's result backend is built once per process (Celery caches it), so every run
# of a process stores its results in one database, which is dropped after each run.
_RESULTS_DB = f"celery_{uuid.uuid4().hex[:8]}"


@app.task
def shell(workdir: str) -> int:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "job.out"), "ab") as out:
        return subprocess.run(
            ["bash", "-c", "true"], cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        ).returncode


@app.task
def add(x: int, y: int) -> int:
    return x + y


def _worker(env: dict[str, str], logfile: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "celery", "-A", "peers.celery_peer", "worker",
        "--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle", "-Q", env["BENCH_CELERY_QUEUE"],
    ]  # fmt: skip
    with open(logfile, "ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def measure(backend: str, mongo_url: str, n: int, k: int) -> Run:
    """One run of W1, W2 and W3 with a fresh worker; ``backend`` is ``rpc`` or ``mongodb``."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "BENCH_CELERY_QUEUE": f"bench-celery-{tag}",
        "BENCH_CELERY_DB": _RESULTS_DB,
        "BENCH_CELERY_BACKEND": "rpc://" if backend == "rpc" else mongo_url,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1])]),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("BENCH_CELERY")})
    app.conf.task_default_queue = env["BENCH_CELERY_QUEUE"]
    app.conf.result_backend = env["BENCH_CELERY_BACKEND"]
    app.conf.mongodb_backend_settings = {"database": env["BENCH_CELERY_DB"]}
    tmp = str(scratch("bench-celery-"))  # kept until the bench ends
    worker = _worker(env, Path(tmp) / "worker.log")
    try:
        add.delay(0, 0).get(timeout=120)  # the worker is up
        native = backend == "rpc"

        def collect(results: object) -> list[int]:
            out: list[int] = []
            if native:
                results.join_native(callback=lambda _id, v: out.append(v), timeout=900)  # type: ignore[attr-defined]
            else:
                out = results.join(timeout=900, interval=0.005)  # type: ignore[attr-defined]
            return out

        t0 = time.perf_counter()
        codes = collect(group(shell.s(f"{tmp}/w1/{i}") for i in range(n)).apply_async())
        w1 = time.perf_counter() - t0
        assert codes == [0] * n, "a W1 job failed"

        t0 = time.perf_counter()
        values = collect(group(add.s(i, 1) for i in range(n)).apply_async())
        w2 = time.perf_counter() - t0
        check_sum(n, sum(values))

        interval = {} if native else {"interval": 0.001}
        p50, p95 = latencies(lambda: add.delay(1, 1).get(timeout=60, **interval), k)
    finally:
        worker.terminate()
        worker.wait(60)
    if backend != "rpc":
        import pymongo

        client: pymongo.MongoClient[dict[str, Any]]
        with pymongo.MongoClient(mongo_url) as client:
            client.drop_database(env["BENCH_CELERY_DB"])
    return Run(w1, w2, p50, p95)
