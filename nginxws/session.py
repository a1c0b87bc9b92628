"""Per-connection rules: the welcome message and the ping/idle timers.

Theory of operation
-------------------
Timers measure silence *from the client*.  Any bytes received from it (a
data frame, a ping or a pong) reset both timers; what the server itself
sends never does, so a dead client that pushes keep flowing to is still
closed.  After ``pingintvl`` of silence the server sends a PING, and again
every ``pingintvl`` while the silence lasts; after ``idleintvl`` of silence
it sends a close frame (1001, "idle timeout").  A live client answers each
PING with a PONG, which resets the timers, so it is never idle.

The original module reset its timers on receive only as well, but sent a
single PING per silence; repeating it lets a client whose first PONG was
lost still prove it is alive.

Everything here is pure: time comes in as a number, decisions come out as
values, so the rules are tested with a fake clock.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

IDLE_CLOSE_CODE = 1001
IDLE_CLOSE_REASON = "idle timeout"
SHUTDOWN_CLOSE_CODE = 1001
SHUTDOWN_CLOSE_REASON = "server shutting down"
ID_BYTES = 18  # 144 random bits, 24 URL-safe characters


def new_id() -> str:
    """A fresh push ID: unguessable, URL-safe, never reused in practice.

    The original used the socket's fd, so a late push could reach a newcomer
    holding the same fd.  144 random bits make a collision as likely as
    guessing a key.
    """
    return secrets.token_urlsafe(ID_BYTES)


class Action(enum.Enum):
    """What the timers ask the connection to do now."""

    NOTHING = 0
    PING = 1
    CLOSE = 2


class Timers:
    """The ping/idle timers of one connection, driven by a clock value.

    ``received(now)`` is called whenever bytes arrive from the client;
    ``due(now)`` says what to do at ``now``; ``deadline`` is the next instant
    at which ``due`` may answer something other than ``NOTHING``.
    """

    __slots__ = ("pingintvl", "idleintvl", "last_received", "next_ping")

    def __init__(self, pingintvl: float, idleintvl: float, now: float) -> None:
        self.pingintvl = pingintvl
        self.idleintvl = idleintvl
        self.last_received = now
        self.next_ping = now + pingintvl

    def received(self, now: float) -> None:
        self.last_received = now
        self.next_ping = now + self.pingintvl

    @property
    def idle_at(self) -> float:
        return self.last_received + self.idleintvl

    @property
    def deadline(self) -> float:
        return min(self.next_ping, self.idle_at)

    def due(self, now: float) -> Action:
        if now >= self.idle_at:
            return Action.CLOSE
        if now >= self.next_ping:
            # Re-arm one interval after this ping, skipping intervals missed
            # while the loop was late, so pings never come in bursts.
            missed = int((now - self.next_ping) // self.pingintvl) + 1
            self.next_ping += missed * self.pingintvl
            return Action.PING
        return Action.NOTHING


@dataclass(frozen=True, slots=True)
class PushAddress:
    """One advertised address of a push listener: ``host`` as it goes in a URL."""

    host: str
    port: int

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def welcome_message(push_id: str, addresses: tuple[PushAddress, ...], path: str) -> str:
    """The text frame sent right after the handshake (the original's format).

    ``http://ID@ADDR:PORT/LOCATION`` per advertised address, joined by ``,``.
    """
    return ",".join(f"http://{push_id}@{a.netloc}{path}" for a in addresses)
