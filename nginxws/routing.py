"""Request routing as nginx does it: listen address -> server -> location.

Pure functions over the configuration model; nothing here touches a socket
or resolves a name (a ``listen`` host name comes with the addresses
``conf.load`` resolved it to).
Everything a request needs is compiled in the constructors, so a lookup is a
few dictionary probes plus the regular expressions the configuration asks for.

Theory of operation (each rule is nginx's; the nginx function it mirrors is
named so a reader can check it):

1. **Listen address** (``ngx_http_init_connection``).  A connection arrives on
   ``(ip, port)`` or a unix socket path.  The servers that listen on exactly
   that address form its :class:`ServerGroup`; only when no ``listen`` names
   that address does the wildcard (``0.0.0.0`` / ``::``) on the same port
   apply.  Servers listening on the wildcard are *not* candidates for a
   connection that arrived on a specifically listened address, whatever the
   ``Host``.  A ``listen`` host name stands for all the addresses it resolved
   to when the configuration was loaded, and the server joins the group of
   each.

2. **Host** (``ngx_http_validate_host``).  The port is cut off (after ``]``
   for a bracketed IPv6 literal, which keeps its brackets), one trailing dot
   is dropped, ASCII letters are lowered.  A host with ``..``, ``/``, a control
   character or nothing left is invalid: nginx answers 400 (see
   :func:`normalize_host`) and the group's default server handles it.

3. **Server name** (``ngx_http_find_virtual_server``), first match wins:
   exact name; longest leading wildcard (``*.example.org``; ``.example.org``
   also matches ``example.org`` exactly); longest trailing wildcard
   (``mail.*``, which needs something after the dot); regular expressions
   (``~...``) in order of appearance, never against an empty host; then the
   ``default_server`` of that address, else the group's first server.  A
   request without ``Host`` looks up the empty name (``server_name ""``).
   A name given twice on one address keeps its first server; the later one is
   ignored with nginx's ``conflicting server name`` warning.

4. **Path** (``ngx_http_parse_complex_uri`` with ``merge_slashes on``).  The
   query (``?``) and fragment (``#``) are cut off, ``%XX`` is decoded once,
   then ``//`` merges and ``.``/``..`` segments resolve; ``..`` above the root,
   a bad ``%`` escape or a decoded NUL make the request invalid (400).

5. **Location** (``ngx_http_core_find_location``), per nesting level: an
   ``=`` location equal to the path ends the search; otherwise the longest
   matching prefix (plain or ``^~``) is remembered and its nested locations
   are searched the same way (an ``=`` or regex found there ends everything).
   Unless that remembered prefix is ``^~``, the level's regex locations
   (``~`` case-sensitive, ``~*`` case-insensitive) are tried in order and the
   first match wins, after a search of its own nested locations.  Otherwise
   the remembered prefix (or what its nested search found) stands.  Note that
   ``^~`` only silences the regexes of its own level: a ``^~`` nested inside a
   plain prefix still lets the outer level's regexes win.  Named (``@``)
   locations never match a URI.  Prefix comparison is case-sensitive.

Regular expressions are nginx's PCRE ones run by Python's :mod:`re` (see
:func:`compile_regex` for the translation): matching is unanchored and ASCII
(PCRE without UTF mode).  Server-name regexes are case-insensitive only when
the pattern has an upper-case letter, as in nginx.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from nginxws.conf.address import Endpoint, endpoint_text, endpoints
from nginxws.conf.errors import ConfigError
from nginxws.conf.model import Http, Location, Server, Where
from nginxws.conf.names import claim
from nginxws.conf.values import compile_regex

# How many distinct location sequences ``match_location`` keeps compiled.  A
# configuration has one per server (nested levels are compiled with their
# parent), so this only bounds a caller that passes fresh lists every time.
LOCATION_CACHE_SIZE = 1024

# ---------------------------------------------------------------------------
# Regular expressions

def _compile_or_emerg(
    pattern: str, caseless: bool, where: Where | None
) -> re.Pattern[str]:
    try:
        return compile_regex(pattern, caseless=caseless)
    except re.error as err:
        raise ConfigError(
            f'pcre_compile() failed: {err.msg} in "{pattern}"',
            where.file if where else None,
            where.line if where else None,
        ) from None


# ---------------------------------------------------------------------------
# Request target and Host

_RAW_INVALID = re.compile(rb"[\x00-\x20\x7f]")
_PATH_END = re.compile(rb"[?#]")
_COMPLEX_PATH = re.compile(rb"%|//|/\.")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ABSOLUTE_FORM = re.compile(
    rb"[A-Za-z][A-Za-z0-9+.\-]*://"
    rb"(?P<authority>(?:\[[0-9A-Za-z:._~!$&'()*+,;=\-]*\]|[A-Za-z0-9.\-]*)(?::[0-9]*)?)"
    rb"(?=[/?]|\Z)"
)
_HOST_INVALID = re.compile(r"[\x00-\x20\x7f/]|\.\.")
_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


def _text(raw: bytes) -> str:
    """Bytes from the wire as text: UTF-8, invalid bytes kept as surrogates.

    Valid UTF-8 then compares equal to the configuration's (UTF-8) names, and
    an invalid byte can never equal anything written in the configuration.
    """
    return raw.decode("utf-8", "surrogateescape")


def target_host(target: bytes) -> str | None:
    """The ``host[:port]`` of an absolute-form request-target, else None.

    nginx lets this host override the ``Host`` header; feed it to
    :func:`normalize_host` / :meth:`ServerGroup.select_server`.
    """
    if target.startswith(b"/"):
        return None
    m = _ABSOLUTE_FORM.match(target)
    return None if m is None else _text(m.group("authority"))


def normalize_path(target: bytes) -> str | None:
    """The path nginx matches locations against, or None for "400 Bad Request".

    Accepts origin-form (``/a/b?q``) and absolute-form (``http://h/a/b?q``)
    targets; see rule 4 of the module docstring.
    """
    if not target.startswith(b"/"):
        m = _ABSOLUTE_FORM.match(target)
        if m is None:
            return None
        target = target[m.end() :]
        if not target.startswith(b"/"):
            target = b"/" + target
    if _RAW_INVALID.search(target):
        return None
    end = _PATH_END.search(target)
    raw = target if end is None else target[: end.start()]
    if _COMPLEX_PATH.search(raw) is None:
        return _text(raw)
    if b"%" in raw:
        if _BAD_ESCAPE.search(raw):
            return None
        raw = unquote_to_bytes(raw)
        if b"\x00" in raw:
            return None
    segments = raw.split(b"/")
    kept: list[bytes] = []
    for segment in segments[1:]:
        if segment == b"..":
            if not kept:
                return None
            kept.pop()
        elif segment and segment != b".":
            kept.append(segment)
    trailing_slash = kept and segments[-1] in (b"", b".", b"..")
    return _text(b"/" + b"/".join(kept) + (b"/" if trailing_slash else b""))


def normalize_host(host: str | bytes) -> str | None:
    """A ``Host`` value as nginx compares it, or None when nginx answers 400.

    Drops the port and one trailing dot, lowers ASCII letters; a bracketed
    IPv6 literal keeps its brackets (``[::1]:80`` -> ``[::1]``).
    """
    if isinstance(host, bytes):
        host = _text(host)
    if _HOST_INVALID.search(host):
        return None
    if host.startswith("["):
        close = host.find("]")
        length = len(host) if close < 0 else close + 1
    else:
        colon = host.find(":")
        length = len(host) if colon < 0 else colon
    # nginx looks at the last dot of the whole value, port included.
    if length and host.rfind(".") == length - 1:
        length -= 1
    if not length:
        return None
    return host[:length].translate(_ASCII_LOWER)


# ---------------------------------------------------------------------------
# Locations


@dataclass(frozen=True, slots=True)
class LocationMatch:
    """The location a path selected, with the last regex match on the way.

    ``captures`` holds ``$1``.. and named captures when a regex location took
    part in the choice (nginx keeps the last successful one), else None.
    """

    location: Location
    captures: re.Match[str] | None = None


class _Level:
    """The locations of one nesting level, compiled for lookup."""

    __slots__ = ("exact", "prefixes", "lengths", "regexes")

    def __init__(self, locations: Sequence[Location]) -> None:
        self.exact: dict[str, Location] = {}
        # pattern -> (location, its nested level, stops the regex search)
        self.prefixes: dict[str, tuple[Location, _Level, bool]] = {}
        self.regexes: list[tuple[re.Pattern[str], Location, _Level]] = []
        for loc in locations:
            if loc.modifier == "=":
                self.exact.setdefault(loc.pattern, loc)
            elif loc.modifier in ("", "^~"):
                if loc.pattern not in self.prefixes:
                    self.prefixes[loc.pattern] = (
                        loc,
                        _level(loc.locations),
                        loc.modifier == "^~",
                    )
            elif loc.modifier in ("~", "~*"):
                regex = _compile_or_emerg(loc.pattern, loc.modifier == "~*", loc.where)
                self.regexes.append((regex, loc, _level(loc.locations)))
        # Longest first, so the first hit is the longest matching prefix.
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)

    def find(
        self, path: str, captures: re.Match[str] | None
    ) -> tuple[bool, Location | None, re.Match[str] | None]:
        """nginx's ngx_http_core_find_location for this level.

        Returns (final, location, captures): ``final`` when an ``=`` or regex
        location decided (no outer regex may override it); ``location`` None
        when nothing at this level matched.
        """
        exact = self.exact.get(path)
        if exact is not None:
            return True, exact, captures
        found: Location | None = None
        noregex = False
        size = len(path)
        for n in self.lengths:
            if n <= size:
                hit = self.prefixes.get(path[:n])
                if hit is not None:
                    found, nested, noregex = hit
                    final, inner, captures = nested.find(path, captures)
                    if final:
                        return True, inner, captures
                    if inner is not None:
                        found = inner
                    break
        if not noregex:
            for regex, loc, nested in self.regexes:
                m = regex.search(path)
                if m is not None:
                    _, inner, captures = nested.find(path, m)
                    return True, loc if inner is None else inner, captures
        return False, found, captures


_EMPTY_LEVEL = _Level(())
_LEVELS: dict[int, tuple[Sequence[Location], _Level]] = {}


def _level(locations: Sequence[Location]) -> _Level:
    """The compiled level for ``locations``, compiled once per sequence."""
    if not locations:
        return _EMPTY_LEVEL
    cached = _LEVELS.get(id(locations))
    if cached is not None and cached[0] is locations:
        return cached[1]
    level = _Level(locations)
    if len(_LEVELS) >= LOCATION_CACHE_SIZE:
        _LEVELS.clear()
    # The sequence is kept alive with its entry, so its id cannot be reused.
    _LEVELS[id(locations)] = (locations, level)
    return level


def match_location(locations: Sequence[Location], path: str) -> LocationMatch | None:
    """The location of ``locations`` (a server's or a location's) for ``path``.

    ``path`` comes from :func:`normalize_path`.  None when no location
    matches (a server without ``location /``).  ``locations`` must not be
    mutated afterwards: it is compiled once and cached by identity.
    """
    _, location, captures = _level(locations).find(path, None)
    return None if location is None else LocationMatch(location, captures)


def select_location(locations: Sequence[Location], path: str) -> Location | None:
    """Like :func:`match_location`, without the captures."""
    _, location, _ = _level(locations).find(path, None)
    return location


# ---------------------------------------------------------------------------
# Servers


class ServerGroup:
    """The servers sharing one listen address, with their names compiled."""

    __slots__ = (
        "address",
        "servers",
        "default_server",
        "_only",
        "_exact",
        "_head",
        "_tail",
        "_regexes",
    )

    def __init__(self, address: str, members: Sequence[tuple[Server, bool]]) -> None:
        """``members``: (server, default_server flag) in configuration order."""
        self.address = address  # as nginx prints it: 127.0.0.1:80, [::]:80, unix:/p
        self.servers = tuple(server for server, _ in members)
        self.default_server = next(
            (server for server, default in members if default), self.servers[0]
        )
        self._only = self.servers[0] if len(self.servers) == 1 else None
        self._exact: dict[str, Server] = {}
        self._head: dict[str, Server] = {}  # ".example.org" for *.example.org
        self._tail: dict[str, Server] = {}  # "mail." for mail.*
        self._regexes: list[tuple[re.Pattern[str], Server]] = []
        # A name an earlier server holds is ignored here; conf.load warns of
        # it (``conf.names``), with the same rule.
        for server in self.servers:
            for name in server.server_names or ("",):
                if name.startswith("~"):
                    pattern = name[1:]
                    caseless = any("A" <= c <= "Z" for c in pattern)
                    self._regexes.append((_compile_or_emerg(pattern, caseless, server.where), server))
                else:
                    claim(name, self._exact, self._head, self._tail, server)

    def select_server(self, host: str | bytes | None) -> Server:
        """The server for a request's ``Host`` (None when there is none).

        See rules 2 and 3 of the module docstring.
        """
        if self._only is not None:
            return self._only
        if host is None:
            name = ""
        else:
            normal = normalize_host(host)
            if normal is None:
                return self.default_server
            name = normal
        server = self._exact.get(name)
        if server is not None:
            return server
        if self._head:
            dot = name.find(".")
            while dot >= 0:
                server = self._head.get(name[dot:])
                if server is not None:
                    return server
                dot = name.find(".", dot + 1)
        if self._tail:
            dot = name.rfind(".")
            while dot >= 0:
                server = self._tail.get(name[: dot + 1])
                if server is not None:
                    return server
                dot = name.rfind(".", 0, dot)
        if name:
            for regex, server in self._regexes:
                if regex.search(name):
                    return server
        return self.default_server


_WILDCARD = {4: ipaddress.IPv4Address("0.0.0.0"), 6: ipaddress.IPv6Address("::")}


class Router:
    """Maps a connection's local address to its :class:`ServerGroup`.

    Built once per worker from the ``http`` block of a loaded configuration:
    a ``listen`` stands for the addresses ``conf.load`` resolved (a name that
    did not resolve was nginx's ``host not found`` then).  (nginx's warnings
    for conflicting server names come from ``conf.load`` too.)
    """

    def __init__(self, http: Http) -> None:
        # address -> {id(server): (server, default_server)}, in file order
        members: dict[Endpoint, dict[int, tuple[Server, bool]]] = {}
        for server in http.servers:
            for listen in server.listens:
                for key in endpoints(listen):
                    group = members.setdefault(key, {})
                    default = group.get(id(server), (server, False))[1]
                    group[id(server)] = (server, default or listen.default_server)
        self._groups: dict[Endpoint, ServerGroup] = {
            key: ServerGroup(endpoint_text(key), list(group.values())) for key, group in members.items()
        }
        self._cache: dict[object, ServerGroup] = {}
        for server in http.servers:
            _level(server.locations)

    def servers_for(self, local: tuple | str) -> ServerGroup:
        """The group for the local address a connection arrived on.

        ``local`` is what ``getsockname()`` returns: ``(ip, port, ...)`` or a
        unix socket path.  Raises LookupError for an address no ``listen``
        covers (a worker never accepts on one).
        """
        group = self._cache.get(local)
        if group is None:
            group = self._lookup(local)
            self._cache[local] = group
        return group

    def _lookup(self, local: tuple | str) -> ServerGroup:
        if isinstance(local, str):
            candidates: list[Endpoint] = [("unix", local)]
        else:
            ip = ipaddress.ip_address(str(local[0]).split("%", 1)[0])
            port = int(local[1])
            candidates = [(ip, port), (_WILDCARD[ip.version], port)]
            mapped = getattr(ip, "ipv4_mapped", None)
            if mapped is not None:
                candidates += [(mapped, port), (_WILDCARD[4], port)]
        for key in candidates:
            group = self._groups.get(key)
            if group is not None:
                return group
        raise LookupError(f"no listen covers {local!r}")
