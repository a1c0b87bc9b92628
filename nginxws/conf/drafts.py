"""Mutable drafts of each block, filled by the directive handlers.

A draft records what one block says explicitly (nginx's "unset" is simply a
missing key).  ``nginxws.conf.builder`` merges the drafts down the tree and
freezes them into the model once the whole configuration has been read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nginxws.access import AccessRule
from nginxws.conf.model import AccessLog, ErrorLog, Listen, ProxyPass, Redis, Return, TryFiles, WebSocket, Where
from nginxws.conf.syntax import Statement
from nginxws.conf.variables import ComplexValue
from nginxws.inet import Cidr


@dataclass
class LevelDraft:
    """What an http, server or location block sets of the merged HttpSettings.

    ``values`` maps an HttpSettings field name (which is also the directive's
    name) to its parsed value.  The lists of rules and addresses are those
    the level writes itself; an empty one inherits.
    """

    values: dict[str, object] = field(default_factory=dict)
    error_logs: list[ErrorLog] = field(default_factory=list)
    access_logs: list[AccessLog] = field(default_factory=list)
    access_off: bool = False
    access: list[AccessRule] = field(default_factory=list)  # allow / deny
    push_access: list[AccessRule] = field(default_factory=list)  # push_allow / push_deny
    real_ip_from: list[Cidr] = field(default_factory=list)  # set_real_ip_from
    # ngx_http_ssl_module's directives (http and server only): name -> value
    ssl: dict[str, object] = field(default_factory=dict)


@dataclass
class LocationDraft(LevelDraft):
    """A ``location`` block being read.

    ``captures`` are the named groups of this location's regex and of the
    regex locations around it: the names its values may use as variables.
    ``channels_at`` is the ``websocket_channels`` statement, for the check
    that the location also has ``websocket``; ``backend`` holds the URIs of
    the ``websocket_*_request`` directives by name, ``backend_at`` the first
    of them, for the same check.
    """

    modifier: str = ""
    pattern: str = ""
    where: Where | None = None
    captures: frozenset[str] = frozenset()
    websocket: WebSocket | None = None
    channels: tuple[ComplexValue, ...] | None = None
    channels_at: Statement | None = None
    publish: ComplexValue | None = None
    return_: Return | None = None
    locations: list[LocationDraft] = field(default_factory=list)
    try_files: TryFiles | None = None
    internal: bool = False
    proxy: ProxyPass | None = None
    backend: dict[str, str] = field(default_factory=dict)
    backend_at: Statement | None = None
    report: str | None = None  # stub_status, websocket_metrics or websocket_health

    @property
    def name(self) -> str:
        """The location's name as nginx prints it in messages."""
        return "@" + self.pattern if self.modifier == "@" else self.pattern


@dataclass
class ServerDraft(LevelDraft):
    """A ``server`` block being read."""

    where: Where | None = None
    listens: list[Listen] = field(default_factory=list)
    server_names: list[str] = field(default_factory=list)
    locations: list[LocationDraft] = field(default_factory=list)
    return_: Return | None = None
    try_files: TryFiles | None = None


@dataclass
class AddressDraft:
    """Every ``listen`` of one address across the http block (nginx's duplicate checks).

    ``options`` is the listen that set socket options (backlog, reuseport,
    ipv6only); at most one listen per address may.
    """

    text: str
    servers: list[ServerDraft] = field(default_factory=list)
    options: Listen | None = None
    has_default_server: bool = False
    ssl: bool = False  # some listen of this address says ``ssl``: all are TLS


@dataclass
class HttpDraft(LevelDraft):
    """The ``http`` block being read."""

    servers: list[ServerDraft] = field(default_factory=list)
    log_formats: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (format, escape)
    addresses: dict[tuple, AddressDraft] = field(default_factory=dict)
    redis: Redis | None = None
    redis_at: Statement | None = None  # for the check against master_process off


@dataclass
class EventsDraft:
    """The ``events`` block being read."""

    values: dict[str, object] = field(default_factory=dict)


@dataclass
class MainDraft:
    """The main context being read."""

    values: dict[str, object] = field(default_factory=dict)
    error_logs: list[ErrorLog] = field(default_factory=list)
    events: EventsDraft | None = None
    http: HttpDraft | None = None
