"""Per-connection rules: the WebSocket session, its ping/idle timers, the welcome.

``SessionProtocol`` is one session as a sans-I/O object over wsproto: bytes
from the client and clock ticks go in, bytes to write come out, and two
flags say when the session closes.  The trio driver (``wsconn``) only
moves those bytes; nothing here touches a socket or a clock.

Theory of operation
-------------------
Timers measure silence *from the client*.  Any bytes received from it (a
data frame, a ping or a pong) reset both timers; what the server itself
sends never does, so a dead client that pushes keep flowing to is still
closed.  After ``pingintvl`` of silence the server sends a PING, and again
every ``pingintvl`` while the silence lasts; after ``idleintvl`` of silence
it sends a close frame (1001, "idle timeout").  A live client answers each
PING with a PONG, which resets the timers, so it is never idle.

The original module reset its timers on receive only as well, but sent a
single PING per silence; repeating it lets a client whose first PONG was
lost still prove it is alive.

Everything here is pure: time comes in as a number, decisions come out as
values, so the rules are tested with a fake clock.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from wsproto import ConnectionState
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.frame_protocol import FrameProtocol

IDLE_CLOSE_CODE = 1001
IDLE_CLOSE_REASON = "idle timeout"
SHUTDOWN_CLOSE_CODE = 1001
SHUTDOWN_CLOSE_REASON = "server shutting down"
TOO_BIG_CLOSE_CODE = 1009
TOO_BIG_CLOSE_REASON = "message too big"
# Frames of a session without extensions carry no state between messages (a
# server does not mask), so one framer serves them all; it skips the event
# object and dispatch of ``Connection.send`` on every push.
_PLAIN_FRAMES = FrameProtocol(client=False, extensions=[])
# How long a closing handshake may take once the server has sent its close
# frame, before the TCP connection is cut (nginx's lingering_timeout).
CLOSE_TIMEOUT = 5.0
ID_BYTES = 18  # 144 random bits, 24 URL-safe characters


def new_id() -> str:
    """A fresh push ID: unguessable, URL-safe, never reused in practice.

    The original used the socket's fd, so a late push could reach a newcomer
    holding the same fd.  144 random bits make a collision as likely as
    guessing a key.
    """
    return secrets.token_urlsafe(ID_BYTES)


class Ending(enum.Enum):
    """How a session ended, as the error log says it at ``info``.

    nginx logs a client's leaving at ``info``, not its arrival ("client
    closed connection", "client prematurely closed connection", "client
    timed out"); these are its words, with the WebSocket close code.  A
    session the server closes on its own account (a stop, a slow
    subscriber) has no ending here: those are logged where they are decided.
    """

    CLIENT_CLOSED = "client closed connection with {code}"
    PREMATURE = "client prematurely closed connection"
    IDLE = "client timed out, closed with {code}"
    INVALID = "client sent invalid frame: {reason}, closed with {code}"
    TOO_BIG = "client sent too large message, closed with {code}"


class Action(enum.Enum):
    """What the timers ask the connection to do now."""

    NOTHING = 0
    PING = 1
    CLOSE = 2


class Timers:
    """The ping/idle timers of one connection, driven by a clock value.

    ``received(now)`` is called whenever bytes arrive from the client;
    ``due(now)`` says what to do at ``now``; ``deadline`` is the next instant
    at which ``due`` may answer something other than ``NOTHING``.
    """

    __slots__ = ("pingintvl", "idleintvl", "last_received", "next_ping")

    def __init__(self, pingintvl: float, idleintvl: float, now: float) -> None:
        self.pingintvl = pingintvl
        self.idleintvl = idleintvl
        self.last_received = now
        self.next_ping = now + pingintvl

    def received(self, now: float) -> None:
        self.last_received = now
        self.next_ping = now + self.pingintvl

    @property
    def idle_at(self) -> float:
        return self.last_received + self.idleintvl

    @property
    def deadline(self) -> float:
        return min(self.next_ping, self.idle_at)

    def due(self, now: float) -> Action:
        if now >= self.idle_at:
            return Action.CLOSE
        if now >= self.next_ping:
            # Re-arm one interval after this ping, skipping intervals missed
            # while the loop was late, so pings never come in bursts.
            missed = int((now - self.next_ping) // self.pingintvl) + 1
            self.next_ping += missed * self.pingintvl
            return Action.PING
        return Action.NOTHING


@dataclass(frozen=True, slots=True)
class PushAddress:
    """One advertised address of a push listener: ``host`` as it goes in a
    URL; ``scheme`` is ``https`` for a ``push_ssl=on`` listener."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def welcome_message(push_id: str, addresses: tuple[PushAddress, ...], path: str) -> str:
    """The text frame sent right after the handshake (the original's format).

    ``http://ID@ADDR:PORT/LOCATION`` per advertised address, joined by ``,``
    (``https://`` for a push listener with ``push_ssl=on``).
    """
    return ",".join(f"{a.scheme}://{push_id}@{a.netloc}{path}" for a in addresses)


