"""Consumer for RUN_DONE: runs the app's postprocess hook (default: → POSTPROCESSED)."""

from balsam_mq.domain import JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class PostprocessConsumer(HookConsumer):
    accepts = (JobState.RUN_DONE,)
