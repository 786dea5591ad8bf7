"""Running a launcher as a process: its nodes and executor, the services, stop on SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import anyio

from balsam_mq import heap
from balsam_mq.broker import build_topology, open_amqp
from balsam_mq.domain import Site
from balsam_mq.launcher.config import LauncherConfig, LauncherSettings, parse_launcher_settings
from balsam_mq.launcher.nodes import NodePool, discover_nodes
from balsam_mq.launcher.pilot import Pilot, PilotReport
from balsam_mq.launcher.runs import Executor, LocalExecutor
from balsam_mq.launcher.warm_pool import WarmPool
from balsam_mq.launcher.workers import MpiWorkers
from balsam_mq.settings import Settings
from balsam_mq.store import Store, open_store

log = logging.getLogger("balsam_mq.launcher")


async def build_allocation(config: LauncherConfig) -> tuple[NodePool, Executor]:
    """The nodes and how jobs reach them.

    Serial mode on several nodes starts one MPI worker per node; otherwise jobs start
    from this process (directly, or through mpiexec/srun in MPI mode).
    """
    s = config.settings
    nodes = discover_nodes(
        cores_per_node=s.cores_per_node, gpus_per_node=s.gpus_per_node, limit=config.nodes
    )
    if config.job_mode == "serial" and len(nodes) > 1:
        hostnames = [n.hostname for n in nodes]
        workers = MpiWorkers(
            count=len(nodes),
            hosts=hostnames if len(set(hostnames)) == len(hostnames) else None,
            app_run=s.app_run,
            mpiexec=s.mpiexec,
            cores_per_node=s.cores_per_node or nodes[0].cores,
            gpus_per_node=s.gpus_per_node,
        )
        return NodePool(await workers.start()), workers
    warm: WarmPool | None = None
    if s.warm_pool:
        warm = WarmPool()
        try:
            await warm.start()
        except Exception as exc:  # the slow path still works
            log.warning("warm pool unavailable (%s): a fresh interpreter per Python job", exc)
            await warm.close()
            warm = None
    return NodePool(nodes), LocalExecutor(warm, kill_grace=s.kill_grace_s)


async def resolve_site(store: Store, site: str) -> Site:
    """A site by name, or by id (digits) when no site has that name (``sdk.refs``)."""
    from balsam_mq.sdk.refs import find_site

    return await find_site(store.queries.find, site)


def site_launcher_settings(site_path: Path) -> LauncherSettings:
    """The ``launcher:`` section of the site's settings.yml (defaults if there is none)."""
    from balsam_mq.site.config import load_config

    settings_file = site_path / "settings.yml"
    if not settings_file.is_file():
        return LauncherSettings()
    section = load_config(settings_file).section("launcher")
    return parse_launcher_settings(section, source=str(settings_file))


async def run_launcher(settings: Settings, config: LauncherConfig) -> PilotReport:
    """Run one pilot until its wall time, idle timeout or SIGTERM/SIGINT."""
    async with (
        open_store(settings.mongodb_url, settings.db) as store,
        open_amqp(settings.amqp_url) as amqp,
    ):
        pool, executor = await build_allocation(config)
        pilot = Pilot(
            store,
            amqp,
            build_topology(settings.namespace, quorum=settings.quorum),
            config,
            pool=pool,
            executor=executor,
        )

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    log.info("received %s: terminating running jobs", name)
                    pilot.request_stop(f"launcher received {name}")

        heap.settle()
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signal)
            report = await pilot.run()
            tg.cancel_scope.cancel()
        return report
