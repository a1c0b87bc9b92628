"""Requests to the backend built as nginx builds them (nginxws.upstream): the URI a
location sends upstream, the header lines, the plan of a subrequest, the
session's events.  No socket: the configuration is loaded from text."""

from __future__ import annotations

import json

import pytest

from nginxws.conf import load
from nginxws.conf.model import HttpSettings, Location, ProxyPass, Server
from nginxws.conf.variables import Request, Upstream, compile_value
from nginxws.upstream import (
    NOT_PASSED,
    Origin,
    SubrequestVars,
    UpstreamAnswer,
    UpstreamRequest,
    escape_uri,
    event_body,
    event_headers,
    message_headers,
    plan,
    set_variables,
    upstream_headers,
    upstream_uri,
)

# -- the URI -----------------------------------------------------------------------


def proxy(url: str) -> ProxyPass:
    rest = url[len("http://"):]
    cut = rest.find("/")
    return ProxyPass(url, "b", 9000, ("127.0.0.1",), None if cut < 0 else rest[cut:])


@pytest.mark.parametrize(
    ("modifier", "pattern", "url", "path", "args", "target"),
    [
        # without a URI part the path goes as it is
        ("", "/events/", "http://b:9000", "/events/connect", "", b"/events/connect"),
        ("=", "/auth", "http://b:9000", "/auth", "", b"/auth"),
        ("~", "^/events/", "http://b:9000", "/events/message", "x=1", b"/events/message?x=1"),
        # with one, it replaces what the location's prefix matched
        ("", "/events/", "http://b:9000/api/", "/events/connect", "", b"/api/connect"),
        ("", "/events/", "http://b:9000/", "/events/connect", "", b"/connect"),
        ("", "/events", "http://b:9000/api", "/events/connect", "", b"/api/connect"),
        ("^~", "/events/", "http://b:9000/v2/", "/events/m", "a=b", b"/v2/m?a=b"),
        ("=", "/auth", "http://b:9000/auth", "/auth", "", b"/auth"),
        ("=", "/auth", "http://b:9000/check/token", "/auth", "", b"/check/token"),
        ("=", "/auth", "http://b:9000/", "/auth", "", b"/"),
        # what nginx escapes in a subrequest's URI
        ("", "/events/", "http://b:9000/api/", "/events/a b#c?d%e", "", b"/api/a%20b%23c%3Fd%25e"),
        ("", "/events/", "http://b:9000", "/events/caf\u00e9", "", b"/events/caf%C3%A9"),
    ],
)
def test_upstream_uri_is_nginx_composition(modifier, pattern, url, path, args, target) -> None:
    location = Location(modifier, pattern, HttpSettings())
    assert upstream_uri(location, proxy(url), path, args) == target


def test_escape_uri_leaves_what_nginx_leaves() -> None:
    assert escape_uri(b"/a-b_c.d~e!$&'()*+,;=:@/") == b"/a-b_c.d~e!$&'()*+,;=:@/"
    assert escape_uri(b"\x00\x1f\x7f\xff") == b"%00%1F%7F%FF"


# -- the headers ---------------------------------------------------------------------

CLIENT = (
    (b"host", b"ws.example:8080"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"cookie", b"token=abc"),
    (b"authorization", b"Bearer abc"),
    (b"x-push-id", b"forged"),
    (b"x-user", b"forged"),
    (b"content-length", b"0"),
    (b"te", b"trailers"),
    (b"keep-alive", b"300"),
    (b"expect", b"100-continue"),
    (b"transfer-encoding", b"chunked"),
)


def settings(*pairs: tuple[str, str], **kw) -> HttpSettings:
    return HttpSettings(proxy_set_header=tuple((n, compile_value(v, stored=True)) for n, v in pairs), **kw)


def vars_(**kw) -> Request:
    return Request(headers=CLIENT, upstream=Upstream("b:9000"), **kw)


def test_default_headers_are_host_then_the_clients_but_hop_by_hop_ones() -> None:
    lines = upstream_headers(settings(), vars_(), CLIENT)
    assert lines == [
        (b"Host", b"b:9000"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"cookie", b"token=abc"),
        (b"authorization", b"Bearer abc"),
        (b"x-push-id", b"forged"),
        (b"x-user", b"forged"),
    ]
    assert not {name for name, _ in lines[1:]} & NOT_PASSED


