"""One WebSocket session on trio: the 101, then welcome, echo, pushes, timers.

The rules (what to send when) are ``session.SessionProtocol``'s, over
wsproto; this module moves its bytes.  The front door has already parsed
and checked the handshake with h11, so the session negotiates extensions,
writes the 101 itself and keeps nothing of the handshake.

An idle session is one task, the connection's own: it reads, feeds the
protocol object and writes what it returns, and sleeps on one cancel scope
whose deadline is the protocol's next timer.  A push is written by the push
listener's task itself, in one synchronous step (frame, then non-blocking
write), so pushes need no lock.  Nothing here waits for the client: what
the kernel does not take at once goes into a backlog that a flusher task
writes as the client reads, under the worker's send watch (``send_timeout``
between two successive writes).  While a backlog waits, the session reads
no further (a client that sends without reading gets no more echoes), and
the push listener answers 503 once ``push_queue`` frames wait.

With ``websocket_message_request``, a client's message goes upstream
instead (``backend.SessionLink.message``), from the session's own task,
outside its timer scope: the session reads nothing more from the client
until the answer is written, and a failed request closes it with 1011.
Pushes and channel messages go on reaching the client meanwhile.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token

from nginxws.backend import SessionLink, UpstreamFailed
from nginxws.conf.model import Location, Server, WebSocket
from nginxws.conf.variables import RequestVars
from nginxws.context import WorkerContext
from nginxws.http import LAZY_DELAY, http_date, server_header
from nginxws.log import Exchange
from nginxws.streams import SocketStream
from nginxws.registry import Entry
from nginxws.stats import (
    BACKLOG_DROPPED,
    CLIENTS,
    CLOSED,
    HANDSHAKES,
    RECEIVED_BYTES,
    SENT_BYTES,
    STATUS_INDEX,
    UPSTREAM_CLOSE_CODE,  # RFC 6455's 1011, "internal error": the backend failed a message
    close_reason,
)
from nginxws.session import (
    CLOSE_TIMEOUT,
    SessionProtocol,
    Timers,
    new_id,
    welcome_message,
)
from nginxws.upstream import Origin

# One read.  An idle connection holds no read buffer (a read returns a
# bytes object of what arrived), so a large one costs nothing while idle
# and lets a large message arrive in few reads.
RECEIVE_BYTES = 64 * 1024
# nginx's status for a client that went away before the answer was complete.
CLIENT_CLOSED_REQUEST = 499
HANDSHAKE_101 = HANDSHAKES + STATUS_INDEX[101]
UPSTREAM_CLOSE_REASON = "upstream failed"


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid handshake the front door hands over: all a session needs of HTTP."""

    key: bytes  # Sec-WebSocket-Key
    offers: tuple[str, ...]  # the Sec-WebSocket-Extensions offers, in order
    trailing: bytes  # what the client sent after its request (its first frames)
    server: Server
    location: Location
    path: str
    channels: tuple[str, ...] = ()  # ``websocket_channels``, expanded and checked
    # With ``websocket_*_request``: the handshake's variables (its headers go
    # with every request to the backend) and how the error lines name it.
    request: RequestVars | None = None
    origin: Origin | None = None


def negotiate(offers: tuple[str, ...], settings: WebSocket) -> tuple[list[Extension], bytes | None]:
    """The extensions to run and the ``Sec-WebSocket-Extensions`` answer.

    permessage-deflate only where the location turns it on.  A client may
    ask for a server window smaller than ``deflate_window_bits`` (wsproto
    then uses the client's); a larger one is capped at ours, which RFC 7692
    allows since the client's inflater can read any smaller window.
    """
    if not settings.deflate or not offers:
        return [], None
    deflate = PerMessageDeflate(
        client_no_context_takeover=settings.deflate_no_context_takeover,
        server_no_context_takeover=settings.deflate_no_context_takeover,
        server_max_window_bits=settings.deflate_window_bits,
    )
    answer = server_extensions_handshake(offers, [deflate])
    if answer is None:
        return [], None
    deflate.server_max_window_bits = min(deflate.server_max_window_bits, settings.deflate_window_bits)
    return [deflate], answer


