#!/usr/bin/env bash
# What the Redis tests (tests/e2e/test_redis.py, test_redis_hosts.py) and the
# fan-out bench across hosts need beyond the Python test extra: Debian's
# redis-server and redis-cli (Redis 7: sharded pub/sub), and iproute2's `ip`
# for the network namespaces of the three-host test.  The Python client,
# coredis, is the project's `redis` extra (make installs it).  Idempotent and
# quiet: installs only what is missing.  Usage: tests/redis/install.sh
set -euo pipefail

missing=()
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/redis-cli ] || missing+=(redis-tools)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's package starts a redis-server on port 6379 where a service manager
# runs; the tests start their own on other ports and never use that one.
