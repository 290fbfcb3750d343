#!/usr/bin/env bash
# Makes sure the services the broker tests need are up: Redis on 127.0.0.1:6379 and NATS on 127.0.0.1:4222.
# Each one that does not answer is started (commands as the CI brief fixes them), then awaited, bounded.
set -euo pipefail

# True when something accepts TCP connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to ~20 s for port $1 to answer; names the service $2 in the failure.
await_port() {
  for _ in $(seq 1 200); do
    if listening "$1"; then return 0; fi
    sleep 0.1
  done
  echo "services.sh: $2 is not answering on 127.0.0.1:$1 after 20 s" >&2
  return 1
}

if listening 6379; then
  echo "redis: already listening on 127.0.0.1:6379"
else
  echo "redis: not listening; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  await_port 6379 redis
  echo "redis: up"
fi

if listening 4222; then
  echo "nats: already listening on 127.0.0.1:4222"
else
  echo "nats: not listening; starting it"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  await_port 4222 nats
  echo "nats: up"
fi
