"""The one exception tree of balsam_mq.

    BalsamError
     ├── ConfigError            a setting or settings file is malformed (names the variable/key)
     ├── StackError             the local stack (mongod, RabbitMQ) cannot be started or reached
     ├── AppError               an ApplicationDefinition is invalid (names the app and the field)
     ├── JobError               a job is invalid (names the job and the field)
     ├── NotFound               a site, app or job does not exist
     ├── InvalidTransition      a state change the transition table does not allow
     ├── StoreError             MongoDB failed or answered something unexpected
     ├── BrokerError            RabbitMQ failed (declare, publish, confirm)
     └── SerializationError     dill could not (de)serialize, or an entity is too large

Every message names the object and the field it is about, e.g.
``App 'Sleeper' at site 'polaris': parameter 'mode' is optional but has no default``.
"""

from __future__ import annotations


class BalsamError(Exception):
    """Base of every error balsam_mq raises on purpose."""


class ConfigError(BalsamError):
    """A setting (environment variable or settings-file key) is malformed."""


class StackError(BalsamError):
    """The local stack could not be started, stopped or reached."""


class AppError(BalsamError):
    """An ApplicationDefinition is invalid."""


class JobError(BalsamError):
    """A job is invalid (parameters, transfers, resources)."""


class NotFound(BalsamError):
    """A site, app, job or other document does not exist."""


class InvalidTransition(BalsamError):
    """A job state change that the transition table does not allow."""

    def __init__(self, job_id: int, from_state: str, to_state: str, by: str | None = None) -> None:
        self.job_id = job_id
        self.from_state = from_state
        self.to_state = to_state
        who = f" by {by}" if by else ""
        super().__init__(f"Job {job_id}: transition {from_state} -> {to_state}{who} is not allowed")


class StoreError(BalsamError):
    """MongoDB failed or returned something unexpected."""


class BrokerError(BalsamError):
    """RabbitMQ failed: declaration, publish or confirm."""


class SerializationError(BalsamError):
    """An object could not be serialized or deserialized, or is too large."""
