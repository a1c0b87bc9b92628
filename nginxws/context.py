"""What the connection handlers may use of their worker (``worker.Worker``).

The front door, the push listener and the sessions are handed the worker
they run in; this is the part of it they reach into, typed, so that a
reader sees what a connection can touch and a test can hand in a stand-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import trio

    from nginxws.conf.model import Server
    from nginxws.log import ErrorLogger, Exchange
    from nginxws.registry import Registry
    from nginxws.routing import Router
    from nginxws.session import PushAddress
    from nginxws.wsconn import SendWatch, Session


class WorkerContext(Protocol):
    router: Router  # listen address -> servers -> locations
    registry: Registry  # this worker's push IDs
    send_watch: SendWatch  # send_timeout of the sessions' flushers
    error_log: ErrorLogger
    nursery: trio.Nursery | None  # the connections nursery, where flushers run too

    def push_addresses(self, server: Server) -> tuple[PushAddress, ...]:
        """The push URLs' addresses of this worker for ``server``."""

    def add_session(self, session: Session) -> None: ...

    def remove_session(self, session: Session) -> None: ...

    def log_access(self, exchange: Exchange, remote, local) -> None: ...
