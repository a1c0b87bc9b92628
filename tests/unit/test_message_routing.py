"""Client messages routed upstream instead of echoed (``websocket_message_request``).

First the rules in ``SessionProtocol`` with no socket (a message becomes
``pending``, nothing after it is read until ``resume``), then
``Session.serve`` driving them over a socket pair with a stand-in for the
backend link: one message in flight, the answer written back, the client
read no further meanwhile, a failure closing with 1011.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from support.inprocess import new_session, socket_pair
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from nginxws.backend import UpstreamFailed
from nginxws.session import SessionProtocol, Timers

pytestmark = pytest.mark.timeout(10)

PING, IDLE = 10.0, 15.0


class Peer:
    """A client connection and the server session it talks to, messages routed upstream."""

    def __init__(self, max_message_size: int = 1024) -> None:
        self.client = Connection(ConnectionType.CLIENT)
        self.server = SessionProtocol(Connection(ConnectionType.SERVER), Timers(PING, IDLE, 0.0), max_message_size,
                                      upstream=True)

    def send(self, *events, now: float = 1.0) -> list:
        data = b"".join(self.client.send(event) for event in events)
        return self.hear(self.server.receive(data, now))

    def resume(self, now: float = 2.0) -> list:
        return self.hear(self.server.resume(now))

    def hear(self, data: bytes) -> list:
        if not data:
            return []
        self.client.receive_data(data)
        return list(self.client.events())


def test_a_message_becomes_pending_instead_of_being_echoed():
    peer = Peer()
    assert peer.send(TextMessage("hi")) == []
    assert peer.server.pending == "hi"
    assert peer.resume() == [] and peer.server.pending is None


def test_binary_stays_binary():
    peer = Peer()
    peer.send(BytesMessage(b"\x00\x01"))
    assert peer.server.pending == b"\x00\x01" and type(peer.server.pending) is bytes


def test_messages_leave_one_at_a_time_in_order_from_one_read():
    peer = Peer()
    peer.send(TextMessage("one"), TextMessage("two"), BytesMessage(b"three"))
    assert peer.server.pending == "one"
    peer.resume()
    assert peer.server.pending == "two"
    peer.resume()
    assert peer.server.pending == b"three"
    peer.resume()
    assert peer.server.pending is None


def test_a_fragmented_message_leaves_once_whole():
    peer = Peer()
    peer.send(TextMessage("frag", message_finished=False))
    assert peer.server.pending is None
    peer.send(TextMessage("ment", message_finished=False), TextMessage("ed"))
    assert peer.server.pending == "fragmented"


def test_nothing_after_a_pending_message_is_read_until_resume():
    peer = Peer()
    # A ping behind the message waits: the session reads no further.
    assert peer.send(TextMessage("hi"), Ping(b"p")) == []
    [pong] = peer.resume()
    assert isinstance(pong, Pong) and pong.payload == b"p"


def test_a_close_behind_a_pending_message_is_answered_after_it():
    peer = Peer()
    peer.send(TextMessage("last"), CloseConnection(1000, "bye"))
    assert peer.server.pending == "last" and not peer.server.done
    [close] = peer.resume()
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert peer.server.done and peer.server.close_code == 1000


def test_an_answer_is_sent_as_a_message_of_its_type():
    peer = Peer()
    peer.send(TextMessage("question"))
    assert [(type(e).__name__, e.data) for e in peer.hear(peer.server.message("answer"))] == [
        ("TextMessage", "answer")]
    assert [(type(e).__name__, e.data) for e in peer.hear(peer.server.message(b"\x01"))] == [
        ("BytesMessage", bytearray(b"\x01"))]


def test_the_time_upstream_is_not_the_clients_silence():
    peer = Peer()
    peer.send(TextMessage("slow"), now=1.0)
    peer.resume(now=1.0 + IDLE + 5)  # the backend took longer than idleintvl
    assert peer.server.timers.idle_at == 1.0 + IDLE + 5 + IDLE
    assert peer.server.tick(1.0 + IDLE + 6) == b""


def test_a_message_over_max_message_size_still_closes_1009():
    peer = Peer(max_message_size=8)
    [close] = peer.send(TextMessage("x" * 9))
    assert isinstance(close, CloseConnection) and close.code == 1009
    assert peer.server.pending is None and peer.server.close_code == 1009


def test_the_close_code_is_the_first_close_frames_either_way():
    peer = Peer()
    peer.server.close(1001, "bye", 3.0)
    peer.send(CloseConnection(1000))
    assert peer.server.close_code == 1001
    other = Peer()
    other.send(CloseConnection(4000, "mine"))
    assert other.server.close_code == 4000
    gone = Peer()
    gone.server.receive(None, 2.0)  # the connection ended without a close frame
    assert gone.server.done and gone.server.close_code is None


# -- Session.serve with a backend link standing in -------------------------------------


class Link:
    """``backend.SessionLink`` as the session's task uses it: ``message`` waits
    until the test answers (a value, None, or ``UpstreamFailed``)."""

    def __init__(self) -> None:
        self.asked: list[str | bytes] = []
        self.lost = 0
        self._answers: trio.MemorySendChannel
        self._answers, self._waiting = trio.open_memory_channel(10)
        self.asking = trio.Event()

    async def message(self, message: str | bytes):
        self.asked.append(message)
        self.asking.set()
        answer = await self._waiting.receive()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def answer(self, value) -> None:
        self.asking = trio.Event()  # set again by the next message
        self._answers.send_nowait(value)

    def answer_lost(self) -> None:
        self.lost += 1


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = Connection(ConnectionType.CLIENT)

    def send(self, *events) -> None:
        self.sock.sendall(b"".join(self.conn.send(event) for event in events))

    async def next_event(self):
        while True:
            for event in self.conn.events():
                return event
            await trio.lowlevel.wait_readable(self.sock)
            self.conn.receive_data(self.sock.recv(65536) or None)


def serve(test, *, clock=None) -> None:
    async def main() -> None:
        with trio.fail_after(5 if clock is None else 1000), socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = new_session(stream, nursery, pingintvl=PING, idleintvl=IDLE, max_message_size=1024)
                session.proto.upstream = True
                session.link = Link()
                nursery.start_soon(session.serve)
                await test(Client(theirs), session, session.link)

    trio.run(main, clock=clock)


def readable_bytes(sock: socket.socket) -> int:
    try:
        return len(sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


def test_serve_sends_one_message_at_a_time_and_writes_each_answer_back():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("one"), TextMessage("two"))
        await link.asking.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert link.asked == ["one"]  # the second waits for the first's answer
        link.answer("re: one")
        event = await client.next_event()
        assert isinstance(event, TextMessage) and event.data == "re: one"
        await link.asking.wait()
        assert link.asked == ["one", "two"]
        link.answer(b"\x02")
        event = await client.next_event()
        assert isinstance(event, BytesMessage) and event.data == b"\x02"
        client.send(CloseConnection(1000))
        assert isinstance(await client.next_event(), CloseConnection)

    serve(test)


def test_serve_reads_nothing_from_the_client_while_a_message_is_upstream():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("first"))
        await link.asking.wait()
        client.send(TextMessage("queued"))
        await trio.testing.wait_all_tasks_blocked()
        # What the client sent next is still in the session's socket: back-pressure.
        their_end = session.stream.socket
        assert readable_bytes(their_end) > 0
        assert link.asked == ["first"]
        link.answer(None)  # a 2xx without a body: nothing is sent back
        await link.asking.wait()
        assert link.asked == ["first", "queued"]
        assert readable_bytes(client.sock) == 0
        link.answer(None)
        client.send(CloseConnection(1000))
        assert isinstance(await client.next_event(), CloseConnection)

    serve(test)


def test_serve_delivers_pushes_while_a_message_is_upstream():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("slow"))
        await link.asking.wait()
        assert session.push("pushed meanwhile")
        event = await client.next_event()
        assert isinstance(event, TextMessage) and event.data == "pushed meanwhile"
        link.answer("late answer")
        event = await client.next_event()
        assert event.data == "late answer"
        client.send(CloseConnection(1000))
        await client.next_event()

    serve(test)


def test_serve_closes_1011_when_the_upstream_fails():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("doomed"), TextMessage("never sent"))
        await link.asking.wait()
        link.answer(UpstreamFailed(500))
        close = await client.next_event()
        assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1011, "upstream failed")
        client.send(close.response())
        await trio.testing.wait_all_tasks_blocked()
        assert link.asked == ["doomed"]
        assert session.proto.done

    serve(test)


def test_an_answer_that_comes_while_the_session_closes_is_not_sent_and_said():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("question"))
        await link.asking.wait()
        session.close(1001, "server shutting down")
        close = await client.next_event()
        assert isinstance(close, CloseConnection) and close.code == 1001
        link.answer("too late")
        await trio.testing.wait_all_tasks_blocked()
        assert link.lost == 1
        client.send(close.response())

    serve(test)


def test_an_upstream_wait_ends_with_the_close_timeout_of_a_closing_session():
    async def test(client: Client, session, link: Link) -> None:
        client.send(TextMessage("question"))
        await link.asking.wait()
        session.close(1001, "server shutting down")
        assert isinstance(await client.next_event(), CloseConnection)
        # The client never answers the close, nor the backend the message.
        while not session.proto.done:
            await trio.sleep(1)
        assert link.lost == 0

    serve(test, clock=trio.testing.MockClock(autojump_threshold=0))
