"""The HTTP gateway under load: listings, bulk creation, submit-to-result, the event stream.

The gateway runs as a subprocess (``balsam-mq gateway --port N``: one uvicorn worker, its
relay on, access log off), on a fresh database each run, for a user "bench" who owns two
sites: "idle" (no agent: its jobs stay where they are put) and "bench" (a site agent and
a launcher with 2 slots, started for the latency figure only). Everything the client does
goes through the gateway; only setup (the user and its token, the site directory, the wait
for the launcher's session) and the event count the stream must reach read MongoDB
directly. Figures, min / median / max over runs:

* listing: requests/s of ``GET /jobs?state=PREPROCESSED&tags=group:3&limit=100`` (the
  state new jobs of a site without an agent stay in; a tenth of them in group 3) from
  ``--clients`` clients at once, back to back, each making ``--requests``;
* creation: jobs/s of ``Job.objects.bulk_create`` of ``--jobs`` jobs over HTTP (a request
  per 1,000 jobs, each all or none);
* events: events/s on ``/events/stream`` while ``--events`` jobs are created and then
  failed (requests of 1,000, then one move): from the first request to the last event read;
* W3: ``--latency`` sequential ``add(1, 1)`` submit-to-result round trips through the
  gateway after 5 warm-ups (the result awaited on the gateway's event stream); p50, p95.

    python bench/gateway.py [--runs 3] [--jobs 10000] [--clients 4] [--requests 200]
                            [--events 2000] [--latency 30] [--slots 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import (
    bench_settings,
    free_port,
    mongo_url,
    process_env,
    start_processes,
    stop_processes,
)
from workloads import WARMUP, p50_p95, spread

import balsam_mq
from balsam_mq import ApplicationDefinition, Job
from balsam_mq.broker import build_topology, delete_namespace, open_amqp
from balsam_mq.sdk import Site
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store, open_store

GROUPS = 10  # jobs are tagged group:0 .. group:9; a listing asks for one group


class Shell(ApplicationDefinition):
    site = "idle"
    command_template = "true"


class Add(ApplicationDefinition):
    site = "bench"

    def run(self, x: int, y: int) -> int:
        return x + y


@dataclass(frozen=True)
class Run:
    state: str  # of the listed jobs
    listing_rps: float
    create_jobs_s: float
    events_s: float
    events: int  # events the stream carried
    w3_p50_s: float
    w3_p95_s: float


async def start_gateway(settings: Settings, logs: Path) -> tuple[asyncio.subprocess.Process, str]:
    """``balsam-mq gateway`` on a free port, once its /healthz answers."""
    port = free_port()
    command = [sys.executable, "-m", "balsam_mq.cli", "gateway", "--port", str(port)]
    with open(logs / "gateway.out", "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env={**process_env(settings), "BALSAM_LOG_LEVEL": "WARNING"},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError(f"the gateway exited ({logs / 'gateway.out'})")
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    await stop_processes([proc])
    raise RuntimeError(f"the gateway did not answer /healthz within 30 s ({logs})")


def listing_params(state: str) -> dict[str, str]:
    return {"state": state, "tags": "group:3", "limit": "100"}


async def listing(
    url: str, token: str, params: dict[str, str], expect: int, clients: int, requests: int
) -> float:
    """Requests/s of the filtered listing, ``clients`` at once (each answer ``expect`` long)."""
    headers = {"Authorization": f"Bearer {token}"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            for _ in range(requests):
                response = (await http.get("/jobs", params=params)).raise_for_status()
                got = len(response.json()["items"])
                assert got == expect, f"the listing gave {got} jobs, expected {expect}"

    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        await http.get("/jobs", params=params)  # warm: the caller's token and sites
    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(clients):
            tg.create_task(client())
    return clients * requests / (time.perf_counter() - t0)


async def events(url: str, token: str, store: Store, n: int) -> tuple[float, int]:
    """Events/s the stream carries while ``n`` jobs are created and failed, and how many."""
    headers = {"Authorization": f"Bearer {token}"}
    opened, seen = asyncio.Event(), 0
    last = 0.0
    expected: int | None = None
    done = asyncio.Event()

    async def consume() -> None:
        nonlocal seen, last
        timeout = httpx.Timeout(None, connect=10)
        async with (
            httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as http,
            http.stream("GET", "/events/stream") as response,
        ):
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line == "event: open":
                    opened.set()
                elif line == "event: gap":
                    raise AssertionError("the event stream reported a gap")
                elif line == "event: event":
                    seen += 1
                    last = time.perf_counter()
                    if expected is not None and seen >= expected:
                        done.set()
                        return

    async with asyncio.TaskGroup() as tg:
        consumer = tg.create_task(consume())
        await asyncio.wait_for(opened.wait(), 30)
        t0 = time.perf_counter()
        jobs = await Job.objects.bulk_create(
            [Shell.submit(f"ev/{i}", tags={"phase": "events"}, save=False) for i in range(n)]
        )
        await Job.objects.filter(tags={"phase": "events"}).update(state="FAILED")
        ids = [j.id for j in jobs]
        expected = await store.db["events"].count_documents({"job_id": {"$in": ids}})
        if seen < expected:
            await asyncio.wait_for(done.wait(), 300)
        else:
            consumer.cancel()
    return expected / (last - t0), expected


async def ready(store: Store, site_dir: SiteDirectory) -> None:
    """Until the agent logs that it runs and the launcher has a session."""
    log = site_dir.logs / "agent.log"
    while not (log.exists() and ") running" in log.read_text()):
        await asyncio.sleep(0.1)
    while not await store.db["sessions"].count_documents({}):
        await asyncio.sleep(0.1)


async def latency(
    settings: Settings, store: Store, site: Site, root: Path, k: int, slots: int
) -> tuple[float, float]:
    """W3 through the gateway, with a site agent and a launcher on site "bench"."""
    assert site.id is not None
    site_dir = SiteDirectory.create(root, name="bench", site_id=site.id)
    cli = [sys.executable, "-m", "balsam_mq.cli"]
    commands = [
        [*cli, "site", "agent", str(site_dir.path)],
        [*cli, "launcher", "--site", "bench", "--wall-time", "60", "--cores-per-node", str(slots)],
    ]
    procs = await start_processes(settings, commands, site_dir.logs)
    try:
        await ready(store, site_dir)
        times = []
        for i in range(WARMUP + k):
            t0 = time.perf_counter()
            job = await Add.submit(f"w3/{i}", x=1, y=1, node_packing_count=slots)
            assert await job.result(timeout=60) == 2
            times.append(time.perf_counter() - t0)
    finally:
        await stop_processes(procs)
    return p50_p95(times[WARMUP:])


async def measure(url: str, a: argparse.Namespace) -> Run:
    """One run of the four figures on a fresh database, gateway, user and sites."""
    async with bench_settings(url) as settings, open_store(url, settings.db) as store:
        topology = build_topology(settings.namespace)
        await store.users.create("bench")
        token = (await store.users.issue_token("bench")).text
        with tempfile.TemporaryDirectory() as tmp:
            proc, gateway = await start_gateway(settings, Path(tmp))
            site_ids = []
            try:
                async with balsam_mq.connect(settings, gateway_url=gateway, token=token):
                    idle = await Site.objects.create(name="idle", path=f"{tmp}/idle")
                    bench = await Site.objects.create(name="bench", path=f"{tmp}/bench")
                    site_ids = [s.id for s in (idle, bench) if s.id is not None]
                    await Shell.sync()
                    await Add.sync()

                    t0 = time.perf_counter()
                    made = await Job.objects.bulk_create(
                        [
                            Shell.submit(f"c/{i}", tags={"group": str(i % GROUPS)}, save=False)
                            for i in range(a.jobs)
                        ]
                    )
                    create = a.jobs / (time.perf_counter() - t0)
                    state = made[0].state.value  # where a job of an idle site stays

                    expect = min(100, len(range(3, a.jobs, GROUPS)))
                    params = listing_params(state)
                    rps = await listing(gateway, token, params, expect, a.clients, a.requests)
                    events_s, n_events = await events(gateway, token, store, a.events)
                    p50, p95 = await latency(
                        settings, store, bench, Path(tmp) / "bench", a.latency, a.slots
                    )
            finally:
                await stop_processes([proc])
            async with open_amqp(settings.amqp_url) as amqp:
                channel = await amqp.channel()
                await delete_namespace(channel, topology, site_ids)
        await store.client.drop_database(settings.db)
    return Run(state, rps, create, events_s, n_events, p50, p95)


async def main(a: argparse.Namespace) -> None:
    with mongo_url() as url:
        results = [await measure(url, a) for _ in range(a.runs)]
    print(
        f"gateway: `balsam-mq gateway` subprocess (1 uvicorn worker, relay on, access log off), "
        f"{os.cpu_count()} cores; {a.runs} runs: min / median / max"
    )
    query = "&".join(f"{k}={v}" for k, v in listing_params(results[0].state).items())
    rows = (
        (
            f"listing  GET /jobs?{query}, {a.clients} clients x {a.requests}",
            "req/s",
            [r.listing_rps for r in results],
        ),
        (
            f"creation bulk_create of {a.jobs:,} jobs, 1,000 per request",
            "jobs/s",
            [r.create_jobs_s for r in results],
        ),
        (
            f"events   /events/stream, {a.events:,} jobs created then failed "
            f"({results[0].events:,} events)",
            "events/s",
            [r.events_s for r in results],
        ),
    )
    for what, unit, values in rows:
        print(f"{what:70s} {unit:8s} {spread(values, '{:,.0f}')}")
    for q in ("p50", "p95"):
        ms = [1000 * getattr(r, f"w3_{q}_s") for r in results]
        what = f"W3       {a.latency} x add(1, 1) submit-to-result, agent + launcher"
        print(f"{what:70s} {q} ms   {spread(ms, '{:.1f}')}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=10_000, help="jobs created in bulk")
    p.add_argument("--clients", type=int, default=4, help="concurrent listing clients")
    p.add_argument("--requests", type=int, default=200, help="listings per client")
    p.add_argument("--events", type=int, default=2000, help="jobs created and failed")
    p.add_argument("--latency", type=int, default=30, help="measured W3 round trips")
    p.add_argument("--slots", type=int, default=2)
    asyncio.run(main(p.parse_args()))
