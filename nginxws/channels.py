"""Channels of one worker: which sessions a publish reaches.

Theory of operation
-------------------
* A channel is a name (``channel_names``) and the sessions of this worker
  that joined it, in the order they joined.  It exists while it has a
  member: the last one to leave removes it, so names that come and go leave
  nothing behind.  A session keeps the set of its own channels, so leaving
  them all when it ends costs one step per channel, not a search.
* A publish reaches every member once.  The frame of a message is built
  once per publish and written to each member in one pass (a session with
  permessage-deflate frames the message itself: its compressor is its own).
  Writes never wait (``wsconn.Session.deliver``), so the pass holds up no
  one and no member can leave or join in the middle of it.
* A member whose backlog already holds ``push_queue`` frames is not skipped
  silently: the publish reports it as *slow*, and the worker closes it
  (``SLOW_CLOSE_CODE``) and logs it.  The others get the message as usual.
* Publishing to a channel without members is not an error: nothing is
  delivered on this worker.

* With ``websocket_redis`` the worker watches its channels come and go
  (``watch``: a channel's first member joined, its last left) and tells the
  master, which subscribes the host in Redis to just those channels.
  Without it ``watch`` is None and joining costs nothing more.

The worker hands what a publish must reach on the other workers to the bus
(``bus``); this module knows only its own worker.  Nothing here touches a
socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wsproto.frame_protocol import FrameProtocol

# 1008 (policy violation): the client did not read what ``push_queue`` allows
# to wait for it.  The close frame tells a client library why, so it can
# reconnect rather than treat it as a network failure.
SLOW_CLOSE_CODE = 1008
SLOW_CLOSE_REASON = "slow subscriber"

# Frames a server sends carry no mask and, without extensions, no state
# between messages: one framer builds the shared frame of every publish.
_FRAMES = FrameProtocol(client=False, extensions=[])


class Subscriber(Protocol):
    """A session as a channel sees it (``wsconn.Session``)."""

    channels: set[str] | None  # the channels it joined; None while none
    limit: int  # frames that may wait for it (``push_queue``)

    def deliver(self, frame: bytes, message: str | bytes) -> bool | None:
        """Write a channel message (``frame``, already framed, unless the
        session frames ``message`` itself): True if written or queued, False
        if the session is closing or gone, None if its backlog is full."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``."""


class Channels:
    """The channels this worker's sessions joined."""

    __slots__ = ("_members", "_watch")

    def __init__(self, watch: Callable[[str, bool], None] | None = None) -> None:
        self._members: dict[str, dict[Subscriber, None]] = {}
        # Called with (name, True) when a channel gets its first member and
        # (name, False) when it loses its last.
        self._watch = watch

    def __len__(self) -> int:
        """The number of channels with at least one member."""
        return len(self._members)

    def count(self, name: str) -> int:
        """How many sessions of this worker are in channel ``name``."""
        members = self._members.get(name)
        return 0 if members is None else len(members)

    def join(self, subscriber: Subscriber, name: str) -> bool:
        """Add ``subscriber`` to ``name``; False if it was already a member."""
        mine = subscriber.channels
        if mine is None:
            mine = subscriber.channels = set()
        elif name in mine:
            return False
        mine.add(name)
        members = self._members.get(name)
        if members is None:
            members = self._members[name] = {}
            if self._watch is not None:
                self._watch(name, True)
        members[subscriber] = None
        return True

    def leave(self, subscriber: Subscriber, name: str) -> bool:
        """Take ``subscriber`` out of ``name``; False if it was not a member."""
        mine = subscriber.channels
        if not mine or name not in mine:
            return False
        mine.discard(name)
        if not mine:
            subscriber.channels = None
        self._drop(subscriber, name)
        return True

    def leave_all(self, subscriber: Subscriber) -> None:
        """Take ``subscriber`` out of every channel (it has ended)."""
        mine = subscriber.channels
        if mine:
            subscriber.channels = None
            for name in mine:
                self._drop(subscriber, name)

    def _drop(self, subscriber: Subscriber, name: str) -> None:
        members = self._members[name]
        del members[subscriber]
        if not members:
            del self._members[name]
            if self._watch is not None:
                self._watch(name, False)

    def publish(self, name: str, message: str | bytes) -> tuple[int, list[Subscriber]]:
        """Write ``message`` to every member of ``name``.

        Returns how many members it was written to, and the members that
        were too slow to take it (their backlog was full): the caller closes
        those.  The frame is built once per publish, whatever the number of
        members.
        """
        members = self._members.get(name)
        if not members:
            return 0, []
        frame = _FRAMES.send_data(message)
        delivered = 0
        slow: list[Subscriber] = []
        for subscriber in members:
            written = subscriber.deliver(frame, message)
            if written:
                delivered += 1
            elif written is None:
                slow.append(subscriber)
        return delivered, slow
