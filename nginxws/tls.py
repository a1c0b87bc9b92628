"""TLS at run time: a worker's contexts, the SNI choice, and the TLS stream.

Theory of operation
-------------------
* Each worker builds its ``ssl.SSLContext`` objects from the model when it
  starts (``WorkerTls``, with ``conf.tls.server_context``): one per server
  with a certificate, plus one per ``listen ... ssl`` address, made from
  that address's default server, whose SNI callback picks the certificate.
  A reload starts new workers, which read the files again: a renewed
  certificate reaches new clients while the old workers keep theirs.
* SNI picks the server as nginx does (``ngx_http_ssl_servername``): the name
  the client sent is looked up among the address's ``server_name``s with
  routing's own rules (:func:`choose_server`), and that server's certificate
  is used if it has one, the default server's otherwise.  The protocols and
  ciphers stay the default server's.  The ``Host`` header then routes the
  request as over plain HTTP.
* A front-door connection is TLS from its first byte: the handshake must
  end within the default server's ``client_header_timeout``.  A first byte
  that cannot begin a TLS record is plain HTTP: it is read as a request and
  answered ``400 The plain HTTP request was sent to HTTPS port``, as nginx
  answers it.
* Sessions write without waiting (``wsconn.Session.write``), which
  ``trio.SSLStream`` cannot do, so the front door's TLS connections are
  :class:`TlsStream`: ``ssl.SSLObject`` over memory BIOs, as
  ``trio.SSLStream`` drives it, with ``streams.SocketStream``'s interface
  (``send_nowait`` included).  A push listener's connection
  (``websocket push_ssl=on``) is read and answered with ``send_all``, and is
  a ``trio.SSLStream``.
* Nothing here runs for a connection that is not TLS: the worker tells
  them apart once per listener.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

import trio
from trio.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled, wait_readable

from nginxws.conf.address import Endpoint, endpoint_text, endpoints
from nginxws.conf.model import Http, Server, Ssl
from nginxws.conf.tls import server_context, ssl_reason
from nginxws.routing import Router, ServerGroup
from nginxws.streams import DEFAULT_RECEIVE_SIZE, SocketStream

# One read of TLS records; a record holds up to 16 KiB of data.
RECORD_READ = 64 * 1024
# The first byte of a TLS (or SSLv2-compatible) ClientHello, as nginx tells
# TLS from plain HTTP on an ssl port (ngx_http_ssl_handshake).
HANDSHAKE_RECORD = 0x16
SSLV2_HELLO_BIT = 0x80


def choose_server(group: ServerGroup, name: str | None) -> Server:
    """The server whose certificate answers a ClientHello naming ``name``
    (None: the client sent no SNI): the address's server for that name, as
    the ``Host`` header finds it."""
    if not name:
        return group.default_server
    return group.select_server(name)


def looks_like_tls(first: bytes) -> bool:
    """Whether a connection's first byte may begin a TLS handshake."""
    return first[0] == HANDSHAKE_RECORD or bool(first[0] & SSLV2_HELLO_BIT)


@dataclass(frozen=True, slots=True)
class ListenTls:
    """What a ``listen ... ssl`` socket's connections need: the address's
    servers and the context of its default server (with the SNI callback)."""

    context: ssl.SSLContext
    group: ServerGroup


@dataclass(frozen=True, slots=True)
class PushTls:
    """What a ``push_ssl=on`` push listener's connections need."""

    context: ssl.SSLContext


