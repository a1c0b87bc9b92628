"""How a session sends: never waiting for the client, a backlog while its
socket is full, and the worker's send watch (``send_timeout``).

Streams are ``socket.socketpair()`` (AF_UNIX) with small buffers, so that a
payload of a few hundred kilobytes fills them; every test runs under
``trio.fail_after``.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from support.inprocess import new_session, socket_pair
from support.scheduling import scheduler_trips

from nginxws.streams import SocketStream
from nginxws.wsconn import SendWatch, Session

pytestmark = pytest.mark.timeout(10)

BIG = 512 * 1024  # more than the pair's socket buffers hold
SEND_TIMEOUT = 60.0


def run(test) -> None:
    async def bounded() -> None:
        with trio.fail_after(5):
            await test()

    trio.run(bounded)


def session_on(stream: SocketStream, nursery: trio.Nursery, watch: SendWatch, limit: int = 4) -> Session:
    return new_session(stream, nursery, pingintvl=300.0, idleintvl=360.0, max_message_size=BIG, watch=watch,
                       limit=limit, send_timeout=SEND_TIMEOUT)


async def read_all(theirs: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        await trio.lowlevel.wait_readable(theirs)
        got += theirs.recv(65536)
    return bytes(got)


def payload(n: int, size: int = BIG) -> bytes:
    return bytes([n]) * size


def test_a_send_the_kernel_takes_goes_out_at_once_without_a_flusher():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                session.write(b"\x81\x02hi")
                assert not session.full() and session.bytes_sent == 4
                assert await read_all(theirs, 4) == b"\x81\x02hi"
                await session.drained()
                assert len(nursery.child_tasks) == 0

    run(main)


def test_a_send_the_kernel_cannot_take_returns_at_once_and_the_rest_follows_in_order():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                with scheduler_trips() as steps:
                    session.write(payload(1))
                    assert session.push(b"pushed")
                assert steps.count == 0, "a send waited for the client"
                assert len(nursery.child_tasks) == 1  # the flusher
                assert await read_all(theirs, BIG + 8) == payload(1) + b"\x82\x06pushed"
                await session.drained()
                assert session.bytes_sent == BIG + 8
            assert len(nursery.child_tasks) == 0

    run(main)


def test_the_backlog_is_full_at_limit_frames():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch(), limit=3)
                session.write(payload(1))
                assert session.push("a")
                assert not session.full()
                assert session.push("b")
                assert session.full()
                theirs.setblocking(True)
                theirs.settimeout(5)
                received = bytearray()
                while len(received) < BIG + 6:
                    received += await trio.to_thread.run_sync(theirs.recv, 65536)
                await session.drained()
                assert not session.full()
                assert received.endswith(b"\x81\x01a\x81\x01b")

    run(main)


def test_a_closing_session_takes_no_more_pushes():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                session.close(1001, "server shutting down")
                assert session.proto.closing
                assert not session.push("late")
                assert await read_all(theirs, 24) == b"\x88\x16\x03\xe9server shutting down"

    run(main)


@asynccontextmanager
async def stalled_client():
    """A client sent more than its socket buffers hold, its flusher waiting
    for it: yields (its socket, the watch, the session)."""
    with socket_pair() as (stream, theirs):
        watch = SendWatch()
        async with trio.open_nursery() as nursery:
            session = session_on(stream, nursery, watch)
            session.write(payload(1))
            await trio.testing.wait_all_tasks_blocked()
            yield theirs, watch, session
            nursery.cancel_scope.cancel()


def test_a_client_that_does_not_read_is_watched_until_send_timeout():
    async def main():
        async with stalled_client() as (_, watch, session):
            now = trio.current_time()
            assert watch.expired(now + SEND_TIMEOUT - 1) == []
            assert watch.expired(now + SEND_TIMEOUT + 1) == [session]

    run(main)


def test_a_client_that_reads_slowly_but_steadily_gets_send_timeout_anew_after_each_write():
    async def main():
        async with stalled_client() as (theirs, watch, _):
            first = trio.current_time()
            await trio.sleep(0.2)
            theirs.recv(65536)  # some progress
            await trio.testing.wait_all_tasks_blocked()
            assert watch.expired(first + SEND_TIMEOUT + 0.1) == []

    run(main)


def test_closing_lets_the_backlog_out_first():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                session.write(payload(3))
                session.close(1000, "")
                closing = trio.Event()

                async def finish():
                    await session.finish()
                    closing.set()

                nursery.start_soon(finish)
                received = await read_all(theirs, BIG + 4)
                assert received == payload(3) + b"\x88\x02\x03\xe8"
                await closing.wait()
                assert theirs.recv(1) == b""  # then EOF

    run(main)


def test_a_broken_client_ends_the_flusher_and_the_session():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                serving = trio.Event()

                async def serve():
                    await session.serve()
                    serving.set()

                nursery.start_soon(serve)
                await trio.testing.wait_all_tasks_blocked()
                session.write(payload(1))
                theirs.close()
                await session.drained()
                await serving.wait()
                assert session.proto.done

    run(main)


def test_send_watch_gives_up_on_sends_past_their_deadline_only():
    async def main():
        watch = SendWatch()
        slow, quick, later = object(), object(), object()  # the watch only tells sessions apart

        async def send(session, deadline, finish):
            watch.start(session, deadline)
            if finish:
                watch.done()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, slow, 10.0, False)
            nursery.start_soon(send, quick, 10.0, True)
            nursery.start_soon(send, later, 70.0, False)
        assert watch.expired(9.9) == []
        assert watch.expired(10.0) == [slow]
        assert watch.expired(60.0) == []  # slow has left the watch
        assert watch.expired(70.0) == [later]

    trio.run(main)


# -- channel deliveries (wsconn.Session.deliver) --------------------------------------------


def test_a_channel_delivery_is_written_at_once_or_queued_and_a_full_backlog_says_slow():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch(), limit=2)
                with scheduler_trips() as steps:
                    assert session.deliver(b"\x81\x02hi", "hi") is True
                    assert session.bytes_sent == 4
                    session.write(payload(1))  # fills the socket: a backlog starts
                    assert session.deliver(b"\x81\x01a", "a") is True  # queued (backlog: 2 frames)
                    assert session.deliver(b"\x81\x01b", "b") is None  # full: slow
                assert steps.count == 0, "a delivery waited for the client"
                theirs.setblocking(True)
                theirs.settimeout(5)
                received = bytearray()
                while len(received) < 4 + BIG + 3:
                    received += await trio.to_thread.run_sync(theirs.recv, 65536)
                assert received.startswith(b"\x81\x02hi") and received.endswith(b"\x81\x01a")
                await session.drained()

    run(main)


def test_a_closing_session_takes_no_channel_delivery():
    async def main():
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                session = session_on(stream, nursery, SendWatch())
                session.close(1001, "bye")
                assert session.deliver(b"\x81\x01x", "x") is False

    run(main)


def test_a_deflate_session_frames_a_channel_message_itself():
    async def main():
        from wsproto import ConnectionType
        from wsproto.connection import Connection
        from wsproto.extensions import PerMessageDeflate

        from nginxws.session import SessionProtocol, Timers

        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                deflate = PerMessageDeflate()
                deflate._enabled = True
                proto = SessionProtocol(Connection(ConnectionType.SERVER, [deflate]),
                                        Timers(300.0, 360.0, trio.current_time()), BIG, extensions=True)
                session = Session(proto, stream, limit=4, nursery=nursery, watch=SendWatch(),
                                  send_timeout=SEND_TIMEOUT)
                shared_frame = b"\x81\x05hello"
                assert session.deliver(shared_frame, "hello") is True
                got = await read_all(theirs, 2)
                assert got[0] & 0x40, "the frame is compressed (RSV1), not the shared plain one"

    run(main)
