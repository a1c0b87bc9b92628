"""auth_request at the front door, in process: ``decide`` asks for the subrequest
(``Authorize``), and ``authorized`` turns its answer into the decision, as
nginx's ngx_http_auth_request_module does; ``internal`` locations are 404 to
clients.  No socket: the upstream's answer is given."""

from __future__ import annotations

from pathlib import Path

import h11
import pytest

from nginxws.conf import load
from nginxws.frontdoor import Answer, Authorize, Publish, authorized, decide
from nginxws.routing import Router
from nginxws.upstream import UpstreamAnswer, UpstreamRequest
from nginxws.wsconn import Upgrade

CONF = """
events {}
http {
    server {
        listen 127.0.0.1:8080;
        location /ws {
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            auth_request_set $status $upstream_status;
            websocket;
            websocket_channels room user:$user;
        }
        location /plain { websocket; }
        location /events {
            auth_request /auth;
            websocket;
            websocket_connect_request /backend/connect;
        }
        location /pub { auth_request /auth; websocket_publish $arg_channel; }
        location /health { auth_request /auth; return 200 "ok"; }
        location /denied { deny all; auth_request /auth; websocket; }
        location /open { auth_request /allow; websocket; }
        location = /auth { internal; proxy_pass http://127.0.0.1:9000/check; proxy_set_header X-Uri $request_uri; }
        location = /allow { internal; return 204; }
        location /backend/ { internal; proxy_pass http://127.0.0.1:9000; }
    }
}
"""
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Key", KEY),
             (b"Sec-WebSocket-Version", b"13"), (b"Cookie", b"token=abc")]
REMOTE = ("10.0.0.7", 5000)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("conf") / "nginx.conf"
    path.write_text(CONF)
    return Router(load(str(path)).http).servers_for(("127.0.0.1", 8080))


def request(target: bytes, method: bytes = b"GET", extra=HANDSHAKE) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"Host", b"ws.example"), *extra])


def authorize(group, target: bytes = b"/ws?token=abc", method: bytes = b"GET", extra=HANDSHAKE) -> Authorize:
    decision = decide(request(target, method, extra), group, b"", REMOTE)
    assert isinstance(decision, Authorize)
    return decision


def answered(auth: Authorize, answer: UpstreamAnswer):
    _, variables = auth.subrequest()
    return authorized(auth, answer, variables)


def test_a_handshake_under_auth_request_asks_for_the_subrequest_first(group):
    auth = authorize(group)
    request, _ = auth.subrequest()
    assert isinstance(request, UpstreamRequest)
    assert (request.method, request.target, request.body) == (b"GET", b"/check", b"")
    assert (b"X-Uri", b"/ws?token=abc") in request.headers  # the client's request, as nginx's subrequests see it
    assert (b"cookie", b"token=abc") in request.headers  # and its headers
    assert auth.origin().context() == (
        ', client: 10.0.0.7, server: , request: "GET /ws?token=abc HTTP/1.1", host: "ws.example"')


def test_a_2xx_admits_and_the_answer_sets_the_variables_that_choose_channels(group):
    decision = answered(authorize(group), UpstreamAnswer(200, ((b"x-user", b"alice"),)))
    assert isinstance(decision, Upgrade)
    assert decision.channels == ("room", "user:alice")
    assert decision.key == KEY


def test_a_variable_the_answer_does_not_set_is_empty(group):
    # "user:$user" is then "user:", a name like any other: the backend's answer decides.
    decision = answered(authorize(group), UpstreamAnswer(204))
    assert isinstance(decision, Upgrade) and decision.channels == ("room", "user:")


def test_a_401_is_passed_with_every_www_authenticate_line(group):
    answer = UpstreamAnswer(401, ((b"www-authenticate", b'Bearer realm="chat"'), (b"x-other", b"1"),
                                  (b"www-authenticate", b"Basic realm=x")))
    decision = answered(authorize(group), answer)
    assert isinstance(decision, Answer) and decision.status == 401 and decision.page and decision.log is None
    assert decision.headers == ((b"WWW-Authenticate", b'Bearer realm="chat"'), (b"WWW-Authenticate", b"Basic realm=x"))


def test_a_403_is_passed(group):
    decision = answered(authorize(group), UpstreamAnswer(403, ((b"www-authenticate", b"x"),)))
    assert isinstance(decision, Answer) and (decision.status, decision.headers, decision.log) == (403, (), None)


@pytest.mark.parametrize("status", [404, 500, 502, 504, 301, 100])
def test_any_other_status_is_500_and_logged_as_nginx_logs_it(group, status: int):
    decision = answered(authorize(group), UpstreamAnswer(status))
    assert isinstance(decision, Answer) and decision.status == 500
    assert decision.log == ("error", f"auth request unexpected status: {status} while sending to client, "
                                     'client: 10.0.0.7, server: , request: "GET /ws?token=abc HTTP/1.1", '
                                     'host: "ws.example"')


def test_auth_comes_before_the_handshake_check_as_nginx_access_phase(group):
    auth = authorize(group, extra=())
    decision = answered(auth, UpstreamAnswer(200))
    assert isinstance(decision, Answer) and decision.status == 426


def test_a_location_that_answers_the_subrequest_itself(group):
    auth = authorize(group, b"/open")
    planned, variables = auth.subrequest()
    assert planned == UpstreamAnswer(204)
    assert isinstance(authorized(auth, planned, variables), Upgrade)


def test_a_location_without_auth_request_never_asks(group):
    assert isinstance(decide(request(b"/plain"), group, b"", REMOTE), Upgrade)


def test_allow_and_deny_come_before_auth_request_as_in_nginx_access_phase(group):
    decision = decide(request(b"/denied"), group, b"", REMOTE)
    assert isinstance(decision, Answer) and decision.status == 403


def test_return_answers_before_auth_request(group):
    decision = decide(request(b"/health", extra=()), group, b"", REMOTE)
    assert isinstance(decision, Answer) and (decision.status, decision.body) == (200, b"ok")


def test_a_publish_is_authorized_too(group):
    auth = authorize(group, b"/pub?channel=news", b"POST", extra=[(b"Content-Type", b"text/plain")])
    decision = answered(auth, UpstreamAnswer(200))
    assert isinstance(decision, Publish) and (decision.channel, decision.content_type) == ("news", b"text/plain")
    assert answered(auth, UpstreamAnswer(403)).status == 403


@pytest.mark.parametrize("target", [b"/auth", b"/allow", b"/backend/connect"])
def test_a_clients_request_to_an_internal_location_is_404(group, target: bytes):
    decision = decide(request(target, extra=()), group, b"", REMOTE)
    assert isinstance(decision, Answer) and decision.status == 404


def test_a_location_with_session_requests_hands_the_session_its_request(group):
    decision = answered(authorize(group, b"/events"), UpstreamAnswer(200, ((b"x-user", b"bob"),)))
    assert isinstance(decision, Upgrade)
    assert decision.request.variables == {}  # this location sets no variable (/ws's are not inherited)
    assert decision.request.headers[-1] == (b"cookie", b"token=abc")
    assert decision.origin.request_line == "GET /events HTTP/1.1" and decision.origin.client == "10.0.0.7"


def test_an_upgrade_without_session_requests_keeps_no_request(group):
    decision = answered(authorize(group), UpstreamAnswer(200))
    assert decision.request is None and decision.origin is None
