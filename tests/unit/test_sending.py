"""How a session sends: never waiting for the client, a backlog while its
socket is full, and the worker's send watch (``send_timeout``).

Streams are ``socket.socketpair()`` (AF_UNIX) with small buffers, so that a
payload of a few hundred kilobytes fills them; every test runs under
``trio.fail_after``.
"""

from __future__ import annotations

import socket
from contextlib import asynccontextmanager, contextmanager

import pytest
import trio
import trio.testing
from scheduling import scheduler_trips

from nginxws.netio import SocketStream
from nginxws.session import Timers
from nginxws.wsconn import SLACK, ClientStream, SendWatch, Session

pytestmark = pytest.mark.timeout(10)

BIG = 512 * 1024  # more than the pair's socket buffers hold
SEND_TIMEOUT = 60.0


def run(test) -> None:
    async def bounded() -> None:
        with trio.fail_after(5):
            await test()

    trio.run(bounded)


@contextmanager
def pair():
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    theirs.setblocking(False)
    try:
        yield SocketStream(ours), theirs
    finally:
        ours.close()
        theirs.close()


def client_stream(stream: SocketStream, nursery: trio.Nursery, watch: SendWatch, session: Session,
                  limit: int = 4) -> ClientStream:
    client = ClientStream(stream, b"", Timers(300.0, 360.0, trio.current_time()))
    client.start_buffering(nursery, session, SEND_TIMEOUT, watch, limit)
    return client


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
        with pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                client = client_stream(stream, nursery, SendWatch(), Session())
                await client.send_all(b"\x81\x02hi")
                assert not client.full() and client.bytes_sent == 4
                assert await read_all(theirs, 4) == b"\x81\x02hi"
                await client.drained()
                assert len(nursery.child_tasks) == 0

    run(main)


def test_a_send_the_kernel_cannot_take_returns_at_once_and_the_rest_follows_in_order():
    async def main():
        with pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                client = client_stream(stream, nursery, SendWatch(), Session())
                with scheduler_trips() as steps:
                    await client.send_all(payload(1))
                    await client.send_all(payload(2, 10))
                assert steps.count == 0, "a send waited for the client"
                assert len(nursery.child_tasks) == 1  # the flusher
                assert await read_all(theirs, BIG + 10) == payload(1) + payload(2, 10)
                await client.drained()
                assert client.bytes_sent == BIG + 10
            assert len(nursery.child_tasks) == 0

    run(main)


def test_the_backlog_is_full_at_limit_frames_and_the_client_is_dropped_beyond_the_slack():
    async def main():
        with pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                client = client_stream(stream, nursery, SendWatch(), Session(), limit=3)
                await client.send_all(payload(1))
                await client.send_all(b"a")
                assert not client.full()
                await client.send_all(b"b")
                assert client.full()
                for _ in range(SLACK):
                    await client.send_all(b"pong")
                with pytest.raises(trio.BrokenResourceError):
                    await client.send_all(b"one too many")
                nursery.cancel_scope.cancel()

    run(main)


@asynccontextmanager
async def stalled_client():
    """A client sent more than its socket buffers hold, its flusher waiting
    for it: yields (its socket, the watch, the session)."""
    with pair() as (stream, theirs):
        watch, session = SendWatch(), Session()
        async with trio.open_nursery() as nursery:
            client = client_stream(stream, nursery, watch, session)
            await client.send_all(payload(1))
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
        with pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                client = client_stream(stream, nursery, SendWatch(), Session())
                await client.send_all(payload(3))
                await client.send_all(b"\x88\x02\x03\xe8")  # a close frame
                assert client.close_sent
                closing = trio.Event()

                async def close():
                    await client.aclose()
                    closing.set()

                nursery.start_soon(close)
                received = await read_all(theirs, BIG + 4)
                assert received == payload(3) + b"\x88\x02\x03\xe8"
                await closing.wait()
                assert theirs.recv(1) == b""  # then EOF

    run(main)


def test_a_broken_client_ends_the_flusher_and_the_session():
    async def main():
        with pair() as (stream, theirs):
            session = Session()
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as scope:
                    session.cancel_scope = scope
                    client = client_stream(stream, nursery, SendWatch(), session)
                    await client.send_all(payload(1))
                    theirs.close()
                    await client.drained()
                    await trio.sleep_forever()
                assert scope.cancelled_caught

    run(main)


def test_send_watch_gives_up_on_sends_past_their_deadline_only():
    async def main():
        watch = SendWatch()
        slow, quick, later = Session(), Session(), Session()

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
