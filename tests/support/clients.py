"""What end-to-end tests do as clients: read the welcome's push URLs, and
tell the two ways a server can turn a connection away.
"""

from __future__ import annotations

import re
import socket

CLIENT_TIMEOUT = 5.0  # seconds for any one receive

PUSH_URL = re.compile(
    r"http://(?P<id>[A-Za-z0-9_-]{24})@(?P<address>(?P<host>\[[0-9a-f:.]+\]|[0-9.]+):(?P<port>\d+))(?P<path>/\S*)"
)
"""One push URL of a welcome: ``http://ID@HOST:PORT/PATH``."""

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample Sec-WebSocket-Key


def handshake(path: bytes = b"/ws") -> bytes:
    """An opening handshake for ``path``, as raw bytes."""
    return (b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, KEY))


def push_urls(welcome: str) -> list[re.Match[str]]:
    """Every push URL of a welcome message (one per advertised address), each a ``PUSH_URL`` match."""
    urls = [PUSH_URL.fullmatch(part) for part in welcome.split(",")]
    assert all(urls), welcome
    return urls


def first_push_url(ws, timeout: float = CLIENT_TIMEOUT) -> str:
    """Receive the welcome on a ``websockets`` connection; its first push URL."""
    return ws.recv(timeout=timeout).split(",")[0]


def connection_refused(port: int, timeout: float = CLIENT_TIMEOUT) -> bool:
    """Whether nothing listens on 127.0.0.1:``port``: the connection itself is refused."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
    except ConnectionRefusedError:
        return True
    return False


def closed_without_answer(port: int, timeout: float = CLIENT_TIMEOUT) -> bool:
    """Whether a connection to 127.0.0.1:``port`` is accepted, then closed with
    no answer to a handshake (what a worker out of ``worker_connections`` does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(handshake())
            return sock.recv(4096) == b""
        except ConnectionResetError:
            return True
        except BrokenPipeError:
            return True
