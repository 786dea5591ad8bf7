"""mpiexec argv for MPICH (Hydra) and OpenMPI: ranks, ranks per node, hosts, launch_params."""

from __future__ import annotations

from balsam_mq.launcher.platform.base import AppRun, params_argv


def mpich_argv(run: AppRun, mpiexec: str = "mpiexec") -> list[str]:
    """``mpiexec -n 8 -ppn 4 -hosts a,b [launch params]`` (Hydra's spelling)."""
    argv = [mpiexec, "-n", str(run.ranks), "-ppn", str(run.ranks_per_node)]
    hosts = list(dict.fromkeys(run.hosts))
    if len(hosts) == len(run.hosts):  # the same host twice: a workstation playing nodes
        argv += ["-hosts", ",".join(hosts)]
    return argv + params_argv(run.launch_params)


def openmpi_argv(run: AppRun, mpiexec: str = "mpiexec") -> list[str]:
    """``mpiexec -n 8 --npernode 4 --host a:4,b:4 [launch params]`` (OpenMPI's spelling)."""
    argv = [mpiexec, "-n", str(run.ranks), "--npernode", str(run.ranks_per_node)]
    hosts = list(dict.fromkeys(run.hosts))
    if len(hosts) == len(run.hosts):
        argv += ["--host", ",".join(f"{h}:{run.ranks_per_node}" for h in hosts)]
    return argv + params_argv(run.launch_params)
