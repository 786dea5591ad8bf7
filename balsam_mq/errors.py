"""The one exception tree of balsam_mq.

    BalsamError
     ├── ConfigError            a setting or settings file is malformed (names the variable/key)
     ├── StackError             the local stack (mongod, RabbitMQ) cannot be started or reached
     ├── AgentError             a site agent cannot be started, stopped or signalled (names the pid)
     ├── AppError               an ApplicationDefinition is invalid (names the app and the field)
     ├── JobError               a job is invalid (names the job and the field)
     │    └── JobFailed         a job awaited as a future ended FAILED without a stored exception
     ├── NoResult               a job's result was asked for before the job finished
     ├── NotFound               a site, app or job does not exist
     ├── InUse                  a site cannot be removed while it still has jobs (without force)
     ├── MultipleResults        one document was expected and several matched (an ambiguous name)
     ├── QueryError             a query names an unknown field or operator, or a bad value
     ├── InvalidTransition      a state change the transition table does not allow
     ├── StoreError             MongoDB failed or answered something unexpected
     │    └── Unavailable       MongoDB cannot be reached for now (trying again may work)
     ├── BrokerError            RabbitMQ failed (declare, publish, confirm)
     ├── AuthError              a gateway token is missing, unknown, revoked or expired
     ├── GatewayError           the gateway cannot be reached or answered something unexpected
     ├── SchedulerError         sbatch/qsub/squeue/... failed or answered something unreadable
     └── SerializationError     dill could not (de)serialize, or an entity is too large

Every message names the object and the field it is about, e.g.
``App 'Sleeper' at site 'polaris': parameter 'mode' is optional but has no default``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BalsamError(Exception):
    """Base of every error balsam_mq raises on purpose."""


class ConfigError(BalsamError):
    """A setting (environment variable or settings-file key) is malformed."""


class StackError(BalsamError):
    """The local stack could not be started, stopped or reached."""


class AgentError(BalsamError):
    """A site's agent cannot be started, stopped or signalled: one already runs, it did not
    come up or go down in time, or it runs on another host."""


class AppError(BalsamError):
    """An ApplicationDefinition is invalid."""


class JobError(BalsamError):
    """A job is invalid (parameters, transfers, resources)."""


class JobFailed(JobError):
    """A job awaited for its result ended FAILED and has no stored exception to re-raise."""

    def __init__(self, job_id: int, state_data: dict[str, object] | None = None) -> None:
        self.job_id = job_id
        self.state_data = dict(state_data or {})
        detail = f": {self.state_data}" if self.state_data else ""
        super().__init__(f"Job {job_id} FAILED{detail}")


class NoResult(BalsamError):
    """``job.result_nowait()`` was called before the job reached a final state."""


class NotFound(BalsamError):
    """A site, app, job or other document does not exist."""


class InUse(BalsamError):
    """A document cannot be removed while others still depend on it (a site with jobs)."""


class MultipleResults(BalsamError):
    """A query expected to match exactly one document matched more."""


class QueryError(BalsamError):
    """A query names an unknown field or operator, or gives a value of the wrong kind."""


class InvalidTransition(BalsamError):
    """A job state change that the transition table does not allow."""

    def __init__(
        self, job_id: int, from_state: str, to_state: str, by: str | None = None, hint: str = ""
    ) -> None:
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        who = f" by {by}" if by else ""
        hint = f"; {hint}" if hint else ""
        super().__init__(
            f"Job {job_id}: transition {from_state} -> {to_state}{who} is not allowed{hint}"
        )


class StoreError(BalsamError):
    """MongoDB failed or returned something unexpected."""


class Unavailable(StoreError):
    """MongoDB cannot be reached for now (down, restarting, electing a primary); the same
    request may succeed later."""


class BrokerError(BalsamError):
    """RabbitMQ failed: declaration, publish or confirm."""


class AuthError(BalsamError):
    """A gateway request carried no token, or one that is unknown, revoked or expired."""


class GatewayError(BalsamError):
    """The HTTP gateway cannot be reached, or answered something the client cannot read."""


class SchedulerError(BalsamError):
    """A batch scheduler command (submit, status, delete) failed or could not be parsed."""


class SerializationError(BalsamError):
    """An object could not be serialized or deserialized, or is too large."""


def invalid_settings(
    source: str, exc: Any, *, key: Callable[[str], str] = lambda dotted: dotted
) -> ConfigError:
    """One error naming every invalid key of a pydantic ``ValidationError`` ``exc``:
    ``"<source>: <key>: <reason>; ..."``; ``key`` turns a dotted field path into the name
    the user wrote (``launcher.kill_grace_s``, ``BALSAM_PREFETCH``, ``--app-run``)."""
    problems = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"]) or "(root)"
        reason = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{key(dotted)}: {reason}")
    return ConfigError(f"{source}: " + "; ".join(problems))


def brief(exc: BaseException) -> str:
    """``exc`` in one log line: its type and first line, without the timeouts and the
    topology description PyMongo appends (``Timeout: 10.0s, Topology Description: ...``)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    for tail in (" (configured timeouts", ", Timeout:", ", full error:"):
        text = text.split(tail)[0]
    return f"{type(exc).__name__}: {text}"[:300]
