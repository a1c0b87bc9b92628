"""Requests to the backend as nginx builds them: pure, from the configuration and a request.

A subrequest (``auth_request``, ``websocket_connect_request``,
``websocket_disconnect_request``, ``websocket_message_request``) names a URI
of the server that took the client's request.  :func:`plan` finds the
location that URI chooses (``routing``, nginx's rules; ``internal``
locations included, as for nginx's subrequests) and decides what answers it:

* a location with ``proxy_pass`` gives an :class:`UpstreamRequest`, built as
  ``ngx_http_proxy_create_request`` builds one: the URI by
  :func:`upstream_uri`, the headers by :func:`upstream_headers`;
* a location with ``return CODE`` answers CODE itself (``location = /auth
  { internal; return 204; }`` admits every client);
* anything else answers 404, where nginx would look for a file.

A subrequest's variables (:class:`SubrequestVars`) are its main request's
(headers, ``$request_uri``, ``$request_method``, ``$remote_addr``, the
values ``auth_request_set`` stored) except ``$uri``, the captures of its
own location and the ``$upstream_*`` variables of its own exchange.

The last part says what a session tells the backend: the headers and JSON
bodies of the session events and of a client's messages
(``docs/backend.md`` documents them).  Nothing here does I/O;
``nginxws.backend`` sends the requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nginxws.conf.model import HttpSettings, Location, ProxyPass, Server
from nginxws.conf.variables import RequestVars, Upstream, compile_value
from nginxws.routing import match_location

# The headers nginx's proxy module sets itself (``ngx_http_proxy_headers``),
# so a client's header of these names is never passed: Host is
# ``$proxy_host`` unless ``proxy_set_header`` says otherwise, the body's
# length is the subrequest's own, and the hop-by-hop ones are the
# connection's.  nginx's default ``Connection: close`` is not sent: the
# worker keeps its upstream connections alive (HTTP/1.1), as nginx does with
# ``proxy_http_version 1.1; proxy_set_header Connection "";``.
NOT_PASSED = frozenset(
    {b"host", b"connection", b"keep-alive", b"upgrade", b"te", b"transfer-encoding", b"expect",
     b"content-length"}
)
_DEFAULT_HEADERS = (("Host", compile_value("$proxy_host")),)

# ngx_escape_uri's NGX_ESCAPE_URI: space, "#", "%", "?", controls and bytes from 0x7f on.
_ESCAPE = re.compile(rb"[\x00-\x20#%?\x7f-\xff]")


def escape_uri(path: bytes) -> bytes:
    """A path escaped as nginx escapes a subrequest's URI for the upstream."""
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group()[0], path)


def upstream_uri(location: Location, proxy: ProxyPass, path: str, args: str) -> bytes:
    """The request target sent upstream for ``path`` (and ``args``, the part after ``?``).

    nginx's rule: with a URI part in ``proxy_pass``, it replaces the part of
    the path that matched the location's prefix (``location /events/`` with
    ``proxy_pass http://b/api/``: ``/events/connect`` -> ``/api/connect``;
    ``location = /auth`` with ``proxy_pass http://b/check``: ``/check``);
    without one, the path is passed unchanged.  The arguments follow after
    ``?``.
    """
    raw = path.encode()
    if proxy.uri is None:
        target = escape_uri(raw)
    else:
        prefix = location.pattern.encode() if location.modifier in ("", "^~", "=") else b""
        rest = raw[len(prefix) :] if raw.startswith(prefix) else raw
        target = proxy.uri.encode() + escape_uri(rest)
    return target + b"?" + args.encode() if args else target


