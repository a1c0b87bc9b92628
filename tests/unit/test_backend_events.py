"""A worker's link to its backend (nginxws.backend), in process: the bounded queue of
session events, their retries and order, and what ``fetch`` answers and logs when the
upstream is unreachable, slow or broken (real loopback sockets, no nginxws process)."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
import trio.testing

from nginxws import backend as backend_module
from nginxws.backend import EVENT_RETRY_DELAYS, Backend, _Event
from nginxws.conf.model import Server
from nginxws.upstream import Origin, UpstreamAnswer, UpstreamRequest

pytestmark = pytest.mark.timeout(20)

SERVER = Server((), ("",), None)  # type: ignore[arg-type]  # only its name is read
ORIGIN = Origin("10.0.0.7", SERVER, "GET /ws HTTP/1.1", b"ws.example")
CONTEXT = ', client: 10.0.0.7, server: , request: "GET /ws HTTP/1.1"'


class Log:
    """An ErrorLogger that keeps (level, message) pairs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda message, conn=None: self.lines.append((level, message))

    def levels(self) -> list[str]:
        return [level for level, _ in self.lines]


def request(subrequest: str = "/events/connect", port: int = 9, read_timeout: float = 60.0) -> UpstreamRequest:
    return UpstreamRequest(subrequest, b"POST", ("127.0.0.1",), port, subrequest.encode(), (), b"{}", 5.0,
                           read_timeout, 5.0)


def event(name: str = "/events/connect", after: trio.Event | None = None) -> _Event:
    return _Event("websocket_connect_request", request(name), ORIGIN, 1, trio.Event(), after)


class Upstream:
    """Stands in for ``Backend.fetch``: answers each request with the next status
    of its script, after ``gate`` is set when one is given."""

    def __init__(self, *statuses: int, gate: trio.Event | None = None) -> None:
        self.statuses = list(statuses)
        self.gate = gate
        self.asked: list[str] = []

    async def fetch(self, request: UpstreamRequest, origin, conn, *, keep: int = 0) -> UpstreamAnswer:
        self.asked.append(request.subrequest)
        if self.gate is not None:
            await self.gate.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 0:
            raise RuntimeError("unexpected")
        return UpstreamAnswer(status)


def run(test, *, autojump: bool = True) -> None:
    async def main() -> None:
        log = Log()
        backend = Backend(log)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            backend.start(nursery)
            await test(backend, log)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0) if autojump else None)


# -- the queue ------------------------------------------------------------------------------


def test_a_full_queue_drops_events_with_one_line_then_counts_them(monkeypatch):
    monkeypatch.setattr(backend_module, "EVENT_QUEUE", 4)
    gate = trio.Event()

    async def test(backend: Backend, log: Log) -> None:
        upstream = Upstream(gate=gate)
        backend.fetch = upstream.fetch  # type: ignore[method-assign]
        events = [event(f"/e/{n}") for n in range(10)]
        for queued in events:
            backend.notify(queued)
        # Nothing has run yet: 4 wait in the queue, 6 were dropped (and are done).
        assert [e.done.is_set() for e in events] == [False] * 4 + [True] * 6
        assert log.lines == [("error", "websocket_connect_request dropped: 4 session events already wait for the "
                                       f'backend{CONTEXT}, subrequest: "/e/4", host: "ws.example"')]
        gate.set()
        await backend.drain(10)
        assert sorted(upstream.asked) == ["/e/0", "/e/1", "/e/2", "/e/3"]  # sent at once, in any order
        backend.notify(event("/e/later"))
        assert log.lines[-1] == ("warn", "6 session events were dropped while the queue was full")
        await backend.drain(10)
        assert upstream.asked[-1] == "/e/later"

    run(test)


