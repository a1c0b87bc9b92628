"""The worker's TCP streams and listeners, on trio's low-level I/O.

trio's ``SocketStream`` pays, on every call, for a conflict detector, an
error-translating context manager, a memoryview and a trip through the
scheduler even when the kernel had the bytes, or took them, at once.  On
the push path that is a third of trio's own cost of a request and its
answer (``docs/performance.md``).  These streams do the same job with
``trio.lowlevel``'s public building blocks and keep trio's contract where
the worker relies on it:

* ``receive_some`` and ``accept`` are checkpoints: they yield to the
  scheduler even when data is waiting, so a client that floods a
  connection cannot starve the others.
* ``send_all`` first checks for cancellation; it yields only when it has to
  wait for the socket.  A send the kernel takes at once returns without a
  trip through the scheduler, like nginx's own write handler.  Every caller
  in the worker reads or waits again right after it sends.
* A peer that broke the connection is ``trio.BrokenResourceError``; a
  stream used after ``aclose`` is ``trio.ClosedResourceError``; ``aclose``
  tells trio first, so a task still waiting on the socket is woken.
  ``close`` does the same without a checkpoint, for a task that is done
  with the connection and has nothing left to wait for.
"""

from __future__ import annotations

import errno
import os
import socket

import trio
from trio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    notify_closing,
    wait_readable,
    wait_writable,
)

DEFAULT_RECEIVE_SIZE = 64 * 1024
# accept() failures that concern only the connection being accepted: the
# listener goes on.  trio's SocketListener ignores the same ones (EPERM: a
# firewall rule refused the connection; ECONNRESET, ECONNABORTED: the client
# gave up while it waited in the backlog).
_IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT", "EPROTONOSUPPORT",
        "ETIMEDOUT", "ECONNRESET",
    ) if hasattr(errno, name)
)


class SocketStream(trio.abc.Stream):
    """One accepted connection; ``socket`` is the stdlib socket (non-blocking).

    ``tls`` is False: what a session writes goes to ``socket`` as it is
    (``tls.TlsStream``, whose is True, encrypts it first).
    """

    __slots__ = ("socket",)
    tls = False

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket = sock

    def nagle(self) -> None:
        """Let the kernel hold small writes while earlier data waits for its
        ACK (``tcp_nodelay off``)."""
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        sock = self.socket
        size = max_bytes or DEFAULT_RECEIVE_SIZE
        await checkpoint_if_cancelled()
        try:
            data = sock.recv(size)
        except BlockingIOError:
            pass
        except OSError as err:
            raise _stream_error(err) from None
        else:
            await cancel_shielded_checkpoint()
            return data
        while True:
            try:
                await wait_readable(sock)
            except OSError as err:
                raise _stream_error(err) from None
            try:
                return sock.recv(size)
            except BlockingIOError:
                continue
            except OSError as err:
                raise _stream_error(err) from None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        await checkpoint_if_cancelled()
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as err:
            raise _stream_error(err) from None
        if sent == len(data):
            return
        with memoryview(data) as view:
            while sent < len(view):
                try:
                    await wait_writable(sock)
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    continue
                except OSError as err:
                    raise _stream_error(err) from None

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of the file ``fd`` from ``offset`` with
        ``os.sendfile`` (the kernel copies them; nothing is read into Python),
        waiting for the socket as ``send_all`` does.  Returns the bytes sent:
        fewer than ``count`` only when the file ended.  Always a checkpoint."""
        sock = self.socket
        await checkpoint_if_cancelled()
        sent = 0
        waited = False
        while sent < count:
            try:
                done = os.sendfile(sock.fileno(), fd, offset + sent, count - sent)
            except BlockingIOError:
                waited = True
                try:
                    await wait_writable(sock)
                except OSError as err:
                    raise _stream_error(err) from None
                continue
            except OSError as err:
                raise _stream_error(err) from None
            if not done:
                break
            sent += done
        if not waited:
            await cancel_shielded_checkpoint()
        return sent

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the kernel takes now, without waiting: the number of
        bytes sent (0 when the socket buffer is full).  Never a checkpoint."""
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as err:
            raise _stream_error(err) from None

    async def wait_send_all_might_not_block(self) -> None:
        if self.socket.fileno() == -1:
            raise trio.ClosedResourceError("this stream was closed")
        try:
            await wait_writable(self.socket)
        except OSError as err:
            raise _stream_error(err) from None

    def close(self) -> None:
        """Close now (idempotent); a task waiting on the socket is woken
        with ``ClosedResourceError``.  Never a checkpoint."""
        if self.socket.fileno() != -1:
            notify_closing(self.socket)
            self.socket.close()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()


class Listener:
    """A listening socket that hands out ``SocketStream`` connections.

    ``tls`` is what its connections need to speak TLS (``nginxws.tls``),
    None for plain ones: the worker reads it once per listener.
    """

    __slots__ = ("socket", "tls")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self.tls = None

    async def accept(self) -> SocketStream:
        sock = self.socket
        await checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                waited = True
                await wait_readable(sock)
                continue
            except OSError as err:
                if err.errno in _IGNORABLE_ACCEPT_ERRNOS:
                    continue
                if err.errno == errno.EBADF:
                    raise trio.ClosedResourceError from None
                raise
            try:
                stream = SocketStream(conn)
            except OSError:
                conn.close()
                continue
            if not waited:
                await cancel_shielded_checkpoint()
            return stream

    async def aclose(self) -> None:
        if self.socket.fileno() != -1:
            notify_closing(self.socket)
            self.socket.close()
        await checkpoint()


def _stream_error(err: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if err.errno == errno.EBADF:
        return trio.ClosedResourceError("this stream was closed")
    return trio.BrokenResourceError(f"socket connection broken: {err}")
