"""A three-node RabbitMQ cluster on this machine (ports of its own), to stop one of its nodes.

    python bench/rabbit_cluster.py start DIR   # prints BALSAM_AMQP_URL; nodes' data in DIR
    python bench/rabbit_cluster.py stop DIR

Use it with ``BALSAM_QUEUE_TYPE=quorum``: classic queues live on one node and go with
it. ``bench/faults.py`` uses it for its ``cluster-*`` scenarios.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _env import free_port, services_main

from balsam_mq.rabbit_node import RabbitNode

NODES = 3


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]

    @property
    def url(self) -> str:
        """``BALSAM_AMQP_URL`` over every node (connections fail over between them)."""
        return ",".join(node.url for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def start(root: Path) -> RabbitCluster:
    """Three nodes, the second and third joined to the first; returns once all serve."""
    tag = uuid.uuid4().hex[:6]
    cluster = RabbitCluster(
        [
            RabbitNode(root / f"n{i}", f"bmq{tag}n{i}", free_port(), free_port())
            for i in range(NODES)
        ]
    )
    for node in cluster.nodes:
        node.start()
    for node in cluster.nodes[1:]:
        node.join(cluster.nodes[0])
    members = cluster.nodes[0].ctl("cluster_status", "--formatter", "json")
    running = json.loads(members)["running_nodes"]
    if sorted(running) != sorted(node.node for node in cluster.nodes):
        raise RuntimeError(f"cluster formed with {running} only")
    (root / "nodes.json").write_text(
        json.dumps([[n.name, n.port, n.dist_port] for n in cluster.nodes])
    )
    return cluster


def load(root: Path) -> RabbitCluster:
    saved = json.loads((root / "nodes.json").read_text())
    return RabbitCluster([RabbitNode(root / f"n{i}", *node) for i, node in enumerate(saved)])


if __name__ == "__main__":
    services_main(__doc__, lambda root: start(root).url, lambda root: load(root).stop())
