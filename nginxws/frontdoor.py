"""The front door: HTTP/1.1 on the ``listen`` sockets, routed as nginx routes.

One task per client connection reads requests with h11 (keep-alive and
pipelining), picks the server and location (``routing``), and either
answers (404, 405, 426, ``return``, error pages) or, for a WebSocket
handshake on a ``websocket`` location, hands the stream to ``wsconn``
(the request h11 parsed is the handshake: it is not parsed again).

nginx's limits apply: the request head must arrive within
``client_header_timeout`` (408) and fit ``large_client_header_buffers``
(414 for the request line, 400 "Request Header Or Cookie Too Large" for a
header line or the whole head); a body over ``client_max_body_size`` is 413.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TYPE_CHECKING

import h11
import trio
from wsproto.utilities import split_comma_header

from nginxws.conf.model import HttpSettings, Server
from nginxws.http import (
    RECEIVE_BYTES,
    ClientClosed,
    ClientTimeout,
    header,
    headers,
    next_event,
    send_error,
    send_response,
)
from nginxws.log import AccessEntry
from nginxws.netio import SocketStream
from nginxws.routing import normalize_host, normalize_path, select_location, target_host
from nginxws.wsconn import Upgrade, run_session

if TYPE_CHECKING:
    from nginxws.pushhttp import PushRequest

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
ROUTING_HEADERS = frozenset({b"host", b"content-length"})


def read_handshake(request: h11.Request) -> int | tuple[bytes, tuple[str, ...]]:
    """Check an RFC 6455 opening handshake to a websocket location.

    Returns the status to answer when it is not one, else its key and its
    ``Sec-WebSocket-Extensions`` offers (for ``wsconn.negotiate``).
    """
    if request.method not in (b"GET", b"HEAD"):
        return 405
    upgrade: set[bytes] = set()
    connection: set[bytes] = set()
    version = key = None
    offers: list[str] = []
    undecodable = False
    for name, value in request.headers:  # one pass: a handshake has many headers
        if name == b"upgrade":
            upgrade.update(token.strip().lower() for token in value.split(b","))
        elif name == b"connection":
            connection.update(token.strip().lower() for token in value.split(b","))
        elif name == b"sec-websocket-version":
            version = value if version is None else version
        elif name == b"sec-websocket-key":
            key = value if key is None else key
        elif name == b"sec-websocket-extensions":
            try:
                offers.extend(offer for offer in split_comma_header(value) if offer)
            except UnicodeDecodeError:
                undecodable = True
    if b"websocket" not in upgrade:
        return 426
    if request.method != b"GET" or b"upgrade" not in connection:
        return 400
    if version != b"13":
        return 426
    try:
        if key is None or len(base64.b64decode(key, validate=True)) != 16:
            return 400
    except (binascii.Error, ValueError):
        return 400
    return 400 if undecodable else (key, tuple(offers))


class Exchange:
    """One request as the access log sees it: an h11 request of the front
    door, or a push listener's request (with the same four fields it reads)."""

    __slots__ = ("request", "server", "settings", "status", "sent", "started", "conn")

    def __init__(self, request: h11.Request | PushRequest | None, server: Server, conn: int) -> None:
        self.request = request
        self.server = server
        self.settings: HttpSettings = server.settings
        self.status = 0
        self.sent = 0
        self.started = time.time()
        self.conn = conn

    def entry(self, remote, local) -> AccessEntry:
        request = self.request
        return AccessEntry(
            remote_addr=remote[0] if isinstance(remote, tuple) else "unix:",
            status=self.status,
            start=self.started,
            method=request.method if request else None,
            target=request.target if request else None,
            http_version=request.http_version if request else None,
            headers=request.headers if request else (),
            body_bytes_sent=self.sent,
            bytes_sent=self.sent,
            connection=self.conn,
            server_name=self.server.server_names[0] if self.server.server_names else "",
            server_port=local[1] if isinstance(local, tuple) else 0,
        )


async def handle_client(worker, stream: SocketStream, local, remote, conn: int) -> None:
    """Serve one client connection until it closes or becomes a WebSocket."""
    group = worker.router.servers_for(local)
    default = group.default_server
    settings: HttpSettings = default.settings
    limit = settings.large_client_header_buffers[0] * settings.large_client_header_buffers[1]
    h = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
    first = True
    try:
        while True:
            if not first and not h.trailing_data[0]:
                # As nginx: an idle keep-alive connection waits keepalive_timeout
                # for the next request to begin, then client_header_timeout for
                # the rest of its head; an idle one is closed without a word.
                with trio.move_on_after(settings.keepalive_timeout):
                    h.receive_data(await stream.receive_some(RECEIVE_BYTES))
                if not h.trailing_data[0] and not h.trailing_data[1]:
                    return
            exchange = Exchange(None, default, conn)
            try:
                event = await next_event(h, stream, trio.current_time() + settings.client_header_timeout)
            except ClientTimeout:
                if first and not h.trailing_data[0]:
                    # Not a byte yet: closed without a word, as nginx does
                    # (ngx_http_wait_request_handler).
                    worker.error_log.info("client timed out", conn=conn)
                    return
                worker.error_log.info("client timed out while reading client request headers", conn=conn)
                exchange.status = 408
                exchange.sent = await send_error(h, stream, 408, tokens=settings.server_tokens, close=True)
                worker.log_access(exchange, remote, local)
                return
            except h11.RemoteProtocolError as err:
                await _protocol_error(worker, h, stream, exchange, err, settings, remote, local, conn)
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            first = False
            exchange.request = event
            upgrade = await _handle_request(worker, h, stream, event, exchange, local, conn)
            if upgrade is not None:
                # An open session keeps nothing of the HTTP connection, nor of
                # the request unless an access log will want it at the end.
                del h, event
                if not exchange.settings.access_logs:
                    exchange.request = None
                session = run_session(worker, stream, upgrade, conn)
                del upgrade  # the session keeps only what it needs of it
                exchange.status, exchange.sent = await session
                worker.log_access(exchange, remote, local)
                return
            worker.log_access(exchange, remote, local)
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except h11.RemoteProtocolError as err:
        # Only a request body read before answering gets here (a head h11
        # cannot parse is answered above): drop the connection, as nginx does.
        worker.error_log.info(f"client sent invalid request body: {err}", conn=conn)
        return
    except (ClientClosed, trio.BrokenResourceError, trio.ClosedResourceError):
        return
    finally:
        stream.close()


