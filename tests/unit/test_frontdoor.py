"""The front door's decisions, in process: a loaded configuration, an h11
request, and what ``decide`` answers, with no socket and nothing written."""

from __future__ import annotations

from pathlib import Path

import h11
import pytest

from nginxws.conf import load
from nginxws.frontdoor import Answer, Publish, Report, decide
from nginxws.log import TlsExchange
from nginxws.stats import HANDSHAKES, PUBLISHES
from nginxws.routing import Router
from nginxws.wsconn import Upgrade

CONF = r"""
events {}
http {
    client_max_body_size 1k;
    server {
        listen 127.0.0.1:8080;
        server_name main.example;
        location /ws { websocket; }
        location /health { return 200 "ok"; }
        location /gone { return 410; }
        location /old { return 301 /new; }
        location /away { return 302 https://elsewhere.example/; }
        location /drop { return 444; }
        location /empty { return 204; }
        location /chat { websocket; websocket_channels $arg_room news $arg_room; }
        location ~ ^/sub/(?<room>\w+)/(\w+)$ { websocket; websocket_channels $room-$2 $cookie_c $remote_addr; }
        location /pub { websocket_publish $arg_channel; }
        location = /status { stub_status; }
        location = /metrics { websocket_metrics; }
        location = /healthz { websocket_health; }
        location = /moved { websocket_health; return 301 /healthz; }
        location /closed { websocket; deny all; }
    }
    server {
        listen 127.0.0.1:8080;
        server_name other.example;
        return 403;
    }
}
"""
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", KEY),
             (b"Sec-WebSocket-Version", b"13")]


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("conf") / "nginx.conf"
    path.write_text(CONF)
    return Router(load(str(path)).http).servers_for(("127.0.0.1", 8080))


def request(target: bytes = b"/", method: bytes = b"GET", host: bytes = b"main.example", extra=()) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"Host", host), *extra])


def test_a_websocket_handshake_becomes_an_upgrade_with_its_first_frames(group):
    decision = decide(request(b"/ws", extra=[*HANDSHAKE, (b"Sec-WebSocket-Extensions", b"permessage-deflate")]),
                      group, b"\x81\x80early")
    assert isinstance(decision, Upgrade)
    assert (decision.key, decision.offers, decision.trailing, decision.path) == (
        KEY, ("permessage-deflate",), b"\x81\x80early", "/ws")
    assert decision.location.websocket is not None and decision.server.server_names == ("main.example",)


