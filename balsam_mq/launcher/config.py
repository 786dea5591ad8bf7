"""The launcher's options: the site's ``launcher:`` settings and one pilot run's parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from balsam_mq.errors import ConfigError, invalid_settings


class LauncherSettings(BaseModel):
    """The ``launcher:`` section of a site's settings.yml (every key optional).

    Example settings.yml section::

        launcher:
          app_run: mpich        # mpich | openmpi | srun | local
          cores_per_node: 64
          gpus_per_node: 4
          env: {OMP_PROC_BIND: spread}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_run: Literal["mpich", "openmpi", "srun", "local"] = Field(
        default="local",
        description="How jobs are launched; local runs one rank directly, more through a "
        "local mpiexec.",
    )
    mpiexec: str = Field(default="mpiexec", description="The mpiexec executable.")
    cores_per_node: int | None = Field(
        default=None, ge=1, description="Cores per node (null: discovered)."
    )
    gpus_per_node: int | None = Field(
        default=None, ge=0, description="GPUs per node (null: from CUDA_VISIBLE_DEVICES)."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables set for every job."
    )
    heartbeat_s: float = Field(
        default=10.0, gt=0, description="Seconds between session heartbeats."
    )
    idle_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Exit after this many seconds with nothing to run (null: never).",
    )
    drain_margin_s: float | None = Field(
        default=None,
        ge=0,
        description="Stop claiming this long before the wall time ends "
        "(null: 10% of it, at most 60 s).",
    )
    kill_grace_s: float = Field(
        default=5.0, ge=0, description="Seconds from SIGTERM to SIGKILL when jobs are stopped."
    )
    stop_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a stopping launcher waits for MongoDB to take the outcomes of "
        "its last runs; past them it exits and the reaper settles those jobs.",
    )
    max_prefetch: int = Field(
        default=200,
        ge=1,
        le=65535,
        description="At most this many runnable jobs held (free slots plus claimed ahead).",
    )
    claim_ahead_s: float = Field(
        default=0.25,
        ge=0,
        description="Claim ahead of free slots what the recent pace finishes in this many "
        "seconds, so a freed slot starts its next job at once (0: never).",
    )
    claim_ahead_max: int = Field(
        default=64, ge=0, le=10_000, description="At most this many jobs claimed ahead."
    )
    unfit_delay_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds before a job this launcher can never run is offered again.",
    )
    other_tags_delay_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds before a job not matching --filter-tags is offered again.",
    )
    warm_pool: bool = Field(
        default=True,
        description="Run single-rank Python jobs on the launcher's host in warm worker "
        "processes (false: a fresh interpreter per job).",
    )
    output_tail_chars: int = Field(
        default=2000, ge=0, description="Characters of the end of job.out kept with a failed run."
    )


class LauncherConfig(BaseModel):
    """One pilot run: where, how long, which jobs, on which nodes, with which settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site_id: int
    data_dir: Path  # the site's data/: job workdirs are relative to it
    wall_time_min: float = Field(gt=0)
    job_mode: Literal["serial", "mpi"] = "mpi"
    nodes: int | None = Field(default=None, ge=1)
    filter_tags: dict[str, str] = Field(default_factory=dict)
    batch_job_id: int | None = None
    settings: LauncherSettings = Field(default_factory=LauncherSettings)

    @property
    def wall_time_s(self) -> float:
        return self.wall_time_min * 60

    @property
    def drain_margin_s(self) -> float:
        margin = self.settings.drain_margin_s
        if margin is None:
            margin = min(60.0, 0.1 * self.wall_time_s)
        return min(margin, self.wall_time_s)


def parse_launcher_settings(
    raw: dict[str, Any], *, source: str = "settings.yml"
) -> LauncherSettings:
    try:
        return LauncherSettings.model_validate(raw)
    except ValidationError as exc:
        raise invalid_settings(source, exc, key=lambda key: f"launcher.{key}") from None


def parse_filter_tags(items: list[str]) -> dict[str, str]:
    """``["run=H2O", "size=small"]`` → ``{"run": "H2O", "size": "small"}``."""
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"filter tag {item!r} must look like key=value")
        tags[key] = value
    return tags
