"""The front door: HTTP/1.1 on the ``listen`` sockets, routed as nginx routes.

``decide`` is the front door's rule book and touches no socket: a request
in, an ``Answer`` (404, 405, 426, ``return``, error pages, with what to log
and whether to close) or an ``Upgrade`` out; the tests drive it in
process.  A request under ``auth_request`` comes out as an ``Authorize``
first: ``FrontDoor`` makes the subrequest (``backend``) and
``authorized``, pure again, turns its answer into the decision: 401, 403,
500, or what ``decide`` says when asked again with the variables
``auth_request_set`` stored.  ``FrontDoor`` is one client connection: it reads requests with
h11 (keep-alive and pipelining), asks ``decide``, and writes the answer, or
hands the stream to ``wsconn`` for a WebSocket handshake on a ``websocket``
location (the request h11 parsed is the handshake: it is not parsed again).

A location with ``root`` or ``alias`` (and neither ``websocket`` nor
``websocket_publish``) serves files: ``decide`` says ``Static``, and
``serve_files`` looks the file up (``nginxws.static``: stat and open, no
read), following internal redirects through ``decide`` again, into a
``FileAnswer`` or an ``Answer``.  ``FrontDoor`` streams the file: with
``sendfile`` on a plain socket, else in chunks read on a thread.

nginx's limits apply: the request head must arrive within
``client_header_timeout`` (408) and fit ``large_client_header_buffers``
(414 for the request line, 400 "Request Header Or Cookie Too Large" for a
header line or the whole head); a body over ``client_max_body_size`` is 413.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
from dataclasses import dataclass

import h11
import trio
from wsproto.utilities import split_comma_header

from nginxws import static
from nginxws.access import FORBIDDEN
from nginxws.channel_names import valid_channel
from nginxws.conf.model import HttpSettings, Location, Return, Server, TryFiles
from nginxws.conf.variables import Request as Variables
from nginxws.http import (
    RECEIVE_BYTES,
    ClientClosed,
    ClientTimeout,
    closed_message,
    headers,
    next_event,
    send_error,
    send_file_body,
    send_head,
    send_response,
)
from nginxws.context import WorkerContext
from nginxws.conf.variables import Upstream
from nginxws.inet import peer_of
from nginxws.log import Exchange, request_context
from nginxws.pushhttp import push_message
from nginxws.registry import PushError
from nginxws.streams import SocketStream
from nginxws.routing import (
    LocationMatch,
    ServerGroup,
    match_location,
    normalize_host,
    normalize_path,
    target_host,
)
from nginxws.upstream import Origin, SubrequestVars, UpstreamAnswer, UpstreamRequest, plan, set_variables
from nginxws.wsconn import Upgrade, run_session

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
ROUTING_HEADERS = frozenset({b"host", b"content-length", b"content-type"})
PUBLISHED = 202  # accepted for delivery: on this worker at once, on the others through the bus
# websocket_redis while Redis cannot be reached: published nowhere, so a retry delivers once.
UNAVAILABLE = 503
REDIS_DOWN_BODY = b"redis cannot be reached: not published\n"
RETRY_AFTER = (b"Retry-After", b"1")
JSON = (b"Content-Type", b"application/json")
TEXT = (b"Content-Type", b"text/plain; charset=utf-8")


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


def body_limit(settings: HttpSettings) -> float:
    """``client_max_body_size``; 0 turns the check off, as in nginx."""
    return settings.client_max_body_size or float("inf")


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer the front door decided on, before anything is written."""

    status: int
    server: Server  # the server that answers (the access log's $server_name)
    settings: HttpSettings  # its, or its location's: server_tokens, body limits, access log
    headers: tuple[tuple[bytes, bytes], ...] = ()
    page: bool = True  # nginx's stock page for ``status``; else ``body``
    body: bytes = b""
    close: bool = False  # the connection ends after it
    read_body: bool = False  # read and drop the request body first (keep-alive goes on)
    silent: bool = False  # ``return 444``: close without a word
    log: tuple[str, str] | None = None  # (error_log level, message)


