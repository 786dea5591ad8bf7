"""The demo run: local stack, a site, its agent and a launcher, a few hundred jobs, a summary.

Everything it starts it stops again (``keep=True`` leaves the site, its agent's data
and the stack for exploring). Progress is shown live; the summary shows Python
results, values parsed by a postprocess hook, counts by state, makespan and jobs/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from balsam_mq import Job, Site, stack
from balsam_mq.demo.apps import DEMO_APPS, Adder, Energy, Hello
from balsam_mq.domain import TERMINAL_STATES, JobState
from balsam_mq.errors import BalsamError
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None  # where the site goes; default: a temporary directory
    keep: bool = False
    hello: int = 100
    adds: int = 100
    energies: int = 60
    cores: int = 4  # launcher slots on this host
    timeout: float = 120.0  # give up if the jobs are not all done by then


@dataclass
class DemoReport:
    site: str
    site_path: Path
    total: int
    counts: dict[str, int]
    makespan: float
    sums: list[tuple[float, float, float]] = field(default_factory=list)
    energies: list[tuple[int, float | None]] = field(default_factory=list)
    kept: bool = False

    @property
    def jobs_per_second(self) -> float:
        return self.total / self.makespan if self.makespan else 0.0


class _Processes:
    """The agent and launcher subprocesses, their logs, and stopping them."""

    def __init__(self, settings: Settings, site: SiteDirectory, name: str, cores: int) -> None:
        self.env = {
            **os.environ,
            "BALSAM_MONGODB_URL": settings.mongodb_url,
            "BALSAM_AMQP_URL": settings.amqp_url,
            "BALSAM_DB": settings.db,
            "BALSAM_NAMESPACE": settings.namespace,
        }
        cli = [sys.executable, "-m", "balsam_mq.cli"]
        self.commands = {
            "agent": [*cli, "site", "agent", str(site.path)],
            "launcher": [
                *cli,
                "launcher",
                "--site",
                name,
                "--wall-time",
                "30",
                "--cores-per-node",
                str(cores),
                "--idle-timeout",
                "120",
            ],
        }
        self.logs = site.logs
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self) -> None:
        for name, command in self.commands.items():
            out = await anyio.open_file(self.logs / f"{name}.out", "ab")
            try:
                self.procs[name] = await asyncio.create_subprocess_exec(
                    *command,
                    env=self.env,
                    stdout=out.wrapped,
                    stderr=out.wrapped,
                    start_new_session=True,
                )
            finally:
                await out.aclose()

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.returncode is not None:
                raise BalsamError(
                    f"the demo's {name} exited with code {proc.returncode}; "
                    f"see {self.logs / (name + '.out')}"
                )

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def run_demo(settings: Settings, options: DemoOptions, out: Console) -> DemoReport:
    """Run the whole demo; see the module docstring."""
    before = await anyio.to_thread.run_sync(stack.status, settings)
    status = await anyio.to_thread.run_sync(stack.up, settings)
    for action in status.actions:
        out.print(f"[dim]•[/] {action}")
    started_stack = not before.ok
    path = options.directory or Path(tempfile.mkdtemp(prefix="balsam-demo-"))
    processes: _Processes | None = None
    try:
        from balsam_mq import connect

        async with connect(settings):
            site, site_dir = await _create_site(path)
            out.print(f"[bold]site[/] {site.name!r} (id {site.id}) at {site_dir.path}")
            for app in DEMO_APPS:
                app.site = site.name
                await app.sync()
            out.print(f"[bold]apps[/] {', '.join(a.__name__ for a in DEMO_APPS)} synced")
            processes = _Processes(settings, site_dir, site.name, options.cores)
            await processes.start()
            out.print(f"[bold]started[/] a site agent and a launcher (logs in {site_dir.logs})")
            report = await _submit_and_follow(site, site_dir, options, processes, out)
            await processes.stop()
            processes = None
            if not options.keep:
                await site.delete(force=True)
            report.kept = options.keep
            return report
    finally:
        if processes is not None:
            await processes.stop()
        if not options.keep:
            if options.directory is None:
                shutil.rmtree(path, ignore_errors=True)
            if started_stack:
                await anyio.to_thread.run_sync(stack.down, settings)


async def _create_site(path: Path) -> tuple[Site, SiteDirectory]:
    name = f"demo-{secrets.token_hex(3)}"
    site = await Site.objects.create(name=name, path=str(path / "site"))
    assert site.id is not None
    return site, SiteDirectory.create(path / "site", name=name, site_id=site.id)


async def _submit_and_follow(
    site: Site,
    site_dir: SiteDirectory,
    options: DemoOptions,
    processes: _Processes,
    out: Console,
) -> DemoReport:
    t0 = time.perf_counter()
    first = await Job.objects.bulk_create(
        [Hello.submit(f"hello/{i}", name=f"world {i}", save=False) for i in range(options.hello)]
        + [Adder.submit(f"add/{i}", x=i, y=i * i, save=False) for i in range(options.adds)]
    )
    hellos = first[: options.hello]
    adds = first[options.hello :]
    energies = await Job.objects.bulk_create(
        [
            Energy.submit(f"energy/{i}", n=i, parent_ids=[hellos[i % len(hellos)].id], save=False)
            for i in range(options.energies)
        ]
    )
    total_job = await Adder.submit("total", x=0, y=0, parent_ids=[j.id for j in energies])
    ids = [j.id for j in [*first, *energies, total_job] if j.id is not None]
    out.print(
        f"[bold]submitted[/] {len(ids)} jobs: {options.hello} shell, {options.adds} Python, "
        f"{options.energies} postprocessed (each after a shell job), 1 waiting for all of those"
    )
    counts = await _follow(site, ids, options, processes, out)
    makespan = time.perf_counter() - t0
    sums = []
    for job in adds[:5]:
        x, y = job.parameters["x"], job.parameters["y"]
        sums.append((x, y, await job.result(timeout=30)))
    parsed: list[tuple[int, float | None]] = []
    for job in energies[:5]:
        await job.refresh()
        parsed.append((job.parameters["n"], job.data.get("energy_ev")))
    return DemoReport(
        site=site.name,
        site_path=site_dir.path,
        total=len(ids),
        counts=counts,
        makespan=makespan,
        sums=sums,
        energies=parsed,
    )


async def _follow(
    site: Site,
    ids: list[int],
    options: DemoOptions,
    processes: _Processes,
    out: Console,
) -> dict[str, int]:
    terminal = {s.value for s in TERMINAL_STATES}
    deadline = time.monotonic() + options.timeout
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
        console=out,
        disable=not out.is_terminal,
    ) as progress:
        task = progress.add_task("jobs", total=len(ids), states="")
        last_line = 0.0
        while True:
            states = await Job.objects.filter(id=ids).values("state")
            counts: dict[str, Any] = Counter(s["state"] for s in states)
            done = sum(n for s, n in counts.items() if s in terminal)
            summary = "  ".join(f"{s} {n}" for s, n in sorted(counts.items()))
            progress.update(task, completed=done, states=summary)
            if not out.is_terminal and time.monotonic() - last_line > 2:
                out.print(f"{done}/{len(ids)} done: {summary}")
                last_line = time.monotonic()
            if done == len(ids):
                return dict(counts)
            processes.check()
            if time.monotonic() > deadline:
                raise BalsamError(
                    f"demo jobs not done after {options.timeout:g} s ({summary}); "
                    f"see the logs in {processes.logs}"
                )
            await asyncio.sleep(0.25)


def print_report(report: DemoReport, out: Console) -> None:
    out.print()
    out.print("[bold]Python results[/] (job.result()):")
    for x, y, s in report.sums:
        out.print(f"  Adder({x}, {y}) = {s}")
    out.print("[bold]parsed by Energy.postprocess[/] (job.data['energy_ev']):")
    for n, energy in report.energies:
        out.print(f"  n = {n}: {energy} eV")
    states = ", ".join(f"{s} {n}" for s, n in sorted(report.counts.items()))
    out.print(f"[bold]jobs by state[/]: {states}")
    out.print(
        f"[bold]makespan[/] {report.makespan:.1f} s for {report.total} jobs: "
        f"{report.jobs_per_second:.1f} jobs/s"
    )
    if report.kept:
        out.print(
            f"site {report.site!r} kept at {report.site_path}: explore it with "
            f"`balsam-mq job ls --site {report.site}`; stop the stack with `balsam-mq down`"
        )


__all__ = ["DemoOptions", "DemoReport", "JobState", "print_report", "run_demo"]
