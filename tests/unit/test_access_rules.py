"""allow/deny and realip without a socket: nginx's address parsers, the
compiled rules, the X-Forwarded-For walk (``nginxws.inet``, ``access``, ``realip``)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nginxws.access import AccessRule, AccessRules, ClientCheck
from nginxws.inet import (
    UNIX,
    V4,
    V6,
    Cidr,
    Peer,
    cidr_match,
    inet6_addr,
    inet_addr,
    parse_addr_port,
    parse_cidr,
    peer_of,
)
from nginxws.realip import RealIp


def v4(text: str) -> Peer:
    return Peer(V4, int(ipaddress.IPv4Address(text)))


def v6(text: str) -> Peer:
    return Peer(V6, int(ipaddress.IPv6Address(text)))


def cidr(text: str) -> Cidr:
    if text == "unix:":
        return Cidr(UNIX, 0, 0)
    parsed = parse_cidr(text)
    assert parsed is not None, text
    return parsed[0]


# -- nginx's parsers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.254", "255.255.255.254"),
        ("010.0.0.1", "10.0.0.1"),  # ngx_inet_addr reads decimal, leading zeros and all
        ("1.2.3.", "1.2.3.0"),  # an empty octet is 0
        ("..1.", "0.0.1.0"),
        ("255.255.255.255", None),  # INADDR_NONE: nginx cannot tell it from an error
        ("256.0.0.1", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("1.2.3.a", None),
        (" 1.2.3.4", None),
        ("", None),
    ],
)
def test_inet_addr_reads_as_nginx_reads(text: str, expected: str | None) -> None:
    value = inet_addr(text)
    assert (None if value is None else str(ipaddress.IPv4Address(value))) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::", "::"),
        ("::1", "::1"),
        ("1::", "1::"),
        ("2001:db8::1", "2001:db8::1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("fe80::1:2", "fe80::1:2"),
        ("::ffff:1.2.3.4", "::ffff:102:304"),
        ("::1.2.3.4", "::102:304"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        (":1::2", "1::2"),  # nginx skips one leading colon
        ("", None),
        (":", None),
        ("1:", None),
        ("1:2:3:4:5:6:7:8:9", None),
        ("1:2:3:4:5:6:7::8", None),
        ("1:::2", None),
        ("1::2::3", None),
        ("12345::", None),
        ("g::", None),
        ("1.2.3.4", None),
        ("1:2:3:4:5:6:7:1.2.3.4", None),
        ("::1.2.3", None),
        ("::1%eth0", None),
    ],
)
def test_inet6_addr_reads_as_nginx_reads(text: str, expected: str | None) -> None:
    value = inet6_addr(text)
    assert (None if value is None else str(ipaddress.IPv6Address(value))) == expected


@pytest.mark.parametrize(
    ("text", "family", "address", "bits", "trimmed"),
    [
        ("10.0.0.0/8", V4, "10.0.0.0", 8, False),
        ("10.1.2.3/8", V4, "10.0.0.0", 8, True),
        ("1.2.3.4", V4, "1.2.3.4", 32, False),
        ("1.2.3.4/32", V4, "1.2.3.4", 32, False),
        ("1.2.3.4/0", V4, "0.0.0.0", 0, True),
        ("0.0.0.0/0", V4, "0.0.0.0", 0, False),
        ("192.168.1.128/25", V4, "192.168.1.128", 25, False),
        ("192.168.1.129/25", V4, "192.168.1.128", 25, True),
        ("::/0", V6, "::", 0, False),
        ("::1", V6, "::1", 128, False),
        ("2001:db8::/32", V6, "2001:db8::", 32, False),
        ("2001:db8::1/32", V6, "2001:db8::", 32, True),
        ("fe80::1/10", V6, "fe80::", 10, True),
        ("::ffff:10.0.0.0/104", V6, "::ffff:a00:0", 104, False),
    ],
)
def test_parse_cidr(text: str, family: int, address: str, bits: int, trimmed: bool) -> None:
    width = 32 if family == V4 else 128
    ip = ipaddress.ip_address(address)
    mask = int(ipaddress.ip_network(f"{address}/{bits}").netmask)
    assert parse_cidr(text) == (Cidr(family, int(ip), mask), trimmed)
    assert mask >> (width - bits) == (1 << bits) - 1 if bits else mask == 0


@pytest.mark.parametrize(
    "text",
    ["1.2.3.4/33", "1.2.3.4/", "1.2.3.4/-1", "1.2.3.4/8/8", "1.2.3.4/ 8", "::/129", "all", "unix:", "localhost",
     "10.0.0.256", "", "/8", "1.2.3.4/0x8"],
)
def test_parse_cidr_refuses(text: str) -> None:
    assert parse_cidr(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", v4("1.2.3.4")),
        ("1.2.3.4:80", v4("1.2.3.4")),
        ("::1", v6("::1")),
        ("[::1]", v6("::1")),
        ("[::1]:8080", v6("::1")),
        ("[1.2.3.4]:80", v4("1.2.3.4")),
        ("1.2.3.4:0", None),
        ("1.2.3.4:65536", None),
        ("1.2.3.4:", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[::1]:", None),
        ("example.com:80", None),
        ("unknown", None),
        ("", None),
    ],
)
def test_parse_addr_port(text: str, expected: Peer | None) -> None:
    assert parse_addr_port(text) == expected


@pytest.mark.parametrize(
    ("remote", "expected", "text"),
    [
        (("127.0.0.1", 5000), v4("127.0.0.1"), "127.0.0.1"),
        (("::1", 5000), v6("::1"), "::1"),
        (("::ffff:127.0.0.1", 5000), v6("::ffff:127.0.0.1"), "::ffff:127.0.0.1"),
        (("fe80::1%eth0", 5000), v6("fe80::1"), "fe80::1"),
        ("/run/ws.sock", Peer(UNIX, 0), "unix:"),
        ("", Peer(UNIX, 0), "unix:"),
    ],
)
def test_peer_of_a_connection_and_its_text(remote, expected: Peer, text: str) -> None:
    peer = peer_of(remote)
    assert peer == expected
    assert peer.text == text


def test_mapped_is_the_ipv4_address_of_an_ipv4_mapped_ipv6_address() -> None:
    assert v6("::ffff:127.0.0.1").mapped == int(ipaddress.IPv4Address("127.0.0.1"))
    assert v6("::127.0.0.1").mapped is None  # IPv4-compatible, not mapped
    assert v6("::1:ffff:127.0.0.1").mapped is None
    assert v4("127.0.0.1").mapped is None


# -- allow / deny ---------------------------------------------------------------------


def rules(*written: str) -> AccessRules:
    """``"allow 10.0.0.0/8"``, ``"deny all"``... compiled as one level's list."""
    compiled = []
    for line in written:
        verb, target = line.split()
        found = None if target == "all" else cidr(target)
        compiled.append(AccessRule(verb == "deny", found))
    return AccessRules.compile(compiled)


