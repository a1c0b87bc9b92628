"""Channels across hosts on one machine: nginxws instances sharing a ``redis-server``.

Each host is a real nginxws (master and two workers) on loopback ports of
its own; Redis is Debian's ``redis-server`` on a loopback port, started and
stopped (by pid) by the test.  A publish on any host reaches every
subscriber on every host once, in the order of its publisher; a host
subscribes in Redis only to what its clients hold; Redis down at start, or
restarted, is survived as docs/scaling.md says; a reload keeps the draining
workers' channels; a Redis Cluster carries channels on the nodes of their
slots (sharded pub/sub).
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import ExitStack

import httpx
import pytest
from support.clients import push_urls
from support.processes import poll
from support.redis import RedisServer, cluster_port_free, host_conf, require_redis
from support.servers import Server
from websockets.sync.client import connect

pytestmark = pytest.mark.apt  # redis-server, redis-cli and ip, from tests/redis/install.sh

TIMEOUT = 10.0  # seconds for any one wait
PREFIX = "nginxws:"  # nginxws.hosts.CHANNEL_PREFIX, as Redis shows it


class Host(Server):
    """A running nginxws of a deployment: subscribers on ``port``, publishes on ``pub_port``."""

    pub_port: int

    def subscribe(self, channel: str):
        return connect(f"ws://127.0.0.1:{self.port}/sub?channel={channel}", open_timeout=TIMEOUT)

    def publish(self, channel: str, message: str, client: httpx.Client | None = None) -> httpx.Response:
        url = f"http://127.0.0.1:{self.pub_port}/pub"
        if client is None:
            return httpx.post(url, params={"channel": channel}, content=message, timeout=TIMEOUT)
        return client.post(url, params={"channel": channel}, content=message)


@pytest.fixture
def redis_server(tmp_path, free_port):
    """``redis_server(running=True, cluster=False)`` -> RedisServer on a free loopback port, stopped at teardown."""
    require_redis()
    started: list[RedisServer] = []

    def start(*, running: bool = True, cluster: bool = False) -> RedisServer:
        port = free_port()
        while cluster and not cluster_port_free(port):
            port = free_port()
        server = RedisServer(port, tmp_path / "redis", cluster=cluster)
        started.append(server)
        return server.start() if running else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_host(run_nginxws, free_port, tmp_path):
    """``start_host(redis_args, connected=True)`` -> Host, its logs in a directory of its own."""
    started: list[Host] = []

    def start(redis: str, *, connected: bool = True, workers: int = 2) -> Host:
        logs = tmp_path / f"host{len(started) + 1}"
        logs.mkdir()
        port, pub_port = free_port(), free_port()
        host = Host(run_nginxws(host_conf(logs=logs, redis=redis, port=port, pub_port=pub_port,
                                          workers=workers)), port, logs)
        host.pub_port = pub_port
        host.wait_log(r"accepts pushes on", count=workers)
        if connected:
            host.wait_log(r"\[notice\] .*redis .* connected")
        started.append(host)
        return host

    yield start
    for host in started:
        host.assert_no_traceback()


def wait_subscribed(redis: RedisServer, channel: str, hosts: int) -> None:
    """Until ``hosts`` hosts hold ``channel`` in Redis (one subscription each)."""
    assert poll(lambda: redis.subscribers(PREFIX + channel) == hosts, TIMEOUT), (
        f"{channel}: {redis.subscribers(PREFIX + channel)} host(s) subscribed, not {hosts}")


def receive(ws, count: int) -> list[str]:
    return [ws.recv(timeout=TIMEOUT) for _ in range(count)]


def assert_nothing_more(subscribers) -> None:
    for ws in subscribers:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)


def publish_interleaved(hosts: list[Host], channel: str, count: int) -> dict[int, list[str]]:
    """``count`` messages published on each host, one keep-alive publisher per
    host, taking turns; what each host published, in order."""
    sent: dict[int, list[str]] = {i: [] for i in range(len(hosts))}
    with ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(timeout=TIMEOUT)) for _ in hosts]
        for n in range(count):
            for i, (host, client) in enumerate(zip(hosts, clients)):
                message = f"host{i}-{n}"
                answer = host.publish(channel, message, client)
                assert answer.status_code == 202, answer.text
                sent[i].append(message)
    return sent


def assert_once_in_order(got: list[str], sent: dict[int, list[str]]) -> None:
    """Every message once, and each publisher's messages in its order."""
    assert sorted(got) == sorted(m for messages in sent.values() for m in messages)
    for i, messages in sent.items():
        assert [m for m in got if m.startswith(f"host{i}-")] == messages


