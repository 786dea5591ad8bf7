"""Benchmark environment: a throwaway mongod (unless BALSAM_MONGODB_URL is set), RabbitMQ,
a fresh database and namespace that are removed afterwards, and scratch directories
removed when the whole bench ends."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from balsam_mq import stack
from balsam_mq.settings import ENV_PREFIX, Settings, load_settings

HERE = Path(__file__).resolve().parent
# what a process needs to reach the same database and namespace
_CONNECTION_FIELDS = ("mongodb_url", "amqp_url", "db", "namespace", "queue_type")
# the root of the scratch directories, kept by the outermost bench process
SCRATCH_ENV = "BALSAM_BENCH_SCRATCH"


@contextlib.contextmanager
def scratch_root() -> Iterator[Path]:
    """The root under which every run makes its directories, removed when the bench ends
    rather than run by run (a bench started inside another one uses the outer root).

    A local file system may make a file cost what was deleted before it: ext4 without a
    journal (as on the machine of ``docs/performance.md``) skips, one by one, every inode
    freed in the last half minute (five, while its table block is unwritten), so each
    workdir made right after thousands were removed pays for that scan: up to 1.4 ms
    there, against 40 µs. Keeping every run's files until the end keeps each run out of
    the cleanup of the one before; what was removed before the bench started shows in
    :func:`file_creation_us`.
    """
    if os.environ.get(SCRATCH_ENV):
        outer = Path(os.environ[SCRATCH_ENV])
        outer.mkdir(parents=True, exist_ok=True)
        yield outer
        return
    root = Path(tempfile.mkdtemp(prefix="balsam-bench-scratch-"))
    os.environ[SCRATCH_ENV] = str(root)
    try:
        yield root
    finally:
        del os.environ[SCRATCH_ENV]
        shutil.rmtree(root, ignore_errors=True)


def scratch(prefix: str) -> Path:
    """A new directory for one run, under the bench's :func:`scratch_root`."""
    root = os.environ.get(SCRATCH_ENV)
    if not root:
        raise RuntimeError("scratch() must be called inside scratch_root()")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def file_creation_us(samples: int = 200) -> float:
    """The median time, in µs, to make a directory with a file in it (a job's workdir and
    its job.out) in a new :func:`scratch` directory: the file system's state as the
    bench starts."""
    where = scratch("probe-")
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        os.mkdir(where / str(i))
        os.close(os.open(where / str(i) / "job.out", os.O_WRONLY | os.O_CREAT, 0o644))
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def mongo_url() -> Iterator[str]:
    if os.environ.get("BALSAM_MONGODB_URL"):
        yield os.environ["BALSAM_MONGODB_URL"]
        return
    with tempfile.TemporaryDirectory(prefix="balsam-bench-") as tmp:
        port = free_port()
        (Path(tmp) / "data").mkdir()
        proc = stack.start_mongod(
            mongod=stack.find_mongod(),
            dbpath=Path(tmp) / "data",
            port=port,
            logpath=Path(tmp) / "mongod.log",
        )
        try:
            yield stack.mongo_url(port)
        finally:
            stack.stop_mongod(proc.pid)


@contextlib.asynccontextmanager
async def bench_settings(url: str, **overrides: Any) -> AsyncIterator[Settings]:
    """A fresh database and namespace on the MongoDB at ``url`` (``overrides``: other
    settings, e.g. ``amqp_url`` and ``queue_type`` of a cluster)."""
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(
        mongodb_url=url, db=f"bench_{tag}", namespace=f"bench{tag}", **overrides
    )
    stack.ensure_rabbitmq(settings.amqp_url)
    yield settings


def process_env(settings: Settings) -> dict[str, str]:
    """The environment of a balsam_mq process (CLI, agent, launcher) on ``settings``'s
    database and namespace; the bench helpers importable (for stored app classes)."""
    return {
        **os.environ,
        **{ENV_PREFIX + f.upper(): str(getattr(settings, f)) for f in _CONNECTION_FIELDS},
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


async def start_processes(
    settings: Settings, commands: list[list[str]], logs: Path
) -> list[asyncio.subprocess.Process]:
    """Each command in a session of its own, its output in ``logs/proc<i>.out``."""
    procs = []
    for i, command in enumerate(commands):
        with open(logs / f"proc{i}.out", "ab") as out:
            procs.append(
                await asyncio.create_subprocess_exec(
                    *command,
                    env=process_env(settings),
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            )
    return procs


async def stop_processes(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM to those still running, then wait for every one."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        await proc.wait()


def children(pid: int) -> list[int]:
    """Every process below ``pid`` (its helpers, and theirs)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        path = Path(f"/proc/{parent}/task/{parent}/children")
        kids = [int(k) for k in path.read_text().split()] if path.exists() else []
        found += kids
        todo += kids
    return found


def named(command: str) -> list[int]:
    """The processes whose command name (``/proc/<pid>/comm``) is ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == command:
                    found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """User and system CPU seconds the processes ``pids`` have used so far (those still
    running; Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            # the fields after the command name, which may hold spaces: see proc(5)
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def services_main(doc: str, start: Callable[[Path], str], stop: Callable[[Path], None]) -> None:
    """The command line of a script that starts services keeping their state in DIR
    (``start DIR`` prints the URL to use) and stops them (``stop DIR``)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("dir", type=Path)
    a = p.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    if a.action == "start":
        print(start(a.dir))
    else:
        stop(a.dir)