def test_drain_gives_up_after_its_timeout():
    async def test(backend: Backend, log: Log) -> None:
        backend.fetch = Upstream(gate=trio.Event()).fetch  # type: ignore[method-assign]  # never answers
        backend.notify(event())
        start = trio.current_time()
        await backend.drain(1.0)
        assert trio.current_time() - start == pytest.approx(1.0)

    run(test)


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "asked", "levels", "last"),
    [
        ((204,), 1, [], None),
        ((503, 200), 2, ["warn"], None),
        ((502, 504, 200), 3, ["warn", "warn"], None),
        ((500, 500, 500), 3, ["warn", "warn", "error"],
         "websocket_connect_request unexpected status: 500, given up after 3 attempts"),
        ((404,), 1, ["error"], "websocket_connect_request unexpected status: 404, not retried"),
        ((301,), 1, ["error"], "websocket_connect_request unexpected status: 301, not retried"),
    ],
)
def test_events_are_retried_while_the_backend_answers_5xx(statuses, asked, levels, last):
    async def test(backend: Backend, log: Log) -> None:
        upstream = Upstream(*statuses)
        backend.fetch = upstream.fetch  # type: ignore[method-assign]
        backend.notify(event())
        started = trio.current_time()
        await backend.drain(60)
        assert len(upstream.asked) == asked == 1 + min(len(statuses) - 1, len(EVENT_RETRY_DELAYS))
        assert log.levels() == levels
        if last is not None:
            assert log.lines[-1][1].startswith(last + CONTEXT)
        # the waits between attempts are the configured ones
        assert trio.current_time() - started == pytest.approx(sum(EVENT_RETRY_DELAYS[: asked - 1]))

    run(test)


def test_a_sender_outlives_an_unexpected_error(monkeypatch):
    monkeypatch.setattr(backend_module, "EVENT_SENDERS", 1)  # the one that fails must send the next

    async def test(backend: Backend, log: Log) -> None:
        upstream = Upstream(0, 204)
        backend.fetch = upstream.fetch  # type: ignore[method-assign]
        backend.notify(event("/first"))
        backend.notify(event("/second"))
        await backend.drain(10)
        assert upstream.asked == ["/first", "/second"]
        assert log.lines == [("alert", "websocket_connect_request failed: RuntimeError('unexpected')")]

    run(test)


def test_a_disconnect_waits_for_its_connect():
    gate = trio.Event()

    async def test(backend: Backend, log: Log) -> None:
        order: list[str] = []

        async def fetch(request, origin, conn, *, keep=0):
            order.append(f"start {request.subrequest}")
            if request.subrequest == "/connect":
                await gate.wait()
            order.append(f"end {request.subrequest}")
            return UpstreamAnswer(204)

        backend.fetch = fetch  # type: ignore[method-assign]
        connected = event("/connect")
        backend.notify(connected)
        backend.notify(event("/disconnect", after=connected.done))
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["start /connect"]  # a free sender holds the disconnect back
        gate.set()
        await backend.drain(10)
        assert order == ["start /connect", "end /connect", "start /disconnect", "end /disconnect"]

    run(test)


# -- fetch against real sockets --------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_upstream_is_502_logged_as_nginx():
    async def test(backend: Backend, log: Log) -> None:
        port = closed_port()
        answer = await backend.fetch(request("/auth", port), ORIGIN, 1)
        assert answer == UpstreamAnswer(502)
        assert log.lines == [("error", f"connect() failed (111: Connection refused) while connecting to upstream"
                                       f'{CONTEXT}, subrequest: "/auth", upstream: "http://127.0.0.1:{port}/auth", '
                                       'host: "ws.example"')]
        await backend.aclose()

    run(test, autojump=False)


