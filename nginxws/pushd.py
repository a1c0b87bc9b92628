"""The push listener: HTTP/1.1 POSTs that become frames to one client.

Each worker runs one push listener per ``server`` that has a websocket
location.  A backend keeps one connection open and pipelines as many
pushes as it likes; each is answered as soon as its frame is queued (or
refused), so a slow client never holds up the pushes behind it, and the
answers to the pushes of one read leave together in one write.

Answers: 204 queued; 400 no ID or a text body that is not UTF-8; 404
unknown/departed ID or a path that is not a websocket location of this
server; 405 (with ``Allow``) for other methods; 204 for OPTIONS; 413 over
the location's ``max_message_size``; 503 when the client's queue is full.
"""

from __future__ import annotations

import h11
import trio

from nginxws.conf.model import Server
from nginxws.frontdoor import Exchange
from nginxws.http import (
    ClientClosed,
    CoalescingStream,
    headers,
    rearm,
    receive_event,
    send_response,
)
from nginxws.netio import SocketStream
from nginxws.registry import PushError, push_id_from, push_message
from nginxws.routing import normalize_path, select_location

ALLOW = (b"Allow", b"POST, OPTIONS")
TEXT = (b"Content-Type", b"text/plain; charset=utf-8")
PUSH_HEADERS = frozenset({b"content-length", b"authorization", b"content-type"})


async def handle_pusher(worker, socket_stream: SocketStream, server: Server, remote, local, conn: int) -> None:
    """Serve one push connection until it closes.

    One cancel scope bounds every wait of the connection; its deadline moves
    to what the connection waits for (``keepalive_timeout`` for the next
    request, ``client_body_timeout`` for the rest of a body).  When it
    passes, the connection is closed without an answer, as nginx does.
    """
    settings = server.settings
    count, size = settings.large_client_header_buffers
    h = h11.Connection(h11.SERVER, max_incomplete_event_size=count * size)
    stream = CoalescingStream(socket_stream)
    with trio.CancelScope() as timeout:
        try:
            while True:
                rearm(timeout, trio.current_time() + settings.keepalive_timeout)
                try:
                    event = await receive_event(h, stream)
                except h11.RemoteProtocolError as err:
                    if h.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await send_response(h, stream, err.error_status_hint, [TEXT], f"{err}\n".encode(),
                                            tokens=settings.server_tokens, close=True)
                    return
                if not isinstance(event, h11.Request):
                    return
                exchange = Exchange(event, server, conn)
                await _answer(worker, h, stream, event, server, exchange, timeout)
                worker.log_access(exchange, remote, local)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()
        except (ClientClosed, h11.RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            with trio.CancelScope(deadline=trio.current_time() + settings.send_timeout, shield=True):
                try:
                    await stream.flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)


async def _answer(worker, h, stream, request: h11.Request, server: Server, exchange: Exchange, timeout) -> None:
    settings = server.settings
    try:
        if request.method == b"OPTIONS":
            await _read_body(h, stream, timeout, settings.client_body_timeout, 0, drop=True)
            status, headers = 204, [ALLOW]
        elif request.method != b"POST":
            await _read_body(h, stream, timeout, settings.client_body_timeout, 0, drop=True)
            raise PushError(405, "method not allowed")
        else:
            status, headers = await _push(worker, h, stream, request, server, exchange, timeout), []
    except PushError as err:
        exchange.status = err.status
        extra = [ALLOW] if err.status == 405 else []
        close = err.status == 413 and h.their_state is not h11.DONE
        # A HEAD's answer has no body (h11 refuses to send one).
        exchange.sent = await send_response(
            h, stream, err.status, [TEXT, *extra], f"{err.reason}\n".encode(),
            tokens=settings.server_tokens, close=close, head=request.method == b"HEAD",
        )
        return
    exchange.status = status
    exchange.sent = await send_response(h, stream, status, headers, b"", tokens=settings.server_tokens)


async def _push(worker, h, stream, request: h11.Request, server: Server, exchange: Exchange, timeout) -> int:
    target, _, query = request.target.partition(b"?")
    path = normalize_path(target)
    location = select_location(server.locations, path) if path is not None else None
    if location is None or location.websocket is None:
        await _read_body(h, stream, timeout, server.settings.client_body_timeout, 0, drop=True)
        raise PushError(404, "no websocket location here")
    limit = location.websocket.max_message_size
    found = headers(request, PUSH_HEADERS)
    length = found.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PushError(413, "push body too large")
    body = await _read_body(h, stream, timeout, location.settings.client_body_timeout, limit)
    push_id = push_id_from(found.get(b"authorization"), query)
    message = push_message(body, found.get(b"content-type"), limit)
    exchange.settings = location.settings
    target = worker.registry.target(push_id, location)
    if not target.push(message):
        raise PushError(404, "client has gone")
    return 204


async def _read_body(h, stream, timeout: trio.CancelScope, seconds: float, limit: int, *, drop: bool = False) -> bytes:
    """The request body, up to ``limit`` bytes (413 past it), each wait for
    more of it bounded by ``seconds`` (``timeout``'s deadline)."""
    parts: list[bytes] = []
    size = 0
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            rearm(timeout, trio.current_time() + seconds)
            event = await receive_event(h, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if drop:
                continue
            if size > limit:
                raise PushError(413, "push body too large")
            parts.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)
        else:
            raise ClientClosed
