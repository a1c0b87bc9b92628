"""One WebSocket session: handshake hand-off, welcome, echo, pushes, timers.

The rules (what to send when) live in ``session``; this module runs them
with trio.  An idle session is two tasks: trio-websocket's reader, and the
connection's own task, which echoes and keeps the ping/idle timers.  A
sender task runs only while pushes wait, and a short-lived task per
unanswered PING.  When any of them ends the connection, the session's tasks
are cancelled and it is removed from the registry, so a later push to its
ID is 404.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import h11
import trio
from trio_websocket import ConnectionClosed, wrap_server_stream
from wsproto.frame_protocol import FrameProtocol

from nginxws.conf.model import Location, Server, WebSocket
from nginxws.http import LAZY_DELAY, server_header
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
    """

    __slots__ = ("_stream", "_prefix", "_timers", "bytes_sent", "close_sent", "ws")

    def __init__(self, stream: trio.abc.Stream, prefix: bytes, timers: Timers) -> None:
        self._stream = stream
        self._prefix = prefix
        self._timers = timers
        self.bytes_sent = 0
        self.close_sent = False
        self.ws = None  # the WebSocketConnection, once the handshake is done

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
        await self._stream.send_all(data)
        self.bytes_sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        # When wsproto finds a protocol error in the client's frames (1002,
        # 1007) trio-websocket drops the TCP connection without the close
        # frame RFC 6455 section 7.1.7 asks for; send it, bounded in time.
        reason = self.ws.closed if self.ws is not None else None
        if reason is not None and reason.code in PROTOCOL_ERRORS and not self.close_sent:
            self.close_sent = True
            with trio.move_on_after(CLOSE_TIMEOUT):
                try:
                    await self._stream.send_all(_SERVER_FRAMES.close(reason.code, reason.reason))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
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

    cancel_scope: trio.CancelScope | None = None  # the session's tasks, once they run
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
    """The worker's ``send_timeout``: which sessions are sending (the welcome,
    a push, an echo), and until when they may.

    One task (``run``) looks every ``LAZY_DELAY`` seconds and drops each
    client whose send has passed its deadline.  A cancel scope per send
    would cost every push about 10 µs; this costs a dict entry, and a drop
    may come up to ``LAZY_DELAY`` late.
    """

    __slots__ = ("_sending",)

    def __init__(self) -> None:
        # Per sending task: a session's echo and its push sender may both be
        # sending (one waits for trio-websocket's lock), and each is watched.
        self._sending: dict[trio.lowlevel.Task, tuple[Session, float]] = {}

    def start(self, session: Session, deadline: float) -> None:
        """The calling task starts a send for ``session`` due by ``deadline``."""
        self._sending[trio.lowlevel.current_task()] = (session, deadline)

    def done(self) -> None:
        """The calling task's send is over."""
        self._sending.pop(trio.lowlevel.current_task(), None)

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


class Outbox:
    """A session's pushed messages waiting to be sent, at most ``limit``.

    ``offer`` never blocks (the registry answers 503 when it refuses).  A
    sender task runs only while messages wait: the first offer to an empty
    outbox starts one (``start(outbox)``), and it ends when ``take`` finds
    the queue empty.  Most connections are idle most of the time, and a
    waiting task per connection would cost each of them about 2 KB.
    """

    __slots__ = ("limit", "closed", "_queue", "_start")

    def __init__(self, limit: int, start: Callable[[Outbox], object]) -> None:
        self.limit = limit
        self.closed = False
        self._queue: deque[str | bytes] | None = None  # not None while a sender runs
        self._start = start

    def offer(self, message: str | bytes) -> bool:
        if self.closed:
            return False
        if self._queue is None:
            self._queue = deque((message,))
            self._start(self)
            return True
        if len(self._queue) >= self.limit:
            return False
        self._queue.append(message)
        return True

    def take(self) -> str | bytes | object:
        """The next message for the sender, or ``DONE``: the sender ends."""
        if not self._queue:
            self._queue = None
            return DONE
        return self._queue.popleft()


DONE = object()
NOTHING = object()


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
    location = upgrade.location
    settings: WebSocket = location.websocket
    send_timeout = location.settings.send_timeout
    timers = Timers(settings.pingintvl, settings.idleintvl, trio.current_time())
    client = ClientStream(stream, upgrade.handshake, timers)
    push_id = new_id()
    session = Session()
    outbox = None

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
        worker.add_session(session)
        try:
            async with trio.open_nursery() as tasks:
                session.cancel_scope = tasks.cancel_scope
                watch = worker.send_watch
                outbox = Outbox(settings.push_queue, partial(tasks.start_soon, _send_pushes, ws, session, send_timeout, watch))
                worker.registry.add(push_id, Entry(location, outbox.offer))
                if settings.welcome:
                    welcome = welcome_message(push_id, worker.push_addresses(upgrade.server), upgrade.path)
                    await _send(ws, session, welcome, send_timeout, watch)
                await _echo_and_timers(ws, session, timers, send_timeout, watch, tasks)
                tasks.cancel_scope.cancel()
        finally:
            worker.registry.remove(push_id)
            if outbox is not None:
                outbox.closed = True
            with trio.CancelScope(shield=True):
                if session.timed_out:
                    worker.error_log.info("client timed out while sending to client", conn=conn)
                    await trio.aclose_forcefully(client)
                else:
                    await _close(ws, session, client)
            worker.remove_session(session)
            nursery.cancel_scope.cancel()
    return 101, client.bytes_sent


async def _send(ws, session: Session, message: str | bytes, timeout: float, watch: SendWatch) -> None:
    """Send one message under ``watch``.  A client that takes over
    ``send_timeout`` is dropped; one already gone (it closed, or half-closed
    right after its handshake) ends the session quietly."""
    watch.start(session, trio.current_time() + timeout)
    try:
        await ws.send_message(message)
    except ConnectionClosed:
        session.cancel_scope.cancel()
    finally:
        watch.done()


async def _echo_and_timers(
    ws, session: Session, timers: Timers, send_timeout: float, watch: SendWatch, tasks: trio.Nursery
) -> None:
    """Echo every client message back with its type; while waiting for one,
    keep the ping and idle timers.  Returns when the session should end.

    Only the wait is bounded by the timers: an echo is never cut by one,
    only by ``send_timeout`` (the watch).
    """
    while True:
        message = NOTHING
        with trio.move_on_at(timers.deadline):
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return
        if message is not NOTHING:
            await _send(ws, session, message, send_timeout, watch)
            continue
        action = timers.due(trio.current_time())
        if action is Action.PING:
            # trio-websocket's ping() returns only when the pong arrives, and
            # the idle timer must keep running meanwhile.
            tasks.start_soon(_ping, ws)
        elif action is Action.CLOSE:
            session.close(IDLE_CLOSE_CODE, IDLE_CLOSE_REASON)
            return


async def _send_pushes(ws, session: Session, send_timeout: float, watch: SendWatch, outbox: Outbox) -> None:
    """The outbox's sender: send until the outbox is empty."""
    while (message := outbox.take()) is not DONE:
        await _send(ws, session, message, send_timeout, watch)


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
