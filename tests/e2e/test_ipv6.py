"""IPv6 end to end on ::1: listen forms, push listeners, bracketed welcome
URLs, and IPv4 clients of a dual-stack socket (IPv4-mapped addresses)."""

from __future__ import annotations

import contextlib

import httpx
from support.clients import connection_refused, push_urls
from support.processes import poll
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 5.0


@contextlib.contextmanager
def welcome(url: str):
    """Connect; the connection and its push URLs."""
    with connect(url, open_timeout=TIMEOUT) as ws:
        yield ws, push_urls(ws.recv(timeout=TIMEOUT))


def test_ipv6_wildcard_listens_on_ipv6_only_and_pushes_on_loopback(start_server):
    server = start_server(listen="[::]:{port}", websocket="push_listen=[::1]")
    assert connection_refused(server.port)  # ipv6only=on is the default, as in nginx
    with welcome(f"ws://[::1]:{server.port}/ws") as (ws, (url,)):
        assert url["host"] == "[::1]" and int(url["port"]) != server.port
        assert httpx.post(url.group(0), content=b"over six", timeout=TIMEOUT).status_code == 204
        assert ws.recv(timeout=TIMEOUT) == "over six"


def test_ipv6_and_ipv4_loopback_on_one_port(start_server):
    server = start_server(listen="[::1]:{port} ipv6only=on; listen 127.0.0.1:{port}")
    for host in ("[::1]", "127.0.0.1"):
        with welcome(f"ws://{host}:{server.port}/ws") as (ws, urls):
            # the push listener binds the server's listen addresses, one port for both
            assert sorted(url["host"] for url in urls) == ["127.0.0.1", "[::1]"]
            assert len({url["port"] for url in urls}) == 1
            for url in urls:
                assert httpx.post(url.group(0), content=url["host"].encode(), timeout=TIMEOUT).status_code == 204
                assert ws.recv(timeout=TIMEOUT) == url["host"]
    assert poll(lambda: server.log("access.log").count('"GET /ws HTTP/1.1" 101') == 2, TIMEOUT)
    assert sorted(line.split()[0] for line in server.log("access.log").splitlines() if " 101 " in line) == [
        "127.0.0.1", "::1"]


def test_ipv4_clients_of_a_dual_stack_socket_are_ipv4_to_allow_and_deny(start_server):
    # A socket on the IPv4-mapped loopback takes IPv4 clients as ::ffff:127.0.0.1.
    server = start_server(listen="[::ffff:127.0.0.1]:{port} ipv6only=off", locations="""
        location /v4denied { deny 127.0.0.1; websocket; }
        location /v4allowed { allow 127.0.0.0/8; deny all; websocket; }
    """)
    try:
        with connect(f"ws://127.0.0.1:{server.port}/v4denied", open_timeout=TIMEOUT):
            raise AssertionError("the handshake should have been refused")
    except InvalidStatus as refused:
        assert refused.response.status_code == 403
    with welcome(f"ws://127.0.0.1:{server.port}/v4allowed") as (ws, (url,)):
        assert url["host"] == "[::ffff:127.0.0.1]"
        assert httpx.post(url.group(0), content=b"mapped", timeout=TIMEOUT).status_code == 204
        assert ws.recv(timeout=TIMEOUT) == "mapped"
    assert "access forbidden by rule, client: ::ffff:127.0.0.1, server: , " in server.error_log()
    assert poll(lambda: "::ffff:127.0.0.1 - - " in server.log("access.log"), TIMEOUT)
