"""Answers to pipelined requests leave in one write, when the server reads again."""

import trio
import trio.testing

from nginxws.http import CoalescingStream


class CountingStream(trio.abc.Stream):
    def __init__(self, incoming: bytes) -> None:
        self.writes: list[bytes] = []
        self.incoming = incoming

    async def send_all(self, data):
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self):
        pass

    async def receive_some(self, max_bytes=None):
        data, self.incoming = self.incoming, b""
        return data

    async def aclose(self):
        pass


def test_writes_wait_for_the_next_read_and_leave_together():
    async def main():
        inner = CountingStream(b"next request")
        stream = CoalescingStream(inner)
        await stream.send_all(b"answer 1;")
        await stream.send_all(b"answer 2;")
        assert inner.writes == []
        assert await stream.receive_some() == b"next request"
        assert inner.writes == [b"answer 1;answer 2;"]

    trio.run(main)


def test_flush_writes_what_is_left_and_only_once():
    async def main():
        inner = CountingStream(b"")
        stream = CoalescingStream(inner)
        await stream.send_all(b"last answer")
        await stream.flush()
        await stream.flush()
        assert inner.writes == [b"last answer"]

    trio.run(main)
