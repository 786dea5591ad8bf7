"""Consumer for RUN_ERROR: runs the app's handle_error hook (default: → FAILED)."""

from balsam_mq.domain import JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class ErrorConsumer(HookConsumer):
    accepts = (JobState.RUN_ERROR,)
