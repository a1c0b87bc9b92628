"""Fixtures shared by every test that runs the real ``nginxws`` program.

``run_nginxws(conf_text)`` writes a configuration into the test's temporary
directory, starts the installed ``nginxws`` on it with that directory as its
prefix, waits until it listens, and owns the process from then on: at
teardown it sends TERM, waits, kills what is left, and fails the test if
any process of that run (master or workers) had to be killed.  The helpers
behind it live in ``tests/support/processes.py``.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.processes import START_TIMEOUT, NginxwsRun, accepts, installed_nginxws, listen_addresses, poll


@pytest.fixture(scope="session")
def nginxws_bin() -> str:
    """Path of the installed ``nginxws`` program (``make test`` installs it)."""
    path = installed_nginxws()
    if not path.exists():
        pytest.fail(f"{path} does not exist: install the project first (make test does)")
    return str(path)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a loopback TCP port that is free now, never the same twice."""
    given: set[int] = set()

    def pick() -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in given:
                given.add(port)
                return port

    return pick


@pytest.fixture
def run_nginxws(nginxws_bin: str, tmp_path: Path) -> Iterator[Callable[..., NginxwsRun]]:
    """Start ``nginxws`` on a configuration text; stopped (and checked) at teardown.

    ``run_nginxws(conf_text, args=(), wait=True)``: the text is written to
    ``<tmp>/nginx.conf`` (``nginx-1.conf``... for later runs in the same
    test), ``<tmp>`` is the prefix (``-p``) and gets a ``logs/`` directory as
    nginx's prefix has.  With ``wait``, returns once every TCP ``listen`` of
    the text accepts connections, and fails the test with nginxws's stderr if
    it exits or does not listen within ``START_TIMEOUT``.
    """
    runs: list[NginxwsRun] = []
    (tmp_path / "logs").mkdir(exist_ok=True)

    def start(conf_text: str, *, args: tuple[str, ...] = (), wait: bool = True) -> NginxwsRun:
        name = "nginx" if not runs else f"nginx-{len(runs)}"
        conf = tmp_path / f"{name}.conf"
        conf.write_text(conf_text)
        stdout_path, stderr_path = tmp_path / f"{name}.stdout", tmp_path / f"{name}.stderr"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [nginxws_bin, "-p", str(tmp_path), "-c", str(conf), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        run = NginxwsRun(proc, tmp_path, conf, stdout_path, stderr_path)
        runs.append(run)
        if wait:
            for address in listen_addresses(conf_text):
                if not poll(lambda a=address: proc.poll() is not None or accepts(a), START_TIMEOUT):
                    pytest.fail(f"nginxws does not listen on {address} after {START_TIMEOUT}s:\n{run.stderr()}")
                if proc.poll() is not None:
                    pytest.fail(f"nginxws exited with status {proc.returncode}:\n{run.stderr()}")
        return run

    yield start
    killed = {run.conf.name: run.stop() for run in runs}
    assert not any(killed.values()), f"processes left running after TERM, killed: {killed}"
