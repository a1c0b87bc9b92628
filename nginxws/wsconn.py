"""One WebSocket session: handshake hand-off, welcome, echo, pushes, timers.

The rules (what to send when) live in ``session``; this module runs them
with trio.  An idle session is two tasks: trio-websocket's reader, and the
connection's own task, which echoes and keeps the ping/idle timers.  A push
is written by the push listener's task itself (``ClientStream`` never
waits for the client); a flusher task runs only while the client's socket
is full, and a short-lived task per unanswered PING.  When the session
ends it is removed from the registry (a later push to its ID is 404), it
closes, and then its other tasks are cancelled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import h11
import trio
from trio_websocket import ConnectionClosed, wrap_server_stream
from wsproto.frame_protocol import FrameProtocol

from nginxws.conf.model import Location, Server, WebSocket
from nginxws.http import LAZY_DELAY, server_header
from nginxws.netio import SocketStream
from nginxws.registry import Entry
from nginxws.session import (
    IDLE_CLOSE_CODE,
    IDLE_CLOSE_REASON,
    Action,
    Timers,
    new_id,
    welcome_message,
)

# How long a closing handshake may take before the TCP connection is cut
# (nginx's lingering_timeout).
CLOSE_TIMEOUT = 5.0
# trio-websocket's read size; 4 KiB keeps an idle connection small while a
# busy one still reads a typical message in one call.
RECEIVE_BUFFER = 4 * 1024
# Messages received but not yet echoed: one is enough, since the echo loop
# reads the next only after it has sent the last (back-pressure to a client
# that does not read its echoes).
MESSAGE_QUEUE = 1
# nginx's status for a client that went away before the answer was complete.
CLIENT_CLOSED_REQUEST = 499


CLOSE_FRAME_START = b"\x88"
PROTOCOL_ERRORS = frozenset({1002, 1007})
_SERVER_FRAMES = FrameProtocol(client=False, extensions=[])


class ClientStream(trio.abc.Stream):
    """The client's TCP stream as trio-websocket sees it.

    It first replays the handshake bytes the front door already read with
    h11 (so nothing is lost), then reports every received chunk to the
    session's timers and counts the bytes sent, for the access log.

    Once the session runs (``start_buffering``), a send never waits for the
    client, as nginx's own writes do: what the kernel does not take at once
    is kept, in order, in a backlog that a flusher task writes as the client
    reads, under the worker's send watch (``send_timeout`` between two
    successive writes).  A push is therefore written by the push listener's
    own task, and a slow client holds up no one: the push listener answers
    503 while ``full``, and a client that lets more than ``limit`` +
    ``SLACK`` frames pile up (pongs to a ping flood it does not read) is
    dropped.
    """

    __slots__ = (
        "_stream", "_prefix", "_timers", "bytes_sent", "close_sent", "ws",
        "_backlog", "_flushed", "_nursery", "_session", "_send_timeout", "_watch", "limit",
    )

    def __init__(self, stream: SocketStream, prefix: bytes, timers: Timers) -> None:
        self._stream = stream
        self._prefix = prefix
        self._timers = timers
        self.bytes_sent = 0
        self.close_sent = False
        self.ws = None  # the WebSocketConnection, once the handshake is done
        self._backlog: deque[memoryview] | None = None  # not None while the flusher runs
        self._flushed: trio.Event | None = None  # set when the flusher ends
        self._nursery: trio.Nursery | None = None  # where the flusher runs, once buffering
        self._session: Session | None = None
        self._send_timeout = 0.0
        self._watch: SendWatch | None = None
        self.limit = 0

    def start_buffering(
        self, nursery: trio.Nursery, session: Session, send_timeout: float, watch: SendWatch, limit: int
    ) -> None:
        """From now on sends do not wait; a flusher runs in ``nursery`` when needed."""
        self._nursery, self._session, self._send_timeout, self._watch = nursery, session, send_timeout, watch
        self.limit = limit

    def full(self) -> bool:
        """Whether ``limit`` frames already wait for the client."""
        return self._backlog is not None and len(self._backlog) >= self.limit

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        data = await self._stream.receive_some(max_bytes)
        if data:
            self._timers.received(trio.current_time())
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # trio-websocket writes each frame with one send_all: a close frame
        # starts with FIN + opcode 8.
        if data[:1] == CLOSE_FRAME_START:
            self.close_sent = True
        if self._nursery is None:
            await self._stream.send_all(data)
            self.bytes_sent += len(data)
            return
        if self._backlog is not None:
            if len(self._backlog) >= self.limit + SLACK:
                raise trio.BrokenResourceError("the client is not reading")
            self._backlog.append(memoryview(bytes(data)))
            return
        sent = self._stream.send_nowait(data)
        self.bytes_sent += sent
        if sent < len(data):
            self._backlog = deque((memoryview(bytes(data))[sent:],))
            self._flushed = trio.Event()
            self._nursery.start_soon(self.flush)

    async def push(self, message: str | bytes) -> bool:
        """Hand a push to the connection (it never waits for the client);
        False if the client has gone."""
        try:
            await self.ws.send_message(message)
        except ConnectionClosed:
            return False
        return True

    async def flush(self) -> None:
        """Write the backlog as the client takes it, then end."""
        backlog, session, watch, send_timeout = self._backlog, self._session, self._watch, self._send_timeout
        try:
            while backlog:
                sent = self._stream.send_nowait(backlog[0])
                if sent:
                    self.bytes_sent += sent
                    watch.start(session, trio.current_time() + send_timeout)
                    if sent == len(backlog[0]):
                        backlog.popleft()
                        continue
                    backlog[0] = backlog[0][sent:]
                elif not watch.watching():
                    watch.start(session, trio.current_time() + send_timeout)
                await self._stream.wait_send_all_might_not_block()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if session.cancel_scope is not None:
                session.cancel_scope.cancel()
        finally:
            watch.done()
            self._backlog = None
            self._flushed.set()

    async def drained(self) -> None:
        """Wait until everything sent so far has reached the kernel."""
        if self._backlog is not None:
            await self._flushed.wait()

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        # When wsproto finds a protocol error in the client's frames (1002,
        # 1007) trio-websocket drops the TCP connection without the close
        # frame RFC 6455 section 7.1.7 asks for; send it.  What is still in
        # the backlog (a close reply, most likely) goes out first.
        reason = self.ws.closed if self.ws is not None else None
        protocol_error = reason is not None and reason.code in PROTOCOL_ERRORS and not self.close_sent
        try:
            if protocol_error or self._backlog is not None:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    if protocol_error:
                        try:
                            await self.send_all(_SERVER_FRAMES.close(reason.code, reason.reason))
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                    await self.drained()
        finally:
            await self._stream.aclose()


def replay_request(request: h11.Request, trailing: bytes) -> bytes:
    """The handshake request as bytes again, followed by what came after it."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method, request.target)]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw_items())
    lines.append(b"\r\n")
    lines.append(trailing)
    return b"".join(lines)


