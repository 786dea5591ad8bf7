"""Pydantic models of the documents balsam_mq stores: Site, App, Job, Event, BatchJob, Session."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from balsam_mq.domain.states import Actor, JobState


def utcnow() -> datetime:
    """Now, in UTC, truncated to milliseconds (what MongoDB keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Document(BaseModel):
    """A stored document: ``id`` is MongoDB's ``_id``."""

    model_config = ConfigDict(validate_assignment=True, extra="ignore")

    id: int | None = None

    def to_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="python", exclude={"id"})
        if self.id is not None:
            doc["_id"] = self.id
        plain: dict[str, Any] = _plain(doc)
        return plain

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Self:
        data = dict(doc)
        if "_id" in data:
            data["id"] = data.pop("_id")
        return cls.model_validate(data)


_SCALARS = frozenset({str, int, float, bool, type(None), bytes, datetime})


def plain(value: Any) -> Any:
    """Enums become their values so documents hold plain BSON types."""
    kind = type(value)
    if kind in _SCALARS:  # the common case first: this runs for every field of every document
        return value
    if kind is dict:
        return {k: plain(v) for k, v in value.items()}
    if kind is list:
        return [plain(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


_plain = plain


class Site(Document):
    name: str
    hostname: str = ""
    path: str = ""
    owner: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)


class ParameterSpec(BaseModel):
    required: bool = True
    default: Any = None
    help: str = ""


class TransferSlot(BaseModel):
    required: bool = False
    direction: Literal["in", "out"]
    local_path: str
    description: str = ""
    recursive: bool = False


class App(Document):
    site_id: int
    name: str
    description: str = ""
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    extra_parameters: bool = False  # run(**kwargs): parameters beyond the spec are accepted
    transfers: dict[str, TransferSlot] = Field(default_factory=dict)
    cleanup_files: list[str] = Field(default_factory=list)
    environment_variables: dict[str, str] = Field(default_factory=dict)
    python_exe: str = ""
    command_template: str | None = None
    # the lifecycle hooks the class defines itself (None: not known, so every hook step
    # goes to its consumer); steps whose hook is the default are passed through
    hooks: list[str] | None = None
    # how many times a run's failure or timeout may restart a job (``retry_capped``), and
    # the wait before the n-th restart runs: retry_backoff_s * 2**(n-1), at most an hour
    max_retries: int = Field(default=5, ge=0)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    serialized_class: str = ""
    source: str = ""
    last_update: datetime = Field(default_factory=utcnow)


class Resources(BaseModel):
    """What one job asks of the allocation. Numbers are strict: ``"2"`` or ``True`` for
    an int is refused, not converted (an int is a number for ``gpus_per_rank``)."""

    model_config = ConfigDict(validate_assignment=True)

    num_nodes: int = Field(default=1, ge=1, strict=True)
    ranks_per_node: int = Field(default=1, ge=1, strict=True)
    threads_per_rank: int = Field(default=1, ge=1, strict=True)
    threads_per_core: int = Field(default=1, ge=1, strict=True)
    gpus_per_rank: float = Field(default=0, ge=0, strict=True)
    node_packing_count: int = Field(default=1, ge=1, strict=True)
    launch_params: dict[str, str] = Field(default_factory=dict)
    wall_time_min: int = Field(default=0, ge=0, strict=True)


class Job(Document):
    app_id: int
    site_id: int
    owner: str = ""
    workdir: str
    tags: dict[str, str] = Field(default_factory=dict)
    # JSON values as themselves, others as {"__dill__": text} (``serialization.DILL_KEY``)
    parameters: dict[str, Any] = Field(default_factory=dict)
    # free-form, limited in size as stored (``domain.storable.DATA_LIMIT``, also for state_data)
    data: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    parent_ids: list[StrictInt] = Field(default_factory=list)
    transfers: dict[str, str] = Field(default_factory=dict)
    state: JobState = JobState.CREATED
    state_data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    last_update: datetime = Field(default_factory=utcnow)
    return_code: StrictInt | None = None
    result: str | None = None  # dill + base64 of run()'s return value
    exception: str | None = None  # dill + base64 of the exception run() raised
    traceback: str | None = None
    session_id: int | None = None
    batch_job_id: StrictInt | None = None
    seq: int = 0  # transitions so far; each event carries the job's seq after it
    # set by a launcher that can never run this job (too big, too long): who, why, when
    unfit: dict[str, Any] | None = None
    restarts: int = 0  # restarts after a run failed or timed out (``pipeline.retry_capped``)
    # this job's own retry limit and backoff (None: its app's ``max_retries``, ``retry_backoff_s``)
    max_retries: StrictInt | None = Field(default=None, ge=0)
    retry_backoff_s: Annotated[float, Field(strict=True, ge=0)] | None = None


def hex_id(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document whose ``_id`` is an ObjectId, with it as ``id`` in hex."""
    data = dict(doc)
    if "_id" in data:
        data["id"] = str(data.pop("_id"))
    return data


EventKind = Literal["job", "app", "batchjob"]


class Event(BaseModel):
    """One row of the ``events`` collection: the outbox and the user-visible event log."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None  # the ObjectId, as hex
    kind: EventKind = "job"
    site_id: int
    job_id: int | None = None
    app_id: int | None = None
    batch_job_id: int | None = None
    from_state: str | None = None
    to_state: str
    seq: int | None = None  # a job event's position in the job's history (1 = creation)
    by: Actor | None = None
    timestamp: datetime = Field(default_factory=utcnow)
    state_data: dict[str, Any] = Field(default_factory=dict)
    # nobody has work for it (a step passed through, a finish without cleanup or
    # children...): published for the log and for waiters, never to a work queue
    quiet: bool = False

    def to_doc(self) -> dict[str, Any]:
        doc = _plain(self.model_dump(mode="python", exclude={"id"}))
        assert isinstance(doc, dict)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Event:
        return cls.model_validate(hex_id(doc))

    @property
    def routing_key(self) -> str:
        return routing_key(self.kind, self.site_id, self.to_state, self.quiet)


QUIET = "quiet"  # the last word of a quiet event's routing key

# A transaction stores one document per job it moves: the event of the job's first step,
# with the steps passed through after it (``domain.pipeline``) in its ``then`` list,
# each with every one of STEP_FIELDS (its own ``_id`` included); the other fields are
# the document's. A job's creation (READY, STAGED_IN, PREPROCESSED) is one document.
THEN = "then"
STEP_FIELDS: tuple[str, ...] = ("_id", "from_state", "to_state", "seq", "by", "state_data", "quiet")


def expand_event_doc(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a stored event document, in the order they happened: the document's
    own, then one per step of its ``then`` list."""
    then = doc.get(THEN)
    if not then:
        return [doc]
    first = {k: v for k, v in doc.items() if k != THEN}
    return [first, *({**first, **step} for step in then)]


def blank(model: type[Document] | type[Event], **required: Any) -> dict[str, Any]:
    """The stored form of a ``model`` document with ``required`` and every other field at
    its default, in field order: the start of documents built in bulk, without a model
    (and its validation) each. Its default containers are shared by every copy: whoever
    copies it replaces them."""
    return model.model_construct(**required).to_doc()


def new_job_doc() -> dict[str, Any]:
    """The stored form of a new job, every field at its default but ``app_id``,
    ``site_id`` and ``workdir`` (to fill), without ``_id`` (the store gives it), in field
    order: a :func:`blank`, whose containers the caller replaces."""
    doc = blank(Job, app_id=0, site_id=0, workdir="")
    doc.pop("_id", None)
    return doc


def routing_key(kind: str, site_id: int, to_state: str, quiet: bool = False) -> str:
    """``<kind>.<site>.<state>``, with ``.quiet`` appended to a quiet event: work queues
    bind the plain keys, waiters and feeds ``<kind>.<site>.<state>.#`` (both forms).

    ``job.3.RUN_DONE``, ``job.3.STAGED_IN.quiet``, ``app.3.synced``, ``batchjob.3.queued``.
    """
    key = f"{kind}.{site_id}.{to_state}"
    return f"{key}.{QUIET}" if quiet else key


def routing_site(key: str) -> int | None:
    """The site id of a :func:`routing_key` (``None`` for a key of another form)."""
    parts = key.split(".")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


class BatchJobState(StrEnum):
    PENDING_SUBMISSION = "pending_submission"
    SUBMIT_FAILED = "submit_failed"
    QUEUED = "queued"
    RUNNING = "running"
    PENDING_DELETION = "pending_deletion"
    FINISHED = "finished"


class BatchJob(Document):
    site_id: int
    scheduler_id: str | None = None
    project: str = ""
    queue: str = ""
    num_nodes: int = Field(default=1, ge=1)
    wall_time_min: int = Field(default=10, ge=1)
    job_mode: Literal["serial", "mpi"] = "mpi"
    filter_tags: dict[str, str] = Field(default_factory=dict)
    state: BatchJobState = BatchJobState.PENDING_SUBMISSION
    status_info: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    start_time: datetime | None = None
    end_time: datetime | None = None


class Session(Document):
    """A launcher's liveness record: heartbeats tell the site agent it is alive."""

    site_id: int
    batch_job_id: int | None = None
    hostname: str = ""
    pid: int = 0
    heartbeat: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)


class TransferState(StrEnum):
    """Where one transfer slot of one job stands."""

    PENDING = "pending"  # planned, not started
    ACTIVE = "active"  # in a batch being moved now
    WAITING = "waiting"  # its source does not exist yet: tried again later
    ERROR = "error"  # the last attempt failed: tried again later, up to a limit
    DONE = "done"
    FAILED = "failed"  # gave up: its job failed with the reason


class TransferItem(BaseModel):
    """One transfer slot of one job, in one direction: a row of ``transfer_items``, one
    per (job, direction, slot), updated by every attempt."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None  # the ObjectId, as hex
    job_id: int
    site_id: int
    slot: str
    direction: Literal["in", "out"]
    location: str  # the alias of settings.yml transfers.locations
    protocol: str  # local, rsync
    remote_path: str
    local_path: str
    recursive: bool = False
    state: TransferState = TransferState.PENDING
    task_id: str | None = None  # the batch it moved in (a provider's task)
    bytes: int = 0
    failures: int = 0  # attempts that failed (an unreachable host...): at most max_attempts
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    last_update: datetime = Field(default_factory=utcnow)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TransferItem:
        return cls.model_validate(hex_id(doc))


class SiteRemoval(BaseModel):
    """What removing a site deletes (or, in a dry run, would delete)."""

    site: Site
    jobs: int = 0
    apps: int = 0
    batch_jobs: int = 0
    active_batch_jobs: list[BatchJob] = Field(default_factory=list)  # still in the scheduler

    @property
    def in_use(self) -> bool:
        """Whether removing the site needs ``force`` (it still has jobs or live batch jobs)."""
        return bool(self.jobs or self.active_batch_jobs)

    def refusal(self) -> str:
        """Why the site cannot be removed without ``force``."""
        parts = []
        if self.jobs:
            parts.append(f"{self.jobs} job{'s' if self.jobs != 1 else ''}")
        if self.active_batch_jobs:
            n = len(self.active_batch_jobs)
            parts.append(f"{n} active batch job{'s' if n != 1 else ''}")
        return (
            f"Site {self.site.name!r} (id {self.site.id}) still has {' and '.join(parts)}; "
            "remove it with force=True (CLI: --force) to delete them too"
        )