# -- fan-out across hosts --------------------------------------------------------------


def test_publishes_on_each_host_reach_every_subscriber_on_every_host_once_in_order(redis_server, start_host):
    redis = redis_server()
    hosts = [start_host(redis.url), start_host(redis.url)]
    with ExitStack() as stack:
        subscribers = [stack.enter_context(host.subscribe("room")) for host in hosts for _ in range(4)]
        wait_subscribed(redis, "room", 2)
        sent = publish_interleaved(hosts, "room", 30)
        for ws in subscribers:
            assert_once_in_order(receive(ws, 60), sent)
        assert_nothing_more(subscribers)
    # The answer counts this worker's subscribers only, as without Redis.
    assert hosts[0].publish("room", "nobody").json() == {"channel": "room", "local_subscribers": 0}


def test_a_host_subscribes_only_to_the_channels_its_clients_hold(redis_server, start_host):
    redis = redis_server()
    first, second = start_host(redis.url), start_host(redis.url)
    with first.subscribe("only-first") as a, first.subscribe("only-first") as b, second.subscribe("both") as c:
        with first.subscribe("both"):
            wait_subscribed(redis, "only-first", 1)  # two clients, one host: one subscription
            wait_subscribed(redis, "both", 2)
            assert redis.channels() == {PREFIX + "only-first", PREFIX + "both"}
        # The first host's last client of "both" left: it unsubscribes, the second stays.
        wait_subscribed(redis, "both", 1)
        assert second.publish("only-first", "across").status_code == 202
        assert a.recv(timeout=TIMEOUT) == b.recv(timeout=TIMEOUT) == "across"
        assert first.publish("both", "to c").status_code == 202
        assert c.recv(timeout=TIMEOUT) == "to c"
    assert poll(lambda: redis.channels() == set(), TIMEOUT), redis.channels()


# -- faults ------------------------------------------------------------------------------


def test_redis_down_at_start_then_started(redis_server, start_host):
    redis = redis_server(running=False)
    host = start_host(redis.url, connected=False)
    host.wait_log(rf"\[error\] .*redis 127\.0\.0\.1:{redis.port} cannot be reached")
    # Push by URL and joining channels work without Redis; a publish is 503.
    with connect(f"ws://127.0.0.1:{host.port}/ws", open_timeout=TIMEOUT) as pushed, host.subscribe("later") as sub:
        url = push_urls(pushed.recv(timeout=TIMEOUT))[0]
        answer = httpx.post(f"http://{url['address']}{url['path']}", content="pushed", auth=(url["id"], ""))
        assert answer.status_code == 204
        assert pushed.recv(timeout=TIMEOUT) == "pushed"
        down = host.publish("later", "not now")
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        # Redis comes: the host connects, subscribes what its clients hold, and publishes flow.
        redis.start()
        host.wait_log(r"redis .* connected, 1 channel\(s\) subscribed")
        other = start_host(redis.url)
        wait_subscribed(redis, "later", 1)
        assert poll(lambda: host.publish("later", "now").status_code == 202, TIMEOUT)
        assert sub.recv(timeout=TIMEOUT) == "now"
        assert other.publish("later", "from the other host").status_code == 202
        assert sub.recv(timeout=TIMEOUT) == "from the other host"
        assert_nothing_more([sub])


