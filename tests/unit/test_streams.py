"""The worker's streams and listeners keep trio's contract on real sockets.

``nginxws.streams`` replaces trio's ``SocketStream`` on the push path; these
tests hold it to the contract its module docstring states: ``receive_some``
and ``accept`` are checkpoints, ``send_all`` checks for cancellation but goes
through the scheduler only when it has to wait, a broken peer is
``trio.BrokenResourceError`` and a closed stream ``trio.ClosedResourceError``.
Streams are ``socket.socketpair()`` (AF_UNIX) unless TCP matters; then a
loopback TCP pair.  Every test runs under ``trio.fail_after``.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from support.scheduling import scheduler_trips

from nginxws import streams
from nginxws.streams import DEFAULT_RECEIVE_SIZE, Listener, SocketStream

pytestmark = pytest.mark.timeout(10)

TIME_LIMIT = 2.0
BIG = 8 * 1024 * 1024  # far more than any socket buffer on the loopback
PAYLOAD = bytes(range(251)) * (BIG // 251 + 1)  # 251 is prime: a shifted chunk never matches


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run one async test body in trio, failing it if it takes too long."""

    async def bounded() -> None:
        with trio.fail_after(TIME_LIMIT):
            await test()

    trio.run(bounded)


def reset(sock: socket.socket) -> None:
    """Close a TCP socket with an RST instead of a FIN (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain(sock: socket.socket) -> bytes:
    """Everything a socket holds right now, without waiting."""
    sock.setblocking(False)
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def read_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes from a peer socket with trio's own socket layer."""
    peer = trio.socket.from_stdlib_socket(sock)
    data = bytearray()
    while len(data) < size:
        chunk = await peer.recv(1 << 16)
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


@pytest.fixture
def unix_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected AF_UNIX stream sockets: (ours, peer)."""
    ours, peer = socket.socketpair()
    with ours, peer:
        yield ours, peer


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A loopback TCP socket listening on a port the kernel chose."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock


@pytest.fixture
def tcp_pair(listening_socket: socket.socket) -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected loopback TCP sockets: (ours = the accepted side, peer = the client)."""
    peer = socket.create_connection(listening_socket.getsockname(), timeout=TIME_LIMIT)
    ours, _ = listening_socket.accept()
    with ours, peer:
        yield ours, peer


def connect(listening: socket.socket) -> socket.socket:
    """A client connection to a listening socket (complete in the backlog before accept)."""
    return socket.create_connection(listening.getsockname(), timeout=TIME_LIMIT)


# --- SocketStream: the socket it wraps -------------------------------------------------


def test_a_stream_makes_its_socket_non_blocking(unix_pair):
    ours, _ = unix_pair
    stream = SocketStream(ours)
    assert stream.socket is ours
    assert not ours.getblocking()
    assert not os.get_blocking(ours.fileno())


def test_a_tcp_stream_sets_tcp_nodelay(tcp_pair):
    ours, _ = tcp_pair
    ours.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    SocketStream(ours)
    assert ours.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert not os.get_blocking(ours.fileno())


# --- receive_some ----------------------------------------------------------------------


