"""Node packing rules and node discovery (pure)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from balsam_mq.domain import Resources
from balsam_mq.errors import ConfigError
from balsam_mq.launcher.nodes import Demand, Node, NodePool, discover_nodes, expand_hostlist


def pool(nodes: int = 2, cores: int = 8, gpus: int = 0) -> NodePool:
    gpu_ids = tuple(str(g) for g in range(gpus))
    return NodePool([Node(i, f"n{i}", cores, gpu_ids) for i in range(nodes)])


def demand(**kw: object) -> Demand:
    return Demand.of(Resources(**kw))  # type: ignore[arg-type]


def test_demand_counts_cores_gpus_and_occupancy() -> None:
    d = demand(ranks_per_node=4, threads_per_rank=4, threads_per_core=2, gpus_per_rank=0.5)
    assert (d.cores, d.gpus) == (8, 2)
    assert demand(node_packing_count=4).occupancy == Fraction(1, 4)
    assert demand(gpus_per_rank=0.25).gpus == 1  # a fraction of a GPU still holds one


def test_default_job_takes_a_whole_node() -> None:
    p = pool(nodes=2)
    assert p.assign(1, demand()) is not None
    assert p.assign(2, demand()) is not None
    assert p.assign(3, demand()) is None  # node_packing_count=1: one job per node
    p.free(1)
    placed = p.assign(3, demand())
    assert placed is not None and placed.hostnames == ("n0",)


def test_packing_is_bounded_by_occupancy_and_by_cores() -> None:
    p = pool(nodes=1, cores=8)
    placed = [p.assign(i, demand(node_packing_count=4)) for i in range(5)]
    assert [x is not None for x in placed] == [True, True, True, True, False]
    q = pool(nodes=1, cores=3)
    placed = [q.assign(i, demand(node_packing_count=16)) for i in range(4)]
    assert [x is not None for x in placed] == [True, True, True, False]
    assert q.free_slots() == 0


def test_gpus_are_handed_out_per_job_and_returned() -> None:
    p = pool(nodes=1, cores=8, gpus=4)
    a = p.assign(1, demand(gpus_per_rank=1, ranks_per_node=2, node_packing_count=4))
    b = p.assign(2, demand(gpus_per_rank=1, node_packing_count=4))
    assert a is not None and b is not None
    assert a.first_gpus == ("0", "1") and b.first_gpus == ("2",)
    assert p.assign(3, demand(gpus_per_rank=2, node_packing_count=4)) is None
    p.free(1)
    c = p.assign(3, demand(gpus_per_rank=2, node_packing_count=4))
    assert c is not None and c.first_gpus == ("0", "1")


def test_multi_node_jobs_take_whole_idle_nodes() -> None:
    p = pool(nodes=3)
    assert p.assign(1, demand(node_packing_count=8)) is not None  # n0 partly busy
    wide = p.assign(2, demand(num_nodes=2))
    assert wide is not None and wide.hostnames == ("n1", "n2")
    assert p.assign(3, demand(num_nodes=2)) is None
    assert p.assign(4, demand(node_packing_count=8)) is not None  # n0 still has room
    p.free(2)
    assert p.nodes[1].free_cores == 8 and p.nodes[1].occupancy == 0


def test_unfit_reasons_name_what_is_missing() -> None:
    p = pool(nodes=2, cores=8, gpus=2)
    assert p.unfit_reason(demand(num_nodes=3)) == "needs 3 nodes; this launcher has 2"
    reason = p.unfit_reason(demand(ranks_per_node=16))
    assert reason is not None and "needs 16 cores" in reason
    assert p.unfit_reason(demand(gpus_per_rank=3)) is not None
    assert p.unfit_reason(demand(num_nodes=2, ranks_per_node=8, gpus_per_rank=0.25)) is None


def test_expand_hostlist() -> None:
    assert expand_hostlist("nid[0001-0003,0007],login1") == [
        "nid0001",
        "nid0002",
        "nid0003",
        "nid0007",
        "login1",
    ]
    assert expand_hostlist("r[1-2]-n[01-02]") == ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
    assert expand_hostlist("a") == ["a"]


def test_discovery_from_slurm_pbs_and_local(tmp_path: Path) -> None:
    slurm = discover_nodes(
        {
            "SLURM_JOB_NODELIST": "nid[01-03]",
            "SLURM_CPUS_ON_NODE": "64",
            "CUDA_VISIBLE_DEVICES": "0,1",
        }
    )
    assert [n.hostname for n in slurm] == ["nid01", "nid02", "nid03"]
    assert {n.cores for n in slurm} == {64} and slurm[0].gpu_ids == ("0", "1")
    nodefile = tmp_path / "nodes"
    nodefile.write_text("x1\nx1\nx2\nx2\n")
    pbs = discover_nodes({"PBS_NODEFILE": str(nodefile), "NCPUS": "32"}, gpus_per_node=4)
    assert [(n.hostname, n.cores, len(n.gpu_ids)) for n in pbs] == [("x1", 32, 4), ("x2", 32, 4)]
    assert len(discover_nodes({}, limit=1)) == 1
    limited = discover_nodes({"SLURM_JOB_NODELIST": "nid[01-03]"}, limit=2, cores_per_node=4)
    assert [n.hostname for n in limited] == ["nid01", "nid02"] and limited[0].cores == 4
    local = discover_nodes({}, limit=2, cores_per_node=2)  # a workstation playing two nodes
    assert len(local) == 2 and local[0].hostname == local[1].hostname
    with pytest.raises(ConfigError, match="only 3 node"):
        discover_nodes({"SLURM_JOB_NODELIST": "nid[01-03]"}, limit=4)
