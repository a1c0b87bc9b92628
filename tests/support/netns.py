"""Hosts of our own for the many-hosts test: network namespaces joined by a bridge.

``Network`` creates a *switch* namespace holding a bridge, and one namespace
per host, each joined to the bridge by a veth pair, with a private address
given inside that host's namespace only (``SUBNET``): the machine's own
namespace gets no interface and no address, and nothing here routes out.
``Network.close`` deletes every namespace it created (their interfaces go
with them).  Creating a namespace needs root (CAP_SYS_ADMIN); where that is
refused, ``Network`` fails the test and says so: it never skips.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import pytest

SUBNET = "10.215.15"  # /24; host N is SUBNET.N, only inside the namespaces this file creates
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=check)


@dataclass
class Network:
    """Namespaces ``{tag}s`` (the switch) and ``{tag}1``... (the hosts); ``exec`` runs in one."""

    tag: str
    hosts: dict[str, str] = field(default_factory=dict)  # namespace -> address
    created: list[str] = field(default_factory=list)

    def _add_namespace(self, name: str) -> None:
        done = ip("netns", "add", name, check=False)
        if done.returncode != 0:
            pytest.fail(f"cannot create network namespace {name} (needs root): {done.stderr.strip()}")
        self.created.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def open(self, count: int) -> Network:
        switch = f"{self.tag}s"
        self._add_namespace(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        for n in range(1, count + 1):
            name = f"{self.tag}{n}"
            self._add_namespace(name)
            # The pair is made inside the switch (names there are ours alone), then one end moves to the host.
            ip("-n", switch, "link", "add", f"p{n}", "type", "veth", "peer", "name", "eth0", "netns", name)
            ip("-n", switch, "link", "set", f"p{n}", "master", "br0")
            ip("-n", switch, "link", "set", f"p{n}", "up")
            address = f"{SUBNET}.{n}"
            ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            self.hosts[name] = address
        return self

    def exec(self, namespace: str, argv: list[str]) -> list[str]:
        """``argv`` as run inside ``namespace``."""
        return [IP, "netns", "exec", namespace, *argv]

    def close(self) -> None:
        for name in reversed(self.created):
            ip("netns", "delete", name, check=False)
        self.created.clear()
