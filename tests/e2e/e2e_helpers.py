"""End-to-end helpers: the site and its launchers (E2E), waiting for states and files."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from aio_pika.abc import AbstractRobustConnection
from support.waiting import until

from balsam_mq.broker import Topology
from balsam_mq.domain import JobState, Site
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings
from balsam_mq.launcher.main import build_allocation
from balsam_mq.launcher.pilot import Pilot, PilotReport
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store

S = JobState
SITE = "e2e"

# short heartbeats and a quick reaper: a killed launcher is noticed within seconds
SETTINGS_YML = """
reaper:
  grace_s: 3
  interval_s: 0.5
launcher:
  heartbeat_s: 0.5
  kill_grace_s: 1
  unfit_delay_s: 1
"""


async def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    """Wait until a job has created ``path`` (nothing announces a file: polled)."""

    async def exists() -> bool:
        return await anyio.Path(path).exists()

    await until(exists, timeout, interval=0.02)


class E2E:
    """The site, its agent, and the launchers a test starts."""

    def __init__(
        self,
        store: Store,
        amqp: AbstractRobustConnection,
        topology: Topology,
        settings: Settings,
        site: Site,
        site_dir: SiteDirectory,
    ) -> None:
        self.store = store
        self.amqp = amqp
        self.topology = topology
        self.settings = settings
        self.site = site
        self.site_dir = site_dir
        self.pilots: list[tuple[Pilot, asyncio.Task[PilotReport]]] = []
        self.processes: list[asyncio.subprocess.Process] = []

    @property
    def site_id(self) -> int:
        assert self.site.id is not None
        return self.site.id

    def config(self, **kwargs: Any) -> LauncherConfig:
        settings = LauncherSettings(
            heartbeat_s=0.5, kill_grace_s=1, unfit_delay_s=1, **kwargs.pop("settings", {})
        )
        kwargs.setdefault("wall_time_min", 5)
        return LauncherConfig(
            site_id=self.site_id, data_dir=self.site_dir.data, settings=settings, **kwargs
        )

    async def start_pilot(self, **kwargs: Any) -> Pilot:
        """A launcher in this process, built the way `balsam-mq launcher` builds it."""
        config = self.config(**kwargs)
        pool, executor = await build_allocation(config)
        pilot = Pilot(self.store, self.amqp, self.topology, config, pool=pool, executor=executor)
        self.pilots.append((pilot, asyncio.create_task(pilot.run())))
        return pilot

    async def finish(self, pilot: Pilot) -> PilotReport:
        task = next(t for p, t in self.pilots if p is pilot)
        pilot.stop_claiming("test over")
        return await asyncio.wait_for(task, 60)

    async def start_process(self, *args: str) -> asyncio.subprocess.Process:
        """`balsam-mq launcher` as a separate process."""
        env = {
            **os.environ,
            "BALSAM_MONGODB_URL": self.settings.mongodb_url,
            "BALSAM_AMQP_URL": self.settings.amqp_url,
            "BALSAM_DB": self.settings.db,
            "BALSAM_NAMESPACE": self.settings.namespace,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "balsam_mq.cli", "launcher", "--site", SITE, *args,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.processes.append(process)
        return process

    async def running_events(self, ids: Sequence[int]) -> dict[int, int]:
        counts = {i: 0 for i in ids}
        async for event in self.store.events.iterate(site_id=self.site_id, to_state="RUNNING"):
            if event.job_id in counts:
                counts[event.job_id] += 1
        return counts
