"""Loading a configuration: files -> statements -> drafts -> the frozen model.

The order of work is nginx's (``ngx_init_cycle``): the ``-g`` directives are
read first, in the main context; then the main file, statement by statement,
each ``include`` read in place when it is met; then the drafts are merged
down (http -> server -> location) and frozen.  The first problem met stops
the load with a ConfigError that names its file and line.

The builder owns the walk: it checks each statement against the directive
table, reads includes, descends into blocks (bounding the depth), and warns
for ignored and refuses refused directives itself.  Handlers
(``nginxws.conf.handlers``) only turn one statement into draft values.

Path rules (nginx's ``ngx_conf_full_name``): the main file and ``pid``,
``error_log``, ``access_log`` and ``root``/``alias`` paths are relative to
the prefix (``-p``); ``include`` paths are relative to the main file's
directory.  The model holds absolute paths; ``stderr`` stays ``stderr``.
One exception: ``include mime.types`` where the main file's directory has
no such file reads the copy of Debian's ``mime.types`` that nginxws ships
(``MIME_TYPES``), so that a configuration written for nginx loads from a
wheel install too.

A ``types`` block holds no directives: each line of it is a type and its
extensions (``text/html html htm;``), or an ``include`` of more such lines,
as in nginx's ``ngx_http_core_types``.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.resources
import os

from nginxws.access import AccessRules, ClientCheck
from nginxws.conf.address import Resolve, resolve_host
from nginxws.conf.directives import IGNORED, INCLUDE, REFUSED, lookup
from nginxws.conf.drafts import (
    AddressDraft,
    HttpDraft,
    LevelDraft,
    LocationDraft,
)
from nginxws.conf.errors import ConfigError
from nginxws.conf.handlers import CHANNELS_WITHOUT_WEBSOCKET, REQUEST_WITHOUT_WEBSOCKET, Context, mime_type
from nginxws.conf.model import (
    DEFAULT_WORKER_CONNECTIONS,
    FILE_SETTINGS,
    AccessLog,
    BackendRequests,
    Config,
    ErrorLog,
    Http,
    HttpSettings,
    Listen,
    Location,
    Server,
    SourceFile,
    websocket_locations,
)
from nginxws.conf.names import conflicting_server_names
from nginxws.conf.syntax import COMMAND_LINE, Statement, parse
from nginxws.conf.tls import check_ssl, merge_ssl
from nginxws.realip import RealIp

DEFAULT_PID = "logs/nginxws.pid"
DEFAULT_ERROR_LOG = "logs/error.log"
DEFAULT_ACCESS_LOG = "logs/access.log"
MAX_DEPTH = 100  # nested blocks and includes; deeper is surely a mistake, and Python's stack is finite
_GLOB_CHARS = frozenset("*?[")
TYPES = "types"  # the context of a types block's lines
MIME_TYPES = "mime.types"


class Build:
    """The state of one load: where paths are relative to, what was read, the drafts."""

    def __init__(self, prefix: str, conf_prefix: str, resolve: Resolve) -> None:
        self.prefix = prefix
        self.conf_prefix = conf_prefix
        self.ctx = Context(prefix, functools.cache(resolve), conf_prefix=conf_prefix)
        self.files: dict[str, str] = {}
        self._reading: list[str] = []  # real paths of the files being read, outermost first
        self._context = "main"
        self._depth = 0

    def read(self, path: str, at: Statement | None) -> tuple[tuple[Statement, ...], ConfigError | None]:
        """Read and parse one file; ``at`` is the include that names it (None: the main file).

        Returns the statements and the file's syntax error (see ``syntax.parse``).
        """
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            message = f'open() "{path}" failed ({err.errno}: {err.strerror})'
            raise (at.error(message) if at else ConfigError(message)) from None
        text = data.decode("utf-8", errors="replace")
        self.files.setdefault(path, text)
        return parse(text, path)

    def run_file(self, path: str, at: Statement | None, context: str, draft: object) -> None:
        """Read ``path`` and walk its statements in ``context`` (include recursion is an error)."""
        real = os.path.realpath(path)
        if at is not None and real in self._reading:
            raise at.error(f'recursive include of "{path}"')
        statements, syntax_error = self.read(path, at)
        self._reading.append(real)
        self.walk(statements, context, draft)
        self._reading.pop()
        if syntax_error:
            raise syntax_error

    def include(self, st: Statement, draft: object) -> None:
        """The ``include`` directive: one file, or every file a glob matches, in order."""
        name = st.args[0]
        full = name if name.startswith("/") else self.conf_prefix + name
        if name == MIME_TYPES and not os.path.exists(full):
            full = shipped_mime_types()
        paths = sorted(glob.glob(full)) if _GLOB_CHARS.intersection(full) else [full]
        for path in paths:
            self.run_file(path, st, self._context, draft)

    def walk(self, statements: tuple[Statement, ...], context: str, draft: object) -> None:
        """Check each statement against the directive table and run its handler."""
        self._depth += 1
        outer, self._context = self._context, context
        try:
            if self._depth > MAX_DEPTH and statements:
                raise statements[0].error(f"blocks and includes are nested deeper than {MAX_DEPTH} levels")
            run = self._type if context == TYPES else self._run
            for st in statements:
                run(st, context, draft)
        finally:
            self._depth -= 1
            self._context = outer

    def _run(self, st: Statement, context: str, draft: object) -> None:
        if st.file == COMMAND_LINE and st.block is not None:
            raise st.error("block directives are not supported in -g option")
        directive = lookup(st.name)
        if directive is None:
            raise st.error(f'unknown directive "{st.name}"')
        if directive.kind == REFUSED:
            raise st.error(f'"{st.name}" directive is not supported by nginxws')
        if context not in directive.contexts:
            raise st.error(f'"{st.name}" directive is not allowed here')
        if st.block is not None and not directive.block:
            raise st.error(f'directive "{st.name}" is not terminated by ";"')
        if st.block is None and directive.block:
            raise st.error(f'directive "{st.name}" has no opening "{{"')
        if not directive.takes(len(st.args)):
            raise st.error(f'invalid number of arguments in "{st.name}" directive')
        if directive.kind == IGNORED:
            self.ctx.warn(st, f'"{st.name}" directive is ignored')
        elif directive.name == INCLUDE:
            self.include(st, draft)
        elif directive.block:
            self.walk(st.block or (), directive.name, directive.handler(self.ctx, st, draft))
        else:
            directive.handler(self.ctx, st, draft)

    def _type(self, st: Statement, context: str, table: dict[str, str]) -> None:
        """One line of a ``types`` block: a type, or an ``include`` of more."""
        if st.block is not None:
            raise st.error('unexpected "{"')
        if st.name != INCLUDE:
            mime_type(self.ctx, st, table)
        elif len(st.args) != 1:
            raise st.error('invalid number of arguments in "include" directive')
        else:
            self.include(st, table)

    # -- freezing -------------------------------------------------------------

    def finish(self, path: str) -> Config:
        """Merge and freeze the drafts into the model."""
        main = self.ctx.main
        if main.events is None:
            raise ConfigError('no "events" section in configuration')
        error_logs = tuple(main.error_logs) or (ErrorLog(self.prefix + DEFAULT_ERROR_LOG),)
        values = main.values
        if main.http is not None and main.http.redis_at is not None and not values.get("master_process", True):
            # The master is the one process of a host that holds the Redis link.
            raise main.http.redis_at.error('"websocket_redis" directive requires "master_process on"')
        return Config(
            path=path,
            prefix=self.prefix,
            worker_processes=values.get("worker_processes", 1),  # type: ignore[arg-type]
            pid=values.get("pid", self.prefix + DEFAULT_PID),  # type: ignore[arg-type]
            error_logs=error_logs,
            daemon=values.get("daemon", True),  # type: ignore[arg-type]
            master_process=values.get("master_process", True),  # type: ignore[arg-type]
            worker_rlimit_nofile=values.get("worker_rlimit_nofile"),  # type: ignore[arg-type]
            worker_shutdown_timeout=values.get("worker_shutdown_timeout"),  # type: ignore[arg-type]
            user=values.get("user"),  # type: ignore[arg-type]
            worker_connections=main.events.values.get(  # type: ignore[arg-type]
                "worker_connections", DEFAULT_WORKER_CONNECTIONS
            ),
            http=self._http(main.http, error_logs) if main.http else None,
            files=tuple(SourceFile(p, t) for p, t in self.files.items()),
            warnings=tuple(self.ctx.warnings),
        )

    def _http(self, draft: HttpDraft, error_logs: tuple[ErrorLog, ...]) -> Http:
        base = HttpSettings(access_logs=(AccessLog(self.prefix + DEFAULT_ACCESS_LOG),), error_logs=error_logs)
        settings = _checked(_merge(base, draft))
        default_port = 80 if os.getuid() == 0 else 8000
        servers = []
        for srv in draft.servers:
            listens = srv.listens or [Listen("0.0.0.0", default_port, addresses=("0.0.0.0",))]
            servers.append(
                Server(
                    listens=tuple(_with_socket_options(lst, draft.addresses.get(lst.key)) for lst in listens),
                    server_names=tuple(srv.server_names) or ("",),
                    settings=(srv_settings := _checked(_merge(settings, srv))),
                    locations=tuple(_location(loc, srv_settings, srv_settings) for loc in srv.locations),
                    return_=srv.return_,
                    where=srv.where,
                    try_files=srv.try_files,
                    ssl=merge_ssl(draft, srv),
                )
            )
        for server in servers:
            self._check_push_settings(server)
        self._check_stored_variables()
        check_ssl(servers)
        log_formats = tuple((name, text) for name, (text, _escape) in draft.log_formats.items())
        http = Http(servers=tuple(servers), settings=settings, log_formats=log_formats, redis=draft.redis)
        self.ctx.warnings += conflicting_server_names(http)
        return http

    def _check_stored_variables(self) -> None:
        """Every variable a value reads that is none of nginx's must be set by an
        ``auth_request_set`` somewhere: nginx checks this once the configuration
        is read (``ngx_http_variables_init_vars``); the first use is reported."""
        for name, st in self.ctx.stored_used:
            if name not in self.ctx.stored_defined:
                raise st.error(f'unknown "{name}" variable')

    def _check_push_settings(self, server: Server) -> None:
        """Warn where a location's push_listen/push_host cannot apply.

        A worker has one push listener per server, set up from the server's
        first websocket location; a later one that asks for another is told.
        """
        first, *others = list(websocket_locations(server.locations)) or [None]
        for location in others:
            ws, decided = location.websocket, first.websocket
            if (ws.push_listen, ws.push_host, ws.push_ssl) != (
                    decided.push_listen, decided.push_host, decided.push_ssl):
                self.ctx.warnings.append(ConfigError(
                    f'"push_listen", "push_host" and "push_ssl" of location "{location.pattern}" are ignored: '
                    f'the server\'s first websocket location "{first.pattern}" sets them',
                    location.where.file if location.where else None,
                    location.where.line if location.where else None,
                    level="warn",
                ))


def _merge(parent: HttpSettings, level: LevelDraft) -> HttpSettings:
    """nginx's merge: what a level sets replaces what it inherits."""
    changes: dict[str, object] = dict(level.values)
    if level.access_off:
        changes["access_logs"] = ()
    elif level.access_logs:
        changes["access_logs"] = tuple(level.access_logs)
    if level.error_logs:
        changes["error_logs"] = tuple(level.error_logs)
    if level.access:
        changes["access"] = AccessRules.compile(level.access)
    if level.push_access:
        changes["push_access"] = AccessRules.compile(level.push_access)
    if level.real_ip_from:
        changes["set_real_ip_from"] = tuple(level.real_ip_from)
    files = {name: changes.pop(name) for name in FILE_SETTINGS.intersection(changes)}
    if files:
        changes["files"] = dataclasses.replace(parent.files, **files)
    merged = dataclasses.replace(parent, **changes)  # type: ignore[arg-type]
    if changes.keys() & {"set_real_ip_from", "real_ip_header", "real_ip_recursive"}:
        # Each of the three is inherited on its own, as nginx merges them.
        realip = None
        if merged.set_real_ip_from:
            realip = RealIp(merged.set_real_ip_from, merged.real_ip_header, merged.real_ip_recursive)
        merged = dataclasses.replace(merged, realip=realip)
    return merged


