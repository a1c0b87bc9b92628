"""What the connection handlers may use of their worker (``worker.Worker``).

The front door, the push listener and the sessions are handed the worker
they run in; this is the part of it they reach into, typed, so that a
reader sees what a connection can touch and a test can hand in a stand-in.
It names only the pure modules: the handlers import it, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import trio

    from nginxws.channels import Channels
    from nginxws.conf.model import Server
    from nginxws.log import ErrorLogger, Exchange
    from nginxws.registry import Registry
    from nginxws.routing import Router
    from nginxws.session import PushAddress


class LiveSession(Protocol):
    """A session as its worker tracks it (``wsconn.Session``)."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``."""


class SendWatching(Protocol):
    """The worker's ``send_timeout`` watch (``wsconn.SendWatch``)."""

    def start(self, session: LiveSession, deadline: float) -> None: ...

    def done(self) -> None: ...

    def watching(self) -> bool: ...


class WorkerContext(Protocol):
    router: Router  # listen address -> servers -> locations
    registry: Registry  # this worker's push IDs
    channels: Channels  # this worker's channels and their sessions
    send_watch: SendWatching
    error_log: ErrorLogger
    log_info: bool  # whether error_log takes info: connection-level lines are only built then
    nursery: trio.Nursery | None  # the connections nursery, where flushers run too

    def push_addresses(self, server: Server) -> tuple[PushAddress, ...]:
        """The push URLs' addresses of this worker for ``server``."""

    def publish(self, channel: str, message: str | bytes) -> int:
        """Deliver to ``channel`` on every worker of the host; the number of
        this worker's subscribers that got it."""

    def add_session(self, session: LiveSession) -> None: ...

    def remove_session(self, session: LiveSession) -> None: ...

    def log_access(self, exchange: Exchange, remote, local) -> None: ...
