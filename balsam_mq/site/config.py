"""A site's settings.yml: the validated model, its commented default text, and loading."""

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
    workers: int = Field(default=2, ge=1, le=256)
    batch_size: int = Field(default=50, ge=1, le=10_000)


class FileCleanerSettings(_Section):
    enabled: bool = False


class TransferSettings(_Section):
    locations: dict[str, str] = Field(default_factory=dict)
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=120.0, gt=0)

    @field_validator("locations")
    @classmethod
    def _uris(cls, v: dict[str, str]) -> dict[str, str]:
        for alias, uri in v.items():
            if not alias.isidentifier():
                raise ValueError(f"alias {alias!r} must be an identifier")
            protocol = uri.split(":", 1)[0]
            if protocol not in ("local", "globus"):
                raise ValueError(
                    f"location {alias!r}: unknown protocol {protocol!r} (expected local or globus)"
                )
        return v


class ReaperSettings(_Section):
    grace_s: float = Field(default=60.0, gt=0)
    interval_s: float = Field(default=10.0, gt=0)


OTHER_SECTIONS = frozenset({"launcher", "scheduler", "elastic_queue"})


class SiteConfig(_Section):
    """Everything in ``settings.yml``. Unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(extra="allow")  # sections owned by launcher/scheduler modules

    site_id: int | None = None
    name: str = ""
    hooks: HookSettings = Field(default_factory=HookSettings)
    file_cleaner: FileCleanerSettings = Field(default_factory=FileCleanerSettings)
    transfers: TransferSettings = Field(default_factory=TransferSettings)
    reaper: ReaperSettings = Field(default_factory=ReaperSettings)

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


DEFAULT_SETTINGS = """\
# balsam_mq site settings. Every key is optional; the values shown are the defaults.
site_id: {site_id}
name: {name}

hooks:
  workers: 2          # worker processes that run preprocess/postprocess/error/timeout hooks
  batch_size: 50      # jobs a consumer takes at once

file_cleaner:
  enabled: false      # delete each finished job's app.cleanup_files globs in its workdir

transfers:
  locations: {{}}       # alias: URI, e.g. laptop: local   (then "laptop:/abs/path" in jobs)
  retry_initial_s: 1  # a job whose input is not there yet is retried after this long,
  retry_max_s: 120    # doubling up to this

reaper:
  grace_s: 60         # a launcher silent this long has its RUNNING jobs moved to RUN_TIMEOUT
  interval_s: 10

launcher:
  app_run: local          # how jobs are wrapped: mpich | openmpi | srun | local
  mpiexec: mpiexec
  cores_per_node: null    # null: discovered
  gpus_per_node: null     # null: from CUDA_VISIBLE_DEVICES
  env: {{}}                 # set for every job
  heartbeat_s: 10
  idle_timeout_s: null    # exit after this many idle seconds
  drain_margin_s: null    # stop claiming this long before the end (default 10%, <= 60 s)
  claim_ahead_s: 0.1      # claim ahead of free slots what the recent pace runs in this long
  warm_pool: true         # single-rank Python jobs in warm workers (false: fresh interpreters)

scheduler:
  kind: local             # local | slurm | pbs
  interval_s: 10
  template: null          # null: <site>/job-template.sh if present, else built in
  extra_args: []          # extra submit arguments, e.g. ["-C", "cpu"]

elastic_queue:
  enabled: false          # submit batch jobs sized to the runnable backlog
  project: ""
  queue: ""
  job_mode: mpi
  min_nodes: 1
  max_nodes: 1
  max_queued: 1           # elastic batch jobs waiting in the queue at once
  max_wall_time_min: 60
  idle_timeout_s: 60      # its launchers exit when idle
"""


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
