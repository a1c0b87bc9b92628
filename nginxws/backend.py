"""A worker's link to its backend: the upstream pool, the session events, the message requests.

Theory of operation
-------------------
* **One pool per worker.**  ``Backend`` holds one ``httpx.AsyncClient``
  (HTTP/1.1, keep-alive; it runs on trio through httpcore), made on first
  use: at most ``UPSTREAM_CONNECTIONS`` connections, ``UPSTREAM_KEEPALIVE``
  of them kept idle for ``UPSTREAM_KEEPALIVE_TIMEOUT``.  httpx is imported
  only by a worker whose configuration has a ``proxy_pass`` (``warm``), so a
  worker without one starts as fast as before.
* **A failed upstream is an answer, as in nginx.**  ``fetch`` never raises
  for the upstream's sake: it logs nginx's line (``connect() failed (111:
  Connection refused) while connecting to upstream, client: ...``) and
  answers 502, or 504 for a timeout, as nginx's proxy module answers the
  subrequest.  The caller decides what that status means.
* **Session events never wait, never grow without bound.**  A connect or
  disconnect request goes into a queue of ``EVENT_QUEUE`` entries, sent by
  ``EVENT_SENDERS`` tasks of the worker's nursery; each is tried
  ``1 + len(EVENT_RETRY_DELAYS)`` times while the backend answers 5xx or
  cannot be reached.  A full queue drops the event with a log line.  A
  session's disconnect is sent after its connect is done (sent, refused or
  given up), so the backend sees them in order.
* **A message request is the session's own.**  ``SessionLink.message`` runs
  in the session's task, one at a time: the session reads nothing more from
  its client until it returns (``wsconn.Session``).  A failure (anything
  but a 2xx, or a body that cannot be a message) is logged and raised as
  ``UpstreamFailed``, and the session closes with 1011.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from nginxws.conf.model import BackendRequests, Server
from nginxws.conf.variables import RequestVars
from nginxws.log import ErrorLogger
from nginxws.pushhttp import push_message
from nginxws.registry import PushError
from nginxws.upstream import (
    Origin,
    UpstreamAnswer,
    UpstreamRequest,
    event_body,
    event_headers,
    message_headers,
    plan,
)

if TYPE_CHECKING:
    import httpx

UPSTREAM_CONNECTIONS = 512  # per worker; a request past them waits for one, up to proxy_connect_timeout
UPSTREAM_KEEPALIVE = 32  # idle upstream connections a worker keeps (nginx's example "keepalive 32")
UPSTREAM_KEEPALIVE_TIMEOUT = 60.0  # seconds an idle one is kept (nginx's upstream keepalive_timeout)
DISCARD_LIMIT = 64 * 1024  # an answer body nobody reads is drained up to this; past it the connection closes
EVENT_QUEUE = 1024  # session events waiting for a sender; past this they are dropped
EVENT_SENDERS = 8  # session events sent at once
EVENT_RETRY_DELAYS = (0.5, 2.0)  # seconds before the second and the third attempt
EVENT_DRAIN = 1.0  # seconds a stopping worker gives the queued events
BAD_GATEWAY, GATEWAY_TIMEOUT = 502, 504

_httpx: Any = None  # the module, once a worker needs it


def _import_httpx() -> Any:
    global _httpx
    if _httpx is None:
        import httpx

        _httpx = httpx
    return _httpx


class UpstreamFailed(Exception):
    """A message request that failed (already logged): the session closes with 1011."""


def _os_error(err: BaseException) -> OSError | None:
    """The OSError with an errno behind an httpx error (through causes and groups)."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        exc = todo.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        todo.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
    return None