class SessionProtocol:
    """One WebSocket session's rules over wsproto's ``Connection``.

    * ``receive(data, now)``: bytes from the client (``None`` at EOF); every
      byte resets the timers.  Returns what to write: pongs, echoes (each
      data message back with its type, once complete), the close reply.
    * ``tick(now)``: called when ``deadline`` has passed; a PING after
      ``pingintvl`` of silence, the close frame (1001) after ``idleintvl``.
    * ``message(data)``: the frame for a welcome or a push; ``None`` once the
      session is closing.
    * ``close(code, reason)``: the server's close frame.
    * With ``upstream`` (``websocket_message_request``), a complete message
      is not echoed: it becomes ``pending`` and ``receive`` stops there,
      leaving what follows it unread in wsproto's buffer.  The driver sends
      it upstream, writes ``message(answer)`` if there is one, and calls
      ``resume(now)``, which goes on where ``receive`` stopped (and may make
      the next message pending).  So one message at a time leaves, in the
      client's order, and nothing more is read meanwhile.

    ``closing`` becomes true once the server has sent its close frame; from
    then on ``deadline`` is when the client's answer is given up on
    (``CLOSE_TIMEOUT``).  ``done`` says the connection is over: write what
    was returned, then close TCP; ``ending()`` then says how, for the error
    log (until then only a tuple is kept, and nothing is formatted).  A
    protocol error in the client's frames (wsproto's ``CloseConnection``
    with 1002/1007) and a message over ``max_message_size`` (1009) close at
    once, as RFC 6455 section 7.1.7 asks: the close frame, then no wait for
    an answer.
    """

    __slots__ = ("ws", "timers", "max_message_size", "_parts", "_size", "closing", "done", "_close_by", "plain",
                 "upstream", "pending", "close_code", "_ending")

    def __init__(self, ws: Connection, timers: Timers, max_message_size: int, *, extensions: bool = False,
                 upstream: bool = False) -> None:
        """``extensions``: whether ``ws`` runs any (its frames then carry state);
        ``upstream``: whether messages go upstream instead of being echoed."""
        self.ws = ws
        self.timers = timers
        self.max_message_size = max_message_size
        self._parts: list[str | bytes] | None = None  # the data message being assembled
        self._size = 0
        self.closing = False
        self.done = False
        self._close_by = 0.0
        self.plain = not extensions  # no extension: frames carry no state (channels share them)
        self.upstream = upstream
        self.pending: str | bytes | None = None  # a message for upstream, until ``resume``
        self.close_code: int | None = None  # the first close frame's code, either way
        self._ending: tuple[Ending, int, str] | None = None  # the first decision of how it ends

    @property
    def deadline(self) -> float:
        return self._close_by if self.closing else self.timers.deadline

    def ending(self) -> str | None:
        """How the session ended, in the error log's words (``Ending``); None
        if it has not, or the server ended it on its own account."""
        if self._ending is None:
            return None
        how, code, reason = self._ending
        return how.value.format(code=code, reason=reason)

    @property
    def how_ended(self) -> Ending | None:
        """The ``Ending`` of ``ending()``, unformatted (the statistics' close reason)."""
        return None if self._ending is None else self._ending[0]

    def _ends(self, how: Ending, code: int, reason: str = "") -> None:
        if self._ending is None:
            self._ending = (how, int(code), reason)

    def message(self, data: str | bytes) -> bytes | bytearray | None:
        if self.ws.state is not ConnectionState.OPEN:
            return None
        if self.plain:
            return _PLAIN_FRAMES.send_data(data)
        return self.ws.send(TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data))

    def close(self, code: int, reason: str, now: float) -> bytes:
        """The server's close frame (b"" if a close was already sent)."""
        if self.ws.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            return b""
        self.closing = True
        self._close_by = now + CLOSE_TIMEOUT
        if self.close_code is None:
            self.close_code = code
        return self.ws.send(CloseConnection(code=code, reason=reason))

    def tick(self, now: float) -> bytes:
        if self.closing:
            if now >= self._close_by:
                self.done = True
            return b""
        action = self.timers.due(now)
        if action is Action.PING:
            return self.ws.send(Ping())
        if action is Action.CLOSE:
            self._ends(Ending.IDLE, IDLE_CLOSE_CODE)
            return self.close(IDLE_CLOSE_CODE, IDLE_CLOSE_REASON, now)
        return b""

    def receive(self, data: bytes | None, now: float) -> bytes:
        ws = self.ws
        if data is not None:
            self.timers.received(now)
        ws.receive_data(data)
        out: list[bytes] = []
        for event in ws.events():
            if isinstance(event, Message):
                if ws.state is not ConnectionState.OPEN:
                    continue  # after the server's close frame, data is read and dropped
                echo = self._assemble(event)
                if echo is not None:
                    out.append(echo)
                if self.done or self.pending is not None:
                    break
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    out.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self._closed_by_client(event, out, now)
                break
        return b"".join(out)

    def resume(self, now: float) -> bytes:
        """Go on reading what the client sent after the pending message, now
        that it has been answered.  The time it spent upstream is not the
        client's silence: the timers start again."""
        self.pending = None
        return self.receive(b"", now)

    def _assemble(self, event: Message) -> bytes | None:
        """Add a message part; the echo once the message is complete (or,
        with ``upstream``, the message becomes ``pending``)."""
        data = event.data
        self._size += len(data) if not isinstance(data, str) or data.isascii() else len(data.encode())
        if self._size > self.max_message_size:
            self._parts = None
            self.done = True
            self._ends(Ending.TOO_BIG, TOO_BIG_CLOSE_CODE)
            return self.close(TOO_BIG_CLOSE_CODE, TOO_BIG_CLOSE_REASON, 0.0)
        if not event.message_finished:
            if self._parts is None:
                self._parts = []
            self._parts.append(data)
            return None
        if self._parts is not None:
            self._parts.append(data)
            data = ("" if isinstance(data, str) else b"").join(self._parts)
            self._parts = None
        self._size = 0
        if self.upstream:
            self.pending = data if isinstance(data, str) else bytes(data)
            return None
        return self.message(data if isinstance(data, str) else bytes(data))

    def _closed_by_client(self, event: CloseConnection, out: list[bytes], now: float) -> None:
        state = self.ws.state
        self.done = True
        if state is ConnectionState.REMOTE_CLOSING:
            if self.close_code is None:
                self.close_code = event.code
            self._ends(Ending.CLIENT_CLOSED, event.code)
            out.append(self.ws.send(event.response()))  # the client's close: answer it
        elif state is ConnectionState.OPEN:
            # A protocol error in the client's frames (wsproto reports it as
            # a CloseConnection it did not receive): fail the connection.
            self._ends(Ending.INVALID, event.code, event.reason or "")
            out.append(self.close(event.code, event.reason or "", now))
        elif not self.closing:
            self._ends(Ending.PREMATURE, event.code)  # the client went away without a close frame
        # else CLOSED: the answer to our close frame (or none came): ours says why.