def test_own_headers_come_first_and_a_client_cannot_forge_them() -> None:
    own = ((b"X-Push-Id", b"real"),)
    lines = upstream_headers(settings(("X-Push-Id", "configured")), vars_(), CLIENT, own)
    assert lines[0] == (b"X-Push-Id", b"real")
    assert [value for name, value in lines if name.lower() == b"x-push-id"] == [b"real"]


def test_proxy_set_header_replaces_the_clients_header_and_an_empty_value_sends_none() -> None:
    conf = settings(("X-User", "$user"), ("Cookie", ""), ("Host", "backend.internal"), ("X-Uri", "$request_uri"))
    lines = upstream_headers(conf, vars_(variables={"user": "alice"}, target=b"/ws?token=abc"), CLIENT)
    assert lines[:3] == [(b"X-User", b"alice"), (b"Host", b"backend.internal"), (b"X-Uri", b"/ws?token=abc")]
    names = [name.lower() for name, _ in lines]
    assert b"cookie" not in names and names.count(b"x-user") == 1 and names.count(b"host") == 1


def test_proxy_set_header_given_twice_sends_both() -> None:
    lines = upstream_headers(settings(("X-A", "1"), ("X-A", "2")), vars_(), (), ())
    assert lines == [(b"X-A", b"1"), (b"X-A", b"2"), (b"Host", b"b:9000")]


def test_proxy_pass_request_headers_off_keeps_only_the_set_ones() -> None:
    lines = upstream_headers(settings(proxy_pass_request_headers=False), vars_(), CLIENT, ((b"X-Push-Event", b"c"),))
    assert lines == [(b"X-Push-Event", b"c"), (b"Host", b"b:9000")]


def test_a_body_gets_its_content_length_and_the_clients_is_never_passed() -> None:
    lines = upstream_headers(settings(), vars_(), CLIENT, body=b"hello")
    assert lines[-1] == (b"Content-Length", b"5")
    assert [name for name, _ in lines].count(b"Content-Length") == 1
    assert (b"content-length", b"0") not in lines


# -- plans -----------------------------------------------------------------------------

