"""The load generator of bench/floors.py: its own process, so its CPU is not the server's.

    python bench/floors_load.py push CPORT PPORT CLIENTS PUSHERS PUSHES WARMUP [--no-frames]
    python bench/floors_load.py handshake PORT COUNT CONCURRENCY WARMUP

asyncio on uvloop when it is installed, `asyncio.Protocol` callbacks, no task per message. It
sets up (clients connected and upgraded, pushers connected), runs WARMUP operations, prints
``ready`` and waits for ``go`` on stdin; then it runs the measured operations and prints
``done SECONDS FAILURES`` once every push is answered and every frame has arrived (or every
handshake cycle has ended). It exits when stdin closes.

push: pushers send `floors_wire.push_request`, one in flight each; pusher J pushes in turn to
clients J, J + PUSHERS, J + 2 PUSHERS..., so no two pushes in flight name the same client (a
server may write a client's frame from the pusher's task without a lock). Each client checks that
every frame names it. handshake: cycles of connect, upgrade request,
read the 101 and the welcome frame, send a close frame and half-close, read until the server
closes; COUNT of them, CONCURRENCY at a time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from floors_wire import (
    CLIENT_CLOSE_FRAME,
    END_OF_HEAD,
    FRAME_HEADER,
    FRAME_LENGTH,
    HOST,
    RESPONSE_204,
    push_request,
    upgrade_request,
)
from shared import Control

try:
    import uvloop
except ImportError:
    uvloop = None

CONNECT_BATCH = 100
ANSWER = len(RESPONSE_204)


class PushRun:
    """The push counts shared by all pushers and clients, and when a batch is complete."""

    def __init__(self, push_port: int, clients: int, frames: bool) -> None:
        self.push_port = push_port
        self.clients = clients
        self.frames = frames
        self.seq = 0
        self.issued = self.answered = self.delivered = 0
        self.target = 0
        self.failures = 0
        self.complete: asyncio.Future[None] | None = None

    def start(self, count: int, pushers: list[Pusher]) -> asyncio.Future[None]:
        self.complete = asyncio.get_running_loop().create_future()
        self.target += count
        for pusher in pushers:
            pusher.send_next()
        return self.complete

    def check(self) -> None:
        delivered = not self.frames or self.delivered == self.target
        if self.answered == self.target and delivered and not self.complete.done():
            self.complete.set_result(None)


class Pusher(asyncio.Protocol):
    """A keep-alive pusher with one request in flight."""

    def __init__(self, run: PushRun, first: int, step: int) -> None:
        self.run = run
        self.received = 0
        self.clients = range(first, run.clients, step)
        self.sent = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send_next(self) -> None:
        run = self.run
        if run.issued == run.target:
            return
        run.issued += 1
        seq = run.seq
        run.seq += 1
        client = self.clients[self.sent % len(self.clients)]
        self.sent += 1
        self.transport.write(push_request(run.push_port, client, seq))

    def data_received(self, data: bytes) -> None:
        if self.received == 0 and not data.startswith(RESPONSE_204[:12]):
            self.run.failures += 1
        self.received += len(data)
        while self.received >= ANSWER:
            self.received -= ANSWER
            self.run.answered += 1
            self.send_next()
        self.run.check()


class Client(asyncio.Protocol):
    """A WebSocket client that only reads: the 101, then frames that must name it."""

    def __init__(self, run: PushRun, port: int, index: int) -> None:
        self.run = run
        self.request = upgrade_request(port, index)
        self.tag = FRAME_HEADER + b"%06d" % index
        self.head: bytes | None = b""
        self.buffer = b""
        self.upgraded = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.head is not None:
            self.head += data
            end = self.head.find(END_OF_HEAD)
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.run.failures += 1
            data = self.head[end + len(END_OF_HEAD):]
            self.head = None
            self.upgraded.set_result(None)
        buffer = self.buffer + data
        count = len(buffer) // FRAME_LENGTH
        for start in range(0, count * FRAME_LENGTH, FRAME_LENGTH):
            if buffer[start:start + len(self.tag)] != self.tag:
                self.run.failures += 1
        self.buffer = buffer[count * FRAME_LENGTH:]
        if count:
            self.run.delivered += count
            self.run.check()


async def push(
    control: Control, client_port: int, push_port: int, clients: int, pushers: int,
    pushes: int, warmup: int, frames: bool,
) -> None:
    loop = asyncio.get_running_loop()
    run = PushRun(push_port, clients, frames)
    connected = []
    for first in range(0, clients, CONNECT_BATCH):
        batch = [
            (await loop.create_connection(
                lambda index=index: Client(run, client_port, index), HOST, client_port
            ))[1]
            for index in range(first, min(first + CONNECT_BATCH, clients))
        ]
        await asyncio.gather(*(client.upgraded for client in batch))
        connected += batch
    senders = [
        (await loop.create_connection(
            lambda first=first: Pusher(run, first, pushers), HOST, push_port
        ))[1]
        for first in range(pushers)
    ]
    await run.start(warmup, senders)
    os.write(1, b"ready\n")
    if not await control.wait_for(b"go"):
        return
    started = time.perf_counter()
    await run.start(pushes, senders)
    elapsed = time.perf_counter() - started
    os.write(1, b"done %.6f %d\n" % (elapsed, run.failures))
    await control.wait_for(b"quit")


class Cycle(asyncio.Protocol):
    """One handshake cycle; `ended` says whether it saw the 101 and the welcome frame."""

    def __init__(self, port: int) -> None:
        self.request = upgrade_request(port, 0)
        self.received = b""
        self.ok = False
        self.transport: asyncio.Transport | None = None
        self.ended = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.ok:
            return
        self.received += data
        end = self.received.find(END_OF_HEAD)
        frame = end + len(END_OF_HEAD)
        if end < 0 or len(self.received) < frame + 2:
            return
        if len(self.received) < frame + 2 + self.received[frame + 1]:
            return
        self.ok = self.received.startswith(b"HTTP/1.1 101") and self.received[frame] == 0x81
        self.transport.write(CLIENT_CLOSE_FRAME)
        self.transport.write_eof()

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(self.ok)


async def cycles(port: int, count: int, concurrency: int) -> int:
    """Run `count` handshake cycles; how many failed."""
    loop = asyncio.get_running_loop()
    failures = 0

    async def worker(share: int) -> None:
        nonlocal failures
        for _ in range(share):
            _transport, cycle = await loop.create_connection(lambda: Cycle(port), HOST, port)
            if not await cycle.ended:
                failures += 1

    shares = [count // concurrency + (n < count % concurrency) for n in range(concurrency)]
    await asyncio.gather(*(worker(share) for share in shares if share))
    return failures


async def handshake(control: Control, port: int, count: int, concurrency: int, warmup: int) -> None:
    failures = await cycles(port, warmup, concurrency)
    os.write(1, b"ready\n")
    if not await control.wait_for(b"go"):
        return
    started = time.perf_counter()
    failures += await cycles(port, count, concurrency)
    elapsed = time.perf_counter() - started
    os.write(1, b"done %.6f %d\n" % (elapsed, failures))
    await control.wait_for(b"quit")


async def main(argv: list[str]) -> None:
    control = Control(asyncio.get_running_loop())
    numbers = [int(word) for word in argv[1:] if not word.startswith("--")]
    if argv[0] == "push":
        await push(control, *numbers, frames="--no-frames" not in argv)
    else:
        await handshake(control, *numbers)


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.run(main(sys.argv[1:]))
    else:
        asyncio.run(main(sys.argv[1:]))
