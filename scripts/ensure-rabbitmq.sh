#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers on 127.0.0.1:5672: install it (as root, with apt-get)
# and start it (`rabbitmq-server -detached`) when nothing answers there.
set -euo pipefail

host=127.0.0.1
port=5672
wait_seconds=90

answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

find_server() {
    command -v rabbitmq-server 2>/dev/null \
        || { [ -x /usr/sbin/rabbitmq-server ] && echo /usr/sbin/rabbitmq-server; } \
        || true
}

if answers; then
    echo "RabbitMQ already answers on $host:$port"
    exit 0
fi

server=$(find_server)
if [ -z "$server" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: RabbitMQ is not installed; as root run:" \
            "apt-get install -y rabbitmq-server && rabbitmq-server -detached" >&2
        exit 1
    fi
    echo "installing rabbitmq-server with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    server=$(find_server)
    if answers; then  # the package's post-install may already have started it
        echo "RabbitMQ installed and answering on $host:$port"
        exit 0
    fi
fi

echo "starting RabbitMQ: $server -detached (listening on $host only)"
RABBITMQ_NODE_IP_ADDRESS=$host ERL_EPMD_ADDRESS=$host "$server" -detached
deadline=$((SECONDS + wait_seconds))
until answers; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "error: RabbitMQ did not answer on $host:$port within ${wait_seconds}s;" \
            "see /var/log/rabbitmq/" >&2
        exit 1
    fi
    sleep 1
done
echo "RabbitMQ answers on $host:$port"
