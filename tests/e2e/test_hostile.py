"""Hostile input at scale against one real worker (``master_process off``).

* A hypothesis fuzz of the front door and the push listener through real
  sockets: valid requests mutated, pipelined, split at random points,
  half-closed.  The worker must answer each one (101, 2xx or 4xx) or close
  it, never crash or log ``[alert]``/``[crit]``, and keep serving a client
  that was connected before the fuzz began.
* Slowloris: 1000 connections sending a header byte a second are cut by
  ``client_header_timeout`` while new clients are served.
* Connection churn: ``NGINXWS_CHURN`` connect/handshake/welcome/close
  cycles (default 50,000, about 80 s on two cores; set it lower for a quick
  run); the worker's RSS and open descriptors at the end are within 10 % of
  those after the first 1,000.
* ``worker_connections`` reached: new connections are closed and logged,
  existing ones keep working, service resumes when clients leave.

Every figure measured is printed (``pytest -s`` shows it); docs/testing.md
records them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import resource
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.clients import PUSH_URL, closed_without_answer, first_push_url, handshake
from support.processes import poll
from support.servers import Server, server_conf
from websockets.sync.client import connect

SERIOUS = re.compile(r"^.*\[(?:alert|crit|emerg)\].*$", re.M)
NOFILE_WANTED = 8192
FUZZ_EXAMPLES = int(os.environ.get("NGINXWS_FUZZ_EXAMPLES", "200"))
CHURN = int(os.environ.get("NGINXWS_CHURN", "50000"))
CHURN_BASELINE = 1000
CHURN_CLIENTS = 4


# -- the server and its well-behaved client ----------------------------------


@dataclass
class Worker(Server):
    """A running single-process nginxws and the files it writes."""

    _log_offset: int = 0

    def alive(self) -> bool:
        return self.run.proc.poll() is None

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def new_serious_lines(self) -> list[str]:
        """``[alert]``/``[crit]``/``[emerg]`` lines logged since the last call."""
        with open(self.logs / "error.log", "rb") as log:
            log.seek(self._log_offset)
            data = log.read()
        self._log_offset += len(data)
        return SERIOUS.findall(data.decode(errors="replace"))

    def assert_healthy(self, allowed: str | None = None) -> None:
        """Alive, no traceback anywhere, nothing serious logged (but ``allowed``)."""
        assert self.alive(), f"worker died:\n{self.run.stderr()}\n{self.error_log()[-3000:]}"
        assert "Traceback" not in self.run.stderr(), self.run.stderr()
        log = self.error_log()
        assert "Traceback" not in log
        serious = [m[0] for m in SERIOUS.finditer(log) if not (allowed and allowed in m[0])]
        assert not serious, "\n".join(serious[:20])


@pytest.fixture
def start_worker(run_nginxws, free_port, tmp_path):
    """``start_worker(worker_connections=..., client_header_timeout=..., websocket=...)``."""

    def start(*, worker_connections: int = 1024, client_header_timeout: str = "2s", websocket: str = "") -> Worker:
        port = free_port()
        text = server_conf(logs=tmp_path, listen=f"127.0.0.1:{port}", worker_connections=worker_connections,
                           http=f"client_header_timeout {client_header_timeout};\n"
                                "    client_body_timeout 2s;\n"
                                "    keepalive_timeout 2s;",
                           locations='location = /health { return 200 "ok"; }', websocket=websocket)
        return Worker(run_nginxws(text), port, tmp_path)

    return start


@pytest.fixture(autouse=True)
def enough_descriptors():
    """Raise this process's descriptor limit (nginxws, started from it, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(NOFILE_WANTED, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Witness:
    """A well-behaved client: connected first, checked to be served throughout."""

    def __init__(self, worker: Worker) -> None:
        self.ws = connect(f"ws://127.0.0.1:{worker.port}/ws", open_timeout=5, close_timeout=2).__enter__()
        self.push_url = first_push_url(self.ws)
        match = PUSH_URL.fullmatch(self.push_url)
        self.id, self.push_port = match["id"], int(match["port"])
        self.checks = 0

    def check(self, pusher: httpx.Client | None = None) -> float:
        """Push one message and echo one; the seconds it took."""
        started = time.monotonic()
        self.checks += 1
        marker = f"witness {self.checks}"
        response = (pusher or httpx).post(self.push_url, content=f"{marker} push", timeout=5)
        assert response.status_code == 204, response
        self.ws.send(f"{marker} echo")
        expected = {f"{marker} push", f"{marker} echo"}
        # Fuzz pushes may reach this client too (they know its ID): skip them.
        for _ in range(1000):
            message = self.ws.recv(timeout=5)
            expected.discard(message)
            if not expected:
                return time.monotonic() - started
        raise AssertionError(f"never received {expected}")

    def close(self) -> None:
        self.ws.close()


