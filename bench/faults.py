"""Fault campaign: mixed jobs through a site agent and a launcher while one fault strikes.

Each scenario runs on a fresh database (of a mongod this script owns, so that it can kill
it) and RabbitMQ namespace, with a site agent and a launcher (2 slots) as real processes:
1,000 jobs by default, a mix of shell commands, Python ``run()`` jobs, jobs with a
custom ``postprocess`` and children waiting on a parent. Once a fifth of them have
ended, the fault strikes:

* ``broker-10s``, ``broker-60s``: RabbitMQ's app stopped (``rabbitmqctl stop_app``), then
  started again;
* ``mongod-10s``, ``mongod-60s``: mongod SIGKILLed, restarted on its data after the pause;
* ``agent-kills``: the site agent (its relay and hook workers with it) SIGKILLed at
  random moments, three rounds, restarted each time;
* ``launcher-kills``: the launcher SIGKILLed at random moments, three rounds, a new one
  started each time (the reaper times out what the dead one held);
* ``bad-hooks``: 20 more jobs whose hooks kill their worker, hang past ``hooks.timeout_s``,
  raise, or leave a value MongoDB cannot store: these must fail, alone;
* ``primary-kill``: on a three-member replica set (``bench/replica_set.py``), the primary
  SIGKILLed (the others elect a new one), restarted after 10 s as a secondary;
* ``cluster-node-stop``, ``cluster-primary-kill``: on a three-node RabbitMQ cluster
  (``bench/rabbit_cluster.py``, quorum queues, every process given the three addresses)
  and a three-member replica set: the broker node every process connected to stopped
  (``rabbitmqctl stop``), started again after 10 s; or the MongoDB primary killed as in
  ``primary-kill``;
* ``gateway-kills``: the jobs submitted, and awaited with ``as_completed``, by a remote
  client through a gateway (``balsam-mq gateway``, its own relay the only one besides
  the agent's), which is SIGKILLed at random moments, three rounds, restarted each time:
  the client must see every job end, once;
* ``partition``: the launcher in a network namespace of its own (``bench/partition.py``)
  whose link to the services is cut for 30 s, longer than the reaper's grace: its jobs
  are timed out meanwhile; back, it learns it was taken for dead, kills its runs and
  goes on under a new session.

One row per scenario: jobs, finished, failed as intended, failed otherwise, stuck (not
ended when the run gives up), repeated transitions and broken histories (the invariants
of ``balsam_mq.domain.audit``), seconds from the end of the fault to the next job
finished, and the makespan. Every row should read: nothing lost, nothing stuck,
nothing repeated.

    python bench/faults.py [--jobs 1000] [--only broker-10s mongod-10s ...] [--seed 1]

Needs ``rabbitmqctl`` for the local RabbitMQ node (the broker scenarios stop its app);
the cluster scenarios start nodes of their own (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import bench_settings, free_port, start_processes
from partition import Partition, partition
from rabbit_cluster import RabbitCluster, start as start_rabbit_cluster
from replica_set import ReplicaSet, start as start_replica_set

import balsam_mq
from balsam_mq import ApplicationDefinition, Job, stack
from balsam_mq.domain import JobState, Site
from balsam_mq.domain.audit import audit
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store, open_store

SITE = "faults"
REMOTE_USER = "remote"  # the owner of the site in the gateway scenario
SLOTS = 2
# quick heartbeats and reaper, a short hook timeout: the campaign measures recovery, not
# the production defaults (grace 60 s, hook timeout 600 s)
SITE_SETTINGS = """
reaper:
  grace_s: 10
  interval_s: 1
hooks:
  timeout_s: 5
launcher:
  heartbeat_s: 1
