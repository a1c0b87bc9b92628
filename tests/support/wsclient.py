"""A raw WebSocket client for tests that must see or send what friendly
clients hide: PINGs, unanswered PINGs, unmasked or malformed frames.

Built on wsproto (the sans-I/O WebSocket library trio-websocket uses) over a
blocking socket with timeouts, so every wait in a test is bounded.
"""

from __future__ import annotations

import socket
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)


class RawClient:
    """One client connection; ``events(timeout)`` returns what arrived."""

    def __init__(self, port: int, path: str = "/ws", host: str = "127.0.0.1", *, auto_pong: bool = True,
                 extensions: list | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.auto_pong = auto_pong
        self.closed: CloseConnection | None = None
        self.received_bytes = 0  # as they came off the wire (compressed, with deflate)
        self.sock.sendall(self.ws.send(Request(host=f"{host}:{port}", target=path, extensions=extensions or [])))
        self._pending: list = []
        self._parts: list = []
        accepted = self._until(lambda e: isinstance(e, AcceptConnection), 5)
        if accepted is None:
            raise ConnectionError("handshake failed")
        self.extensions = accepted.extensions  # those the server agreed to

    def _read(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            data = b""
        self.received_bytes += len(data)
        self.ws.receive_data(data or None)
        for event in self.ws.events():
            if isinstance(event, Ping) and self.auto_pong:
                self.sock.sendall(self.ws.send(event.response()))
            if isinstance(event, CloseConnection):
                self.closed = event
                try:
                    self.sock.sendall(self.ws.send(event.response()))
                except Exception:
                    pass
            if isinstance(event, Message):
                self._parts.append(event.data)
                if not event.message_finished:
                    continue
                data = "".join(self._parts) if isinstance(event, TextMessage) else b"".join(self._parts)
                self._parts = []
                self._pending.append(data)
                continue
            self._pending.append(event)
        return bool(data)

    def _until(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            for i, item in enumerate(self._pending):
                if predicate(item):
                    return self._pending.pop(i)
            if self.closed is not None and not any(predicate(x) for x in self._pending):
                if predicate(self.closed):
                    return self.closed
                return None
            if not self._read(deadline):
                if time.monotonic() >= deadline:
                    return None

    def message(self, timeout: float = 5):
        """The next text or binary message."""
        return self._until(lambda e: isinstance(e, (str, bytes)), timeout)

    def ping(self, timeout: float = 5) -> Ping | None:
        return self._until(lambda e: isinstance(e, Ping), timeout)

    def wait_closed(self, timeout: float = 5) -> CloseConnection | None:
        return self._until(lambda e: isinstance(e, CloseConnection), timeout)

    def send(self, message: str | bytes) -> None:
        event = TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        self.sock.sendall(self.ws.send(event))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pong(self, payload: bytes = b"") -> None:
        self.sock.sendall(self.ws.send(Pong(payload=payload)))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
