"""What each directive does with its arguments (the ``set`` of nginx's ngx_command_t).

A simple directive's handler is ``handler(ctx, statement, draft)``: it checks
the arguments, raises ``statement.error(...)`` with nginx's wording when they
are wrong, and records the value in ``draft``, the draft of the block it
appears in.  A block directive's handler is called the same way and returns
the draft of the block it opens; the builder then reads the block into it.
The builder has already checked the context, the block/simple form and the
number of arguments, and it does ``include``, ignored and refused
directives itself: no handler reads files or walks statements.

``ctx`` (:class:`Context`) is all a handler may ask of the load beyond its
own draft: paths made absolute, host names resolved, warnings, the http
block's shared tables (log formats, listen addresses), and the variables
``auth_request_set`` defines and the values that read them.
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nginxws.access import AccessRule
from nginxws.channel_names import valid_channel, valid_channel_part
from nginxws.conf.address import AddressError, Resolve, parse_address, resolve_host
from nginxws.conf.drafts import (
    AddressDraft,
    EventsDraft,
    HttpDraft,
    LevelDraft,
    LocationDraft,
    MainDraft,
    ServerDraft,
)
from nginxws.conf.errors import ConfigError
from nginxws.conf.model import AccessLog, DocumentRoot, ErrorLog, Listen, ProxyPass, Return, TryFiles, User, Where
from nginxws.conf.redis import RedisUrlError, parse_redis
from nginxws.conf.syntax import Statement
from nginxws.conf.values import (
    compile_regex,
    parse_flag,
    parse_int,
    parse_msec,
    parse_size,
    regex_error,
)
from nginxws.conf.variables import ComplexValue, ComplexValueError, builtin, compile_value
from nginxws.conf.websocket import WebSocketArgError, parse_websocket
from nginxws.inet import UNIX, Cidr, host_cidr, parse_addr, parse_cidr


@dataclass
class Context:
    """What a handler may use of the load besides its block's draft."""

    prefix: str  # absolute, ending in "/"
    resolve: Resolve = resolve_host  # host names -> addresses, asked once per name
    conf_prefix: str = ""  # the main file's directory, ending in "/" (nginx's conf_prefix)
    main: MainDraft = field(default_factory=MainDraft)
    warnings: list[ConfigError] = field(default_factory=list)
    # Variables auth_request_set defines, and every stored variable a value
    # reads with its statement: checked once the configuration is read (builder).
    stored_defined: set[str] = field(default_factory=set)
    stored_used: list[tuple[str, Statement]] = field(default_factory=list)

    @property
    def http(self) -> HttpDraft:
        """The http block's draft (a handler of an http-level directive runs inside it)."""
        assert self.main.http is not None
        return self.main.http

    def path(self, name: str) -> str:
        """``name`` made absolute against the prefix (nginx's ngx_conf_full_name)."""
        return name if name.startswith("/") else self.prefix + name

    def conf_path(self, name: str) -> str:
        """``name`` made absolute against the configuration's directory, as
        nginx takes certificate, key and password file paths."""
        return name if name.startswith("/") else self.conf_prefix + name

    def warn(self, st: Statement, message: str) -> None:
        """Record a ``[warn]`` placed at ``st``."""
        self.warnings.append(ConfigError(message, st.file, st.line, level="warn"))

    def value(self, st: Statement, text: str, captures: frozenset[str] = frozenset()) -> ComplexValue:
        """``text`` compiled as a value of ``st`` (nginx's message on error); the
        stored variables it reads are remembered for the check at the end."""
        try:
            value = compile_value(text, captures=captures, stored=True)
        except ComplexValueError as err:
            raise st.error(str(err)) from None
        self.stored_used.extend((name, st) for name in value.stored)
        return value


Handler = Callable[[Context, Statement, Any], Any]

LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
COMBINED = AccessLog(path="").format
LOG_ESCAPES = ("default", "json", "none")
LISTEN_UNSUPPORTED = frozenset(
    "http2 http3 quic spdy proxy_protocol deferred bind fastopen rcvbuf sndbuf "
    "accept_filter setfib so_keepalive multipath".split()
)
ACCESS_LOG_UNSUPPORTED = frozenset("buffer gzip flush if".split())
WEBSOCKET_WITH_PUBLISH = '"{name}" directive is not allowed in a location with "{other}"'
CHANNELS_WITHOUT_WEBSOCKET = '"websocket_channels" directive requires "websocket" in the same location'
REQUEST_WITHOUT_WEBSOCKET = '"{name}" directive requires "websocket" in the same location'
USER_NEEDS_ROOT = (
    'the "user" directive makes sense only if the master process runs with super-user privileges, ignored'
)


