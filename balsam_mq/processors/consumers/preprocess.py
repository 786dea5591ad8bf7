"""Consumer for STAGED_IN: runs the app's preprocess hook (default: → PREPROCESSED)."""

from balsam_mq.domain import Actor, JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class PreprocessConsumer(HookConsumer):
    accepts = (JobState.STAGED_IN,)
    hook = "preprocess"
    actor = Actor.PREPROCESS
    default_to = JobState.PREPROCESSED
