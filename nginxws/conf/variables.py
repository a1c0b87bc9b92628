"""nginx's strings with variables ("complex values"): compiled once, evaluated per request.

nginx compiles an argument such as ``room-$arg_room`` once, when it reads
the configuration (``ngx_http_compile_complex_value``), into literal text
and variable references; a request then only looks the variables up.  This
module does the same for the directives that take such values
(``websocket_channels``, ``websocket_publish``), and holds the one scanner
of ``$name`` / ``${name}`` that ``log_format`` (``nginxws.log``) uses too.

Rules, as ``ngx_http_script_compile`` has them:

* ``$name`` and ``${name}``: a name is ASCII letters, digits and ``_``;
  braces let a name be followed by such characters (``${room}x``).  Names
  are case-insensitive (``$ARG_Room`` is ``$arg_room``).
* ``$1`` .. ``$9`` (one digit, no braces) are the numbered captures of the
  regular expression of the location that matched; ``$12`` is ``$1``
  followed by ``2``.  ``$0`` is no capture: it is the unknown variable "0".
* Named captures are variables when the value may use them (the named
  groups of the regex locations around the directive), looked up after
  nginx's own variables and before the prefixed families.
* ``$`` at the end, or followed by nothing a name may start with, is
  ``invalid variable name``; ``${name`` without ``}`` is ``the closing
  bracket in "name" variable is missing``; any other name is ``unknown
  "name" variable``.

Values are the request's bytes decoded as latin-1, so that no byte is lost;
what is missing is the empty string, as nginx's "not found" is in a complex
value.  Whether a value is acceptable (a channel name) is for the caller to
check.  Nothing compiled holds a function: a compiled value is plain data
that pickles (the model goes to the worker processes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# -- the scanner ----------------------------------------------------------------


class ComplexValueError(ValueError):
    """A value that cannot be compiled; ``str(err)`` is nginx's message."""


class InvalidVariableName(ComplexValueError):
    """A ``$`` that starts no variable name (nginx's ``invalid variable name``)."""

    def __init__(self) -> None:
        super().__init__("invalid variable name")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``$name``, ``${name}`` or numbered capture ``$1``..``$9`` met by :func:`scan`."""

    name: str  # as written, without ``$`` and braces
    capture: int | None = None  # 1..9 for the numbered-capture form


_NAME = re.compile(r"[A-Za-z0-9_]*")


def scan(text: str, *, numbered_captures: bool = False) -> Iterator[str | Reference]:
    """The literal pieces (non-empty strings) and variable references of ``text``, in order.

    ``numbered_captures``: whether ``$1``..``$9`` are captures (they are in
    complex values; ``log_format`` has no captures, so ``$1`` there is a
    name).  Raises :class:`ComplexValueError` when the scan reaches a
    malformed reference: the pieces before it have been yielded.
    """
    pos, size = 0, len(text)
    while pos < size:
        dollar = text.find("$", pos)
        if dollar < 0:
            yield text[pos:]
            return
        if dollar > pos:
            yield text[pos:dollar]
        start = dollar + 1
        if start == size:
            raise InvalidVariableName()
        first = text[start]
        if numbered_captures and "1" <= first <= "9":
            yield Reference(first, int(first))
            pos = start + 1
            continue
        braced = first == "{"
        if braced:
            start += 1
            if start == size:
                raise InvalidVariableName()
        end = _NAME.match(text, start).end()  # type: ignore[union-attr]  # a "*" pattern always matches
        name = text[start:end]
        if braced:
            if not text.startswith("}", end):
                raise ComplexValueError(f'the closing bracket in "{name}" variable is missing')
            end += 1
        if not name:
            raise InvalidVariableName()
        yield Reference(name)
        pos = end


# -- what a value reads of a request --------------------------------------------


class RequestVars(Protocol):
    """What evaluating a value reads of a request (nothing else is needed)."""

    @property
    def target(self) -> bytes:
        """The request target as sent: ``/chat?room=a%20b``."""

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:
        """The header lines as ``(lower-case name, value)``, in order (as h11 gives them)."""

    @property
    def remote_addr(self) -> str:
        """The client's address (the one realip found, if it found one)."""

    @property
    def realip_remote_addr(self) -> str:
        """The connection's own address, whatever realip found."""

    @property
    def uri(self) -> str:
        """The normalized path the locations were matched against (``routing.normalize_path``)."""

    @property
    def captures(self) -> re.Match[str] | None:
        """The match of the regex location that was chosen, if one was."""


@dataclass(frozen=True, slots=True)
class Request:
    """A plain :class:`RequestVars`, for tests and for callers without a request object of their own."""

    target: bytes = b"/"
    headers: Sequence[tuple[bytes, bytes]] = ()
    remote_addr: str = ""
    realip_remote_addr: str = ""
    uri: str = "/"
    captures: re.Match[str] | None = None


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """nginx's ``$http_NAME`` of ``name`` (lower case): the values of every line with
    that name, joined with ``", "`` (``"; "`` for ``Cookie``); None when there is none."""
    values = [v for n, v in headers if n == name]
    if not values:
        return None
    return (b"; " if name == b"cookie" else b", ").join(values)


def host_name(host: bytes) -> bytes:
    """A ``Host`` header as nginx's ``$host`` gives it: without the port, in
    lower case; an IPv6 literal keeps its brackets."""
    if host.startswith(b"["):
        host = host[: host.find(b"]") + 1]
    else:
        host = host.partition(b":")[0]
    return host.lower()


def _args(request: RequestVars) -> str:
    return request.target.partition(b"?")[2].decode("latin-1")


def _host(request: RequestVars) -> str:
    host = header_value(request.headers, b"host")
    return "" if not host else host_name(host).decode("latin-1")


