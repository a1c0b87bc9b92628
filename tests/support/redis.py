"""Debian's ``redis-server`` in tests: started on a loopback port (or in a
network namespace), stopped by its pid, and asked what it holds.

``make test`` installs ``redis-server`` (``tests/redis/install.sh``); a
test that finds it missing fails and says how to install it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.processes import poll

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
START_TIMEOUT = 10.0  # seconds for redis-server to answer PING
STOP_TIMEOUT = 10.0


def require_redis() -> None:
    """Fail (never skip) where the Redis binaries are missing."""
    for path in (REDIS_SERVER, REDIS_CLI):
        if shutil.which(path) is None:
            pytest.fail(f"{path} is missing: run `bash tests/redis/install.sh` (make test does)")


CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000


def cluster_port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a cluster node can use ``port``: its bus port (``port`` + 10000) exists and is free."""
    if port + CLUSTER_BUS_OFFSET > 65535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind((host, port + CLUSTER_BUS_OFFSET))
        except OSError:
            return False
    return True


@dataclass
class RedisServer:
    """One ``redis-server`` this test started; ``start`` again after ``stop`` on the same port."""

    port: int
    workdir: Path
    host: str = "127.0.0.1"
    netns: str | None = None  # run inside this network namespace
    cluster: bool = False
    proc: subprocess.Popen | None = None
    starts: int = 0
    extra: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host, "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--protected-mode", "no", *self.extra]
        if self.cluster:
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
        log = open(self.workdir / f"redis-{self.port}-{self.starts}.log", "wb")
        with log:
            self.proc = subprocess.Popen(self._wrap(argv), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        if not poll(lambda: self.proc.poll() is not None or self.ping(), START_TIMEOUT):
            raise AssertionError(f"redis-server on port {self.port} does not answer")
        assert self.proc.poll() is None, f"redis-server on port {self.port} exited with {self.proc.returncode}"
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it by its pid (KILL by default: a Redis that fails, not one that says goodbye)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(STOP_TIMEOUT)
        self.proc = None

    def cli(self, *args: str) -> str:
        """``redis-cli`` against it; its output."""
        done = subprocess.run(self._wrap([REDIS_CLI, "-h", self.host, "-p", str(self.port), *args]),
                              capture_output=True, text=True, timeout=STOP_TIMEOUT)
        return done.stdout

    def ping(self) -> bool:
        if self.netns is None:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(64).startswith(b"+PONG")
            except OSError:
                return False
        return self.cli("PING").strip() == "PONG"

    def channels(self, shard: bool = False) -> set[str]:
        """The channels someone is subscribed to (``PUBSUB CHANNELS`` / ``SHARDCHANNELS``)."""
        return set(self.cli("PUBSUB", "SHARDCHANNELS" if shard else "CHANNELS").split())

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` (``PUBSUB NUMSUB``)."""
        lines = self.cli("PUBSUB", "NUMSUB", channel).split()
        return int(lines[1]) if len(lines) == 2 else 0


HOST_CONF = """
daemon off;
worker_processes {workers};
error_log {logs}/error.log info;
pid {logs}/nginxws.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    websocket_redis {redis};
    server {{
        listen {address}:{port};
        location /ws {{ websocket; }}
        location /sub {{ websocket welcome=off; websocket_channels $arg_channel; }}
    }}
    server {{
        listen {address}:{pub_port};
        location /pub {{ websocket_publish $arg_channel; }}
    }}
}}
"""


def host_conf(*, logs: Path, redis: str, port: int, pub_port: int, address: str = "127.0.0.1",
              workers: int = 2) -> str:
    """One host of a deployment: subscribers at ``/sub?channel=NAME`` (and
    pushable clients at ``/ws``) on ``port``, publishes at
    ``/pub?channel=NAME`` on ``pub_port``, channels joined through ``redis``
    (the arguments of ``websocket_redis``)."""
    return HOST_CONF.format(workers=workers, logs=logs, redis=redis, address=address, port=port,
                            pub_port=pub_port)
