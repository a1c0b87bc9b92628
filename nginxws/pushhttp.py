"""The push listener's requests: bytes in, requests out (httptools, sans-I/O).

``PushParser`` feeds what a push connection reads to one
``httptools.HttpRequestParser`` (llhttp) and collects the requests it
completes in ``ready``, in order, each with its location resolved and its
body read, for the push listener to answer.  Nothing here touches a socket.

Rules it keeps (those of the h11 parser it replaces, so that a push gets the
answers it always got):

* A request ends the connection after its answer (``close``) when it says
  so (``Connection: close``) or is HTTP/1.0, as h11 decides.
* The head (request line and headers) may be at most ``count * size`` bytes
  of ``large_client_header_buffers``: llhttp does not bound it, so it is
  counted here, and a longer one ends the connection with 431.  A head that
  grows without a callback (one endless header) is counted by the bytes fed.
* The body of a POST to a websocket location is kept up to the location's
  ``max_message_size``; past it (or a ``Content-Length`` over it) the request
  is ready at once with 413 and the connection ends after it.  Any other
  request's body is read and dropped.
* A request from an address the ``push_allow``/``push_deny`` rules of its
  path's location (or of the server, when no location matches) refuse is
  ready with 403 whatever it asks; its body is read and dropped, and the
  connection goes on.
* A request llhttp cannot parse ends the connection: answered (400; 501 for
  a ``Transfer-Encoding`` other than chunked) when its head was at fault,
  closed without an answer when its body was.  So is a head cut short by the
  end of the stream (400), or a body (no answer).
* An ``Upgrade`` request is an ordinary request (the push listener switches
  to no other protocol): llhttp stops at it, and parsing goes on after it.
  llhttp then skips its body, so one with a body is refused with 400.
* Nothing is queued after a request that ends the connection.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs, parse_qsl

import httptools

from nginxws.access import FORBIDDEN
from nginxws.channel_names import valid_channel
from nginxws.conf.model import Location, Server
from nginxws.inet import Peer, peer_of
from nginxws.registry import PushError
from nginxws.routing import normalize_path, select_location

# llhttp's reasons whose status is not 400 (h11's and nginx's answers).  The
# first comes once the head is complete: it is still the head's fault.
_ERROR_STATUS = {
    "Request has invalid `Transfer-Encoding`": 501,
    "Invalid `Transfer-Encoding` header value": 501,
}
_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}
_DROP = -1  # the body limit of a request whose body is read and dropped
BINARY_TYPES = frozenset({b"application/octet-stream"})


class PushRequest:
    """One request to the push listener.

    ``method``, ``target``, ``http_version`` and ``headers`` (lower-case
    names) are what the access log reads, as of an ``h11.Request``.
    ``status`` is the answer already decided while parsing (403 for a refused
    address, 404 for a POST to no websocket location, 413), or 0.
    """

    __slots__ = ("method", "target", "query", "http_version", "headers", "authorization", "content_type",
                 "length", "location", "body", "close", "status", "reason")

    def __init__(self) -> None:
        self.method = b""
        self.target = b""
        self.query = b""
        self.http_version = b"1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.authorization: bytes | None = None
        self.content_type: bytes | None = None
        self.length: bytes | None = None
        self.location: Location | None = None
        self.body: list[bytes] = []
        self.close = False
        self.status = 0
        self.reason = ""


class PushParser:
    """The requests of one push connection, as its bytes arrive.

    ``feed`` and ``eof`` append the requests they complete to ``ready``;
    ``error`` is set, to (status, reason), once the connection must end after
    them (status 0: without an answer).  ``in_body`` says that a body is being
    read, whose reads wait at most ``body_timeout``.
    """

    __slots__ = ("ready", "error", "in_body", "body_timeout", "_server", "_remote", "_peer", "_parser",
                 "_request", "_routed", "_location", "_limit", "_size", "_head", "_head_limit", "_stalled",
                 "_done")

    def __init__(self, server: Server, remote: tuple | str | None = None) -> None:
        self.ready: list[PushRequest] = []
        self._remote = remote  # the connection's getpeername(), for push_allow / push_deny
        self._peer: Peer | None = None
        self.error: tuple[int, str] | None = None
        self.in_body = False
        self.body_timeout = server.settings.client_body_timeout
        self._server = server
        count, size = server.settings.large_client_header_buffers
        self._head_limit = count * size
        self._request: PushRequest | None = None
        # The last POST's path and its location: a pusher's connection
        # usually pushes to one location, routed once.
        self._routed: bytes | None = None
        self._location: Location | None = None
        self._limit = _DROP
        self._size = 0
        self._head = 0
        self._stalled = 0
        self._done = False
        # The parser calls this object's bound methods: one parser, and no
        # closure, per connection.
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes) -> None:
        """Parse ``data``, the next bytes of the connection."""
        request, head = self._request, self._head
        try:
            while True:
                try:
                    self._parser.feed_data(data)
                    break
                except httptools.HttpParserUpgrade as upgrade:
                    data = data[upgrade.args[0]:]
        except httptools.HttpParserCallbackError:
            raise  # a fault of ours, not of the client
        except httptools.HttpParserError as err:
            self._fail(str(err))
            return
        if self._request is not None and self._request is request and not self.in_body and self._head == head:
            # The whole read went into one header or token not complete yet.
            self._stalled += len(data)
            if self._head + self._stalled > self._head_limit:
                self._end(431, "request header too large")
        else:
            self._stalled = 0

    def eof(self) -> None:
        """The client will send nothing more."""
        if self._request is not None and not self._done:
            self._fail("peer unexpectedly closed")

    def _fail(self, reason: str) -> None:
        if not self._done:
            status = _ERROR_STATUS.get(reason)
            self._end((0 if self.in_body else 400) if status is None else status, reason)

    def _end(self, status: int, reason: str) -> None:
        self.error = (status, reason)
        self._done = True
        self._request = None
        self.in_body = False

    def _ready_now(self, request: PushRequest, status: int, reason: str) -> None:
        """``request`` is answered before its body has been read: the last one."""
        request.status, request.reason, request.close = status, reason, True
        request.body = []  # what was read of a body over the limit is not kept
        self.ready.append(request)
        self._done = True
        self._request = None
        self.in_body = False

    # -- httptools callbacks ----------------------------------------------

    def on_message_begin(self) -> None:
        if not self._done:
            self._request = PushRequest()
            self._head = 0
            self._stalled = 0

    def on_url(self, url: bytes) -> None:
        request = self._request
        if request is not None:
            request.target += url
            self._head += len(url)
            if self._head > self._head_limit:
                self._end(431, "request header too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._request
        if request is None:
            return
        name = name.lower()
        request.headers.append((name, value))
        if name == b"authorization":
            if request.authorization is None:
                request.authorization = value
        elif name == b"content-type":
            if request.content_type is None:
                request.content_type = value
        elif name == b"content-length":
            request.length = value
        self._head += len(name) + len(value) + 4
        if self._head > self._head_limit:
            self._end(431, "request header too large")

    def on_headers_complete(self) -> None:
        request = self._request
        if request is None:
            return
        parser = self._parser
        request.method = parser.get_method()
        version = parser.get_http_version()
        request.http_version = _VERSIONS.get(version) or version.encode()
        request.close = not parser.should_keep_alive() or request.http_version < b"1.1"
        if parser.should_upgrade() and _has_body(request):
            self._end(400, "Upgrade with a request body")
            return
        self.in_body = True
        self._size = 0
        self._limit = _DROP
        settings = server = self._server.settings
        target, _, request.query = request.target.partition(b"?")
        if target == self._routed:
            location = self._location
        else:
            path = normalize_path(target)
            location = select_location(self._server.locations, path) if path is not None else None
            self._routed, self._location = target, location
        rules = (server if location is None else location.settings).push_access
        if rules is not None and rules.denies(self._peer or self._client()):
            request.status, request.reason = 403, FORBIDDEN
        elif request.method == b"POST":
            if location is None or location.websocket is None:
                request.status, request.reason = 404, "no websocket location here"
            else:
                request.location = location
                settings = location.settings
                self._limit = location.websocket.max_message_size
                if request.length is not None and int(request.length) > self._limit:
                    self._ready_now(request, 413, "push body too large")
        self.body_timeout = settings.client_body_timeout

    def _client(self) -> Peer:
        """The connection's peer, parsed the first time push rules need it."""
        self._peer = peer_of(self._remote)
        return self._peer

    def on_body(self, body: bytes) -> None:
        request = self._request
        if request is None or self._limit == _DROP:
            return
        self._size += len(body)
        if self._size > self._limit:
            self._ready_now(request, 413, "push body too large")
        else:
            request.body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        self.in_body = False
        if request is not None:
            self._request = None
            self.ready.append(request)
            if request.close:
                self._done = True


