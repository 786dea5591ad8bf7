"""Launcher test helpers: a site with apps and runnable jobs (World), pilots, waiting for states.

Jobs are made runnable the way the site agent would (READY → STAGED_IN → PREPROCESSED)
and the relay publishes their events, so the pilot consumes the real runnable queue.
``run()`` apps are classes built in a throwaway ``__main__`` namespace: dill ships them
by value, so the child interpreter needs nothing from the test modules.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from support.driving import drive_jobs

from balsam_mq.broker import Topology
from balsam_mq.domain import App, Job, JobState, ParameterSpec, Resources, Site
from balsam_mq.domain.serialization import serialize_app, serialize_parameters
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings
from balsam_mq.launcher.nodes import Node, NodePool
from balsam_mq.launcher.pilot import Pilot, PilotReport
from balsam_mq.launcher.runs import Executor, LocalExecutor
from balsam_mq.store import Store

S = JobState


def python_app_class(source: str, name: str) -> type:
    """A class defined by ``source`` as if in a script's ``__main__`` (serialized by value)."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(textwrap.dedent(source), namespace)
    cls: type = namespace[name]
    return cls


class World:
    """A site with its apps and jobs, and pilots run against it."""

    def __init__(
        self, store: Store, amqp: AbstractRobustConnection, topology: Topology, root: Path
    ) -> None:
        self.store = store
        self.amqp = amqp
        self.topology = topology
        self.root = root
        self.site: Site | None = None
        self.pilots: list[tuple[Pilot, asyncio.Task[PilotReport]]] = []

    @property
    def site_id(self) -> int:
        assert self.site is not None and self.site.id is not None
        return self.site.id

    @property
    def data(self) -> Path:
        return self.root / "site" / "data"

    async def app(
        self,
        name: str,
        *,
        command_template: str | None = None,
        cls: type | None = None,
        parameters: dict[str, ParameterSpec] | None = None,
        environment_variables: dict[str, str] | None = None,
    ) -> App:
        return await self.store.apps.upsert(
            App(
                site_id=self.site_id,
                name=name,
                command_template=command_template,
                serialized_class=serialize_app(cls, what=name) if cls is not None else "",
                parameters=parameters or {},
                environment_variables=environment_variables or {},
            )
        )

    async def jobs(
        self,
        app: App,
        params: Sequence[dict[str, Any]],
        *,
        tags: dict[str, str] | None = None,
        **resources: Any,
    ) -> list[int]:
        """Runnable (PREPROCESSED) jobs of ``app``, one per parameter dict."""
        assert app.id is not None
        created = await self.store.jobs.create_many(
            [
                Job(
                    app_id=app.id,
                    site_id=self.site_id,
                    workdir=f"{app.name}/{i}-{id(p)}",
                    parameters=serialize_parameters(p),
                    tags=tags or {},
                    resources=Resources(**resources),
                )
                for i, p in enumerate(params)
            ]
        )
        ids = [j.id for j in created if j.id is not None]
        await drive_jobs(self.store, ids, S.PREPROCESSED)
        return ids

    def config(self, *, wall_time_min: float = 5.0, **kwargs: Any) -> LauncherConfig:
        settings = {"heartbeat_s": 1.0, "kill_grace_s": 1.0}
        settings.update(kwargs.pop("settings", {}))
        return LauncherConfig(
            site_id=self.site_id,
            data_dir=self.data,
            wall_time_min=wall_time_min,
            settings=LauncherSettings(**settings),
            **kwargs,
        )

    def start_pilot(
        self,
        config: LauncherConfig,
        *,
        nodes: int = 1,
        cores: int = 4,
        gpus: int = 0,
        executor: Executor | None = None,
        pool: NodePool | None = None,
    ) -> Pilot:
        pool = pool or NodePool(
            [Node(i, f"node{i}", cores, tuple(str(g) for g in range(gpus))) for i in range(nodes)]
        )
        pilot = Pilot(
            self.store,
            self.amqp,
            self.topology,
            config,
            pool=pool,
            executor=executor or LocalExecutor(),
        )
        self.pilots.append((pilot, asyncio.create_task(pilot.run())))
        return pilot

    async def finish(self, pilot: Pilot, reason: str = "test over") -> PilotReport:
        task = next(t for p, t in self.pilots if p is pilot)
        pilot.stop_claiming(reason)
        return await asyncio.wait_for(task, 60)