def upstream_headers(
    settings: HttpSettings,
    variables: RequestVars,
    client_headers: Sequence[tuple[bytes, bytes]],
    own: Sequence[tuple[bytes, bytes]] = (),
    body: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """The header lines of an upstream request, in nginx's order.

    ``own`` first (the session's facts: the push ID, the event), then each
    ``proxy_set_header`` (an empty value sends nothing), then nginx's default
    ``Host: $proxy_host`` unless set, then the client's headers
    (``proxy_pass_request_headers``) except the names set before and
    :data:`NOT_PASSED`, then ``Content-Length`` when there is a ``body``.
    A client cannot forge a header of ``own`` or of ``proxy_set_header``:
    its header of that name is not passed.
    """
    lines = list(own)
    taken = {name.lower() for name, _ in own}
    given: set[bytes] = set()
    for defaults, pairs in ((False, settings.proxy_set_header), (True, _DEFAULT_HEADERS)):
        for name, value in pairs:
            key = name.lower().encode("latin-1")
            if key in taken or (defaults and key in given):
                continue
            given.add(key)
            text = value.evaluate(variables)
            if text:
                lines.append((name.encode("latin-1"), text.encode("latin-1")))
    taken |= given
    if settings.proxy_pass_request_headers:
        lines.extend((name, value) for name, value in client_headers if name not in taken and name not in NOT_PASSED)
    if body is not None:
        lines.append((b"Content-Length", b"%d" % len(body)))
    return lines


class SubrequestVars:
    """The variables of a subrequest to ``uri``: its main request's, except
    ``$uri``, the captures of the location it chose, and its upstream exchange."""

    __slots__ = ("main", "uri", "captures", "upstream")

    def __init__(self, main: RequestVars, uri: str, captures: re.Match[str] | None = None,
                 upstream: Upstream | None = None) -> None:
        self.main = main
        self.uri = uri
        self.captures = captures
        self.upstream = upstream

    @property
    def method(self) -> bytes:
        return self.main.method

    @property
    def target(self) -> bytes:
        return self.main.target

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        return self.main.headers

    @property
    def remote_addr(self) -> str:
        return self.main.remote_addr

    @property
    def variables(self) -> Mapping[str, str] | None:
        return self.main.variables


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One request for the worker's upstream pool (``backend.Backend.fetch``)."""

    subrequest: str  # the URI the directive names, for the logs
    method: bytes
    addresses: tuple[str, ...]  # tried in order while connecting fails
    port: int
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    connect_timeout: float
    read_timeout: float
    send_timeout: float

    @property
    def url(self) -> str:
        """The upstream as nginx's error lines name it: ``http://127.0.0.1:9000/auth``."""
        return _url(self.addresses[0], self.port, self.target)


def _url(address: str, port: int, target: bytes) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{target.decode('latin-1')}"


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """What an upstream (or the location itself) answered: a status, header
    lines with lower-case names, and the body kept (none for ``auth_request``)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""

    @property
    def vars(self) -> Upstream:
        """The exchange as ``$upstream_status`` and ``$upstream_http_NAME`` read it."""
        return Upstream(status=self.status, headers=self.headers)


def plan(
    server: Server,
    uri: str,
    main: RequestVars,
    *,
    method: bytes = b"GET",
    body: bytes | None = None,
    own: Sequence[tuple[bytes, bytes]] = (),
) -> tuple[UpstreamRequest | UpstreamAnswer, SubrequestVars]:
    """The subrequest of ``main`` to ``uri`` in ``server``: the request to
    send upstream, or the answer the location gives itself (see the module
    docstring); and the subrequest's variables, for ``auth_request_set``.

    ``body`` is sent unless ``proxy_pass_request_body`` is off (a ``POST``
    then carries an empty body).
    """
    path, _, args = uri.partition("?")
    match = match_location(server.locations, path)
    location = None if match is None else match.location
    variables = SubrequestVars(main, path, None if match is None else match.captures)
    if location is None or location.proxy is None:
        status = location.return_.code if location is not None and location.return_ is not None else 404
        return UpstreamAnswer(status), variables
    proxy, settings = location.proxy, location.settings
    variables.upstream = Upstream(proxy_host=proxy.proxy_host)
    if body is not None and not settings.proxy_pass_request_body:
        body = b""
    headers = upstream_headers(settings, variables, main.headers, own, body)
    request = UpstreamRequest(
        subrequest=uri,
        method=method,
        addresses=proxy.addresses,
        port=proxy.port,
        target=upstream_uri(location, proxy, path, args),
        headers=tuple(headers),
        body=body or b"",
        connect_timeout=settings.proxy_connect_timeout,
        read_timeout=settings.proxy_read_timeout,
        send_timeout=settings.proxy_send_timeout,
    )
    return request, variables


def set_variables(settings: HttpSettings, variables: SubrequestVars, answer: UpstreamAnswer) -> dict[str, str]:
    """The values of ``auth_request_set`` once the subrequest is answered,
    evaluated in the subrequest (its ``$upstream_*``), by variable name."""
    variables.upstream = Upstream(
        proxy_host=variables.upstream.proxy_host if variables.upstream else "",
        status=answer.status,
        headers=answer.headers,
    )
    return {name: value.evaluate(variables) for name, value in settings.auth_request_set}


@dataclass(frozen=True, slots=True)
class Origin:
    """The client request a subrequest belongs to, as nginx's error lines name
    it (``ngx_http_log_error_handler``)."""

    client: str  # the client's address
    server: Server
    request_line: str  # "GET /ws HTTP/1.1"
    host: bytes | None  # its Host header

    def context(self, subrequest: str | None = None, upstream: str | None = None) -> str:
        """``, client: ..., server: ..., request: "...", subrequest: "...", upstream: "...", host: "..."``."""
        parts = [f', client: {self.client}, server: {self.server.server_names[0]}, request: "{self.request_line}"']
        if subrequest is not None:
            parts.append(f', subrequest: "{subrequest}"')
        if upstream is not None:
            parts.append(f', upstream: "{upstream}"')
        if self.host:
            parts.append(f', host: "{self.host.decode("latin-1")}"')
        return "".join(parts)


# -- what a session tells the backend ---------------------------------------------

EVENT_HEADER = b"X-Push-Event"  # connect, disconnect, message
ID_HEADER = b"X-Push-Id"  # the session's push ID
URL_HEADER = b"X-Push-Url"  # its push URLs, as in the welcome: joined by ","
TYPE_HEADER = b"X-Message-Type"  # text or binary
JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
BINARY = b"application/octet-stream"


def event_headers(event: str, push_id: str, push_urls: str) -> tuple[tuple[bytes, bytes], ...]:
    """The session's own headers of a connect or disconnect request."""
    return (
        (EVENT_HEADER, event.encode()),
        (ID_HEADER, push_id.encode()),
        (URL_HEADER, push_urls.encode()),
        (b"Content-Type", JSON),
    )


def event_body(event: str, push_id: str, push_urls: str, request: RequestVars, channels: Sequence[str],
               code: int | None = None) -> bytes:
    """The JSON body of a connect or disconnect request (``code``: the close
    code of a disconnect, None when the connection ended without one)."""
    body: dict[str, object] = {
        "event": event,
        "id": push_id,
        "push_urls": push_urls.split(",") if push_urls else [],
        "uri": request.target.decode("latin-1"),
        "remote_addr": request.remote_addr,
        "channels": list(channels),
    }
    if event == "disconnect":
        body["code"] = None if code is None else int(code)
    return json.dumps(body).encode()


def message_headers(message: str | bytes, push_id: str, push_urls: str) -> tuple[tuple[bytes, bytes], ...]:
    """The session's own headers of a message request."""
    text = isinstance(message, str)
    return (
        (EVENT_HEADER, b"message"),
        (ID_HEADER, push_id.encode()),
        (URL_HEADER, push_urls.encode()),
        (TYPE_HEADER, b"text" if text else b"binary"),
        (b"Content-Type", TEXT if text else BINARY),
    )