def _has_body(request: PushRequest) -> bool:
    for name, value in request.headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" \t0")):
            return True
    return False


def push_id_from(authorization: bytes | None, query: bytes) -> str:
    """The push ID: the Basic-auth user name, else ``?id=``; 400 if neither."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise PushError(400, "malformed Authorization header") from None
            user = decoded.partition(b":")[0]
            if user:
                try:
                    return user.decode("ascii")
                except UnicodeDecodeError:
                    raise PushError(400, "malformed push ID") from None
    if query:
        values = parse_qs(query.decode("latin-1")).get("id")
        if values and values[0]:
            return values[0]
    raise PushError(400, "no push ID")


def push_message(body: bytes, content_type: bytes | None, max_size: int) -> str | bytes:
    """The frame payload for a push body: text unless the body is declared binary."""
    if len(body) > max_size:
        raise PushError(413, "push body too large")
    media = (content_type or b"").partition(b";")[0].strip().lower()
    if media in BINARY_TYPES:
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise PushError(400, "text push body is not valid UTF-8") from None


CHANNEL_CHANGES = ("subscribe", "unsubscribe")


def channel_changes(query: bytes) -> list[tuple[str, str]]:
    """The channel changes a push asks for (``?subscribe=NAME``,
    ``?unsubscribe=NAME``, any number, in order): a list of (what, name),
    empty for an ordinary push; 400 for a name that breaks the rule."""
    if b"subscribe=" not in query:
        return []
    changes = [(key, value) for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
               if key in CHANNEL_CHANGES]
    for _, name in changes:
        if not valid_channel(name):
            raise PushError(400, "invalid channel name")
    return changes
