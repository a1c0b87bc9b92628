"""A running nginxws with a websocket location at ``/ws``, and the one
configuration template the end-to-end fixtures fill in.

``tests/e2e/conftest.py`` (``start_server``), ``test_hostile.py``
(``start_worker``) and ``test_master.py`` (``start_master``) each start
servers from ``server_conf`` and wrap them in ``Server`` (or a subclass
adding what only those tests read).
"""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.processes import STOP_TIMEOUT, NginxwsRun, wait_for_matches

LOG_TIMEOUT = 10.0  # seconds for a line to reach a log

SINGLE_PROCESS = "daemon off;\nmaster_process off;"

_CONF = """
{main}
error_log {logs}/error.log info;
pid {logs}/nginxws.pid;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {logs}/access.log;
    {http}
    server {{
        listen {listen};
        {server}
        location /ws {{ websocket {websocket}; }}
        {locations}
    }}
}}
"""


def server_conf(*, logs: Path, listen: str, main: str = SINGLE_PROCESS, worker_connections: int = 1024,
                http: str = "", server: str = "", locations: str = "", websocket: str = "") -> str:
    """A configuration with one server and its ``location /ws { websocket ...; }``.

    ``error.log``, ``access.log`` and ``nginxws.pid`` go to ``logs``; ``main``
    holds the main-context directives (one process in the foreground unless
    told otherwise); ``http``, ``server`` and ``locations`` are added to
    their blocks as they are.
    """
    return _CONF.format(main=main, logs=logs, worker_connections=worker_connections, http=http, listen=listen,
                        server=server, websocket=websocket, locations=locations)


@dataclass
class Server:
    """A running nginxws listening on 127.0.0.1:``port`` with a websocket location at ``/ws``."""

    run: NginxwsRun
    port: int
    logs: Path  # where its error.log, access.log and pid file are

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

    def log(self, name: str = "error.log") -> str:
        """The text of one of its logs so far ("" before it exists)."""
        path = self.logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def error_log(self) -> str:
        return self.log("error.log")

    def wait_log(self, pattern: str, count: int = 1, *, log: str = "error.log",
                 timeout: float = LOG_TIMEOUT) -> list[re.Match[str]]:
        """Wait until ``log`` matches ``pattern`` (a regex, multiline) ``count`` times; the matches."""
        return wait_for_matches(lambda: self.log(log), pattern, count=count, timeout=timeout, where=log)

    def assert_no_traceback(self) -> None:
        """Nothing it wrote to stderr or its error log is a Python traceback."""
        text = self.run.stderr() + self.error_log()
        assert "Traceback" not in text, text

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (if it still runs) and wait for its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(STOP_TIMEOUT)
