"""Consumer for RUN_ERROR: runs the app's handle_error hook (default: → FAILED)."""

from balsam_mq.domain import Actor, Change, Job, JobState
from balsam_mq.processors.consumers.hooked import HookConsumer


class ErrorConsumer(HookConsumer):
    accepts = (JobState.RUN_ERROR,)
    hook = "handle_error"
    actor = Actor.ERROR
    default_to = JobState.FAILED

    def default_change(self, job: Job) -> Change:
        # keep what the launcher recorded (return code, output tail) on the failure
        assert job.id is not None
        state_data = {"reason": "run error", **job.state_data}
        return Change(job.id, job.state, JobState.FAILED, state_data=state_data, by=self.actor)
