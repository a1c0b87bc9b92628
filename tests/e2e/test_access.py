"""allow/deny and realip end to end: one server listening on 127.0.0.1 and
::1, clients from each, the answers, the error log and the access log."""

from __future__ import annotations

import re

import httpx
import pytest
from support.clients import push_urls
from support.processes import poll
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 5.0
BOTH = "127.0.0.1:{port}; listen [::1]:{port}"  # the template's "listen X;" twice
REAL_FORMAT = "log_format real '$remote_addr $realip_remote_addr \"$request\" $status';"
HOSTS = {"v4": "127.0.0.1", "v6": "[::1]"}


def handshake(server, family: str, path: str = "/ws", headers: dict | None = None) -> int:
    """Open a WebSocket from ``family``'s loopback; the status (101, or what refused it)."""
    try:
        with connect(f"ws://{HOSTS[family]}:{server.port}{path}", open_timeout=TIMEOUT,
                     additional_headers=headers or {}) as ws:
            ws.recv(timeout=TIMEOUT)  # the welcome
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def request(server, family: str, path: str, method: str = "GET", body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.request(method, f"http://{HOSTS[family]}:{server.port}{path}", content=body,
                         headers=headers, timeout=TIMEOUT)


def test_allow_and_deny_answer_each_address_family_on_every_kind_of_location(start_server, tmp_path):
    server = start_server(listen=BOTH, server="server_name ws.test; push_allow ::1; push_deny all;", locations="""
        location /v4only { allow 127.0.0.1; deny all; websocket; }
        location /v6only { allow ::1; deny all; websocket; }
        location ~ ^/pub/v4/(\\w+)$ { allow 127.0.0.1; deny all; websocket_publish $1; }
        location ~ ^/pub/v6/(\\w+)$ { deny 127.0.0.0/8; websocket_publish $1; }
        location = /plain { deny ::1; }
        location = /returned { deny all; return 200 "returned\\n"; }
    """)
    assert {(path, family): handshake(server, family, path)
            for path in ("/v4only", "/v6only", "/ws") for family in ("v4", "v6")} == {
        ("/v4only", "v4"): 101, ("/v4only", "v6"): 403,
        ("/v6only", "v4"): 403, ("/v6only", "v6"): 101,
        ("/ws", "v4"): 101, ("/ws", "v6"): 101,
    }
    assert {(path, family): request(server, family, path, "POST", b"news").status_code
            for path in ("/pub/v4/room", "/pub/v6/room") for family in ("v4", "v6")} == {
        ("/pub/v4/room", "v4"): 202, ("/pub/v4/room", "v6"): 403,
        ("/pub/v6/room", "v4"): 403, ("/pub/v6/room", "v6"): 202,
    }
    # a location without content: 404 once allowed; "return" answers before allow/deny, as in nginx
    assert [request(server, f, "/plain").status_code for f in ("v4", "v6")] == [404, 403]
    assert [request(server, f, "/returned").text for f in ("v4", "v6")] == ["returned\n", "returned\n"]

    # the push listener: push_allow/push_deny of the location the push names
    with connect(server.url, open_timeout=TIMEOUT) as ws:
        urls = {url["host"]: url.group(0) for url in push_urls(ws.recv(timeout=TIMEOUT))}
        assert set(urls) == {"127.0.0.1", "[::1]"}  # the push listener is on both addresses
        refused = httpx.post(urls["127.0.0.1"], content=b"from v4", timeout=TIMEOUT)
        assert (refused.status_code, refused.text) == (403, "access forbidden by rule\n")
        assert httpx.post(urls["[::1]"], content=b"from v6", timeout=TIMEOUT).status_code == 204
        assert ws.recv(timeout=TIMEOUT) == "from v6"

    log = server.error_log()
    port = server.port
    for line in (
        f'access forbidden by rule, client: ::1, server: ws.test, request: "GET /v4only HTTP/1.1", '
        f'host: "[::1]:{port}"',
        f'access forbidden by rule, client: 127.0.0.1, server: ws.test, request: "GET /v6only HTTP/1.1", '
        f'host: "127.0.0.1:{port}"',
        f'access forbidden by rule, client: ::1, server: ws.test, request: "POST /pub/v4/room HTTP/1.1", '
        f'host: "[::1]:{port}"',
        f'access forbidden by rule, client: ::1, server: ws.test, request: "GET /plain HTTP/1.1", host: "[::1]:{port}"',
    ):
        stamp = r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#0: \*\d+ "
        assert re.search(stamp + re.escape(line) + "$", log, re.M), line
    push_line = re.escape('access forbidden by rule, client: 127.0.0.1, server: ws.test, request: "POST /ws HTTP/1.1", '
                          'host: "127.0.0.1:') + r"\d+\"$"
    assert re.search(r"\[error\] \d+#0: \*\d+ " + push_line, log, re.M)
    assert log.count("access forbidden by rule") == 6


def realip_server(start_server, tmp_path, trust: str, extra: str = ""):
    return start_server(listen=BOTH, http=f"{REAL_FORMAT}\naccess_log {tmp_path}/real.log real;\n{extra}",
                        server=f"set_real_ip_from {trust};", locations="""
        location /guarded { allow 203.0.113.0/24; allow ::1; deny all; websocket; }
    """)


def real_log(server, count: int) -> list[str]:
    lines: list[str] = []

    def enough() -> bool:
        lines[:] = server.log("real.log").splitlines()
        return len(lines) >= count

    assert poll(enough, TIMEOUT), server.log("real.log")
    return lines


def test_realip_from_a_trusted_address_is_the_client_in_logs_and_rules(start_server, tmp_path):
    server = realip_server(start_server, tmp_path, trust="127.0.0.1")
    assert handshake(server, "v4", "/guarded", {"X-Real-IP": "203.0.113.7"}) == 101
    assert handshake(server, "v4", "/guarded", {"X-Real-IP": "198.51.100.1"}) == 403
    assert handshake(server, "v4", "/guarded") == 403  # the balancer itself is not allowed
    # ::1 is no trusted balancer: its header is ignored, and ::1 is allowed
    assert handshake(server, "v6", "/guarded", {"X-Real-IP": "198.51.100.1"}) == 101
    assert sorted(real_log(server, 4)) == [  # a session is logged when it ends: sorted
        '127.0.0.1 127.0.0.1 "GET /guarded HTTP/1.1" 403',
        '198.51.100.1 127.0.0.1 "GET /guarded HTTP/1.1" 403',
        '203.0.113.7 127.0.0.1 "GET /guarded HTTP/1.1" 101',
        '::1 ::1 "GET /guarded HTTP/1.1" 101',
    ]
    assert "client: 198.51.100.1, server: , " in server.error_log()


def test_realip_from_an_untrusted_address_is_ignored(start_server, tmp_path):
    server = realip_server(start_server, tmp_path, trust="::1")
    assert handshake(server, "v4", "/guarded", {"X-Real-IP": "203.0.113.7"}) == 403
    assert handshake(server, "v6", "/guarded", {"X-Real-IP": "203.0.113.7"}) == 101
    assert sorted(real_log(server, 2)) == [
        '127.0.0.1 127.0.0.1 "GET /guarded HTTP/1.1" 403',
        '203.0.113.7 ::1 "GET /guarded HTTP/1.1" 101',
    ]


@pytest.mark.parametrize(
    ("recursive", "chain", "client"),
    [
        ("on", ["203.0.113.7, 10.0.0.2, 10.0.0.1"], "203.0.113.7"),
        ("off", ["203.0.113.7, 10.0.0.2, 10.0.0.1"], "10.0.0.1"),
        ("on", ["198.51.100.1, 203.0.113.7, 10.0.0.1"], "203.0.113.7"),
        ("on", ["203.0.113.7", "10.0.0.2, 10.0.0.1"], "203.0.113.7"),  # two header lines are one list
        ("on", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all trusted: the leftmost
    ],
)
def test_real_ip_recursive_walks_an_x_forwarded_for_chain(start_server, tmp_path, recursive, chain, client):
    server = start_server(
        http=f"{REAL_FORMAT}\naccess_log {tmp_path}/real.log real;\n"
             f"set_real_ip_from 127.0.0.1; set_real_ip_from 10.0.0.0/8;\n"
             f"real_ip_header X-Forwarded-For; real_ip_recursive {recursive};",
        locations="location = /who { return 204; }")
    headers = [("X-Forwarded-For", value) for value in chain]
    assert httpx.get(f"http://127.0.0.1:{server.port}/who", headers=headers, timeout=TIMEOUT).status_code == 204
    assert real_log(server, 1) == [f'{client} 127.0.0.1 "GET /who HTTP/1.1" 204']
