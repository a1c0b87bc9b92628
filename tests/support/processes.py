"""Running the real ``nginxws`` in tests: its process, its files, waiting on it.

Imported by ``tests/conftest.py`` (the fixtures) and by tests that need the
helpers themselves: ``from support.processes import NginxwsRun, poll``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 10.0  # seconds for nginxws to listen
STOP_TIMEOUT = 10.0  # seconds for it to exit after TERM
POLL_INTERVAL = 0.02

_LISTEN = re.compile(r"^\s*listen\s+([^\s;]+)", re.M)


def installed_nginxws() -> Path:
    """The console script installed next to the running Python."""
    return Path(sys.executable).with_name("nginxws")


def listen_addresses(conf_text: str) -> list[tuple[str, int]]:
    """Where to connect to reach each TCP ``listen`` of a configuration text."""
    addresses = []
    for value in _LISTEN.findall(conf_text):
        if value.startswith("unix:"):
            continue
        host, _, port = value.rpartition(":")
        host = host.strip("[]")
        if host in ("", "*", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        addresses.append((host, int(port)))
    return addresses


def poll(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def wait_for_matches(read: Callable[[], str], pattern: str, *, count: int = 1, timeout: float,
                     where: str) -> list[re.Match[str]]:
    """Wait until ``read()`` matches ``pattern`` (a regex, multiline) ``count`` times; the matches.

    Fails the test, showing ``where`` and what was read last, if it never does.
    """
    found: list[re.Match[str]] = []

    def enough() -> bool:
        found[:] = re.finditer(pattern, read(), re.M)
        return len(found) >= count

    if not poll(enough, timeout):
        raise AssertionError(f"{pattern!r} x{count} never appeared in {where}:\n{read()}")
    return found


def accepts(address: tuple[str, int]) -> bool:
    """Whether a TCP connection to ``address`` succeeds now."""
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


def processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent pid, process group) of every process (Linux /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        found.append((int(entry.name), fields[0], int(fields[1]), int(fields[2])))
    return found


def living_members(pgid: int) -> list[int]:
    """The processes, zombies excepted, of a process group."""
    return [pid for pid, state, _, pgrp in processes() if pgrp == pgid and state != "Z"]


def fd_targets(pid: int) -> list[str]:
    """What each open descriptor of ``pid`` points at (``socket:[123]``, a path...)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return targets


@dataclass
class NginxwsRun:
    """One started ``nginxws``: its process and the files around it."""

    proc: subprocess.Popen
    prefix: Path
    conf: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        """What it wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        """What it wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for the process to exit; its exit status."""
        return self.proc.wait(timeout)

    def stop(self) -> list[int]:
        """TERM, wait, then KILL whatever is left; returns the pids that had to be killed."""
        pgid = self.proc.pid  # started in a session of its own
        killed = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                killed.append(self.proc.pid)
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        poll(lambda: not living_members(pgid), STOP_TIMEOUT)
        for pid in living_members(pgid):
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)
        return killed
