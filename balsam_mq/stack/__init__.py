"""The local single-machine stack of `balsam-mq up/down/status`: a one-node MongoDB replica set
(a mongod we start and stop: ``mongod.py``) and RabbitMQ (started only if nothing answers,
stopped only if we started it: ``rabbitmq.py``), brought up and down together by
``local.py``. The test and benchmark fixtures start their mongods with ``mongod.py`` too."""

from balsam_mq.stack.common import LOCAL_HOSTS
from balsam_mq.stack.local import (
    MONGO_PORT,
    MongoStatus,
    RabbitStatus,
    StackStatus,
    down,
    status,
    up,
)
from balsam_mq.stack.mongod import (
    find_mongod,
    mongo_url,
    spawn_mongod,
    start_mongod,
    stop_mongod,
)
from balsam_mq.stack.rabbitmq import AMQP_PORT, AMQPS_PORT, ensure_rabbitmq, rabbitmq_answers

__all__ = [
    "AMQPS_PORT",
    "AMQP_PORT",
    "LOCAL_HOSTS",
    "MONGO_PORT",
    "MongoStatus",
    "RabbitStatus",
    "StackStatus",
    "down",
    "ensure_rabbitmq",
    "find_mongod",
    "mongo_url",
    "rabbitmq_answers",
    "spawn_mongod",
    "start_mongod",
    "status",
    "stop_mongod",
    "up",
]
