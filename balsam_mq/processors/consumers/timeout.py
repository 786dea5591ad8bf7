"""Consumer for RUN_TIMEOUT: runs the app's handle_timeout hook (default: → RESTART_READY)."""

from balsam_mq.domain import JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class TimeoutConsumer(HookConsumer):
    accepts = (JobState.RUN_TIMEOUT,)
