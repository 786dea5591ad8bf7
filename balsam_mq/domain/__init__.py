"""Pure domain: models, states and the transition table, message types. No I/O."""

from balsam_mq.domain.changes import Change, TransitionResult
from balsam_mq.domain.messages import Delivery, decode_events, encode_event_docs, encode_events
from balsam_mq.domain.models import (
    App,
    BatchJob,
    BatchJobState,
    Event,
    Job,
    ParameterSpec,
    Resources,
    Session,
    Site,
    SiteRemoval,
    TransferSlot,
    utcnow,
)
from balsam_mq.domain.states import (
    RUNNABLE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Actor,
    JobState,
    check_transition,
    is_legal,
    parse_state,
)

__all__ = [
    "RUNNABLE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Actor",
    "App",
    "BatchJob",
    "BatchJobState",
    "Change",
    "Delivery",
    "Event",
    "Job",
    "JobState",
    "ParameterSpec",
    "Resources",
    "Session",
    "Site",
    "SiteRemoval",
    "TransferSlot",
    "TransitionResult",
    "check_transition",
    "decode_events",
    "encode_event_docs",
    "encode_events",
    "is_legal",
    "parse_state",
    "utcnow",
]