def _where(st: Statement) -> Where | None:
    return Where(st.file, st.line) if st.line is not None else None


# -- generic slots (ngx_conf_set_*_slot) ------------------------------------


def slot(parse: Callable[[str], object | None], invalid: str) -> Handler:
    """A one-value directive stored under its own name in ``draft.values``.

    ``invalid`` is the message for a value ``parse`` rejects; ``{name}`` and
    ``{value}`` are filled in.  A second occurrence in the same block is
    nginx's ``"x" directive is duplicate``.
    """

    def handler(ctx: Context, st: Statement, draft: Any) -> None:
        if st.name in draft.values:
            raise st.error(f'"{st.name}" directive is duplicate')
        value = parse(st.args[0])
        if value is None:
            raise st.error(invalid.format(name=st.name, value=st.args[0]))
        draft.values[st.name] = value

    return handler


FLAG_INVALID = 'invalid value "{value}" in "{name}" directive, it must be "on" or "off"'
flag = slot(parse_flag, FLAG_INVALID)
number = slot(parse_int, '"{name}" directive invalid number')
size = slot(parse_size, '"{name}" directive invalid value')


def _seconds(text: str) -> float | None:
    msec = parse_msec(text)
    return None if msec is None else msec / 1000


seconds = slot(_seconds, '"{name}" directive invalid value')


def _worker_processes(text: str) -> int | None:
    if text == "auto":
        return os.cpu_count() or 1
    return parse_int(text)


worker_processes = slot(_worker_processes, '"{name}" directive invalid value')
worker_connections = slot(parse_int, 'invalid number "{value}"')


def pid(ctx: Context, st: Statement, draft: Any) -> None:
    if st.name in draft.values:
        raise st.error(f'"{st.name}" directive is duplicate')
    draft.values[st.name] = ctx.path(st.args[0])


def keepalive_timeout(ctx: Context, st: Statement, draft: Any) -> None:
    if len(st.args) == 2 and parse_msec(st.args[1]) is None:
        raise st.error(f'"{st.name}" directive invalid value')
    seconds(ctx, st, draft)


def large_client_header_buffers(ctx: Context, st: Statement, draft: Any) -> None:
    if st.name in draft.values:
        raise st.error(f'"{st.name}" directive is duplicate')
    count, length = parse_int(st.args[0]), parse_size(st.args[1])
    if not count or not length:
        raise st.error(f'"{st.name}" directive invalid value')
    draft.values[st.name] = (count, length)


# -- logs ---------------------------------------------------------------------


def error_log(ctx: Context, st: Statement, draft: Any) -> None:
    target = st.args[0]
    if target.startswith(("syslog:", "memory:")):
        raise st.error(f'the "{target}" target of the "error_log" directive is not supported by nginxws')
    level = "error"
    for i, name in enumerate(st.args[1:]):
        if name not in LOG_LEVELS:
            raise st.error(f'invalid log level "{name}"')
        if i:
            raise st.error(f'duplicate log level "{name}"')
        level = name
    path = target if target == "stderr" else ctx.path(target)
    draft.error_logs.append(ErrorLog(path, level))


def access_log(ctx: Context, st: Statement, draft: Any) -> None:
    target = st.args[0]
    if target == "off":
        if len(st.args) > 1:
            raise st.error(f'invalid parameter "{st.args[1]}"')
        draft.access_off = True
        return
    if target.startswith("syslog:"):
        raise st.error(f'the "{target}" target of the "access_log" directive is not supported by nginxws')
    name = st.args[1] if len(st.args) > 1 else "combined"
    formats = ctx.http.log_formats
    if name not in formats:
        raise st.error(f'unknown log format "{name}"')
    for param in st.args[2:]:
        if param.split("=", 1)[0] in ACCESS_LOG_UNSUPPORTED:
            raise st.error(f'the "{param}" parameter of the "access_log" directive is not supported by nginxws')
        raise st.error(f'invalid parameter "{param}"')
    path = target if target == "stderr" else ctx.path(target)
    text, escape = formats[name]
    draft.access_logs.append(AccessLog(path, name, text, escape))