@pytest.mark.parametrize(
    ("req", "status", "headers"),
    [
        (request(b"/ws"), 426, ((b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13"))),
        (request(b"/ws", method=b"POST", extra=HANDSHAKE), 405, ((b"Allow", b"GET"),)),
        (request(b"/ws", extra=[h for h in HANDSHAKE if h[0] != b"Sec-WebSocket-Key"]), 400, ()),
    ],
)
def test_a_request_to_a_websocket_location_that_is_no_handshake_is_refused(group, req, status, headers):
    answer = decide(req, group, b"")
    assert isinstance(answer, Answer)
    assert (answer.status, answer.headers, answer.page, answer.read_body, answer.close) == (
        status, headers, True, True, False)


@pytest.mark.parametrize(
    ("target", "method", "status", "page", "body", "headers", "silent"),
    [
        (b"/health", b"GET", 200, False, b"ok", ((b"Content-Type", b"text/plain"),), False),
        (b"/gone", b"GET", 410, True, b"", (), False),
        (b"/old", b"GET", 301, True, b"", ((b"Location", b"http://main.example/new"),), False),
        (b"/away", b"GET", 302, True, b"", ((b"Location", b"https://elsewhere.example/"),), False),
        (b"/drop", b"GET", 444, True, b"", (), True),
        (b"/empty", b"GET", 204, False, b"", (), False),
        (b"/nothing-here", b"GET", 404, True, b"", (), False),
        (b"/nothing-here", b"HEAD", 404, True, b"", (), False),
        (b"/nothing-here", b"DELETE", 405, True, b"", (), False),
    ],
)
def test_return_and_the_stock_answers(group, target, method, status, page, body, headers, silent):
    answer = decide(request(target, method), group, b"")
    assert (answer.status, answer.page, answer.body, answer.headers, answer.silent) == (
        status, page, body, headers, silent)
    assert answer.read_body and not answer.close


def test_a_relative_redirect_over_tls_keeps_https(group):
    answer = decide(request(b"/old"), group, b"", None, TlsExchange(None, group.default_server, 1))
    assert answer.headers == ((b"Location", b"https://main.example/new"),)


def test_the_server_is_chosen_by_host_and_its_return_wins(group):
    answer = decide(request(b"/ws", host=b"other.example", extra=HANDSHAKE), group, b"")
    assert (answer.status, answer.server.server_names) == (403, ("other.example",))


@pytest.mark.parametrize(
    ("req", "status", "close"),
    [
        (request(host=b"bad host"), 400, True),
        (request(b"/../../etc/passwd"), 400, False),
        (request(b"/" + b"a" * 9000), 414, True),
        (request(extra=[(b"X-Big", b"b" * 9000)]), 494, True),
    ],
)
def test_requests_nginx_refuses_before_routing(group, req, status, close):
    answer = decide(req, group, b"")
    assert (answer.status, answer.close, answer.read_body, answer.page) == (status, close, False, True)


def test_a_body_declared_over_client_max_body_size_is_413_logged_and_closed(group):
    answer = decide(request(b"/health", b"POST", extra=[(b"Content-Length", b"1025")]), group, b"")
    assert (answer.status, answer.close, answer.read_body) == (413, True, False)
    assert answer.log == ("error", "client intended to send too large body: 1025 bytes")
    assert decide(request(b"/health", b"POST", extra=[(b"Content-Length", b"1024")]), group, b"").status == 200


# -- channels ------------------------------------------------------------------------------


def test_websocket_channels_are_expanded_once_each_in_order(group):
    decision = decide(request(b"/chat?room=lobby", extra=HANDSHAKE), group, b"", ("10.0.0.1", 5000))
    assert isinstance(decision, Upgrade)
    assert decision.channels == ("lobby", "news")


def test_an_empty_expansion_joins_nothing(group):
    decision = decide(request(b"/chat", extra=HANDSHAKE), group, b"", ("10.0.0.1", 5000))
    assert decision.channels == ("news",)


def test_captures_cookies_and_the_address_pick_channels(group):
    decision = decide(request(b"/sub/blue/7", extra=[*HANDSHAKE, (b"Cookie", b"a=1; c=from-cookie")]),
                      group, b"", ("10.0.0.1", 5000))
    assert decision.channels == ("blue-7", "from-cookie", "10.0.0.1")


@pytest.mark.parametrize("target", [b"/chat?room=a%20b", b"/chat?room=" + b"x" * 129, b"/chat?room=a/b"])
def test_a_bad_channel_name_refuses_the_handshake_with_400(group, target):
    decision = decide(request(target, extra=HANDSHAKE), group, b"", ("10.0.0.1", 5000))
    assert isinstance(decision, Answer) and decision.status == 400
    assert decision.log == ("info", "client sent invalid channel name")


def test_a_post_to_a_publish_location_is_a_publish(group):
    decision = decide(request(b"/pub?channel=news", b"POST", extra=[(b"Content-Type", b"application/octet-stream"),
                                                                    (b"Content-Length", b"3")]), group, b"")
    assert isinstance(decision, Publish)
    assert (decision.channel, decision.content_type) == ("news", b"application/octet-stream")


@pytest.mark.parametrize("target, method, status", [
    (b"/pub?channel=news", b"GET", 405),
    (b"/pub?channel=news", b"PUT", 405),
    (b"/pub", b"POST", 400),
    (b"/pub?channel=no%20pe", b"POST", 400),
])
def test_bad_publishes_are_answered_before_the_body(group, target, method, status):
    decision = decide(request(target, method), group, b"")
    assert isinstance(decision, Answer) and decision.status == status
    if status == 405:
        assert decision.headers == ((b"Allow", b"POST"),)


def test_a_publish_over_client_max_body_size_is_413(group):
    decision = decide(request(b"/pub?channel=news", b"POST", extra=[(b"Content-Length", b"2000")]), group, b"")
    assert isinstance(decision, Answer) and (decision.status, decision.close) == (413, True)


# -- what the statistics count an answer in -------------------------------------------


@pytest.mark.parametrize(("req", "family"), [
    (request(b"/ws"), HANDSHAKES),
    (request(b"/ws", method=b"POST", extra=HANDSHAKE), HANDSHAKES),
    (request(b"/chat?room=no%20pe", extra=HANDSHAKE), HANDSHAKES),
    (request(b"/ws", extra=[*HANDSHAKE, (b"Content-Length", b"2000")]), HANDSHAKES),
    (request(b"/closed", extra=HANDSHAKE), HANDSHAKES),
    (request(b"/pub?channel=news"), PUBLISHES),
    (request(b"/pub", b"POST"), PUBLISHES),
    (request(b"/pub?channel=news", b"POST", extra=[(b"Content-Length", b"2000")]), PUBLISHES),
    (request(b"/health"), None),
    (request(b"/nowhere"), None),
])
def test_refused_handshakes_and_publishes_count_in_their_family(group, req, family):
    answer = decide(req, group, b"", ("127.0.0.1", 5000))
    assert isinstance(answer, Answer) and answer.family == family
    if req.target == b"/closed":
        assert answer.status == 403


# -- reports --------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "kind"), [
    (b"/status", "stub_status"), (b"/metrics", "websocket_metrics"), (b"/healthz", "websocket_health"),
])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_a_report_location_answers_get_and_head_with_its_report(group, target, kind, method):
    decision = decide(request(target, method), group, b"")
    assert isinstance(decision, Report) and decision.kind == kind
    assert decision.server.server_names == ("main.example",)


def test_a_report_location_refuses_other_methods_as_nginx_stub_status(group):
    answer = decide(request(b"/status", b"POST"), group, b"")
    assert isinstance(answer, Answer) and (answer.status, answer.headers, answer.read_body) == (405, (), True)


def test_return_comes_before_a_report(group):
    answer = decide(request(b"/moved"), group, b"")
    assert isinstance(answer, Answer) and answer.status == 301
