#!/usr/bin/env bash
# The main job: install balsam_mq with a bundled mongod, make sure RabbitMQ runs, then run the
# demo (local stack, a site, its agent and a launcher, a few hundred jobs, a summary).
# Arguments go to `balsam-mq demo`, e.g. `bash scripts/main.sh --keep`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install -q -e '.[local]'
bash scripts/ensure-rabbitmq.sh
exec balsam-mq demo "$@"
