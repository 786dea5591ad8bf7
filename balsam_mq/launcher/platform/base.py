"""What every app-run flavour shares: the run's shape and the launch_params pass-through."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Flavour = Literal["mpich", "openmpi", "srun", "local"]
FLAVOURS: tuple[str, ...] = ("mpich", "openmpi", "srun", "local")


@dataclass(frozen=True)
class AppRun:
    """One job's launch shape: hosts, ranks, threads, GPUs, and pass-through launch params."""

    hosts: tuple[str, ...]
    ranks_per_node: int = 1
    threads_per_rank: int = 1
    threads_per_core: int = 1
    gpus_per_rank: float = 0
    launch_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return len(self.hosts)

    @property
    def ranks(self) -> int:
        return self.num_nodes * self.ranks_per_node


def params_argv(launch_params: Mapping[str, str]) -> list[str]:
    """``{"bind-to": "core", "-l": ""}`` → ``["--bind-to", "core", "-l"]``.

    A key is used as written when it starts with ``-``, else as ``--key``; an empty
    value adds only the flag.
    """
    argv: list[str] = []
    for key, value in launch_params.items():
        argv.append(key if key.startswith("-") else f"--{key}")
        if value != "":
            argv.append(str(value))
    return argv
