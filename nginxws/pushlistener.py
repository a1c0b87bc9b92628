"""The push listener: HTTP/1.1 POSTs that become frames to one client.

Each worker runs one push listener per ``server`` that has a websocket
location.  A backend keeps one connection open and pipelines as many
pushes as it likes; each is answered as soon as its frame is queued (or
refused), so a slow client never holds up the pushes behind it, and the
answers to the pushes of one read leave together in one write.  Requests
are parsed by ``pushhttp`` (httptools); answers are written as bytes.

Answers: 204 queued; 403 from an address ``push_deny`` refuses (logged as
nginx logs a denied request); 400 no ID or a text body that is not UTF-8; 404
unknown/departed ID or a path that is not a websocket location of this
server; 405 (with ``Allow``) for other methods; 204 for OPTIONS; 413 over
the location's ``max_message_size``; 503 when the client's queue is full.
"""

from __future__ import annotations

import trio

from nginxws.access import FORBIDDEN
from nginxws.conf.model import Server
from nginxws.http import RECEIVE_BYTES, CoalescingStream, closed_message, rearm, response_head
from nginxws.context import WorkerContext
from nginxws.log import Exchange, request_context
from nginxws.streams import SocketStream
from nginxws.pushhttp import PushParser, PushRequest, channel_changes, push_id_from, push_message
from nginxws.registry import PushError
from nginxws.stats import PUSHES, READING, STATUS_INDEX, WAITING

ALLOW = (b"Allow", b"POST, OPTIONS")
PUSHED = PUSHES + STATUS_INDEX[204]
TEXT = (b"Content-Type", b"text/plain; charset=utf-8")


class PushConnection:
    """One connection to a push listener, until it closes.

    ``answer`` is the synchronous part: a parsed request in, the bytes of
    its answer out, the push delivered on the way (``wsconn.Session.push``
    never waits); ``serve`` moves bytes and keeps the timeouts.
    """

    __slots__ = ("worker", "stream", "local", "remote", "number", "server", "exchange")

    def __init__(self, worker: WorkerContext, stream: SocketStream, local, remote, number: int,
                 server: Server, exchange: type[Exchange] = Exchange) -> None:
        self.worker = worker
        self.stream = stream
        self.local = local
        self.remote = remote
        self.number = number  # the connection's serial number ($connection)
        self.server = server  # whose websocket locations this listener serves
        self.exchange = exchange  # TlsExchange on TLS ($scheme)

    async def serve(self) -> None:
        """Answer requests in order until the connection ends.

        One cancel scope bounds every wait of the connection; its deadline
        moves to what the connection waits for (``keepalive_timeout`` for the
        next request once the last ones are answered, ``client_body_timeout``
        for the rest of a body).  When it passes, the connection is closed
        without an answer, as nginx does.
        """
        worker, server, new_exchange = self.worker, self.server, self.exchange
        settings = server.settings
        keepalive = settings.keepalive_timeout
        parser = PushParser(server, self.remote)
        ready = parser.ready
        stream = CoalescingStream(self.stream)
        counters = worker.counters
        # The connection's state for stub_status: Reading while a request's
        # body is on its way, else Waiting (answers leave in one write).
        state = WAITING
        counters[WAITING] += 1
        with trio.CancelScope() as timeout:
            try:
                answered = True
                first = True
                while True:
                    if parser.in_body:
                        rearm(timeout, trio.current_time() + parser.body_timeout)
                        if state != READING:
                            counters[state] -= 1
                            counters[READING] += 1
                            state = READING
                    elif answered:
                        rearm(timeout, trio.current_time() + keepalive)
                        if state != WAITING:
                            counters[state] -= 1
                            counters[WAITING] += 1
                            state = WAITING
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if data:
                        parser.feed(data)
                    else:
                        parser.eof()
                    answered = bool(ready)
                    if answered:
                        first = False
                    for request in ready:
                        exchange = new_exchange(request, server, self.number)
                        await stream.send_all(self.answer(request, exchange))
                        worker.log_access(exchange, self.remote, self.local)
                        if request.close:
                            return
                    ready.clear()
                    if parser.error is not None:
                        status, reason = parser.error
                        if status:
                            counters[PUSHES + STATUS_INDEX[status]] += 1
                            await stream.send_all(_error(status, reason, (TEXT,), settings.server_tokens, True)[0])
                        return
                    if not data:
                        if worker.log_info:
                            worker.error_log.info(closed_message(first, self.remote), conn=self.number)
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            finally:
                counters[state] -= 1
                with trio.CancelScope(deadline=trio.current_time() + settings.send_timeout, shield=True):
                    try:
                        await stream.flush()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                await trio.aclose_forcefully(stream)

    def answer(self, request: PushRequest, exchange: Exchange) -> bytes:
        """Deliver ``request`` (a push) or refuse it: the answer's bytes."""
        tokens = self.server.settings.server_tokens
        try:
            if request.status:
                if request.status == 403:
                    client = self.remote[0] if isinstance(self.remote, tuple) else "unix:"
                    self.worker.error_log.error(FORBIDDEN + request_context(client, self.server, request),
                                                conn=self.number)
                raise PushError(request.status, request.reason)
            if request.method == b"POST":
                self._push(request, exchange)
                extra: tuple[tuple[bytes, bytes], ...] = ()
            elif request.method == b"OPTIONS":
                extra = (ALLOW,)
            else:
                raise PushError(405, "method not allowed")
        except PushError as err:
            exchange.status = err.status
            self.worker.counters[PUSHES + STATUS_INDEX[err.status]] += 1
            headers = (TEXT, ALLOW) if err.status == 405 else (TEXT,)
            answer, exchange.sent = _error(err.status, err.reason, headers, tokens, request.close,
                                           request.method == b"HEAD")
            return answer
        exchange.status = 204
        self.worker.counters[PUSHED] += 1
        return response_head(204, extra, 0, tokens, request.close)

    def _push(self, request: PushRequest, exchange: Exchange) -> None:
        """Hand a POST's body to the client its push ID names."""
        location = request.location
        limit = location.websocket.max_message_size
        push_id = push_id_from(request.authorization, request.query)
        exchange.settings = location.settings
        if request.query:
            changes = channel_changes(request.query)
            if changes:
                self._change_channels(request, push_id, changes)
                return
        message = push_message(b"".join(request.body), request.content_type, limit)
        target = self.worker.registry.target(push_id, location)
        if not target.push(message):
            raise PushError(404, "client has gone")


    def _change_channels(self, request: PushRequest, push_id: str, changes: list[tuple[str, str]]) -> None:
        """``?subscribe=NAME`` / ``?unsubscribe=NAME``: the client's channels
        change, effective for the next publish; the request has no body."""
        if any(request.body):
            raise PushError(400, "a push that changes channels has no body")
        session = self.worker.registry.session(push_id, request.location)
        channels = self.worker.channels
        for what, name in changes:
            if what == "subscribe":
                channels.join(session, name)
            else:
                channels.leave(session, name)


def _error(status: int, reason: str, headers, tokens: bool, close: bool, head: bool = False) -> tuple[bytes, int]:
    """An error answer with ``reason`` as its text body, and the body bytes in
    it (a HEAD's answer has none)."""
    body = f"{reason}\n".encode()
    answer = response_head(status, headers, len(body), tokens, close)
    return (answer, 0) if head else (answer + body, len(body))