# -- fuzz of the front door and the push listener ------------------------------


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, FIN set, short payload)."""
    mask = b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def push_request(push_id: str, body: bytes, *extra: bytes, target: bytes = b"/ws") -> bytes:
    auth = base64.b64encode(push_id.encode() + b":")
    head = [b"POST %s HTTP/1.1" % target, b"Host: 127.0.0.1", b"Authorization: Basic " + auth,
            b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def seeds(push_id: str) -> dict[str, list[bytes]]:
    """Valid requests for each listener, the fuzz's starting points."""
    chunked = (b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
               + base64.b64encode(push_id.encode() + b":")
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    return {
        "front": [
            handshake(),
            handshake() + masked_frame(0x1, b"echo me") + masked_frame(0x8, b"\x03\xe8"),
            handshake(b"/ws?x=1") + masked_frame(0x9, b"ping"),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n",
            b"HEAD /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /ws HTTP/1.0\r\n\r\n",
        ],
        "push": [
            push_request(push_id, b"fuzz hello"),
            push_request("unknown-id", b"nobody"),
            push_request(push_id, bytes(range(16)), b"Content-Type: application/octet-stream"),
            push_request("", b"", target=b"/ws?id=" + push_id.encode()),
            push_request(push_id, b"x", target=b"/elsewhere"),
            chunked,
            b"OPTIONS /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ],
    }


HEADER_NAMES = [b"Content-Length", b"Transfer-Encoding", b"Host", b"Upgrade", b"Connection",
                b"Sec-WebSocket-Key", b"Sec-WebSocket-Version", b"Expect", b"Authorization",
                b"Content-Type", b"X-Junk", b""]
HEADER_VALUES = st.one_of(
    st.sampled_from([b"chunked", b"websocket", b"Upgrade", b"close", b"100-continue", b"-1", b"0",
                     b"99999999999999999999", b"13", b"Basic !!!", b"Basic Og==", b"application/octet-stream",
                     b"\xff\xfe", b" ", b"a\rb", b"a\nb", b"identity, chunked"]),
    st.binary(max_size=40),
    st.integers(0, 20_000).map(lambda n: b"v" * n),
)


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one random byte-level or header-level change."""
    kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "header", "length", "truncate"]))
    size = len(data)
    at = draw(st.integers(0, size))
    if kind == "flip" and size:
        at = min(at, size - 1)
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
    if kind == "insert":
        piece = draw(st.one_of(st.binary(min_size=1, max_size=16),
                               st.sampled_from([b"\r\n", b"\r\n\r\n", b":", b" ", b"\x00", b"\n"])))
        return data[:at] + piece + data[at:]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 16)):]
    if kind == "duplicate":
        return data[:at] + data[at:at + draw(st.integers(1, 64))] * 2 + data[at + 64:]
    if kind == "header":
        line_end = data.find(b"\r\n")
        if line_end < 0:
            return data
        line = draw(st.sampled_from(HEADER_NAMES)) + b": " + draw(HEADER_VALUES)
        return data[:line_end + 2] + line + b"\r\n" + data[line_end + 2:]
    if kind == "length":
        value = draw(st.one_of(st.integers(-10, 10 ** 15).map(lambda n: str(n).encode()), HEADER_VALUES))
        return re.sub(rb"Content-Length: [^\r]*", b"Content-Length: " + value.replace(b"\\", b""), data, count=1)
    if kind == "truncate":
        return data[:at]
    return data


@st.composite
def fuzz_case(draw: st.DrawFn, requests: dict[str, list[bytes]]) -> tuple[str, list[bytes], str]:
    """(listener, chunks to send, how to end): pipelined, mutated, split."""
    listener = draw(st.sampled_from(["front", "push"]))
    pool = requests[listener] if draw(st.integers(0, 9)) else requests["front"] + requests["push"]
    pipelined = []
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.sampled_from(pool))
        for _ in range(draw(st.integers(0, 3))):
            data = draw(mutation(data))
        pipelined.append(data)
    data = b"".join(pipelined)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=4))))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if data[a:b]]
    end = draw(st.sampled_from(["half-close", "half-close", "close"]))
    return listener, chunks, end


STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
# 501 is nginx's answer to a Transfer-Encoding other than chunked.
ANSWERS = {100, 101, 501} | set(range(200, 300)) | set(range(400, 500))
HALF_CLOSE_ANSWER_TIMEOUT = 5.0
READ_AFTER_CLOSE = 0.2


def send_case(port: int, chunks: list[bytes], end: str) -> tuple[bytes, bool]:
    """Send one fuzz case; (what came back, whether the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server already answered and closed
                break
        if end == "half-close":
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        deadline = time.monotonic() + (HALF_CLOSE_ANSWER_TIMEOUT if end == "half-close" else READ_AFTER_CLOSE)
        received = bytearray()
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return bytes(received), False
            except OSError:
                return bytes(received), True
            if not data:
                return bytes(received), True
            received += data
        return bytes(received), False


def test_fuzzed_requests_never_crash_the_worker_and_a_client_is_served_throughout(start_worker):
    worker = start_worker()
    witness = Witness(worker)
    requests = seeds(witness.id)
    ports = {"front": worker.port, "push": witness.push_port}
    statuses: Counter[str] = Counter()
    examples = 0

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=fuzz_case(requests))
    def one(case: tuple[str, list[bytes], str]) -> None:
        nonlocal examples
        listener, chunks, end = case
        received, closed = send_case(ports[listener], chunks, end)
        if received:
            match = STATUS_LINE.match(received)
            assert match, f"not an HTTP answer to {chunks!r}: {received[:200]!r}"
            assert int(match[1]) in ANSWERS, f"{match[1]} answered to {chunks!r}"
            statuses[f"{listener} {match[1].decode()}"] += 1
        else:
            statuses[f"{listener} {'closed' if closed else 'no answer yet'}"] += 1
        if end == "half-close":
            assert closed, f"a half-closed connection was neither answered in full nor closed: {chunks!r}"
        serious = worker.new_serious_lines()
        assert not serious, f"{serious} after {chunks!r}"
        examples += 1
        if examples % 20 == 0:
            assert worker.alive(), worker.error_log()[-3000:]
            witness.check()

    started = time.monotonic()
    one()
    print(f"\nfuzz: {examples} examples in {time.monotonic() - started:.1f}s: {dict(sorted(statuses.items()))}")
    witness.check()
    witness.close()
    worker.assert_healthy()


# What the fuzz found, kept as plain cases: (listener, bytes sent before SHUT_WR,
# what must come back).
FOUND_BY_FUZZ = [
    pytest.param("front", handshake(), b"HTTP/1.1 101 ", id="client-gone-right-after-handshake"),
    pytest.param("front", b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nshort", b"",
                 id="request-body-cut-short"),
    pytest.param("front", b"POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"",
                 id="invalid-chunked-body"),
    # Found when a second parser (trio-websocket's) decoded these headers and
    # crashed; they were refused with 400 then.  nginx accepts them (Host may
    # hold any byte above 0x20, tokens are matched as bytes), and so does the
    # one parse the handshake has now: they complete, and the worker goes on.
    pytest.param("front", handshake().replace(b"Host: 127.0.0.1", b"Host: 127.0.0.1\xde"), b"HTTP/1.1 101 ",
                 id="handshake-host-not-ascii"),
    pytest.param("front", handshake().replace(b"Host: 127.0.0.1", b"Host: xn--zz"), b"HTTP/1.1 101 ",
                 id="handshake-host-bad-punycode"),
    pytest.param("front", handshake().replace(b"Connection: Upgrade", b"Connection: Upgrade, \xff"),
                 b"HTTP/1.1 101 ", id="handshake-connection-not-ascii"),
    pytest.param("front", handshake().replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Protocol: \xe9\r\n\r\n"),
                 b"HTTP/1.1 101 ", id="handshake-subprotocol-not-ascii"),
    pytest.param("front", handshake().replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: \xe9\r\n\r\n"),
                 b"HTTP/1.1 400 ", id="handshake-extension-offer-not-ascii"),
    pytest.param("push", b"HEAD /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nOPTIONS /ws HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"HTTP/1.1 405 ", id="head-to-push-listener"),
]


@pytest.mark.parametrize(("listener", "sent", "answer"), FOUND_BY_FUZZ)
def test_fuzz_findings_are_answered_or_closed_quietly(start_worker, listener, sent, answer):
    worker = start_worker()
    witness = Witness(worker)
    port = worker.port if listener == "front" else witness.push_port
    received, closed = send_case(port, [sent], "half-close")
    assert closed
    assert received.startswith(answer), received
    if listener == "push":  # HEAD: no body, and the next pipelined request is answered
        assert re.fullmatch(rb"HTTP/1\.1 405 [^\r]*\r\n(?:[^\r]+\r\n)*\r\nHTTP/1\.1 204 .*", received, re.S), received
    witness.check()
    witness.close()
    worker.assert_healthy()


# -- slowloris --------------------------------------------------------------------


SLOW_REQUEST = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 64
SLOWLORIS = 1000
SLOW_TIMEOUT = 2.0  # the server's client_header_timeout
SLOW_SLACK = 3.0  # how long after client_header_timeout every cut must have happened


def newcomer_served(worker: Worker) -> float:
    """A new client connects, gets its welcome, a push and an echo; the seconds it took."""
    started = time.monotonic()
    with connect(f"ws://127.0.0.1:{worker.port}/ws", open_timeout=5, close_timeout=2) as ws:
        push_url = first_push_url(ws)
        assert httpx.post(push_url, content="pushed", timeout=5).status_code == 204
        assert ws.recv(timeout=5) == "pushed"
        ws.send("echoed")
        assert ws.recv(timeout=5) == "echoed"
    return time.monotonic() - started


def test_slowloris_is_cut_by_client_header_timeout_while_new_clients_are_served(start_worker):
    # Every connection sends part of a request head before the timeout, so
    # every one must be answered 408, then closed; a silent close fails.
    worker = start_worker(worker_connections=4096, client_header_timeout=f"{SLOW_TIMEOUT:g}s")
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, float] = {}
    answered: dict[socket.socket, float] = {}  # seconds after opening, when the server first wrote or closed
    received: dict[socket.socket, bytes] = {}
    closed: dict[socket.socket, float] = {}  # seconds after opening, when the server's close was read
    latencies: list[float] = []
    try:
        for n in range(SLOWLORIS):
            sock = socket.create_connection(("127.0.0.1", worker.port), timeout=5)
            sock.setblocking(False)
            sock.send(SLOW_REQUEST[:1])
            opened[sock] = time.monotonic()
            received[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
            if n % 100 == 99:
                latencies.append(newcomer_served(worker))
        all_open = time.monotonic()
        sent = 1
        next_byte = min(opened.values()) + 1.0
        next_check = all_open
        deadline = all_open + SLOW_TIMEOUT + SLOW_SLACK
        while len(closed) < SLOWLORIS and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_check:
                latencies.append(newcomer_served(worker))
                next_check = time.monotonic() + 0.2
            if now >= next_byte:
                for sock in opened.keys() - answered.keys():
                    try:
                        sock.send(SLOW_REQUEST[sent:sent + 1])
                    except OSError:
                        pass
                sent += 1
                next_byte += 1.0
            for key, _ in selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                answered.setdefault(sock, time.monotonic() - opened[sock])
                received[sock] += data
                if not data:
                    closed[sock] = time.monotonic() - opened[sock]
                    selector.unregister(sock)
        answers = Counter(data.split(b"\r\n", 1)[0].decode(errors="replace") or "nothing" for data in received.values())
        ages = sorted(answered.values())
        print(f"\nslowloris: {SLOWLORIS} connections opened in {all_open - min(opened.values()):.2f}s, "
              f"answered {ages[0]:.2f}..{ages[-1]:.2f}s after they opened (client_header_timeout {SLOW_TIMEOUT:g}s) "
              f"with {dict(answers)}, {len(closed)} then closed; up to {sent} header bytes sent on each; "
              f"{len(latencies)} new clients served meanwhile, slowest in {max(latencies):.3f}s")
        assert len(closed) == SLOWLORIS, f"{SLOWLORIS - len(closed)} slowloris connections outlived client_header_timeout"
        assert ages[0] >= SLOW_TIMEOUT - 0.05, "cut before client_header_timeout"
        assert answers == {"HTTP/1.1 408 Request Time-out": SLOWLORIS}, answers
        assert max(latencies) < 2.0, latencies
    finally:
        selector.close()
        for sock in opened:
            sock.close()
    newcomer_served(worker)
    worker.assert_healthy()


# -- connection churn ------------------------------------------------------------


def handshake_and_close(port: int) -> None:
    """One cycle: connect, handshake, read the welcome, close cleanly."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(handshake())
        data = b""
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0 and len(data) >= head_end + 6:
                size = data[head_end + 5] & 0x7F
                if len(data) >= head_end + 6 + size:
                    break
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {data!r}")
            data += chunk
        if not data.startswith(b"HTTP/1.1 101 ") or data[head_end + 4] != 0x81:
            raise ConnectionError(f"no handshake and welcome: {data!r}")
        sock.sendall(masked_frame(0x8, struct.pack("!H", 1000)))
        while sock.recv(4096):  # the server's close frame, then its end of the connection
            pass


def churn(port: int, cycles: int) -> float:
    """Run ``cycles`` cycles over ``CHURN_CLIENTS`` concurrent clients; the seconds taken."""
    remaining = iter(range(cycles))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def client() -> None:
        while True:
            with lock:
                if next(remaining, None) is None or failures:
                    return
            try:
                handshake_and_close(port)
            except (OSError, ConnectionError) as err:
                failures.append(err)
                return

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(CHURN_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[0]
    return time.monotonic() - started


def settled(worker: Worker, fds: int, timeout: float = 10.0) -> bool:
    """Whether the worker is back to ``fds`` open descriptors (every connection gone)."""
    return poll(lambda: worker.open_fds() == fds, timeout)


@pytest.mark.timeout(600)
def test_connection_churn_leaks_neither_memory_nor_descriptors(start_worker):
    assert CHURN > CHURN_BASELINE, f"NGINXWS_CHURN must exceed {CHURN_BASELINE}"
    worker = start_worker()
    handshake_and_close(worker.port)  # the access log opens on first use
    access_log = worker.run.prefix / "access.log"
    assert poll(lambda: access_log.exists() and access_log.stat().st_size > 0, 5)
    idle_fds = worker.open_fds()
    first = churn(worker.port, CHURN_BASELINE)
    assert settled(worker, idle_fds), f"{worker.open_fds()} descriptors open, {idle_fds} when idle"
    rss_base, fds_base = worker.rss_kib(), worker.open_fds()
    rest = churn(worker.port, CHURN - CHURN_BASELINE)
    assert settled(worker, idle_fds), f"{worker.open_fds()} descriptors open, {idle_fds} when idle"
    rss_end, fds_end = worker.rss_kib(), worker.open_fds()
    total = first + rest
    print(f"\nchurn: {CHURN} cycles in {total:.1f}s ({CHURN / total:.0f}/s, {CHURN_CLIENTS} clients); "
          f"RSS {rss_base} KiB after {CHURN_BASELINE}, {rss_end} KiB at the end "
          f"({(rss_end - rss_base) / rss_base:+.1%}); fds {fds_base} -> {fds_end}")
    assert rss_end <= rss_base * 1.10, f"RSS grew from {rss_base} to {rss_end} KiB"
    assert fds_end <= fds_base * 1.10
    worker.assert_healthy()


# -- worker_connections reached ----------------------------------------------------


LIMIT = 8


def test_worker_connections_reached_refuses_new_connections_and_recovers(start_worker):
    worker = start_worker(worker_connections=LIMIT)
    witness = Witness(worker)
    with httpx.Client() as pusher:  # one keep-alive push connection, opened before the limit
        witness.check(pusher)
        with contextlib.ExitStack() as fillers:
            for _ in range(LIMIT - 2):
                fillers.enter_context(connect(f"ws://127.0.0.1:{worker.port}/ws", open_timeout=5)).recv(timeout=5)
            assert closed_without_answer(worker.port)
            assert closed_without_answer(witness.push_port)
            assert re.search(rf"\[alert\] .*{LIMIT} worker_connections are not enough", worker.error_log())
            witness.check(pusher)
        witness.check(pusher)
    deadline = time.monotonic() + 5
    while True:
        try:
            newcomer = Witness(worker)
            break
        except (OSError, EOFError) as err:
            assert time.monotonic() < deadline, f"service did not resume: {err}"
            time.sleep(0.05)
    newcomer.check()
    newcomer.close()
    witness.close()
    worker.assert_healthy(allowed="worker_connections are not enough")
