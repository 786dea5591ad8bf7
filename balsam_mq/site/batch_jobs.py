"""The scheduler service: submits, deletes and follows a site's BatchJobs through its scheduler.

One pass (:meth:`BatchJobService.sync_once`) does, in order:

1. QUEUED / RUNNING / PENDING_DELETION: follow the scheduler's states → RUNNING (with
   ``start_time``) and FINISHED (with ``end_time``);
2. the elastic queue, if enabled, adds batch jobs sized to the runnable backlog, or
   withdraws its waiting ones when the backlog is empty;
3. PENDING_SUBMISSION: render the job script (the site's ``job-template.sh`` or the
   default) into ``<site>/qsubmit/``, submit it → QUEUED with its ``scheduler_id``, or
   SUBMIT_FAILED with the error in ``status_info``;
4. PENDING_DELETION: ask the scheduler to delete it (it stays PENDING_DELETION until
   the scheduler no longer lists it).

Every state change goes through the batch-job repository, conditionally on the state
the service saw, so a user's concurrent ``queue rm`` is never overwritten.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from balsam_mq.domain import BatchJob, BatchJobState, Site, utcnow
from balsam_mq.errors import BalsamError, brief
from balsam_mq.settings import Settings
from balsam_mq.site.elastic import ElasticQueue, ElasticQueueSettings, parse_section
from balsam_mq.site.schedulers import Scheduler, Submission, make_scheduler
from balsam_mq.site.schedulers.templates import render_script, template_text
from balsam_mq.store import Store, unavailable

log = logging.getLogger(__name__)
B = BatchJobState
SUBMIT_DIR = "qsubmit"


class SchedulerSettings(BaseModel):
    """The ``scheduler:`` section of a site's settings.yml.

    Example::

        scheduler:
          kind: slurm
          interval_s: 10
          extra_args: ["-C", "cpu"]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "slurm", "pbs"] = Field(
        default="local", description="The batch scheduler."
    )
    interval_s: float = Field(
        default=10.0, gt=0, description="Seconds between syncs of the batch jobs with it."
    )
    template: str | None = Field(
        default=None,
        description="Jinja2 job script (null: <site>/job-template.sh, else built in).",
    )
    extra_args: list[str] = Field(
        default_factory=list, description='More submit arguments, e.g. ["-C", "cpu"].'
    )
    launcher_margin_min: float = Field(
        default=1.0,
        ge=0,
        description="Minutes the launcher stops early (at most 20% of the wall time).",
    )


