"""The allocation's nodes: discovery (Slurm, PBS, local host) and free cores/GPUs per node.

Packing rules (those of Balsam):

* a single-node job takes ``ceil(ranks_per_node * threads_per_rank / threads_per_core)``
  cores, ``ceil(ranks_per_node * gpus_per_rank)`` GPUs and ``1 / node_packing_count`` of
  one node's occupancy; a node holds jobs while all three fit;
* a multi-node job takes whole idle nodes (all their cores and GPUs);
* a job that no amount of waiting would fit (more nodes than the allocation has, more
  cores or GPUs than any node has) is *unfit*, which :meth:`NodePool.unfit_reason` says.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from balsam_mq.domain import Resources
from balsam_mq.errors import ConfigError


@dataclass(frozen=True)
class Demand:
    """What one job takes from each of its nodes."""

    num_nodes: int
    cores: int  # per node
    gpus: int  # per node
    occupancy: Fraction  # of one node (single-node jobs)

    @classmethod
    def of(cls, resources: Resources) -> Demand:
        cores = math.ceil(
            resources.ranks_per_node * resources.threads_per_rank / resources.threads_per_core
        )
        gpus = math.ceil(resources.ranks_per_node * resources.gpus_per_rank - 1e-9)
        return cls(
            num_nodes=resources.num_nodes,
            cores=max(cores, 1),
            gpus=max(gpus, 0),
            occupancy=Fraction(1, resources.node_packing_count),
        )


@dataclass
class Node:
    """One node of the allocation and what is free on it."""

    index: int
    hostname: str
    cores: int
    gpu_ids: tuple[str, ...] = ()
    free_cores: int = field(init=False)
    free_gpus: list[str] = field(init=False)
    occupancy: Fraction = field(init=False, default=Fraction(0))
    jobs: dict[int, tuple[int, tuple[str, ...], Fraction]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise ConfigError(f"node {self.hostname}: needs at least one core, got {self.cores}")
        self.free_cores = self.cores
        self.free_gpus = list(self.gpu_ids)

    @property
    def idle(self) -> bool:
        return not self.jobs

    def fits(self, cores: int, gpus: int, occupancy: Fraction) -> bool:
        return (
            self.occupancy + occupancy <= 1
            and cores <= self.free_cores
            and gpus <= len(self.free_gpus)
        )

    def take(self, job_id: int, cores: int, gpus: int, occupancy: Fraction) -> tuple[str, ...]:
        taken = tuple(self.free_gpus[:gpus])
        del self.free_gpus[:gpus]
        self.free_cores -= cores
        self.occupancy += occupancy
        self.jobs[job_id] = (cores, taken, occupancy)
        return taken

    def give_back(self, job_id: int) -> None:
        cores, gpus, occupancy = self.jobs.pop(job_id)
        self.free_cores += cores
        self.free_gpus.extend(gpus)
        self.free_gpus.sort(key=self.gpu_ids.index)
        self.occupancy -= occupancy


@dataclass(frozen=True)
class Placement:
    """Where a job runs: its nodes, and the GPU ids it holds on each."""

    job_id: int
    node_indexes: tuple[int, ...]
    hostnames: tuple[str, ...]
    gpu_ids: tuple[tuple[str, ...], ...]

    @property
    def first_gpus(self) -> tuple[str, ...]:
        return self.gpu_ids[0] if self.gpu_ids else ()


class NodePool:
    """Free cores, GPUs and occupancy of every node; assigns and frees jobs.

    Example::

        pool = NodePool(discover_nodes(os.environ))
        placement = pool.assign(42, Demand.of(job.resources))   # None: not now
        ...
        pool.free(42)
    """

    def __init__(self, nodes: Sequence[Node]) -> None:
        if not nodes:
            raise ConfigError("a launcher needs at least one node")
        self.nodes = list(nodes)
        self._placed: dict[int, Placement] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def running(self) -> int:
        return len(self._placed)

    def placement(self, job_id: int) -> Placement | None:
        return self._placed.get(job_id)

    def unfit_reason(self, demand: Demand) -> str | None:
        """Why ``demand`` can never run in this allocation, or None if it can."""
        if demand.num_nodes > len(self.nodes):
            return f"needs {demand.num_nodes} nodes; this launcher has {len(self.nodes)}"
        big_enough = [
            n for n in self.nodes if n.cores >= demand.cores and len(n.gpu_ids) >= demand.gpus
        ]
        if len(big_enough) < demand.num_nodes:
            most_cores = max(n.cores for n in self.nodes)
            most_gpus = max(len(n.gpu_ids) for n in self.nodes)
            return (
                f"needs {demand.cores} cores and {demand.gpus} GPUs per node on "
                f"{demand.num_nodes} node(s); nodes here have at most {most_cores} cores "
                f"and {most_gpus} GPUs"
            )
        return None

    def assign(self, job_id: int, demand: Demand) -> Placement | None:
        """Reserve room for the job now, or None if it does not fit at the moment."""
        if job_id in self._placed:
            raise ValueError(f"Job {job_id} is already placed")
        if demand.num_nodes == 1:
            for node in self.nodes:
                if node.fits(demand.cores, demand.gpus, demand.occupancy):
                    taken = node.take(job_id, demand.cores, demand.gpus, demand.occupancy)
                    return self._record(job_id, [node], [taken])
            return None
        idle = [
            n
            for n in self.nodes
            if n.idle and n.cores >= demand.cores and len(n.gpu_ids) >= demand.gpus
        ]
        if len(idle) < demand.num_nodes:
            return None
        chosen = idle[: demand.num_nodes]
        gpus = [n.take(job_id, n.cores, len(n.gpu_ids), Fraction(1)) for n in chosen]
        return self._record(job_id, chosen, gpus)

    def _record(self, job_id: int, nodes: list[Node], gpus: list[tuple[str, ...]]) -> Placement:
        placement = Placement(
            job_id=job_id,
            node_indexes=tuple(n.index for n in nodes),
            hostnames=tuple(n.hostname for n in nodes),
            gpu_ids=tuple(gpus),
        )
        self._placed[job_id] = placement
        return placement

    def free(self, job_id: int) -> None:
        placement = self._placed.pop(job_id, None)
        if placement is None:
            return
        for index in placement.node_indexes:
            self.nodes[index].give_back(job_id)

    def free_slots(self) -> int:
        """An upper bound on how many more jobs could start now (every job takes a core)."""
        return sum(n.free_cores for n in self.nodes if n.occupancy < 1)

    def capacity(self) -> int:
        return sum(n.cores for n in self.nodes)

    def summary(self) -> list[dict[str, object]]:
        return [
            {"hostname": n.hostname, "cores": n.cores, "gpus": list(n.gpu_ids)} for n in self.nodes
        ]


# --- discovery -------------------------------------------------------------------------

_RANGE = re.compile(r"^(\d+)-(\d+)$")


def expand_hostlist(text: str) -> list[str]:
    """Slurm's compressed host list, e.g. ``nid[0001-0003,0007],login1`` → five names."""
    return [host for item in _split_top(text.strip()) if item for host in _expand_item(item)]


