"""The site agent: relay, per-site consumers, dependency resolver and reaper in one process."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import anyio
from aio_pika.abc import AbstractRobustConnection

from balsam_mq.broker import (
    Consumer,
    Handler,
    QueueSpec,
    Topology,
    close_channel,
    declare_core,
    declare_site,
)
from balsam_mq.domain import Site
from balsam_mq.processors.apps import AppCache
from balsam_mq.processors.consumers.cleanup import CleanupConsumer
from balsam_mq.processors.consumers.deps import DependencyResolver
from balsam_mq.processors.consumers.error import ErrorConsumer
from balsam_mq.processors.consumers.postprocess import PostprocessConsumer
from balsam_mq.processors.consumers.preprocess import PreprocessConsumer
from balsam_mq.processors.consumers.stage_in import StageInConsumer
from balsam_mq.processors.consumers.stage_out import StageOutConsumer
from balsam_mq.processors.consumers.timeout import TimeoutConsumer
from balsam_mq.processors.context import AgentContext
from balsam_mq.processors.hooks import HookRunner
from balsam_mq.processors.reaper import Reaper
from balsam_mq.relay import Relay
from balsam_mq.sdk.client import Client
from balsam_mq.sdk.direct import DirectBackend
from balsam_mq.settings import Settings
from balsam_mq.site.batch_jobs import BatchJobService, build_service, parse_sections
from balsam_mq.site.config import SiteConfig
from balsam_mq.site.directory import SiteDirectory
from balsam_mq.store import Store, unavailable

log = logging.getLogger(__name__)


class AgentState(StrEnum):
    CREATED = "CREATED"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


@dataclass
class SiteAgent:
    """Runs every login-node service of one site until :meth:`stop`.

    Example::

        agent = SiteAgent(store, amqp, topology, site, site_dir, config)
        await agent.run()
    """

    store: Store
    amqp: AbstractRobustConnection
    topology: Topology
    site: Site
    site_dir: SiteDirectory
    config: SiteConfig
    prefetch: int = 200
    window: float = 0.02
    max_attempts: int = 5
    relay: bool = True
    # the connection settings batch-job scripts export: with them the agent also runs the
    # scheduler service (batch jobs, elastic queue); without them it runs no batch jobs
    settings: Settings | None = None
    state: AgentState = field(default=AgentState.CREATED, init=False)
    running: anyio.Event = field(default_factory=anyio.Event, init=False)  # set once RUNNING
    consumers: list[Consumer] = field(default_factory=list, init=False)
    _context: AgentContext | None = field(default=None, init=False)
    _reaper: Reaper | None = field(default=None, init=False)
    _service: BatchJobService | None = field(default=None, init=False)
    _cancel: anyio.CancelScope | None = field(default=None, init=False)
    _stop_requested: bool = field(default=False, init=False)

    def _consumer(self, spec: QueueSpec, handler: Handler) -> Consumer:
        return Consumer(
            self.amqp,
            self.topology,
            spec,
            handler,
            prefetch=self.prefetch,
            batch_size=self.config.hooks.batch_size,
            window=self.window,
            max_attempts=self.max_attempts,
            transient=unavailable,
        )

    async def run(self) -> None:
        if self.state is not AgentState.CREATED:
            raise RuntimeError(f"site agent cannot run from state {self.state}")
        assert self.site.id is not None
        channel = await self.amqp.channel()
        await declare_core(channel, self.topology)
        await declare_site(channel, self.topology, self.site.id)
        await close_channel(channel)
        with HookRunner(self.config.hooks.workers, self.config.hooks.timeout_s) as hooks:
            # jobs that hooks create are checked and built through the SDK on this store
            client = Client(DirectBackend(self.store, self.amqp, self.topology))
            ctx = self._context = AgentContext(
                store=self.store,
                site=self.site,
                site_dir=self.site_dir,
                config=self.config,
                apps=AppCache(self.store),
                hooks=hooks,
                client=client,
            )
            queues = self.topology.site(self.site.id)
            self.consumers = [
                self._consumer(queues.stage_in, StageInConsumer(ctx)),
                self._consumer(queues.preprocess, PreprocessConsumer(ctx)),
                self._consumer(queues.postprocess, PostprocessConsumer(ctx)),
                self._consumer(queues.error, ErrorConsumer(ctx)),
                self._consumer(queues.timeout, TimeoutConsumer(ctx)),
                self._consumer(queues.stage_out, StageOutConsumer(ctx)),
                self._consumer(queues.cleanup, CleanupConsumer(ctx)),
                self._consumer(self.topology.deps, DependencyResolver(self.store)),
            ]
            reaper = self._reaper = Reaper(
                self.store,
                self.site.id,
                grace=self.config.reaper.grace_s,
                interval=self.config.reaper.interval_s,
            )
            service = None  # built before anything starts: a bad section stops us here
            if self.settings is not None:
                service = self._service = build_service(
                    self.store,
                    self.site,
                    self.site_dir.path,
                    self.settings,
                    {
                        "scheduler": self.config.section("scheduler"),
                        "elastic_queue": self.config.section("elastic_queue"),
                    },
                )
            self.state = AgentState.RUNNING
            self.running.set()
            log.info("site agent for %r (site %s) running", self.site.name, self.site.id)
            try:
                async with anyio.create_task_group() as tg:
                    self._cancel = tg.cancel_scope
                    if self._stop_requested:  # stop() came while we were starting
                        tg.cancel_scope.cancel()
                    if self.relay:
                        tg.start_soon(Relay(self.store, self.amqp, self.topology).run_forever)
                    for consumer in self.consumers:
                        tg.start_soon(consumer.run)
                    tg.start_soon(reaper.run)
                    if service is not None:
                        tg.start_soon(service.run)
            finally:
                await client.aclose()
                self.state = AgentState.STOPPED
                log.info("site agent for %r stopped", self.site.name)

    def reconfigure(self, config: SiteConfig) -> None:
        """Run with ``config`` from now on: a reloaded settings.yml, checked whole
        (``processors.reload``), whose restart-only keys are the running ones.

        Consumers read the settings per batch and take the new batch size with their next
        batch; the hook timeout counts from the next hook; the reaper and the scheduler
        service use theirs from their next pass.
        """
        self.config = config
        if self._context is not None:
            self._context.config = config
            self._context.hooks.timeout = config.hooks.timeout_s
        for consumer in self.consumers:
            consumer.set_batch_size(config.hooks.batch_size)
        if self._reaper is not None:
            self._reaper.grace = config.reaper.grace_s
            self._reaper.interval = config.reaper.interval_s
        if self._service is not None:
            scheduler, elastic = parse_sections(
                {
                    "scheduler": config.section("scheduler"),
                    "elastic_queue": config.section("elastic_queue"),
                }
            )
            self._service.reconfigure(scheduler, elastic)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, let batches in hand commit within ``grace``, then exit."""
        self._stop_requested = True
        if self.state is not AgentState.RUNNING:
            return
        self.state = AgentState.DRAINING
        with anyio.move_on_after(grace + 1):
            async with anyio.create_task_group() as tg:
                for consumer in self.consumers:
                    tg.start_soon(consumer.stop, grace)
        if self._cancel is not None:
            self._cancel.cancel()
