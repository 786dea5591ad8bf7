"""From a claimed job, its app and its placement to a LaunchSpec; reading a run's result back."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from balsam_mq.domain import App, Job
from balsam_mq.domain.serialization import deserialize_app, deserialize_parameters
from balsam_mq.errors import JobError
from balsam_mq.launcher.command import (
    RESULT_FILE,
    RUN_SPEC_FILE,
    direct_argv,
    job_environment,
    job_script,
    preamble_text,
    python_command,
    with_defaults,
)
from balsam_mq.launcher.config import LauncherConfig
from balsam_mq.launcher.nodes import Placement
from balsam_mq.launcher.platform import AppRun, wrap_command
from balsam_mq.launcher.python_runner import is_sdk_app, make_app
from balsam_mq.launcher.runs import OUTPUT_FILE, LaunchSpec
from balsam_mq.sdk.definition import defines
from balsam_mq.sdk.templates import render_command

# read once at interpreter start: a job setting them needs a fresh interpreter
_STARTUP_VARIABLES = ("PYTHON", "LD_", "DYLD_")


@dataclass(frozen=True)
class Prepared:
    spec: LaunchSpec
    workdir: Path
    python: bool  # a run() app: its result file is read after the run


class Preparer:
    """Builds launch specs; keeps each app's class loaded per version (``last_update``)."""

    def __init__(
        self,
        config: LauncherConfig,
        *,
        python_exe: str | None = None,
        workdirs_at_launch: bool = False,
    ) -> None:
        self.config = config
        # the executor makes a missing workdir as the job starts: a warm worker makes its
        # job's beside this event loop, not in it (a mkdir costs the file system's time)
        self._workdirs_at_launch = workdirs_at_launch
        self.python_exe = python_exe or sys.executable
        self._classes: dict[int, tuple[datetime, type]] = {}
        self._data_root: Path | None = None
        self._parents: dict[str, Path] = {}  # workdir parent -> resolved path

    def workdir(self, job: Job) -> Path:
        """The job's workdir, resolved inside the site's data directory (symlinks followed)."""
        return self._made_workdir(job, make=False)[0]

    def _made_workdir(self, job: Job, *, make: bool) -> tuple[Path, bool]:
        """The job's workdir (as ``workdir``) and whether it was created just now (only
        with ``make``, which creates it and its parents when missing).

        Jobs of a batch share their parent directories: a parent is resolved once, and
        only the workdir's own name is looked at for each job. A directory this call
        created is no symlink, so a new job's workdir costs a single ``mkdir``.
        """
        relative = os.path.normpath(job.workdir)
        parent, name = os.path.split(relative)
        created = False
        if name in ("", ".", "..") or relative.startswith(("/", "..")):
            target = (self._root() / relative).resolve()
        else:
            base = self._parents.get(parent)
            if base is None:
                base = self._parents[parent] = (self._root() / parent).resolve()
                if len(self._parents) > 10_000:
                    self._parents.clear()
            target = base / name
            if make and base.is_relative_to(self._root()):
                created = _mkdir_new(target)
            if not created and target.is_symlink():
                target = target.resolve()
        if not target.is_relative_to(self._root()):
            raise JobError(
                f"Job {job.id}: workdir {job.workdir!r} escapes the site's data directory"
            )
        if make and not created:
            target.mkdir(parents=True, exist_ok=True)
        return target, created

    def _root(self) -> Path:
        if self._data_root is None:
            self._data_root = self.config.data_dir.resolve()
        return self._data_root

    def app_class(self, app: App) -> type | None:
        if not app.serialized_class:
            return None
        assert app.id is not None
        cached = self._classes.get(app.id)
        if cached is None or cached[0] != app.last_update:
            cls = deserialize_app(app.serialized_class, what=f"App {app.name!r}")
            self._classes[app.id] = (app.last_update, cls)
            return cls
        return cached[1]

    def prepare(self, job: Job, app: App | None, placement: Placement) -> Prepared:
        """The spec of one run; raises a ``BalsamError`` naming the job if it cannot run.

        The job's workdir is made here when its ``shell_preamble()`` hook runs in it, or
        when the executor does not make it as the job starts."""
        assert job.id is not None
        if app is None:
            raise JobError(f"Job {job.id}: App {job.app_id} does not exist")
        parameters = deserialize_parameters(job.parameters, what=f"Job {job.id}: parameters")
        cls = self.app_class(app)
        hook = cls is not None and is_sdk_app(cls) and defines(cls, "shell_preamble")
        workdir, fresh = self._made_workdir(job, make=hook or not self._workdirs_at_launch)
        preamble = ""
        if cls is not None and hook:
            from balsam_mq.site.workdir import in_workdir

            try:
                with in_workdir(workdir):  # like every hook: output to the job's balsam.log
                    preamble = preamble_text(make_app(cls, job).shell_preamble())
            except Exception as exc:
                raise JobError(
                    f"Job {job.id} of App {app.name!r}: shell_preamble() raised {exc!r}"
                ) from exc
        python = not app.command_template
        python_run = None
        if python:
            if cls is None:
                raise JobError(f"App {app.name!r} has neither a command_template nor a run()")
            python_run = self._run_spec(job, app)
            if not fresh:  # a result left by an earlier run of the job (if it has run)
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    (workdir / RESULT_FILE).unlink()
            command = python_command(app.python_exe or self.python_exe)
        else:
            command = render_command(app, parameters, job=f"Job {job.id}")
        r = job.resources
        if self.config.job_mode == "serial":
            wrapped = command  # serial mode: one process per job, on its node
        else:
            run = AppRun(
                hosts=placement.hostnames,
                ranks_per_node=r.ranks_per_node,
                threads_per_rank=r.threads_per_rank,
                threads_per_core=r.threads_per_core,
                gpus_per_rank=r.gpus_per_rank,
                launch_params=r.launch_params,
            )
            s = self.config.settings
            wrapped = wrap_command(s.app_run, run, command, mpiexec_exe=s.mpiexec)
        env = job_environment(
            site_env=self.config.settings.env,
            app_env=app.environment_variables,
            gpu_ids=placement.first_gpus,
            threads_per_rank=r.threads_per_rank,
            job_id=job.id,
        )
        warm = (
            python
            and r.num_nodes * r.ranks_per_node == 1
            and on_this_host(placement.hostnames[0])  # the warm workers run here
            and not preamble
            and (app.python_exe or self.python_exe) == self.python_exe
            and not any(k.startswith(_STARTUP_VARIABLES) for k in env)
        )
        spec = LaunchSpec(
            job_id=job.id,
            script=job_script(preamble, wrapped),
            argv=direct_argv(preamble, wrapped),
            cwd=str(workdir),
            env=env,
            output=str(workdir / OUTPUT_FILE),
            python_run=python_run,
            warm=warm,
        )
        return Prepared(spec=spec, workdir=workdir, python=python)

    def _run_spec(self, job: Job, app: App) -> dict[str, Any]:
        """What the Python runner needs to run ``job`` (see ``python_runner.run_spec``)."""
        return {
            "job_id": job.id,
            "app_id": app.id,
            "app_version": app.last_update.isoformat(),
            "app_name": app.name,
            "serialized_class": app.serialized_class,
            "parameters": job.parameters,
            "defaults": with_defaults(app, {}),
            "job": job.model_dump(mode="json"),
            "result_file": RESULT_FILE,
        }


def _mkdir_new(path: Path) -> bool:
    """Create ``path`` (and its missing parents); whether this call created it."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _mkdir_new(path)
    return True


def on_this_host(hostname: str) -> bool:
    """Whether ``hostname`` names the host this process runs on (short names compared)."""
    return hostname.split(".")[0] == socket.gethostname().split(".")[0]


def read_result(workdir: Path) -> dict[str, Any]:
    """What a ``run()`` app left: ``{"result": ...}`` or ``{"exception": ..., "traceback": ...}``.

    The run's spec and result files are removed; an absent or unreadable result is ``{}``.
    """
    path = workdir / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    path.unlink(missing_ok=True)
    (workdir / RUN_SPEC_FILE).unlink(missing_ok=True)
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in ("result", "exception", "traceback") if k in data}
