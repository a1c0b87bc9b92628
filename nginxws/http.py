"""HTTP/1.1 plumbing shared by the front door (h11) and the push listener.

h11 decides the front door's protocol; this module only moves bytes between
a trio stream and an ``h11.Connection`` under nginx's timeouts, and renders
responses the way nginx does (``Server`` header, the stock error pages).
The push listener parses with httptools and writes its answers as bytes
(``response_head``), under the same rules.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Sequence
from http import HTTPStatus

import h11
import trio

from nginxws import __version__
from nginxws.streams import SocketStream

RECEIVE_BYTES = 16 * 1024  # one read; nginx's default client_body_buffer_size
# A file's body goes in pieces, one at a time: nginx's sendfile_max_chunk (2m)
# for sendfile, which copies in the kernel; 256 KiB per read on a thread otherwise,
# which bounds what one response holds in memory.
SENDFILE_PIECE = 2 * 1024 * 1024
FILE_PIECE = 256 * 1024
LAZY_DELAY = 0.3  # seconds; nginx's NGX_TIMER_LAZY_DELAY

# The status lines nginx writes (ngx_http_status_lines in
# ngx_http_header_filter_module.c), which differ from the RFC's phrases in
# places: "405 Not Allowed", "408 Request Time-out", "302 Moved Temporarily",
# "503 Service Temporarily Unavailable".  A status nginx has no line for
# (101, 426) gets the RFC's phrase.
_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Moved Temporarily", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Time-out",
    409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Large", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 421: "Misdirected Request", 429: "Too Many Requests",
    494: "Request Header Or Cookie Too Large",
    497: "The plain HTTP request was sent to HTTPS port",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out", 505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}  # fmt: skip
# Where nginx's stock error page titles itself otherwise than its status line
# (ngx_http_special_response.c).
_PAGE_TITLES = {302: "Found", 401: "Authorization Required"}
# nginx answers these internal codes on the wire with another status.
_WIRE_STATUS = {494: 400, 497: 400}


class ClientTimeout(Exception):
    """The client did not send what was due within its timeout."""


class ClientClosed(Exception):
    """The client closed the connection."""


def reason(status: int) -> str:
    if status in _REASONS:
        return _REASONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_REASON_BYTES = {int(status): reason(int(status)).encode() for status in (*HTTPStatus, *_REASONS)}
_SERVER = {True: f"nginxws/{__version__}".encode(), False: b"nginxws"}
# Statuses whose answer has no body, and so no Content-Length (as nginx).
_NO_BODY = frozenset({204, 304})


def server_header(tokens: bool) -> bytes:
    return _SERVER[tokens]


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header value, rendered at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def error_page(status: int, tokens: bool) -> bytes:
    """nginx's stock HTML error page for ``status``."""
    title = f"{_WIRE_STATUS.get(status, status)} {_PAGE_TITLES.get(status) or reason(status)}"
    head = f"<head><title>{title}</title></head>"
    if status in _WIRE_STATUS:
        center = f"<center><h1>{_WIRE_STATUS[status]} Bad Request</h1></center>\r\n<center>{reason(status)}</center>"
    else:
        center = f"<center><h1>{title}</h1></center>"
    sig = server_header(tokens).decode()
    return (
        f"<html>\r\n{head}\r\n<body>\r\n{center}\r\n<hr><center>{sig}</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def closed_message(first: bool, remote) -> str:
    """nginx's ``info`` line for a client that closed its connection between
    requests: before its first one, or an idle keep-alive connection."""
    if first:
        return "client closed connection while waiting for request"
    address = remote[0] if isinstance(remote, tuple) else "unix:"
    return f"client {address} closed keepalive connection"


def headers(request: h11.Request, names: frozenset[bytes]) -> dict[bytes, bytes]:
    """The first value of each header of ``names`` (lower case) that ``request`` has."""
    found: dict[bytes, bytes] = {}
    for key, value in request.headers:
        if key in names and key not in found:
            found[key] = value
    return found


def rearm(scope: trio.CancelScope, deadline: float) -> None:
    """Move ``scope``'s deadline to ``deadline`` unless it is already within
    ``LAZY_DELAY`` of it.

    As nginx's lazy timers (``NGX_TIMER_LAZY_DELAY``): a busy connection then
    moves its deadline a few times a second instead of on every request, at
    the price of a timeout that may fire up to ``LAZY_DELAY`` early.
    """
    if abs(scope.deadline - deadline) >= LAZY_DELAY:
        scope.deadline = deadline


class CoalescingStream(trio.abc.Stream):
    """A stream whose writes wait until it is read from again.

    Answers to pipelined requests then leave in one ``send_all`` (one
    syscall) instead of one each, with no added latency: a server reads
    again only when it has answered everything it has.  ``flush`` writes
    what is left (before closing).
    """

    __slots__ = ("_stream", "_pending")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._pending = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += data

    async def flush(self) -> None:
        if self._pending:
            data, self._pending = bytes(self._pending), bytearray()
            await self._stream.send_all(data)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await self.flush()
        return await self._stream.receive_some(max_bytes)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def next_event(
    h11_conn: h11.Connection, stream: trio.abc.Stream, deadline: float
) -> h11.Event | type[h11.PAUSED]:
    """The next h11 event, reading from ``stream`` until ``deadline``.

    Raises ClientTimeout when the deadline passes and ClientClosed when the
    client goes away before an event is complete.
    """
    event = h11_conn.next_event()
    if event is not h11.NEED_DATA:
        return event
    with trio.move_on_at(deadline):
        return await receive_event(h11_conn, stream)
    raise ClientTimeout


async def receive_event(h11_conn: h11.Connection, stream: trio.abc.Stream) -> h11.Event | type[h11.PAUSED]:
    """The next h11 event, reading from ``stream`` as long as it takes.

    The caller bounds the time; ClientClosed when the client goes away
    before an event is complete.
    """
    while True:
        event = h11_conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ClientClosed from None
        h11_conn.receive_data(data)


async def send_response(
    h11_conn: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    tokens: bool,
    head: bool = False,
    close: bool = False,
) -> int:
    """Send one complete response; returns the number of body bytes sent."""
    data = h11_conn.send(_response(status, headers, len(body), tokens, close))
    if body and not head:
        data += h11_conn.send(h11.Data(data=body))
    data += h11_conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    return 0 if head else len(body)


def _response(status: int, headers: list[tuple[bytes, bytes]], length: int, tokens: bool, close: bool) -> h11.Response:
    """The response head; one without extra headers is built once a second
    (h11 events are immutable, and validating headers is most of their cost)."""
    date = http_date()
    key = (status, length, tokens, close)
    if not headers:
        cached = _heads.get(key)
        if cached is not None and cached[0] is date:
            return cached[1]
    wire_status = _WIRE_STATUS.get(status, status)
    all_headers = [(b"Server", _SERVER[tokens]), (b"Date", date), *headers]
    if wire_status not in _NO_BODY:
        all_headers.append((b"Content-Length", b"%d" % length))
    if close:
        all_headers.append((b"Connection", b"close"))
    response = h11.Response(status_code=wire_status, headers=all_headers, reason=_REASON_BYTES.get(wire_status, b""))
    if not headers:
        _heads[key] = (date, response)
    return response


_heads: dict[tuple[int, int, bool, bool], tuple[bytes, h11.Response]] = {}


def response_head(
    status: int, headers: Sequence[tuple[bytes, bytes]], length: int, tokens: bool, close: bool
) -> bytes:
    """The response head as bytes, with the headers and the ``Content-Length``
    rule of ``_response``; one without extra headers is rendered once a second."""
    date = http_date()
    if not headers:
        key = (status, length, tokens, close)
        cached = _raw_heads.get(key)
        if cached is not None and cached[0] is date:
            return cached[1]
    wire_status = _WIRE_STATUS.get(status, status)
    lines = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n"
             % (wire_status, _REASON_BYTES.get(wire_status, b""), _SERVER[tokens], date)]
    lines += [b"%s: %s\r\n" % header for header in headers]
    if wire_status not in _NO_BODY:
        lines.append(b"Content-Length: %d\r\n" % length)
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    if not headers:
        _raw_heads[key] = (date, head)
    return head