def test_redis_restarted_mid_run(redis_server, start_host):
    redis = redis_server()
    hosts = [start_host(redis.url), start_host(redis.url)]
    with ExitStack() as stack:
        subscribers = [stack.enter_context(host.subscribe("steady")) for host in hosts for _ in range(3)]
        wait_subscribed(redis, "steady", 2)
        before = publish_interleaved(hosts, "steady", 5)
        for ws in subscribers:
            assert_once_in_order(receive(ws, 10), before)
        redis.stop()
        for host in hosts:
            host.wait_log(rf"\[error\] .*redis 127\.0\.0\.1:{redis.port} lost")
            assert poll(lambda h=host: h.publish("steady", "while down").status_code == 503, TIMEOUT)
        redis.start()
        for host in hosts:
            host.wait_log(r"redis .* connected", count=2)
            assert "connected, 1 channel(s) subscribed" in host.error_log()
        wait_subscribed(redis, "steady", 2)
        for host in hosts:
            assert poll(lambda h=host: h.publish("steady", "probe").status_code == 202, TIMEOUT)
        for ws in subscribers:
            assert sorted(receive(ws, 2)) == ["probe", "probe"]
        after = publish_interleaved(hosts, "steady", 10)
        for ws in subscribers:
            assert_once_in_order(receive(ws, 20), after)
        assert_nothing_more(subscribers)


def test_a_reload_keeps_the_draining_workers_channels(redis_server, start_host):
    redis = redis_server()
    host, other = start_host(redis.url, workers=1), start_host(redis.url, workers=1)
    with host.subscribe("drain") as old:
        wait_subscribed(redis, "drain", 1)
        os.kill(host.pid, signal.SIGHUP)
        host.wait_log(r"accepts pushes on", count=2)
        host.wait_log(r"gracefully shutting down")
        # The old worker drains with its client: the host stays subscribed for it.
        assert other.publish("drain", "to the draining worker").status_code == 202
        assert old.recv(timeout=TIMEOUT) == "to the draining worker"
        with host.subscribe("drain") as new:
            assert other.publish("drain", "to both generations").status_code == 202
            assert old.recv(timeout=TIMEOUT) == new.recv(timeout=TIMEOUT) == "to both generations"
            assert redis.subscribers(PREFIX + "drain") == 1
    # Both left (and the old worker exited): the host holds nothing.
    assert poll(lambda: redis.channels() == set(), TIMEOUT), redis.channels()


def test_syntax_check_does_not_reach_for_the_network(nginxws_bin, tmp_path, free_port):
    conf = tmp_path / "nginx.conf"
    conf.write_text(host_conf(logs=tmp_path, redis=f"redis://127.0.0.1:{free_port()}", port=free_port(),
                              pub_port=free_port()))
    done = subprocess.run([nginxws_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


# -- Redis Cluster -------------------------------------------------------------------------


def test_a_redis_cluster_carries_channels_on_the_nodes_of_their_slots(redis_server, start_host):
    nodes = [redis_server(cluster=True) for _ in range(3)]
    created = subprocess.run(
        ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
        capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stdout + created.stderr
    assert poll(lambda: all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in nodes), TIMEOUT)
    # A channel for each node: the first names whose slot that node serves.
    owner = {}
    for line in nodes[0].cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        port = int(fields[1].split(":")[1].split("@")[0])
        for span in fields[8:]:
            low, _, high = span.partition("-")
            owner[(int(low), int(high or low))] = port
    channels: dict[int, str] = {}
    for n in range(200):
        slot = int(nodes[0].cli("CLUSTER", "KEYSLOT", f"{PREFIX}c{n}"))
        port = next(p for (low, high), p in owner.items() if low <= slot <= high)
        channels.setdefault(port, f"c{n}")
        if len(channels) == 3:
            break
    assert len(channels) == 3, channels
    seeds = " ".join(f"redis://127.0.0.1:{n.port}" for n in nodes[:2])
    hosts = [start_host(f"cluster {seeds}"), start_host(f"cluster {seeds}")]
    with ExitStack() as stack:
        subscribers = {name: [stack.enter_context(host.subscribe(name)) for host in hosts]
                       for name in channels.values()}
        for node in nodes:
            name = channels[node.port]
            # Sharded: the channel lives on its slot's node only, one subscription per host.
            assert poll(lambda n=node, c=name: n.channels(shard=True) == {PREFIX + c}, TIMEOUT), node.port
            assert poll(lambda n=node, c=name: n.cli("PUBSUB", "SHARDNUMSUB", PREFIX + c).split()[1:] == ["2"],
                        TIMEOUT)
        for name, group in subscribers.items():
            sent = publish_interleaved(hosts, name, 10)
            for ws in group:
                assert_once_in_order(receive(ws, 20), sent)
        assert_nothing_more([ws for group in subscribers.values() for ws in group])
