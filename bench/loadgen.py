"""The load generator: a minimal WebSocket client, HTTP/1.1 pushers and the four scenarios.

Everything here runs in the harness process, on one asyncio loop (uvloop when installed), and is
written to cost the load generator far less than the server it measures: `asyncio.Protocol`
callbacks instead of streams, pre-built request bytes, no task per message.

What a client expects of a system (see `Target`): it connects to ``ws://127.0.0.1:PORT{path}``;
a system with a welcome message (nginxws, the websockets peer) sends the push URL
``http://ID@ADDR:PUSHPORT/ws`` right after the handshake and is pushed to by a POST with
``Authorization: Basic base64(ID:)``; nchan sends nothing and is pushed to by a POST to
``/pub/CHANNEL`` on its own port. A push body is ``SEQ CLIENT SENT_NS``: the client checks that
it is the one named, the scenario that each SEQ arrives exactly once.

A target with permessage-deflate (`Target.deflate`) gets `DeflateClient`s, which offer the
extension and inflate what the server compresses; the others get the plain `WSClient`, whose
frame path knows nothing of compression, so their figures do not move with it.

Server CPU is read from /proc by the caller-supplied `ServerProbe`; every scenario takes it
over exactly the phase it measures.
"""

from __future__ import annotations

import asyncio
import functools
import base64
import hashlib
import os
import resource
import secrets
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HOST = "127.0.0.1"

