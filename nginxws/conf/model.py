"""The typed, immutable configuration model.

This is the contract between the configuration language (``nginxws.conf``)
and everything that runs (``worker``, ``master``, ``cli``).  Nothing here opens
a file or a socket.

Rules the builder keeps, so that the runtime never has to:

* Every value is already parsed and checked: durations are seconds (float),
  sizes are bytes (int), switches are bools.
* Inheritance is resolved the way nginx merges configuration: a setting
  given in ``http`` applies to every ``server`` that does not set its own,
  a ``server`` setting to every ``location`` below it, and so on.  The model
  therefore carries the *effective* value at each level.
* Nested locations are kept in ``Location.locations`` in file order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from nginxws.access import AccessRules, ClientCheck
from nginxws.conf.errors import ConfigError
from nginxws.conf.variables import ComplexValue
from nginxws.inet import Cidr
from nginxws.realip import X_REAL_IP, RealIp

# nginx's own defaults, named so the docs and the builder share them.
DEFAULT_PINGINTVL = 300.0  # seconds (the original's 300000 ms)
DEFAULT_IDLEINTVL = 360.0  # seconds (the original's 360000 ms)
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
DEFAULT_WORKER_CONNECTIONS = 512
DEFAULT_CLIENT_HEADER_TIMEOUT = 60.0
DEFAULT_CLIENT_BODY_TIMEOUT = 60.0
DEFAULT_CLIENT_HEADER_BUFFER_SIZE = 1024
DEFAULT_LARGE_CLIENT_HEADER_BUFFERS = (4, 8192)
DEFAULT_CLIENT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_SEND_TIMEOUT = 60.0
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
DEFAULT_PUSH_QUEUE = 64  # messages waiting for one slow client before 503
DEFAULT_PROXY_TIMEOUT = 60.0  # proxy_connect_timeout, proxy_read_timeout, proxy_send_timeout
# -- TLS (ngx_http_ssl_module's defaults) --
DEFAULT_SSL_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
DEFAULT_SSL_CIPHERS = "HIGH:!aNULL:!MD5"


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a configuration file, for error messages."""

    file: str
    line: int


@dataclass(frozen=True, slots=True)
class ErrorLog:
    """One ``error_log`` target: a file path, or ``"stderr"``."""

    path: str
    level: str = "error"  # debug info notice warn error crit alert emerg


@dataclass(frozen=True, slots=True)
class AccessLog:
    """One ``access_log`` target with its resolved format text."""

    path: str
    format_name: str = "combined"
    format: str = (
        '$remote_addr - $remote_user [$time_local] "$request" $status '
        '$body_bytes_sent "$http_referer" "$http_user_agent"'
    )
    escape: str = "default"  # log_format's escape=: default | json | none


@dataclass(frozen=True, slots=True)
class Listen:
    """A ``listen`` directive.

    ``host`` is a literal address ("0.0.0.0" for ``*`` or a bare port, "::"
    for ``[::]``, or a host name as written); ``unix`` is set instead of
    ``host``/``port`` for ``unix:`` sockets.  ``addresses`` are the IP
    addresses ``host`` stands for, resolved when the configuration was
    loaded (the literal itself, or every address of the name): routing and
    the listening sockets use them and never resolve ``host`` again.
    """

    host: str | None
    port: int | None
    unix: str | None = None
    default_server: bool = False
    reuseport: bool = False
    backlog: int = 511
    ipv6only: bool = True
    addresses: tuple[str, ...] = ()
    where: Where | None = field(default=None, compare=False)
    ssl: bool = False  # TLS on this address (``listen ... ssl`` of any server on it)

    @property
    def key(self) -> tuple:
        """What makes two listens "the same address" (nginx's duplicate check)."""
        return ("unix", self.unix) if self.unix else (self.host, self.port)


