"""Three hosts on a bridge, one Redis: the picture of docs/scaling.md, for real.

The test makes network namespaces of its own (``support.netns``): three hosts
and a fourth for the clients, joined by a bridge in a fifth, each with a
private address inside its namespace only.  Debian's ``redis-server`` runs on
host 1 and an nginxws (master and two workers) on each host, all started by
the test and stopped by pid; the namespaces are deleted at the end.  Where
namespaces cannot be created (no root) the test fails, it does not skip.

What it checks, as docs/scaling.md documents:
1. subscribers on all three hosts get every message published on each host,
   once and in the order of its publisher;
2. a host killed outright (kill -9 of its master and workers) loses its own
   clients only: the others' publishes go on reaching the other hosts;
3. a Redis restart: the surviving hosts answer 503 while it is down, then
   reconnect and resubscribe by themselves, and publishes flow again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from support import netns_agent
from support.netns import Network
from support.processes import STOP_TIMEOUT, poll
from support.redis import RedisServer, host_conf, require_redis

pytestmark = pytest.mark.apt  # redis-server, redis-cli and ip, from tests/redis/install.sh

TIMEOUT = 15.0
PORT, PUB_PORT, REDIS_PORT = 8080, 8081, 6379
HOSTS = 3
PER_HOST = 3  # subscribers on each host
MESSAGES = 20  # published on each host, each round
STARTED = re.compile(r"start worker process (\d+)$", re.M)


class Agent:
    """The clients' agent (``support/netns_agent.py``) in the clients' namespace."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **order) -> dict:
        self.proc.stdin.write(json.dumps(order) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the agent ended (status {self.proc.poll()})"
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(op="exit")
            except (AssertionError, BrokenPipeError):
                pass
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)


class Host:
    """nginxws in one namespace, started through ``ip netns exec`` (which execs: the pid is the master's)."""

    def __init__(self, network: Network, namespace: str, prefix: Path, redis_url: str, nginxws: str) -> None:
        self.namespace, self.address, self.prefix = namespace, network.hosts[namespace], prefix
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(host_conf(logs=prefix, redis=redis_url, port=PORT, pub_port=PUB_PORT,
                                  address=self.address))
        with open(prefix / "stderr", "wb") as err:
            self.proc = subprocess.Popen(network.exec(namespace, [nginxws, "-p", str(prefix), "-c", str(conf)]),
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_log(self, pattern: str, count: int = 1) -> None:
        assert poll(lambda: len(re.findall(pattern, self.log(), re.M)) >= count, TIMEOUT), (
            f"{pattern!r} x{count} not in {self.namespace}'s log:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in STARTED.findall(self.log())]

    def kill(self) -> None:
        """kill -9 of the master and every worker: the host dies, nobody says goodbye."""
        pids = [self.proc.pid, *self.worker_pids()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(STOP_TIMEOUT)
        for pid in pids[1:]:
            assert poll(lambda p=pid: not _alive(p), STOP_TIMEOUT), f"worker {pid} outlived kill -9"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for pid in self.worker_pids():
            if poll(lambda p=pid: not _alive(p), STOP_TIMEOUT) is False:
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_three_hosts_on_a_bridge_share_channels_through_redis(tmp_path, nginxws_bin):
    require_redis()
    with ExitStack() as stack:
        network = Network(f"nws{os.getpid() % 10000}h").open(HOSTS + 1)
        stack.callback(network.close)
        names = list(network.hosts)
        hosts_ns, clients_ns = names[:HOSTS], names[HOSTS]
        redis = RedisServer(REDIS_PORT, tmp_path / "redis", host=network.hosts[hosts_ns[0]], netns=hosts_ns[0])
        redis.start()
        stack.callback(redis.stop)
        hosts = []
        for n, namespace in enumerate(hosts_ns, 1):
            host = Host(network, namespace, tmp_path / f"host{n}", redis.url, nginxws_bin)
            stack.callback(host.stop)
            hosts.append(host)
        for host in hosts:
            host.wait_log(r"accepts pushes on", count=2)
            host.wait_log(r"redis .* connected")
        agent = Agent(network.exec(clients_ns, [sys.executable, "-P", netns_agent.__file__]))
        stack.callback(agent.stop)

        # 1. Subscribers on every host; publishes on every host reach all of them once, in order.
        subscribers = {host.address: agent.ask(op="subscribe", url=f"ws://{host.address}:{PORT}/sub?channel=room",
                                               count=PER_HOST)["ids"] for host in hosts}
        assert poll(lambda: redis.subscribers("nginxws:room") == HOSTS, TIMEOUT)
        sent = publish_round(agent, hosts, "first")
        everyone = [i for ids in subscribers.values() for i in ids]
        check_received(agent, everyone, sent)

        # 2. Host 3 dies (kill -9): its clients lose their connection; the others go on.
        dead = hosts[2]
        dead.kill()
        assert agent.ask(op="closed", ids=subscribers[dead.address])["closed"] == [True] * PER_HOST
        assert poll(lambda: redis.subscribers("nginxws:room") == HOSTS - 1, TIMEOUT)
        survivors = hosts[:2]
        remaining = [i for host in survivors for i in subscribers[host.address]]
        sent = publish_round(agent, survivors, "second")
        check_received(agent, remaining, sent)

        # 3. Redis restarts: 503 while it is down, then every surviving host resubscribes and publishes flow.
        redis.stop()
        for host in survivors:
            host.wait_log(r"\[error\] .*redis .* lost")
            assert poll(lambda h=host: agent.ask(op="publish", url=publish_url(h, "room"),
                                                 messages=["while down"])["statuses"] == [503], TIMEOUT)
        redis.start()
        for host in survivors:
            host.wait_log(r"redis .* connected, 1 channel\(s\) subscribed")
        assert poll(lambda: redis.subscribers("nginxws:room") == len(survivors), TIMEOUT)
        for host in survivors:
            assert poll(lambda h=host: agent.ask(op="publish", url=publish_url(h, "room"),
                                                 messages=["probe"])["statuses"] == [202], TIMEOUT)
        got = agent.ask(op="receive", ids=remaining, count=len(survivors))["got"]
        assert all(messages == ["probe"] * len(survivors) for messages in got.values()), got
        sent = publish_round(agent, survivors, "third")
        check_received(agent, remaining, sent)
        for host in survivors:
            assert "Traceback" not in host.log()


def publish_url(host: Host, channel: str) -> str:
    return f"http://{host.address}:{PUB_PORT}/pub?channel={channel}"


def publish_round(agent: Agent, hosts: list[Host], label: str) -> dict[str, list[str]]:
    """``MESSAGES`` messages published on each host (one publisher connection each)."""
    sent = {}
    for host in hosts:
        messages = [f"{label} {host.address} {n}" for n in range(MESSAGES)]
        assert agent.ask(op="publish", url=publish_url(host, "room"), messages=messages)["statuses"] == [202] * MESSAGES
        sent[host.address] = messages
    return sent


def check_received(agent: Agent, ids: list[int], sent: dict[str, list[str]]) -> None:
    """Each of ``ids`` got every message once, each publisher's in its order, and nothing more."""
    total = sum(len(messages) for messages in sent.values())
    got = agent.ask(op="receive", ids=ids, count=total)["got"]
    for messages in got.values():
        assert sorted(messages) == sorted(m for batch in sent.values() for m in batch)
        for address, batch in sent.items():
            assert [m for m in messages if m.split()[1] == address] == batch
    assert agent.ask(op="quiet", ids=ids)["quiet"] is True
