"""Socket addresses as nginx writes them (``ngx_parse_url`` for ``listen``).

``80``, ``*:80``, ``127.0.0.1:8080``, ``127.0.0.1`` (port 80), ``[::]:80``,
``[::1]``, ``localhost:8080`` and ``unix:/path`` are all addresses.  A host
name must resolve when the configuration is loaded (nginx resolves it at the
same moment and says ``host not found``).  This is the one place nginxws
resolves: the name is kept for messages, and ``Address.addresses`` carries
what it resolved to into the model, where routing and the listening sockets
take it from.  A reload loads the configuration again, so it resolves again.

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

from nginxws.conf.model import Listen
from nginxws.conf.values import parse_int

_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?\Z")


class AddressError(ValueError):
    """Why an address is not valid, in nginx's words (``invalid port`` ...)."""


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address; ``text`` is nginx's ``addr_text`` for messages.

    ``addresses`` are the IP addresses ``host`` stands for: itself for a
    literal, every address a host name resolved to; () for a unix socket
    and for a bare port without a ``wildcard``.
    """

    host: str | None
    port: int | None
    unix: str | None
    text: str
    addresses: tuple[str, ...] = ()


Resolve = Callable[[str], tuple[str, ...]]
"""A host name -> its addresses (empty when it does not resolve)."""


def resolve_host(name: str) -> tuple[str, ...]:
    """Every address of ``name`` from the system resolver; () when there is none.

    A name that is not a host name is not looked up.  An IPv6 address with a
    scope keeps it (``fe80::1%2``), so that a socket can be bound to it.
    """
    if not _HOST_NAME.match(name):
        return ()
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    return tuple(dict.fromkeys(_with_scope(info[4]) for info in infos))


def _with_scope(sockaddr: tuple) -> str:
    address = str(sockaddr[0])
    scope = sockaddr[3] if len(sockaddr) == 4 else 0
    return f"{address}%{scope}" if scope and "%" not in address else address


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
        return Address(host, port, None, f"[{host}]:{port}" if port is not None else f"[{host}]", (host,))

    host, colon, port_text = text.partition(":")
    if colon:
        port: int | None = _port(port_text, allow_zero=allow_zero_port)
    elif parse_int(text) is not None:
        port = _port(text, allow_zero=allow_zero_port)
        return Address(wildcard, port, None, f"{wildcard or '*'}:{port}", (wildcard,) if wildcard else ())
    else:
        port = default_port
    if not host:
        raise AddressError("no host")
    if host == "*":
        host = "0.0.0.0"
    try:
        host = str(ipaddress.IPv4Address(host))
        addresses: tuple[str, ...] = (host,)
    except ValueError:
        addresses = tuple(resolve(host)) if _HOST_NAME.match(host) else ()
        if not addresses:
            raise AddressError("host not found") from None
    return Address(host, port, None, f"{host}:{port}" if port is not None else host, addresses)


Endpoint = tuple[str, str] | tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]
"""One socket address a ``listen`` stands for: ``("unix", path)`` or ``(ip, port)``."""


def endpoints(listen: Listen) -> list[Endpoint]:
    """The socket addresses of ``listen``, from the addresses the load resolved.

    An IPv6 scope is dropped: a connection's local address is compared
    without it.  Raises ValueError for a ``listen`` built without its
    addresses (a model that did not come from ``nginxws.conf.load``).
    """
    if listen.unix:
        return [("unix", listen.unix)]
    if not listen.addresses:
        raise ValueError(f"listen {listen.host}:{listen.port} carries no resolved addresses")
    port = listen.port or 80
    return [(ipaddress.ip_address(address.partition("%")[0]), port) for address in listen.addresses]


def endpoint_text(endpoint: Endpoint) -> str:
    """An endpoint as nginx prints it: ``127.0.0.1:80``, ``[::1]:80``, ``unix:/path``."""
    if endpoint[0] == "unix":
        return f"unix:{endpoint[1]}"
    ip, port = endpoint
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
