"""The async SDK's Job: the view of a job (``view.JobView``) with persistence and the
future-like API, each an ``await``."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any, ClassVar

from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.sdk import futures, persist
from balsam_mq.sdk.capture import Ready, capturing
from balsam_mq.sdk.managers import JobManager
from balsam_mq.sdk.query import Query
from balsam_mq.sdk.view import JobView


class Job(JobView):
    """A job: one run of an app in ``workdir`` with ``parameters``.

    Example::

        job = Job("test/sleep_3", app_id=Sleeper, parameters={"sleeptime": 3})
        await job.save()
        assert await job.result(timeout=60) is None
    """

    objects: ClassVar[JobManager[Job]]

    __slots__ = ()

    # --- persistence ----------------------------------------------------------------------

    def save(self) -> Awaitable[None]:
        """Create the job, or write the fields changed since it was loaded.

        A changed ``state`` is a transition made as the user, checked by the state table
        (e.g. FAILED -> RESTART_READY). In-place changes of ``data`` or ``tags`` count.
        """
        captured = capturing()
        if captured is not None and self.id is None:
            captured.record(self)
            return Ready(None)
        return persist.save_view(self)

    async def delete(self) -> None:
        """Delete the job (its events stay in the log); a RUNNING job is killed first."""
        await persist.delete_view(self)

    async def kill(self) -> bool:
        """Stop the job wherever it is: it fails, ``state_data["reason"]`` saying it was
        killed by the user; if it runs, its launcher terminates the process group. A
        finished job is left alone. Refreshes the job; whether it was moved.

        Example::

            if not await job.kill():
                print(f"job {job.id} had already ended: {job.state}")
        """
        return await persist.kill_view(self)

    async def reset(self, *, descendants: bool = False) -> bool:
        """Run a FAILED or JOB_FINISHED job again from READY (``Query.reset``; with
        ``descendants``, the jobs depending on it too). Refreshes the job; whether it was
        moved (a job in another state is left alone).

        Example::

            await job.reset()
            assert await job.result(timeout=60) == 10
        """
        return await persist.reset_view(self, descendants)

    async def refresh(self) -> None:
        """Reload every field from the store (local unsaved changes are dropped)."""
        await persist.refresh_views([self])

    def refresh_from_db(self) -> Awaitable[None]:
        """Balsam's name for :meth:`refresh`: ``await job.refresh_from_db()``."""
        return self.refresh()

    def parent_query(self) -> Query[Any]:
        """The query of this job's parents."""
        return type(self).objects.filter(id=list(self.parent_ids))

    # --- future-like API ------------------------------------------------------------------

    async def done(self) -> bool:
        """Whether the job reached JOB_FINISHED or FAILED (refreshes the job)."""
        await persist.refresh_views([self])
        return self.state in TERMINAL_STATES

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is finished; ``run()``'s return value, or its exception raised
        again (the original traceback attached). Raises ``TimeoutError`` after ``timeout`` s.
        """
        await futures.wait_one(self, timeout)
        return self.result_nowait()

    @classmethod
    def _captured(cls, *args: Any, **kwargs: Any) -> Job:
        """A new job recorded by a capture; the async API's one can be awaited."""
        return CapturedJob(*args, **kwargs) if cls is Job else cls(*args, **kwargs)


class CapturedJob(Job):
    """A job recorded inside :func:`~balsam_mq.sdk.capture.capture`: ``await`` gives it back."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Job]:
        yield from ()
        return self


Job.objects = JobManager(Job)