@dataclass(frozen=True, slots=True)
class PushListen:
    """Where a worker's push listener binds (``websocket push_listen=``).

    ``port`` 0 means an OS-chosen port per worker; a fixed port P gives
    worker *i* the port ``P + i`` so that workers never collide.
    ``addresses`` are what ``host`` resolved to when the configuration was
    loaded, as for :class:`Listen`.
    """

    host: str | None  # None: the server's own listen address
    port: int = 0
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebSocket:
    """The ``websocket`` directive of one location."""

    pingintvl: float = DEFAULT_PINGINTVL  # seconds
    idleintvl: float = DEFAULT_IDLEINTVL  # seconds
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    welcome: bool = True
    push_listen: PushListen | None = None
    push_host: tuple[str, ...] = ()  # advertised names/addresses; () = derive
    push_queue: int = DEFAULT_PUSH_QUEUE
    deflate: bool = False  # permessage-deflate (RFC 7692) offered by a client is accepted
    deflate_window_bits: int = 15  # the server's LZ77 window: 2**bits bytes
    # No compression context kept between messages: with it, zlib's state (about
    # 256 KiB at 15 bits) would stay with every idle connection from its welcome on.
    deflate_no_context_takeover: bool = True
    push_ssl: bool = False  # the push listener speaks TLS, with the server's certificate


@dataclass(frozen=True, slots=True)
class Return:
    """``return code [text|URL]``."""

    code: int
    text: str | None = None


# -- static files: root, alias, index, try_files, types --------------------------

# nginx's built-in types, used where no level has a ``types`` block
# (ngx_http_core_default_types).
DEFAULT_TYPES = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}
DEFAULT_INDEX = (ComplexValue("index.html", ("index.html",)),)
DEFAULT_TYPE = "text/plain"


@dataclass(frozen=True, slots=True)
class DocumentRoot:
    """``root`` or ``alias``: where a location's files are.

    ``path`` is the directive's value, compiled (it may hold variables);
    ``prefix`` makes a relative result absolute.  For ``root`` the request's
    URI is appended to the path.  For ``alias``, ``alias`` is the length of
    the location's name, the part of the URI the path replaces; in a regex
    location (``whole``) the path is the file's whole path, as nginx has it.
    As nginx does, a nested location without its own inherits it.
    """

    path: ComplexValue
    prefix: str  # absolute, ending in "/"
    alias: int | None = None
    whole: bool = False

    @property
    def directive(self) -> str:
        return "root" if self.alias is None else "alias"


@dataclass(frozen=True, slots=True)
class TryFiles:
    """``try_files file ... fallback``: the names tried in order, and what
    answers when none exists (a ``=code``, a ``@name`` or a URI, as written)."""

    files: tuple[tuple[ComplexValue, bool], ...]  # (name without its trailing "/", a directory is wanted)
    fallback: ComplexValue
    code: int | None = None  # the fallback is "=code"


@dataclass(frozen=True, slots=True)
class FileSettings:
    """The settings of static files that merge down from http to location.

    ``root`` None: no ``root`` or ``alias`` anywhere above, so the location
    serves no files (nginx would use ``html`` under the prefix).
    """

    root: DocumentRoot | None = None
    index: tuple[ComplexValue, ...] = DEFAULT_INDEX
    types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TYPES))  # extension -> type
    default_type: str = DEFAULT_TYPE
    etag: bool = True
    if_modified_since: str = "exact"  # off | exact | before
    log_not_found: bool = True


FILE_SETTINGS = frozenset(f.name for f in dataclasses.fields(FileSettings))


# -- the backend: auth_request, proxy_pass, the websocket_*_request directives -----


@dataclass(frozen=True, slots=True)
class ProxyPass:
    """``proxy_pass http://host[:port][/uri]`` of one location.

    ``host`` is as written (a name, an address, ``[::1]``); ``addresses``
    are what it resolved to when the configuration was loaded, as for
    :class:`Listen`.  ``uri`` is the URI part (``/auth`` of
    ``http://127.0.0.1:9000/auth``, ``/`` of ``http://h/``), None when the
    URL has none: the request's own URI is then passed unchanged.
    """

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    uri: str | None = None

    @property
    def proxy_host(self) -> str:
        """nginx's ``$proxy_host``: the host as written, with the port unless it is 80."""
        return self.host if self.port == 80 else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class BackendRequests:
    """The ``websocket_connect_request``, ``websocket_disconnect_request`` and
    ``websocket_message_request`` URIs of one ``websocket`` location."""

    connect: str | None = None
    disconnect: str | None = None
    message: str | None = None