def failure(err: Exception, stage: str) -> tuple[int, str]:
    """The status and nginx's words for an httpx error met ``stage``
    ("connecting to", "sending request to", "reading response header from", "reading")."""
    httpx = _import_httpx()
    where = f"while {stage} upstream"
    timed_out = f"upstream timed out ({errno.ETIMEDOUT}: {os.strerror(errno.ETIMEDOUT)}) {where}"
    if isinstance(err, httpx.PoolTimeout):
        return GATEWAY_TIMEOUT, f"no free connection in the worker's upstream pool ({UPSTREAM_CONNECTIONS}) {where}"
    if isinstance(err, httpx.TimeoutException):
        return GATEWAY_TIMEOUT, timed_out
    found = _os_error(err)
    call = {"connecting to": "connect()", "sending request to": "send()"}.get(stage, "recv()")
    if found is not None:
        if found.errno == errno.ETIMEDOUT:
            return GATEWAY_TIMEOUT, timed_out
        return BAD_GATEWAY, f"{call} failed ({found.errno}: {os.strerror(found.errno)}) {where}"
    if isinstance(err, httpx.RemoteProtocolError):
        text = str(err)
        if "disconnected" in text or "closed" in text or not text:
            return BAD_GATEWAY, f"upstream prematurely closed connection {where}"
        return BAD_GATEWAY, f"upstream sent invalid response: {text} {where}"
    return BAD_GATEWAY, f"{call} failed ({err or type(err).__name__}) {where}"


@dataclass(slots=True)
class _Event:
    """A connect or disconnect request waiting in the queue."""

    directive: str  # "websocket_connect_request", for the logs
    request: UpstreamRequest
    origin: Origin
    conn: int
    done: trio.Event  # set once it was sent, refused or given up
    after: trio.Event | None = None  # the session's connect, for its disconnect