def log_format(ctx: Context, st: Statement, draft: HttpDraft) -> None:
    name, parts = st.args[0], list(st.args[1:])
    if name in draft.log_formats:
        raise st.error(f'duplicate "log_format" name "{name}"')
    escape = "default"
    if parts[0].startswith("escape="):
        escape = parts.pop(0)[len("escape=") :]
        if escape not in LOG_ESCAPES:
            raise st.error(f'unknown log format escaping "{escape}"')
    draft.log_formats[name] = ("".join(parts), escape)


# -- who may be served, as whom (nginx's access and realip modules; user) ----
# allow / deny (ngx_http_access_module), push_allow / push_deny (the same rules
# for the push listener), set_real_ip_from / real_ip_header / real_ip_recursive
# (ngx_http_realip_module); user (the workers' identity).


def user(ctx: Context, st: Statement, draft: MainDraft) -> None:
    """``user USER [GROUP]``, as nginx's ngx_set_user: looked up now; only
    root can switch, so anyone else is warned and the directive ignored.
    Without GROUP, the group of that name (not the user's primary group)."""
    if "user" in draft.values:
        raise st.error('"user" directive is duplicate')
    if os.geteuid() != 0:
        ctx.warn(st, USER_NEEDS_ROOT)
        return
    name = st.args[0]
    group = st.args[-1]
    try:
        uid = pwd.getpwnam(name).pw_uid
    except (KeyError, ValueError):
        raise st.error(f'getpwnam("{name}") failed') from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except (KeyError, ValueError):
        raise st.error(f'getgrnam("{group}") failed') from None
    draft.values["user"] = User(name, uid, gid)


