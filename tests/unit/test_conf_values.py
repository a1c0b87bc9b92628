"""nginx's value syntaxes: ngx_parse_time, ngx_parse_size, flags, regexes, addresses."""

from __future__ import annotations

import pytest

from nginxws.conf import address
from nginxws.conf.address import AddressError, parse_address
from nginxws.conf.values import compile_regex, parse_flag, parse_int, parse_msec, parse_size, regex_error


@pytest.mark.parametrize(
    ("text", "msec"),
    [
        ("30", 30_000),  # a bare number is seconds, as nginx's timeouts
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1m30s", 90_000),
        ("1h 30m", 5_400_000),
        ("2d", 172_800_000),
        ("1w", 604_800_000),
        ("1s500ms", 1_500),
        ("", None),
        ("s", None),
        ("30x", None),
        ("30s1m", None),  # units in descending order only
        ("1y", None),  # years and months are not millisecond units
        ("1M", None),
        ("-1s", None),
        ("99999999999999999999d", None),
    ],
)
def test_parse_msec(text: str, msec: int | None) -> None:
    assert parse_msec(text) == msec


@pytest.mark.parametrize(
    ("text", "size"),
    [("1024", 1024), ("8k", 8192), ("8K", 8192), ("1m", 1 << 20), ("2M", 2 << 20), ("1g", 1 << 30),
     ("", None), ("k", None), ("1.5m", None), ("1kb", None), ("-1", None)],
)  # fmt: skip
def test_parse_size(text: str, size: int | None) -> None:
    assert parse_size(text) == size


def test_parse_int_and_flag() -> None:
    assert [parse_int(t) for t in ("0", "42", "", "+1", "1e3", "٣")] == [0, 42, None, None, None, None]
    assert [parse_flag(t) for t in ("on", "OFF", "On", "yes", "")] == [True, False, True, None, None]


def test_pcre_named_groups_compile_with_python_re() -> None:
    m = compile_regex(r"^/ws/(?<id>\d+)/(?'kind'\w+)$").match("/ws/12/chat")
    assert m and (m["id"], m["kind"]) == ("12", "chat")
    assert compile_regex(r"(?<=a)b(?<!c)").search("ab")
    assert compile_regex("^/WS", caseless=True).match("/ws")


def test_regex_error_is_worded_like_nginx() -> None:
    assert regex_error("^(a") == 're.compile() failed: missing ), unterminated subpattern in "^(a" at "(a"'
    assert regex_error("^a$") is None


@pytest.mark.parametrize(
    ("text", "host", "port", "unix", "addr_text"),
    [
        ("80", "0.0.0.0", 80, None, "0.0.0.0:80"),
        ("*:8080", "0.0.0.0", 8080, None, "0.0.0.0:8080"),
        ("127.0.0.1", "127.0.0.1", 80, None, "127.0.0.1:80"),
        ("[::]:80", "::", 80, None, "[::]:80"),
        ("[0::1]", "::1", 80, None, "[::1]:80"),
        ("localhost:8080", "localhost", 8080, None, "localhost:8080"),
        ("unix:/tmp/ws.sock", None, None, "/tmp/ws.sock", "unix:/tmp/ws.sock"),
    ],
)
def test_listen_addresses(text: str, host: str | None, port: int | None, unix: str | None, addr_text: str) -> None:
    a = parse_address(text)
    assert (a.host, a.port, a.unix, a.text) == (host, port, unix, addr_text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [("0", "invalid port"), ("65536", "invalid port"), ("1.2.3.4:", "invalid port"), (":80", "no host"),
     ("[::1", "invalid host"), ("[::1]x", "invalid host"), ("[zz]:80", "invalid IPv6 address"),
     ("unix:", "no path in the unix domain socket"), ("bad_host!:80", "host not found")],
)  # fmt: skip
def test_bad_listen_addresses(text: str, reason: str) -> None:
    with pytest.raises(AddressError, match=f"^{reason}$"):
        parse_address(text)


def test_localhost_resolves_and_malformed_names_are_not_looked_up() -> None:
    assert address.resolve_host("localhost")
    assert address.resolve_host("a..b") == ()