UNIX_PEER = Peer(UNIX, 0)


@pytest.mark.parametrize(
    ("written", "peer", "denied"),
    [
        # first match wins
        (("allow 127.0.0.1", "deny all"), v4("127.0.0.1"), False),
        (("allow 127.0.0.1", "deny all"), v4("127.0.0.2"), True),
        (("deny all", "allow 127.0.0.1"), v4("127.0.0.1"), True),
        (("deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"), v4("10.0.0.1"), True),
        (("deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"), v4("10.200.0.1"), False),
        # no match: served
        (("deny 10.0.0.0/8",), v4("11.0.0.1"), False),
        # CIDR edges
        (("deny 10.0.0.0/8",), v4("10.0.0.0"), True),
        (("deny 10.0.0.0/8",), v4("10.255.255.255"), True),
        (("deny 10.0.0.0/8",), v4("9.255.255.255"), False),
        (("deny 10.0.0.0/8",), v4("11.0.0.0"), False),
        (("deny 192.168.1.128/25",), v4("192.168.1.127"), False),
        (("deny 192.168.1.128/25",), v4("192.168.1.128"), True),
        (("deny 0.0.0.0/0",), v4("203.0.113.9"), True),
        (("deny 2001:db8::/32",), v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), True),
        (("deny 2001:db8::/32",), v6("2001:db9::"), False),
        (("deny ::/0",), v6("::1"), True),
        # a family without rules is not checked
        (("deny 127.0.0.1",), v6("::1"), False),
        (("deny ::1",), v4("127.0.0.1"), False),
        (("allow ::1", "deny all"), v6("::1"), False),
        (("allow ::1", "deny all"), v4("127.0.0.1"), True),  # "all" is in every family's list
        (("allow 127.0.0.1", "deny all"), v6("::1"), True),
        # IPv4-mapped IPv6 clients are matched as IPv4 when there are IPv4 rules
        (("deny 127.0.0.1",), v6("::ffff:127.0.0.1"), True),
        (("allow 127.0.0.1", "deny all"), v6("::ffff:127.0.0.1"), False),
        (("deny 127.0.0.0/8", "allow all"), v6("::ffff:127.0.0.2"), True),
        (("deny ::ffff:127.0.0.1", "allow all"), v6("::ffff:127.0.0.1"), False),  # the IPv4 list decides
        # ... and as IPv6 when there are none
        (("deny ::ffff:127.0.0.1",), v6("::ffff:127.0.0.1"), True),
        (("deny ::ffff:0:0/96",), v6("::ffff:10.1.2.3"), True),
        # unix-domain clients
        (("deny unix:",), UNIX_PEER, True),
        (("allow unix:", "deny all"), UNIX_PEER, False),
        (("deny all",), UNIX_PEER, True),
        (("deny 127.0.0.1",), UNIX_PEER, False),
        (("deny unix:",), v4("127.0.0.1"), False),
    ],
)
def test_access_rules_decide_as_nginx(written: tuple[str, ...], peer: Peer, denied: bool) -> None:
    assert rules(*written).denies(peer) is denied


