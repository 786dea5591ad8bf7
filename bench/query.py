"""Listing jobs from a large database: SDK pages, counts and `balsam-mq job ls`.

Builds a database of 1,000,000 jobs once, through the store's bulk creation (each job
with its creation events), spread over 4 sites with 3 apps each and tagged with one of
20 runs and 5 campaigns; then one update gives them a realistic mix of states (80 %
finished with a stored result, 1 % failed with an exception and a traceback, the rest
pending or running). Each query then runs 5 times; min / median / max are printed with
the target beside them. The CLI command is timed as a whole process.

    python bench/query.py [--jobs 1000000] [--runs 5]
    python bench/query.py --db NAME   # reuse (or build once and keep) database NAME,
                                      # in the mongod of BALSAM_MONGODB_URL
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # bench helpers, and this working tree's package

from _env import bench_settings, mongo_url, process_env  # noqa: E402

from balsam_mq import Job, connect  # noqa: E402
from balsam_mq.domain import (  # noqa: E402
    App,
    Job as JobDocument,
    JobState,
    Site,
)
from balsam_mq.domain.models import blank  # noqa: E402
from balsam_mq.domain.serialization import serialize, serialize_parameters  # noqa: E402
from balsam_mq.settings import Settings  # noqa: E402
from balsam_mq.store import Store, open_store  # noqa: E402

SITES = ["polaris", "aurora", "theta", "perlmutter"]
APPS = ["Sim", "Analyze", "Train"]
RUNS = 20
CAMPAIGNS = 5
# per mille of jobs in each state, by id
STATES: list[tuple[JobState, int]] = [
    (JobState.JOB_FINISHED, 800),
    (JobState.FAILED, 10),
    (JobState.RUNNING, 20),
    (JobState.PREPROCESSED, 100),
    (JobState.READY, 30),
    (JobState.AWAITING_PARENTS, 20),
    (JobState.RUN_DONE, 10),
    (JobState.RESTART_READY, 10),
]
TRACEBACK = (
    "".join(
        f'  File "/home/user/sim/solver.py", line {n}, in step\n    x = solve(mesh, {n})\n'
        for n in range(30)
    )
    + "RuntimeError: solver diverged\n"
)


def documents(n: int, apps: list[App]) -> Iterator[dict[str, Any]]:
    """``n`` new job documents over ``apps``, as the SDK builds them."""
    base = blank(JobDocument, app_id=0, site_id=0, workdir="")
    for i in range(n):
        app = apps[i % len(apps)]
        assert app.id is not None
        doc = dict(base)
        doc["app_id"], doc["site_id"] = app.id, app.site_id
        doc["workdir"] = f"run{i % RUNS}/{app.name}/{i}"
        doc["tags"] = {"run": f"run{i % RUNS}", "campaign": f"c{i % CAMPAIGNS}"}
        doc["parameters"] = serialize_parameters({"x": i, "mesh": "fine", "steps": 1000})
        doc["data"] = {"note": f"input deck {i}"} if i % 10 == 0 else {}
        doc["resources"] = base["resources"]
        doc["parent_ids"], doc["transfers"] = [], {}
        yield doc


def _state_mix() -> dict[str, Any]:
    """The state of each job, from a hash of its id (unrelated to its site, app and tags)."""
    bucket = {"$mod": [{"$multiply": ["$_id", 7919]}, 1000]}
    branches, bound = [], 0
    for state, per_mille in STATES:
        bound += per_mille
        branches.append({"case": {"$lt": [bucket, bound]}, "then": state.value})
    assert bound == 1000
    return {"$switch": {"branches": branches}}


async def build(store: Store, n: int) -> None:
    t0 = time.perf_counter()
    apps: list[App] = []
    for name in SITES:
        site = await store.sites.create(Site(name=name, path=f"/sites/{name}"))
        assert site.id is not None
        for app_name in APPS:
            app = App(
                site_id=site.id,
                name=app_name,
                command_template=f"{app_name.lower()} {{{{ x }}}}",
                serialized_class=serialize(bytes(30_000)),  # a stored class weighs tens of KB
                source=f"class {app_name}(ApplicationDefinition):\n" + "    pass\n" * 100,
                hooks=[],
            )
            apps.append(await store.apps.upsert(app))
    done = [0]

    def created(offset: int, chunk: list[dict[str, Any]]) -> None:
        done[0] += len(chunk)
        if done[0] % 100_000 < len(chunk):
            print(f"  {done[0]:,} jobs created ({time.perf_counter() - t0:.0f} s)", flush=True)

    await store.jobs.create_documents(documents(n, apps), n, created)
    finished, failed = JobState.JOB_FINISHED.value, JobState.FAILED.value
    await store.db["jobs"].update_many(
        {},
        [
            {"$set": {"state": _state_mix()}},
            {
                "$set": {
                    "result": {
                        "$cond": [{"$eq": ["$state", finished]}, serialize(list(range(40))), None]
                    },
                    "return_code": {"$cond": [{"$eq": ["$state", failed]}, 1, 0]},
                    "exception": {
                        "$cond": [
                            {"$eq": ["$state", failed]},
                            serialize(RuntimeError("solver diverged")),
                            None,
                        ]
                    },
                    "traceback": {"$cond": [{"$eq": ["$state", failed]}, TRACEBACK, None]},
                }
            },
        ],
    )
    print(f"built {n:,} jobs in {time.perf_counter() - t0:.0f} s")


async def timed(runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[list[float], Any]:
    out: Any = None
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = await call()
        times.append(time.perf_counter() - t0)
    return times, out


def report(label: str, times: list[float], target: float, note: str = "") -> None:
    lo, mid, hi = min(times), statistics.median(times), max(times)
    verdict = "ok" if mid < target else "MISSED"
    print(
        f"{label:<52} {lo * 1000:7.1f} {mid * 1000:7.1f} {hi * 1000:7.1f} ms"
        f"   target < {target * 1000:5.0f} ms  {verdict}  {note}"
    )


async def measure(settings: Settings, runs: int) -> None:
    async with connect(settings):
        failed = Job.objects.filter(state="FAILED")
        queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (
                'filter(state="FAILED", site="polaris")[:50]',
                failed.filter(site="polaris").order_by("-id")[:50].fetch,
            ),
            (
                'filter(tags={"run": "run7"})[:50]',
                Job.objects.filter(tags={"run": "run7"}).order_by("-id")[:50].fetch,
            ),
            (
                'filter(state="FAILED", tags={"campaign": "c3"})[:50]',
                failed.filter(tags={"campaign": "c3"}).order_by("-id")[:50].fetch,
            ),
            (
                'filter(app="Analyze")[:50]',
                Job.objects.filter(app="Analyze").order_by("-id")[:50].fetch,
            ),
            ('filter(state="FAILED").count()', failed.count),
            (
                'filter(state="RUNNING", site="aurora").count()',
                Job.objects.filter(state="RUNNING", site="aurora").count,
            ),
            (
                'filter(state="JOB_FINISHED").count()',
                Job.objects.filter(state="JOB_FINISHED").count,
            ),
        ]
        print(f"{'query (ordered by -id)':<52} {'min':>7} {'median':>7} {'max':>7}")
        for label, call in queries:
            await call()  # warm: names resolved once, the pages in mongod's cache
            times, out = await timed(runs, call)
            size = out if isinstance(out, int) else len(out)
            report(label, times, 0.1, f"({size:,} {'counted' if isinstance(out, int) else 'jobs'})")
    for args in (["--state", "FAILED"], ["--tag", "run=run7"], ["--state", "JOB_FINISHED"]):
        command = [sys.executable, "-m", "balsam_mq.cli", "job", "ls", *args, "--limit", "50"]

        async def cli(command: list[str] = command) -> str:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=ROOT,
                env=process_env(settings),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await proc.communicate()
            if proc.returncode:
                raise SystemExit(f"{' '.join(command)} failed:\n{err.decode()}")
            return out.decode()

        await cli()  # warm: the files of the package in the page cache
        times, out = await timed(runs, cli)
        lines = len(out.splitlines())
        report(f"balsam-mq job ls {' '.join(args)} --limit 50", times, 1.0, f"({lines} jobs)")


async def run(n: int, runs: int, db: str | None) -> None:
    with mongo_url() as url:
        async with bench_settings(url) as settings:
            if db is not None:
                settings = settings.model_copy(update={"db": db})
            async with open_store(url, settings.db) as store:
                try:
                    if await store.db["jobs"].estimated_document_count() < n:
                        await build(store, n)
                    await measure(settings, runs)
                finally:
                    if db is None:
                        await store.client.drop_database(settings.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help="database to reuse (built if it has fewer jobs)")
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.runs, args.db))


if __name__ == "__main__":
    main()