class BatchJobService:
    """Example::

    service = BatchJobService(store, site, Path(site.path), settings, make_scheduler("slurm"))
    await service.sync_once()      # tests; the agent runs `await service.run()`
    """

    def __init__(
        self,
        store: Store,
        site: Site,
        site_path: Path,
        settings: Settings,
        scheduler: Scheduler,
        *,
        config: SchedulerSettings | None = None,
        elastic: ElasticQueueSettings | None = None,
    ) -> None:
        assert site.id is not None
        self.store = store
        self.site = site
        self.site_id: int = site.id
        self.site_path = site_path
        self.settings = settings
        self.scheduler = scheduler
        self.config = config or SchedulerSettings()
        self.passes = 0  # sync passes done
        self.skipped = 0  # passes skipped because MongoDB could not be reached
        self.elastic = (
            ElasticQueue(store, site.id, elastic)
            if elastic is not None and elastic.enabled
            else None
        )

    def reconfigure(
        self, config: SchedulerSettings, elastic: ElasticQueueSettings | None = None
    ) -> None:
        """New settings from the next pass on (a reloaded settings.yml); the scheduler
        itself (``kind``) stays the one the service was built with."""
        self.config = config
        if elastic is None or not elastic.enabled:
            self.elastic = None
        elif self.elastic is None or self.elastic.settings != elastic:
            self.elastic = ElasticQueue(self.store, self.site_id, elastic)

    async def run(self) -> None:
        """Sync every ``interval_s`` until cancelled; a failed pass is logged and retried,
        and while MongoDB is away passes are skipped (one line when it goes)."""
        away = False
        try:
            while True:
                try:
                    await self.sync_once()
                    self.passes += 1
                    away = False
                except Exception as exc:
                    if unavailable(exc):
                        self.skipped += 1
                        if not away:
                            log.warning(
                                "scheduler: MongoDB unavailable, passes skipped: %s", brief(exc)
                            )
                        away = True
                    elif isinstance(exc, BalsamError):
                        log.warning("scheduler pass for site %s failed: %s", self.site_id, exc)
                    else:
                        raise
                await anyio.sleep(self.config.interval_s)
        finally:
            await self.scheduler.close()

    async def sync_once(self) -> None:
        await self._follow()
        if self.elastic is not None:
            await self.elastic.step()
        for batch_job in await self.store.batch_jobs.for_site(self.site_id, [B.PENDING_SUBMISSION]):
            await self._submit(batch_job)
        for batch_job in await self.store.batch_jobs.for_site(self.site_id, [B.PENDING_DELETION]):
            try:
                await self._delete(batch_job)
            except BalsamError as exc:
                log.warning("BatchJob %s: deletion failed: %s", batch_job.id, exc)

    # --- submission --------------------------------------------------------------------

    def launcher_command(self, batch_job: BatchJob) -> str:
        wall = batch_job.wall_time_min
        margin = min(self.config.launcher_margin_min, 0.2 * wall)
        argv = [
            sys.executable, "-m", "balsam_mq.cli", "launcher",
            "--site", str(self.site_id),
            "--wall-time", f"{wall - margin:g}",
            "--job-mode", batch_job.job_mode,
            "--batch-job-id", str(batch_job.id),
        ]  # fmt: skip
        if self.scheduler.passes_nodes:
            argv += ["--nodes", str(batch_job.num_nodes)]
        for key, value in batch_job.filter_tags.items():
            argv += ["--filter-tags", f"{key}={value}"]
        idle = batch_job.status_info.get("idle_timeout_s")
        if idle:
            argv += ["--idle-timeout", f"{float(idle):g}"]
        return shlex.join(argv)

    def script_context(self, batch_job: BatchJob, script: Path) -> dict[str, Any]:
        s = self.settings
        return {
            "scheduler": self.scheduler.name,
            "batch_job_id": batch_job.id,
            "site_id": self.site_id,
            "site_name": self.site.name,
            "site_path": str(self.site_path),
            "project": batch_job.project,
            "queue": batch_job.queue,
            "num_nodes": batch_job.num_nodes,
            "wall_time_min": batch_job.wall_time_min,
            "job_mode": batch_job.job_mode,
            "filter_tags": batch_job.filter_tags,
            "output": str(script.with_suffix(".out")),
            "python": sys.executable,
            "launcher_command": self.launcher_command(batch_job),
            "env": {
                "BALSAM_MONGODB_URL": s.mongodb_url,
                "BALSAM_AMQP_URL": s.amqp_url,
                "BALSAM_DB": s.db,
                "BALSAM_NAMESPACE": s.namespace,
                "BALSAM_LOG_LEVEL": s.log_level,
            },
        }

    def write_script(self, batch_job: BatchJob) -> Path:
        directory = self.site_path / SUBMIT_DIR
        directory.mkdir(parents=True, exist_ok=True)
        script = directory / f"qlaunch{batch_job.id}.sh"
        text, source = template_text(self.site_path, self.config.template)
        rendered = render_script(text, self.script_context(batch_job, script), source=source)
        script.write_text(rendered)
        script.chmod(0o700)  # it carries the service URLs (and their credentials)
        return script

    async def _submit(self, batch_job: BatchJob) -> None:
        assert batch_job.id is not None
        try:
            script = self.write_script(batch_job)
            scheduler_id = await self.scheduler.submit(
                Submission(
                    script=script,
                    num_nodes=batch_job.num_nodes,
                    wall_time_min=batch_job.wall_time_min,
                    project=batch_job.project,
                    queue=batch_job.queue,
                    extra_args=tuple(self.config.extra_args),
                )
            )
        except BalsamError as exc:
            log.warning("BatchJob %s: submission failed: %s", batch_job.id, exc)
            await self.store.batch_jobs.set_state(
                [batch_job.id],
                B.SUBMIT_FAILED,
                fields={"status_info.error": str(exc)},
                expect=[B.PENDING_SUBMISSION],
            )
            return
        moved = await self.store.batch_jobs.set_state(
            [batch_job.id],
            B.QUEUED,
            fields={"scheduler_id": scheduler_id, "status_info.script": str(script)},
            expect=[B.PENDING_SUBMISSION],
        )
        if not moved:  # deleted by the user while we were submitting it
            await self.scheduler.delete(scheduler_id)
            await self.store.batch_jobs.set_state(
                [batch_job.id], B.PENDING_DELETION, fields={"scheduler_id": scheduler_id}
            )
        log.info("BatchJob %s submitted as %s %s", batch_job.id, self.scheduler.name, scheduler_id)

    async def _delete(self, batch_job: BatchJob) -> None:
        assert batch_job.id is not None
        if batch_job.scheduler_id is None:
            await self.store.batch_jobs.set_state(
                [batch_job.id],
                B.FINISHED,
                fields={"end_time": utcnow()},
                expect=[B.PENDING_DELETION],
            )
            return
        if batch_job.status_info.get("delete_requested"):
            return
        await self.scheduler.delete(batch_job.scheduler_id)
        await self.store.batch_jobs.set_state(
            [batch_job.id],
            B.PENDING_DELETION,
            fields={"status_info.delete_requested": utcnow().isoformat()},
        )

    # --- following ---------------------------------------------------------------------

    async def _follow(self) -> None:
        active = await self.store.batch_jobs.for_site(
            self.site_id, [B.QUEUED, B.RUNNING, B.PENDING_DELETION]
        )
        tracked = [b for b in active if b.scheduler_id is not None]
        if not tracked:
            return
        states = await self.scheduler.status([b.scheduler_id for b in tracked if b.scheduler_id])
        now = utcnow()
        for b in tracked:
            assert b.id is not None and b.scheduler_id is not None
            seen = states.get(b.scheduler_id)
            if seen is None:
                continue
            info = {"status_info.scheduler_state": seen.raw_state}
            if seen.state is B.FINISHED:
                await self.store.batch_jobs.set_state(
                    [b.id], B.FINISHED, fields={**info, "end_time": now}, expect=[b.state]
                )
            elif seen.state is B.RUNNING and b.state is B.QUEUED:
                await self.store.batch_jobs.set_state(
                    [b.id], B.RUNNING, fields={**info, "start_time": now}, expect=[B.QUEUED]
                )


def build_service(
    store: Store,
    site: Site,
    site_path: Path,
    settings: Settings,
    sections: dict[str, dict[str, Any]],
) -> BatchJobService:
    """The service from the ``scheduler:`` and ``elastic_queue:`` sections of settings.yml."""
    config, elastic = parse_sections(sections)
    return BatchJobService(
        store,
        site,
        site_path,
        settings,
        make_scheduler(config.kind),
        config=config,
        elastic=elastic,
    )


def parse_sections(
    sections: dict[str, dict[str, Any]],
) -> tuple[SchedulerSettings, ElasticQueueSettings]:
    """The ``scheduler:`` and ``elastic_queue:`` sections of settings.yml, checked."""
    return (
        parse_section(SchedulerSettings, "scheduler", sections.get("scheduler") or {}),
        parse_section(ElasticQueueSettings, "elastic_queue", sections.get("elastic_queue") or {}),
    )