_raw_heads: dict[tuple[int, int, bool, bool], tuple[bytes, bytes]] = {}


class _FileBody:
    """What h11 is told a file's body is: its length (h11's way to sendfile)."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


async def send_head(
    h11_conn: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    headers: list[tuple[bytes, bytes]],
    length: int,
    *,
    tokens: bool,
    body: bool,
) -> None:
    """Send a response head with ``Content-Length: length``; ``body``: the
    caller sends that many bytes itself next (``send_file_body``), and then
    ``h11.EndOfMessage``; else the response ends here (HEAD, 304)."""
    data = h11_conn.send(_response(status, headers, length, tokens, False))
    if body:
        h11_conn.send_with_data_passthrough(h11.Data(data=_FileBody(length)))
    else:
        data += h11_conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def send_file_body(stream: trio.abc.Stream, fd: int, size: int, timeout: float) -> int:
    """Send ``size`` bytes of the open file ``fd``, from its start, without
    holding more than one piece of it: ``sendfile`` on a plain socket, else
    pieces of ``FILE_PIECE`` read on a thread.  Each piece must go within
    ``timeout`` (``send_timeout``), else ``ClientTimeout``.  Returns the
    bytes sent: fewer than ``size`` only when the file ended sooner."""
    sent = 0
    while sent < size:
        with trio.move_on_after(timeout):
            if isinstance(stream, SocketStream):
                piece = await stream.sendfile(fd, sent, min(SENDFILE_PIECE, size - sent))
            else:
                data = await trio.to_thread.run_sync(os.pread, fd, min(FILE_PIECE, size - sent), sent)
                await stream.send_all(data)
                piece = len(data)
            if not piece:
                return sent
            sent += piece
            continue
        raise ClientTimeout
    return sent


async def send_error(
    h11_conn: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    *,
    tokens: bool,
    head: bool = False,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> int:
    """Send nginx's error page for ``status``."""
    return await send_response(
        h11_conn,
        stream,
        status,
        [(b"Content-Type", b"text/html"), *(headers or [])],
        error_page(status, tokens),
        tokens=tokens,
        head=head,
        close=close,
    )