class Backend:
    """A worker's upstream pool and its queue of session events (see the module docstring)."""

    def __init__(self, error_log: ErrorLogger) -> None:
        self.error_log = error_log
        self._client: httpx.AsyncClient | None = None
        self._nursery: trio.Nursery | None = None
        self._queue: trio.MemorySendChannel[_Event] | None = None
        self._pending = 0  # events queued or being sent
        self._idle = trio.Event()
        self._idle.set()
        self._dropped = 0  # events dropped since the queue was last full

    def warm(self) -> None:
        """Import httpx now (a worker whose configuration proxies does, before it serves)."""
        _import_httpx()

    def start(self, nursery: trio.Nursery) -> None:
        """Where the event senders will run (the worker's connections nursery)."""
        self._nursery = nursery

    def _pool(self) -> httpx.AsyncClient:
        if self._client is None:
            from http.cookiejar import CookieJar, DefaultCookiePolicy  # as httpx does: not before it is needed

            httpx = _import_httpx()
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=UPSTREAM_CONNECTIONS,
                    max_keepalive_connections=UPSTREAM_KEEPALIVE,
                    keepalive_expiry=UPSTREAM_KEEPALIVE_TIMEOUT,
                ),
                trust_env=False,
                follow_redirects=False,
                # Cookies a backend sets belong to the client they answer for: the pool keeps none.
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pool's connections (bounded, shielded: the worker is stopping)."""
        if self._client is not None:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + EVENT_DRAIN):
                await self._client.aclose()
            self._client = None

    # -- one request -------------------------------------------------------------

    async def fetch(self, request: UpstreamRequest, origin: Origin, conn: int, *, keep: int = 0) -> UpstreamAnswer:
        """Send ``request``; its answer, with up to ``keep`` bytes of body kept
        (a longer body is a 502).  An upstream that cannot be reached, times
        out or breaks the protocol is logged and answered 502 or 504; each
        address of the upstream is tried in turn while connecting fails."""
        httpx = _import_httpx()
        client = self._pool()
        timeout = {"connect": request.connect_timeout, "read": request.read_timeout,
                   "write": request.send_timeout, "pool": request.connect_timeout}
        answer = UpstreamAnswer(BAD_GATEWAY)
        for address in request.addresses:
            url = httpx.URL(scheme="http", host=address.partition("%")[0], port=request.port,
                            raw_path=request.target)
            sent = httpx.Request(request.method.decode("latin-1"), url, headers=list(request.headers),
                                 content=request.body or None, extensions={"timeout": timeout})
            upstream = f"http://{url.netloc.decode('latin-1')}{request.target.decode('latin-1')}"
            stage = "connecting to"
            try:
                response = await client.send(sent, stream=True)
                try:
                    stage = "reading"
                    body = await self._body(response, keep, origin, conn, request.subrequest, upstream)
                finally:
                    await response.aclose()
            except httpx.HTTPError as err:
                if stage == "connecting to" and isinstance(err, httpx.WriteError | httpx.WriteTimeout):
                    stage = "sending request to"
                elif stage == "connecting to" and not isinstance(err, httpx.ConnectError | httpx.ConnectTimeout
                                                                 | httpx.PoolTimeout):
                    stage = "reading response header from"
                status, message = failure(err, stage)
                self.error_log.error(message + origin.context(request.subrequest, upstream), conn=conn)
                answer = UpstreamAnswer(status)
                if stage == "connecting to" and status == BAD_GATEWAY:
                    continue  # nginx's proxy_next_upstream error: the next address
                return answer
            if body is None:
                return UpstreamAnswer(BAD_GATEWAY)
            headers = tuple((name.lower(), value) for name, value in response.headers.raw)
            return UpstreamAnswer(response.status_code, headers, body)
        return answer

    async def _body(self, response: httpx.Response, keep: int, origin: Origin, conn: int, subrequest: str,
                    upstream: str) -> bytes | None:
        """The answer's body, at most ``keep`` bytes (None, logged, past that);
        with ``keep`` 0 it is read and dropped up to ``DISCARD_LIMIT``, so the
        connection can serve again."""
        if not keep:
            drained = 0
            async for chunk in response.aiter_raw():
                drained += len(chunk)
                if drained > DISCARD_LIMIT:
                    break  # not worth reading: the connection closes instead
            return b""
        parts: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > keep:
                self.error_log.error(f"upstream sent a body over {keep} bytes while reading upstream"
                                     + origin.context(subrequest, upstream), conn=conn)
                return None
            parts.append(chunk)
        return b"".join(parts)

    # -- session events --------------------------------------------------------

    def notify(self, event: _Event) -> None:
        """Queue a session event without waiting; a full queue drops it (logged)."""
        if self._queue is None:
            self._queue, receive = trio.open_memory_channel[_Event](EVENT_QUEUE)
            assert self._nursery is not None, "Backend.start was not called"
            for _ in range(EVENT_SENDERS):
                self._nursery.start_soon(self._send_events, receive.clone())
            receive.close()
        try:
            self._queue.send_nowait(event)
        except trio.WouldBlock:
            event.done.set()
            if not self._dropped:
                self.error_log.error(
                    f"{event.directive} dropped: {EVENT_QUEUE} session events already wait for the backend"
                    + event.origin.context(event.request.subrequest), conn=event.conn)
            self._dropped += 1
            return
        if self._dropped:
            self.error_log.warn(f"{self._dropped} session events were dropped while the queue was full")
            self._dropped = 0
        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    async def _send_events(self, receive: trio.MemoryReceiveChannel[_Event]) -> None:
        async with receive:
            async for event in receive:
                try:
                    await self._send_event(event)
                except Exception as err:  # a sender must outlive any one event
                    self.error_log.alert(f"{event.directive} failed: {err!r}", conn=event.conn)
                finally:
                    event.done.set()
                    self._pending -= 1
                    if not self._pending:
                        self._idle.set()

    async def _send_event(self, event: _Event) -> None:
        if event.after is not None:
            await event.after.wait()
        attempts = 1 + len(EVENT_RETRY_DELAYS)
        for attempt in range(1, attempts + 1):
            answer = await self.fetch(event.request, event.origin, event.conn)
            status = answer.status
            if 200 <= status < 300:
                return
            context = event.origin.context(event.request.subrequest)
            if status < 500:
                self.error_log.error(f"{event.directive} unexpected status: {status}, not retried" + context,
                                     conn=event.conn)
                return
            if attempt == attempts:
                self.error_log.error(f"{event.directive} unexpected status: {status}, given up after "
                                     f"{attempts} attempts" + context, conn=event.conn)
                return
            self.error_log.warn(f"{event.directive} unexpected status: {status}, attempt {attempt} of "
                                f"{attempts}" + context, conn=event.conn)
            await trio.sleep(EVENT_RETRY_DELAYS[attempt - 1])

    async def drain(self, timeout: float = EVENT_DRAIN) -> None:
        """Give the queued session events up to ``timeout`` to leave (a stopping worker)."""
        with trio.move_on_after(timeout):
            await self._idle.wait()


