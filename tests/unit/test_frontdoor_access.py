"""allow/deny and realip at the front door, in process: ``decide`` and the
push parser on a loaded configuration, no socket."""

from __future__ import annotations

from pathlib import Path

import h11
import pytest

from nginxws.conf import load
from nginxws.conf.variables import Request, compile_value
from nginxws.frontdoor import Answer, Publish, decide
from nginxws.log import Exchange, compile_format
from nginxws.pushhttp import PushParser
from nginxws.routing import Router
from nginxws.wsconn import Upgrade

CONF = """
events {}
http {
    client_max_body_size 1k;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    real_ip_recursive on;
    server {
        listen 127.0.0.1:8080;
        server_name main.example;
        allow 127.0.0.1;
        allow ::1;
        deny all;
        location /ws { websocket; websocket_channels $remote_addr; push_allow ::1; push_deny all; }
        location /v6 { deny 127.0.0.1; websocket; }
        location /health { return 200 "ok"; }
        location ~ ^/pub/(\\w+)$ { websocket_publish $1; }
    }
}
"""
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", KEY),
             (b"Sec-WebSocket-Version", b"13")]
V4, V6, MAPPED = ("127.0.0.1", 40000), ("::1", 40000, 0, 0), ("::ffff:127.0.0.1", 40000)


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("conf") / "nginx.conf"
    path.write_text(CONF)
    return load(str(path))


@pytest.fixture(scope="module")
def group(config):
    return Router(config.http).servers_for(("127.0.0.1", 8080))


def request(target: bytes, method: bytes = b"GET", extra=()) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"Host", b"main.example"), *extra])


def test_an_allowed_handshake_is_an_upgrade(group):
    assert isinstance(decide(request(b"/ws", extra=HANDSHAKE), group, b"", V4), Upgrade)
    assert isinstance(decide(request(b"/ws", extra=HANDSHAKE), group, b"", V6), Upgrade)


def test_a_denied_handshake_is_403_before_any_upgrade_and_logged_as_nginx(group):
    forwarded = (b"X-Forwarded-For", b"203.0.113.9")
    exchange = Exchange(None, group.default_server, 1)
    answer = decide(request(b"/ws", extra=[*HANDSHAKE, forwarded, (b"Referer", b"http://x.example/")]),
                    group, b"", V4, exchange)
    assert isinstance(answer, Answer)
    assert (answer.status, answer.page, answer.read_body, answer.close, exchange.client) == (
        403, True, True, False, "203.0.113.9")
    assert answer.log == ("error", 'access forbidden by rule, client: 203.0.113.9, server: main.example, '
                                   'request: "GET /ws HTTP/1.1", host: "main.example", '
                                   'referrer: "http://x.example/"')


def test_a_location_with_its_own_rules_replaces_the_server_s(group):
    assert decide(request(b"/v6", extra=HANDSHAKE), group, b"", V4).status == 403
    assert isinstance(decide(request(b"/v6", extra=HANDSHAKE), group, b"", V6), Upgrade)
    # a trusted balancer naming a client: the rules see the client
    forwarded = (b"X-Forwarded-For", b"198.51.100.1")
    assert isinstance(decide(request(b"/v6", extra=[*HANDSHAKE, forwarded]), group, b"", V4), Upgrade)


def test_an_ipv4_mapped_client_meets_the_ipv4_rules(group):
    assert decide(request(b"/v6", extra=HANDSHAKE), group, b"", MAPPED).status == 403
    assert isinstance(decide(request(b"/ws", extra=HANDSHAKE), group, b"", MAPPED), Upgrade)


def test_publish_and_no_location_are_checked_too(group):
    forwarded = [(b"X-Forwarded-For", b"203.0.113.9"), (b"Content-Length", b"1")]
    assert decide(request(b"/pub/a", b"POST", forwarded), group, b"", V4).status == 403
    assert isinstance(decide(request(b"/pub/a", b"POST", forwarded[1:]), group, b"", V4), Publish)
    assert decide(request(b"/nowhere", extra=forwarded[:1]), group, b"", V4).status == 403
    assert decide(request(b"/nowhere"), group, b"", V4).status == 404


