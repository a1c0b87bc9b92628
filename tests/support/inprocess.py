"""A live ``wsconn.Session`` without the program: its stream is one end of a
``socket.socketpair()``, the test holds the other.

For the in-process tier (``tests/unit/test_sending.py``,
``tests/unit/test_session_serve.py``): the real read, write and timer loop,
no installed ``nginxws``, no listener, seconds to run.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection

from nginxws.streams import SocketStream
from nginxws.session import SessionProtocol, Timers
from nginxws.stats import Region
from nginxws.wsconn import SendWatch, Session

PAIR_BUFFER = 16 * 1024  # socket buffer sizes: small, so a few hundred KiB fill them


@contextmanager
def socket_pair() -> Iterator[tuple[SocketStream, socket.socket]]:
    """The session's stream and the client's end (non-blocking), closed after the block."""
    ours, theirs = socket.socketpair()
    for sock in (ours, theirs):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PAIR_BUFFER)
    theirs.setblocking(False)
    try:
        yield SocketStream(ours), theirs
    finally:
        ours.close()
        theirs.close()


def scratch_counters() -> memoryview:
    """A worker's statistics slot in a region of its own (private memory)."""
    return Region.private(worker_slots=1).worker_slot(0)


def new_session(stream: SocketStream, nursery: trio.Nursery, *, pingintvl: float, idleintvl: float,
                max_message_size: int, watch: SendWatch | None = None, limit: int = 4,
                send_timeout: float = 60.0) -> Session:
    """A session over ``stream``, past its handshake, its timers starting now (trio's clock)."""
    proto = SessionProtocol(Connection(ConnectionType.SERVER), Timers(pingintvl, idleintvl, trio.current_time()),
                            max_message_size)
    return Session(proto, stream, limit=limit, nursery=nursery, watch=watch or SendWatch(),
                   send_timeout=send_timeout, counters=scratch_counters())