def test_each_address_is_tried_while_connecting_fails():
    async def test(backend: Backend, log: Log) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            await stream.receive_some(65536)
            await stream.send_all(b"HTTP/1.1 204 No Content\r\n\r\n")

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            # ::1 first: nothing listens there on that port (or IPv6 is missing), then 127.0.0.1 answers.
            tried = UpstreamRequest("/auth", b"GET", ("::1", "127.0.0.1"), port, b"/auth", (), b"", 5.0, 5.0, 5.0)
            assert (await backend.fetch(tried, ORIGIN, 1)).status == 204
            assert [level for level, _ in log.lines] == ["error"]
            nursery.cancel_scope.cancel()
        await backend.aclose()

    run(test, autojump=False)


@pytest.mark.parametrize(
    ("answer", "status", "line"),
    [
        (None, 504, "upstream timed out (110: Connection timed out) while reading response header from upstream"),
        (b"", 502, "upstream prematurely closed connection while reading response header from upstream"),
        (b"NOT HTTP\r\n\r\n", 502, "upstream sent invalid response: "),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n123456789", 502,
         "upstream sent a body over 8 bytes while reading upstream"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n1234", 502,
         "upstream prematurely closed connection while reading upstream"),
    ],
)
def test_a_broken_upstream_is_502_or_504_logged(answer: bytes | None, status: int, line: str):
    async def test(backend: Backend, log: Log) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            received = b""
            while not received.endswith(b"{}"):  # the whole request: closing on unread bytes would reset
                received += await stream.receive_some(65536)
            if answer is None:
                await trio.sleep_forever()
            await stream.send_all(answer)

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            got = await backend.fetch(request("/m", port, read_timeout=0.2), ORIGIN, 1, keep=8)
            assert got.status == status
            [(level, message)] = log.lines
            assert level == "error" and message.startswith(line), message
            assert message.endswith(f'{CONTEXT}, subrequest: "/m", upstream: "http://127.0.0.1:{port}/m", '
                                    'host: "ws.example"')
            nursery.cancel_scope.cancel()
        await backend.aclose()

    run(test, autojump=False)


def test_an_answer_keeps_its_status_headers_and_body_the_connection_is_reused_and_no_cookie_kept():
    async def test(backend: Backend, log: Log) -> None:
        connections = 0

        async def handler(stream: trio.SocketStream) -> None:
            nonlocal connections
            connections += 1
            buffer = b""
            while True:
                while b"{}" not in buffer:  # each request ends with its body, "{}"
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer.partition(b"{}")[2]
                await stream.send_all(b"HTTP/1.1 200 OK\r\nX-User: alice\r\nSet-Cookie: s=1; Path=/\r\n"
                                      b"Content-Length: 2\r\n\r\nok")

        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            for _ in range(3):
                got = await backend.fetch(request("/m", port), ORIGIN, 1, keep=8)
                assert (got.status, got.body) == (200, b"ok") and (b"x-user", b"alice") in got.headers
                assert (await backend.fetch(request("/auth", port), ORIGIN, 1)).body == b""  # read, not kept
            assert connections == 1 and log.lines == []
            assert len(backend._pool().cookies.jar) == 0  # what a backend sets for one client is not kept
            nursery.cancel_scope.cancel()
        await backend.aclose()

    run(test, autojump=False)


# -- a worker without a backend does not load one ------------------------------------------

WORKER = """
import sys
from nginxws.conf import load
from nginxws.log import bootstrap_error_log
from nginxws.worker import Worker
Worker(load(sys.argv[1]), 0, bootstrap_error_log())
print(" ".join(m for m in ("httpx", "http.cookiejar", "urllib.request") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("location", "loaded"),
    [
        ("location /ws { websocket; }", ""),
        ("location /a { internal; proxy_pass http://127.0.0.1:9000; }", "httpx http.cookiejar urllib.request"),
    ],
)
def test_httpx_is_loaded_only_by_a_worker_whose_configuration_proxies(tmp_path, location: str, loaded: str):
    import subprocess
    import sys

    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{ server {{ listen 127.0.0.1:8080; {location} }} }}\n")
    found = subprocess.run([sys.executable, "-c", WORKER, str(conf)], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == loaded
