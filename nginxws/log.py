"""``error_log`` and ``access_log``, written in nginx's line formats.

Error log
    ``ErrorLogger(targets, pid=None)`` writes lines shaped exactly like nginx's::

        2026/11/29 21:34:18 [info] 1234#0: *5 client closed connection

    ``*N `` appears only when a connection number is given; ``#0`` is the
    thread id, always 0.  Each target receives the messages of its own level
    and every more severe one (``debug`` < ``info`` < ``notice`` < ``warn`` <
    ``error`` < ``crit`` < ``alert`` < ``emerg``).  ``bootstrap_error_log()``
    is the logger used before any configuration is known: stderr, ``notice``,
    as nginx's built-in log.

Access log
    ``AccessLogger(targets)`` compiles each target's ``log_format`` text once
    (``compile_format``) and, per request, ``log(entry)`` renders one line.
    The worker describes a finished request with an ``AccessEntry``: the few
    facts it already holds (mostly h11's own bytes, passed through untouched);
    every nginx variable is derived from them only when a format uses it.
    Values are escaped as nginx does: by default ``"``, ``\\``, control
    characters and bytes >= 0x7f become ``\\xHH`` and a missing value is
    ``-``; ``escape=json`` escapes for a JSON string and leaves missing values
    empty; ``escape=none`` writes values as they are.

Both write each line with a single ``write()`` on a descriptor opened with
``O_APPEND``, so several worker processes can share one file without tearing
lines, and nothing is buffered when a process dies.  ``reopen()`` (signal
USR1, after logrotate renamed the files) opens every path afresh; it returns
nginx's error messages for paths it could not open, keeping the old
descriptor for those, so the caller can log them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nginxws.conf.model import AccessLog, ErrorLog, HttpSettings, Server
from nginxws.conf.variables import ComplexValueError, InvalidVariableName, header_value, host_name, scan
from nginxws.errors import NginxwsError

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
SEVERITY = {name: number for number, name in enumerate(LEVELS)}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FILE_MODE = 0o644  # nginx's NGX_FILE_DEFAULT_ACCESS


def os_error_text(err: OSError) -> str:
    """nginx's way of appending an errno: ``(2: No such file or directory)``."""
    return f"({err.errno}: {err.strerror})"


