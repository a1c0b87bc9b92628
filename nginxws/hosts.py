"""Channels across hosts: the rules of the bus between hosts, with no socket.

Theory of operation
-------------------
* With ``websocket_redis``, the master of each host holds one link to Redis
  (``nginxws.redislink``).  The master already sees every publish of its
  host (``nginxws.bus``): it relays a worker's message to its other workers
  as without Redis, and also publishes it to Redis.  What Redis brings from
  other hosts it relays to its workers the same way, so the per-host
  fan-out is reused, not duplicated.
* No echo: every message a host publishes carries the host's id (random,
  drawn when its master starts, kept across reloads).  A host's own
  messages come back from Redis when it holds the channel too; it skips
  them, since it delivered them locally already, at once and in order.
* Interest: a host subscribes in Redis only to the channels its clients
  hold.  Each worker tells the master when a channel gets its first
  subscriber there and loses its last (``bus.SUBSCRIBE`` /
  ``bus.UNSUBSCRIBE``); ``Interest`` counts the workers per channel, across
  generations (a draining worker's channels stay subscribed until it
  leaves them or exits), and says when the host's first worker came and its
  last went: that is when the link subscribes and unsubscribes.  A worker
  that exits is dropped with all its channels.
* Retrying: a link that cannot reach Redis waits ``Backoff`` delays,
  doubling from ``BACKOFF_FIRST`` up to ``BACKOFF_MOST``, with jitter so
  that hosts which lost Redis together do not come back in step.
* On Redis a channel is ``CHANNEL_PREFIX`` + its name; a message is the
  publishing host's id (``HOST_ID_BYTES``), one byte of kind (``bus.TEXT``
  or ``bus.BINARY``) and the message's bytes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nginxws import bus
from nginxws.channel_names import valid_channel

CHANNEL_PREFIX = b"nginxws:"
HOST_ID_BYTES = 8
# The first retry comes soon (a Redis restart takes about a second); the
# longest wait keeps a host's channels at most this many seconds behind a
# Redis that is back, while a Redis that stays down costs one connect per
# host every few seconds.
BACKOFF_FIRST = 0.2  # seconds
BACKOFF_MOST = 5.0  # seconds
BACKOFF_JITTER = 0.2  # each delay is drawn within ±20 % of its nominal value


class Interest:
    """Which workers hold which channels, for the host's subscriptions in Redis.

    Workers are keys the master chooses (its worker pids).  ``join`` and
    ``leave`` answer whether the host-wide set of channels changed.
    """

    __slots__ = ("_holders", "_held")

    def __init__(self) -> None:
        self._holders: dict[str, set[int]] = {}  # channel -> workers holding it
        self._held: dict[int, set[str]] = {}  # worker -> its channels

    def __len__(self) -> int:
        """How many channels the host holds."""
        return len(self._holders)

    def __contains__(self, name: str) -> bool:
        return name in self._holders

    @property
    def channels(self) -> list[str]:
        """Every channel a worker of the host holds."""
        return list(self._holders)

    def holders(self, name: str) -> set[int]:
        """The workers that hold ``name`` (empty when none)."""
        return self._holders.get(name) or set()

    def join(self, worker: int, name: str) -> bool:
        """``worker`` holds ``name`` now; True when no worker of the host held it before."""
        held = self._held.setdefault(worker, set())
        if name in held:
            return False
        held.add(name)
        holders = self._holders.get(name)
        if holders is None:
            self._holders[name] = {worker}
            return True
        holders.add(worker)
        return False

    def leave(self, worker: int, name: str) -> bool:
        """``worker`` holds ``name`` no more; True when it was the host's last holder."""
        held = self._held.get(worker)
        if not held or name not in held:
            return False
        held.discard(name)
        if not held:
            del self._held[worker]
        return self._drop(worker, name)

    def drop(self, worker: int) -> list[str]:
        """``worker`` has exited: the channels the host held through it alone."""
        return [name for name in self._held.pop(worker, ()) if self._drop(worker, name)]

    def _drop(self, worker: int, name: str) -> bool:
        holders = self._holders[name]
        holders.discard(worker)
        if holders:
            return False
        del self._holders[name]
        return True


class Backoff:
    """The delays between attempts to reach Redis: ``next`` grows, ``reset`` after a success."""

    __slots__ = ("first", "most", "jitter", "_random", "_nominal")

    def __init__(self, first: float = BACKOFF_FIRST, most: float = BACKOFF_MOST, jitter: float = BACKOFF_JITTER,
                 rand: Callable[[], float] = random.random) -> None:
        self.first, self.most, self.jitter = first, most, jitter
        self._random = rand
        self._nominal = first

    def next(self) -> float:
        """The delay before the next attempt (seconds)."""
        nominal = self._nominal
        self._nominal = min(nominal * 2, self.most)
        return nominal * (1 + self.jitter * (2 * self._random() - 1))

    def reset(self) -> None:
        self._nominal = self.first


def new_host_id() -> bytes:
    """This host's id on the bus between hosts."""
    return random.randbytes(HOST_ID_BYTES)


def redis_channel(name: str) -> bytes:
    """The Redis channel of channel ``name``."""
    return CHANNEL_PREFIX + name.encode("ascii")


def to_redis(host_id: bytes, frame: bytes) -> tuple[bytes, bytes]:
    """A bus message frame as Redis carries it: (channel, message)."""
    size = frame[bus.KIND_AT + 1]
    start = bus.HEAD.size + size
    return CHANNEL_PREFIX + frame[bus.HEAD.size:start], host_id + frame[bus.KIND_AT:bus.KIND_AT + 1] + frame[start:]


def from_redis(host_id: bytes, channel: bytes, message: bytes) -> bytes | None:
    """The bus frame of a message Redis brought; None for this host's own
    messages and for anything no nginxws host publishes (a foreign
    publisher on our prefix cannot make a worker fail)."""
    if len(message) < HOST_ID_BYTES + 1 or message.startswith(host_id) or not channel.startswith(CHANNEL_PREFIX):
        return None
    kind = message[HOST_ID_BYTES]
    data = message[HOST_ID_BYTES + 1:]
    raw = channel[len(CHANNEL_PREFIX):]
    try:
        name = raw.decode("ascii")
        if kind == bus.TEXT:
            data.decode()
    except UnicodeDecodeError:
        return None
    if kind not in (bus.TEXT, bus.BINARY) or not valid_channel(name):
        return None
    return bus.HEAD.pack(2 + len(raw) + len(data), kind, len(raw)) + raw + data
