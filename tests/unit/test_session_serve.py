"""``Session.serve``, the session's own task, in process: the session reads
one end of a socket pair, a wsproto client holds the other, and trio's
``MockClock`` stands in for ``pingintvl`` and ``idleintvl``.

``test_session_protocol.py`` checks the same rules with no socket; these
check that the task driving them reads, answers and wakes for its timers.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from support.inprocess import new_session, socket_pair
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

pytestmark = pytest.mark.timeout(10)

PING, IDLE = 10.0, 25.0
MAX_MESSAGE = 1024


class Client:
    """A wsproto client connection over the test's end of the pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = Connection(ConnectionType.CLIENT)

    def send(self, *events) -> None:
        self.sock.sendall(b"".join(self.conn.send(event) for event in events))

    async def next_event(self):
        """The next event from the server, and trio's clock when it arrived."""
        while True:
            for event in self.conn.events():
                return event, trio.current_time()
            await trio.lowlevel.wait_readable(self.sock)
            self.conn.receive_data(self.sock.recv(65536) or None)


def serve_with_client(test, *, clock: trio.testing.MockClock | None = None) -> None:
    """Run ``test(client, session)`` while ``session.serve()`` runs; check that serve returned."""

    async def main() -> None:
        with trio.fail_after(5 if clock is None else 1000), socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = new_session(stream, nursery, pingintvl=PING, idleintvl=IDLE,
                                      max_message_size=MAX_MESSAGE)
                served = trio.Event()

                async def serve() -> None:
                    await session.serve()
                    served.set()

                nursery.start_soon(serve)
                await test(Client(theirs), session)
                await served.wait()
                assert session.proto.done

    trio.run(main, clock=clock)


def test_serve_echoes_each_message_with_its_type_then_answers_the_close():
    async def test(client: Client, session) -> None:
        client.send(TextMessage("hi"), BytesMessage(b"\x00\x01"))
        echoes = [(await client.next_event())[0] for _ in range(2)]
        assert [(type(e).__name__, e.data) for e in echoes if isinstance(e, Message)] == [
            ("TextMessage", "hi"), ("BytesMessage", bytearray(b"\x00\x01"))]
        client.send(CloseConnection(1000, "bye"))
        close, _ = await client.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1000

    serve_with_client(test)


def test_serve_pings_a_silent_client_at_pingintvl_and_closes_it_1001_at_idleintvl():
    async def test(client: Client, session) -> None:
        started = trio.current_time()
        ping, pinged_at = await client.next_event()
        assert isinstance(ping, Ping) and pinged_at - started == pytest.approx(PING)
        while True:  # an unanswered client may be pinged again before idleintvl
            event, at = await client.next_event()
            if not isinstance(event, Ping):
                break
        assert isinstance(event, CloseConnection) and (event.code, event.reason) == (1001, "idle timeout")
        assert at - started == pytest.approx(IDLE)
        client.send(event.response())

    serve_with_client(test, clock=trio.testing.MockClock(autojump_threshold=0))


def test_serve_closes_1009_a_message_over_max_message_size():
    async def test(client: Client, session) -> None:
        client.send(BytesMessage(b"x" * (MAX_MESSAGE + 1)))
        close, _ = await client.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1009
        client.send(close.response())

    serve_with_client(test)


def test_serve_ends_quietly_when_the_client_goes_away():
    async def test(client: Client, session) -> None:
        client.sock.shutdown(socket.SHUT_WR)

    serve_with_client(test)
