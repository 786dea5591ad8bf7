#!/usr/bin/env bash
# The project's test command: install with the dev extras, make sure RabbitMQ runs, run pytest.
# Arguments go to pytest, e.g. `bash scripts/test.sh tests/test_stack.py -q`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install -q -e '.[dev]'
bash scripts/ensure-rabbitmq.sh
# the status page test drives Debian's headless chromium: installed once, as root
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: chromium is not installed and the status page test needs it;" \
            "as root run: apt-get install -y chromium" >&2
    fi
fi
# the rsync transfer tests run a real sshd on a loopback port: Debian's OpenSSH server and rsync
if [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing openssh-server and rsync with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server rsync >/dev/null
    else
        echo "warning: sshd or rsync is not installed and the rsync transfer tests need them;" \
            "as root run: apt-get install -y openssh-server rsync" >&2
    fi
fi
exec python3 -m pytest "$@"
