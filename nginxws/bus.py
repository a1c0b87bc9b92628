"""The host's bus: a publish on one worker reaches the channels of every other.

Theory of operation
-------------------
* Workers know nothing of each other; each already has one channel to the
  master (the socket pair its order came on, then its lifeline).  After its
  ``ready`` line, that channel carries *bus frames* both ways: a worker
  sends the master each message published on it, and the master relays it
  to every other worker that is ready, of every generation (a draining
  worker's subscribers still get what is published after a reload; a
  respawned worker is relayed to once it reports ready).
* Order: a worker writes its frames in publish order on one stream, the
  master reads them in that order and queues each for every other worker in
  that order, so messages published over one connection reach every
  subscriber in the order they were published.  (The publishing worker
  delivers to its own subscribers at once, before its frame leaves.)
* Nothing waits for a slow reader: the worker queues frames for the master
  without waiting, and the master queues for each worker separately, so one
  worker that is busy holds up no other.  A queue is bounded
  (``QUEUE_BYTES``); past it, frames for that reader are dropped and the
  drop is logged with ``[alert]``: it means a process has stopped reading.
* A frame is ``!I`` (the length of what follows), one byte of kind, one
  byte of the channel name's length, the name (ASCII), the message (UTF-8
  for text).  The master splits frames by their length and forwards
  messages as they are; only workers decode them.
* Kinds: ``TEXT`` and ``BINARY`` are messages, both ways.  With
  ``websocket_redis`` (the bus between hosts, ``nginxws.redislink``) three
  more carry what the master needs and tells: a worker sends ``SUBSCRIBE``
  when a channel gets its first subscriber on that worker and
  ``UNSUBSCRIBE`` when it loses its last (name, no message), and the master
  sends ``REMOTE_UP`` / ``REMOTE_DOWN`` (no name) when its link to Redis
  comes up or goes down, and once to each worker as it becomes ready.
  Without Redis none of them is ever sent.

The master is the one process per host that sees every publish: the bus
between hosts plugs in there (``nginxws.master``).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable

import trio

HEAD = struct.Struct("!IBB")  # length of the rest, kind, name length
TEXT, BINARY = 0, 1  # a message, both ways
SUBSCRIBE, UNSUBSCRIBE = 2, 3  # worker -> master: a channel's first subscriber came, its last left
REMOTE_UP, REMOTE_DOWN = 4, 5  # master -> worker: the bus between hosts can (not) be reached
KIND_AT = 4  # the kind's offset in a frame
RECEIVE_BYTES = 256 * 1024
# Bytes queued for one reader before frames for it are dropped: well above
# what a reading process ever falls behind by, far below a worker's memory.
QUEUE_BYTES = 64 * 1024 * 1024


def encode(name: str, message: str | bytes) -> bytes:
    """One bus frame: ``message`` published to channel ``name``."""
    if isinstance(message, str):
        kind, data = TEXT, message.encode()
    else:
        kind, data = BINARY, message
    raw = name.encode("ascii")
    return HEAD.pack(2 + len(raw) + len(data), kind, len(raw)) + raw + data


def control(kind: int, name: str = "") -> bytes:
    """A frame that carries no message: ``SUBSCRIBE``/``UNSUBSCRIBE`` ``name``, ``REMOTE_UP``/``REMOTE_DOWN``."""
    raw = name.encode("ascii")
    return HEAD.pack(2 + len(raw), kind, len(raw)) + raw


def kind(frame: bytes) -> int:
    """The kind of one whole frame."""
    return frame[KIND_AT]


def channel(frame: bytes) -> str:
    """The channel name of one whole frame (a message, ``SUBSCRIBE`` or ``UNSUBSCRIBE``)."""
    return frame[HEAD.size:HEAD.size + frame[KIND_AT + 1]].decode("ascii")


def decode(frame: bytes | memoryview) -> tuple[str, str | bytes]:
    """The channel name and the message of one whole frame (as ``Splitter`` gives it)."""
    _, kind, size = HEAD.unpack_from(frame)
    start = HEAD.size + size
    name = bytes(frame[HEAD.size:start]).decode("ascii")
    data = bytes(frame[start:])
    return name, data.decode() if kind == TEXT else data


class Splitter:
    """Bytes read from a bus stream in, whole frames out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        pos, end = 0, len(buffer)
        while end - pos >= 4:
            size = 4 + int.from_bytes(buffer[pos:pos + 4], "big")
            if end - pos < size:
                break
            frames.append(bytes(buffer[pos:pos + size]))
            pos += size
        del buffer[:pos]
        return frames


class Outbox:
    """Frames for one reader, written in order by ``run`` without holding up the writer.

    ``put`` never waits; ``run`` writes everything queued in one write each
    time the stream takes more.  Past ``QUEUE_BYTES`` a frame is dropped and
    ``on_drop`` is called (once per run of drops).
    """

    __slots__ = ("_frames", "_bytes", "_wakeup", "_dropping", "_on_drop")

    def __init__(self, on_drop: Callable[[], None]) -> None:
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self._wakeup = trio.Event()
        self._dropping = False
        self._on_drop = on_drop

    def put(self, frame: bytes) -> None:
        if self._bytes + len(frame) > QUEUE_BYTES:
            if not self._dropping:
                self._dropping = True
                self._on_drop()
            return
        self._dropping = False
        self._frames.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()

    async def run(self, stream: trio.abc.SendStream) -> None:
        """Write queued frames to ``stream`` until cancelled or the stream breaks."""
        frames = self._frames
        while True:
            if not frames:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            data = b"".join(frames)
            frames.clear()
            self._bytes = 0
            await stream.send_all(data)


async def receive(stream: trio.abc.ReceiveStream, deliver: Callable[[bytes], None],
                  initial: bytes = b"") -> None:
    """Hand each frame read from ``stream`` to ``deliver`` until the stream ends."""
    splitter = Splitter()
    for frame in splitter.feed(initial):
        deliver(frame)
    while True:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return
        for frame in splitter.feed(data):
            deliver(frame)
