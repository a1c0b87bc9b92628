"""How a file's body is sent: ``sendfile`` on a plain socket, pieces read on a
thread on any other stream; never more than one piece held, ``send_timeout``
between pieces, and a file cut short reported by the count it returns.

Streams are ``socket.socketpair()`` with small buffers (``support.inprocess``),
so a few megabytes fill them and the sender must wait for the reader."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing
from support.inprocess import socket_pair

from nginxws.http import FILE_PIECE, SENDFILE_PIECE, ClientTimeout, send_file_body

pytestmark = pytest.mark.timeout(20)

SIZE = SENDFILE_PIECE + FILE_PIECE + 12345  # more than one piece of either kind


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[int, bytes]:
    data = bytes(range(256)) * (SIZE // 256) + b"tail"
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


async def read_all(theirs: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        await trio.lowlevel.wait_readable(theirs)
        chunk = theirs.recv(65536)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def test_sendfile_sends_the_whole_file_through_a_full_socket(data_file) -> None:
    fd, data = data_file

    async def main() -> None:
        with socket_pair() as (stream, theirs):
            received: list[bytes] = []
            async with trio.open_nursery() as nursery:
                async def reader() -> None:
                    received.append(await read_all(theirs, len(data)))

                nursery.start_soon(reader)
                assert await send_file_body(stream, fd, len(data), timeout=10) == len(data)
            assert received == [data]

    trio.run(main)


def test_sendfile_from_an_offset_stops_at_the_end_of_the_file(data_file) -> None:
    fd, data = data_file

    async def main() -> None:
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                got: list[bytes] = []

                async def reader() -> None:
                    got.append(await read_all(theirs, 100))

                nursery.start_soon(reader)
                assert await stream.sendfile(fd, len(data) - 100, 1000) == 100
            assert got == [data[-100:]]

    trio.run(main)


def test_a_file_shorter_than_announced_returns_what_was_sent(data_file) -> None:
    fd, data = data_file

    async def main() -> None:
        with socket_pair() as (stream, theirs):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_all, theirs, len(data))
                assert await send_file_body(stream, fd, len(data) + 10, timeout=10) == len(data)
                theirs.shutdown(socket.SHUT_RDWR)

    trio.run(main)


class Recording(trio.abc.SendStream):
    """A stream that is not a plain socket (as TLS is): what it was given, piece by piece."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def send_all(self, data) -> None:
        await trio.lowlevel.checkpoint()
        self.pieces.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def test_other_streams_get_pieces_read_on_a_thread(data_file) -> None:
    fd, data = data_file

    async def main() -> None:
        stream = Recording()
        assert await send_file_body(stream, fd, len(data), timeout=10) == len(data)
        assert b"".join(stream.pieces) == data
        assert max(len(piece) for piece in stream.pieces) == FILE_PIECE

    trio.run(main)


def test_a_client_that_reads_nothing_times_out_after_send_timeout(data_file) -> None:
    fd, data = data_file

    async def main() -> None:
        with socket_pair() as (stream, _theirs):
            start = trio.current_time()
            with pytest.raises(ClientTimeout):
                await send_file_body(stream, fd, len(data), timeout=30)
            assert trio.current_time() - start == pytest.approx(30)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
