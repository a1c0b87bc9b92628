"""The backend's directives in the model: auth_request, auth_request_set, proxy_*,
internal and websocket_*_request (the broken forms are in the corpus, tests/conf_corpus/invalid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginxws.conf import ConfigError, load
from nginxws.conf.model import (
    DEFAULT_PROXY_TIMEOUT,
    BackendRequests,
    HttpSettings,
    ProxyPass,
)
from nginxws.conf.variables import Request, Stored, Upstream, UpstreamHeader

VALID = Path(__file__).resolve().parents[1] / "conf_corpus" / "valid"


def resolve(name: str) -> tuple[str, ...]:
    return {"localhost": ("127.0.0.1", "::1")}.get(name, ())


@pytest.fixture(scope="module")
def server():
    config = load(str(VALID / "backend.conf"), prefix=str(VALID), resolve=resolve)
    return config.http.servers[0]


def location(server, pattern):
    found = [loc for loc in server.locations if loc.pattern == pattern]
    return found[0]


def test_defaults_are_nginx_ones() -> None:
    settings = HttpSettings()
    assert settings.auth_request is None
    assert (settings.auth_request_set, settings.proxy_set_header) == ((), ())
    assert settings.proxy_pass_request_body and settings.proxy_pass_request_headers
    assert settings.proxy_connect_timeout == settings.proxy_send_timeout == DEFAULT_PROXY_TIMEOUT == 60.0


def test_auth_request_is_inherited_and_off_turns_it_off(server) -> None:
    assert server.settings.auth_request == "/auth"
    assert location(server, "/ws").settings.auth_request == "/auth"
    assert location(server, "/open").settings.auth_request is None


def test_auth_request_set_defines_variables_used_before_it(server) -> None:
    ws = location(server, "/ws")
    user = ws.channels[1]
    assert user.parts == ("user:", Stored("user"))
    names = [name for name, _ in ws.settings.auth_request_set]
    assert names == ["user", "role"]  # names are lower case, as nginx's
    role = ws.settings.auth_request_set[1][1]
    answered = Request(upstream=Upstream(status=200, headers=((b"x-role", b"admin"),)))
    assert role.evaluate(answered) == "200:admin"
    assert ws.settings.auth_request_set[0][1].parts == (UpstreamHeader(b"x-user"),)


def test_websocket_requests_belong_to_their_location_only(server) -> None:
    assert location(server, "/ws").backend == BackendRequests("/events/connect", "/events/disconnect",
                                                             "/events/message")
    assert location(server, "/open").backend is None


def test_proxy_pass_and_its_settings(server) -> None:
    auth = location(server, "/auth")
    assert auth.modifier == "=" and auth.internal
    assert auth.proxy == ProxyPass("http://localhost:9000/auth", "localhost", 9000, ("127.0.0.1", "::1"), "/auth")
    assert auth.proxy.proxy_host == "localhost:9000"
    assert not auth.settings.proxy_pass_request_body
    assert [(name, value.source) for name, value in auth.settings.proxy_set_header] == [
        ("X-Original-URI", "$request_uri"), ("Content-Length", ""),
    ]
    assert auth.settings.proxy_read_timeout == 5.0  # from http

    events = location(server, "/events/")
    assert events.proxy == ProxyPass("http://127.0.0.1:9000", "127.0.0.1", 9000, ("127.0.0.1",), None)
    assert (events.settings.proxy_connect_timeout, events.settings.proxy_send_timeout) == (2.0, 0.5)
    assert not events.settings.proxy_pass_request_headers
    nested = events.locations[0]
    assert nested.proxy == ProxyPass("http://[::1]/api/", "[::1]", 80, ("::1",), "/api/")
    assert nested.proxy.proxy_host == "[::1]"
    assert not nested.internal  # not inherited
    # proxy_set_header is inherited as a whole
    assert [name for name, _ in nested.settings.proxy_set_header] == ["X-User"]


def test_a_level_with_proxy_set_header_replaces_the_inherited_ones(tmp_path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "events {}\nhttp {\n proxy_set_header A 1; proxy_set_header B 2;\n"
        " server { location /x { proxy_set_header C 3; proxy_pass http://127.0.0.1:1; } }\n}\n"
    )
    settings = load(str(conf)).http.servers[0].locations[0].settings
    assert [name for name, _ in settings.proxy_set_header] == ["C"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("auth_request_set $user 1; auth_request_set $1x 2;", 'invalid variable name "$1x"'),
        ("auth_request_set $upstream_status 1;", 'the duplicate "upstream_status" variable'),
        ("auth_request_set $upstream_http_x 1;", 'the duplicate "upstream_http_x" variable'),
        ("auth_request_set $user $nothing;", 'unknown "nothing" variable'),
        ("proxy_set_header X ${user;", 'the closing bracket in "user" variable is missing'),
    ],
)
def test_errors_in_values_are_nginx_ones(tmp_path, line: str, message: str) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\n{line}\n}}\n")
    with pytest.raises(ConfigError) as err:
        load(str(conf))
    assert str(err.value) == f"[emerg] {message} in {conf}:3"
