"""A scripted HTTP backend for the end-to-end tests of auth_request and websocket_*_request.

The standard library's ``ThreadingHTTPServer`` on loopback, HTTP/1.1 with
keep-alive (as nginxws's pool uses it).  Each path answers what the test
scripted (a ``Reply``, or a function of the request giving one); every
request is recorded, and the test can wait for them.  ``delay`` holds an
answer back (a slow backend) until the delay passes or the backend stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WAIT = 10.0  # seconds a test waits for requests to arrive


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before answering


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]  # names in lower case, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None


Script = Reply | Callable[[Recorded], Reply]


class ScriptedBackend:
    """A backend on 127.0.0.1 whose answers the test scripts; ``stop()`` ends it."""

    def __init__(self, routes: dict[str, Script] | None = None) -> None:
        self.routes: dict[str, Script] = dict(routes or {})
        self.requests: list[Recorded] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.handle_any()

            def do_POST(self) -> None:
                self.handle_any()

            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded = Recorded(self.command, self.path, [(k.lower(), v) for k, v in self.headers.items()], body)
                script = backend.routes.get(self.path.partition("?")[0], Reply(404))
                reply = script(recorded) if callable(script) else script
                backend.record(recorded)
                if reply.delay and backend._stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.status not in (204, 304):
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def record(self, recorded: Recorded) -> None:
        with self._changed:
            self.requests.append(recorded)
            self._changed.notify_all()

    def wait_for(self, path: str, count: int = 1, timeout: float = WAIT) -> list[Recorded]:
        """Wait until ``count`` requests to ``path`` arrived; those requests (fails otherwise)."""
        def found() -> list[Recorded]:
            return [r for r in self.requests if r.path.partition("?")[0] == path]

        with self._changed:
            if not self._changed.wait_for(lambda: len(found()) >= count, timeout):
                raise AssertionError(f"{count} request(s) to {path} never came: {[r.path for r in self.requests]}")
            return found()

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
