"""Server fixtures on top of ``run_nginxws``: one websocket server per test."""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import STOP_TIMEOUT, poll

CONF = """
daemon off;
master_process off;
error_log {prefix}/error.log info;
pid {prefix}/nginxws.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    {http}
    server {{
        listen {listen};
        {server}
        location /ws {{ websocket {websocket}; }}
        {locations}
    }}
}}
"""


@dataclass
class Server:
    """A running nginxws with one websocket location at ``/ws``."""

    run: object  # conftest.NginxwsRun
    port: int

    @property
    def pid(self) -> int:
        return self.run.pid

    @property
    def proc(self) -> subprocess.Popen:
        return self.run.proc

    @property
    def prefix(self) -> Path:
        return self.run.prefix

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def wait_log(self, pattern: str, path: Path, timeout: float = 5.0) -> re.Match:
        found: list[re.Match] = []

        def matched() -> bool:
            match = re.search(pattern, path.read_text(errors="replace") if path.exists() else "", re.M)
            found.extend([match] if match else [])
            return bool(match)

        if not poll(matched, timeout):
            raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text(errors='replace')}")
        return found[0]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)


@pytest.fixture
def start_server(run_nginxws, free_port, tmp_path):
    """``start_server(websocket=..., http=..., server=..., locations=..., listen=...)`` -> Server.

    ``listen`` is the server's listen address, ``{port}`` standing for a free port.
    """
    started: list[Server] = []

    def start(*, websocket: str = "", http: str = "", server: str = "", locations: str = "",
              listen: str = "127.0.0.1:{port}") -> Server:
        port = free_port()
        text = CONF.format(prefix=tmp_path, port=port, websocket=websocket, http=http,
                           server=server, locations=locations, listen=listen.format(port=port))
        started.append(Server(run_nginxws(text), port))
        return started[-1]

    yield start
    for server in started:
        assert "Traceback" not in server.run.stderr(), server.run.stderr()
        log = server.prefix / "error.log"
        assert "Traceback" not in (log.read_text() if log.exists() else "")
