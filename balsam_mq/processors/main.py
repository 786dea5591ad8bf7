"""Running a site agent as a process: open services, log to the site, stop on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import anyio

from balsam_mq.broker import build_topology, open_amqp
from balsam_mq.broker.connection import quiet_reconnection_logs
from balsam_mq.processors.agent import SiteAgent
from balsam_mq.settings import Settings
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import open_store

log = logging.getLogger("balsam_mq.agent")


def configure_logging(site_dir: SiteDirectory, level: str) -> None:
    site_dir.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(site_dir.logs / "agent.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    quiet_reconnection_logs()


async def run_agent(settings: Settings, path: Path, *, grace: float = 10.0) -> None:
    """Run the agent of the site at ``path`` until SIGINT or SIGTERM.

    On a signal consumers stop taking messages and the batches in hand commit within
    ``grace`` seconds; anything not committed by then stays unacknowledged and is
    redelivered to the next agent, never half-applied (each batch is one transaction).
    """
    site_dir, config = SiteDirectory.open(path)
    configure_logging(site_dir, settings.log_level)
    assert config.site_id is not None
    async with (
        open_store(settings.mongodb_url, settings.db) as store,
        open_amqp(settings.amqp_url) as amqp,
    ):
        site = await store.sites.get(config.site_id)
        agent = SiteAgent(
            store,
            amqp,
            build_topology(settings.namespace, quorum=settings.quorum),
            site,
            site_dir,
            config,
            prefetch=settings.prefetch,
            window=settings.batch_window_ms / 1000,
            max_attempts=settings.max_attempts,
            settings=settings,
        )

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s: draining", signal.Signals(signum).name)
                    await agent.stop(grace)
                    return

        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signal)
            await agent.run()
            tg.cancel_scope.cancel()
