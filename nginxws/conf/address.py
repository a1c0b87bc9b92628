"""Socket addresses as nginx writes them (``ngx_parse_url`` for ``listen``).

``80``, ``*:80``, ``127.0.0.1:8080``, ``127.0.0.1`` (port 80), ``[::]:80``,
``[::1]``, ``localhost:8080`` and ``unix:/path`` are all addresses.  A host
name must resolve when the configuration is loaded (nginx resolves it at the
same moment and says ``host not found``); the name itself is kept, and the
runtime binds to what it resolves to.

Names are resolved by a ``Resolve`` function, ``resolve_host`` unless the
caller of ``nginxws.conf.load`` gives another (tests give a fixed table);
one load asks it once per name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from nginxws.conf.values import parse_int

_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?\Z")


class AddressError(ValueError):
    """Why an address is not valid, in nginx's words (``invalid port`` ...)."""


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address; ``text`` is nginx's ``addr_text`` for messages."""

    host: str | None
    port: int | None
    unix: str | None
    text: str


Resolve = Callable[[str], tuple[str, ...]]
"""A host name -> its addresses (empty when it does not resolve)."""


def resolve_host(name: str) -> tuple[str, ...]:
    """Every address of ``name`` from the system resolver; () when there is none.

    A name that is not a host name is not looked up.
    """
    if not _HOST_NAME.match(name):
        return ()
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def _port(text: str, *, allow_zero: bool) -> int:
    port = parse_int(text)
    if port is None or port > 65535 or (port == 0 and not allow_zero):
        raise AddressError("invalid port")
    return port


def parse_address(
    text: str,
    *,
    default_port: int | None = 80,
    allow_zero_port: bool = False,
    wildcard: str | None = "0.0.0.0",
    resolve: Resolve = resolve_host,
) -> Address:
    """Parse ``text``; a missing port is ``default_port`` (``None``: keep it missing).

    A bare port (``80``) gets the host ``wildcard``; a host name must
    ``resolve``.  Raises AddressError with nginx's reason.
    """
    if text[:5].lower() == "unix:":
        path = text[5:]
        if not path:
            raise AddressError("no path in the unix domain socket")
        return Address(None, None, path, f"unix:{path}")

    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise AddressError("invalid host")
        try:
            host = str(ipaddress.IPv6Address(text[1:close]))
        except ValueError:
            raise AddressError("invalid IPv6 address") from None
        rest = text[close + 1 :]
        if rest.startswith(":"):
            port = _port(rest[1:], allow_zero=allow_zero_port)
        elif rest:
            raise AddressError("invalid host")
        else:
            port = default_port
        return Address(host, port, None, f"[{host}]:{port}" if port is not None else f"[{host}]")

    host, colon, port_text = text.partition(":")
    if colon:
        port: int | None = _port(port_text, allow_zero=allow_zero_port)
    elif parse_int(text) is not None:
        port = _port(text, allow_zero=allow_zero_port)
        return Address(wildcard, port, None, f"{wildcard or '*'}:{port}")
    else:
        port = default_port
    if not host:
        raise AddressError("no host")
    if host == "*":
        host = "0.0.0.0"
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if not _HOST_NAME.match(host) or not resolve(host):
                raise AddressError("host not found") from None
    return Address(host, port, None, f"{host}:{port}" if port is not None else host)