def _checked(settings: HttpSettings, server: HttpSettings | None = None) -> HttpSettings:
    """``settings`` with the ``ClientCheck`` a request to its level goes through.

    ``server`` is the settings of the server around a location (None for the
    http and server levels): its realip comes first, as nginx's post-read
    phase runs before a location is chosen; the location's own is tried after
    it, when it is another one.
    """
    first = settings.realip if server is None else server.realip
    second = None if server is None or settings.realip is server.realip else settings.realip
    check = None
    if first is not None or second is not None or settings.access is not None:
        check = ClientCheck(first, second, settings.access)
    return settings if check == settings.check else dataclasses.replace(settings, check=check)


def _location(draft: LocationDraft, parent: HttpSettings, server: HttpSettings) -> Location:
    if draft.channels_at is not None and draft.websocket is None:
        # nginx checks what one directive needs of another when it merges
        # (after the http block), at the place of the directive that needs it.
        raise draft.channels_at.error(CHANNELS_WITHOUT_WEBSOCKET)
    if draft.backend_at is not None and draft.websocket is None:
        raise draft.backend_at.error(REQUEST_WITHOUT_WEBSOCKET.format(name=draft.backend_at.name))
    settings = _checked(_merge(parent, draft), server)
    return Location(
        modifier=draft.modifier,
        pattern=draft.pattern,
        settings=settings,
        websocket=draft.websocket,
        channels=draft.channels or (),
        publish=draft.publish,
        return_=draft.return_,
        locations=tuple(_location(loc, settings, server) for loc in draft.locations),
        where=draft.where,
        try_files=draft.try_files,
        internal=draft.internal,
        proxy=draft.proxy,
        backend=BackendRequests(**draft.backend) if draft.backend else None,
        report=draft.report,
    )


