"""The user's view of a job: its stored document, a snapshot of it for change tracking, and an
attribute for each row of the field table (``fields.PATHS``). No I/O: the async
:class:`~balsam_mq.sdk.job.Job` and the blocking one add that on top.

The rest of the SDK exchanges documents with a view, never its attributes one by one:
:meth:`JobView._new` gives what a new job asks for (app, site, parameters and the
document to store), :meth:`JobView._load` takes a stored document back, and
:meth:`JobView._changes` tells what was changed since.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from balsam_mq.domain import Job as JobDocument, JobState, parse_state
from balsam_mq.domain.models import new_job_doc
from balsam_mq.domain.serialization import (
    deserialize,
    deserialize_exception,
    deserialize_parameters,
    peek,
    peek_parameters,
    serialize_parameters,
)
from balsam_mq.errors import JobError, JobFailed, MultipleResults, NoResult, NotFound
from balsam_mq.sdk.fields import (
    NEW_JOB_FIELDS,
    PATHS,
    RESOURCE_FIELDS,
    RETRY_FIELDS,
    TRACKED,
    check_data,
    check_field,
    check_ids,
    check_strings,
    check_workdir,
    snapshot,
    stored_resources,
    unchanged,
)

_NEW = new_job_doc()  # every stored field, in order
_RESOURCE_DEFAULTS = tuple(_NEW["resources"][name] for name in RESOURCE_FIELDS)
# a view keeps each stored field in a slot of its own (a dict per job would double a bulk
# creation's memory); the slot of field ``f`` is ``_f_<f>``
_FIELDS: tuple[str, ...] = (
    "id",
    *(f for f in JobDocument.model_fields if f not in ("id", "resources")),
)
# the slots, read and written many at a time at C speed (bulk creations load thousands)
_FIELD_SLOTS = tuple(f"_f_{f}" for f in _FIELDS)
_RESOURCE_SLOTS = tuple(f"_f_{f}" for f in RESOURCE_FIELDS)
_field_values = itemgetter(*_FIELDS)  # of a view's document, in the order of its slots
_resource_values = itemgetter(*RESOURCE_FIELDS)
_resource_slot_values = attrgetter(*_RESOURCE_SLOTS)
_ALL_SLOTS = (*_FIELD_SLOTS, *_RESOURCE_SLOTS)
_tracked_values = attrgetter(*(f"_f_{f}" for f in TRACKED))
_EDITABLE_NEW = frozenset({*TRACKED, *NEW_JOB_FIELDS})


@dataclass(frozen=True, slots=True)
class NewJob:
    """What an unsaved job asks the store for: its app and site (as the user named them),
    its parameters and transfers (checked against the app), and its document — built
    when the store is about to write it, so that a bulk creation holds no document per
    job while it checks them all."""

    app_ref: Any
    site_ref: Any
    parameters: dict[str, Any]
    workdir: str
    serialized: dict[str, Any]  # the parameters as stored
    resources: dict[str, Any]  # shared by the jobs asking for the same: never change it
    view: JobView

    @property
    def label(self) -> str:
        return f"Job {self.workdir!r}"

    @property
    def transfers(self) -> dict[str, str]:
        return self.view.transfers

    def document(self) -> dict[str, Any]:
        """The stored form of the new job, ``app_id`` and ``site_id`` to fill."""
        view = self.view
        new = dict(_NEW)
        new["workdir"] = self.workdir
        new["tags"] = _exact(dict, view.tags)
        new["data"] = _exact(dict, view.data)
        new["resources"] = self.resources
        new["parent_ids"] = _exact(list, view.parent_ids)
        new["transfers"] = _exact(dict, view.transfers)
        new["parameters"] = self.serialized
        for name in RETRY_FIELDS:
            new[name] = getattr(view, name)
        return new


class _Attribute:
    """One row of the field table: reads the view's field, writes it where allowed and
    only a value it can store (a bad one is refused here, naming the field)."""

    __slots__ = ("name", "slot")

    def __init__(self, name: str, slot: Any) -> None:
        self.name = name
        self.slot = slot  # the member descriptor of the field's slot

    def __get__(self, view: JobView | None, owner: type | None = None) -> Any:
        if view is None:
            return self
        return self.slot.__get__(view, owner)

    def __set__(self, view: JobView, value: Any) -> None:
        editable = TRACKED if view._saved is not None else _EDITABLE_NEW
        if self.name not in editable:
            raise AttributeError(f"{view._label()}: {self.name} cannot be changed")
        check_field(view._label(), self.name, value)
        self.slot.__set__(view, value)


class JobView:
    """A job: one run of an app in ``workdir`` with ``parameters``."""

    NoResult: ClassVar[type[NoResult]] = NoResult

    class DoesNotExist(NotFound):
        """``Job.objects.get(...)`` matched no job."""

    class MultipleObjectsReturned(MultipleResults):
        """``Job.objects.get(...)`` matched more than one job."""

    if not TYPE_CHECKING:  # hidden from type checkers, which would refuse the table's names
        __slots__ = ("__weakref__", "_app_ref", "_params", "_saved", "_site_ref", *_ALL_SLOTS)

    if TYPE_CHECKING:  # the attributes the field table makes (a test keeps them in step)
        _app_ref: Any
        _site_ref: Any
        _params: dict[str, Any] | None
        _saved: tuple[Any, ...] | None
        _f_id: int | None
        _f_state: JobState
        _f_parameters: dict[str, Any]
        _f_result: str | None
        _f_exception: str | None
        _f_launch_params: dict[str, str]
        app_id: int | None
        site_id: int | None
        owner: str
        workdir: str
        tags: dict[str, str]
        data: dict[str, Any]
        parent_ids: list[int]
        transfers: dict[str, str]
        state_data: dict[str, Any]
        created_at: Any
        last_update: Any
        return_code: int | None
        traceback: str | None
        session_id: int | None
        batch_job_id: int | None
        seq: int
        unfit: dict[str, Any] | None
        restarts: int
        max_retries: int | None
        retry_backoff_s: float | None
        num_nodes: int
        ranks_per_node: int
        threads_per_rank: int
        threads_per_core: int
        gpus_per_rank: float
        node_packing_count: int
        launch_params: dict[str, str]
        wall_time_min: int

    def __init__(
        self,
        workdir: str,
        app_id: Any = None,
        parameters: Mapping[str, Any] | None = None,
        *,
        app_name: str | None = None,
        site: Any = None,
        site_name: str | None = None,
        **fields: Any,
    ) -> None:
        label = f"Job {workdir!r}"
        unknown = sorted(set(fields) - set(NEW_JOB_FIELDS))
        if unknown:
            known = ", ".join(NEW_JOB_FIELDS)
            raise JobError(f"{label}: unknown field(s) {', '.join(unknown)} (fields: {known})")
        if site is not None and site_name is not None:
            raise JobError(f"{label}: give site or site_name (the same thing), not both")
        self._app_ref: Any = app_id if app_id is not None else app_name
        if self._app_ref is None:
            raise JobError(f"{label}: app_id is required (an ApplicationDefinition, name or id)")
        self._site_ref: Any = site if site is not None else site_name
        values = tuple(
            fields.get(name, default)
            for name, default in zip(RESOURCE_FIELDS, _RESOURCE_DEFAULTS, strict=True)
        )
        resources = stored_resources(label, values)  # checked once per distinct values
        doc = dict(_NEW)
        doc["id"] = None
        doc["state"] = JobState.CREATED
        doc["created_at"] = doc["last_update"] = None
        doc["workdir"] = check_workdir(workdir)
        doc["app_id"] = app_id if isinstance(app_id, int) and not isinstance(app_id, bool) else None
        doc["site_id"] = None
        # None or missing: the field's default
        tags, data, transfers = fields.get("tags"), fields.get("data"), fields.get("transfers")
        parents = fields.get("parent_ids")
        if tags is not None:
            check_strings(label, "tags", tags)
        if data is not None:
            check_data(label, data)
        if parents is not None:
            check_ids(label, parents)
        if transfers is not None:
            check_strings(label, "transfers", transfers)
        doc["tags"] = {} if tags is None else dict(tags)
        doc["data"] = {} if data is None else dict(data)
        doc["parent_ids"] = [] if parents is None else list(parents)
        doc["transfers"] = {} if transfers is None else dict(transfers)
        for name in RETRY_FIELDS:
            value = fields.get(name)
            if value is not None:
                check_field(label, name, value)
            doc[name] = value
        doc["state_data"] = {}
        doc["resources"] = resources
        self._put(doc)
        self._params: dict[str, Any] | None = dict(parameters or {})
        self._saved: tuple[Any, ...] | None = None  # snapshot of TRACKED + state; None: new

    # --- attributes with their own rules --------------------------------------------------

    @property
    def id(self) -> int | None:
        job_id: int | None = self._f_id
        return job_id

    @property
    def state(self) -> JobState:
        state: JobState = self._f_state
        return state

    @state.setter
    def state(self, value: str) -> None:
        try:
            self._f_state = JobState(parse_state(str(value)))
        except ValueError as exc:
            raise JobError(f"{self._label()}: {exc}") from None

    @property
    def parameters(self) -> dict[str, Any]:
        """The app's parameters (deserialized on first access)."""
        if self._params is None:
            what = f"{self._label()} parameters"
            self._params = deserialize_parameters(self._f_parameters, what=what)
        return self._params

    @parameters.setter
    def parameters(self, value: Mapping[str, Any]) -> None:
        self._params = dict(value)

    def __repr__(self) -> str:
        app = self.app_id
        if app is None:
            app = getattr(self._app_ref, "__name__", self._app_ref)
        state = self.state.value
        return f"Job(id={self.id}, app={app!r}, workdir={self.workdir!r}, state={state})"

    def resolve_workdir(self, data_path: str | Path) -> Path:
        """The job's absolute working directory under a site's ``data/`` directory."""
        return Path(data_path).joinpath(self.workdir)

    # --- results, as last loaded ----------------------------------------------------------

    def result_nowait(self) -> Any:
        """The result if the job (as last loaded) is finished; else :class:`Job.NoResult`."""
        if self.state == JobState.JOB_FINISHED:
            text = self._f_result
            return None if text is None else deserialize(text, what=f"{self._label()} result")
        if self.state == JobState.FAILED:
            raise self._failure()
        raise NoResult(f"{self._label()} is {self.state.value}: no result yet")

    def exception_nowait(self) -> BaseException | None:
        """Like ``Future.exception()``: for a FAILED job (as last loaded) the exception
        ``result()`` would raise, ``None`` for a finished one; else :class:`Job.NoResult`."""
        if self.state == JobState.FAILED:
            return self._failure()
        if self.state == JobState.JOB_FINISHED:
            return None
        raise NoResult(f"{self._label()} is {self.state.value}: not done yet")

    def to_dict(self) -> dict[str, Any]:
        """The job's fields as plain data (``parameters`` deserialized; datetimes kept).

        Example::

            print(json.dumps((await Job.objects.get(id=3)).to_dict(), default=str))
        """
        return self._fields(dict(self.parameters))

    def _fields(self, parameters: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state.value,
            "parameters": parameters,
            **{name: getattr(self, name) for name in PATHS},
        }

    def display(self) -> dict[str, Any]:
        """The job as plain data for showing it, running none of its stored code:
        ``parameters`` and, once finished, ``result`` decoded only where they are plain
        data (anything else reads ``<module.Class: stored with dill, not loaded here>``);
        for a failed job, ``exception``: its type, message and traceback as stored text.
        """
        what = self._label()
        doc = self._fields(peek_parameters(self._f_parameters, what=f"{what} parameters"))
        if self.state == JobState.JOB_FINISHED:
            doc["result"] = peek(self._f_result, what=f"{what} result")
        elif self.state == JobState.FAILED and self._f_exception:
            kind, _, message = _last_line(self.traceback or "").partition(": ")
            doc["exception"] = {
                "type": kind.rsplit(".", 1)[-1] or "Exception",
                "message": message,
                "traceback": self.traceback or "",
            }
        elif self.state == JobState.FAILED:  # failed by a hook or the engine: the reason
            assert self.id is not None
            failed = JobFailed(self.id, self.state_data)
            doc["exception"] = {"type": "JobFailed", "message": str(failed), "traceback": ""}
        return doc

    def _failure(self) -> BaseException:
        text = self._f_exception
        if text:
            what = f"{self._label()} exception"
            exc: BaseException = deserialize_exception(text, self.traceback, what=what)
            return exc
        assert self.id is not None
        return JobFailed(self.id, self.state_data)

    # --- what the rest of the SDK exchanges with a view -----------------------------------

    def _label(self) -> str:
        return f"Job {self.id}" if self.id is not None else f"Job {self.workdir!r}"

    @classmethod
    def _from_document(cls, doc: JobDocument) -> Any:
        view = cls.__new__(cls)
        view._load(doc)
        return view

    def _load(self, doc: JobDocument) -> None:
        """Take every field from ``doc`` and remember them as the saved values."""
        loaded = dict(vars(doc))
        loaded["resources"] = dict(vars(doc.resources))
        self._take(loaded)

    def _load_stored(self, doc: dict[str, Any]) -> None:
        """:meth:`_load` from the stored form of the job (``Job.to_doc()`` with ``_id``),
        handed over: the view keeps it as its document."""
        loaded = doc
        loaded["id"] = loaded.pop("_id")
        loaded["resources"] = dict(loaded["resources"])
        loaded["state"] = JobState(loaded["state"])
        self._take(loaded)

    def _put(self, doc: Mapping[str, Any]) -> None:
        """Every field from ``doc`` (a view's fields, ``id`` included)."""
        deque(map(setattr, repeat(self), _FIELD_SLOTS, _field_values(doc)), 0)
        resources = doc["resources"]
        deque(map(setattr, repeat(self), _RESOURCE_SLOTS, _resource_values(resources)), 0)
        self._f_launch_params = dict(resources["launch_params"])  # the stored one may be shared

    def _take(self, doc: dict[str, Any]) -> None:
        self._put(doc)
        self._app_ref = doc["app_id"]
        self._site_ref = None
        self._params = None
        self._saved = (*map(snapshot, _tracked_values(self)), doc["state"])

    def _new(self) -> NewJob:
        """This unsaved job, checked as it is now (fields may have been set since it was
        built): what it asks the store for."""
        if self.id is not None:
            raise JobError(f"Job {self.id} is already saved")
        label = self._label()
        # checked again: values assigned were checked then, but may have changed in place
        check_strings(label, "tags", self.tags)
        check_strings(label, "transfers", self.transfers)
        check_data(label, self.data)
        check_ids(label, self.parent_ids)
        resources = stored_resources(label, _resource_slot_values(self))
        parameters = self.parameters
        serialized = serialize_parameters(parameters, what=f"{label} parameters")
        workdir = check_workdir(self.workdir)
        return NewJob(
            self._app_ref, self._site_ref, parameters, workdir, serialized, resources, self
        )

    @property
    def _saved_state(self) -> JobState | None:
        return None if self._saved is None else self._saved[-1]

    def _changes(self) -> dict[str, Any]:
        """Attributes whose value differs from the saved one (``state`` included)."""
        if self._saved is None:
            raise JobError(f"{self._label()} is not saved")
        changed = {
            name: getattr(self, name)
            for name, saved in zip(TRACKED, self._saved, strict=False)
            if not unchanged(getattr(self, name), saved)
        }
        if self.state != self._saved[-1]:
            changed["state"] = self.state
        if self._params is not None:
            stored = serialize_parameters(self._params, what=f"{self._label()} parameters")
            if stored != self._f_parameters:
                changed["parameters"] = self._params
        return changed

    def _forget(self) -> None:
        """Deleted from the store: a new job again, for the record."""
        self._f_id = None
        self._saved = None


for _name in PATHS:
    setattr(JobView, _name, _Attribute(_name, getattr(JobView, f"_f_{_name}")))


def _exact(kind: type[Any], value: Any) -> Any:
    """``value`` if it is a ``kind`` itself (not a subclass or look-alike), else converted."""
    return value if type(value) is kind else kind(value)


def _last_line(text: str) -> str:
    """The last line of a traceback: ``module.Type: message``."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