"""
GIVE_UP_S = 600.0  # a job not ended this long after the fault is stuck


class Shell(ApplicationDefinition):
    site = SITE
    command_template = "true"


class Add(ApplicationDefinition):
    site = SITE

    def run(self, x: int, y: int) -> int:
        return x + y


class Post(ApplicationDefinition):
    site = SITE
    command_template = "echo {{ n }}"

    def postprocess(self) -> None:
        self.job.data = {"post": True}
        self.job.state = "POSTPROCESSED"


class BadHook(ApplicationDefinition):
    """Its preprocess misbehaves as ``kind`` says; each must fail its own job only."""

    site = SITE
    command_template = "true"
    parameters = {"kind": {"required": True}}

    def preprocess(self) -> None:
        import os
        import signal
        import time

        kind = self.job.parameters["kind"]
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "raise":
            raise RuntimeError("a broken preprocess")
        elif kind == "unstorable":
            self.job.data["seen"] = {1, 2}
        self.job.state = "PREPROCESSED"


BAD_KINDS = ("kill", "hang", "raise", "unstorable")


@dataclass
class Stack:
    """The processes of one scenario, and the mongod this script owns."""

    settings: Settings
    site_dir: SiteDirectory
    mongod_root: Path
    mongod_port: int
    mongod_pid: int
    replica_set: ReplicaSet | None = None
    rabbit: RabbitCluster | None = None
    netns: Partition | None = None  # where the launcher runs, if in a namespace
    agent: asyncio.subprocess.Process | None = None
    launcher: asyncio.subprocess.Process | None = None
    gateway: asyncio.subprocess.Process | None = None
    gateway_port: int = 0
    spawned: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def _spawn(
        self, *args: str, prefix: list[str] | None = None, settings: Settings | None = None
    ) -> asyncio.subprocess.Process:
        command = [*(prefix or []), sys.executable, "-m", "balsam_mq.cli", *args]
        (proc,) = await start_processes(settings or self.settings, [command], self.site_dir.logs)
        self.spawned.append(proc)
        return proc

    async def start_agent(self) -> None:
        self.agent = await self._spawn("site", "agent", str(self.site_dir.path))

    async def start_launcher(self) -> None:
        prefix, settings = None, None
        if self.netns is not None:  # the services through the namespace's link
            prefix, host = self.netns.prefix(), self.netns.host_ip
            settings = self.settings.model_copy(
                update={
                    "mongodb_url": f"mongodb://{host}:{self.mongod_port}/?directConnection=true",
                    "amqp_url": f"amqp://guest:guest@{host}:{stack.AMQP_PORT}/",
                }
            )
        self.launcher = await self._spawn(
            "launcher",
            "--site",
            SITE,
            "--wall-time",
            "120",
            "--cores-per-node",
            str(SLOTS),
            prefix=prefix,
            settings=settings,
        )

    async def start_gateway(self) -> str:
        """The gateway's URL once it answers."""
        if not self.gateway_port:
            self.gateway_port = free_port()
        self.gateway = await self._spawn("gateway", "--port", str(self.gateway_port))
        url = f"http://127.0.0.1:{self.gateway_port}"
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        return url
                await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not start (see its log in the site's logs)")

    async def kill(self, proc: asyncio.subprocess.Process | None) -> None:
        if proc is not None and proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def kill_mongod(self) -> None:
        await asyncio.to_thread(stack.stop_mongod, self.mongod_pid, crash=True)

    async def start_mongod(self) -> None:
        self.mongod_pid = await asyncio.to_thread(_mongod, self.mongod_root, self.mongod_port)

    async def stop(self) -> None:
        for proc in self.spawned:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.spawned:
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


def _mongod(root: Path, port: int) -> int:
    (root / "data").mkdir(parents=True, exist_ok=True)
    process = stack.start_mongod(
        mongod=stack.find_mongod(), dbpath=root / "data", port=port, logpath=root / "mongod.log"
    )
    return process.pid


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise SystemExit("the broker scenarios need rabbitmqctl (the local RabbitMQ node)")
    subprocess.run([ctl, *args], check=True, capture_output=True, timeout=120)


# --- the faults: each returns when the fault is over (its service back) ------------------

Fault = Callable[[Stack, random.Random], Awaitable[None]]


def broker_outage(seconds: float) -> Fault:
    async def fault(s: Stack, rng: random.Random) -> None:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            await asyncio.sleep(seconds)
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")

    return fault


def mongod_crash(seconds: float) -> Fault:
    async def fault(s: Stack, rng: random.Random) -> None:
        await s.kill_mongod()
        await asyncio.sleep(seconds)
        await s.start_mongod()

    return fault


async def agent_kills(s: Stack, rng: random.Random) -> None:
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await s.kill(s.agent)
        await s.start_agent()


async def launcher_kills(s: Stack, rng: random.Random) -> None:
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await s.kill(s.launcher)
        await s.start_launcher()


async def gateway_kills(s: Stack, rng: random.Random) -> None:
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        await s.kill(s.gateway)
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        await s.start_gateway()


async def no_fault(s: Stack, rng: random.Random) -> None:
    return None


async def primary_kill(s: Stack, rng: random.Random) -> None:
    assert s.replica_set is not None
    rs = s.replica_set
    primary = await asyncio.to_thread(rs.primary)
    await asyncio.to_thread(rs.kill, primary)
    await asyncio.to_thread(rs.primary)  # an election among the two left
    await asyncio.sleep(10)
    await asyncio.to_thread(rs.member, primary)  # back, as a secondary


async def cluster_node_stop(s: Stack, rng: random.Random) -> None:
    assert s.rabbit is not None
    node = s.rabbit.nodes[0]  # the first address: every process is connected to it
    await asyncio.to_thread(node.stop)
    await asyncio.sleep(10)
    await asyncio.to_thread(node.start)  # back in the cluster, on its data


async def link_cut(s: Stack, rng: random.Random) -> None:
    assert s.netns is not None
    await asyncio.to_thread(s.netns.cut)
    await asyncio.sleep(30)
    await asyncio.to_thread(s.netns.restore)


@dataclass(frozen=True)
class Scenario:
    fault: Fault
    bad_hooks: bool = False  # add the jobs whose hooks misbehave
    replica_set: bool = False  # on three mongod members instead of one
    cluster: bool = False  # on three RabbitMQ nodes with quorum queues (and a replica set)
    partition: bool = False  # the launcher in a network namespace of its own
    remote: bool = False  # jobs submitted and awaited through a gateway


SCENARIOS: dict[str, Scenario] = {
    "broker-10s": Scenario(broker_outage(10)),
    "broker-60s": Scenario(broker_outage(60)),
    "mongod-10s": Scenario(mongod_crash(10)),
    "mongod-60s": Scenario(mongod_crash(60)),
    "agent-kills": Scenario(agent_kills),
    "launcher-kills": Scenario(launcher_kills),
    "bad-hooks": Scenario(no_fault, bad_hooks=True),
    "primary-kill": Scenario(primary_kill, replica_set=True),
    "cluster-node-stop": Scenario(cluster_node_stop, replica_set=True, cluster=True),
    "cluster-primary-kill": Scenario(primary_kill, replica_set=True, cluster=True),
    "gateway-kills": Scenario(gateway_kills, remote=True),
    "partition": Scenario(link_cut, partition=True),
}


@dataclass
class Row:
    scenario: str
    jobs: int = 0
    finished: int = 0
    failed_intended: int = 0
    failed_other: int = 0
    stuck: int = 0
    repeated: int = 0
    broken: int = 0
    recovery_s: float | None = None
    makespan_s: float = 0.0
    note: str = ""
    reasons: dict[str, int] = field(default_factory=dict)  # why jobs failed, by count


async def submit(n: int, bad: bool) -> tuple[list[int], set[int]]:
    """The mixed workload (and the bad-hook jobs): all ids, and those meant to fail."""
    for app in (Shell, Add, Post, BadHook):
        await app.sync()
    parents = n // 10
    plain = [
        (
            Shell.submit(f"s/{i}", save=False)
            if i % 2
            else Add.submit(f"a/{i}", x=i, y=1, save=False)
        )
        for i in range(n - 2 * parents)
    ]
    posts = [Post.submit(f"p/{i}", n=i, save=False) for i in range(parents)]
    jobs: list[Any] = await Job.objects.bulk_create([*plain, *posts])
    children = await Job.objects.bulk_create(
        [
            Shell.submit(f"c/{i}", parent_ids=[parent.id], save=False)
            for i, parent in enumerate(jobs[len(plain) :])
        ]
    )
    ids = [j.id for j in [*jobs, *children]]
    intended: set[int] = set()
    if bad:
        bad_jobs = await Job.objects.bulk_create(
            [
                BadHook.submit(f"bad/{kind}/{i}", kind=kind, save=False)
                for kind in BAD_KINDS
                for i in range(5)
            ]
        )
        intended = {j.id for j in bad_jobs if j.id is not None}
        ids += sorted(intended)
    return ids, intended


async def await_remotely(settings: Settings, ids: list[int]) -> int:
    """Every job awaited with ``as_completed`` through the gateway: how many ended (each
    counted once: a job handed out twice is an error)."""
    seen: set[int] = set()
    async with balsam_mq.connect(settings):
        jobs = await Job.objects.filter(id__in=ids).all()
        async for job in Job.objects.as_completed(jobs):
            if job.id in seen:
                raise RuntimeError(f"as_completed handed out job {job.id} twice")
            assert job.id is not None
            seen.add(job.id)
    return len(seen)


async def ended(store: Store, ids: list[int]) -> dict[int, JobState] | None:
    """States of the jobs, or ``None`` while MongoDB cannot answer."""
    try:
        return await store.jobs.states(ids)
    except Exception:
        return None


def terminal(states: dict[int, JobState]) -> int:
    return sum(s in (JobState.JOB_FINISHED, JobState.FAILED) for s in states.values())


async def run_scenario(name: str, n: int, seed: int, tmp: Path, port: int) -> Row:
    scenario = SCENARIOS[name]
    rng = random.Random(seed)
    row = Row(name)
    root = tmp / name
    rs: ReplicaSet | None = None
    rabbit: RabbitCluster | None = None
    overrides: dict[str, Any] = {}
    if scenario.cluster:
        rabbit = await asyncio.to_thread(start_rabbit_cluster, root / "rabbit")
        overrides = {"amqp_url": rabbit.url, "queue_type": "quorum"}
    if scenario.replica_set:
        rs = await asyncio.to_thread(start_replica_set, root / "replica-set")
        pid, url = 0, rs.url
    else:
        pid = await asyncio.to_thread(_mongod, root / "mongod", port)
        url = stack.mongo_url(port)
    async with (
        bench_settings(url, **overrides) as settings,
        open_store(url, settings.db, timeout_ms=2000) as store,
        contextlib.AsyncExitStack() as scope,
    ):
        netns = None
        if scenario.partition:
            netns = await scope.enter_async_context(partition([port, stack.AMQP_PORT]))
        owner = REMOTE_USER if scenario.remote else ""
        site = await store.sites.create(Site(name=SITE, path=str(root / "site"), owner=owner))
        assert site.id is not None
        site_dir = SiteDirectory.create(root / "site", name=SITE, site_id=site.id)
        site_dir.settings_file.write_text(site_dir.settings_file.read_text() + SITE_SETTINGS)
        s = Stack(settings, site_dir, root / "mongod", port, pid, replica_set=rs, rabbit=rabbit)
        s.netns = netns
        awaiter: asyncio.Task[int] | None = None
        try:
            client_settings = settings
            if scenario.remote:
                await store.users.create(REMOTE_USER)
                token = (await store.users.issue_token(REMOTE_USER)).text
                url = await s.start_gateway()
                client_settings = settings.model_copy(update={"gateway_url": url, "token": token})
            async with balsam_mq.connect(client_settings):
                ids, intended = await submit(n, scenario.bad_hooks)
            row.jobs = len(ids)
            if scenario.remote:
                awaiter = asyncio.create_task(await_remotely(client_settings, ids))
            t0 = time.monotonic()
            await s.start_agent()
            await s.start_launcher()
            while (states := await ended(store, ids)) is None or terminal(states) < len(ids) // 5:
                await asyncio.sleep(0.2)
            await scenario.fault(s, rng)
            fault_over = time.monotonic()
            before = terminal(states)
            deadline = fault_over + GIVE_UP_S
            while time.monotonic() < deadline:
                states = await ended(store, ids)
                if states is not None:
                    done = terminal(states)
                    if row.recovery_s is None and (done > before or done == len(ids)):
                        row.recovery_s = time.monotonic() - fault_over
                    if done == len(ids):
                        break
                await asyncio.sleep(0.2)
            row.makespan_s = time.monotonic() - t0
            if awaiter is not None:
                try:
                    seen = await asyncio.wait_for(awaiter, 120)
                except Exception as exc:
                    row.note = f"the remote client failed: {exc!r}"
                else:
                    if seen != len(ids):
                        row.note = f"the remote client saw {seen} of {len(ids)} jobs end"
            states = await store.jobs.states(ids)
            report = audit(await store.events.history(ids), states)
            row.finished = report.final.get("JOB_FINISHED", 0)
            failed = {i for i, st in states.items() if st is JobState.FAILED}
            row.failed_intended = len(failed & intended)
            row.failed_other = len(failed - intended)
            row.stuck = len(report.stuck) + (len(ids) - len(states))
            row.repeated = report.repeated
            row.broken = len(report.problems) - len(report.stuck)
            for job in await store.jobs.get_many(sorted(failed)):
                reason = str(job.state_data.get("reason", "?")).split(":")[0][:70]
                row.reasons[reason] = row.reasons.get(reason, 0) + 1
            wrong = [i for i in intended if states.get(i) is not JobState.FAILED]
            if wrong:
                row.note = f"{len(wrong)} bad-hook jobs did not fail"
            if report.problems:
                row.note = (row.note + "; " if row.note else "") + report.describe(3).replace(
                    "\n", "; "
                )
        finally:
            if awaiter is not None and not awaiter.done():
                awaiter.cancel()
            await s.stop()
            await store.client.drop_database(settings.db)
    if rs is not None:
        rs.stop()
    else:
        stack.stop_mongod(s.mongod_pid)
    if rabbit is not None:
        await asyncio.to_thread(rabbit.stop)
    return row


def print_row(row: Row) -> None:
    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
    print(
        f"{row.scenario:15s} {row.jobs:>5d} {row.finished:>8d} {row.failed_intended:>8d} "
        f"{row.failed_other:>7d} {row.stuck:>6d} {row.repeated:>8d} {row.broken:>7d} "
        f"{recovery:>10s} {row.makespan_s:>9.1f}  {row.note}",
        flush=True,
    )
    for reason, count in sorted(row.reasons.items()):
        print(f"{'':15s} {count:>5d} failed: {reason}", flush=True)


async def main(n: int, only: list[str], seed: int, keep: Path | None) -> None:
    names = only or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    print(f"fault campaign: {n:,} mixed jobs per scenario, {SLOTS} launcher slots, seed {seed}")
    print(
        f"{'scenario':15s} {'jobs':>5s} {'finished':>8s} {'intended':>8s} {'failed':>7s} "
        f"{'stuck':>6s} {'repeated':>8s} {'broken':>7s} {'recovery s':>10s} {'makespan':>9s}"
    )
    with tempfile.TemporaryDirectory(prefix="balsam-faults-") as tmp:
        root = keep or Path(tmp)
        for i, name in enumerate(names):
            print_row(await run_scenario(name, n, seed + i, root, free_port()))
    if keep is not None:
        print(f"site directories and logs kept in {keep}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000, help="mixed jobs per scenario")
    p.add_argument("--only", nargs="*", default=[], help=f"scenarios ({', '.join(SCENARIOS)})")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", type=Path, help="keep each scenario's site and logs in this directory")
    a = p.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(a.jobs, a.only, a.seed, a.keep))