def _expand_item(item: str) -> list[str]:
    m = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", item)
    if m is None:
        return [item]
    prefix, body, rest = m.groups()
    tails = _expand_item(rest)
    out: list[str] = []
    for part in body.split(","):
        r = _RANGE.match(part)
        if r is None:
            values = [part]
        else:
            lo, hi = r.groups()
            values = [f"{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1)]
        out.extend(prefix + v + t for v in values for t in tails)
    return out


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _slurm_cores(env: Mapping[str, str]) -> int | None:
    for key in ("SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE"):
        value = env.get(key)
        if value:
            m = re.match(r"^(\d+)", value)
            if m:
                return int(m.group(1))
    return None


def gpu_ids_from(env: Mapping[str, str], gpus_per_node: int | None) -> tuple[str, ...]:
    """GPU ids: ``gpus_per_node`` (0..n-1) if given, else ``CUDA_VISIBLE_DEVICES``."""
    if gpus_per_node is not None:
        return tuple(str(i) for i in range(gpus_per_node))
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible or visible in ("-1", "NoDevFiles"):
        return ()
    return tuple(g.strip() for g in visible.split(",") if g.strip())


def discover_hosts(env: Mapping[str, str]) -> tuple[str, list[str], int | None]:
    """``(source, hostnames, cores per node if the scheduler says)`` of this allocation."""
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if nodelist:
        return "slurm", expand_hostlist(nodelist), _slurm_cores(env)
    nodefile = env.get("PBS_NODEFILE")
    if nodefile and Path(nodefile).is_file():
        lines = [ln.strip() for ln in Path(nodefile).read_text().splitlines() if ln.strip()]
        unique = list(dict.fromkeys(lines))
        ncpus = env.get("NCPUS") or env.get("PBS_NUM_PPN")
        cores = int(ncpus) if ncpus and ncpus.isdigit() else None
        return "pbs", unique, cores
    return "local", [socket.gethostname()], None


def discover_nodes(
    env: Mapping[str, str] | None = None,
    *,
    cores_per_node: int | None = None,
    gpus_per_node: int | None = None,
    limit: int | None = None,
) -> list[Node]:
    """The nodes this launcher may use.

    From Slurm (``SLURM_JOB_NODELIST``), PBS (``PBS_NODEFILE``), else the local host.
    ``limit`` keeps the first N nodes of an allocation; on a workstation it makes N
    nodes of the local host (how tests play a multi-node allocation on one machine).
    """
    env = os.environ if env is None else env
    source, hosts, scheduler_cores = discover_hosts(env)
    cores = cores_per_node or scheduler_cores or os.cpu_count() or 1
    gpus = gpu_ids_from(env, gpus_per_node)
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--nodes must be at least 1, got {limit}")
        if source == "local":
            hosts = hosts * limit
        elif limit > len(hosts):
            raise ConfigError(f"--nodes {limit}: the allocation has only {len(hosts)} node(s)")
        hosts = hosts[:limit]
    return [Node(i, h, cores, gpus) for i, h in enumerate(hosts)]