# A header of ``proxy_set_header`` or a variable of ``auth_request_set``: a name and its value.
NamedValue = tuple[str, ComplexValue]


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """The http-level settings that merge down to server and location."""

    client_header_timeout: float = DEFAULT_CLIENT_HEADER_TIMEOUT
    client_body_timeout: float = DEFAULT_CLIENT_BODY_TIMEOUT
    client_header_buffer_size: int = DEFAULT_CLIENT_HEADER_BUFFER_SIZE
    large_client_header_buffers: tuple[int, int] = DEFAULT_LARGE_CLIENT_HEADER_BUFFERS
    client_max_body_size: int = DEFAULT_CLIENT_MAX_BODY_SIZE
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    server_tokens: bool = True
    tcp_nodelay: bool = True  # off: a WebSocket session's socket runs Nagle's algorithm
    files: FileSettings = FileSettings()  # root, alias, index, types...
    access_logs: tuple[AccessLog, ...] = ()  # () = access_log off
    error_logs: tuple[ErrorLog, ...] = ()
    # -- who may be served, and who the client is (nginxws.access, nginxws.realip)
    access: AccessRules | None = None  # allow / deny; None: no rule
    push_access: AccessRules | None = None  # push_allow / push_deny, for the push listener
    set_real_ip_from: tuple[Cidr, ...] = ()
    real_ip_header: str = X_REAL_IP
    real_ip_recursive: bool = False
    realip: RealIp | None = None  # the three above; None without set_real_ip_from
    # What a request to this level goes through before it is served; None:
    # nothing, so that a request there pays one attribute test.
    check: ClientCheck | None = None
    # The backend (docs/backend.md): the subrequest of ``auth_request`` (None: off)
    # and what its answer sets; how ``proxy_pass`` talks to an upstream.
    auth_request: str | None = None
    auth_request_set: tuple[NamedValue, ...] = ()
    proxy_set_header: tuple[NamedValue, ...] = ()
    proxy_pass_request_body: bool = True
    proxy_pass_request_headers: bool = True
    proxy_connect_timeout: float = DEFAULT_PROXY_TIMEOUT
    proxy_read_timeout: float = DEFAULT_PROXY_TIMEOUT
    proxy_send_timeout: float = DEFAULT_PROXY_TIMEOUT
    proxy_http_version: str = "1.1"  # the only one nginxws speaks


@dataclass(frozen=True, slots=True)
class Location:
    """A ``location`` block.

    ``modifier`` is one of ``""`` (prefix), ``"="``, ``"^~"``, ``"~"``,
    ``"~*"`` or ``"@"`` (named).  ``channels`` (``websocket_channels``, only
    with ``websocket``) are the channels a client joins at its handshake;
    ``publish`` (``websocket_publish``, never with ``websocket``) makes the
    location a publish endpoint for the channel it names.  Neither is
    inherited by nested locations.  ``internal`` locations answer only
    subrequests (a client gets 404); ``proxy`` (``proxy_pass``) sends the
    subrequests to an upstream; ``backend`` (only with ``websocket``) names
    the subrequests a session makes.  None of the three is inherited either.
    """

    modifier: str
    pattern: str
    settings: HttpSettings
    websocket: WebSocket | None = None
    channels: tuple[ComplexValue, ...] = ()
    publish: ComplexValue | None = None
    return_: Return | None = None
    locations: tuple[Location, ...] = ()
    where: Where | None = field(default=None, compare=False)
    try_files: TryFiles | None = None  # not inherited
    internal: bool = False
    proxy: ProxyPass | None = None
    backend: BackendRequests | None = None
    report: str | None = None  # STUB_STATUS, METRICS or HEALTH: the location answers with the host's state


# -- status and metrics ----------------------------------------------------------
# The directives that make a location answer with the state of the whole host
# (every worker), one of them per location: ``Location.report``, the directive's name.
STUB_STATUS = "stub_status"
METRICS = "websocket_metrics"
HEALTH = "websocket_health"


def all_locations(config: Config) -> Iterator[Location]:
    """Every location of ``config``, nested ones included, in file order."""

    def below(locations: tuple[Location, ...]) -> Iterator[Location]:
        for location in locations:
            yield location
            yield from below(location.locations)

    for server in config.http.servers if config.http else ():
        yield from below(server.locations)


