"""Consumer for STAGED_IN: runs the app's preprocess hook (default: → PREPROCESSED)."""

from balsam_mq.domain import JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class PreprocessConsumer(HookConsumer):
    accepts = (JobState.STAGED_IN,)
