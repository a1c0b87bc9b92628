"""The WebSocket server end to end: the real process, real clients.

Clients: the ``websockets`` library (a friendly client that answers PINGs),
``support.wsclient.RawClient`` (wsproto, to see PINGs and to misbehave), httpx for
pushes, and raw sockets for malformed HTTP.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import time

import httpx
import pytest
from support.clients import PUSH_URL, first_push_url, push_urls
from support.processes import poll
from support.wsclient import RawClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsproto.extensions import PerMessageDeflate


def push(url: str, body: bytes | str = b"", **kwargs) -> httpx.Response:
    return httpx.post(url, content=body, timeout=5, **kwargs)


def receive(ws, timeout: float = 5):
    return ws.recv(timeout=timeout)


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def client(server):
    with connect(server.url, open_timeout=5, close_timeout=2) as ws:
        ws.push_url = first_push_url(ws)
        yield ws


# -- welcome ---------------------------------------------------------------


def test_welcome_is_one_push_url_per_advertised_address(server):
    with connect(server.url, open_timeout=5) as ws:
        (url,) = push_urls(receive(ws))
        assert url["host"] == "127.0.0.1"
        assert int(url["port"]) not in (server.port, 0)
        assert url["path"] == "/ws"


def test_every_connection_gets_a_fresh_id(server):
    ids = set()
    for _ in range(20):
        with connect(server.url, open_timeout=5) as ws:
            ids.add(push_urls(receive(ws))[0]["id"])
    assert len(ids) == 20


def test_push_host_overrides_the_advertised_addresses(start_server):
    server = start_server(websocket="push_host=push.example.com,10.1.2.3")
    with connect(server.url, open_timeout=5) as ws:
        urls = push_urls(receive(ws).replace("push.example.com", "9.9.9.9"))
        assert [u["host"] for u in urls] == ["9.9.9.9", "10.1.2.3"]


def test_push_listen_fixes_the_push_port(start_server, free_port):
    port = free_port()
    server = start_server(websocket=f"push_listen=127.0.0.1:{port}")
    with connect(server.url, open_timeout=5) as ws:
        (url,) = push_urls(receive(ws))
        assert (url["host"], int(url["port"])) == ("127.0.0.1", port)
        assert push(url.group(0), "fixed").status_code == 204
        assert receive(ws) == "fixed"


def test_listen_and_push_listen_host_names_serve_on_every_address_they_resolve_to(start_server, free_port):
    push_port = free_port()
    server = start_server(listen="localhost:{port}", websocket=f"push_listen=localhost:{push_port}")
    addresses = {info[4][0] for info in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)}
    for address in addresses:
        host = f"[{address}]" if ":" in address else address
        with connect(f"ws://{host}:{server.port}/ws", open_timeout=5) as ws:
            urls = push_urls(receive(ws))
            assert {(url["host"].strip("[]"), int(url["port"])) for url in urls} == {(a, push_port) for a in addresses}
            assert push(urls[0].group(0), "named").status_code == 204
            assert receive(ws) == "named"


def test_wildcard_listen_advertises_the_host_names_addresses(start_server):
    # As the original did: a server on every address advertises its host name's IPv4 addresses.
    server = start_server(listen="{port}")
    try:
        expected = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        expected = ["127.0.0.1"]
    with connect(server.url, open_timeout=5) as ws:
        urls = push_urls(receive(ws))
    assert [url["host"] for url in urls] == expected
    assert len({url["port"] for url in urls}) == 1


def test_ipv6_listen_advertises_a_bracketed_address(start_server):
    server = start_server(listen="[::1]:{port}")
    with connect(f"ws://[::1]:{server.port}/ws", open_timeout=5) as ws:
        (url,) = push_urls(receive(ws))
        assert url["host"] == "[::1]"
        assert push(url.group(0), "six").status_code == 204
        assert receive(ws) == "six"


def test_welcome_off_makes_a_pure_echo_endpoint(start_server):
    server = start_server(websocket="welcome=off")
    with connect(server.url, open_timeout=5) as ws:
        ws.send("first")
        assert receive(ws) == "first"


# -- push ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["hello", "héllo wörld", "emoji 😀🎉", "nul\x00inside", "\U0010ffff", "", "x" * (1024 * 1024)],
    ids=["ascii", "latin", "emoji", "nul", "max-codepoint", "empty", "1MiB"],
)
def test_push_text(client, body):
    response = push(client.push_url, body.encode())
    assert response.status_code == 204
    assert receive(client) == body


def test_push_binary_by_content_type(client):
    body = bytes(range(256)) * 4
    response = push(client.push_url, body, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 204
    assert receive(client) == body


def test_push_with_query_id(client):
    url = PUSH_URL.fullmatch(client.push_url)
    response = push(f"http://{url['host']}:{url['port']}{url['path']}?id={url['id']}", "q")
    assert response.status_code == 204
    assert receive(client) == "q"


def test_push_reaches_only_its_client(server):
    with connect(server.url) as a, connect(server.url) as b:
        url_a, url_b = receive(a), receive(b)
        assert push(url_a, "for a").status_code == 204
        assert push(url_b, "for b").status_code == 204
        assert receive(a) == "for a"
        assert receive(b) == "for b"
        with pytest.raises(TimeoutError):
            receive(a, timeout=0.3)


def test_pipelined_pushes_arrive_in_order(start_server):
    server = start_server(websocket="push_queue=1000")
    count = 500
    with connect(server.url) as client:
        url = PUSH_URL.fullmatch(receive(client))
        requests = b"".join(
            b"POST /ws?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (url["id"].encode(), len(str(i)), str(i).encode())
            for i in range(count)
        )
        with socket.create_connection((url["host"], int(url["port"])), timeout=5) as sock:
            sock.sendall(requests)
            answers = b""
            while answers.count(b"HTTP/1.1 ") < count:
                chunk = sock.recv(65536)
                assert chunk, answers[-200:]
                answers += chunk
        assert answers.count(b"HTTP/1.1 204 ") == count
        assert [receive(client) for _ in range(count)] == [str(i) for i in range(count)]


def test_many_pushes_over_one_keepalive_connection(client):
    with httpx.Client(timeout=5) as http:
        for i in range(100):
            assert http.post(client.push_url, content=str(i)).status_code == 204
    assert [receive(client) for _ in range(100)] == [str(i) for i in range(100)]


def test_push_answers(server, client):
    url = PUSH_URL.fullmatch(client.push_url)
    base = f"http://{url['host']}:{url['port']}"
    ident = {"auth": (url["id"], "")}
    with httpx.Client(timeout=5) as http:
        assert http.post(f"{base}/ws", content="x").status_code == 400  # no ID
        assert http.post(f"{base}/ws", content=b"\xff\xfe", **ident).status_code == 400  # not UTF-8
        assert http.post(f"{base}/ws", content="x", auth=("nosuchid", "")).status_code == 404
        assert http.post(f"{base}/elsewhere", content="x", **ident).status_code == 404
        too_big = http.post(f"{base}/ws", content=b"x" * (1024 * 1024 + 1), **ident)
        assert too_big.status_code == 413
    with httpx.Client(timeout=5) as http:
        got = http.get(f"{base}/ws", **ident)
        assert (got.status_code, got.reason_phrase) == (405, "Not Allowed")  # nginx's words
        assert got.headers["allow"] == "POST, OPTIONS"
        options = http.options(f"{base}/ws")
        assert options.status_code == 204
        assert "POST" in options.headers["allow"]
        assert http.post(f"{base}/ws", content="still ok", **ident).status_code == 204
    assert receive(client) == "still ok"


def test_push_answers_are_shaped_as_nginx_s(start_server):
    server = start_server(http="server_tokens off;")
    with connect(server.url, open_timeout=5) as ws:
        url = PUSH_URL.fullmatch(receive(ws))
        with socket.create_connection((url["host"], int(url["port"])), timeout=5) as sock:
            sock.sendall(b"POST /ws?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
                         b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                         % url["id"].encode())
            answers = b""
            while chunk := sock.recv(65536):
                answers += chunk
        assert receive(ws) == "hi"
    assert re.fullmatch(
        rb"HTTP/1\.1 204 No Content\r\nServer: nginxws\r\nDate: [^\r]+ GMT\r\n\r\n"
        rb"HTTP/1\.1 400 Bad Request\r\nServer: nginxws\r\nDate: [^\r]+ GMT\r\n"
        rb"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 11\r\nConnection: close\r\n\r\nno push ID\n",
        answers), answers


def test_an_upgrade_request_to_the_push_listener_is_answered_as_any_other(client):
    url = PUSH_URL.fullmatch(client.push_url)
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    push_after = b"POST /ws?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nafter" % url["id"].encode()
    with socket.create_connection((url["host"], int(url["port"])), timeout=5) as sock:
        sock.sendall(upgrade + push_after)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2:
            chunk = sock.recv(65536)
            assert chunk, answers
            answers += chunk
    assert answers.startswith(b"HTTP/1.1 405 ") and b"HTTP/1.1 204 " in answers
    assert receive(client) == "after"


def test_push_connection_waits_keepalive_timeout_then_client_body_timeout(start_server):
    server = start_server(http="keepalive_timeout 1s; client_body_timeout 1s;")
    with connect(server.url, open_timeout=5) as ws:
        url = PUSH_URL.fullmatch(receive(ws))
        address = (url["host"], int(url["port"]))
        with socket.create_connection(address, timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /ws?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" % url["id"].encode())
            assert sock.recv(100).startswith(b"HTTP/1.1 204 ")
            assert sock.recv(100) == b""  # idle: closed quietly after keepalive_timeout
            assert 0.6 < time.monotonic() - started < 3
        with socket.create_connection(address, timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab")
            assert sock.recv(100) == b""  # the body stopped: closed after client_body_timeout
            assert 0.6 < time.monotonic() - started < 3


PUSH_LIMIT = 1000  # max_message_size in bytes, far from the 1 MiB default


def utf8_body(size: int) -> bytes:
    """``size`` bytes of UTF-8 text, in fewer characters (``é`` is two bytes)."""
    return ("é" * (size // 2) + "x" * (size % 2)).encode()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "size, status", [(PUSH_LIMIT - 1, 204), (PUSH_LIMIT, 204), (PUSH_LIMIT + 1, 413)],
    ids=["limit-1", "limit", "limit+1"],
)
def test_push_up_to_max_message_size_is_delivered_and_one_byte_more_is_413(start_server, size, status, chunked):
    server = start_server(websocket=f"max_message_size={PUSH_LIMIT}")
    with connect(server.url, open_timeout=5, close_timeout=2) as ws:
        url = first_push_url(ws)
        body = utf8_body(size)
        content = iter([body[i:i + 300] for i in range(0, size, 300)]) if chunked else body
        assert push(url, content).status_code == status
        # Pushes arrive in order: a refused body delivered anyway would come first.
        assert push(url, "after").status_code == 204
        expected = [body.decode(), "after"] if status == 204 else ["after"]
        assert [receive(ws) for _ in expected] == expected
        ws.send("still open")
        assert receive(ws) == "still open"


def test_push_to_departed_client_is_404(server):
    with connect(server.url) as ws:
        url = receive(ws)
    assert poll(lambda: push(url, "late").status_code == 404, 5)


def test_push_to_client_that_stopped_reading_is_503_and_bounded(start_server):
    server = start_server(websocket="push_queue=8", http="send_timeout 30s;")
    raw = RawClient(server.port)
    url = raw.message()
    body = b"y" * 65536
    statuses = []
    with httpx.Client(timeout=5) as http:
        for _ in range(400):  # 25 MiB if nothing were bounded
            statuses.append(http.post(url, content=body).status_code)
            if statuses[-1] == 503:
                break
    assert statuses[-1] == 503, statuses
    assert set(statuses) <= {204, 503}
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{server.pid}/status").read())[1])
    assert rss_kib < 200 * 1024
    with connect(server.url) as other:  # everyone else is still served
        assert push(receive(other), "fine").status_code == 204
        assert receive(other) == "fine"
    raw.close()


def test_client_that_does_not_read_for_send_timeout_is_dropped(start_server):
    server = start_server(websocket="push_queue=4", http="send_timeout 1s;")
    raw = RawClient(server.port)
    url = raw.message()
    body = b"z" * 262144
    statuses = []
    deadline = time.monotonic() + 20
    with httpx.Client(timeout=5) as http:
        while time.monotonic() < deadline:
            statuses.append(http.post(url, content=body).status_code)
            if statuses[-1] == 404:
                break
            if statuses[-1] == 503:
                time.sleep(0.1)
    assert statuses[-1] == 404, statuses[-5:]  # dropped: its ID is gone
    assert 503 in statuses
    assert_still_serving(server)
    raw.close()


# -- echo ------------------------------------------------------------------


def test_echo_keeps_the_message_type(client):
    client.send("text")
    assert receive(client) == "text"
    client.send(b"\x00\x01binary")
    assert receive(client) == b"\x00\x01binary"


def test_fragmented_message_is_reassembled_and_echoed(client):
    client.send(iter(["frag", "ment", "ed"]))
    assert receive(client) == "fragmented"


def test_message_over_max_message_size_is_closed_1009(start_server):
    server = start_server(websocket="max_message_size=1k")
    with connect(server.url, max_size=None) as ws:
        receive(ws)
        ws.send("x" * 1025)
        with pytest.raises(ConnectionClosed) as closed:
            receive(ws)
        assert closed.value.rcvd.code == 1009


# -- permessage-deflate --------------------------------------------------------


def test_deflate_is_off_by_default_and_an_offer_is_declined(client):
    assert client.response.headers.get("Sec-WebSocket-Extensions") is None
    client.send("plain")
    assert receive(client) == "plain"


def test_deflate_on_with_a_real_client_library(start_server):
    server = start_server(websocket="deflate=on")
    with connect(server.url, open_timeout=5) as ws:  # websockets offers permessage-deflate by default
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        push_url = first_push_url(ws)
        message = "compress me " * 1000
        assert push(push_url, message).status_code == 204
        assert receive(ws) == message
        ws.send(message)
        assert receive(ws) == message


@pytest.mark.parametrize(("websocket", "no_context"), [
    ("deflate=on deflate_window_bits=10", True),
    ("deflate=on deflate_no_context_takeover=off", False),
])
def test_deflate_on_compresses_pushes_and_echoes_on_the_wire(start_server, websocket, no_context):
    server = start_server(websocket=websocket)
    raw = RawClient(server.port, extensions=[PerMessageDeflate()])
    try:
        [agreed] = raw.extensions
        assert agreed.server_no_context_takeover is agreed.client_no_context_takeover is no_context
        push_url = raw.message().split(",")[0]
        message = "compressible " * 5000
        for _ in range(2):
            before = raw.received_bytes
            assert push(push_url, message).status_code == 204
            assert raw.message() == message
            assert raw.received_bytes - before < len(message) // 20
        before = raw.received_bytes
        raw.send(message)
        assert raw.message() == message
        assert raw.received_bytes - before < len(message) // 20
    finally:
        raw.close()
    assert_still_serving(server)


# -- timers ----------------------------------------------------------------


def test_ping_after_pingintvl_and_pong_resets_the_timers(start_server):
    server = start_server(websocket="pingintvl=200 idleintvl=600")
    raw = RawClient(server.port, auto_pong=False)
    raw.message()
    started = time.monotonic()
    assert raw.ping(timeout=2) is not None
    assert 0.15 < time.monotonic() - started < 1.0
    for _ in range(4):  # answering keeps it open well past idleintvl
        raw.pong()
        assert raw.ping(timeout=2) is not None
    assert raw.closed is None
    raw.close()


def test_client_that_never_answers_is_closed_after_idleintvl(start_server):
    server = start_server(websocket="pingintvl=200 idleintvl=600")
    raw = RawClient(server.port, auto_pong=False)
    raw.message()
    started = time.monotonic()
    closed = raw.wait_closed(timeout=3)
    elapsed = time.monotonic() - started
    assert closed is not None
    assert (closed.code, closed.reason) == (1001, "idle timeout")
    assert 0.5 < elapsed < 1.5
    raw.close()


def test_silent_but_ponging_client_stays_and_is_pushable(start_server):
    server = start_server(websocket="pingintvl=200 idleintvl=600")
    with connect(server.url) as ws:  # websockets answers PINGs itself
        url = receive(ws)
        with pytest.raises(TimeoutError):
            receive(ws, timeout=2.0)  # more than three idleintvl of silence
        assert push(url, "still here").status_code == 204
        assert receive(ws) == "still here"


def test_pushes_do_not_keep_a_dead_client_alive(start_server):
    server = start_server(websocket="pingintvl=200 idleintvl=600")
    raw = RawClient(server.port, auto_pong=False)
    url = raw.message()
    deadline = time.monotonic() + 3
    while raw.closed is None and time.monotonic() < deadline:
        push(url, "keepalive?")
        raw.message(timeout=0.05)
    assert raw.closed is not None and raw.closed.code == 1001
    raw.close()


# -- front door ------------------------------------------------------------


def test_server_tokens_off_hides_the_version_in_the_handshake(start_server):
    server = start_server(http="server_tokens off;")
    with connect(server.url, open_timeout=5) as ws:
        assert ws.response.headers["Server"] == "nginxws"
    assert httpx.get(f"http://127.0.0.1:{server.port}/nothing", timeout=5).headers["server"] == "nginxws"


def test_plain_get_on_websocket_location_is_426(server):
    response = httpx.get(f"http://127.0.0.1:{server.port}/ws", timeout=5)
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.headers["server"].startswith("nginxws")


def test_other_method_on_websocket_location_is_405(server):
    got = httpx.post(f"http://127.0.0.1:{server.port}/ws", timeout=5)
    assert (got.status_code, got.reason_phrase) == (405, "Not Allowed")


def test_malformed_handshake_is_400(server):
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "short"}
    assert httpx.get(f"http://127.0.0.1:{server.port}/ws", headers=headers, timeout=5).status_code == 400


def test_unknown_location_is_nginx_404_page(server):
    response = httpx.get(f"http://127.0.0.1:{server.port}/nothing", timeout=5)
    assert response.status_code == 404
    assert "<center><h1>404 Not Found</h1></center>" in response.text


def test_return_for_health_checks_and_redirects(start_server):
    server = start_server(locations="""
        location = /health { return 200 "ok\\n"; }
        location /old { return 301 /ws; }
        location /gone { return 410; }
    """)
    base = f"http://127.0.0.1:{server.port}"
    assert httpx.get(f"{base}/health").text == "ok\n"
    moved = httpx.get(f"{base}/old")
    assert moved.status_code == 301 and moved.headers["location"].endswith("/ws")
    assert httpx.get(f"{base}/gone").status_code == 410


NGINX_DOCS_LOCATIONS = """
    location = / { return 200 "A"; }
    location / { return 200 "B"; }
    location /documents/ { return 200 "C"; }
    location ^~ /images/ { return 200 "D"; }
    location ~* \\.(gif|jpg|jpeg)$ { return 200 "E"; }