def test_rules_compile_one_list_per_family_all_in_each() -> None:
    compiled = rules("allow 10.0.0.0/8", "allow ::1", "deny all")
    assert compiled.v4 == ((0x0A000000, 0xFF000000, False), (0, 0, True))
    assert compiled.v6 == ((1, (1 << 128) - 1, False), (0, 0, True))
    assert compiled.unix == (True,)
    only_v6 = rules("deny ::1")
    assert (only_v6.v4, only_v6.unix) == (None, None)


# -- realip ------------------------------------------------------------------------------

BALANCER = v4("127.0.0.1")


def realip(*trusted: str, header: str = "X-Real-IP", recursive: bool = False) -> RealIp:
    return RealIp(tuple(cidr(t) for t in trusted), header, recursive)


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


@pytest.mark.parametrize(
    ("settings", "peer", "headers", "expected"),
    [
        # X-Real-IP (the default): the whole value is one address
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "203.0.113.7")), "203.0.113.7"),
        (realip("127.0.0.1"), BALANCER, h(("x-real-ip", "2001:db8::7")), "2001:db8::7"),
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "[2001:db8::7]:443")), "2001:db8::7"),
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "203.0.113.7:5000")), "203.0.113.7"),
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "1.1.1.1"), ("X-Real-IP", "2.2.2.2")), "1.1.1.1"),
        # no header, an untrusted peer, no address: nothing changes
        (realip("127.0.0.1"), BALANCER, h(), None),
        (realip("127.0.0.1"), BALANCER, h(("X-Forwarded-For", "1.1.1.1")), None),
        (realip("::1"), BALANCER, h(("X-Real-IP", "203.0.113.7")), None),
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "unknown")), None),
        (realip("127.0.0.1"), BALANCER, h(("X-Real-IP", "")), None),
        # X-Forwarded-For, not recursive: the last address
        (realip("127.0.0.1", header="X-Forwarded-For"), BALANCER,
         h(("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 127.0.0.1")), "127.0.0.1"),
        (realip("127.0.0.1", header="X-Forwarded-For"), BALANCER,
         h(("X-Forwarded-For", "1.1.1.1, 2.2.2.2")), "2.2.2.2"),
        (realip("127.0.0.1", header="X-Forwarded-For"), BALANCER,
         h(("X-Forwarded-For", "1.1.1.1 ,2.2.2.2 , ")), "2.2.2.2"),
        # recursive: skip trusted proxies, the first untrusted address is the client
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7, 10.0.0.2, 10.0.0.1")), "203.0.113.7"),
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.1")), "203.0.113.7"),
        # every address trusted: the leftmost
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "10.0.0.3, 10.0.0.2")), "10.0.0.3"),
        # an entry that is no address ends the walk, keeping what was found
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7, garbage, 10.0.0.1")), "10.0.0.1"),
        # several X-Forwarded-For lines are one list, read from the last
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "10.0.0.2, 10.0.0.1")), "203.0.113.7"),
        (realip("127.0.0.1", "10.0.0.0/8", header="X-Forwarded-For", recursive=True), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7, 10.0.0.9"), ("X-Forwarded-For", "10.0.0.1")), "203.0.113.7"),
        (realip("127.0.0.1", header="X-Forwarded-For"), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.1")), "198.51.100.1"),
        # another header named in any case, first line only; "x-forwarded-for" spelled
        # otherwise than nginx's constant is such a header
        (realip("127.0.0.1", header="CF-Connecting-IP"), BALANCER,
         h(("Cf-Connecting-Ip", "203.0.113.7")), "203.0.113.7"),
        (realip("127.0.0.1", header="x-forwarded-for", recursive=True), BALANCER,
         h(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.1")), "203.0.113.7"),
        # the connection from an IPv4-mapped address matches IPv4 trust
        (realip("127.0.0.1"), v6("::ffff:127.0.0.1"), h(("X-Real-IP", "203.0.113.7")), "203.0.113.7"),
        (realip("::1"), v6("::1"), h(("X-Real-IP", "203.0.113.7")), "203.0.113.7"),
        (realip("unix:"), Peer(UNIX, 0), h(("X-Real-IP", "203.0.113.7")), "203.0.113.7"),
    ],
)
def test_realip_walk(settings: RealIp, peer: Peer, headers, expected: str | None) -> None:
    found = settings.client(peer, headers)
    assert (None if found is None else found.text) == expected


def test_cidr_match_sees_a_mapped_address_as_ipv4_only() -> None:
    assert cidr_match(v6("::ffff:127.0.0.1"), [cidr("127.0.0.0/8")])
    assert not cidr_match(v6("::ffff:127.0.0.1"), [cidr("::ffff:127.0.0.1")])
    assert cidr_match(Peer(UNIX, 0), [Cidr(UNIX, 0, 0)])


def test_client_check_tries_the_server_realip_then_the_location_s() -> None:
    server = realip("127.0.0.1")
    location = realip("127.0.0.1", header="X-Forwarded-For")
    check = ClientCheck(server, location, None)
    both = h(("X-Real-IP", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2"))
    assert check.client(BALANCER, both).text == "1.1.1.1"  # the server's found one: the location's is not tried
    assert check.client(BALANCER, h(("X-Forwarded-For", "2.2.2.2"))).text == "2.2.2.2"
    assert check.client(BALANCER, h()) is None
    assert ClientCheck(None, None, rules("deny all")).client(BALANCER, both) is None


@given(st.integers(0, (1 << 128) - 1))
def test_inet6_addr_reads_every_address_python_writes(value: int) -> None:
    address = ipaddress.IPv6Address(value)
    assert inet6_addr(str(address)) == value
    assert inet6_addr(address.exploded) == value


@given(st.integers(0, (1 << 32) - 2))
def test_inet_addr_reads_every_address_python_writes(value: int) -> None:
    assert inet_addr(str(ipaddress.IPv4Address(value))) == value
