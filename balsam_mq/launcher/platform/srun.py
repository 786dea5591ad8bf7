"""srun argv inside a Slurm allocation: nodes, tasks, cpus and GPUs per task, node list."""

from __future__ import annotations

import math

from balsam_mq.launcher.platform.base import AppRun, params_argv


def srun_argv(run: AppRun, srun: str = "srun") -> list[str]:
    """``srun -N 2 -n 8 --ntasks-per-node 4 --cpus-per-task 2 --nodelist a,b [...]``."""
    argv = [
        srun,
        "-N",
        str(run.num_nodes),
        "-n",
        str(run.ranks),
        "--ntasks-per-node",
        str(run.ranks_per_node),
        "--cpus-per-task",
        str(run.threads_per_rank),
    ]
    if run.gpus_per_rank > 0:
        argv += ["--gpus-per-task", str(math.ceil(run.gpus_per_rank))]
    hosts = list(dict.fromkeys(run.hosts))
    if len(hosts) == len(run.hosts):
        argv += ["--nodelist", ",".join(hosts)]
    return argv + params_argv(run.launch_params)