# nginx's own variables that nginxws knows, by name.
_REQUEST_VARIABLES: dict[str, Callable[[RequestVars], str]] = {
    "uri": lambda r: r.uri,
    "request_uri": lambda r: r.target.decode("latin-1"),
    "args": _args,
    "query_string": _args,
    "remote_addr": lambda r: r.remote_addr,
    "realip_remote_addr": lambda r: r.realip_remote_addr,
    "host": _host,
}


# -- variable references of a compiled value ------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVariable:
    """``$uri``, ``$request_uri``, ``$args``, ``$query_string``, ``$remote_addr``,
    ``$realip_remote_addr`` or ``$host``."""

    name: str

    def value(self, request: RequestVars) -> str:
        return _REQUEST_VARIABLES[self.name](request)


@dataclass(frozen=True, slots=True)
class Argument:
    """``$arg_NAME``: the value of the first ``NAME=`` argument as sent (not
    percent-decoded), NAME in any case, as ``ngx_http_arg`` finds it."""

    key: bytes  # b"&name=", lower case

    def value(self, request: RequestVars) -> str:
        target = request.target
        question = target.find(b"?")
        if question < 0:
            return ""
        args = b"&" + target[question + 1 :]  # so that the first argument follows an "&" too
        key = self.key
        at = args.lower().find(key)
        if at < 0:
            return ""
        start = at + len(key)
        end = args.find(b"&", start)
        return (args[start:] if end < 0 else args[start:end]).decode("latin-1")


@dataclass(frozen=True, slots=True)
class Header:
    """``$http_NAME``: request header NAME (``_`` stands for ``-``), see :func:`header_value`."""

    name: bytes  # lower case, with "-"

    def value(self, request: RequestVars) -> str:
        found = header_value(request.headers, self.name)
        return "" if found is None else found.decode("latin-1")


@dataclass(frozen=True, slots=True)
class Cookie:
    """``$cookie_NAME``: the value of cookie NAME (in any case), read from the
    ``Cookie`` lines in order as ``ngx_http_parse_cookie_lines`` reads them:
    pairs separated by ``;``, spaces allowed around ``=``, the value up to the
    next ``;``."""

    name: bytes  # lower case

    def value(self, request: RequestVars) -> str:
        name, size = self.name, len(self.name)
        for key, line in request.headers:
            if key != b"cookie" or size > len(line):
                continue
            start, end = 0, len(line)
            while start < end:
                if line[start : start + size].lower() == name:
                    start += size
                    while start < end and line[start] == 0x20:
                        start += 1
                    if start < end:
                        start += 1
                        if line[start - 1] == 0x3D:  # "="
                            while start < end and line[start] == 0x20:
                                start += 1
                            semicolon = line.find(b";", start)
                            return line[start : end if semicolon < 0 else semicolon].decode("latin-1")
                # nginx's skip: past the next ";" (from where the comparison stopped), then spaces
                semicolon = line.find(b";", start)
                if semicolon < 0:
                    break
                start = semicolon + 1
                while start < end and line[start] == 0x20:
                    start += 1
        return ""


@dataclass(frozen=True, slots=True)
class Capture:
    """A capture of the chosen regex location: ``$1``..``$9`` (a number) or a named group."""

    group: int | str

    def value(self, request: RequestVars) -> str:
        match = request.captures
        if match is None:
            return ""
        try:
            found = match.group(self.group)
        except IndexError:  # no such group in the regex that matched
            return ""
        return found or ""


Variable = RequestVariable | Argument | Header | Cookie | Capture

# Prefixed families: prefix -> the reference for the rest of the name (which must not be empty).
_PREFIXES: tuple[tuple[str, Callable[[str], Variable]], ...] = (
    ("arg_", lambda rest: Argument(b"&" + rest.encode() + b"=")),
    ("http_", lambda rest: Header(rest.replace("_", "-").encode())),
    ("cookie_", lambda rest: Cookie(rest.encode())),
)


# -- compiled values ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComplexValue:
    """A directive's value with its variables, compiled by :func:`compile_value`.

    ``source`` is the text as written; ``parts`` its literal pieces and
    variable references in order.  ``constant`` says that there is no
    variable, so the value is ``source`` for every request.
    """

    source: str
    parts: tuple[str | Variable, ...]
    constant: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "constant", all(isinstance(p, str) for p in self.parts))

    def evaluate(self, request: RequestVars) -> str:
        """The value for ``request``."""
        if self.constant:
            return self.source
        parts = self.parts
        if len(parts) == 1 and not isinstance(parts[0], str):
            return parts[0].value(request)
        return "".join([p if isinstance(p, str) else p.value(request) for p in parts])

    @property
    def literals(self) -> tuple[str, ...]:
        """The literal pieces: text every value of it contains."""
        return tuple(p for p in self.parts if isinstance(p, str))


def _variable(ref: Reference, named: dict[str, str]) -> Variable:
    if ref.capture is not None:
        return Capture(ref.capture)
    name = ref.name.lower()
    if name in _REQUEST_VARIABLES:
        return RequestVariable(name)
    if name in named:
        return Capture(named[name])
    for prefix, make in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return make(name[len(prefix) :])
    raise ComplexValueError(f'unknown "{name}" variable')


def compile_value(text: str, *, captures: frozenset[str] = frozenset()) -> ComplexValue:
    """Compile ``text`` as nginx compiles a complex value (see the module docstring).

    ``captures`` are the named groups the value may use as variables.
    Raises :class:`ComplexValueError` with nginx's message; as in nginx, a
    malformed reference anywhere in the text is reported before an unknown
    name.
    """
    pieces = list(scan(text, numbered_captures=True))
    named = {name.lower(): name for name in captures}
    return ComplexValue(text, tuple(p if isinstance(p, str) else _variable(p, named) for p in pieces))
