"""The client's real address behind a proxy (ngx_http_realip_module).

A load balancer connects on the client's behalf and names the client in a
header.  When the connection comes from an address of ``set_real_ip_from``,
the address in ``real_ip_header`` replaces the connection's for the request:
``$remote_addr``, the access log, ``allow``/``deny``, the error log's
``client:``.  ``$realip_remote_addr`` keeps the balancer's.

The walk is ``ngx_http_get_forwarded_addr``'s, step for step:

* the value is read from its end: the last address (after the last ``,``
  or space) is taken if the address that handed it over (at first the
  connection's) is trusted;
* with ``real_ip_recursive off`` that is all; with ``on`` the walk goes on
  leftwards while each address taken is trusted itself, so a chain of
  trusted proxies is skipped and the first untrusted address is the client;
* an entry that is not an address stops the walk, keeping what was found;
* ``X-Forwarded-For`` may come in several header lines: they are walked
  last to first, as one list; any other header (``X-Real-IP`` by default,
  or one named in ``real_ip_header``) is its first line only.

Pure: header bytes and a :class:`~nginxws.inet.Peer` in, a Peer out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nginxws.inet import Cidr, Peer, cidr_match, parse_addr_port

X_REAL_IP = "X-Real-IP"
X_FORWARDED_FOR = "X-Forwarded-For"

# ngx_http_get_forwarded_addr_internal's results.
OK, DONE, DECLINED = "ok", "done", "declined"
_SEPARATORS = " ,"


@dataclass(frozen=True, slots=True)
class RealIp:
    """The effective ``set_real_ip_from`` / ``real_ip_header`` / ``real_ip_recursive`` of a level.

    ``header`` is as written; nginx compares it case-sensitively with
    ``X-Real-IP`` and ``X-Forwarded-For`` (only the exact spelling
    ``X-Forwarded-For`` chains several header lines).
    """

    trusted: tuple[Cidr, ...]
    header: str = X_REAL_IP
    recursive: bool = False
    _name: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_name", self.header.lower().encode("latin-1"))

    def client(self, peer: Peer, headers: Sequence[tuple[bytes, bytes]]) -> Peer | None:
        """The client's address as the header gives it, or None when realip
        changes nothing (no such header, an untrusted peer, no address in it).

        ``headers`` are ``(lower-case name, value)`` pairs, as h11 gives them.
        """
        name = self._name
        if self.header == X_FORWARDED_FOR:
            values = [value for key, value in headers if key == name]
            if not values:
                return None
            found, result = forwarded(peer, values, self.trusted, self.recursive)
        else:
            value = next((value for key, value in headers if key == name), None)
            if value is None:
                return None
            found, result = _walk(peer, value.decode("latin-1"), self.trusted, self.recursive)
        return None if result == DECLINED else found


def forwarded(peer: Peer, values: Sequence[bytes], trusted: Sequence[Cidr], recursive: bool) -> tuple[Peer, str]:
    """``ngx_http_get_forwarded_addr`` over several header lines (last to first):
    the address found and OK, DONE or DECLINED (then ``peer`` unchanged)."""
    result, found = DECLINED, False
    for value in reversed(values):
        peer, result = _walk(peer, value.decode("latin-1"), trusted, recursive)
        if not recursive:
            break
        if result == DECLINED and found:
            result = DONE
            break
        if result != OK:
            break
        found = True
    return peer, result


def _walk(peer: Peer, value: str, trusted: Sequence[Cidr], recursive: bool) -> tuple[Peer, str]:
    """``ngx_http_get_forwarded_addr_internal``: one header line, from its end."""
    found = False
    end = len(value)
    while True:
        if not cidr_match(peer, trusted):
            return peer, DONE if found else DECLINED
        p = end - 1
        while p > 0 and value[p] in _SEPARATORS:
            p -= 1
            end -= 1
        while p > 0:
            if value[p] in _SEPARATORS:
                p += 1
                break
            p -= 1
        address = parse_addr_port(value[p:end]) if end > 0 else None
        if address is None:
            return peer, DONE if found else DECLINED
        peer, found = address, True
        end = p - 1
        if not (recursive and p > 0):
            return peer, OK