def accept_response(key: bytes, extensions: bytes | None, tokens: bool) -> bytes:
    """The 101 that completes the handshake (RFC 6455 section 4.2.2)."""
    lines = [
        b"HTTP/1.1 101 Switching Protocols\r\nServer: %s\r\nDate: %s\r\n"
        b"Connection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: %s\r\n"
        % (server_header(tokens), http_date(), generate_accept_token(key))
    ]
    if extensions is not None:
        lines.append(b"Sec-WebSocket-Extensions: %s\r\n" % extensions)
    lines.append(b"\r\n")
    return b"".join(lines)


class Session:
    """A live session: its protocol, its client's stream, and how it ends.

    It is also what a push reaches (``registry.PushTarget``): ``push``
    frames the message and writes it at once, ``full`` says ``push_queue``
    frames already wait for the client.
    """

    __slots__ = (
        "proto", "stream", "bytes_sent", "bytes_received", "limit", "timed_out", "channels", "link",
        "_backlog", "_flushed", "_scope", "_nursery", "_watch", "_send_timeout", "_counters",
    )

    def __init__(self, proto: SessionProtocol, stream: SocketStream, *, limit: int, nursery: trio.Nursery,
                 watch: SendWatch, send_timeout: float, counters: memoryview) -> None:
        self.proto = proto
        self.stream = stream
        self.bytes_sent = 0
        self.bytes_received = 0
        self.limit = limit
        self.timed_out = False  # a write took over send_timeout: drop, no close handshake
        self.channels: set[str] | None = None  # the channels it joined (``channels.Channels``)
        self.link: SessionLink | None = None  # its backend, with ``websocket_*_request``
        self._backlog: deque[memoryview] | None = None  # not None while the flusher runs
        self._flushed: trio.Event | None = None  # set when the flusher ends
        self._scope: trio.CancelScope | None = None  # the session task's current wait
        self._nursery = nursery  # where a flusher runs
        self._watch = watch
        self._send_timeout = send_timeout
        self._counters = counters  # the worker's statistics (frames a backlog dropped)

    # -- what other tasks call ---------------------------------------------

    def full(self) -> bool:
        """Whether ``limit`` frames already wait for the client."""
        return self._backlog is not None and len(self._backlog) >= self.limit

    def push(self, message: str | bytes) -> bool:
        """Frame ``message`` and hand it to the connection without waiting
        for the client; False if the client has gone or the session is closing."""
        frame = self.proto.message(message)
        if frame is None:
            return False
        return self._hand_over(frame)

    def _hand_over(self, frame: bytes | bytearray) -> bool:
        """``write`` a frame; a broken connection ends the session (False)."""
        try:
            self.write(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.abort()
            return False
        return True

    def deliver(self, frame: bytes, message: str | bytes) -> bool | None:
        """Write a channel message without waiting for the client: ``frame``
        (built once for every subscriber) unless this session frames
        ``message`` itself (permessage-deflate).  True if written or queued,
        False if the session is closing or gone, None if ``limit`` frames
        already wait (the subscriber is too slow: the caller closes it).

        This runs once per subscriber per publish: the common case (nothing
        waits, the kernel takes the frame) is one send, inlined."""
        proto = self.proto
        if proto.closing or proto.done:
            return False
        if not proto.plain:
            frame = proto.message(message)
            if frame is None:
                return False
        backlog = self._backlog
        if backlog is None:
            try:
                sent = self.stream.socket.send(frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.abort()
                return False
            self.bytes_sent += sent
            if sent < len(frame):
                self._start_backlog(memoryview(frame)[sent:])
            return True
        if len(backlog) >= self.limit:
            return None
        backlog.append(memoryview(frame))
        return True

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code`` (from any task); the
        session ends when the client answers or ``CLOSE_TIMEOUT`` passes."""
        frame = self.proto.close(code, reason, trio.current_time())
        if frame:
            try:
                self.write(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.abort()
                return
        if self._scope is not None:
            self._scope.deadline = self.proto.deadline

    def abort(self) -> None:
        """End the session now, without a closing handshake."""
        self.proto.done = True
        if self._scope is not None:
            self._scope.cancel()

    # -- writing -------------------------------------------------------------

    def write(self, data: bytes | bytearray) -> None:
        """Write ``data`` without waiting: what the kernel does not take now
        is kept, in order, and written by a flusher as the client reads."""
        if self._backlog is not None:
            self._backlog.append(memoryview(data))
            return
        sent = self.stream.send_nowait(data)
        self.bytes_sent += sent
        if sent < len(data):
            self._start_backlog(memoryview(data)[sent:])

    def _start_backlog(self, rest: memoryview) -> None:
        """Keep ``rest`` and start the flusher that writes it as the client reads."""
        self._backlog = deque((rest,))
        self._flushed = trio.Event()
        self._nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        """Write the backlog as the client takes it, then end."""
        backlog, stream, watch, send_timeout = self._backlog, self.stream, self._watch, self._send_timeout
        try:
            while backlog:
                sent = stream.send_nowait(backlog[0])
                if sent:
                    self.bytes_sent += sent
                    watch.start(self, trio.current_time() + send_timeout)
                    if sent == len(backlog[0]):
                        backlog.popleft()
                        continue
                    backlog[0] = backlog[0][sent:]
                elif not watch.watching():
                    watch.start(self, trio.current_time() + send_timeout)
                await stream.wait_send_all_might_not_block()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.abort()
        finally:
            if backlog:
                self._counters[BACKLOG_DROPPED] += len(backlog)
            watch.done()
            self._backlog = None
            self._flushed.set()

    async def drained(self) -> None:
        """Wait until everything written so far has reached the kernel."""
        if self._backlog is not None:
            await self._flushed.wait()

    # -- the session's own task ----------------------------------------------

    async def serve(self) -> None:
        """Read, answer and keep the timers until the session is done."""
        proto, stream = self.proto, self.stream
        while not proto.done:
            if proto.pending is not None:
                await self._upstream()
                continue
            with trio.CancelScope(deadline=proto.deadline) as self._scope:
                while not proto.done:
                    if self._backlog is not None:
                        await self._flushed.wait()
                    try:
                        data = await stream.receive_some(RECEIVE_BYTES)
                    except trio.BrokenResourceError:
                        data = b""
                    self.bytes_received += len(data)
                    out = proto.receive(data or None, trio.current_time())
                    if out:
                        self.write(out)
                    if proto.pending is not None:
                        break
            self._scope = None
            if proto.pending is None and not proto.done:
                # The deadline passed (timers are checked lazily: a busy
                # client moves them without touching the scope).
                out = proto.tick(trio.current_time())
                if out:
                    self.write(out)

    async def _upstream(self) -> None:
        """Send the pending message upstream and write the answer; then read on
        (``resume``).  ``close`` and ``abort`` reach this wait as the read's."""
        proto, link = self.proto, self.link
        assert link is not None
        with trio.CancelScope(deadline=proto.deadline if proto.closing else float("inf")) as self._scope:
            try:
                answer = await link.message(proto.pending)
            except UpstreamFailed:
                proto.pending = None
                self._scope = None
                self.close(UPSTREAM_CLOSE_CODE, UPSTREAM_CLOSE_REASON)
                return
        cancelled = self._scope.cancelled_caught
        self._scope = None
        if cancelled:  # the session ended (or its close timed out) meanwhile
            proto.pending = None
            return
        if answer is not None:
            frame = proto.message(answer)
            if frame is None:
                link.answer_lost()
            else:
                self.write(frame)
        out = proto.resume(trio.current_time())
        if out:
            self.write(out)

    async def finish(self) -> None:
        """Let what is left to write (a close frame) out, bounded; the
        connection's owner (the front door) closes it then, once it has
        counted the connection out (``nginxws.stats``).  Only a session with
        a backlog waits (shielded: it runs while the session is being
        cancelled too)."""
        if not self.timed_out and self._backlog is not None:
            sent = self.bytes_sent
            with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_TIMEOUT):
                await self._flushed.wait()
            self._counters[SENT_BYTES] += self.bytes_sent - sent  # the rest was counted at the session's end


class TlsSession(Session):
    """A session over TLS (``tls.TlsStream``): a channel delivery goes through
    the stream, which encrypts, instead of straight to the socket."""

    __slots__ = ()

    def deliver(self, frame: bytes, message: str | bytes) -> bool | None:
        proto = self.proto
        if proto.closing or proto.done:
            return False
        backlog = self._backlog
        if backlog is not None and len(backlog) >= self.limit:
            return None
        if not proto.plain:
            frame = proto.message(message)
            if frame is None:
                return False
        return self._hand_over(frame)


class SendWatch:
    """The worker's ``send_timeout``: which flushers (``Session._flush``)
    wait for a client that does not read, and until when they may.

    One task (``run``) looks every ``LAZY_DELAY`` seconds and drops each
    client whose deadline has passed; a drop may come up to ``LAZY_DELAY``
    late, as with nginx's lazy timers.  Entries are per task.
    """

    __slots__ = ("_sending",)

    def __init__(self) -> None:
        self._sending: dict[trio.lowlevel.Task, tuple[Session, float]] = {}

    def start(self, session: Session, deadline: float) -> None:
        """The calling task starts a send for ``session`` due by ``deadline``."""
        self._sending[trio.lowlevel.current_task()] = (session, deadline)

    def done(self) -> None:
        """The calling task's send is over."""
        self._sending.pop(trio.lowlevel.current_task(), None)

    def watching(self) -> bool:
        """Whether the calling task has a send under watch."""
        return trio.lowlevel.current_task() in self._sending

    def expired(self, now: float) -> list[Session]:
        """The sessions with a send past its deadline; those sends leave the watch."""
        late = [task for task, (_, deadline) in self._sending.items() if deadline <= now]
        return list(dict.fromkeys(self._sending.pop(task)[0] for task in late))

    async def run(self) -> None:
        while True:
            await trio.sleep(LAZY_DELAY)
            for session in self.expired(trio.current_time()):
                session.timed_out = True
                session.abort()


async def run_session(worker: WorkerContext, stream: SocketStream, upgrade: Upgrade, conn: int,
                      exchange: Exchange) -> None:
    """Complete the handshake and run the session to its end.

    Keeps the access log's facts on ``exchange`` however the session ends
    (cancelled by a stop too): status 101 once the 101 was written, 499 when
    the client was gone before that, and the bytes sent.
    """
    location, server = upgrade.location, upgrade.server
    settings: WebSocket = location.websocket
    extensions, accepted = negotiate(upgrade.offers, settings)
    first = accept_response(upgrade.key, accepted, location.settings.server_tokens)
    now = trio.current_time()
    proto = SessionProtocol(
        Connection(ConnectionType.SERVER, extensions),
        Timers(settings.pingintvl, settings.idleintvl, now),
        settings.max_message_size,
        extensions=bool(extensions),
    )
    if not location.settings.tcp_nodelay:
        stream.nagle()
    kind = TlsSession if stream.tls else Session  # one attribute test: TLS sessions send through the stream
    counters = worker.counters
    session = kind(proto, stream, limit=settings.push_queue, nursery=worker.nursery,
                   watch=worker.send_watch, send_timeout=location.settings.send_timeout, counters=counters)
    push_id = new_id()
    channels = upgrade.channels
    if location.backend is not None:
        session.link = SessionLink(
            worker.backend, server, location.backend, upgrade.request, upgrade.origin, conn, push_id,
            welcome_message(push_id, worker.push_addresses(server), upgrade.path), channels,
            settings.max_message_size,
        )
        proto.upstream = location.backend.message is not None
    if settings.welcome:
        first += proto.message(welcome_message(push_id, worker.push_addresses(server), upgrade.path))
    if upgrade.trailing:
        session.bytes_received = len(upgrade.trailing)
        first += proto.receive(upgrade.trailing, now)
    del upgrade  # nothing of the handshake outlives the 101
    clients = CLIENTS + worker.location_ids[id(location)]
    worker.registry.add(push_id, Entry(location, session))
    for name in channels:
        worker.channels.join(session, name)
    worker.add_session(session)
    # Counted before the 101 leaves (a client that has it sees it counted);
    # one gone before it could be written counts as a 101 closed by the client.
    counters[HANDSHAKE_101] += 1
    counters[clients] += 1
    exchange.status = 101
    try:
        session.write(first)
        del first  # the 101 and the welcome are not kept while the session lasts
        if session.link is not None:
            session.link.connected()
        await session.serve()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        if session.bytes_sent == 0:
            exchange.status = CLIENT_CLOSED_REQUEST
    finally:
        worker.registry.remove(push_id)
        if session.channels:
            worker.channels.leave_all(session)
        worker.remove_session(session)
        counters[clients] -= 1
        counters[CLOSED + close_reason(proto.how_ended, proto.close_code, session.timed_out)] += 1
        counters[RECEIVED_BYTES] += session.bytes_received
        counters[SENT_BYTES] += session.bytes_sent
        if session.link is not None:
            session.link.disconnected(proto.close_code)
        if worker.log_info:
            if session.timed_out:
                worker.error_log.info("client timed out while sending to client", conn=conn)
            else:
                ending = proto.ending()
                if ending is not None:
                    worker.error_log.info(ending, conn=conn)
        await session.finish()
        exchange.sent = session.bytes_sent