class _Stamps:
    """nginx's cached time strings, recomputed at most once per second."""

    __slots__ = ("second", "error_log", "time_local", "iso8601")

    def __init__(self) -> None:
        self.second = -1
        self.error_log = self.time_local = self.iso8601 = b""

    def at(self, now: float) -> _Stamps:
        second = int(now)
        if second != self.second:
            tm = time.localtime(second)
            offset = tm.tm_gmtoff // 60
            sign = "-" if offset < 0 else "+"
            hours, minutes = divmod(abs(offset), 60)
            ymd_hms = (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
            self.error_log = b"%04d/%02d/%02d %02d:%02d:%02d" % ymd_hms
            self.time_local = b"%02d/%s/%04d:%02d:%02d:%02d %s%02d%02d" % (
                tm.tm_mday, _MONTHS[tm.tm_mon - 1].encode(), tm.tm_year,
                tm.tm_hour, tm.tm_min, tm.tm_sec, sign.encode(), hours, minutes,
            )  # fmt: skip
            self.iso8601 = b"%04d-%02d-%02dT%02d:%02d:%02d%s%02d:%02d" % (
                *ymd_hms, sign.encode(), hours, minutes,
            )  # fmt: skip
            self.second = second
        return self


_STAMPS = _Stamps()


class _Sink:
    """One open log destination: ``stderr`` or a file opened for appending."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = 2 if path == "stderr" else self._open()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.path, flags, _FILE_MODE)

    def write(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            # A full disk or a closed terminal must not take a worker down,
            # and a failing log has nowhere better to report to.
            pass

    def reopen(self) -> str | None:
        if self.path == "stderr":
            return None
        try:
            fd = self._open()
        except OSError as err:
            return f'open() "{self.path}" failed {os_error_text(err)}'
        os.close(self.fd)
        self.fd = fd
        return None

    def close(self) -> None:
        if self.path != "stderr" and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LogOpenError(NginxwsError):
    """A log file could not be opened; ``text`` is nginx's message."""

    def __init__(self, path: str, err: OSError) -> None:
        super().__init__(f'open() "{path}" failed {os_error_text(err)}')
        self.path = path


def _open_all(paths: Sequence[str]) -> list[_Sink]:
    """Open every path, or none: a failure closes what was already opened."""
    sinks: list[_Sink] = []
    for path in paths:
        try:
            sinks.append(_Sink(path))
        except OSError as err:
            for sink in sinks:
                sink.close()
            raise LogOpenError(path, err) from err
    return sinks


class ErrorLogger:
    """The error log of one process.

    ``pid`` is printed in every line; ``None`` means the calling process's
    own pid, looked up per line so that a logger survives a fork.  Raises
    ``LogOpenError`` if a target file cannot be opened.
    """

    def __init__(self, targets: Sequence[ErrorLog], pid: int | None = None) -> None:
        self.targets = tuple(targets)
        self.pid = pid
        self._sinks = _open_all([t.path for t in self.targets])
        self._levels = [SEVERITY[t.level] for t in self.targets]
        self._threshold = max(self._levels, default=-1)

    def enabled(self, level: str) -> bool:
        """Whether any target takes ``level``; lets callers skip costly messages."""
        return SEVERITY[level] <= self._threshold

    def log(self, level: str, msg: str, conn: int | None = None) -> None:
        severity = SEVERITY[level]
        if severity > self._threshold:
            return
        pid = os.getpid() if self.pid is None else self.pid
        stamp = _STAMPS.at(time.time()).error_log
        if conn is None:
            line = b"%s [%s] %d#0: %s\n" % (stamp, level.encode(), pid, msg.encode("utf-8", "backslashreplace"))
        else:
            line = b"%s [%s] %d#0: *%d %s\n" % (
                stamp, level.encode(), pid, conn, msg.encode("utf-8", "backslashreplace"),
            )  # fmt: skip
        for sink, target_severity in zip(self._sinks, self._levels, strict=True):
            if severity <= target_severity:
                sink.write(line)

    def emerg(self, msg: str, conn: int | None = None) -> None:
        self.log("emerg", msg, conn)

    def alert(self, msg: str, conn: int | None = None) -> None:
        self.log("alert", msg, conn)

    def crit(self, msg: str, conn: int | None = None) -> None:
        self.log("crit", msg, conn)

    def error(self, msg: str, conn: int | None = None) -> None:
        self.log("error", msg, conn)

    def warn(self, msg: str, conn: int | None = None) -> None:
        self.log("warn", msg, conn)

    def notice(self, msg: str, conn: int | None = None) -> None:
        self.log("notice", msg, conn)

    def info(self, msg: str, conn: int | None = None) -> None:
        self.log("info", msg, conn)

    def debug(self, msg: str, conn: int | None = None) -> None:
        self.log("debug", msg, conn)

    def reopen(self) -> tuple[str, ...]:
        """Reopen every file target; returns the messages of those that failed."""
        return tuple(m for m in (s.reopen() for s in self._sinks) if m)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()


def bootstrap_error_log(pid: int | None = None) -> ErrorLogger:
    """The log used before the configuration names one: stderr at ``notice``."""
    return ErrorLogger((ErrorLog("stderr", "notice"),), pid=pid)


# --- access log -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One finished request (or WebSocket session), as the access log sees it.

    ``method``, ``target``, ``http_version`` and ``headers`` are h11's own
    values (``headers`` as ``(lowercase name, value)`` byte pairs); ``None``
    when no request line was read.  ``start`` is ``time.time()`` when the
    request began, for ``$request_time``.
    """

    remote_addr: str
    status: int
    start: float
    realip_remote_addr: str = ""  # the connection's own address ("": remote_addr is)
    method: bytes | None = None
    target: bytes | None = None
    http_version: bytes | None = None
    headers: Sequence[tuple[bytes, bytes]] = ()
    body_bytes_sent: int = 0
    bytes_sent: int = 0
    connection: int = 0
    server_name: str = ""
    server_port: int = 0
    scheme: bytes = b"http"


class Request(Protocol):
    """What the logs read of a request: an ``h11.Request`` or a ``pushhttp.PushRequest``."""

    method: bytes
    target: bytes
    http_version: bytes
    headers: Sequence[tuple[bytes, bytes]]  # (lower-case name, value)


class Exchange:
    """One request as the access log sees it: an h11 request of the front
    door, or a push listener's request (with the same four fields it reads).

    ``client`` is the address realip found for the request, when it found
    one: ``$remote_addr`` then, the connection's being ``$realip_remote_addr``.
    ``scheme`` is ``$scheme``: a TLS connection's exchanges are ``TlsExchange``.
    """

    scheme = b"http"
    __slots__ = ("request", "server", "settings", "status", "sent", "started", "conn", "client")

    def __init__(self, request: Request | None, server: Server, conn: int) -> None:
        self.request = request
        self.server = server
        self.settings: HttpSettings = server.settings
        self.status = 0
        self.sent = 0
        self.started = time.time()
        self.conn = conn
        self.client: str | None = None

    def entry(self, remote, local) -> AccessEntry:
        request = self.request
        peer = remote[0] if isinstance(remote, tuple) else "unix:"
        return AccessEntry(
            remote_addr=self.client or peer,
            realip_remote_addr=peer,
            status=self.status,
            start=self.started,
            method=request.method if request else None,
            target=request.target if request else None,
            http_version=request.http_version if request else None,
            headers=request.headers if request else (),
            body_bytes_sent=self.sent,
            bytes_sent=self.sent,
            connection=self.conn,
            server_name=self.server.server_names[0] if self.server.server_names else "",
            server_port=local[1] if isinstance(local, tuple) else 0,
            scheme=self.scheme,
        )


class TlsExchange(Exchange):
    """An exchange over TLS (``$scheme`` is ``https``)."""

    scheme = b"https"
    __slots__ = ()


def request_context(client: str, server: Server, request: Request | None) -> str:
    """What nginx appends to an error line about a request
    (``ngx_http_log_error``): ``, client: ADDR, server: NAME, request:
    "LINE", host: "HOST"``, and ``, referrer: "..."`` when there is one."""
    name = server.server_names[0] if server.server_names else ""
    text = f", client: {client}, server: {name}"
    if request is None:
        return text
    line = b"%s %s HTTP/%s" % (request.method, request.target, request.http_version)
    text += f', request: "{line.decode("utf-8", "backslashreplace")}"'
    for header, label in ((b"host", "host"), (b"referer", "referrer")):
        value = next((v for k, v in request.headers if k == header), None)
        if value is not None:
            text += f', {label}: "{value.decode("utf-8", "backslashreplace")}"'
    return text


class LogFormatError(NginxwsError, ValueError):
    """A ``log_format`` text that cannot be compiled; ``text`` is nginx's message."""


# A getter returns the variable's value, or None when nginx says "not found".
Getter = Callable[[AccessEntry, float], bytes | None]
Formatter = Callable[[AccessEntry, float], bytes]


def _header(entry: AccessEntry, name: bytes) -> bytes | None:
    return header_value(entry.headers, name)


def _remote_user(entry: AccessEntry, now: float) -> bytes | None:
    auth = _header(entry, b"authorization")
    if auth is None:
        return None
    scheme, _, credentials = auth.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, _ = decoded.partition(b":")
    return user if colon else None


def _request(entry: AccessEntry, now: float) -> bytes | None:
    if entry.method is None or entry.target is None or entry.http_version is None:
        return None
    return b"%s %s HTTP/%s" % (entry.method, entry.target, entry.http_version)


def _uri(entry: AccessEntry, now: float) -> bytes | None:
    if entry.target is None:
        return None
    path = entry.target.partition(b"?")[0]
    return urllib.parse.unquote_to_bytes(path)


def _args(entry: AccessEntry, now: float) -> bytes | None:
    if entry.target is None:
        return None
    _, question, args = entry.target.partition(b"?")
    return args if question else None


def _is_args(entry: AccessEntry, now: float) -> bytes:
    return b"?" if entry.target is not None and b"?" in entry.target else b""


def _host(entry: AccessEntry, now: float) -> bytes:
    host = _header(entry, b"host")
    if host:
        return host_name(host)
    return entry.server_name.encode()


def _server_protocol(entry: AccessEntry, now: float) -> bytes | None:
    return None if entry.http_version is None else b"HTTP/" + entry.http_version


def _request_time(entry: AccessEntry, now: float) -> bytes:
    ms = max(int((now - entry.start) * 1000), 0)
    return b"%d.%03d" % divmod(ms, 1000)


def _msec(entry: AccessEntry, now: float) -> bytes:
    ms = int(now * 1000)
    return b"%d.%03d" % divmod(ms, 1000)


# Variables nginx's log module renders itself: always present, never escaped.
_LOG_OPS: dict[str, Callable[[AccessEntry, float], bytes]] = {
    "time_local": lambda e, now: _STAMPS.at(now).time_local,
    "time_iso8601": lambda e, now: _STAMPS.at(now).iso8601,
    "msec": _msec,
    "request_time": _request_time,
    "status": lambda e, now: b"%03d" % e.status,
    "bytes_sent": lambda e, now: b"%d" % e.bytes_sent,
    "body_bytes_sent": lambda e, now: b"%d" % max(e.body_bytes_sent, 0),
}

# stub_status's variables: the host's connections now (``nginxws.stats``), in
# the order of ``ConnectionCounts``; rendered as numbers, never missing.
_CONNECTIONS = ("connections_active", "connections_reading", "connections_writing", "connections_waiting")
ConnectionCounts = Callable[[], tuple[int, int, int, int]]


def _no_connections() -> tuple[int, int, int, int]:
    return (0, 0, 0, 0)


def _connections_op(index: int, connections: ConnectionCounts) -> Callable[[AccessEntry, float], bytes]:
    return lambda e, now: b"%d" % connections()[index]


# Ordinary variables: may be missing, escaped per the format's escape mode.
_VARIABLES: dict[str, Getter] = {
    "remote_addr": lambda e, now: e.remote_addr.encode(),
    "realip_remote_addr": lambda e, now: (e.realip_remote_addr or e.remote_addr).encode(),
    "remote_user": _remote_user,
    "request": _request,
    "request_method": lambda e, now: e.method,
    "request_uri": lambda e, now: e.target,
    "uri": _uri,
    "args": _args,
    "query_string": _args,
    "is_args": _is_args,
    "server_protocol": _server_protocol,
    "scheme": lambda e, now: e.scheme,
    "host": _host,
    "hostname": lambda e, now: socket.gethostname().encode(),
    "connection": lambda e, now: b"%d" % e.connection,
    "pid": lambda e, now: b"%d" % os.getpid(),
    "server_name": lambda e, now: e.server_name.encode(),
    "server_port": lambda e, now: b"%d" % e.server_port,
}

_DEFAULT_UNSAFE = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
_JSON_UNSAFE = re.compile(rb'[\x00-\x1f"\\]')
_JSON_SHORT = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r"}


def escape_default(value: bytes) -> bytes:
    """nginx's default access-log escaping: unsafe bytes become ``\\xHH``."""
    return _DEFAULT_UNSAFE.sub(lambda m: b"\\x%02X" % m.group()[0], value)


def _json_char(match: re.Match[bytes]) -> bytes:
    byte = match.group()[0]
    if byte in (0x22, 0x5C):
        return b"\\" + match.group()
    return _JSON_SHORT.get(byte) or b"\\u%04X" % byte


def escape_json(value: bytes) -> bytes:
    """nginx's ``escape=json``: valid inside a JSON string (UTF-8 left as is)."""
    return _JSON_UNSAFE.sub(_json_char, value)


# escape= mode -> (what a missing value prints, how a value is escaped)
_ESCAPING: dict[str, tuple[bytes, Callable[[bytes], bytes]]] = {
    "default": (b"-", escape_default),
    "json": (b"", escape_json),
    "none": (b"", lambda value: value),
}


def _getter(name: str) -> Getter:
    if name in _VARIABLES:
        return _VARIABLES[name]
    if name.startswith("http_") and len(name) > 5:
        header = name[5:].replace("_", "-").encode()
        return lambda e, now: _header(e, header)
    raise LogFormatError(f'unknown "{name}" variable')


def _render_variable(name: str, escape: str) -> Callable[[AccessEntry, float], bytes]:
    get = _getter(name)
    missing, escape_value = _ESCAPING[escape]

    def render(e: AccessEntry, now: float) -> bytes:
        value = get(e, now)
        return missing if value is None else escape_value(value)

    return render


def compile_format(text: str, escape: str = "default", connections: ConnectionCounts = _no_connections) -> Formatter:
    """Compile a ``log_format`` text into a function ``(entry, now) -> line``.

    ``connections`` gives ``$connections_active``, ``_reading``, ``_writing``
    and ``_waiting`` when a line is rendered (zeros: only checking a format).

    ``$name`` and ``${name}`` are variables, read by the scanner of every
    value with variables (``nginxws.conf.variables.scan``); everything else
    is copied.  Raises ``LogFormatError`` with nginx's message for an
    unknown variable or a malformed reference (``invalid parameter``, the
    log module's word for a ``$`` that starts no name).
    """
    if escape not in _ESCAPING:
        raise LogFormatError(f'unknown log format escaping "{escape}"')
    parts: list[bytes | Callable[[AccessEntry, float], bytes]] = []
    try:
        for piece in scan(text):
            if isinstance(piece, str):
                parts.append(piece.encode())
                continue
            op = _LOG_OPS.get(piece.name)
            if op is None and piece.name in _CONNECTIONS:
                op = _connections_op(_CONNECTIONS.index(piece.name), connections)
            parts.append(op if op is not None else _render_variable(piece.name, escape))
    except InvalidVariableName:
        raise LogFormatError(f'invalid parameter "{text}"') from None
    except ComplexValueError as err:
        raise LogFormatError(str(err)) from None
    parts.append(b"\n")
    frozen = tuple(parts)

    def format_line(entry: AccessEntry, now: float) -> bytes:
        return b"".join([p if p.__class__ is bytes else p(entry, now) for p in frozen])

    return format_line


class AccessLogger:
    """The access logs of one ``http``/``server``/``location`` level.

    Raises ``LogFormatError`` for a bad format and ``LogOpenError`` if a file
    cannot be opened.  An empty ``targets`` is ``access_log off``.
    ``connections``: the host's connections, for ``$connections_*``.
    """

    def __init__(self, targets: Sequence[AccessLog], connections: ConnectionCounts = _no_connections) -> None:
        self.targets = tuple(targets)
        formats = [compile_format(t.format, t.escape, connections) for t in self.targets]
        self._outputs = list(zip(_open_all([t.path for t in self.targets]), formats, strict=True))

    def log(self, entry: AccessEntry) -> None:
        now = time.time()
        for sink, format_line in self._outputs:
            sink.write(format_line(entry, now))

    def reopen(self) -> tuple[str, ...]:
        """Reopen every file; returns the messages of those that failed."""
        return tuple(m for m in (sink.reopen() for sink, _ in self._outputs) if m)

    def close(self) -> None:
        for sink, _ in self._outputs:
            sink.close()