@dataclass(eq=False, slots=True)
class Session:
    """A live session as the worker tracks it: how to end it, and why it ended."""

    cancel_scope: trio.CancelScope | None = None  # the session's own work (welcome, echo, timers), once it runs
    close_code: int | None = None
    close_reason: str | None = None
    timed_out: bool = False  # a send took over send_timeout: drop, no close handshake

    def close(self, code: int, reason: str) -> None:
        """Ask the session to close with ``code`` (from any task)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()


class SendWatch:
    """The worker's ``send_timeout``: which flushers (``ClientStream.flush``)
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
                if session.cancel_scope is not None:
                    session.cancel_scope.cancel()


NOTHING = object()
# Frames beyond ``push_queue`` a client may have waiting (pongs, an echo, the
# close reply, pushes that passed the check together) before it is dropped.
SLACK = 64


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid handshake the front door hands over: all a session needs of HTTP."""

    handshake: bytes  # the request as bytes again (``replay_request``), for trio-websocket
    server: Server
    location: Location
    path: str


async def run_session(worker, stream: trio.abc.Stream, upgrade: Upgrade, conn: int) -> tuple[int, int]:
    """Hand the connection to trio-websocket and run the session to its end.

    Returns (status, bytes sent) for the access log: 101 once the handshake
    succeeded.
    """
    location, server, path = upgrade.location, upgrade.server, upgrade.path
    settings: WebSocket = location.websocket
    send_timeout = location.settings.send_timeout
    timers = Timers(settings.pingintvl, settings.idleintvl, trio.current_time())
    client = ClientStream(stream, upgrade.handshake, timers)
    del upgrade  # its handshake bytes go once trio-websocket has read them
    push_id = new_id()
    session = Session()

    async with trio.open_nursery() as nursery:
        try:
            ws_request = await wrap_server_stream(
                nursery,
                client,
                message_queue_size=MESSAGE_QUEUE,
                max_message_size=settings.max_message_size,
                receive_buffer_size=RECEIVE_BUFFER,
            )
            ws = await ws_request.accept(
                extra_headers=[(b"Server", server_header(location.settings.server_tokens))]
            )
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()
            return CLIENT_CLOSED_REQUEST, client.bytes_sent
        client.ws = ws
        # The flusher lives beside trio-websocket's reader, so that what is
        # left to write (a close reply) still goes out while the session ends.
        client.start_buffering(nursery, session, send_timeout, worker.send_watch, settings.push_queue)
        worker.add_session(session)
        try:
            # The session's own work is this task's; its scope is what ending
            # the session cancels.  Ping tasks run beside the reader.
            with trio.CancelScope() as session.cancel_scope:
                worker.registry.add(push_id, Entry(location, client))
                if settings.welcome:
                    welcome = welcome_message(push_id, worker.push_addresses(server), path)
                    await _send(ws, session, welcome)
                await _echo_and_timers(ws, client, session, timers, nursery)
        finally:
            worker.registry.remove(push_id)
            with trio.CancelScope(shield=True):
                if session.timed_out:
                    worker.error_log.info("client timed out while sending to client", conn=conn)
                    await trio.aclose_forcefully(client)
                else:
                    await _close(ws, session, client)
            worker.remove_session(session)
            nursery.cancel_scope.cancel()
    return 101, client.bytes_sent


async def _send(ws, session: Session, message: str | bytes) -> None:
    """Send one message (it never waits for the client: ``ClientStream``);
    a client already gone (it closed, or half-closed right after its
    handshake) ends the session quietly."""
    try:
        await ws.send_message(message)
    except ConnectionClosed:
        session.cancel_scope.cancel()


async def _echo_and_timers(ws, client: ClientStream, session: Session, timers: Timers, pings: trio.Nursery) -> None:
    """Echo every client message back with its type; while waiting for one,
    keep the ping and idle timers.  Returns when the session should end.

    An echo waits until what was sent before it has reached the kernel, so
    a client that sends without reading is read no further (and dropped
    after ``send_timeout``).  Only the wait for a message is bounded by the
    timers.
    """
    while True:
        message = NOTHING
        with trio.move_on_at(timers.deadline):
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
        if message is not NOTHING:
            await client.drained()
            await _send(ws, session, message)
            continue
        action = timers.due(trio.current_time())
        if action is Action.PING:
            # trio-websocket's ping() returns only when the pong arrives, and
            # the idle timer must keep running meanwhile.
            pings.start_soon(_ping, ws)
        elif action is Action.CLOSE:
            session.close(IDLE_CLOSE_CODE, IDLE_CLOSE_REASON)
            return


async def _ping(ws) -> None:
    try:
        await ws.ping()
    except ConnectionClosed:
        return


async def _close(ws, session: Session, client: ClientStream) -> None:
    """Close the WebSocket with the session's close code, bounded in time."""
    with trio.move_on_after(CLOSE_TIMEOUT) as scope:
        if session.close_code is not None:
            code, reason = session.close_code, session.close_reason
        else:
            code, reason = 1000, None
        if ws.closed is None:
            try:
                await ws.aclose(code, reason)
            except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
    if scope.cancelled_caught:
        await trio.aclose_forcefully(client)
    else:
        # When the client closed first or broke the protocol, closing the
        # stream is left to trio-websocket's reader, which the end of the
        # session may cancel before it gets there; close it here (after the
        # close frame a protocol error owes and what is left to write).
        await client.aclose()