"""


@pytest.mark.parametrize(
    "path, expected",
    [("/", "A"), ("/index.html", "B"), ("/documents/document.html", "C"),
     ("/images/1.gif", "D"), ("/documents/1.jpg", "E")],
)
def test_location_precedence_of_nginx_documentation(start_server, path, expected):
    # The example of nginx.org/en/docs/http/ngx_http_core_module.html#location
    # (the "/" location is replaced by the websocket one of the fixture: "/ws").
    server = start_server(locations=NGINX_DOCS_LOCATIONS)
    assert httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5).text == expected


def test_server_name_precedence(run_nginxws, free_port, tmp_path):
    port = free_port()
    run_nginxws(rf"""
        daemon off; master_process off; error_log stderr info; pid {tmp_path}/names.pid;
        events {{ }}
        http {{
            access_log off;
            server {{
                listen 127.0.0.1:{port};
                server_name _; return 200 "first";
            }}
            server {{ listen 127.0.0.1:{port} default_server; return 200 "default"; }}
            server {{ listen 127.0.0.1:{port}; server_name www.example.org; return 200 "exact"; }}
            server {{ listen 127.0.0.1:{port}; server_name *.example.org; return 200 "leading"; }}
            server {{ listen 127.0.0.1:{port}; server_name mail.*; return 200 "trailing"; }}
            server {{ listen 127.0.0.1:{port}; server_name ~^(?<user>.+)\.example\.net$; return 200 "regex"; }}
        }}
    """)
    cases = {"www.example.org": "exact", "a.example.org": "leading", "mail.example.com": "trailing",
             "joe.example.net": "regex", "other.test": "default", "WWW.Example.ORG.": "exact"}
    for host, expected in cases.items():
        response = httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": host}, timeout=5)
        assert response.text == expected, host


def test_body_over_client_max_body_size_is_413(start_server):
    server = start_server(http="client_max_body_size 1k;", locations='location = /health { return 200 "ok"; }')
    response = httpx.post(f"http://127.0.0.1:{server.port}/health", content=b"x" * 2048, timeout=5)
    assert response.status_code == 413
    assert httpx.post(f"http://127.0.0.1:{server.port}/health", content=b"x" * 10, timeout=5).text == "ok"


def test_keepalive_and_pipelining_on_the_front_door(start_server):
    server = start_server(locations='location = /health { return 200 "ok"; }')
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
        data = b""
        while data.count(b"HTTP/1.1 200") < 3:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk


# -- hostile input -----------------------------------------------------------


def assert_still_serving(server):
    with connect(server.url, open_timeout=5) as ws:
        url = receive(ws)
        assert push(url, "alive").status_code == 204
        assert receive(ws) == "alive"


def test_garbage_bytes_get_400(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    assert_still_serving(server)


def test_request_that_never_finishes_gets_408(start_server):
    server = start_server(http="client_header_timeout 1s;")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        assert sock.recv(100).startswith(b"HTTP/1.1 408 ")
        assert 0.8 < time.monotonic() - started < 3
    assert_still_serving(server)


def test_keepalive_waits_keepalive_timeout_then_client_header_timeout(start_server):
    server = start_server(http="client_header_timeout 1s; keepalive_timeout 2s;",
                          locations='location = /health { return 200 "ok"; }')
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert sock.recv(100) == b""  # idle: closed quietly after keepalive_timeout
        assert 1.5 < time.monotonic() - started < 4
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # the next request stalls
        started = time.monotonic()
        assert sock.recv(100).startswith(b"HTTP/1.1 408 ")
        assert 0.8 < time.monotonic() - started < 1.8


def test_a_connection_that_sends_nothing_is_closed_quietly_after_client_header_timeout(start_server):
    server = start_server(http="client_header_timeout 1s;")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        assert sock.recv(100) == b""  # as nginx: no 408 for a connection that sent nothing
        assert 0.8 < time.monotonic() - started < 2.5
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\n")  # part of a head: 408
        assert sock.recv(100).startswith(b"HTTP/1.1 408 ")
    log = server.prefix / "access.log"
    server.wait_log(r'" 408 ', log="access.log")
    assert log.read_text().count("\n") == 1, log.read_text()


def test_huge_headers_get_400_and_long_uri_414(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        answer = sock.recv(1000)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"Request Header Or Cookie Too Large" in answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 414 ")
    assert_still_serving(server)


def test_unmasked_client_frame_is_closed_1002(server):
    raw = RawClient(server.port)
    raw.message()
    raw.send_raw(b"\x81\x02hi")  # FIN+text, no mask bit
    closed = raw.wait_closed()
    assert closed is not None and closed.code == 1002
    raw.close()
    assert_still_serving(server)


def test_invalid_utf8_text_frame_is_closed_1007(server):
    raw = RawClient(server.port)
    raw.message()
    mask = b"\x00\x00\x00\x00"
    raw.send_raw(b"\x81\x82" + mask + b"\xff\xfe")
    closed = raw.wait_closed()
    assert closed is not None and closed.code == 1007
    raw.close()
    assert_still_serving(server)


def test_oversized_frame_is_closed_1009(start_server):
    server = start_server(websocket="max_message_size=64k")
    raw = RawClient(server.port)
    raw.message()
    raw.send_raw(b"\x82\xff" + (1 << 40).to_bytes(8, "big") + b"\x00\x00\x00\x00" + b"x" * 70000)
    closed = raw.wait_closed()
    assert closed is not None and closed.code == 1009
    raw.close()
    assert_still_serving(server)


# -- logs and shutdown -------------------------------------------------------


def test_access_log_has_handshake_101_and_push_204_in_combined_format(server):
    with connect(server.url, user_agent_header="e2e-agent") as ws:
        assert push(receive(ws), "x").status_code == 204
        receive(ws)
    server.wait_log(r'"GET /ws HTTP/1.1" 101 \d+ "-" "e2e-agent"$', log="access.log")
    server.wait_log(r'^127\.0\.0\.1 - [A-Za-z0-9_-]{24} \[[^\]]+\] "POST /ws HTTP/1.1" 204 0 "-" "python-httpx/',
                    log="access.log")


def test_error_log_at_info_says_how_each_client_left(start_server):
    # nginx logs a client's leaving at info (not its arrival): the sample
    # configuration's "error_log stderr info" shows clients going.
    server = start_server(websocket="pingintvl=200 idleintvl=400",
                          locations='location = /health { return 200 "ok"; }')
    with connect(server.url) as ws:
        push_url = receive(ws)
    server.wait_log(r"\[info\] \d+#0: \*\d+ client closed connection with 1000$")
    raw = RawClient(server.port)
    raw.message()
    raw.close()
    server.wait_log(r"\[info\] \d+#0: \*\d+ client prematurely closed connection$")
    raw = RawClient(server.port, auto_pong=False)
    closed = raw.wait_closed()
    assert closed is not None and closed.code == 1001
    raw.close()
    server.wait_log(r"\[info\] \d+#0: \*\d+ client timed out, closed with 1001$")
    socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    server.wait_log(r"\[info\] \d+#0: \*\d+ client closed connection while waiting for request$")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(1000).startswith(b"HTTP/1.1 200 ")
    server.wait_log(r"\[info\] \d+#0: \*\d+ client 127\.0\.0\.1 closed keepalive connection$")
    assert push(push_url, "too late").status_code == 404  # a pusher, on the push listener
    server.wait_log(r"\[info\] \d+#0: \*\d+ client 127\.0\.0\.1 closed keepalive connection$", count=2)


def test_error_log_lines_have_nginx_shape(server):
    assert_still_serving(server)
    server.stop(signal.SIGTERM)
    assert re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[notice\] \d+#0: ", (server.prefix / "error.log").read_text(), re.M)


def test_term_closes_every_session_with_1001(server):
    stack = contextlib.ExitStack()
    clients = [stack.enter_context(connect(server.url)) for _ in range(3)]
    for ws in clients:
        receive(ws)
    started = time.monotonic()
    server.stop(signal.SIGTERM)
    assert time.monotonic() - started < 3
    for ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    stack.close()
    assert server.proc.returncode == 0
    assert not (server.prefix / "nginxws.pid").exists()


def test_a_session_a_stop_cuts_short_is_still_logged(server):
    # The client never answers the server's close frame: after the stop's
    # grace the worker cuts the connection, and the session still gets its
    # access-log line, as nginx logs a request its worker finalizes on exit.
    raw = RawClient(server.port)
    assert server.stop(signal.SIGTERM) == 0
    raw.close()
    assert re.search(r'"GET /ws HTTP/1\.1" 101 \d+ ', server.log("access.log")), server.log("access.log")
