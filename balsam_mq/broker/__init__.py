"""RabbitMQ: topology as data, declaration, confirming publisher, consumer runner."""

from balsam_mq.broker.connection import close_channel, connection_lost, open_amqp
from balsam_mq.broker.consumer import Consumer, ConsumerState, Handler
from balsam_mq.broker.declare import (
    declare_core,
    declare_queue,
    declare_site,
    delete_namespace,
    delete_site,
)
from balsam_mq.broker.publisher import Outgoing, Publisher
from balsam_mq.broker.returns import ATTEMPTS_HEADER, DEFERRALS_HEADER, Deferrals
from balsam_mq.broker.topology import QueueSpec, SiteQueues, Topology, build_topology

__all__ = [
    "ATTEMPTS_HEADER",
    "DEFERRALS_HEADER",
    "Consumer",
    "ConsumerState",
    "Deferrals",
    "Handler",
    "Outgoing",
    "Publisher",
    "QueueSpec",
    "SiteQueues",
    "Topology",
    "build_topology",
    "close_channel",
    "connection_lost",
    "declare_core",
    "declare_queue",
    "declare_site",
    "delete_namespace",
    "delete_site",
    "open_amqp",
]
