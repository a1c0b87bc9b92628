"""The subscribers of `bench/run.py fanout`: one of several processes, so that on a small
machine the client keeps up with the server it measures.

    python bench/fanout_load.py PORT PATH SUBSCRIBERS PUBLISHES PAYLOAD READ_BATCH

Opens SUBSCRIBERS WebSocket clients to ``ws://127.0.0.1:PORT{PATH}`` (loadgen's `WSClient`: an
`asyncio.Protocol`, no task per message; on uvloop when it is installed), 100 handshakes at a
time, prints ``ready`` and then answers the parent's lines on stdin (shared.Control):

- ``prime``: waits up to `PRIME_WAIT` seconds for every subscriber to have received a warm-up
  message (a body starting with `WARMUP`), then prints ``primed MISSING``: how many have not.
  A subscriber counts as subscribed from its first warm-up message on; the parent publishes
  warm-ups until none is missing, then the measured messages.
- ``go``: the measured phase begins (this process's CPU is counted from here).  From here on
  each subscriber's socket wakes the client once READ_BATCH messages of PAYLOAD bytes wait in
  it (``SO_RCVLOWAT``), and for each message of the last READ_BATCH - 1: see `Tally.go`.
- ``report``: prints ``report DELIVERED VIOLATIONS LAST_NS CPU DROPPED`` at once: LAST_NS is
  `time.monotonic_ns()` at the last delivery (CLOCK_MONOTONIC, the parent's clock too), CPU this
  process's seconds since ``go``, DROPPED the subscribers whose connection has ended.

Each measured message's body starts with its number, 8 digits, 0 to PUBLISHES - 1. A
subscriber counts a message as delivered when its number is above every number it has seen;
any other message (a repeat, one out of order, a number out of range, a body that is neither)
is an order violation; warm-up messages are not counted. Lost deliveries are then
SUBSCRIBERS × PUBLISHES minus the delivered. It exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import sys
import time

import loadgen
from shared import Control

try:
    import uvloop
except ImportError:
    uvloop = None

WARMUP = b"warmup"
SEQ_DIGITS = 8
CONNECT_CONCURRENCY = 100
PRIME_WAIT = 2.0


def message(seq: int, size: int) -> bytes:
    """Measured message `seq`: its number in `SEQ_DIGITS` digits, padded to `size` bytes."""
    return (b"%0*d " % (SEQ_DIGITS, seq)).ljust(size, b".")


def warmup(size: int) -> bytes:
    """A warm-up message of `size` bytes."""
    return (WARMUP + b" ").ljust(size, b".")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Tally:
    """What this process's subscribers received: deliveries, violations, who is primed."""

    def __init__(self, subscribers: int, publishes: int, payload: int = 0, read_batch: int = 1) -> None:
        self.publishes = publishes
        self.frame_bytes = payload + (2 if payload < 126 else 4)  # a server's frame: no mask
        self.read_batch = read_batch
        self.highest = [-1] * subscribers
        """The highest message number each subscriber has had."""
        self.primed = bytearray(subscribers)
        self.unprimed = subscribers
        self.all_primed = asyncio.Event()
        self.delivered = 0
        self.violations = 0
        self.last_ns = 0
        self.cpu_at_go = 0.0
        self.clients: list[loadgen.WSClient] = []

    def on_message(self, index: int, payload: bytes) -> None:
        head = payload[:SEQ_DIGITS]
        if head.isdigit():
            seq = int(head)
            if self.highest[index] < seq < self.publishes:
                self.highest[index] = seq
                self.delivered += 1
                self.last_ns = time.monotonic_ns()
                if self.read_batch > 1 and seq == self.publishes - self.read_batch:
                    self._low_water(self.clients[index], 1)  # the tail: one wake-up per message
                return
        elif payload.startswith(WARMUP):
            if not self.primed[index]:
                self.primed[index] = 1
                self.unprimed -= 1
                if not self.unprimed:
                    self.all_primed.set()
            return
        self.violations += 1

    async def wait_primed(self) -> int:
        """How many subscribers still have no warm-up message after waiting `PRIME_WAIT`."""
        try:
            await asyncio.wait_for(self.all_primed.wait(), PRIME_WAIT)
        except asyncio.TimeoutError:
            pass
        return self.unprimed

    def go(self) -> None:
        """The measured phase begins.

        With ``read_batch`` > 1 each socket is readable only once that many messages wait in
        it, so a subscriber costs the client one wake-up and one read per batch instead of per
        message (a subscriber on another machine costs the server nothing to wake; on loopback
        the sender pays the receiver's wake-up).  The server sends each frame at once either
        way: only the client's reads are batched.  Near the end the threshold drops to one
        byte, so the last messages are read, and timed, as they arrive.
        """
        if self.read_batch > 1 and self.publishes > self.read_batch:
            for client in self.clients:
                self._low_water(client, self.read_batch * self.frame_bytes)
        self.cpu_at_go = _cpu_seconds()

    @staticmethod
    def _low_water(client: loadgen.WSClient, size: int) -> None:
        if client.transport is not None:
            sock = client.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)

    def report(self) -> None:
        dropped = sum(1 for client in self.clients if client.closed.done())
        os.write(1, b"report %d %d %d %.6f %d\n" % (
            self.delivered, self.violations, self.last_ns, _cpu_seconds() - self.cpu_at_go,
            dropped,
        ))


async def main(argv: list[str]) -> None:
    port, path, subscribers, publishes = int(argv[0]), argv[1], int(argv[2]), int(argv[3])
    payload, read_batch = int(argv[4]), int(argv[5])
    control = Control(asyncio.get_running_loop())
    tally = Tally(subscribers, publishes, payload, read_batch)
    target = loadgen.Target(port, welcome=False, path=path)
    try:
        tally.clients = await loadgen.connect_clients(
            target, subscribers, CONNECT_CONCURRENCY, tally.on_message
        )
    except (OSError, loadgen.ProtocolError) as error:
        os.write(1, f"error {type(error).__name__}: {error}".replace("\n", " ").encode() + b"\n")
        return
    os.write(1, b"ready\n")
    try:
        while (line := await control.lines.get()) is not None:
            if line == b"prime":
                os.write(1, b"primed %d\n" % await tally.wait_primed())
            elif line == b"go":
                tally.go()
            elif line == b"report":
                tally.report()
    finally:
        loadgen.abort_all(tally.clients)


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.run(main(sys.argv[1:]))
    else:
        asyncio.run(main(sys.argv[1:]))
