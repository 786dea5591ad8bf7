"""How a job's command is wrapped to run on its nodes: mpiexec (MPICH, OpenMPI), srun, local."""

from __future__ import annotations

import shlex

from balsam_mq.launcher.platform import local, mpiexec, srun
from balsam_mq.launcher.platform.base import FLAVOURS, AppRun, Flavour, params_argv


def launcher_argv(flavour: str, run: AppRun, *, mpiexec_exe: str = "mpiexec") -> list[str]:
    """The launcher prefix for ``run`` (empty: the command runs directly)."""
    if flavour == "mpich":
        return mpiexec.mpich_argv(run, mpiexec_exe)
    if flavour == "openmpi":
        return mpiexec.openmpi_argv(run, mpiexec_exe)
    if flavour == "srun":
        return srun.srun_argv(run)
    if flavour == "local":
        return local.local_argv(run, mpiexec_exe)
    raise ValueError(f"unknown app-run flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")


def wrap_command(flavour: str, run: AppRun, command: str, *, mpiexec_exe: str = "mpiexec") -> str:
    """The shell line that runs ``command`` (already rendered) under the flavour's launcher.

    Example::

        wrap_command("mpich", AppRun(("n1", "n2"), ranks_per_node=4), "./sim -i in.dat")
        # 'mpiexec -n 8 -ppn 4 -hosts n1,n2 ./sim -i in.dat'
    """
    prefix = launcher_argv(flavour, run, mpiexec_exe=mpiexec_exe)
    if not prefix:
        return command
    return f"{shlex.join(prefix)} {command}"


__all__ = ["FLAVOURS", "AppRun", "Flavour", "launcher_argv", "params_argv", "wrap_command"]