def test_return_answers_before_the_access_phase_as_in_nginx(group):
    forwarded = (b"X-Forwarded-For", b"203.0.113.9")
    exchange = Exchange(None, group.default_server, 1)
    answer = decide(request(b"/health", extra=[forwarded]), group, b"", V4, exchange)
    assert (answer.status, answer.body, exchange.client) == (200, b"ok", "203.0.113.9")


def test_a_body_over_the_limit_is_413_before_the_access_phase_as_in_nginx(group):
    extra = [(b"X-Forwarded-For", b"203.0.113.9"), (b"Content-Length", b"4096")]
    assert decide(request(b"/pub/a", b"POST", extra), group, b"", V4).status == 413


def test_realip_gives_remote_addr_to_values_and_to_the_access_log(group):
    # recursive: the trusted 127.0.0.1 in the chain is skipped, ::1 is the client
    extra = [*HANDSHAKE, (b"X-Forwarded-For", b"::1, 127.0.0.1")]
    exchange = Exchange(None, group.default_server, 1)
    upgrade = decide(request(b"/ws", extra=extra), group, b"", V4, exchange)
    assert (upgrade.channels, exchange.client) == (("::1",), "::1")


def test_realip_from_an_untrusted_peer_changes_nothing(group):
    exchange = Exchange(None, group.default_server, 1)
    upgrade = decide(request(b"/ws", extra=[*HANDSHAKE, (b"X-Forwarded-For", b"127.0.0.9")]), group, b"", V6, exchange)
    assert isinstance(upgrade, Upgrade) and exchange.client is None and upgrade.channels == ("::1",)


def test_exchange_logs_the_client_realip_found_and_keeps_the_peer(group):
    exchange = Exchange(None, group.default_server, 1)
    exchange.client = "203.0.113.9"
    entry = exchange.entry(V4, ("127.0.0.1", 8080))
    assert (entry.remote_addr, entry.realip_remote_addr) == ("203.0.113.9", "127.0.0.1")
    exchange.client = None
    assert exchange.entry(V6, ("::1", 8080)).remote_addr == "::1"


# -- the push listener ---------------------------------------------------------------


def pushes(config, remote, data: bytes) -> PushParser:
    parser = PushParser(config.http.servers[0], remote)
    parser.feed(data)
    return parser


def test_push_rules_refuse_with_403_drop_the_body_and_keep_the_connection(config):
    data = (b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"OPTIONS /ws HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    parser = pushes(config, V4, data)
    assert [(r.method, r.status, r.reason, r.body, r.close) for r in parser.ready] == [
        (b"POST", 403, "access forbidden by rule", [], False),
        (b"OPTIONS", 403, "access forbidden by rule", [], False),
        # no location: the server's push rules, which are none
        (b"POST", 404, "no websocket location here", [], False),
    ]
    assert parser.error is None


def test_push_rules_let_the_allowed_address_through(config):
    parser = pushes(config, V6, b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    (push,) = parser.ready
    assert (push.status, push.body, push.location.pattern) == (0, [b"hello"], "/ws")


def test_a_server_without_push_rules_never_looks_at_the_address(tmp_path):
    (tmp_path / "nginx.conf").write_text("events {}\nhttp { server { deny all; location /ws { websocket; } } }\n")
    server = load(str(tmp_path / "nginx.conf")).http.servers[0]
    parser = PushParser(server, ("not an address", 1))  # parsing it would fail
    parser.feed(b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    assert parser.ready[0].status == 0


def test_log_formats_and_values_read_realip_remote_addr(group):
    exchange = Exchange(None, group.default_server, 1)
    exchange.client = "203.0.113.9"
    line = compile_format("$remote_addr $realip_remote_addr")(exchange.entry(V4, ("127.0.0.1", 8080)), 0.0)
    assert line == b"203.0.113.9 127.0.0.1\n"
    plain = Exchange(None, group.default_server, 1).entry(V6, ("::1", 8080))
    assert compile_format("$realip_remote_addr")(plain, 0.0) == b"::1\n"
    value = compile_value("$realip_remote_addr-$remote_addr")
    assert value.evaluate(Request(remote_addr="203.0.113.9", realip_remote_addr="127.0.0.1")) == "127.0.0.1-203.0.113.9"