class SessionLink:
    """What one session tells the backend: its connect and disconnect events
    and its client's messages (a ``websocket`` location with
    ``websocket_*_request`` directives)."""

    __slots__ = ("backend", "server", "requests", "request", "origin", "conn", "push_id", "push_urls",
                 "channels", "max_message_size", "_started", "_connected")

    def __init__(self, backend: Backend, server: Server, requests: BackendRequests, request: RequestVars,
                 origin: Origin, conn: int, push_id: str, push_urls: str, channels: tuple[str, ...],
                 max_message_size: int) -> None:
        self.backend = backend
        self.server = server
        self.requests = requests
        self.request = request  # the handshake's variables: its headers go with every request
        self.origin = origin
        self.conn = conn
        self.push_id = push_id
        self.push_urls = push_urls
        self.channels = channels
        self.max_message_size = max_message_size
        self._started = False  # the 101 was written: the session exists for the backend
        self._connected: trio.Event | None = None  # its connect request, until done

    def _event(self, directive: str, uri: str, kind: str, code: int | None = None,
               after: trio.Event | None = None) -> trio.Event:
        body = event_body(kind, self.push_id, self.push_urls, self.request, self.channels, code)
        planned, _ = plan(self.server, uri, self.request, method=b"POST", body=body,
                          own=event_headers(kind, self.push_id, self.push_urls))
        done = trio.Event()
        if isinstance(planned, UpstreamAnswer):  # a location that answers itself (return)
            if not 200 <= planned.status < 300:
                self.backend.error_log.error(f"{directive} unexpected status: {planned.status}, not retried"
                                             + self.origin.context(uri), conn=self.conn)
            done.set()
            return done
        self.backend.notify(_Event(directive, planned, self.origin, self.conn, done, after))
        return done

    def connected(self) -> None:
        """The session has started (its 101 is written): tell the backend."""
        self._started = True
        if self.requests.connect is not None:
            self._connected = self._event("websocket_connect_request", self.requests.connect, "connect")

    def disconnected(self, code: int | None) -> None:
        """The session has ended (``code``: its close code, if any): tell the
        backend, if it was told the session started."""
        if self._started and self.requests.disconnect is not None:
            self._event("websocket_disconnect_request", self.requests.disconnect, "disconnect", code,
                        self._connected)

    def answer_lost(self) -> None:
        """An answer came while the session was closing: it is not sent."""
        self.backend.error_log.info("websocket_message_request answer not sent: the session is closing"
                                    + self.origin.context(self.requests.message), conn=self.conn)

    async def message(self, message: str | bytes) -> str | bytes | None:
        """POST a client's message upstream; the answer to send back (None: none).

        Raises :class:`UpstreamFailed` (after logging) for anything but a 2xx
        answer whose body, if any, is a message: text unless
        ``Content-Type: application/octet-stream``, at most
        ``max_message_size``.
        """
        uri = self.requests.message
        assert uri is not None
        body = message.encode() if isinstance(message, str) else message
        planned, _ = plan(self.server, uri, self.request, method=b"POST", body=body,
                          own=message_headers(message, self.push_id, self.push_urls))
        if isinstance(planned, UpstreamAnswer):
            answer = planned
        else:
            answer = await self.backend.fetch(planned, self.origin, self.conn, keep=self.max_message_size)
        context = self.origin.context(uri)
        if not 200 <= answer.status < 300:
            self.backend.error_log.error(
                f"websocket_message_request unexpected status: {answer.status}, closing the session with 1011"
                + context, conn=self.conn)
            raise UpstreamFailed(answer.status)
        if not answer.body:
            return None
        content_type = next((value for name, value in answer.headers if name == b"content-type"), None)
        try:
            return push_message(answer.body, content_type, self.max_message_size)
        except PushError:  # the only one left: the body is within max_message_size
            self.backend.error_log.error(
                "websocket_message_request answer is not valid UTF-8 text, closing the session with 1011"
                + context, conn=self.conn)
            raise UpstreamFailed(answer.status) from None
