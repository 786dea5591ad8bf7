"""The user's Job: Balsam's attributes, change tracking, persistence and the future-like API."""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from balsam_mq.domain import Job as JobDocument, JobState, parse_state
from balsam_mq.domain.models import blank
from balsam_mq.domain.serialization import (
    deserialize,
    deserialize_exception,
    deserialize_parameters,
    serialize_parameters,
)
from balsam_mq.domain.states import TERMINAL_STATES
from balsam_mq.errors import JobError, JobFailed, MultipleResults, NoResult, NotFound
from balsam_mq.sdk import futures, persist
from balsam_mq.sdk.capture import Ready, capturing
from balsam_mq.sdk.fields import (
    RESOURCE_FIELDS,
    TRACKED,
    check_container,
    check_data,
    check_ids,
    check_resources,
    check_strings,
    check_workdir,
    snapshot,
    stored_resources,
    unchanged,
)
from balsam_mq.sdk.managers import JobManager

if TYPE_CHECKING:
    from balsam_mq.sdk.query import Query


class Job:
    """A job: one run of an app in ``workdir`` with ``parameters``.

    Example::

        job = Job("test/sleep_3", app_id=Sleeper, parameters={"sleeptime": 3})
        await job.save()
        assert await job.result(timeout=60) is None
    """

    NoResult: ClassVar[type[NoResult]] = NoResult
    objects: ClassVar[JobManager[Job]]

    class DoesNotExist(NotFound):
        """``Job.objects.get(...)`` matched no job."""

    class MultipleObjectsReturned(MultipleResults):
        """``Job.objects.get(...)`` matched more than one job."""

    __slots__ = (
        "__weakref__",
        "_app_ref",
        "_exception_text",
        "_params",
        "_params_text",
        "_result_text",
        "_saved",
        "_site_ref",
        "_state",
        "app_id",
        "batch_job_id",
        "created_at",
        "data",
        "gpus_per_rank",
        "id",
        "last_update",
        "launch_params",
        "node_packing_count",
        "num_nodes",
        "owner",
        "parent_ids",
        "ranks_per_node",
        "return_code",
        "site_id",
        "state_data",
        "tags",
        "threads_per_core",
        "threads_per_rank",
        "traceback",
        "transfers",
        "wall_time_min",
        "workdir",
    )

    def __init__(
        self,
        workdir: str,
        app_id: Any = None,
        parameters: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        data: Mapping[str, Any] | None = None,
        parent_ids: list[int] | tuple[int, ...] | None = None,
        transfers: Mapping[str, str] | None = None,
        num_nodes: int = 1,
        ranks_per_node: int = 1,
        threads_per_rank: int = 1,
        threads_per_core: int = 1,
        gpus_per_rank: float = 0,
        node_packing_count: int = 1,
        launch_params: Mapping[str, str] | None = None,
        wall_time_min: int = 0,
        *,
        app_name: str | None = None,
        site: Any = None,
        site_name: str | None = None,
    ) -> None:
        self.id: int | None = None
        self.app_id: int | None = app_id if isinstance(app_id, int) else None
        self.site_id: int | None = None
        self._app_ref: Any = app_id if app_id is not None else app_name
        if site is not None and site_name is not None:
            raise JobError(f"Job {workdir!r}: give site or site_name (the same thing), not both")
        self._site_ref: Any = site if site is not None else site_name
        self.workdir = check_workdir(workdir)
        if self._app_ref is None:
            raise JobError(
                f"Job {workdir!r}: app_id is required (an ApplicationDefinition, name or id)"
            )
        self.tags: dict[str, str] = check_strings(f"Job {workdir!r}", "tags", tags)
        self.data: dict[str, Any] = dict(data or {})
        self.parent_ids: list[int] = check_ids(f"Job {workdir!r}", parent_ids)
        self.transfers: dict[str, str] = check_strings(f"Job {workdir!r}", "transfers", transfers)
        self.state_data: dict[str, Any] = {}
        resources = check_resources(
            f"Job {workdir!r}",
            num_nodes=num_nodes,
            ranks_per_node=ranks_per_node,
            threads_per_rank=threads_per_rank,
            threads_per_core=threads_per_core,
            gpus_per_rank=gpus_per_rank,
            node_packing_count=node_packing_count,
            launch_params=dict(launch_params or {}),
            wall_time_min=wall_time_min,
        )
        self.num_nodes = resources.num_nodes
        self.ranks_per_node = resources.ranks_per_node
        self.threads_per_rank = resources.threads_per_rank
        self.threads_per_core = resources.threads_per_core
        self.gpus_per_rank = resources.gpus_per_rank
        self.node_packing_count = resources.node_packing_count
        self.launch_params = resources.launch_params
        self.wall_time_min = resources.wall_time_min
        self.return_code: int | None = None
        self.batch_job_id: int | None = None
        self.owner = ""
        self.last_update: datetime | None = None
        self.created_at: datetime | None = None
        self.traceback: str | None = None
        self._state = JobState.CREATED
        self._params: dict[str, Any] | None = dict(parameters or {})
        self._params_text = ""
        self._result_text: str | None = None
        self._exception_text: str | None = None
        self._saved: tuple[Any, ...] | None = None  # snapshot of TRACKED + state; None: new

    # --- attributes with checks -----------------------------------------------------------

    @property
    def state(self) -> JobState:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        try:
            self._state = JobState(parse_state(str(value)))
        except ValueError as exc:
            raise JobError(f"{self._label()}: {exc}") from None

    @property
    def parameters(self) -> dict[str, Any]:
        """The app's parameters (deserialized on first access)."""
        if self._params is None:
            what = f"{self._label()} parameters"
            self._params = deserialize_parameters(self._params_text, what=what)
        return self._params

    @parameters.setter
    def parameters(self, value: Mapping[str, Any]) -> None:
        self._params = dict(value)

    def __repr__(self) -> str:
        app = self.app_id
        if app is None:
            app = getattr(self._app_ref, "__name__", self._app_ref)
        state = self._state.value
        return f"Job(id={self.id}, app={app!r}, workdir={self.workdir!r}, state={state})"

    def _label(self) -> str:
        return f"Job {self.id}" if self.id is not None else f"Job {self.workdir!r}"

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
        return persist.save_job(self)

    async def delete(self) -> None:
        if self.id is None:
            raise JobError(f"{self._label()} is not saved")
        await persist.delete_job(self)

    async def refresh(self) -> None:
        """Reload every field from the store (local unsaved changes are dropped)."""
        await persist.refresh_jobs([self])

    def refresh_from_db(self) -> Awaitable[None]:
        """Balsam's name for :meth:`refresh`: ``await job.refresh_from_db()``."""
        return self.refresh()

    def parent_query(self) -> Query[Any]:
        """The query of this job's parents."""
        return type(self).objects.filter(id=list(self.parent_ids))

    def resolve_workdir(self, data_path: str | Path) -> Path:
        """The job's absolute working directory under a site's ``data/`` directory."""
        return Path(data_path).joinpath(self.workdir)

    # --- future-like API ------------------------------------------------------------------

    async def done(self) -> bool:
        """Whether the job reached JOB_FINISHED or FAILED (refreshes the job)."""
        await persist.refresh_jobs([self])
        return self._state in TERMINAL_STATES

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the job is finished; ``run()``'s return value, or its exception raised
        again (the original traceback attached). Raises ``TimeoutError`` after ``timeout`` s.
        """
        await futures.wait_one(self, timeout)
        return self.result_nowait()

    def result_nowait(self) -> Any:
        """The result if the job (as last loaded) is finished; else :class:`Job.NoResult`."""
        if self._state == JobState.JOB_FINISHED:
            if self._result_text is None:
                return None
            return deserialize(self._result_text, what=f"{self._label()} result")
        if self._state == JobState.FAILED:
            raise self._failure()
        raise NoResult(f"{self._label()} is {self._state.value}: no result yet")

    def exception_nowait(self) -> BaseException | None:
        """Like ``Future.exception()``: for a FAILED job (as last loaded) the exception
        :meth:`result` would raise, ``None`` for a finished one; else
        :class:`Job.NoResult`."""
        if self._state == JobState.FAILED:
            return self._failure()
        if self._state == JobState.JOB_FINISHED:
            return None
        raise NoResult(f"{self._label()} is {self._state.value}: not done yet")

    def to_dict(self) -> dict[str, Any]:
        """The job's fields as plain data (``parameters`` deserialized; datetimes kept).

        Example::

            print(json.dumps((await Job.objects.get(id=3)).to_dict(), default=str))
        """
        return {
            "id": self.id,
            "site_id": self.site_id,
            "app_id": self.app_id,
            "workdir": self.workdir,
            "state": self._state.value,
            "tags": dict(self.tags),
            "parameters": dict(self.parameters),
            "data": self.data,
            "parent_ids": list(self.parent_ids),
            "transfers": dict(self.transfers),
            **{name: getattr(self, name) for name in RESOURCE_FIELDS},
            "state_data": self.state_data,
            "return_code": self.return_code,
            "batch_job_id": self.batch_job_id,
            "owner": self.owner,
            "created_at": self.created_at,
            "last_update": self.last_update,
        }

    def _failure(self) -> BaseException:
        if self._exception_text:
            exc: BaseException = deserialize_exception(
                self._exception_text, self.traceback, what=f"{self._label()} exception"
            )
            return exc
        assert self.id is not None
        return JobFailed(self.id, self.state_data)

    # --- conversion (used by persist, hooks and managers) ----------------------------------

    @classmethod
    def _captured(cls, *args: Any, **kwargs: Any) -> Job:
        """A new job recorded by a capture; the async API's one can be awaited."""
        return CapturedJob(*args, **kwargs) if cls is Job else cls(*args, **kwargs)

    @classmethod
    def _from_document(cls, doc: JobDocument) -> Any:
        job = cls.__new__(cls)
        job._load(doc)
        return job

    def _load(self, doc: JobDocument) -> None:
        """Take every field from ``doc`` and remember them as the saved values."""
        self._take(doc.id, vars(doc), vars(doc.resources))

    def _load_stored(self, doc: Mapping[str, Any]) -> None:
        """:meth:`_load` from the stored form of the job (``Job.to_doc()`` with ``_id``)."""
        self._take(doc["_id"], doc, doc["resources"])

    def _take(
        self, job_id: int | None, doc: Mapping[str, Any], resources: Mapping[str, Any]
    ) -> None:
        self.id = job_id
        self.app_id = self._app_ref = doc["app_id"]
        self._site_ref = None
        self.site_id = doc["site_id"]
        self.owner = doc["owner"]
        self.workdir = doc["workdir"]
        self.tags = doc["tags"]
        self.data = doc["data"]
        self.parent_ids = doc["parent_ids"]
        self.transfers = doc["transfers"]
        self.state_data = doc["state_data"]
        for name in RESOURCE_FIELDS:
            setattr(self, name, resources[name])
        self.launch_params = dict(self.launch_params)  # stored resources may be shared
        self.return_code = doc["return_code"]
        self.batch_job_id = doc["batch_job_id"]
        self.last_update = doc["last_update"]
        self.created_at = doc["created_at"]
        self.traceback = doc["traceback"]
        self._state = JobState(doc["state"])
        self._params_text = doc["parameters"]
        self._params = None
        self._result_text = doc["result"]
        self._exception_text = doc["exception"]
        self._saved = (*(snapshot(getattr(self, name)) for name in TRACKED), self._state)

    @property
    def _saved_state(self) -> JobState | None:
        return None if self._saved is None else self._saved[-1]

    def _serialized_parameters(self) -> str:
        return serialize_parameters(self.parameters, what=f"{self._label()} parameters")

    def _check_new(self) -> dict[str, Any]:
        """Check the fields of this new job as they are now (they may have been set since
        it was built); its ``resources`` document (shared: see ``stored_resources``)."""
        label = self._label()
        check_workdir(self.workdir)
        for name in ("tags", "transfers", "parent_ids"):
            check_container(label, name, getattr(self, name))
        check_strings(label, "tags", self.tags)
        check_strings(label, "transfers", self.transfers)
        check_data(label, self.data)
        check_ids(label, self.parent_ids)
        return stored_resources(label, tuple(getattr(self, name) for name in RESOURCE_FIELDS))

    def _new_document(
        self, app_id: int, site_id: int, parameters: str, resources: dict[str, Any]
    ) -> dict[str, Any]:
        """The document of this new job for ``app_id`` at ``site_id``, from fields checked by
        :meth:`_check_new` (``parameters``: serialized; ``resources``: as it returned)."""
        doc = dict(_NEW)
        doc["app_id"] = app_id
        doc["site_id"] = site_id
        doc["workdir"] = self.workdir
        doc["tags"] = _exact(dict, self.tags)
        doc["parameters"] = parameters
        doc["data"] = _exact(dict, self.data)
        doc["resources"] = resources
        doc["parent_ids"] = _exact(list, self.parent_ids)
        doc["transfers"] = _exact(dict, self.transfers)
        return doc

    def _changes(self) -> dict[str, Any]:
        """User-facing fields whose value differs from the saved one (``state`` included)."""
        if self._saved is None:
            raise JobError(f"{self._label()} is not saved")
        changed = {
            name: getattr(self, name)
            for name, saved in zip(TRACKED, self._saved, strict=False)
            if not unchanged(getattr(self, name), saved)
        }
        if self._state != self._saved[-1]:
            changed["state"] = self._state
        if self._params is not None:
            text = serialize_parameters(self._params, what=f"{self._label()} parameters")
            if text != self._params_text:
                changed["parameters"] = self._params
        return changed


_NEW = blank(JobDocument, app_id=0, site_id=0, workdir="")  # every field, in stored order


def _exact(kind: type[Any], value: Any) -> Any:
    """``value`` if it is a ``kind`` itself (not a subclass or look-alike), else converted."""
    return value if type(value) is kind else kind(value)


class CapturedJob(Job):
    """A job recorded inside :func:`~balsam_mq.sdk.capture.capture`: ``await`` gives it back."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Job]:
        yield from ()
        return self


Job.objects = JobManager(Job)
