#!/usr/bin/env bash
# The project's test command: install with the dev extras, make sure RabbitMQ runs, run pytest.
# Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_stack.py -q`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install -q -e '.[dev]'
bash scripts/ensure-rabbitmq.sh
exec python3 -m pytest "$@"
