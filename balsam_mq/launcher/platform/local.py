"""A workstation: single-rank jobs run directly; several ranks go through a local mpiexec."""

from __future__ import annotations

from balsam_mq.launcher.platform.base import AppRun, params_argv


def local_argv(run: AppRun, mpiexec: str = "mpiexec") -> list[str]:
    """Nothing for one rank; ``mpiexec -n N [launch params]`` on this host for more."""
    if run.ranks == 1:
        return []
    return [mpiexec, "-n", str(run.ranks), *params_argv(run.launch_params)]