def access_rule(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """``allow``/``deny`` (``push_allow``/``push_deny``): one rule, kept in order."""
    text = st.args[0]
    if text == "all":
        cidr = None
    elif text == "unix:":
        cidr = Cidr(UNIX, 0, 0)
    else:
        cidr = _cidr(ctx, st, text)
        if cidr is None:
            raise st.error(f'invalid parameter "{text}"')
    rules = draft.push_access if st.name.startswith("push_") else draft.access
    rules.append(AccessRule(st.name.endswith("deny"), cidr))


def set_real_ip_from(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """A trusted address, CIDR, ``unix:``, or a host name (every address it resolves to)."""
    text = st.args[0]
    if text == "unix:":
        draft.real_ip_from.append(Cidr(UNIX, 0, 0))
        return
    cidr = _cidr(ctx, st, text)
    if cidr is not None:
        draft.real_ip_from.append(cidr)
        return
    peers = [parse_addr(address.partition("%")[0]) for address in ctx.resolve(text)]
    if not peers:
        raise st.error(f'host not found in set_real_ip_from "{text}"')
    draft.real_ip_from.extend(host_cidr(peer) for peer in peers if peer is not None)


def real_ip_header(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """``X-Real-IP``, ``X-Forwarded-For`` or any header name; ``proxy_protocol`` needs
    a listen option nginxws does not have."""
    if st.name in draft.values:
        raise st.error(f'"{st.name}" directive is duplicate')
    if st.args[0] == "proxy_protocol":
        raise st.error('the "proxy_protocol" parameter of the "real_ip_header" directive is not supported by nginxws')
    draft.values[st.name] = st.args[0]


def _cidr(ctx: Context, st: Statement, text: str) -> Cidr | None:
    """``text`` as nginx's ngx_ptocidr reads it (warning as nginx when bits
    past the mask are set); None when it is no address."""
    parsed = parse_cidr(text)
    if parsed is None:
        return None
    cidr, trimmed = parsed
    if trimmed:
        ctx.warn(st, f"low address bits of {text} are meaningless")
    return cidr


# -- blocks -------------------------------------------------------------------


def events(ctx: Context, st: Statement, main: MainDraft) -> EventsDraft:
    if main.events is not None:
        raise st.error('"events" directive is duplicate')
    main.events = EventsDraft()
    return main.events


def http(ctx: Context, st: Statement, main: MainDraft) -> HttpDraft:
    if main.http is not None:
        raise st.error('"http" directive is duplicate')
    main.http = HttpDraft(log_formats={"combined": (COMBINED, "default")})
    return main.http


def server(ctx: Context, st: Statement, draft: HttpDraft) -> ServerDraft:
    srv = ServerDraft(where=_where(st))
    draft.servers.append(srv)
    return srv


# -- server -------------------------------------------------------------------


def listen(ctx: Context, st: Statement, draft: ServerDraft) -> None:
    text = st.args[0]
    try:
        address = parse_address(text, resolve=ctx.resolve)
    except AddressError as err:
        raise st.error(f'{err} in "{text}" of the "listen" directive') from None
    options: dict[str, Any] = {}
    default_server = tls = False
    for param in st.args[1:]:
        key, _, value = param.partition("=")
        if param == "default_server":
            default_server = True
        elif param == "ssl":
            tls = True  # not a socket option: any listen of an address may say it
        elif param == "reuseport":
            options["reuseport"] = True
        elif key == "backlog" and value:
            backlog = parse_int(value)
            if not backlog:
                raise st.error(f'invalid backlog "{value}"')
            options["backlog"] = backlog
        elif key == "ipv6only" and value:
            if parse_flag(value) is None:
                raise st.error(f'invalid ipv6only flags "{value}"')
            options["ipv6only"] = parse_flag(value)
        elif key in LISTEN_UNSUPPORTED:
            raise st.error(f'the "{param}" parameter of the "listen" directive is not supported by nginxws')
        else:
            raise st.error(f'invalid parameter "{param}"')
    item = Listen(
        address.host, address.port, address.unix, default_server,
        addresses=address.addresses, where=_where(st), ssl=tls, **options,
    )

    addresses = ctx.http.addresses
    entry = addresses.setdefault(item.key, AddressDraft(address.text))
    if draft in entry.servers:
        raise st.error(f"a duplicate listen {entry.text}")
    entry.servers.append(draft)
    entry.ssl = entry.ssl or tls
    if options:
        if entry.options is not None:
            raise st.error(f"duplicate listen options for {entry.text}")
        entry.options = item
    if default_server:
        if entry.has_default_server:
            raise st.error(f"a duplicate default server for {entry.text}")
        entry.has_default_server = True
    draft.listens.append(item)


def server_name(ctx: Context, st: Statement, draft: ServerDraft) -> None:
    for name in st.args:
        if name.startswith("~"):
            if len(name) == 1:
                raise st.error(f'empty regex in server name "{name}"')
            problem = regex_error(name[1:])
            if problem:
                raise st.error(problem)
            draft.server_names.append(name)
            continue
        if (name.startswith("*") and (len(name) < 3 or name[1] != ".")) or name == ".":
            raise st.error(f'server name "{name}" is invalid')
        if "/" in name:
            ctx.warn(st, f'server name "{name}" has suspicious symbols')
        if name == "$hostname":
            name = socket.gethostname()
        draft.server_names.append(name.lower())


# -- location -----------------------------------------------------------------

_MODIFIERS = ("=", "^~", "~", "~*")


def _split_location(st: Statement) -> tuple[str, str]:
    if len(st.args) == 2:
        modifier, pattern = st.args
        if modifier not in _MODIFIERS:
            raise st.error(f'invalid location modifier "{modifier}"')
        return modifier, pattern
    name = st.args[0]
    if len(name) > 1 and name[0] == "=":
        return "=", name[1:]
    if len(name) > 2 and name.startswith("^~"):
        return "^~", name[2:]
    if len(name) > 1 and name[0] == "~":
        return ("~*", name[2:]) if name[1] == "*" else ("~", name[1:])
    if name.startswith("@"):
        return "@", name[1:]
    return "", name


def location(ctx: Context, st: Statement, parent: ServerDraft | LocationDraft) -> LocationDraft:
    modifier, pattern = _split_location(st)
    inherited = parent.captures if isinstance(parent, LocationDraft) else frozenset()
    loc = LocationDraft(modifier=modifier, pattern=pattern, where=_where(st), captures=inherited)
    if modifier in ("~", "~*"):
        caseless = modifier == "~*"
        problem = regex_error(pattern, caseless=caseless)
        if problem:
            raise st.error(problem)
        loc.captures |= frozenset(compile_regex(pattern, caseless=caseless).groupindex)
    if isinstance(parent, LocationDraft):
        if parent.modifier == "=":
            raise st.error(f'location "{loc.name}" cannot be inside the exact location "{parent.name}"')
        if parent.modifier == "@":
            raise st.error(f'location "{loc.name}" cannot be inside the named location "{parent.name}"')
        if modifier == "@":
            raise st.error(f'named location "{loc.name}" can be on the server level only')
        if modifier not in ("~", "~*") and not pattern.startswith(parent.pattern):
            raise st.error(f'location "{loc.name}" is outside location "{parent.name}"')
    if modifier not in ("~", "~*"):
        kind = {"=": "=", "@": "@"}.get(modifier, "")
        for sibling in parent.locations:
            if sibling.pattern == pattern and {"=": "=", "@": "@"}.get(sibling.modifier, "") == kind:
                raise st.error(f'duplicate location "{loc.name}"')
    parent.locations.append(loc)
    return loc


def return_(ctx: Context, st: Statement, draft: ServerDraft | LocationDraft) -> None:
    first = st.args[0]
    code = parse_int(first)
    if code is None:
        if len(st.args) == 1 and first.startswith(("http://", "https://", "$scheme")):
            ret = Return(302, first)
        else:
            raise st.error(f'invalid return code "{first}"')
    elif code > 999:
        raise st.error(f'invalid return code "{first}"')
    else:
        ret = Return(code, st.args[1] if len(st.args) == 2 else None)
    # Like nginx's rewrite module, the first "return" of a block is the one that answers.
    if draft.return_ is None:
        draft.return_ = ret


def _content(draft: LocationDraft) -> str | None:
    """The directive that already gives the location its content: a location
    has at most one of ``websocket``, ``websocket_publish``, ``proxy_pass``,
    ``stub_status``, ``websocket_metrics`` and ``websocket_health``."""
    if draft.websocket is not None:
        return "websocket"
    if draft.publish is not None:
        return "websocket_publish"
    if draft.report is not None:
        return draft.report
    return "proxy_pass" if draft.proxy is not None else None


def websocket(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    if draft.websocket is not None:
        raise st.error('"websocket" directive is duplicate')
    if (other := _content(draft)) is not None:
        raise st.error(WEBSOCKET_WITH_PUBLISH.format(name="websocket", other=other))
    try:
        ws = parse_websocket(st.args, ctx.resolve)
    except WebSocketArgError as err:
        raise st.error(str(err)) from None
    if ws.idleintvl <= ws.pingintvl:
        ctx.warn(
            st,
            f'"websocket" idleintvl ({ws.idleintvl:g}s) is not greater than '
            f"pingintvl ({ws.pingintvl:g}s): no ping will be sent",
        )
    draft.websocket = ws


# -- channels -----------------------------------------------------------------


def _channel(ctx: Context, st: Statement, text: str, draft: LocationDraft) -> ComplexValue:
    """One channel name as written, compiled; refused when no request could make it valid.

    A value without variables must be a channel name; the text around the
    variables of any other value must consist of channel characters (at most
    128 of them), since every evaluation contains it.
    """
    value = ctx.value(st, text, draft.captures)
    literal = "".join(value.literals)
    if not (valid_channel(literal) if value.constant else valid_channel_part(literal)):
        raise st.error(f'invalid channel name "{text}"')
    return value


def websocket_channels(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """The channels a client joins at its handshake (checked for ``websocket`` when the
    configuration has been read, see ``builder``)."""
    if draft.channels is not None:
        raise st.error('"websocket_channels" directive is duplicate')
    draft.channels = tuple(_channel(ctx, st, text, draft) for text in st.args)
    draft.channels_at = st


def websocket_publish(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """Makes the location a publish endpoint for one channel."""
    if draft.publish is not None:
        raise st.error('"websocket_publish" directive is duplicate')
    if (other := _content(draft)) is not None:
        raise st.error(WEBSOCKET_WITH_PUBLISH.format(name="websocket_publish", other=other))
    draft.publish = _channel(ctx, st, st.args[0], draft)


# -- the backend (docs/backend.md) ------------------------------------------------


def _uri(st: Statement, text: str) -> str:
    """A subrequest's URI: a path in this server, maybe with arguments."""
    if not text.startswith("/"):
        raise st.error(f'invalid URI "{text}" in "{st.name}" directive, it must start with "/"')
    return text


def auth_request(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """The subrequest that admits a request (``off``: none, where one is inherited)."""
    if st.name in draft.values:
        raise st.error(f'"{st.name}" directive is duplicate')
    draft.values[st.name] = None if st.args[0] == "off" else _uri(st, st.args[0])


_VARIABLE_NAME = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")


def auth_request_set(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """``auth_request_set $variable value``: defines the variable for the whole configuration."""
    written, text = st.args
    if not _VARIABLE_NAME.fullmatch(written):
        raise st.error(f'invalid variable name "{written}"')
    name = written[1:].lower()
    if builtin(name):
        raise st.error(f'the duplicate "{name}" variable')
    ctx.stored_defined.add(name)
    pairs = draft.values.get(st.name, ())
    draft.values[st.name] = (*pairs, (name, ctx.value(st, text)))  # type: ignore[misc]


def proxy_set_header(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """A header of the upstream request; an empty value sends none."""
    field_name, text = st.args
    pairs = draft.values.get(st.name, ())
    draft.values[st.name] = (*pairs, (field_name, ctx.value(st, text)))  # type: ignore[misc]


_URI_PART_REFUSED = (
    '"proxy_pass" cannot have URI part in location given by regular expression, '
    'or inside named location, or inside "if" statement, or inside "limit_except" block'
)


def proxy_pass(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """``proxy_pass http://host[:port][/uri]``: the host is resolved now, once."""
    if draft.proxy is not None:
        raise st.error('"proxy_pass" directive is duplicate')
    if (other := _content(draft)) is not None:
        raise st.error(WEBSOCKET_WITH_PUBLISH.format(name="proxy_pass", other=other))
    url = st.args[0]
    if "$" in url:
        raise st.error('"proxy_pass" with variables is not supported by nginxws')
    if url[:8].lower() == "https://":
        raise st.error('"proxy_pass" to https is not supported by nginxws')
    if url[:7].lower() != "http://":
        raise st.error(f'invalid URL prefix in "{url}"')
    rest = url[7:]
    if rest[:5].lower() == "unix:":
        raise st.error('"proxy_pass" to a unix socket is not supported by nginxws')
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, uri = rest[:cut], rest[cut:] or None
    if uri is not None and draft.modifier in ("~", "~*", "@"):
        raise st.error(_URI_PART_REFUSED)
    try:
        address = parse_address(authority, wildcard=None, resolve=ctx.resolve) if authority else None
    except AddressError as err:
        raise st.error(f'{err} in upstream "{rest}"') from None
    if address is None or address.host is None:
        raise st.error(f'no host in upstream "{rest}"')
    host = f"[{address.host}]" if ":" in address.host else address.host
    draft.proxy = ProxyPass(url, host, address.port or 80, address.addresses, uri)


def proxy_http_version(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """Accepted for the configurations that ask for keep-alive (``1.1``), which nginxws always does."""
    if st.name in draft.values:
        raise st.error(f'"{st.name}" directive is duplicate')
    version = st.args[0]
    if version not in ("1.0", "1.1"):
        raise st.error(f'invalid value "{version}" in "{st.name}" directive, it must be "1.0" or "1.1"')
    if version == "1.0":
        raise st.error('"proxy_http_version 1.0" is not supported by nginxws: it speaks HTTP/1.1 with '
                       "keep-alive to upstreams")
    draft.values[st.name] = version


def internal(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """Only subrequests reach the location; a client's request to it is 404."""
    if draft.internal:
        raise st.error('"internal" directive is duplicate')
    draft.internal = True


def websocket_request(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """``websocket_connect_request``, ``websocket_disconnect_request``,
    ``websocket_message_request``: the URI of the session's subrequest (the
    ``websocket`` they require is checked once the configuration is read)."""
    kind = st.name[len("websocket_") : -len("_request")]
    if kind in draft.backend:
        raise st.error(f'"{st.name}" directive is duplicate')
    draft.backend[kind] = _uri(st, st.args[0])
    if draft.backend_at is None:
        draft.backend_at = st


# -- channels across hosts ----------------------------------------------------

REDIS_CLIENT = "coredis"  # the Redis client the master uses (nginxws[redis])
REDIS_WITHOUT_CLIENT = (
    '"websocket_redis" directive needs the coredis package, which is not installed '
    '(pip install "nginxws[redis]")'
)


def websocket_redis(ctx: Context, st: Statement, draft: HttpDraft) -> None:
    """The Redis that carries channel messages between hosts (its syntax only: no network)."""
    if draft.redis is not None:
        raise st.error('"websocket_redis" directive is duplicate')
    try:
        draft.redis = parse_redis(st.args)
    except RedisUrlError as err:
        raise st.error(str(err)) from None
    # Found, not imported: without the directive nothing of Redis is loaded,
    # and with it the master imports the client only when it runs.
    if importlib.util.find_spec(REDIS_CLIENT) is None:
        raise st.error(REDIS_WITHOUT_CLIENT)
    draft.redis_at = st


# -- static files -------------------------------------------------------------

IF_MODIFIED_SINCE = ("off", "exact", "before")
AUTOINDEX_ON = '"autoindex on" is not supported by nginxws: it lists no directories'


def _compile(st: Statement, text: str, draft: Any) -> ComplexValue:
    try:
        return compile_value(text, captures=getattr(draft, "captures", frozenset()))
    except ComplexValueError as err:
        raise st.error(str(err)) from None


def root(ctx: Context, st: Statement, draft: Any) -> None:
    """``root`` and ``alias`` (ngx_http_core_root): one of them per level."""
    alias = st.name == "alias"
    found: DocumentRoot | None = draft.values.get("root")
    if found is not None:
        if (found.alias is not None) == alias:
            raise st.error(f'"{st.name}" directive is duplicate')
        raise st.error(f'"{st.name}" directive is duplicate, "{found.directive}" directive was specified earlier')
    if alias and draft.modifier == "@":
        raise st.error('the "alias" directive cannot be used inside the named location')
    text = st.args[0]
    for name in ("document_root", "realpath_root"):
        if f"${name}" in text or f"${{{name}}}" in text:
            raise st.error(f'the ${name} variable cannot be used in the "{st.name}" directive')
    absolute = text.startswith("/")
    if not alias and text.endswith("/"):
        text = text[:-1]
    value = _compile(st, text, draft)
    if value.constant and not absolute:
        value = _compile(st, ctx.path(text), draft)  # a constant path is made absolute once, here
    if not alias:
        draft.values["root"] = DocumentRoot(value, ctx.prefix)
    elif draft.modifier in ("~", "~*"):
        draft.values["root"] = DocumentRoot(value, ctx.prefix, alias=0, whole=True)
    else:
        draft.values["root"] = DocumentRoot(value, ctx.prefix, alias=len(draft.pattern))


def index(ctx: Context, st: Statement, draft: Any) -> None:
    """``index``: the names add up over the directives of one level."""
    last = len(st.args) - 1
    for i, text in enumerate(st.args):
        if text.startswith("/") and i != last:
            ctx.warn(st, 'only the last index in "index" directive should be absolute')
        if not text:
            raise st.error(f'index "{st.args[0]}" in "index" directive is invalid')  # sic: nginx names the first
    names = tuple(_compile(st, text, draft) for text in st.args)
    draft.values["index"] = draft.values.get("index", ()) + names


def try_files(ctx: Context, st: Statement, draft: ServerDraft | LocationDraft) -> None:
    """``try_files``: the files, then the fallback (``=code``, ``@name`` or a URI)."""
    if draft.try_files is not None:
        raise st.error('"try_files" directive is duplicate')
    *names, last = st.args
    files = []
    for text in names:
        wants_directory = text.endswith("/")
        files.append((_compile(st, text[:-1] if wants_directory else text, draft), wants_directory))
    code = None
    if last.startswith("="):
        code = parse_int(last[1:])
        if code is None or code > 999:
            raise st.error(f'invalid code "{last}"')
    draft.try_files = TryFiles(tuple(files), _compile(st, last, draft), code or None)


def types(ctx: Context, st: Statement, draft: Any) -> dict[str, str]:
    """A ``types`` block: its lines go into the level's table (every block of
    one level adds to one table, which replaces the inherited one)."""
    return draft.values.setdefault("types", {})


def mime_type(ctx: Context, st: Statement, table: dict[str, str]) -> None:
    """One line of a ``types`` block: ``type extension ...;`` (ngx_http_core_type)."""
    for extension in st.args:
        extension = extension.encode().lower().decode()  # ASCII letters only, as ngx_hash_strlow
        previous = table.get(extension)
        if previous is not None:
            ctx.warn(st, f'duplicate extension "{extension}", content type: "{st.name}", '
                         f'previous content type: "{previous}"')
        table[extension] = st.name


def autoindex(ctx: Context, st: Statement, draft: Any) -> None:
    """``autoindex off`` only: nginxws never lists a directory (so nothing is recorded)."""
    value = parse_flag(st.args[0])
    if value is None:
        raise st.error(FLAG_INVALID.format(name=st.name, value=st.args[0]))
    if value:
        raise st.error(AUTOINDEX_ON)


default_type = slot(lambda text: text, "")
if_modified_since = slot(lambda text: text if text in IF_MODIFIED_SINCE else None, 'invalid value "{value}"')


# -- TLS (ngx_http_ssl_module) --------------------------------------------------
#
# The values go to ``draft.ssl`` (http and server levels); the builder merges
# them into each server's ``Ssl`` and has ``conf.tls`` load the files.

SSL_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
PASSWORD_BUFFER_SIZE = 4096  # nginx's NGX_SSL_PASSWORD_BUFFER_SIZE: a longer line is refused


class PasswordFileError(ValueError):
    """A password file nginx refuses (``too long line``)."""


def read_passwords(data: bytes) -> tuple[bytes, ...]:
    """The passwords of an ``ssl_password_file``, as nginx reads them
    (``ngx_ssl_read_password_file``): one per line, a CR before the LF
    dropped, empty lines skipped; a file with none gives one empty password.
    Raises PasswordFileError for a line of ``PASSWORD_BUFFER_SIZE`` bytes or more.
    """
    passwords = []
    for line in data.split(b"\n"):
        if len(line) >= PASSWORD_BUFFER_SIZE:
            raise PasswordFileError("too long line")
        line = line[:-1] if line.endswith(b"\r") else line
        if line:
            passwords.append(line)
    return tuple(passwords) or (b"",)


def _ssl_path(st: Statement) -> str:
    value = st.args[0]
    if "$" in value or value.startswith(("data:", "engine:", "store:")):
        raise st.error(f'the "{value}" value of the "{st.name}" directive is not supported by nginxws')
    return value


def ssl_certificate(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """``ssl_certificate`` and ``ssl_certificate_key``: each one adds to its
    level's list (several certificates, e.g. RSA and ECDSA, pair up in order)."""
    paths = draft.ssl.setdefault(st.name, [])
    paths.append((ctx.conf_path(_ssl_path(st)), _where(st)))


def ssl_password_file(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    if st.name in draft.ssl:
        raise st.error(f'"{st.name}" directive is duplicate')
    path = ctx.conf_path(st.args[0])
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise st.error(f'open() "{path}" failed ({err.errno}: {err.strerror})') from None
    try:
        draft.ssl[st.name] = read_passwords(data)
    except PasswordFileError:
        raise st.error(f'too long line in "{path}"') from None


def ssl_protocols(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """A bitmask, as nginx's: a second ``ssl_protocols`` in a block adds to the first."""
    enabled: list[str] = draft.ssl.setdefault(st.name, [])  # type: ignore[assignment]
    for value in st.args:
        name = next((p for p in SSL_PROTOCOLS if p.lower() == value.lower()), None)
        if name is None:
            raise st.error(f'invalid value "{value}"')
        if name in enabled:
            ctx.warn(st, f'duplicate value "{value}"')
        else:
            enabled.append(name)


def ssl_ciphers(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    if st.name in draft.ssl:
        raise st.error(f'"{st.name}" directive is duplicate')
    draft.ssl[st.name] = (st.args[0], _where(st))


def ssl_flag(ctx: Context, st: Statement, draft: LevelDraft) -> None:
    """``ssl_prefer_server_ciphers``, ``ssl_session_tickets``: on or off."""
    if st.name in draft.ssl:
        raise st.error(f'"{st.name}" directive is duplicate')
    value = parse_flag(st.args[0])
    if value is None:
        raise st.error(FLAG_INVALID.format(name=st.name, value=st.args[0]))
    draft.ssl[st.name] = value


# -- status and metrics -----------------------------------------------------------


def report(ctx: Context, st: Statement, draft: LocationDraft) -> None:
    """``stub_status``, ``websocket_metrics``, ``websocket_health``: the location
    answers with the host's state.  One content directive per location
    (``_content``); ``stub_status`` takes (and
    ignores) one argument, as nginx's does since ``stub_status on`` became
    ``stub_status``."""
    if draft.report == st.name:
        raise st.error(f'"{st.name}" directive is duplicate')
    if (other := _content(draft)) is not None:
        raise st.error(WEBSOCKET_WITH_PUBLISH.format(name=st.name, other=other))
    draft.report = st.name
