"""The push listener: HTTP/1.1 POSTs that become frames to one client.

Each worker runs one push listener per ``server`` that has a websocket
location.  A backend keeps one connection open and pipelines as many
pushes as it likes; each is answered as soon as its frame is queued (or
refused), so a slow client never holds up the pushes behind it, and the
answers to the pushes of one read leave together in one write.  Requests
are parsed by ``pushhttp`` (httptools); answers are written as bytes.

Answers: 204 queued; 400 no ID or a text body that is not UTF-8; 404
unknown/departed ID or a path that is not a websocket location of this
server; 405 (with ``Allow``) for other methods; 204 for OPTIONS; 413 over
the location's ``max_message_size``; 503 when the client's queue is full.
"""

from __future__ import annotations

import trio

from nginxws.conf.model import Server
from nginxws.http import RECEIVE_BYTES, CoalescingStream, rearm, response_head
from nginxws.netio import SocketStream
from nginxws.context import WorkerContext
from nginxws.log import Exchange
from nginxws.pushhttp import PushParser, PushRequest, push_id_from, push_message
from nginxws.registry import PushError

ALLOW = (b"Allow", b"POST, OPTIONS")
TEXT = (b"Content-Type", b"text/plain; charset=utf-8")


async def handle_pusher(worker: WorkerContext, socket_stream: SocketStream, local, remote, conn: int,
                        server: Server) -> None:
    """Serve one push connection until it closes.

    One cancel scope bounds every wait of the connection; its deadline moves
    to what the connection waits for (``keepalive_timeout`` for the next
    request once the last ones are answered, ``client_body_timeout`` for the
    rest of a body).  When it passes, the connection is closed without an
    answer, as nginx does.
    """
    settings = server.settings
    keepalive = settings.keepalive_timeout
    parser = PushParser(server)
    ready = parser.ready
    stream = CoalescingStream(socket_stream)
    with trio.CancelScope() as timeout:
        try:
            answered = True
            while True:
                if parser.in_body:
                    rearm(timeout, trio.current_time() + parser.body_timeout)
                elif answered:
                    rearm(timeout, trio.current_time() + keepalive)
                data = await stream.receive_some(RECEIVE_BYTES)
                if data:
                    parser.feed(data)
                else:
                    parser.eof()
                answered = bool(ready)
                for request in ready:
                    exchange = Exchange(request, server, conn)
                    await _answer(worker, stream, request, server, exchange)
                    worker.log_access(exchange, remote, local)
                    if request.close:
                        return
                ready.clear()
                if parser.error is not None:
                    status, reason = parser.error
                    if status:
                        await stream.send_all(_error(status, reason, (TEXT,), settings.server_tokens, True)[0])
                    return
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            with trio.CancelScope(deadline=trio.current_time() + settings.send_timeout, shield=True):
                try:
                    await stream.flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await trio.aclose_forcefully(stream)


async def _answer(worker: WorkerContext, stream, request: PushRequest, server: Server, exchange: Exchange) -> None:
    tokens = server.settings.server_tokens
    try:
        if request.status:
            raise PushError(request.status, request.reason)
        if request.method == b"POST":
            _push(worker, request, exchange)
            extra: tuple[tuple[bytes, bytes], ...] = ()
        elif request.method == b"OPTIONS":
            extra = (ALLOW,)
        else:
            raise PushError(405, "method not allowed")
    except PushError as err:
        exchange.status = err.status
        headers = (TEXT, ALLOW) if err.status == 405 else (TEXT,)
        answer, sent = _error(err.status, err.reason, headers, tokens, request.close, request.method == b"HEAD")
        await stream.send_all(answer)
        exchange.sent = sent
        return
    exchange.status = 204
    await stream.send_all(response_head(204, extra, 0, tokens, request.close))


def _error(status: int, reason: str, headers, tokens: bool, close: bool, head: bool = False) -> tuple[bytes, int]:
    """An error answer with ``reason`` as its text body, and the body bytes in
    it (a HEAD's answer has none)."""
    body = f"{reason}\n".encode()
    answer = response_head(status, headers, len(body), tokens, close)
    return (answer, 0) if head else (answer + body, len(body))


def _push(worker: WorkerContext, request: PushRequest, exchange: Exchange) -> None:
    """Hand a POST's body to the client its push ID names."""
    location = request.location
    limit = location.websocket.max_message_size
    push_id = push_id_from(request.authorization, request.query)
    message = push_message(b"".join(request.body), request.content_type, limit)
    exchange.settings = location.settings
    target = worker.registry.target(push_id, location)
    if not target.push(message):
        raise PushError(404, "client has gone")