def test_receive_some_returns_what_the_peer_sent_then_empty_bytes_at_eof(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        peer.sendall(b"hello")
        assert await stream.receive_some() == b"hello"
        peer.shutdown(socket.SHUT_WR)
        assert await stream.receive_some() == b""
        assert await stream.receive_some() == b""

    run(main)


def test_receive_some_returns_at_most_max_bytes(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        peer.sendall(b"abcdefgh")
        assert await stream.receive_some(3) == b"abc"
        assert await stream.receive_some(1) == b"d"
        assert await stream.receive_some(100) == b"efgh"

    run(main)


def test_receive_some_without_max_bytes_returns_at_most_the_default_size(unix_pair):
    ours, peer = unix_pair
    sent = PAYLOAD[: DEFAULT_RECEIVE_SIZE + 1000]

    async def main():
        stream = SocketStream(ours)
        peer.sendall(sent)
        first = await stream.receive_some()
        assert 0 < len(first) <= DEFAULT_RECEIVE_SIZE
        rest = await stream.receive_some()
        assert first + rest == sent

    run(main)


def test_receive_some_returns_data_that_arrives_while_it_waits(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        got = []

        async def receiver():
            got.append(await stream.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            peer.sendall(b"late")
        assert got == [b"late"]

    run(main)


def test_receive_some_is_a_checkpoint_even_when_data_is_waiting(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        peer.sendall(b"ready")
        with trio.testing.assert_checkpoints(), scheduler_trips() as trips:
            assert await stream.receive_some() == b"ready"
        assert trips.count >= 1

    run(main)


def test_receive_some_is_a_checkpoint_when_it_has_to_wait(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)

        async def receiver():
            with trio.testing.assert_checkpoints():
                assert await stream.receive_some() == b"later"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            await trio.testing.wait_all_tasks_blocked()
            peer.sendall(b"later")

    run(main)


def test_receive_some_in_a_cancelled_scope_raises_cancelled_and_leaves_the_data(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        peer.sendall(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.receive_some()
            pytest.fail("receive_some returned in a cancelled scope")
        assert scope.cancelled_caught
        assert await stream.receive_some() == b"kept"

    run(main)


def test_receive_some_waiting_for_data_can_be_cancelled(unix_pair):
    ours, _ = unix_pair

    async def main():
        stream = SocketStream(ours)
        with trio.move_on_after(0.05) as scope:
            await stream.receive_some()
        assert scope.cancelled_caught

    run(main)


# --- send_all --------------------------------------------------------------------------


def test_send_all_the_kernel_takes_at_once_does_not_go_through_the_scheduler(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        with scheduler_trips() as trips:
            await stream.send_all(b"hello")
        assert trips.count == 0
        assert peer.recv(100) == b"hello"

    run(main)


def test_send_all_in_a_cancelled_scope_raises_cancelled_and_sends_nothing(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.send_all(b"must not leave")
            pytest.fail("send_all returned in a cancelled scope")
        assert scope.cancelled_caught
        assert drain(peer) == b""

    run(main)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_send_all_of_more_than_the_socket_buffers_arrives_whole_and_in_order(tcp_pair, kind):
    ours, peer = tcp_pair
    payload = PAYLOAD[:BIG]

    async def main():
        stream = SocketStream(ours)
        async with trio.open_nursery() as nursery:
            received = []

            async def reader():
                received.append(await read_exactly(peer, BIG))

            nursery.start_soon(reader)
            await stream.send_all(kind(payload))
        assert received[0] == payload

    run(main)


def test_send_all_blocks_while_the_peer_does_not_read_and_can_be_cancelled(unix_pair):
    ours, peer = unix_pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    payload = PAYLOAD[:BIG]

    async def main():
        stream = SocketStream(ours)
        with trio.move_on_after(0.1) as scope:
            await stream.send_all(payload)
        assert scope.cancelled_caught
        arrived = drain(peer)
        assert 0 < len(arrived) < BIG
        assert arrived == payload[: len(arrived)]

    run(main)


# --- aclose ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda stream: stream.receive_some(), id="receive_some"),
        pytest.param(lambda stream: stream.send_all(b"x"), id="send_all"),
        pytest.param(lambda stream: stream.send_all(b""), id="send_all-empty"),
        pytest.param(lambda stream: stream.wait_send_all_might_not_block(), id="wait_send_all_might_not_block"),
    ],
)
def test_a_closed_stream_raises_closed_resource_error(unix_pair, operation):
    ours, _ = unix_pair

    async def main():
        stream = SocketStream(ours)
        await stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await operation(stream)

    run(main)


def test_aclose_closes_the_socket_and_the_peer_sees_eof(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        with trio.testing.assert_checkpoints():
            await stream.aclose()
        assert ours.fileno() == -1
        assert peer.recv(10) == b""

    run(main)


def test_aclose_twice_is_fine(unix_pair):
    ours, _ = unix_pair

    async def main():
        stream = SocketStream(ours)
        await stream.aclose()
        await stream.aclose()
        assert ours.fileno() == -1

    run(main)


@pytest.mark.parametrize(
    "opened, operation",
    [
        pytest.param(lambda ours, listening: SocketStream(ours), lambda stream: stream.receive_some(),
                     id="receive_some"),
        pytest.param(lambda ours, listening: SocketStream(ours), lambda stream: stream.send_all(PAYLOAD[:BIG]),
                     id="send_all"),
        pytest.param(lambda ours, listening: Listener(listening), lambda listener: listener.accept(), id="accept"),
    ],
)
def test_aclose_wakes_a_task_blocked_in_it_with_closed_resource_error(unix_pair, listening_socket, opened, operation):
    ours, _ = unix_pair

    async def main():
        resource = opened(ours, listening_socket)
        woken = []

        async def blocked():
            with pytest.raises(trio.ClosedResourceError):
                await operation(resource)
            woken.append(True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            await resource.aclose()
        assert woken == [True]

    run(main)


def test_aclose_forcefully_closes_the_socket_though_it_is_cancelled(unix_pair):
    ours, peer = unix_pair

    async def main():
        stream = SocketStream(ours)
        await trio.aclose_forcefully(stream)
        assert ours.fileno() == -1
        assert peer.recv(10) == b""

    run(main)


# --- a peer that resets the connection -------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda stream: stream.receive_some(), id="receive_some"),
        pytest.param(lambda stream: stream.send_all(b"x"), id="send_all"),
        pytest.param(lambda stream: stream.send_all(PAYLOAD[:BIG]), id="send_all-big"),
    ],
)
def test_a_peer_that_reset_the_connection_is_broken_resource_error(tcp_pair, operation):
    ours, peer = tcp_pair

    async def main():
        stream = SocketStream(ours)
        reset(peer)
        await trio.lowlevel.wait_readable(ours)  # the RST has arrived
        with pytest.raises(trio.BrokenResourceError) as caught:
            await operation(stream)
        assert not isinstance(caught.value, OSError)

    run(main)


def test_a_peer_that_resets_while_send_all_waits_is_broken_resource_error(tcp_pair):
    ours, peer = tcp_pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)

    async def main():
        stream = SocketStream(ours)
        broken = []

        async def sender():
            with pytest.raises(trio.BrokenResourceError):
                await stream.send_all(PAYLOAD[:BIG])
            broken.append(True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            reset(peer)
        assert broken == [True]

    run(main)


# --- wait_send_all_might_not_block ---------------------------------------------------


def test_wait_send_all_might_not_block_returns_for_a_writable_socket(unix_pair):
    ours, _ = unix_pair

    async def main():
        stream = SocketStream(ours)
        with trio.testing.assert_checkpoints():
            await stream.wait_send_all_might_not_block()

    run(main)


# --- Listener --------------------------------------------------------------------------


def test_accept_returns_a_non_blocking_tcp_nodelay_stream_for_the_client(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        with connect(listening_socket) as client:
            stream = await listener.accept()
            assert isinstance(stream, SocketStream)
            with stream.socket:
                assert stream.socket.getpeername() == client.getsockname()
                assert not stream.socket.getblocking()
                assert not os.get_blocking(stream.socket.fileno())
                assert stream.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                client.sendall(b"ping")
                assert await stream.receive_some() == b"ping"

    run(main)


def test_a_listener_makes_its_socket_non_blocking(listening_socket):
    Listener(listening_socket)
    assert not os.get_blocking(listening_socket.fileno())


def test_accept_waits_for_a_connection_and_is_a_checkpoint(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        accepted = []

        async def acceptor():
            with trio.testing.assert_checkpoints():
                accepted.append(await listener.accept())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(acceptor)
            await trio.testing.wait_all_tasks_blocked()
            assert accepted == []
            client = connect(listening_socket)
        with client, accepted[0].socket:
            assert accepted[0].socket.getpeername() == client.getsockname()

    run(main)


def test_accept_is_a_checkpoint_even_when_a_connection_is_waiting(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        with connect(listening_socket) as client:
            with trio.testing.assert_checkpoints(), scheduler_trips() as trips:
                stream = await listener.accept()
            assert trips.count >= 1
            with stream.socket:
                assert stream.socket.getpeername() == client.getsockname()

    run(main)


def test_accept_in_a_cancelled_scope_raises_cancelled_and_leaves_the_connection(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        with connect(listening_socket) as client:
            with trio.CancelScope() as scope:
                scope.cancel()
                await listener.accept()
                pytest.fail("accept returned in a cancelled scope")
            assert scope.cancelled_caught
            stream = await listener.accept()
            with stream.socket:
                assert stream.socket.getpeername() == client.getsockname()

    run(main)


class FlakyListeningSocket(socket.socket):
    """A listening socket whose next accept() fails once with ``fail_with``."""

    fail_with: int | None = None

    def accept(self):
        if self.fail_with is not None:
            code, self.fail_with = self.fail_with, None
            raise OSError(code, os.strerror(code))
        return super().accept()


@pytest.mark.parametrize("code", sorted(streams._IGNORABLE_ACCEPT_ERRNOS), ids=errno.errorcode.get)
def test_accept_goes_on_past_a_failure_of_the_one_connection_as_trio_does(code):
    async def main():
        with FlakyListeningSocket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            listener = Listener(sock)
            with connect(sock) as client:
                sock.fail_with = code
                stream = await listener.accept()
                with stream.socket:
                    assert stream.socket.getpeername() == client.getsockname()
                assert sock.fail_with is None

    run(main)


def test_streams_ignore_every_accept_error_trio_ignores():
    from trio import _highlevel_socket  # the list streams follows; checked, not imported at run time

    assert streams._IGNORABLE_ACCEPT_ERRNOS == frozenset(_highlevel_socket._ignorable_accept_errnos)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS])
def test_accept_raises_what_concerns_the_whole_worker(code):
    async def main():
        with FlakyListeningSocket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            listener = Listener(sock)
            sock.fail_with = code
            with pytest.raises(OSError) as raised:
                await listener.accept()
            assert raised.value.errno == code

    run(main)


def test_accept_after_aclose_raises_closed_resource_error(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        await listener.aclose()
        assert listening_socket.fileno() == -1
        with pytest.raises(trio.ClosedResourceError):
            await listener.accept()
        await listener.aclose()

    run(main)


def test_a_connection_reset_in_the_backlog_does_not_break_the_listener(listening_socket):
    async def main():
        listener = Listener(listening_socket)
        reset(connect(listening_socket))
        with connect(listening_socket) as good:
            good.sendall(b"good")
            greetings = []
            for _ in range(2):  # the aborted one may still be handed out, then fails on use
                stream = await listener.accept()
                with stream.socket:
                    try:
                        greetings.append(await stream.receive_some())
                    except trio.BrokenResourceError:
                        continue
                break
            assert greetings == [b"good"]

    run(main)
