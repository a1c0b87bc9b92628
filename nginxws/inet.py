"""IP addresses as nginx reads them, and a client's address as a number.

nginx reads the addresses of ``allow``, ``deny`` and ``set_real_ip_from``,
and those of an ``X-Forwarded-For`` chain, with small parsers of its own
(``src/core/ngx_inet.c``), not the C library's.  They accept a little more
than ``inet_pton`` does (``010.0.0.1``, ``1.2.3.``, ``:1::2``) and refuse
``255.255.255.255`` (it is ``INADDR_NONE``); configurations written for
nginx may rely on either, so the functions here are ports of nginx's, one
for one, named after them.

An address is a :class:`Peer`: its family (``V4``, ``V6``, or ``UNIX`` for a
unix-domain socket) and its value as an integer, so that matching it against
a CIDR (a :class:`Cidr`) is one AND and one comparison.  Nothing here does
I/O; nothing here imports the rest of nginxws.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

V4, V6, UNIX = 4, 6, 0
BITS = {V4: 32, V6: 128, UNIX: 0}
INADDR_NONE = 0xFFFFFFFF
MAPPED = 0xFFFF  # an IPv4-mapped IPv6 address (::ffff:a.b.c.d) shifted right by 32 bits
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class Peer:
    """A client address: family and value (0 for a unix-domain socket)."""

    family: int
    value: int

    @property
    def text(self) -> str:
        """The address as nginx prints it (``ngx_sock_ntop`` without the port)."""
        if self.family == V4:
            return socket.inet_ntop(socket.AF_INET, self.value.to_bytes(4, "big"))
        if self.family == V6:
            return socket.inet_ntop(socket.AF_INET6, self.value.to_bytes(16, "big"))
        return "unix:"

    @property
    def mapped(self) -> int | None:
        """The IPv4 address of an IPv4-mapped IPv6 address (``IN6_IS_ADDR_V4MAPPED``), else None."""
        if self.family == V6 and self.value >> 32 == MAPPED:
            return self.value & 0xFFFFFFFF
        return None


@dataclass(frozen=True, slots=True)
class Cidr:
    """An address and its mask (``ngx_cidr_t``); ``address`` is already masked.

    A ``UNIX`` one (``unix:``) matches every unix-domain client.
    """

    family: int
    address: int
    mask: int


def peer_of(remote: tuple | str) -> Peer:
    """The peer of a connection, from its ``getpeername()`` as the worker keeps
    it: ``(host, port)`` (an IPv6 host possibly with a ``%scope``), or a
    unix-domain path."""
    if not isinstance(remote, tuple):
        return Peer(UNIX, 0)
    host = remote[0]
    if ":" in host:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
        return Peer(V6, int.from_bytes(packed, "big"))
    return Peer(V4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big"))


def _atoi(text: str) -> int | None:
    """``ngx_atoi``: one or more ASCII digits."""
    if not text or not _DIGITS.issuperset(text):
        return None
    return int(text)


def inet_addr(text: str) -> int | None:
    """``ngx_inet_addr``: four decimal octets, each up to 255 (an empty one is 0)."""
    addr = octet = dots = 0
    for c in text:
        if "0" <= c <= "9":
            octet = octet * 10 + ord(c) - 48
            if octet > 255:
                return None
        elif c == ".":
            addr = (addr << 8) + octet
            octet = 0
            dots += 1
        else:
            return None
    if dots != 3:
        return None
    addr = (addr << 8) + octet
    return None if addr == INADDR_NONE else addr


def inet6_addr(text: str) -> int | None:
    """``ngx_inet6_addr``: eight hex words, one ``::``, an IPv4 tail."""
    if not text:
        return None
    out = bytearray(16)
    at = 0  # where the next word goes
    zero: int | None = None  # where "::" was
    digit: int | None = None  # where the last word began (an IPv4 tail starts there)
    nibbles = word = 0
    words = 8  # still to fill
    i = 1 if text[0] == ":" else 0
    size = len(text)
    while i < size:
        c = text[i]
        i += 1
        if c == ":":
            if nibbles:
                digit = i
                out[at], out[at + 1] = word >> 8, word & 0xFF
                at += 2
                words -= 1
                if words:
                    nibbles = word = 0
                    continue
            elif zero is None:
                digit = i
                zero = at
                continue
            return None
        if c == "." and nibbles:
            if words < 2 or digit is None:
                return None
            tail = inet_addr(text[digit:])
            if tail is None:
                return None
            out[at], out[at + 1] = (tail >> 24) & 0xFF, (tail >> 16) & 0xFF
            at += 2
            words -= 1
            word = tail
            break
        nibbles += 1
        if nibbles > 4:
            return None
        if "0" <= c <= "9":
            word = word * 16 + ord(c) - 48
            continue
        lower = ord(c) | 0x20
        if 0x61 <= lower <= 0x66:  # a..f
            word = word * 16 + lower - 0x61 + 10
            continue
        return None
    if nibbles == 0 and zero is None:
        return None
    out[at], out[at + 1] = (word >> 8) & 0xFF, word & 0xFF
    at += 2
    words -= 1
    if words:
        if zero is None:
            return None
        gap = words * 2
        out[zero + gap : at + gap] = out[zero:at]
        out[zero : zero + gap] = bytes(gap)
    elif zero is not None:
        return None
    return int.from_bytes(out, "big")


def parse_addr(text: str) -> Peer | None:
    """``ngx_parse_addr``: an IPv4 or IPv6 address, without port or brackets."""
    value = inet_addr(text)
    if value is not None:
        return Peer(V4, value)
    value = inet6_addr(text)
    return None if value is None else Peer(V6, value)


def parse_addr_port(text: str) -> Peer | None:
    """``ngx_parse_addr_port``: an address, ``[v6]``, or either with ``:port`` (the port is dropped)."""
    peer = parse_addr(text)
    if peer is not None:
        return peer
    if text.startswith("["):
        close = text.find("]")
        if close == len(text) - 1:
            return parse_addr(text[1:-1])
        if close < 0 or text[close + 1 : close + 2] != ":":
            return None
        host, port = text[1:close], text[close + 2 :]
    else:
        host, colon, port = text.partition(":")
        if not colon:
            return None
    number = _atoi(port)
    if number is None or not 1 <= number <= 65535:
        return None
    return parse_addr(host)


def parse_cidr(text: str) -> tuple[Cidr, bool] | None:
    """``ngx_ptocidr``: ``ADDR`` or ``ADDR/BITS``; None if invalid.

    The flag says that the address had bits set past the mask (nginx's
    ``NGX_DONE``: they are cleared, and the caller warns ``low address bits
    of ... are meaningless``).
    """
    address, slash, bits_text = text.partition("/")
    peer = parse_addr(address)
    if peer is None:
        return None
    width = BITS[peer.family]
    full = (1 << width) - 1
    if not slash:
        return Cidr(peer.family, peer.value, full), False
    bits = _atoi(bits_text)
    if bits is None or bits > width:
        return None
    mask = full ^ ((1 << (width - bits)) - 1)
    masked = peer.value & mask
    return Cidr(peer.family, masked, mask), masked != peer.value


def host_cidr(peer: Peer) -> Cidr:
    """The CIDR that matches ``peer`` alone."""
    return Cidr(peer.family, peer.value, (1 << BITS[peer.family]) - 1)


def cidr_match(peer: Peer, cidrs: Iterable[Cidr]) -> bool:
    """``ngx_cidr_match``: whether ``peer`` is in one of ``cidrs``; an
    IPv4-mapped IPv6 address is matched as the IPv4 address it carries."""
    family, value = peer.family, peer.value
    if family == V6 and value >> 32 == MAPPED:
        family, value = V4, value & 0xFFFFFFFF
    for cidr in cidrs:
        if cidr.family == family and (family == UNIX or value & cidr.mask == cidr.address):
            return True
    return False
