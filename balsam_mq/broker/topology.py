"""RabbitMQ topology as data: every exchange and queue name, built from the namespace."""

from __future__ import annotations

from dataclasses import dataclass

from balsam_mq.domain import RUNNABLE_STATES, JobState

S = JobState


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: str = "topic"


@dataclass(frozen=True)
class QueueSpec:
    """A durable work queue (or a private auto-delete one) and its bindings to ``exchange``."""

    name: str
    exchange: str
    routing_keys: tuple[str, ...]
    durable: bool = True
    auto_delete: bool = False
    dead_letter_exchange: str | None = None
    retry_exchange: str | None = None  # also bound there under its own name (deferrals)
    message_ttl_ms: int | None = None
    quorum: bool = False  # a quorum queue (replicated), else a classic one


# seconds a deferred message can wait before it returns to its queue (one queue per level,
# so a short delay never waits behind a long one)
DELAY_LEVELS: tuple[int, ...] = (1, 5, 30, 120)

# per-site work queue suffix -> the job states whose events it receives
SITE_QUEUE_STATES: dict[str, tuple[JobState, ...]] = {
    "stage_in": (S.READY,),
    "preprocess": (S.STAGED_IN,),
    "runnable": (S.PREPROCESSED, S.RESTART_READY),
    "postprocess": (S.RUN_DONE,),
    "error": (S.RUN_ERROR,),
    "timeout": (S.RUN_TIMEOUT,),
    "stage_out": (S.POSTPROCESSED, S.STAGED_OUT),
    "cleanup": (S.JOB_FINISHED,),
}


# job states whose events launchers share: they travel a few to a message, so the
# queue's order is the order jobs became runnable and competing launchers take them in
# small groups (a launcher's prefetch counts messages); every other routing key carries
# its events many to a message
SHARED_STATES: frozenset[JobState] = RUNNABLE_STATES
SHARED_MAX = 8


def shared(kind: str, to_state: str, quiet: bool) -> bool:
    """Whether an event is one launchers share (see :data:`SHARED_STATES`)."""
    return kind == "job" and not quiet and to_state in SHARED_STATES


@dataclass(frozen=True)
class SiteQueues:
    site_id: int
    stage_in: QueueSpec
    preprocess: QueueSpec
    runnable: QueueSpec
    postprocess: QueueSpec
    error: QueueSpec
    timeout: QueueSpec
    stage_out: QueueSpec
    cleanup: QueueSpec

    def all(self) -> tuple[QueueSpec, ...]:
        return tuple(getattr(self, name) for name in SITE_QUEUE_STATES)


@dataclass(frozen=True)
class Topology:
    """All names under one namespace. Tests isolate themselves with a fresh namespace."""

    namespace: str
    events: ExchangeSpec
    dead_letter: ExchangeSpec
    dead_queue: QueueSpec
    deps: QueueSpec
    retry: ExchangeSpec
    quorum: bool = False  # durable queues are quorum queues

    def work_queue(self, name: str, routing_keys: tuple[str, ...]) -> QueueSpec:
        """A durable work queue on the events exchange, with dead-lettering and deferrals."""
        return QueueSpec(
            name=name,
            exchange=self.events.name,
            routing_keys=routing_keys,
            dead_letter_exchange=self.dead_letter.name,
            retry_exchange=self.retry.name,
            quorum=self.quorum,
        )

    def delay_exchange(self, seconds: int) -> ExchangeSpec:
        return ExchangeSpec(f"{self.namespace}.delay.{seconds}", "fanout")

    def delay_queue(self, seconds: int) -> QueueSpec:
        """Holds deferred messages ``seconds``, then dead-letters them to the retry exchange,
        which routes each back to the work queue named by its routing key."""
        return QueueSpec(
            name=f"{self.namespace}.delay.{seconds}",
            exchange=self.delay_exchange(seconds).name,
            routing_keys=("",),
            dead_letter_exchange=self.retry.name,
            message_ttl_ms=seconds * 1000,
            quorum=self.quorum,
        )

    def delay_level(self, seconds: float) -> int:
        """The smallest delay level of at least ``seconds`` (the largest if none is)."""
        return next((level for level in DELAY_LEVELS if level >= seconds), DELAY_LEVELS[-1])

    def site(self, site_id: int) -> SiteQueues:
        queues = {
            suffix: self.work_queue(
                f"{self.namespace}.{site_id}.{suffix}",
                tuple(f"job.{site_id}.{state.value}" for state in states),
            )
            for suffix, states in SITE_QUEUE_STATES.items()
        }
        return SiteQueues(site_id=site_id, **queues)

    def run_ends(self, site_id: int) -> tuple[str, ...]:
        """The routing keys (quiet or not) of the events that can end a run from outside its
        launcher: a user's kill or deletion (RUNNING → FAILED). A launcher binds a private
        queue to them and kills the runs whose jobs left RUNNING (``launcher.kills``)."""
        return (f"job.{site_id}.{S.FAILED.value}.#",)

    def private(self, name: str, routing_keys: tuple[str, ...]) -> QueueSpec:
        """A client's own auto-delete queue (result waiters, app reload listeners)."""
        return QueueSpec(
            name=f"{self.namespace}.private.{name}",
            exchange=self.events.name,
            routing_keys=routing_keys,
            durable=False,
            auto_delete=True,
        )


def build_topology(namespace: str, *, quorum: bool = False) -> Topology:
    """Every name under ``namespace``; ``quorum``: durable queues are quorum queues."""
    events = ExchangeSpec(f"{namespace}.events", "topic")
    dead_letter = ExchangeSpec(f"{namespace}.dead", "fanout")
    retry = ExchangeSpec(f"{namespace}.retry", "direct")
    return Topology(
        namespace=namespace,
        events=events,
        dead_letter=dead_letter,
        dead_queue=QueueSpec(f"{namespace}.dead", dead_letter.name, ("#",), quorum=quorum),
        deps=QueueSpec(
            f"{namespace}.deps",
            events.name,
            (f"job.*.{S.JOB_FINISHED.value}", f"job.*.{S.FAILED.value}"),
            dead_letter_exchange=dead_letter.name,
            retry_exchange=retry.name,
            quorum=quorum,
        ),
        retry=retry,
        quorum=quorum,
    )
