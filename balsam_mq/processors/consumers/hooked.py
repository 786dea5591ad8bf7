"""The shared engine of hook consumers: default transitions, or the app's hook in the pool.

Jobs reach a hook consumer when their app defines the hook (a default hook's step is
passed through where the job enters it: ``domain.pipeline``), or when the app's hooks
are not known. Apps that do not override the hook take the default move in one batch
write.
For the others each job's hook runs in a worker process; the outcomes of the whole
batch (states, ``state_data``, ``data``, jobs the hooks created) are committed in one
transaction. A hook that raises, or sets a state the table does not allow from here,
fails its job with the traceback or reason; its neighbours are not affected. A hook
that leaves the state unchanged keeps the job where it is and is asked again later.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from balsam_mq.broker import Deferrals
from balsam_mq.domain import Actor, Change, Job, JobState, is_legal
from balsam_mq.domain.pipeline import DEFAULT_MOVES, HOOK_OF_STATE
from balsam_mq.errors import JobError
from balsam_mq.processors.apps import LoadedApp
from balsam_mq.processors.consumers.base import JobConsumer, Pending
from balsam_mq.processors.hook_worker import HookOutcome, HookRequest
from balsam_mq.sdk.persist import prepare_views


class HookConsumer(JobConsumer):
    """A consumer of the one state in ``accepts``: its hook and actor follow from it."""

    @property
    def hook(self) -> str:
        return HOOK_OF_STATE[self.accepts[0]]

    @property
    def actor(self) -> Actor:
        return DEFAULT_MOVES[self.accepts[0]].by

    def default_change(self, job: Job) -> Change:
        """The step's default move (``domain.pipeline.DEFAULT_MOVES``)."""
        assert job.id is not None
        move = DEFAULT_MOVES[job.state]
        return Change(job.id, job.state, move.to, move.state_data(job.state_data), by=move.by)

    async def process(self, pending: list[Pending]) -> Deferrals | None:
        apps = await self.ctx.apps.get_many(p.job.app_id for p in pending)
        changes: list[Change] = []
        custom: list[tuple[Pending, LoadedApp]] = []
        for p in pending:
            app = apps.get(p.job.app_id)
            if app is None:
                changes.append(self._fail(p.job, f"App {p.job.app_id} no longer exists"))
            elif not app.overrides(self.hook):
                changes.append(self.default_change(p.job))
            elif app.error is not None:  # its class cannot be loaded on this site
                changes.append(self._fail(p.job, f"{self.hook} cannot run: {app.error}"))
            else:
                custom.append((p, app))
        outcomes = await self.ctx.hooks.run_many([self._request(p.job, app) for p, app in custom])
        new_jobs: list[Any] = []
        deferrals: dict[str, float] = {}
        for (p, _app), outcome in zip(custom, outcomes, strict=True):
            change = self._change_from(p.job, outcome)
            if change is None:  # the hook kept the state: persist its fields, ask again later
                if outcome.fields:
                    await self.ctx.store.jobs.update_fields_if(p.id, p.job.state, outcome.fields)
                deferrals[p.event_id] = self.backoff(p)
                continue
            created = outcome.created_jobs() if outcome.error is None else []
            if created:
                try:  # checked per hook: an invalid job fails the hook's job, not the batch
                    new_jobs += await prepare_views(created, self.ctx.client)
                except JobError as exc:
                    change = self._fail(p.job, f"{self.hook} created an invalid job: {exc}")
            changes.append(change)

        async def create(session: AsyncClientSession) -> None:
            await self.ctx.store.jobs.create_many(new_jobs, session=session)

        await self.ctx.store.jobs.transition(changes, extra=create if new_jobs else None)
        return deferrals or None

    def _request(self, job: Job, app: LoadedApp) -> HookRequest:
        return HookRequest(
            app_id=app.doc.id or 0,
            app_version=app.version,
            app_name=app.doc.name,
            serialized_class=app.doc.serialized_class,
            hook=self.hook,
            job={**job.to_doc(), "_id": job.id},
            workdir=str(self.ctx.site_dir.workdir(job.workdir)),
        )

    def _change_from(self, job: Job, outcome: HookOutcome) -> Change | None:
        if outcome.error is not None:
            if outcome.traceback is not None:
                return self._fail(job, outcome.error, traceback=outcome.traceback)
            return self._fail(job, outcome.error)
        if outcome.state is None or outcome.state == job.state:
            return None
        if not is_legal(job.state, outcome.state, self.actor):
            return self._fail(
                job,
                f"{self.hook} set state {outcome.state.value}, not allowed from {job.state.value}",
            )
        return outcome.change(job.state, self.actor)

    def _fail(self, job: Job, reason: str, **extra: Any) -> Change:
        assert job.id is not None
        return Change(
            job.id,
            job.state,
            JobState.FAILED,
            state_data={"reason": reason, **extra},
            by=self.actor,
        )
