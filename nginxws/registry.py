"""Push IDs -> sessions, and the answers to a push.

Theory of operation
-------------------
* Each worker owns its push listeners; a client's welcome URLs name the
  worker that holds it.  The registry is per worker and knows only its own
  sessions.
* An ID is unique and never reused (``session.new_id``).  A push that names
  an ID this worker does not hold -- unknown, departed, or held by another
  worker -- is 404 and is never delivered to anyone else.
* A push never waits for a client: its frame is written at once, or kept
  in the session's backlog while the client's socket is full (at most
  ``push_queue`` frames), and answered 204; when the backlog is full the
  answer is 503, so a slow client cannot grow the worker's memory without
  bound.

Everything here is plain code; the worker moves bytes in and out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nginxws.conf.model import Location

class PushError(Exception):
    """A push that cannot be delivered, with the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PushTarget(Protocol):
    """A session as a push sees it."""

    def full(self) -> bool:
        """True while ``push_queue`` frames wait for the client."""

    def push(self, message: str | bytes) -> bool:
        """Hand ``message`` to the client's connection without waiting for
        the client; False if the client has gone."""


@dataclass(slots=True)
class Entry:
    """What the registry holds for one session."""

    location: Location
    target: PushTarget


class Registry:
    """The push IDs this worker holds."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, push_id: str) -> bool:
        return push_id in self._entries

    def add(self, push_id: str, entry: Entry) -> None:
        if push_id in self._entries:
            raise ValueError("push ID reused")
        self._entries[push_id] = entry

    def remove(self, push_id: str) -> None:
        self._entries.pop(push_id, None)

    def session(self, push_id: str, location: Location) -> PushTarget:
        """The session ``push_id`` names at ``location``, full or not; 404 if
        this worker does not hold it."""
        entry = self._entries.get(push_id)
        if entry is None or entry.location is not location:
            raise PushError(404, "unknown push ID")
        return entry.target

    def target(self, push_id: str, location: Location) -> PushTarget:
        """The session a push to ``push_id`` at ``location`` goes to, or
        PushError: 404 for an ID not held here, 503 while its backlog is full."""
        entry = self._entries.get(push_id)
        if entry is None or entry.location is not location:
            raise PushError(404, "unknown push ID")
        if entry.target.full():
            raise PushError(503, "client is not reading fast enough")
        return entry.target