CONF = """
events {}
http {
    server {
        listen 127.0.0.1:8080;
        location /ws { websocket; auth_request_set $user $upstream_http_x_user; }
        location = /auth {
            internal;
            proxy_pass http://127.0.0.1:9000/check;
            proxy_pass_request_body off;
            proxy_set_header X-Original-URI $request_uri;
            proxy_read_timeout 3s;
        }
        location /events/ { internal; proxy_pass http://localhost:9001; proxy_set_header X-User $user; }
        location = /open { internal; return 204; }
        location ~ ^/captured/(\\w+)$ { internal; proxy_pass http://127.0.0.1:9000; proxy_set_header X-Cap $1; }
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    conf = tmp_path_factory.mktemp("conf") / "nginx.conf"
    conf.write_text(CONF)
    config = load(str(conf), resolve=lambda name: ("127.0.0.1", "::1") if name == "localhost" else ())
    return config.http.servers[0]


MAIN = Request(target=b"/ws?token=abc", headers=((b"host", b"ws.example"), (b"cookie", b"t=1")),
               remote_addr="10.0.0.7", uri="/ws", variables={"user": "alice"})


def test_plan_of_an_auth_subrequest(server) -> None:
    request, variables = plan(server, "/auth", MAIN)
    assert isinstance(request, UpstreamRequest)
    assert (request.method, request.addresses, request.port, request.target) == (
        b"GET", ("127.0.0.1",), 9000, b"/check")
    assert request.headers == ((b"X-Original-URI", b"/ws?token=abc"), (b"Host", b"127.0.0.1:9000"),
                               (b"cookie", b"t=1"))
    assert (request.body, request.read_timeout, request.connect_timeout) == (b"", 3.0, 60.0)
    assert request.url == "http://127.0.0.1:9000/check"
    assert (variables.uri, variables.target, variables.remote_addr) == ("/auth", b"/ws?token=abc", "10.0.0.7")


def test_proxy_pass_request_body_off_sends_an_empty_body(server) -> None:
    request, _ = plan(server, "/auth", MAIN, method=b"POST", body=b"secret")
    assert request.body == b"" and request.headers[-1] == (b"Content-Length", b"0")


def test_plan_of_a_session_event_reads_the_stored_variables_and_tries_every_address(server) -> None:
    own = event_headers("connect", "ID", "http://ID@127.0.0.1:4000/ws")
    request, _ = plan(server, "/events/connect?v=1", MAIN, method=b"POST", body=b"{}", own=own)
    assert (request.target, request.addresses, request.port) == (b"/events/connect?v=1", ("127.0.0.1", "::1"), 9001)
    assert request.subrequest == "/events/connect?v=1"
    assert request.headers == (*own, (b"X-User", b"alice"), (b"Host", b"localhost:9001"), (b"cookie", b"t=1"),
                               (b"Content-Length", b"2"))


def test_a_subrequest_reads_the_captures_of_its_own_location(server) -> None:
    request, variables = plan(server, "/captured/lobby", MAIN)
    assert (b"X-Cap", b"lobby") in request.headers
    assert variables.captures.group(1) == "lobby"


@pytest.mark.parametrize(("uri", "status"), [("/open", 204), ("/nowhere", 404), ("/ws", 404)])
def test_a_location_without_proxy_pass_answers_itself(server, uri: str, status: int) -> None:
    answer, _ = plan(server, uri, MAIN)
    assert answer == UpstreamAnswer(status)


def test_auth_request_set_reads_the_subrequests_answer(server) -> None:
    _, variables = plan(server, "/auth", MAIN)
    conf = HttpSettings(auth_request_set=(
        ("user", compile_value("$upstream_http_x_user")),
        ("seen", compile_value("$upstream_status $proxy_host $uri $request_uri")),
    ))
    answer = UpstreamAnswer(200, ((b"x-user", b"bob"),))
    assert set_variables(conf, variables, answer) == {"user": "bob", "seen": "200 127.0.0.1:9000 /auth /ws?token=abc"}


def test_subrequest_vars_share_the_main_requests_store() -> None:
    store: dict[str, str] = {}
    sub = SubrequestVars(Request(variables=store, method=b"GET"), "/auth")
    store["user"] = "carol"
    assert compile_value("$user:$request_method:$uri", stored=True).evaluate(sub) == "carol:GET:/auth"


# -- what error lines say ---------------------------------------------------------------


def test_origin_context_is_nginxs(server) -> None:
    origin = Origin("10.0.0.7", server, "GET /ws HTTP/1.1", b"ws.example")
    assert origin.context() == ', client: 10.0.0.7, server: , request: "GET /ws HTTP/1.1", host: "ws.example"'
    assert origin.context("/auth", "http://127.0.0.1:9000/check") == (
        ', client: 10.0.0.7, server: , request: "GET /ws HTTP/1.1", subrequest: "/auth", '
        'upstream: "http://127.0.0.1:9000/check", host: "ws.example"')
    assert Origin("10.0.0.7", server, "GET / HTTP/1.0", None).context().endswith('"GET / HTTP/1.0"')


# -- what a session tells the backend ----------------------------------------------------


def test_event_headers_and_bodies() -> None:
    urls = "http://ID@127.0.0.1:4000/ws,http://ID@[::1]:4000/ws"
    assert event_headers("connect", "ID", urls) == (
        (b"X-Push-Event", b"connect"), (b"X-Push-Id", b"ID"), (b"X-Push-Url", urls.encode()),
        (b"Content-Type", b"application/json"))
    request = Request(target=b"/ws?room=1", remote_addr="10.0.0.7")
    assert json.loads(event_body("connect", "ID", urls, request, ("room", "user:alice"))) == {
        "event": "connect", "id": "ID", "push_urls": urls.split(","), "uri": "/ws?room=1",
        "remote_addr": "10.0.0.7", "channels": ["room", "user:alice"]}
    disconnect = json.loads(event_body("disconnect", "ID", urls, request, (), 1001))
    assert (disconnect["event"], disconnect["code"]) == ("disconnect", 1001)
    assert json.loads(event_body("disconnect", "ID", "", request, (), None))["code"] is None


def test_message_headers_say_the_type() -> None:
    assert message_headers("hi", "ID", "U") == (
        (b"X-Push-Event", b"message"), (b"X-Push-Id", b"ID"), (b"X-Push-Url", b"U"),
        (b"X-Message-Type", b"text"), (b"Content-Type", b"text/plain; charset=utf-8"))
    assert message_headers(b"\x00", "ID", "U")[3:] == (
        (b"X-Message-Type", b"binary"), (b"Content-Type", b"application/octet-stream"))
