"""balsam_mq side by side with Celery and Parsl: the same three workloads, in one sitting.

Systems, each with 2 worker slots on this machine:

* balsam_mq: the local stack, one site agent, one launcher with 2 slots (``bench/e2e.py``);
* Celery 5 with RabbitMQ, a prefork worker with concurrency 2, results over ``rpc://``;
* the same Celery with its MongoDB result backend (the same ``mongod`` as balsam_mq);
* Parsl, HighThroughputExecutor with a LocalProvider and 2 workers.

Workloads (``bench/workloads.py``): W1 1,000 jobs running ``true`` in their own working
directories; W2 1,000 Python ``add`` jobs, each result collected and checked; W3 30
sequential ``add(1, 1)`` round trips after 5 warm-ups. Each run of a system is a
process of its own, and the systems take turns, run after run (``--runs`` rounds), so
that a machine whose speed drifts slows them alike; the figures are min / median /
max, and the ratios use medians. Every run's files stay until the last run has ended
(``_env.scratch_root``: on some file systems a file costs more right after many were
removed). Peers come with the ``bench`` extra: ``pip install -e '.[bench]'``.

    python bench/compare.py [--runs 3] [--jobs 1000] [--latency 30] [--only parsl ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _env import file_creation_us, mongo_url, scratch_root  # noqa: E402
from workloads import Run, spread  # noqa: E402

# name -> (label, what "done" means for it)
SYSTEMS: dict[str, tuple[str, str]] = {
    "balsam_mq": (
        "balsam_mq",
        "JOB_FINISHED stored in MongoDB with its full event history; results read back",
    ),
    "celery-rpc": ("Celery, rpc:// results", "result message received (nothing stored)"),
    "celery-mongodb": ("Celery, MongoDB results", "result stored in MongoDB and read back"),
    "parsl": ("Parsl HTEX", "future resolved in the submitting process (nothing stored)"),
}
PERSISTING = ("celery-mongodb",)  # peers that store results, as balsam_mq does


def measure(system: str, url: str, n: int, k: int) -> Run:
    """One run of the three workloads on ``system`` (in this process)."""
    if system == "balsam_mq":
        import e2e

        return asyncio.run(e2e.measure(url, n, k, slots=2))
    if system == "parsl":
        from peers.parsl_peer import measure as parsl

        return parsl(n, k)
    from peers.celery_peer import measure as celery

    return celery(system.removeprefix("celery-"), url, n, k)


def run_system(system: str, url: str, runs: int, n: int, k: int) -> list[Run]:
    """``runs`` runs of ``system`` in a fresh process (peers keep process-wide state)."""
    env = {**os.environ, "BALSAM_MONGODB_URL": url}
    command = [sys.executable, __file__, "--one", system, "--runs", str(runs)]
    command += ["--jobs", str(n), "--latency", str(k)]
    out = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return [Run(**json.loads(line)) for line in out.stdout.splitlines() if line.startswith("{")]


def report(results: dict[str, list[Run]], n: int, k: int, probe_us: float) -> None:
    print(f"\n{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"a workdir and its job.out made in {probe_us:.0f} µs as the bench started")
    print(f"W1 {n:,} x `true`, W2 {n:,} x add, W3 {k} x add(1, 1); min / median / max\n")
    header = f"{'system':26s} {'W1 jobs/s':>24s} {'W2 jobs/s':>24s} {'W3 p50 ms':>22s}"
    print(header + f" {'W3 p95 ms':>22s}")
    med: dict[str, dict[str, float]] = {}
    for system, runs in results.items():
        w1 = [n / r.w1_s for r in runs]
        w2 = [n / r.w2_s for r in runs]
        p50 = [1000 * r.w3_p50_s for r in runs]
        p95 = [1000 * r.w3_p95_s for r in runs]
        med[system] = {
            "w1": statistics.median(w1),
            "w2": statistics.median(w2),
            "p50": statistics.median(p50),
        }
        print(
            f"{SYSTEMS[system][0]:26s} {spread(w1, '{:.0f}'):>24s} {spread(w2, '{:.0f}'):>24s}"
            f" {spread(p50, '{:.1f}'):>22s} {spread(p95, '{:.1f}'):>22s}"
        )
    peers = [s for s in med if s != "balsam_mq"]
    if "balsam_mq" in med and peers:
        ours = med["balsam_mq"]
        print("\nbalsam_mq against the best peer (medians):")
        for w, target in (("w1", 2.0), ("w2", 2.0)):
            best = max(peers, key=lambda s: med[s][w])
            ratio = ours[w] / med[best][w]
            print(
                f"  {w.upper()} throughput: {ratio:.2f} x {SYSTEMS[best][0]} "
                f"(target >= {target:g} x): {'met' if ratio >= target else 'not met'}"
            )
        in_memory = [s for s in peers if s not in PERSISTING]
        for group, target, better in (
            ([s for s in peers if s in PERSISTING], 0.5, "at most half of"),
            (in_memory, 3.0, "within 3 x of"),
        ):
            if group:
                best = min(group, key=lambda s: med[s]["p50"])
                ratio = ours["p50"] / med[best]["p50"]
                print(
                    f"  W3 p50: {ratio:.2f} x {SYSTEMS[best][0]} (target: {better} it): "
                    f"{'met' if ratio <= target else 'not met'}"
                )
    print("\nwhat 'done' means:")
    for system in results:
        print(f"  {SYSTEMS[system][0]:26s} {SYSTEMS[system][1]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--latency", type=int, default=30)
    p.add_argument("--only", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--one", choices=list(SYSTEMS), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:  # a child: measure one system, one JSON line per run
        url = os.environ["BALSAM_MONGODB_URL"]
        for _ in range(a.runs):
            print(json.dumps(measure(a.one, url, a.jobs, a.latency).to_json()), flush=True)
        return
    results: dict[str, list[Run]] = {system: [] for system in a.only}
    with scratch_root(), mongo_url() as url:  # the runs' files stay until the end
        probe = file_creation_us()
        for round_ in range(1, a.runs + 1):  # the systems take turns: drift hits them alike
            for system in a.only:
                started = time.monotonic()
                print(f"run {round_}/{a.runs}: {SYSTEMS[system][0]}...", file=sys.stderr, end="")
                results[system] += run_system(system, url, 1, a.jobs, a.latency)
                print(f" {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    report(results, a.jobs, a.latency, probe)


if __name__ == "__main__":
    main()