def _with_socket_options(listen: Listen, address: AddressDraft | None) -> Listen:
    """Every listen of an address carries the socket options given for it (once)
    anywhere, and ``ssl`` if any of its listens says it."""
    if address is not None and address.ssl and not listen.ssl:
        listen = dataclasses.replace(listen, ssl=True)
    options = address.options if address else None
    if options is None:
        return listen
    return dataclasses.replace(
        listen, reuseport=options.reuseport, backlog=options.backlog, ipv6only=options.ipv6only
    )


def shipped_mime_types() -> str:
    """The path of the ``mime.types`` that nginxws ships (Debian's nginx's)."""
    return str(importlib.resources.files("nginxws.conf") / MIME_TYPES)


def load(
    path: str,
    *,
    prefix: str | None = None,
    directives: str | None = None,
    resolve: Resolve = resolve_host,
) -> Config:
    """Load the configuration file ``path`` as ``nginx -p prefix -c path -g directives`` would.

    ``prefix`` defaults to the current directory; a relative ``path`` is
    relative to it.  ``resolve`` turns ``listen`` and ``push_listen`` host
    names into addresses (the system resolver; each name is asked once); the
    model carries them (``Listen.addresses``, ``PushListen.addresses``), and
    nothing after the load resolves a name again.
    Raises ConfigError for anything wrong, never another exception for
    anything the files or ``directives`` contain; ``Config.warnings`` holds
    nginx's warnings, the routing ones (conflicting server names) included.
    """
    root = os.path.abspath(prefix if prefix is not None else os.getcwd())
    root = root if root.endswith("/") else root + "/"
    conf_path = path if path.startswith("/") else root + path
    build = Build(root, os.path.dirname(conf_path) + "/", resolve)
    if directives:
        statements, syntax_error = parse(directives, COMMAND_LINE)
        build.walk(statements, "main", build.ctx.main)
        if syntax_error:
            raise syntax_error
    build.run_file(conf_path, None, "main", build.ctx.main)
    return build.finish(conf_path)

