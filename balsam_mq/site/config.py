"""A site's settings.yml: the validated model of its own sections, and loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from balsam_mq.errors import ConfigError, invalid_settings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HookSettings(_Section):
    workers: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Worker processes that run preprocess/postprocess/error/timeout hooks.",
    )
    batch_size: int = Field(
        default=50, ge=1, le=10_000, description="Jobs a consumer takes at once."
    )
    timeout_s: float = Field(
        default=600,
        gt=0,
        description="A hook running longer is stopped (its worker process killed) and its "
        "job fails, naming the hook.",
    )


class FileCleanerSettings(_Section):
    enabled: bool = Field(
        default=False,
        description="Delete each finished job's app.cleanup_files globs in its workdir.",
    )


class TransferSettings(_Section):
    locations: dict[str, str] = Field(
        default_factory=dict,
        description="Alias to URI: local, local:/prefix, rsync://[user@]host[:port][/prefix] "
        "(rsync over SSH) or globus://<endpoint-uuid>[/prefix] (jobs then say "
        '"alias:/abs/path").',
    )
    ssh_command: str = Field(
        default="ssh",
        description="The SSH command rsync runs (e.g. 'ssh -i ~/.ssh/site_key'); it never "
        "prompts (BatchMode).",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts of a failing transfer (an unreachable host...) before its job "
        "fails; a source that does not exist yet is waited for, not counted.",
    )
    timeout_s: float = Field(
        default=1500.0,
        gt=0,
        description="Seconds one batched transfer may take before it is stopped and counted "
        "as a failed attempt (below RabbitMQ's consumer_timeout, 30 min by default).",
    )
    retry_initial_s: float = Field(
        default=1.0,
        gt=0,
        description="A job whose input is not there yet is retried after this many seconds.",
    )
    retry_max_s: float = Field(
        default=120.0, gt=0, description="The wait doubles at each retry, up to this many seconds."
    )
    globus_endpoint: str | None = Field(
        default=None,
        description="This site's Globus endpoint (collection) UUID, the other end of every "
        "globus:// transfer; it must see the site's filesystem at the same paths. Required "
        "when a location is globus://.",
    )
    globus_client_id: str | None = Field(
        default=None,
        description="The client UUID of a Globus native app (registered at "
        "app.globus.org) that `balsam-mq site globus-login` logs in with and that refreshes "
        "the tokens. Required when a location is globus://.",
    )

    @field_validator("globus_endpoint", "globus_client_id")
    @classmethod
    def _uuid(cls, v: str | None) -> str | None:
        import uuid

        if v is None:
            return v
        try:
            return str(uuid.UUID(v))
        except ValueError:
            raise ValueError(f"{v!r} is not a UUID") from None

    @model_validator(mode="after")
    def _globus(self) -> TransferSettings:
        aliases = [a for a, uri in self.locations.items() if uri.startswith("globus:")]
        unset = [k for k in ("globus_endpoint", "globus_client_id") if getattr(self, k) is None]
        if aliases and unset:
            raise ValueError(
                f"location(s) {', '.join(map(repr, aliases))} use globus://, which needs "
                + " and ".join(f"transfers.{k}" for k in unset)
            )
        return self

    @field_validator("locations")
    @classmethod
    def _uris(cls, v: dict[str, str]) -> dict[str, str]:
        for alias, uri in v.items():
            if not alias.isidentifier():
                raise ValueError(f"alias {alias!r} must be an identifier")
            protocol = uri.split(":", 1)[0]
            if protocol not in ("local", "rsync", "ssh", "globus"):
                raise ValueError(
                    f"location {alias!r}: unknown protocol {protocol!r} "
                    "(expected local, rsync, ssh or globus)"
                )
        return v


class ReaperSettings(_Section):
    grace_s: float = Field(
        default=60.0,
        gt=0,
        description="RUNNING jobs of a launcher silent this many seconds go to RUN_TIMEOUT.",
    )
    interval_s: float = Field(
        default=10.0, gt=0, description="Seconds between the reaper's passes."
    )


class LogSettings(_Section):
    max_mb: float = Field(
        default=20.0,
        gt=0,
        description="A log file in logs/ (the agent's, each launcher's) is rotated when it "
        "reaches this many MB.",
    )
    backups: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Rotated files kept of each log (agent.log.1 ... agent.log.N, oldest last).",
    )


# validated by the modules that own them; site/template.py maps each to its model
OTHER_SECTIONS = frozenset({"launcher", "scheduler", "elastic_queue"})


class SiteConfig(_Section):
    """Everything in ``settings.yml``. Unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(extra="allow")  # sections owned by launcher/scheduler modules

    site_id: int | None = Field(
        default=None, description="The site's id in the database, set by `balsam-mq site init`."
    )
    name: str = Field(default="", description="The site's name, set by `balsam-mq site init`.")
    hooks: HookSettings = Field(default_factory=HookSettings)
    file_cleaner: FileCleanerSettings = Field(default_factory=FileCleanerSettings)
    transfers: TransferSettings = Field(default_factory=TransferSettings)
    reaper: ReaperSettings = Field(default_factory=ReaperSettings)
    logs: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _known_sections(self) -> SiteConfig:
        unknown = sorted(set(self.model_extra or {}) - OTHER_SECTIONS)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        return self

    def section(self, name: str) -> dict[str, Any]:
        """A section owned by another module (``launcher``, ``scheduler``...), raw."""
        extra = self.model_extra or {}
        value = extra.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"settings.yml: {name}: must be a mapping")
        return value


def parse_config(text: str, *, source: str = "settings.yml") -> SiteConfig:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping of settings")
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        raise invalid_settings(source, exc) from None


def load_config(path: Path) -> SiteConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such settings file (is this a site directory?)")
    return parse_config(path.read_text(), source=str(path))