def all_settings(http: Http) -> Iterator[HttpSettings]:
    """The settings of the http block and of every server and location in it."""

    def below(locations: tuple[Location, ...]) -> Iterator[HttpSettings]:
        for location in locations:
            yield location.settings
            yield from below(location.locations)

    yield http.settings
    for server in http.servers:
        yield server.settings
        yield from below(server.locations)


def log_paths(config: Config) -> tuple[str, ...]:
    """Every ``error_log`` and ``access_log`` target of ``config``, once each, in order."""
    paths = [log.path for log in config.error_logs]
    if config.http is not None:
        for settings in all_settings(config.http):
            paths += [log.path for log in settings.error_logs + settings.access_logs]
    return tuple(dict.fromkeys(paths))


def websocket_locations(locations: tuple[Location, ...]):
    """Every location with ``websocket``, nested ones included, in file order."""
    for location in locations:
        if location.websocket is not None:
            yield location
        yield from websocket_locations(location.locations)


# -- TLS ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Certificate:
    """One ``ssl_certificate`` with its ``ssl_certificate_key`` (absolute paths).

    ``path`` holds the certificate and its chain; ``where`` and
    ``key_where`` are the directives' places, for the errors of loading them.
    """

    path: str
    key: str
    where: Where | None = field(default=None, compare=False)
    key_where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Ssl:
    """A server's TLS settings (ngx_http_ssl_module), merged from http and server.

    Paths and values only, so the model stays picklable: each worker builds
    its ``ssl.SSLContext`` from them (``nginxws.conf.tls``).  ``passwords``
    are the lines of ``ssl_password_file`` (None: no file), tried in order.
    """

    certificates: tuple[Certificate, ...] = ()
    passwords: tuple[bytes, ...] | None = None
    protocols: tuple[str, ...] = DEFAULT_SSL_PROTOCOLS
    ciphers: str = DEFAULT_SSL_CIPHERS
    prefer_server_ciphers: bool = False
    session_tickets: bool = True
    ciphers_where: Where | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Server:
    """A ``server`` block."""

    listens: tuple[Listen, ...]
    server_names: tuple[str, ...]
    settings: HttpSettings
    locations: tuple[Location, ...] = ()
    return_: Return | None = None
    where: Where | None = field(default=None, compare=False)
    try_files: TryFiles | None = None  # for requests no location matches
    ssl: Ssl = Ssl()


@dataclass(frozen=True, slots=True)
class RedisNode:
    """One Redis server (or cluster seed node) as ``websocket_redis`` names it."""

    host: str  # as written: a name is resolved when connecting, never at load
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Redis:
    """``websocket_redis``: the Redis whose pub/sub joins the channels of many hosts."""

    nodes: tuple[RedisNode, ...]
    cluster: bool = False  # seed nodes of a Redis Cluster: sharded pub/sub
    tls: bool = False  # rediss://
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0

    @property
    def address(self) -> str:
        """The nodes as log lines name them (never the password)."""
        return ", ".join(str(node) for node in self.nodes)


@dataclass(frozen=True, slots=True)
class Http:
    """The ``http`` block."""

    servers: tuple[Server, ...]
    settings: HttpSettings
    log_formats: tuple[tuple[str, str], ...] = ()
    redis: Redis | None = None  # websocket_redis; None: channels reach this host only


@dataclass(frozen=True, slots=True)
class User:
    """``user``: the identity the worker processes take (looked up when loaded)."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One file read while loading the configuration (for ``-T``)."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, as the master and workers use it."""

    path: str  # the main configuration file, absolute
    prefix: str  # nginx's prefix (``-p``), absolute, with a trailing "/"
    worker_processes: int  # "auto" already resolved to the CPU count
    pid: str  # absolute path
    error_logs: tuple[ErrorLog, ...]
    daemon: bool = True
    master_process: bool = True
    worker_rlimit_nofile: int | None = None
    worker_shutdown_timeout: float | None = None
    worker_connections: int = DEFAULT_WORKER_CONNECTIONS
    user: User | None = None  # None: the workers keep the master's identity
    http: Http | None = None
    files: tuple[SourceFile, ...] = ()
    warnings: tuple[ConfigError, ...] = ()  # the [warn]s met while loading, each with its place