@dataclass(frozen=True, slots=True)
class Publish:
    """A POST to a ``websocket_publish`` location: its body goes to ``channel``."""

    channel: str
    server: Server
    settings: HttpSettings
    content_type: bytes | None


@dataclass(frozen=True, slots=True)
class Static:
    """A request to a location that serves files (``serve_files`` looks them up)."""

    server: Server
    settings: HttpSettings  # the location's (or the server's, when no location matched)
    try_files: TryFiles | None
    uri: str  # nginx's $uri: normalized, or what an internal redirect set
    args: str  # the arguments after "?", as sent (or as the redirect set them)
    captures: re.Match[str] | None  # the regex location's match, for $1 and named captures


@dataclass(frozen=True, slots=True)
class FileAnswer:
    """A file to answer with: 200 (its body follows the head, unless HEAD) or
    the 304 its conditional headers make.  Whoever writes it closes the file."""

    status: int
    server: Server
    settings: HttpSettings
    headers: tuple[tuple[bytes, bytes], ...]
    file: static.Found


class RequestVars:
    """What nginx variables read of a request (``conf.variables.RequestVars``),
    built only for a location whose directives use them.  ``variables`` is
    the request's store of what ``auth_request_set`` set."""

    __slots__ = ("method", "target", "headers", "remote_addr", "realip_remote_addr", "uri", "captures",
                 "variables", "upstream")

    def __init__(self, request: h11.Request, remote, path: str, captures, client: str | None = None,
                 variables: dict[str, str] | None = None) -> None:
        self.method = request.method
        self.target = request.target
        self.headers = request.headers
        self.realip_remote_addr = remote[0] if isinstance(remote, tuple) else "unix:"
        self.remote_addr = client or self.realip_remote_addr
        self.uri = path
        self.captures = captures
        self.variables = variables
        self.upstream: Upstream | None = None  # a main request reads no upstream's variables


@dataclass(frozen=True, slots=True)
class Authorize:
    """A request under ``auth_request``: the subrequest to make before
    deciding, and what ``decide`` is asked again with (``authorized``)."""

    uri: str  # the subrequest's
    request: h11.Request
    group: ServerGroup
    trailing: bytes
    remote: object
    exchange: Exchange | None
    server: Server
    settings: HttpSettings
    captures: object  # the match of the location's regex, if any (``re.Match``)
    path: str
    client: str | None  # the address realip found, if any
    host: bytes | None

    def origin(self) -> Origin:
        return _origin(self.request, self.remote, self.client, self.server, self.host)

    def subrequest(self) -> tuple[UpstreamRequest | UpstreamAnswer, SubrequestVars]:
        """The subrequest (``upstream.plan``: GET, the client's headers, no body)
        and its variables, for ``authorized``."""
        return plan(self.server, self.uri, RequestVars(self.request, self.remote, self.path, self.captures,
                                                       self.client))


def _origin(request: h11.Request, remote, client: str | None, server: Server, host: bytes | None) -> Origin:
    """How error lines name a request (``upstream.Origin``)."""
    address = client or (remote[0] if isinstance(remote, tuple) else "unix:")
    line = f"{request.method.decode('latin-1')} {request.target.decode('latin-1')} HTTP/{request.http_version.decode()}"
    return Origin(address, server, line, host)


def expand_channels(location: Location, variables: RequestVars) -> tuple[str, ...] | None:
    """The channels of ``websocket_channels`` for this request, in order and
    once each (an empty expansion joins nothing); None if one breaks the
    channel-name rule."""
    names: dict[str, None] = {}
    for value in location.channels:
        name = value.evaluate(variables)
        if name:
            if not valid_channel(name):
                return None
            names[name] = None
    return tuple(names)