_KEY = base64.b64encode(os.urandom(16))
_ACCEPT = base64.b64encode(
    hashlib.sha1(_KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
)
_MASK = os.urandom(4)
_MASK_INT = int.from_bytes(_MASK, "big")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (FIN set, masked with this process's key) carrying `payload`."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + length.to_bytes(8, "big")
    repeats = (length + 3) // 4
    key = int.from_bytes(_MASK * repeats, "big")
    masked = (int.from_bytes(payload.ljust(repeats * 4, b"\0"), "big") ^ key).to_bytes(
        repeats * 4, "big"
    )[:length]
    return head + _MASK + masked


CLOSE_FRAME = _masked_frame(OP_CLOSE, (1000).to_bytes(2, "big"))


class ProtocolError(Exception):
    """The server broke the protocol the harness expects (bad handshake, masked frame...)."""


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where and how to push to one client: an HTTP endpoint and the request prefix."""

    host: str
    port: int
    request_head: bytes
    """Everything of the request up to and including ``Content-Length: ``."""

    def request(self, body: bytes) -> bytes:
        return b"%s%d\r\n\r\n%s" % (self.request_head, len(body), body)


@dataclass(frozen=True, slots=True)
class Target:
    """A running system under test, as the load generator sees it."""

    port: int
    welcome: bool
    """True: the server sends the push URL after the handshake (nginxws, websockets peer).
    False: nchan: the client subscribes to ``/ws/CHANNEL`` and is pushed to at ``/pub/CHANNEL``."""
    deflate: bool = False
    """The server runs permessage-deflate: clients offer it, insist on it and inflate."""
    path: str | None = None
    """The path (and query) every client connects to, whatever its channel: the fan-out's
    ``/sub?channel=NAME``; None: the path above."""

    def subscribe_path(self, channel: str) -> str:
        if self.path is not None:
            return self.path
        return "/ws" if self.welcome else f"/ws/{channel}"


def _push_target_from_url(url: str) -> PushTarget:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.username is None or parts.hostname is None:
        raise ProtocolError(f"welcome message is not a push URL: {url[:200]!r}")
    credentials = base64.b64encode(f"{parts.username}:".encode()).decode()
    port = parts.port or 80
    host = parts.hostname
    authority = parts.netloc.rpartition("@")[2]
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {authority}\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Length: "
    )
    return PushTarget(host, port, head.encode())


class WSClient(asyncio.Protocol):
    """One WebSocket client connection: handshake, welcome, messages, closing handshake."""

    __slots__ = (
        "index", "channel", "target", "transport", "buffer", "upgraded", "fragments",
        "push_target", "ready", "closed", "on_message", "close_sent", "error",
    )

    OFFER = b""
    """Extension headers of the handshake request: none."""

    def __init__(self, index: int, target: Target, on_message: Callable[[int, bytes], None]):
        self.index = index
        self.channel = secrets.token_hex(8)
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.fragments: list[bytes] | None = None
        self.push_target: PushTarget | None = None
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        """Done when the client can be pushed to: after the welcome, or the handshake for nchan."""
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_message = on_message
        self.close_sent = False
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        path = self.target.subscribe_path(self.channel)
        transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (path.encode(), HOST.encode(), self.target.port, _KEY, self.OFFER)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self._fail(f"connection lost before ready: {exc or 'closed by server'}")
        if not self.closed.done():
            self.closed.set_result(None)

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        if not self.ready.done():
            self.ready.set_exception(ProtocolError(why))
            self.ready.exception()  # marks it retrieved: the scenario reads `error`
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            head = buffer[:end]
            if not head.startswith(b"HTTP/1.1 101") or _ACCEPT not in head:
                self._fail(f"handshake refused: {head[:200]!r}")
                return
            refused = self._agree(head)
            if refused is not None:
                self._fail(refused)
                return
            self.upgraded = True
            if self.push_target is None and not self.target.welcome:
                self.push_target = PushTarget(
                    HOST,
                    self.target.port,
                    b"POST /pub/%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: "
                    % (self.channel.encode(), HOST.encode(), self.target.port),
                )
                self.ready.set_result(None)
            buffer = buffer[end + 4 :]
        self.buffer = self._frames(buffer)

    def _agree(self, head: bytes) -> str | None:
        """Take the extensions the 101 `head` agrees to; why they will not do, or None."""
        return None

    def _frames(self, buffer: bytes) -> bytes:
        """Handle every complete frame in `buffer`; returns the incomplete rest."""
        start = 0
        size = len(buffer)
        while size - start >= 2:
            first = buffer[start]
            length = buffer[start + 1]
            if length & 0x80:
                self._fail("server sent a masked frame")
                return b""
            header = 2
            if length == 126:
                if size - start < 4:
                    break
                length = int.from_bytes(buffer[start + 2 : start + 4], "big")
                header = 4
            elif length == 127:
                if size - start < 10:
                    break
                length = int.from_bytes(buffer[start + 2 : start + 10], "big")
                header = 10
            end = start + header + length
            if end > size:
                break
            self._frame(first, buffer[start + header : end])
            start = end
        return buffer[start:] if start else buffer

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == OP_TEXT or opcode == OP_BINARY:
            if first & 0x80:
                self._message(payload)
            else:
                self.fragments = [payload]
        elif opcode == OP_CONT:
            if self.fragments is None:
                self._fail("continuation frame without a message")
                return
            self.fragments.append(payload)
            if first & 0x80:
                message = b"".join(self.fragments)
                self.fragments = None
                self._message(message)
        elif opcode == OP_PING:
            assert self.transport is not None
            self.transport.write(_masked_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            assert self.transport is not None
            if not self.close_sent:
                self.close_sent = True
                self.transport.write(CLOSE_FRAME)
            self.transport.close()
        elif opcode != OP_PONG:
            self._fail(f"unknown opcode {opcode}")

    def _message(self, payload: bytes) -> None:
        if self.push_target is None:
            try:
                first_url = payload.decode().split(",")[0].strip()
                self.push_target = _push_target_from_url(first_url)
            except (UnicodeDecodeError, ValueError, ProtocolError) as error:
                self._fail(str(error))
                return
            self.ready.set_result(None)
            return
        self.on_message(self.index, payload)

    def send_text(self, text: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_masked_frame(OP_TEXT, text))

    def close(self) -> None:
        """Start the closing handshake; `closed` is done when the server has closed TCP."""
        if self.transport is not None and not self.close_sent and not self.transport.is_closing():
            self.close_sent = True
            self.transport.write(CLOSE_FRAME)


_EXTENSIONS = b"\r\nsec-websocket-extensions:"
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
"""What a sender strips from the end of every compressed message (RFC 7692 section 7.2.1)."""


class DeflateClient(WSClient):
    """A client that offers permessage-deflate (RFC 7692) and inflates what arrives compressed.

    It sends its own messages uncompressed, as RFC 7692 allows, so only the server compresses.
    A message is compressed when its first frame has RSV1 set. With
    ``server_no_context_takeover`` agreed, each message is a deflate stream of its own and gets
    a fresh inflater; without it, the server's compressor keeps its window across messages and
    so must the client: one inflater for the connection, fed every compressed message in order.
    """

    __slots__ = ("compressed", "inflater", "fresh_per_message", "inflated")

    OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

    def __init__(self, index: int, target: Target, on_message: Callable[[int, bytes], None]):
        super().__init__(index, target, on_message)
        self.compressed = False
        """The message being received started with RSV1."""
        self.inflater: zlib._Decompress | None = None
        self.fresh_per_message = False
        self.inflated = 0
        """Messages that arrived compressed (so a run can tell the server compresses)."""

    def _agree(self, head: bytes) -> str | None:
        lowered = head.lower()
        marker = lowered.find(_EXTENSIONS)
        if marker < 0:
            return "the server did not agree to permessage-deflate"
        line_end = lowered.find(b"\r\n", marker + 2)
        value = lowered[marker + len(_EXTENSIONS) : line_end if line_end >= 0 else len(lowered)]
        parameters = [parameter.strip() for parameter in value.split(b";")]
        if parameters[0] != b"permessage-deflate" or b"," in value:
            return f"unexpected extensions in the 101: {value[:200]!r}"
        self.fresh_per_message = b"server_no_context_takeover" in parameters
        return None

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode == OP_TEXT or opcode == OP_BINARY:
            self.compressed = bool(first & 0x40)
        elif first & 0x40:
            self._fail(f"RSV1 set on a frame with opcode {opcode}")
            return
        super()._frame(first, payload)

    def _message(self, payload: bytes) -> None:
        if self.compressed:
            inflater = self.inflater
            if inflater is None:
                # wbits -15 inflates a raw deflate stream made with any window up to 2^15.
                inflater = zlib.decompressobj(-15)
                if not self.fresh_per_message:
                    self.inflater = inflater
            try:
                payload = inflater.decompress(payload + _DEFLATE_TAIL)
            except zlib.error as error:
                self._fail(f"cannot inflate a message: {error}")
                return
            self.inflated += 1
        super()._message(payload)


def client_type(target: Target) -> type[WSClient]:
    """The client class for `target`: with permessage-deflate only where the server runs it."""
    return DeflateClient if target.deflate else WSClient


class Unanswered(Exception):
    """A push request the server will not answer on this connection (it said it closes)."""


class PushConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to a push port; requests may be pipelined."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: deque[asyncio.Future[int]] = deque()
        self.buffer = b""
        self.closing = False
        """The server answered with ``Connection: close``: nothing more is answered here."""

    @property
    def usable(self) -> bool:
        return not self.closing and self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        while self.pending:
            self.pending.popleft().set_exception(ConnectionError(f"push connection lost: {exc}"))

    def send(self, request: bytes) -> asyncio.Future[int]:
        """Write one request; the future is its response status."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self.usable:
            future.set_exception(Unanswered())
            return future
        assert self.transport is not None
        self.pending.append(future)
        self.transport.write(request)
        return future

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        start = 0
        while True:
            head_end = buffer.find(b"\r\n\r\n", start)
            if head_end < 0:
                break
            head = buffer[start:head_end].lower()
            status = int(buffer[start + 9 : start + 12])
            body_end = head_end + 4
            marker = head.find(b"\r\ncontent-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker + 2)
                value = head[marker + 17 : line_end if line_end >= 0 else len(head)]
                body_end += int(value)
            elif b"\r\ntransfer-encoding: chunked" in head:
                body_end = _chunked_end(buffer, head_end + 4)
                if body_end < 0:
                    break
            if body_end > len(buffer):
                break
            start = body_end
            if self.pending:
                self.pending.popleft().set_result(status)
            if b"\r\nconnection: close" in head:
                self._closed_by_server()
                return
        self.buffer = buffer[start:] if start else buffer

    def _closed_by_server(self) -> None:
        """After ``Connection: close``: requests written after that one were not handled."""
        self.closing = True
        self.buffer = b""
        while self.pending:
            self.pending.popleft().set_exception(Unanswered())
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pusher:
    """A keep-alive pusher to one push port.

    It opens a new connection when the server ends one after a response (nginx does so after
    `keepalive_requests`, 1000 by default) and resends what that connection left unanswered.
    """

    RETRIES = 3

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.connection: PushConnection | None = None
        self.connecting: asyncio.Future[PushConnection] | None = None

    async def _connection(self) -> PushConnection:
        if self.connection is not None and self.connection.usable:
            return self.connection
        if self.connecting is None or self.connecting.done():
            self.connecting = asyncio.ensure_future(self._connect())
        return await asyncio.shield(self.connecting)

    async def _connect(self) -> PushConnection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(PushConnection, self.host, self.port)
        self.connection = connection
        return connection

    async def send(self, request: bytes) -> int:
        """Send one request (reconnecting if needed); its response status."""
        for _attempt in range(self.RETRIES):
            connection = await self._connection()
            try:
                return await connection.send(request)
            except Unanswered:
                continue
        raise ConnectionError("the push port keeps closing connections without answering")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def _chunked_end(buffer: bytes, start: int) -> int:
    """Where a chunked body starting at `start` ends (-1: not all here yet)."""
    while True:
        line_end = buffer.find(b"\r\n", start)
        if line_end < 0:
            return -1
        size = int(buffer[start:line_end].split(b";")[0], 16)
        start = line_end + 2 + size + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n", line_end + 2)
            return -1 if trailer_end < 0 else trailer_end + 2
        if start > len(buffer):
            return -1


async def open_pusher(host: str, port: int) -> Pusher:
    """A pusher with its first connection open."""
    pusher = Pusher(host, port)
    await pusher._connection()
    return pusher


class ServerProbe:
    """What a scenario needs to know about the server: its CPU and memory from /proc."""

    def cpu_seconds(self) -> float:
        raise NotImplementedError

    def rss_bytes(self) -> int:
        raise NotImplementedError


@dataclass
class Tally:
    """Delivery bookkeeping: each SEQ must reach the client it names exactly once."""

    total: int
    received: bytearray = field(init=False)
    delivered: int = 0
    misrouted: int = 0
    duplicated: int = 0
    malformed: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.received = bytearray(self.total)

    def on_message(self, client: int, payload: bytes) -> None:
        now = time.perf_counter_ns()
        try:
            seq_text, client_text, sent_text = payload.split(b" ")
            seq = int(seq_text)
            named = int(client_text)
            sent = int(sent_text)
        except ValueError:
            self.malformed += 1
            return
        if named != client or not 0 <= seq < self.total:
            self.misrouted += 1
            return
        if self.received[seq]:
            self.duplicated += 1
            return
        self.received[seq] = 1
        self.delivered += 1
        self.latencies_ns.append(now - sent)
        if self.delivered == self.total:
            self.done.set()

    @property
    def lost(self) -> int:
        return self.total - self.delivered


async def connect_clients(
    target: Target, count: int, concurrency: int, on_message: Callable[[int, bytes], None]
) -> list[WSClient]:
    """Open `count` clients, `concurrency` handshakes at a time; each is ready when returned."""
    loop = asyncio.get_running_loop()
    clients: list[WSClient] = []
    next_index = 0
    client_class = client_type(target)

    async def opener() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            _transport, client = await loop.create_connection(
                functools.partial(client_class, index, target, on_message), HOST, target.port
            )
            clients.append(client)
            await client.ready

    await asyncio.gather(*(opener() for _ in range(min(concurrency, count))))
    clients.sort(key=lambda client: client.index)
    return clients


def abort_all(clients: Sequence[WSClient]) -> None:
    for client in clients:
        if client.transport is not None:
            client.transport.abort()


async def quiesce(probe: ServerProbe, limit: float = 5.0) -> None:
    """Wait until the server has used no CPU for 0.3 s (startup or teardown work finished)."""
    deadline = time.monotonic() + limit
    last = probe.cpu_seconds()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        now_cpu = probe.cpu_seconds()
        if now_cpu != last:
            last = now_cpu
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 0.3:
            return


def _own_cpu() -> float:
    """This process's CPU seconds: shows the load generator is not the bottleneck."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentile(sorted_values: Sequence[int], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] / 1e6


async def probe_protocol(target: Target) -> None:
    """Check one client end to end: ready, echo (welcome systems), one push delivered; with
    permessage-deflate, that all three came compressed."""
    tally = Tally(1)
    clients = await connect_clients(target, 1, 1, tally.on_message)
    client = clients[0]
    try:
        assert client.push_target is not None
        if target.welcome:
            echoed: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            client.on_message = lambda _index, payload: echoed.set_result(payload)
            client.send_text(b"echo probe")
            if await asyncio.wait_for(echoed, 5) != b"echo probe":
                raise ProtocolError("echo returned something else")
            client.on_message = tally.on_message
        pusher = await open_pusher(client.push_target.host, client.push_target.port)
        status = await asyncio.wait_for(
            pusher.send(client.push_target.request(b"0 0 %d" % time.perf_counter_ns())), 5
        )
        pusher.close()
        if status not in OK_STATUSES:
            raise ProtocolError(f"push answered {status}")
        await asyncio.wait_for(tally.done.wait(), 5)
        if isinstance(client, DeflateClient) and client.inflated < 3:
            raise ProtocolError(
                f"permessage-deflate agreed, but only {client.inflated} of the welcome, echo "
                "and push arrived compressed"
            )
    finally:
        abort_all(clients)


OK_STATUSES = frozenset((200, 201, 202, 204))
"""Push answers that mean delivered: 204 (nginxws, websockets peer), 201/202 (nchan)."""


async def handshake_scenario(
    target: Target, probe: ServerProbe, count: int, concurrency: int
) -> dict[str, float]:
    """(a) `count` connect + handshake (+ welcome) + close cycles, `concurrency` at a time."""
    loop = asyncio.get_running_loop()
    await quiesce(probe)
    failures = 0
    next_index = 0
    client_class = client_type(target)

    def ignore(_index: int, _payload: bytes) -> None:
        pass

    async def cycler() -> None:
        nonlocal next_index, failures
        while next_index < count:
            index = next_index
            next_index += 1
            client: WSClient | None = None
            try:
                _transport, client = await loop.create_connection(
                    functools.partial(client_class, index, target, ignore), HOST, target.port
                )
                await client.ready
                client.close()
                await asyncio.wait_for(client.closed, 10)
            except (OSError, ProtocolError, asyncio.TimeoutError):
                failures += 1
                if client is not None and client.transport is not None:
                    client.transport.abort()

    cpu0 = probe.cpu_seconds()
    own0 = _own_cpu()
    t0 = time.perf_counter()
    await asyncio.gather(*(cycler() for _ in range(min(concurrency, count))))
    elapsed = time.perf_counter() - t0
    cpu = probe.cpu_seconds() - cpu0
    own = _own_cpu() - own0
    done = count - failures
    return {
        "handshake_cpu_us": cpu / max(done, 1) * 1e6,
        "handshake_loadgen_us": own / max(done, 1) * 1e6,
        "handshake_rate": done / elapsed,
        "handshake_failures": failures,
    }


async def _push_all(
    pushers_for: dict[tuple[str, int], list[Pusher]],
    work_for: dict[tuple[str, int], deque[bytes]],
) -> int:
    """Drain each endpoint's request queue through its pushers, one request in flight each."""
    errors = 0

    async def pump(pusher: Pusher, work: deque[bytes]) -> None:
        nonlocal errors
        while work:
            status = await pusher.send(work.popleft())
            if status not in OK_STATUSES:
                errors += 1

    await asyncio.gather(
        *(
            pump(pusher, work_for[endpoint])
            for endpoint, pushers in pushers_for.items()
            for pusher in pushers
        )
    )
    return errors


def _endpoints(clients: Sequence[WSClient]) -> list[tuple[str, int]]:
    seen: dict[tuple[str, int], None] = {}
    for client in clients:
        assert client.push_target is not None
        seen.setdefault((client.push_target.host, client.push_target.port), None)
    return list(seen)


async def _open_pushers(
    endpoints: list[tuple[str, int]], count: int
) -> dict[tuple[str, int], list[Pusher]]:
    """`count` pushers spread round-robin over the endpoints, at least one each."""
    pushers: dict[tuple[str, int], list[Pusher]] = {endpoint: [] for endpoint in endpoints}
    for number in range(max(count, len(endpoints))):
        endpoint = endpoints[number % len(endpoints)]
        pushers[endpoint].append(await open_pusher(*endpoint))
    return pushers


async def push_scenario(
    target: Target, probe: ServerProbe, clients_count: int, pushers_count: int, total: int,
    limit: float,
) -> dict[str, float]:
    """(b) `total` pushes over `pushers_count` keep-alive pushers to `clients_count` clients."""
    tally = Tally(total)
    clients = await connect_clients(target, clients_count, 100, tally.on_message)
    try:
        endpoints = _endpoints(clients)
        pushers = await _open_pushers(endpoints, pushers_count)
        work: dict[tuple[str, int], deque[bytes]] = {endpoint: deque() for endpoint in endpoints}
        for seq in range(total):
            push_target = clients[seq % clients_count].push_target
            assert push_target is not None
            work[(push_target.host, push_target.port)].append(
                push_target.request(b"%d %d 0" % (seq, seq % clients_count))
            )
        await quiesce(probe)
        cpu0 = probe.cpu_seconds()
        own0 = _own_cpu()
        t0 = time.perf_counter()
        errors = await asyncio.wait_for(_push_all(pushers, work), limit)
        try:
            await asyncio.wait_for(tally.done.wait(), 5)
        except asyncio.TimeoutError:
            pass
        elapsed = time.perf_counter() - t0
        cpu = probe.cpu_seconds() - cpu0
        own = _own_cpu() - own0
        for endpoint_pushers in pushers.values():
            for pusher in endpoint_pushers:
                pusher.close()
    finally:
        abort_all(clients)
    return {
        "push_cpu_us": cpu / max(tally.delivered, 1) * 1e6,
        "push_loadgen_us": own / max(tally.delivered, 1) * 1e6,
        "push_rate": tally.delivered / elapsed,
        "push_lost": tally.lost,
        "push_misrouted": tally.misrouted + tally.malformed,
        "push_duplicated": tally.duplicated,
        "push_errors": errors,
    }


async def latency_scenario(
    target: Target, probe: ServerProbe, clients_count: int, rate: float, duration: float,
    warmup: int,
) -> dict[str, float]:
    """(c) Open-loop pushes at a fixed `rate` for `duration`; delivery latency percentiles.

    The body carries the send time taken just before the request is written, so the latency
    is push request to message received, both clocks in this process. Pushes go round-robin
    over 4 pipelined keep-alive pushers per endpoint; the first `warmup` are not counted.
    """
    total = warmup + int(rate * duration)
    tally = Tally(total)
    clients = await connect_clients(target, clients_count, 100, tally.on_message)
    loop = asyncio.get_running_loop()
    try:
        endpoints = _endpoints(clients)
        pushers = await _open_pushers(endpoints, 4 * len(endpoints))
        turn = {endpoint: 0 for endpoint in endpoints}
        answers: list[asyncio.Task[int]] = []
        await quiesce(probe)
        cpu0 = probe.cpu_seconds()
        start = loop.time()
        for seq in range(total):
            delay = start + seq / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            client = clients[seq % clients_count]
            push_target = client.push_target
            assert push_target is not None
            endpoint = (push_target.host, push_target.port)
            pool = pushers[endpoint]
            pusher = pool[turn[endpoint] % len(pool)]
            turn[endpoint] += 1
            request = push_target.request(
                b"%d %d %d" % (seq, client.index, time.perf_counter_ns())
            )
            answers.append(asyncio.ensure_future(pusher.send(request)))
        statuses = await asyncio.wait_for(
            asyncio.gather(*answers, return_exceptions=True), 10
        )
        try:
            await asyncio.wait_for(tally.done.wait(), 5)
        except asyncio.TimeoutError:
            pass
        cpu = probe.cpu_seconds() - cpu0
        for endpoint_pushers in pushers.values():
            for pusher in endpoint_pushers:
                pusher.close()
    finally:
        abort_all(clients)
    errors = sum(1 for status in statuses if status not in OK_STATUSES)
    latencies = sorted(tally.latencies_ns[warmup:])
    return {
        "latency_p50_ms": _percentile(latencies, 0.50),
        "latency_p99_ms": _percentile(latencies, 0.99),
        "latency_max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "latency_cpu_us": cpu / max(tally.delivered, 1) * 1e6,
        "latency_lost": tally.lost,
        "latency_misrouted": tally.misrouted + tally.malformed,
        "latency_errors": errors,
    }


async def memory_scenario(
    target: Target, probe: ServerProbe, clients_count: int
) -> dict[str, float]:
    """(d) Server RSS (all its processes) idle with no client, then with `clients_count`."""
    await quiesce(probe)
    rss0 = probe.rss_bytes()
    clients = await connect_clients(target, clients_count, 100, lambda _index, _payload: None)
    try:
        await quiesce(probe)
        rss1 = probe.rss_bytes()
    finally:
        abort_all(clients)
    return {
        "rss_idle_mb": rss0 / 2**20,
        "rss_clients_mb": rss1 / 2**20,
        "rss_per_client_kb": (rss1 - rss0) / clients_count / 1024,
    }