async def _protocol_error(worker, h, stream, exchange, err, settings, remote, local, conn) -> None:
    """Answer a request h11 could not parse, as nginx would, and close."""
    buffered = h.trailing_data[0]
    line_end = buffered.find(b"\r\n")
    request_line = len(buffered) if line_end < 0 else line_end
    if request_line > settings.large_client_header_buffers[1]:
        status = 414
        worker.error_log.info("client sent too long URI", conn=conn)
    elif err.error_status_hint == 431:
        status = 494
        worker.error_log.info("client sent too long header line", conn=conn)
    else:
        status = err.error_status_hint
        worker.error_log.info(f"client sent invalid request: {err}", conn=conn)
    if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        exchange.status = status
        try:
            exchange.sent = await send_error(h, stream, status, tokens=settings.server_tokens, close=True)
        except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        worker.log_access(exchange, remote, local)


async def _handle_request(
    worker, h, stream, request: h11.Request, exchange: Exchange, local, conn
) -> Upgrade | None:
    """Answer one request, or return the WebSocket handshake it is."""
    group = worker.router.servers_for(local)
    found = headers(request, ROUTING_HEADERS)  # one pass over the headers
    host = target_host(request.target) or found.get(b"host")
    head = request.method == b"HEAD"
    if host is not None and normalize_host(host) is None:
        exchange.server = group.default_server
        return await _finish_error(h, stream, exchange, 400, group.default_server.settings, head, close=True)
    server = group.select_server(host)
    exchange.server = server
    settings = server.settings

    path = normalize_path(request.target)
    if path is None:
        return await _finish_error(h, stream, exchange, 400, settings, head)
    line_limit = settings.large_client_header_buffers[1]
    if len(request.method) + len(request.target) + 10 > line_limit:
        return await _finish_error(h, stream, exchange, 414, settings, head, close=True)
    if any(len(k) + len(v) + 2 > line_limit for k, v in request.headers.raw_items()):
        return await _finish_error(h, stream, exchange, 494, settings, head, close=True)

    location = None if server.return_ else select_location(server.locations, path)
    if location is not None:
        settings = exchange.settings = location.settings
    answer = server.return_ or (location.return_ if location is not None else None)

    length = found.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > settings.client_max_body_size:
        worker.error_log.error(
            f"client intended to send too large body: {int(length)} bytes", conn=conn
        )
        return await _finish_error(h, stream, exchange, 413, settings, head, close=True)

    if location is not None and location.websocket is not None and answer is None:
        problem = read_handshake(request)
        if not isinstance(problem, int):
            key, offers = problem
            return Upgrade(key, offers, h.trailing_data[0], server, location, path)
        await _discard_body(h, stream, settings)
        extra = []
        if problem == 426:
            extra = [(b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")]
        elif problem == 405:
            extra = [(b"Allow", b"GET")]
        return await _finish_error(h, stream, exchange, problem, settings, head, headers=extra)

    await _discard_body(h, stream, settings)
    if answer is not None:
        return await _return(h, stream, exchange, answer, settings, head, request)
    status = 404 if request.method in (b"GET", b"HEAD") else 405
    return await _finish_error(h, stream, exchange, status, settings, head)


async def _discard_body(h, stream, settings: HttpSettings) -> None:
    """Read and drop a request body, bounded by size and time."""
    deadline = trio.current_time() + settings.client_body_timeout
    received = 0
    while True:
        event = await next_event(h, stream, deadline)
        if isinstance(event, h11.Data):
            received += len(event.data)
            if received > settings.client_max_body_size:
                raise ClientClosed
        elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
            return
        elif isinstance(event, h11.ConnectionClosed):
            raise ClientClosed


async def _finish_error(h, stream, exchange, status, settings, head, *, close=False, headers=None) -> None:
    exchange.status = status
    exchange.sent = await send_error(
        h, stream, status, tokens=settings.server_tokens, head=head, close=close, headers=headers
    )


async def _return(h, stream, exchange, answer, settings, head, request) -> None:
    """nginx's ``return``: a redirect, a text body, or an error page."""
    exchange.status = answer.code
    if answer.code in REDIRECT_CODES and answer.text is not None:
        target = answer.text
        if target.startswith("/"):
            host = header(request, b"host")
            target = f"http://{host.decode('latin-1') if host else 'localhost'}{target}"
        exchange.sent = await send_error(
            h, stream, answer.code, tokens=settings.server_tokens, head=head,
            headers=[(b"Location", target.encode())],
        )
    elif answer.text is not None:
        exchange.sent = await send_response(
            h, stream, answer.code, [(b"Content-Type", b"text/plain")], answer.text.encode(),
            tokens=settings.server_tokens, head=head,
        )
    elif answer.code == 444:
        raise ClientClosed
    elif answer.code >= 400 or answer.code in REDIRECT_CODES:
        exchange.sent = await send_error(h, stream, answer.code, tokens=settings.server_tokens, head=head)
    else:
        exchange.sent = await send_response(
            h, stream, answer.code, [], b"", tokens=settings.server_tokens, head=head
        )