HANDSHAKE_HEADERS = {
    426: ((b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")),
    405: ((b"Allow", b"GET"),),
}


def decide(request: h11.Request, group: ServerGroup, trailing: bytes, remote=None,
           exchange: Exchange | None = None, admitted: dict[str, str] | None = None, *,
           internal: static.InternalRedirect | None = None,
           ) -> Answer | Upgrade | Publish | Authorize | Static:
    """What to do with one request that arrived on an address of ``group``
    from ``remote``: its answer, the WebSocket session it opens
    (``trailing``: what the client sent after it, its first frames), the
    publish it makes, the files it asks for (``Static``), or, under
    ``auth_request``, the subrequest to make first; ``admitted`` is given
    once that subrequest admitted the request: what ``auth_request_set``
    stored (``authorized`` asks again with it).

    When realip finds the client behind a trusted proxy, its address is
    noted in ``exchange`` (the request's access-log record, ``$remote_addr``);
    the decisions themselves carry no field for it, so that a request where
    no realip or access rule applies pays nothing for them.

    ``internal`` is an internal redirect of the request (``serve_files``):
    its URI, or its named location, replaces what the request line asked
    for; the request line's own checks are not made again.
    """
    found = headers(request, ROUTING_HEADERS)  # one pass over the headers
    host = target_host(request.target) or found.get(b"host")
    if host is not None and normalize_host(host) is None:
        default = group.default_server
        return Answer(400, default, default.settings, close=True)
    server = group.select_server(host)
    settings = server.settings

    if internal is None:
        path = normalize_path(request.target)
        if path is None:
            return Answer(400, server, settings)
        line_limit = settings.large_client_header_buffers[1]
        if len(request.method) + len(request.target) + 10 > line_limit:
            return Answer(414, server, settings, close=True)
        if any(len(k) + len(v) + 2 > line_limit for k, v in request.headers.raw_items()):
            return Answer(494, server, settings, close=True)
        match = None if server.return_ else match_location(server.locations, path)
    else:
        path = internal.uri
        if server.return_:
            match = None
        elif internal.name is None:
            match = match_location(server.locations, path)
        else:
            match = _named_location(server, internal.name)
            if match is None:
                return Answer(500, server, settings, read_body=True, close=True,
                              log=("error", f'could not find named location "@{internal.name}"'))
    location = None if match is None else match.location
    if location is not None:
        settings = location.settings
        if location.internal and internal is None:
            return Answer(404, server, settings, read_body=True)
    answer = server.return_ or (location.return_ if location is not None else None)

    check = settings.check
    client = None
    if check is not None:
        # nginx's phases: realip (post-read, pre-access) before the 413 of
        # find-config, allow/deny (access) after it; a "return" (rewrite)
        # answers before the access phase, so its location's rules do not apply.
        peer = peer_of(remote)
        real = check.client(peer, request.headers)
        if real is not None:
            client = real.text
            if exchange is not None:
                exchange.client = client

    length = found.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > body_limit(settings):
        return Answer(413, server, settings, close=True,
                      log=("error", f"client intended to send too large body: {int(length)} bytes"))
    if check is not None and answer is None and check.rules is not None and check.rules.denies(real or peer):
        context = request_context(client or peer.text, server, request)
        return Answer(403, server, settings, read_body=True, log=("error", FORBIDDEN + context))
    if settings.auth_request is not None and answer is None and admitted is None:
        # nginx's access phase: after allow/deny, before the content.
        return Authorize(settings.auth_request, request, group, trailing, remote, exchange, server, settings,
                         None if match is None else match.captures, path, client, found.get(b"host"))

    if location is not None and location.websocket is not None and answer is None:
        handshake = read_handshake(request)
        if isinstance(handshake, int):
            return Answer(handshake, server, settings, headers=HANDSHAKE_HEADERS.get(handshake, ()),
                          read_body=True)
        key, offers = handshake
        if not location.channels and location.backend is None:
            return Upgrade(key, offers, trailing, server, location, path)
        variables = RequestVars(request, remote, path, match.captures, client, admitted)
        channels = expand_channels(location, variables)
        if channels is None:
            return Answer(400, server, settings, read_body=True,
                          log=("info", "client sent invalid channel name"))
        if location.backend is None:
            return Upgrade(key, offers, trailing, server, location, path, channels)
        return Upgrade(key, offers, trailing, server, location, path, channels, variables,
                       _origin(request, remote, client, server, found.get(b"host")))

    if location is not None and location.publish is not None and answer is None:
        if request.method != b"POST":
            return Answer(405, server, settings, headers=((b"Allow", b"POST"),), read_body=True)
        channel = location.publish.evaluate(RequestVars(request, remote, path, match.captures, client, admitted))
        if not valid_channel(channel):
            text = b"invalid channel name\n" if channel else b"no channel name\n"
            return Answer(400, server, settings, headers=(TEXT,), page=False, body=text, read_body=True,
                          log=("info", "client sent invalid channel name" if channel else "no channel name"))
        return Publish(channel, server, settings, found.get(b"content-type"))

    if answer is not None:
        return _return(answer, server, settings, found.get(b"host"), exchange)
    if settings.files.root is not None:
        args = request.target.partition(b"?")[2].decode("latin-1") if internal is None else internal.args
        return Static(server, settings, server.try_files if location is None else location.try_files, path, args,
                      None if match is None else match.captures)
    status = 404 if request.method in (b"GET", b"HEAD") else 405
    return Answer(status, server, settings, read_body=True)


def _named_location(server: Server, name: str) -> LocationMatch | None:
    for location in server.locations:
        if location.modifier == "@" and location.pattern == name:
            return LocationMatch(location)
    return None


MAX_URI_CHANGES = 10  # internal redirects of one request (nginx's NGX_HTTP_MAX_URI_CHANGES)
FILE_SYSTEM = static.FileSystem()


def serve_files(decision: Static, request: h11.Request, group: ServerGroup, trailing: bytes, remote, local,
                client: str | None = None, fs: static.FileSystem = FILE_SYSTEM,
                ) -> tuple[Answer | Upgrade | Publish | FileAnswer, list[tuple[str, str]]]:
    """The answer of a ``Static`` decision, and the error-log lines it makes
    (level, message with nginx's request context; ``client`` is the address
    realip found, if it found one).

    The file found comes with the headers of its answer; an internal redirect
    (index, try_files) is decided again, into another location maybe, at
    most ``MAX_URI_CHANGES`` times.  Touches the file system (stat, open),
    never a socket.
    """
    peer = remote[0] if isinstance(remote, tuple) else "unix:"
    client = client or peer
    logs: list[tuple[str, str]] = []
    server = decision.server
    for redirects in range(MAX_URI_CHANGES + 1):
        variables = Variables(target=request.target, headers=request.headers, remote_addr=client,
                              realip_remote_addr=peer, uri=decision.uri, captures=decision.captures)
        outcome = static.resolve(decision.settings.files, decision.try_files, request.method, decision.uri,
                                 decision.args, variables, fs, logs)
        if isinstance(outcome, static.Found):
            result: Answer | Upgrade | Publish | FileAnswer = _file_answer(outcome, request, decision, fs)
        elif isinstance(outcome, static.Refused):
            if outcome.log is not None:
                logs.append(outcome.log)
            result = _refused(outcome, decision, request, local)
        elif redirects == MAX_URI_CHANGES:
            logs.append(("error", "rewrite or internal redirection cycle while internally redirecting to "
                                  f'"{outcome.target}"'))
            result = Answer(500, server, decision.settings, read_body=True, close=True)
        else:
            following = decide(request, group, trailing, remote, internal=outcome)
            if isinstance(following, Static):
                decision = following
                continue
            result = following
        context = request_context(client, server, request)
        return result, [(level, message + context) for level, message in logs]
    raise AssertionError("unreachable: the last turn of the loop returns")


def _file_answer(found: static.Found, request: h11.Request, decision: Static,
                 fs: static.FileSystem) -> FileAnswer | Answer:
    """200 with the file, or the 304 or 412 its conditional headers make."""
    files = decision.settings.files
    tag = static.etag(found.mtime, found.size) if files.etag else None
    status = static.not_modified(request.headers, found.mtime, tag, files.if_modified_since)
    if status == 412:
        fs.close(found.fd)
        return Answer(412, decision.server, decision.settings, read_body=True)
    head = [] if status == 304 else [(b"Content-Type", found.content_type.encode())]
    head.append((b"Last-Modified", static.http_date(found.mtime).encode()))
    if tag is not None:
        head.append((b"ETag", tag.encode()))
    return FileAnswer(status, decision.server, decision.settings, tuple(head), found)


def _refused(refused: static.Refused, decision: Static, request: h11.Request, local) -> Answer:
    server, settings = decision.server, decision.settings
    if refused.code:
        return _return(Return(refused.status), server, settings, headers(request, HOST).get(b"host"))
    if refused.location is not None:
        return Answer(301, server, settings, headers=((b"Location", _absolute(refused.location, request, local)),),
                      read_body=True)
    return Answer(refused.status, server, settings, read_body=True, close=refused.status >= 500)


HOST = frozenset({b"host"})


def _absolute(path: str, request: h11.Request, local) -> bytes:
    """A redirect's Location as nginx makes it (``absolute_redirect on``,
    ``server_name_in_redirect off``, ``port_in_redirect on``): the request's
    host, the port it came in on unless 80, the path."""
    host = headers(request, HOST).get(b"host")
    name = normalize_host(host) if host is not None else None
    if name is None:
        address = local[0] if isinstance(local, tuple) else "localhost"
        name = f"[{address}]" if ":" in address else address
    port = local[1] if isinstance(local, tuple) else 80
    authority = name if port == 80 else f"{name}:{port}"
    return f"http://{authority}{path}".encode("utf-8", "surrogateescape")


def authorized(auth: Authorize, answer: UpstreamAnswer, variables: SubrequestVars) -> Answer | Upgrade | Publish:
    """The decision once the ``auth_request`` subrequest of ``auth`` is answered
    (``variables``: the subrequest's, from ``Authorize.subrequest``), as
    ``ngx_http_auth_request_handler``: a 2xx lets ``decide`` go on, 401
    (with the answer's ``WWW-Authenticate`` lines) and 403 are the client's
    answer, anything else is 500.  ``auth_request_set`` is evaluated for
    2xx, 401 and 403."""
    status, server, settings = answer.status, auth.server, auth.settings
    if not (200 <= status < 300 or status in (401, 403)):
        return Answer(500, server, settings, read_body=True,
                      log=("error", f"auth request unexpected status: {status} while sending to client"
                                    + auth.origin().context()))
    stored = set_variables(settings, variables, answer) if settings.auth_request_set else {}
    if status == 401:
        challenges = tuple((b"WWW-Authenticate", value) for name, value in answer.headers
                           if name == b"www-authenticate")
        return Answer(401, server, settings, headers=challenges, read_body=True)
    if status == 403:
        return Answer(403, server, settings, read_body=True)
    decision = decide(auth.request, auth.group, auth.trailing, auth.remote, auth.exchange, stored)
    assert not isinstance(decision, Authorize)
    return decision


def plain_http_to_https_port(request: h11.Request, group: ServerGroup, trailing: bytes, remote=None,
                             exchange: Exchange | None = None) -> Answer:
    """nginx's answer to a plain HTTP request on a ``listen ... ssl`` port:
    400 "The plain HTTP request was sent to HTTPS port", then close."""
    server = group.select_server(target_host(request.target) or headers(request, ROUTING_HEADERS).get(b"host"))
    return Answer(497, server, server.settings, close=True,
                  log=("info", "client sent plain HTTP request to HTTPS port while reading client request headers"))


def _return(answer: Return, server: Server, settings: HttpSettings, host: bytes | None,
            exchange: Exchange | None = None) -> Answer:
    """nginx's ``return``: a redirect, a text body, an error page, or 444.
    A relative redirect keeps the request's scheme (``https`` over TLS)."""
    code = answer.code
    if code in REDIRECT_CODES and answer.text is not None:
        target = answer.text
        if target.startswith("/"):
            scheme = "https" if exchange is not None and exchange.scheme == b"https" else "http"
            target = f"{scheme}://{host.decode('latin-1') if host else 'localhost'}{target}"
        return Answer(code, server, settings, headers=((b"Location", target.encode()),), read_body=True)
    if answer.text is not None:
        return Answer(code, server, settings, headers=((b"Content-Type", b"text/plain"),), page=False,
                      body=answer.text.encode(), read_body=True)
    if code == 444:
        return Answer(code, server, settings, read_body=True, silent=True)
    return Answer(code, server, settings, page=code >= 400 or code in REDIRECT_CODES, read_body=True)


class FrontDoor:
    """One client connection on a ``listen`` socket, until it closes or
    becomes a WebSocket session.

    nginx's limits apply: the request head must arrive within
    ``client_header_timeout`` (408; a connection that sent nothing is closed
    without a word) and fit ``large_client_header_buffers``; an idle
    keep-alive connection waits ``keepalive_timeout``.
    """

    __slots__ = ("worker", "stream", "local", "remote", "number", "_http", "_group", "_exchange")

    # What a request gets: ``decide``, or, on a TLS port's plain-HTTP
    # connection, ``plain_http_to_https_port`` (``PlainHttpOnTlsPort``).
    _decide = staticmethod(decide)

    def __init__(self, worker: WorkerContext, stream: SocketStream, local, remote, number: int,
                 exchange: type[Exchange] = Exchange) -> None:
        self.worker = worker
        self.stream = stream
        self.local = local
        self.remote = remote
        self.number = number  # the connection's serial number ($connection)
        self._exchange = exchange  # TlsExchange on TLS ($scheme)
        self._group = worker.router.servers_for(local)
        count, size = self._group.default_server.settings.large_client_header_buffers
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=count * size)

    async def serve(self) -> None:
        worker, http, stream = self.worker, self._http, self.stream
        default = self._group.default_server
        settings: HttpSettings = default.settings
        first = True
        try:
            while True:
                if not first and not http.trailing_data[0]:
                    # As nginx: an idle keep-alive connection waits keepalive_timeout
                    # for the next request to begin, then client_header_timeout for
                    # the rest of its head; an idle one is closed without a word.
                    with trio.move_on_after(settings.keepalive_timeout):
                        http.receive_data(await stream.receive_some(RECEIVE_BYTES))
                    if not http.trailing_data[0] and not http.trailing_data[1]:
                        return
                exchange = self._exchange(None, default, self.number)
                try:
                    event = await next_event(http, stream, trio.current_time() + settings.client_header_timeout)
                except ClientTimeout:
                    await self._timed_out(first, exchange, settings)
                    return
                except h11.RemoteProtocolError as err:
                    await self._unparsable(err, exchange, settings)
                    return
                if not isinstance(event, h11.Request):
                    if event.__class__ is h11.ConnectionClosed and worker.log_info:
                        worker.error_log.info(closed_message(first, self.remote), conn=self.number)
                    return  # closed, or paused after a close
                first = False
                exchange.request = event
                decision = self._decide(event, self._group, http.trailing_data[0], self.remote, exchange)
                # auth_request's subrequest and static files' internal
                # redirects may lead to each other; both end in an answer.
                for _ in range(MAX_URI_CHANGES):
                    if isinstance(decision, Authorize):
                        decision = await self._authorize(decision)
                    elif isinstance(decision, Static):
                        decision = self._look_up(decision, event, exchange)
                    else:
                        break
                else:
                    worker.error_log.error("rewrite or internal redirection cycle", conn=self.number)
                    decision = Answer(500, decision.server, decision.settings, read_body=True, close=True)
                if isinstance(decision, Upgrade):
                    # An open session keeps nothing of the HTTP connection, nor
                    # of the request unless an access log will want it at the end.
                    del http, event
                    self._http = None
                    exchange.server, exchange.settings = decision.server, decision.location.settings
                    if not exchange.settings.access_logs:
                        exchange.request = None
                    session = run_session(worker, stream, decision, self.number, exchange)
                    del decision  # the session keeps only what it needs of it
                    try:
                        await session
                    finally:
                        # Logged however it ends: a stop's cancellation too, as
                        # nginx logs the requests its exiting worker finalizes.
                        worker.log_access(exchange, self.remote, self.local)
                    return
                if isinstance(decision, Publish):
                    await self._publish(decision, event, exchange)
                elif isinstance(decision, FileAnswer):
                    await self._send_file(decision, event, exchange)
                else:
                    await self._answer(decision, event, exchange)
                worker.log_access(exchange, self.remote, self.local)
                if http.our_state is h11.MUST_CLOSE or http.their_state is h11.MUST_CLOSE:
                    return
                try:
                    http.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except h11.RemoteProtocolError as err:
            # Only a request body read before answering gets here (a head h11
            # cannot parse is answered above): drop the connection, as nginx does.
            worker.error_log.info(f"client sent invalid request body: {err}", conn=self.number)
            return
        except (ClientClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            stream.close()

    def _look_up(self, decision: Static, request: h11.Request, exchange: Exchange) -> Answer | Upgrade | Publish | FileAnswer:
        """``serve_files``, with its error-log lines written."""
        found, logs = serve_files(decision, request, self._group, self._http.trailing_data[0], self.remote,
                                  self.local, exchange.client)
        for level, message in logs:
            self.worker.error_log.log(level, message, conn=self.number)
        return found

    async def _send_file(self, answer: FileAnswer, request: h11.Request, exchange: Exchange) -> None:
        """The file's answer: the head, then (GET, 200) the body, streamed
        without reading the file into memory; a file cut short while it is
        sent, or a client that takes nothing for ``send_timeout``, ends the
        connection (its Content-Length is already out)."""
        exchange.server, exchange.settings = answer.server, answer.settings
        settings, found = answer.settings, answer.file
        try:
            await self._discard_body(settings)
            exchange.status = answer.status
            body = answer.status == 200 and request.method != b"HEAD"
            await send_head(self._http, self.stream, answer.status, list(answer.headers), found.size,
                            tokens=settings.server_tokens, body=body)
            if not body:
                return
            try:
                exchange.sent = await send_file_body(self.stream, found.fd, found.size, settings.send_timeout)
            except ClientTimeout:
                self.worker.error_log.info(
                    f"client timed out ({errno.ETIMEDOUT}: {os.strerror(errno.ETIMEDOUT)}) "
                    "while sending response to client", conn=self.number)
                raise ClientClosed from None
            if exchange.sent < found.size:
                self.worker.error_log.alert(f'"{found.path}" was truncated at {exchange.sent}', conn=self.number)
                raise ClientClosed
            self._http.send(h11.EndOfMessage())
        finally:
            FILE_SYSTEM.close(found.fd)

    async def _authorize(self, auth: Authorize) -> Answer | Upgrade | Publish:
        """Make the ``auth_request`` subrequest (the connection reads nothing
        meanwhile) and decide on its answer."""
        planned, variables = auth.subrequest()
        if isinstance(planned, UpstreamAnswer):
            answer = planned
        else:
            answer = await self.worker.backend.fetch(planned, auth.origin(), self.number)
        return authorized(auth, answer, variables)

    async def _answer(self, answer: Answer, request: h11.Request, exchange: Exchange) -> None:
        exchange.server, exchange.settings = answer.server, answer.settings
        if answer.log is not None:
            level, message = answer.log
            getattr(self.worker.error_log, level)(message, conn=self.number)
        if answer.read_body:
            await self._discard_body(answer.settings)
        if answer.silent:
            raise ClientClosed
        exchange.status = answer.status
        head, tokens = request.method == b"HEAD", answer.settings.server_tokens
        if answer.page:
            exchange.sent = await send_error(self._http, self.stream, answer.status, tokens=tokens, head=head,
                                             close=answer.close, headers=list(answer.headers))
        else:
            exchange.sent = await send_response(self._http, self.stream, answer.status, list(answer.headers),
                                                answer.body, tokens=tokens, head=head, close=answer.close)

    async def _publish(self, publish: Publish, request: h11.Request, exchange: Exchange) -> None:
        """Read the body, hand it to every subscriber of the channel on every
        worker, answer 202 with how many of this worker's subscribers got it."""
        exchange.server, exchange.settings = publish.server, publish.settings
        settings = publish.settings
        tokens = settings.server_tokens
        try:
            body = await self._read_body(settings, keep=True)
        except _TooLarge as err:
            self.worker.error_log.error(f"client intended to send too large chunked body: {err.size} bytes",
                                        conn=self.number)
            exchange.status = 413
            exchange.sent = await send_error(self._http, self.stream, 413, tokens=tokens, close=True)
            return
        try:
            message = push_message(body, publish.content_type, body_limit(settings))
        except PushError as err:
            exchange.status = err.status
            exchange.sent = await send_response(self._http, self.stream, err.status, [TEXT],
                                                f"{err.reason}\n".encode(), tokens=tokens)
            return
        delivered = self.worker.publish(publish.channel, message)
        if delivered is None:
            exchange.status = UNAVAILABLE
            exchange.sent = await send_response(self._http, self.stream, UNAVAILABLE, [TEXT, RETRY_AFTER],
                                                REDIS_DOWN_BODY, tokens=tokens)
            return
        exchange.status = PUBLISHED
        body = b'{"channel": "%s", "local_subscribers": %d}\n' % (publish.channel.encode(), delivered)
        exchange.sent = await send_response(self._http, self.stream, PUBLISHED, [JSON], body, tokens=tokens)

    async def _timed_out(self, first: bool, exchange: Exchange, settings: HttpSettings) -> None:
        if first and not self._http.trailing_data[0]:
            # Not a byte yet: closed without a word, as nginx does
            # (ngx_http_wait_request_handler).
            self.worker.error_log.info("client timed out", conn=self.number)
            return
        self.worker.error_log.info("client timed out while reading client request headers", conn=self.number)
        exchange.status = 408
        exchange.sent = await send_error(self._http, self.stream, 408, tokens=settings.server_tokens, close=True)
        self.worker.log_access(exchange, self.remote, self.local)

    async def _unparsable(self, err: h11.RemoteProtocolError, exchange: Exchange, settings: HttpSettings) -> None:
        """Answer a request h11 could not parse, as nginx would, and close."""
        http, log = self._http, self.worker.error_log
        buffered = http.trailing_data[0]
        line_end = buffered.find(b"\r\n")
        request_line = len(buffered) if line_end < 0 else line_end
        if request_line > settings.large_client_header_buffers[1]:
            status = 414
            log.info("client sent too long URI", conn=self.number)
        elif err.error_status_hint == 431:
            status = 494
            log.info("client sent too long header line", conn=self.number)
        else:
            status = err.error_status_hint
            log.info(f"client sent invalid request: {err}", conn=self.number)
        if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            exchange.status = status
            try:
                exchange.sent = await send_error(http, self.stream, status, tokens=settings.server_tokens, close=True)
            except (h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            self.worker.log_access(exchange, self.remote, self.local)

    async def _discard_body(self, settings: HttpSettings) -> None:
        """Read and drop a request body, bounded by size and time (past the
        size, the connection is closed)."""
        try:
            await self._read_body(settings, keep=False)
        except _TooLarge:
            raise ClientClosed from None

    async def _read_body(self, settings: HttpSettings, *, keep: bool) -> bytes:
        """The request body (``b""`` unless ``keep``): it must arrive within
        ``client_body_timeout`` and fit ``client_max_body_size``
        (``_TooLarge`` past it)."""
        deadline = trio.current_time() + settings.client_body_timeout
        limit = body_limit(settings)
        received = 0
        parts: list[bytes] = []
        while True:
            event = await next_event(self._http, self.stream, deadline)
            if isinstance(event, h11.Data):
                received += len(event.data)
                if received > limit:
                    raise _TooLarge(received)
                if keep:
                    parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage) or event is h11.PAUSED:
                return b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise ClientClosed


class _TooLarge(Exception):
    """A request body past ``client_max_body_size``."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class PlainHttpOnTlsPort(FrontDoor):
    """A plain HTTP connection to a ``listen ... ssl`` port: each request is
    read as usual and answered 400 "The plain HTTP request was sent to HTTPS
    port", then the connection is closed (nginx's 497)."""

    __slots__ = ()
    _decide = staticmethod(plain_http_to_https_port)