class WorkerTls:
    """A worker's TLS contexts, built from the model when the worker starts.

    Raises ConfigError (nginx's message) when a file no longer loads.
    """

    def __init__(self, http: Http | None, router: Router) -> None:
        self._router = router
        self._built: dict[Ssl, ssl.SSLContext] = {}
        self._servers: dict[int, ssl.SSLContext] = {}
        self._endpoints: set[Endpoint] = set()
        for server in http.servers if http else ():
            if server.ssl.certificates:
                self._servers[id(server)] = self._context(server.ssl)
            for listen in server.listens:
                if listen.ssl:
                    self._endpoints.update(endpoints(listen))

    def _context(self, settings: Ssl) -> ssl.SSLContext:
        context = self._built.get(settings)
        if context is None:
            context = self._built[settings] = server_context(settings)
        return context

    def for_listen(self, local: tuple | str) -> ListenTls | None:
        """The TLS of the listen socket bound to ``local`` (its ``getsockname()``), None if plain."""
        if isinstance(local, str):
            endpoint: Endpoint = ("unix", local)
        else:
            endpoint = (ipaddress.ip_address(str(local[0]).partition("%")[0]), int(local[1]))
        if endpoint not in self._endpoints:
            return None
        group = self._router.servers_for(local)
        # A context of its own, so that its SNI callback knows this address.
        context = server_context(group.default_server.ssl)
        context.sni_callback = self._sni(group, context)
        return ListenTls(context, group)

    def for_push(self, server: Server) -> PushTls:
        """The TLS of ``server``'s push listener (``push_ssl=on``): its own certificate."""
        return PushTls(self._servers[id(server)])

    def _sni(self, group: ServerGroup, default: ssl.SSLContext):
        servers = self._servers

        def callback(connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            server = choose_server(group, name)
            if server is not group.default_server:
                chosen = servers.get(id(server))
                if chosen is not None:
                    connection.context = chosen
            return None

        return callback


def describe(local: tuple | str, remote: tuple | str) -> str:
    """nginx's ``client: ..., server: ...`` tail of a connection's log line."""
    client = remote[0] if isinstance(remote, tuple) else "unix:"
    if isinstance(local, str):
        server = f"unix:{local}"
    else:
        server = endpoint_text((ipaddress.ip_address(str(local[0]).partition("%")[0]), int(local[1])))
    return f"client: {client}, server: {server}"


def handshake_failure(err: BaseException) -> str:
    """What nginx logs (at info) for a handshake that failed with ``err``."""
    cause = err.__cause__ if isinstance(err, trio.BrokenResourceError) and err.__cause__ else err
    if isinstance(cause, (ssl.SSLEOFError, trio.BrokenResourceError, trio.ClosedResourceError)):
        return "peer closed connection in SSL handshake"
    if isinstance(cause, ssl.SSLError):
        return f"SSL_do_handshake() failed (SSL: {ssl_reason(cause)})"
    return f"SSL_do_handshake() failed ({ssl_reason(cause)})"


async def first_byte(stream: SocketStream) -> bytes:
    """The connection's first byte, left unread (b"": closed before any)."""
    sock = stream.socket
    while True:
        try:
            return sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            await wait_readable(sock)
        except OSError:
            return b""


class TlsStream(trio.abc.Stream):
    """A server-side TLS connection over a ``SocketStream``, with its interface.

    ``receive_some``, ``send_all``, ``wait_send_all_might_not_block``,
    ``close`` and ``aclose`` keep ``SocketStream``'s contract.
    ``send_nowait(data)`` encrypts ``data`` and writes what the kernel takes
    at once: it returns ``len(data)`` when every byte of its records left,
    else 0, with the records' rest kept here.  As with OpenSSL's own
    ``SSL_write``, the caller then retries with the same data once the
    socket is writable (``Session._flush`` does), and the retry returns
    ``len(data)`` once the kept records have left: the data is never
    encrypted twice.  One task reads and one writes at a time.
    """

    __slots__ = ("transport", "socket", "_ssl", "_incoming", "_outgoing", "_pending", "_owed")
    tls = True  # a session over it is a ``wsconn.TlsSession``: nothing goes to ``socket`` directly

    def __init__(self, transport: SocketStream, context: ssl.SSLContext) -> None:
        self.transport = transport
        self.socket = transport.socket
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._pending = b""  # records written, not yet taken by the kernel
        self._owed = 0  # the length of the data whose records wait in _pending (send_nowait returned 0)

    async def handshake(self) -> None:
        """Complete the server's handshake; raises ``ssl.SSLError`` (``SSLEOFError``
        when the client closed) or ``trio.BrokenResourceError``."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._send_pending()
                await self._read_records()
                continue
            await self._send_pending()
            return

    async def _read_records(self) -> None:
        data = await self.transport.receive_some(RECORD_READ)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _send_pending(self) -> None:
        data = self._pending + self._outgoing.read()
        self._pending = b""
        if data:
            await self.transport.send_all(data)

    def _send_pending_nowait(self) -> None:
        data = self._pending + self._outgoing.read()
        if data:
            sent = self.transport.send_nowait(data)
            self._pending = data[sent:]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = max_bytes or DEFAULT_RECEIVE_SIZE
        await checkpoint_if_cancelled()
        read = False
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a client that just closed (browsers do): the end.
                return b""
            except ssl.SSLError as err:
                raise trio.BrokenResourceError(f"TLS error: {ssl_reason(err)}") from err
            else:
                if self._outgoing.pending:
                    self._send_pending_nowait()  # a TLS 1.3 key update's answer, say
                if not read:
                    await cancel_shielded_checkpoint()
                return data
            if self._outgoing.pending:
                self._send_pending_nowait()
            await self._read_records()
            read = True

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._ssl.write(data)
        except ssl.SSLError as err:  # the connection is shut down or failed
            raise trio.BrokenResourceError(f"TLS error: {ssl_reason(err)}") from err

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await checkpoint_if_cancelled()
        if data:
            self._encrypt(data)
        await self._send_pending()

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        if self._pending:
            sent = self.transport.send_nowait(self._pending)
            self._pending = self._pending[sent:]
            if self._pending:
                return 0
        if self._owed:
            # The retry of the data whose records have now all left (a read
            # may have sent the last of them).
            owed, self._owed = self._owed, 0
            return owed
        self._encrypt(data)
        records = self._outgoing.read()
        sent = self.transport.send_nowait(records)
        if sent == len(records):
            return len(data)
        self._pending = records[sent:]
        self._owed = len(data)
        return 0

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    def nagle(self) -> None:
        """``tcp_nodelay off`` for the TCP connection under the TLS records."""
        self.transport.nagle()

    def close(self) -> None:
        """Say close_notify if the kernel takes it at once, then close. Never a checkpoint."""
        if self.socket.fileno() == -1:
            return
        try:
            self._ssl.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # the close_notify is written; the client's is not awaited
        try:
            self._send_pending_nowait()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.transport.close()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()
