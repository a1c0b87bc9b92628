"""Talking to the backend end to end: the real nginxws, real clients, real HTTP backends on loopback.

auth_request admits or refuses handshakes with nginx's statuses; a header
of the auth answer chooses the client's channel; connect and disconnect
requests carry the push URL the backend then pushes to; client messages go
upstream and the answers come back; the example backend of the docs
(contrib/chat_backend.py) runs a chat; and a backend that is down, slow or
answering 500 costs what docs/backend.md says, never the other clients.
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.backend import Recorded, Reply, ScriptedBackend
from support.clients import PUSH_URL
from support.servers import Server, server_conf
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

TIMEOUT = 10.0  # seconds for any one wait
ROOT = Path(__file__).resolve().parents[2]

LOCATIONS = """
        location /chat {{
            auth_request /auth;
            auth_request_set $user $upstream_http_x_user;
            websocket;
            websocket_channels room user:$user;
            websocket_connect_request /events/connect;
            websocket_disconnect_request /events/disconnect;
            websocket_message_request /events/message;
        }}
        location /guarded {{ auth_request /auth; websocket welcome=off; }}
        location /slowauth {{ auth_request /slow/wait; websocket; }}
        location /downauth {{ auth_request /down/auth; websocket; }}
        location /notify-down {{
            websocket;
            websocket_connect_request /down/connect;
            websocket_disconnect_request /down/disconnect;
        }}
        location /notify-500 {{ websocket; websocket_connect_request /events/fail; }}
        location /talk-down {{ websocket; websocket_message_request /down/message; }}
        location /talk-slow {{ websocket; websocket_message_request /slow/wait; }}
        location /talk-500 {{ websocket; websocket_message_request /events/fail; }}
        location = /auth {{
            internal;
            proxy_pass http://127.0.0.1:{backend}/auth;
            proxy_pass_request_body off;
            proxy_set_header X-Original-URI $request_uri;
        }}
        location /events/ {{ internal; proxy_pass http://127.0.0.1:{backend}; proxy_set_header X-User $user; }}
        location /slow/ {{ internal; proxy_pass http://127.0.0.1:{backend}/; proxy_read_timeout 1s; }}
        location /down/ {{ internal; proxy_pass http://127.0.0.1:{down}/; }}
"""

PUBLISHER = """
    server {{
        listen 127.0.0.1:{pub_port};
        location /pub {{ websocket_publish $arg_channel; }}
    }}
"""


def auth(request: Recorded) -> Reply:
    """/auth answers what the client's URI asks for: ?answer=401&user=alice."""
    asked = parse_qs(urlsplit(request.header("x-original-uri") or "").query)
    status = int(asked.get("answer", ["200"])[0])
    headers = {"X-User": asked["user"][0]} if "user" in asked else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="test"'
    return Reply(status, headers, b"the body of an auth answer is never read")


def echo_upper(request: Recorded) -> Reply:
    """/events/message: the message back in upper case, with its type."""
    return Reply(200, {"Content-Type": request.header("content-type") or ""}, request.body.upper())


class Host(Server):
    pub_port: int
    backend: ScriptedBackend

    def ws(self, path: str, **kwargs):
        return connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=TIMEOUT, **kwargs)

    def refused(self, path: str, **kwargs):
        """The response of a handshake that is refused."""
        with pytest.raises(InvalidStatus) as caught:
            self.ws(path, **kwargs)
        return caught.value.response

    def publish(self, channel: str, message: str) -> httpx.Response:
        # As sent: $arg_channel is not percent-decoded, and httpx would encode the ":" of "user:alice".
        return httpx.post(f"http://127.0.0.1:{self.pub_port}/pub?channel={channel}", content=message, timeout=TIMEOUT)

    def assert_serves_others(self) -> None:
        """A client of the plain location still gets its welcome and its echo."""
        with self.ws("/ws") as ws:
            assert PUSH_URL.fullmatch(ws.recv(timeout=TIMEOUT))
            ws.send("still here")
            assert ws.recv(timeout=TIMEOUT) == "still here"


@pytest.fixture
def host(run_nginxws, free_port, tmp_path):
    backend = ScriptedBackend({
        "/auth": auth,
        "/events/connect": Reply(204),
        "/events/disconnect": Reply(204),
        "/events/message": echo_upper,
        "/events/fail": Reply(500, body=b"broken"),
        "/wait": Reply(200, body=b"too late", delay=TIMEOUT),
    })
    port, pub_port, down = free_port(), free_port(), free_port()  # nothing listens on "down"
    text = server_conf(logs=tmp_path, listen=f"127.0.0.1:{port}",
                       locations=LOCATIONS.format(backend=backend.port, down=down),
                       http=PUBLISHER.format(pub_port=pub_port))
    try:
        started = Host(run_nginxws(text), port, tmp_path)
        started.pub_port, started.backend = pub_port, backend
        yield started
        started.assert_no_traceback()
    finally:
        backend.stop()


# -- auth_request --------------------------------------------------------------------


def test_a_2xx_admits_the_handshake(host):
    with host.ws("/guarded?answer=200") as ws:
        ws.send("in")
        assert ws.recv(timeout=TIMEOUT) == "in"
    with host.ws("/guarded?answer=204"):
        pass
    [first, _] = host.backend.wait_for("/auth", 2)
    assert first.method == "GET" and first.body == b""
    assert first.header("x-original-uri") == "/guarded?answer=200"
    assert first.header("sec-websocket-key")  # the client's headers go with the subrequest
    assert first.header("upgrade") is None  # but not the hop-by-hop ones
    assert first.header("host") == f"127.0.0.1:{host.backend.port}"


def test_a_401_is_passed_to_the_client_with_its_www_authenticate(host):
    response = host.refused("/guarded?answer=401")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="test"'
    assert "auth request" not in host.error_log()


def test_a_403_is_passed_to_the_client(host):
    assert host.refused("/guarded?answer=403").status_code == 403


@pytest.mark.parametrize("status", [404, 500])
def test_any_other_answer_is_500_and_logged(host, status: int):
    assert host.refused(f"/guarded?answer={status}").status_code == 500
    host.wait_log(rf'\[error\] \d+#0: \*\d+ auth request unexpected status: {status} while sending to client, '
                  r'client: 127\.0\.0\.1, server: , request: "GET /guarded\?answer=\d+ HTTP/1\.1", host: ')
    host.assert_serves_others()


def test_an_unreachable_backend_is_500_and_logged_as_nginx(host):
    assert host.refused("/downauth").status_code == 500
    host.wait_log(r'\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream, '
                  r'client: 127\.0\.0\.1, server: , request: "GET /downauth HTTP/1\.1", subrequest: "/down/auth", '
                  r'upstream: "http://127\.0\.0\.1:\d+/auth"')
    host.wait_log(r"\[error\] .*auth request unexpected status: 502 while sending to client")
    host.assert_serves_others()


def test_a_backend_slower_than_proxy_read_timeout_is_500_and_blocks_no_one_else(host):
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(host.refused, "/slowauth")
        host.backend.wait_for("/wait")
        host.assert_serves_others()  # while the subrequest waits
        assert slow.result(TIMEOUT).status_code == 500
    host.wait_log(r"\[error\] .*upstream timed out \(110: Connection timed out\) while reading response header "
                  r'from upstream, .*subrequest: "/slow/wait"')
    host.wait_log(r"auth request unexpected status: 504 while sending to client")


def test_a_clients_request_to_an_internal_location_is_404(host):
    for path in ("/auth", "/events/connect"):
        assert httpx.get(f"http://127.0.0.1:{host.port}{path}", timeout=TIMEOUT).status_code == 404
    assert not [r for r in host.backend.requests if r.path in ("/auth", "/events/connect")]


# -- the auth answer chooses the channel ---------------------------------------------------


def test_a_header_of_the_auth_answer_chooses_the_clients_channel(host):
    with host.ws("/chat?user=alice") as alice, host.ws("/chat?user=bob") as bob:
        for ws in (alice, bob):
            ws.recv(timeout=TIMEOUT)  # the welcome
        assert host.publish("user:alice", "for alice").json() == {"channel": "user:alice", "local_subscribers": 1}
        assert host.publish("user:bob", "for bob").json()["local_subscribers"] == 1
        assert host.publish("room", "for all").json()["local_subscribers"] == 2
        assert [alice.recv(timeout=TIMEOUT) for _ in range(2)] == ["for alice", "for all"]
        assert [bob.recv(timeout=TIMEOUT) for _ in range(2)] == ["for bob", "for all"]


# -- connect and disconnect ----------------------------------------------------------------


def test_connect_and_disconnect_requests_carry_the_push_url_the_backend_pushes_to(host):
    with host.ws("/chat?user=alice&room=1", additional_headers={"Cookie": "session=s3cret"}) as ws:
        welcome = ws.recv(timeout=TIMEOUT)
        push_id = PUSH_URL.fullmatch(welcome)["id"]
        [connect_request] = host.backend.wait_for("/events/connect")
        assert connect_request.method == "POST"
        assert (connect_request.header("x-push-event"), connect_request.header("x-push-id")) == ("connect", push_id)
        assert connect_request.header("x-push-url") == welcome
        assert connect_request.header("content-type") == "application/json"
        assert connect_request.header("x-user") == "alice"  # proxy_set_header X-User $user (auth_request_set)
        assert connect_request.header("cookie") == "session=s3cret"  # the client's own headers
        assert connect_request.header("connection") in (None, "keep-alive")
        event = json.loads(connect_request.body)
        assert event == {"event": "connect", "id": push_id, "push_urls": [welcome],
                         "uri": "/chat?user=alice&room=1", "remote_addr": "127.0.0.1",
                         "channels": ["room", "user:alice"]}
        # What the backend does with it: push to that URL.
        pushed = httpx.post(event["push_urls"][0], content="hello from the backend", timeout=TIMEOUT)
        assert pushed.status_code == 204
        assert ws.recv(timeout=TIMEOUT) == "hello from the backend"
    [disconnect] = host.backend.wait_for("/events/disconnect")
    assert (disconnect.header("x-push-event"), disconnect.header("x-push-id")) == ("disconnect", push_id)
    assert json.loads(disconnect.body) == {**event, "event": "disconnect", "code": 1000}
    assert httpx.post(event["push_urls"][0], content="gone?", timeout=TIMEOUT).status_code == 404


def test_a_stopping_worker_sends_the_disconnects_of_the_sessions_it_closes(host):
    with host.ws("/chat?user=alice") as ws:
        push_id = PUSH_URL.fullmatch(ws.recv(timeout=TIMEOUT))["id"]
        host.backend.wait_for("/events/connect")
        assert host.stop() == 0  # TERM: sessions are closed with 1001
        [disconnect] = host.backend.wait_for("/events/disconnect")
        assert json.loads(disconnect.body)["id"] == push_id
        assert json.loads(disconnect.body)["code"] == 1001


def test_a_failing_connect_request_is_retried_then_given_up_and_the_client_is_served(host):
    with host.ws("/notify-500") as ws:
        ws.recv(timeout=TIMEOUT)
        host.backend.wait_for("/events/fail", 3)
        ws.send("served all along")
        assert ws.recv(timeout=TIMEOUT) == "served all along"
    host.wait_log(r"\[warn\] .*websocket_connect_request unexpected status: 500, attempt 1 of 3")
    host.wait_log(r"\[warn\] .*websocket_connect_request unexpected status: 500, attempt 2 of 3")
    host.wait_log(r'\[error\] .*websocket_connect_request unexpected status: 500, given up after 3 attempts, '
                  r'client: 127\.0\.0\.1, server: , request: "GET /notify-500 HTTP/1\.1", subrequest: "/events/fail"')
    assert len(host.backend.wait_for("/events/fail", 3)) == 3  # never more


def test_a_backend_that_is_down_costs_log_lines_not_the_client(host):
    with host.ws("/notify-down") as ws:
        push_url = ws.recv(timeout=TIMEOUT)
        ws.send("echo")
        assert ws.recv(timeout=TIMEOUT) == "echo"
        assert httpx.post(push_url, content="pushed", timeout=TIMEOUT).status_code == 204
        assert ws.recv(timeout=TIMEOUT) == "pushed"
    host.wait_log(r"\[error\] .*connect\(\) failed \(111: Connection refused\) while connecting to upstream, "
                  r'.*subrequest: "/down/connect"', count=3)
    host.wait_log(r"websocket_connect_request unexpected status: 502, given up after 3 attempts")
    host.wait_log(r"websocket_disconnect_request unexpected status: 502, given up after 3 attempts")
    host.assert_serves_others()


# -- messages upstream ---------------------------------------------------------------------


def test_messages_go_upstream_in_order_and_the_answers_come_back(host):
    with host.ws("/chat?user=alice") as ws:
        ws.recv(timeout=TIMEOUT)
        for n in range(5):
            ws.send(f"message {n}")
        ws.send(b"\x00bin")
        assert [ws.recv(timeout=TIMEOUT) for _ in range(6)] == [f"MESSAGE {n}" for n in range(5)] + [b"\x00BIN"]
        requests = host.backend.wait_for("/events/message", 6)
        assert [r.body for r in requests] == [f"message {n}".encode() for n in range(5)] + [b"\x00bin"]
        first, last = requests[0], requests[-1]
        assert (first.header("x-push-event"), first.header("x-message-type")) == ("message", "text")
        assert first.header("content-type") == "text/plain; charset=utf-8"
        assert (last.header("x-message-type"), last.header("content-type")) == ("binary", "application/octet-stream")
        assert first.header("x-user") == "alice" and first.header("x-push-id")


def test_a_failing_message_request_closes_the_session_with_1011(host):
    for path, pattern in [
        ("/talk-500", r'websocket_message_request unexpected status: 500, closing the session with 1011, '
                      r'client: 127\.0\.0\.1, server: , request: "GET /talk-500 HTTP/1\.1", '
                      r'subrequest: "/events/fail"'),
        ("/talk-down", r"connect\(\) failed \(111: Connection refused\) while connecting to upstream.*"
                       r'subrequest: "/down/message"'),
        ("/talk-slow", r"upstream timed out \(110: Connection timed out\) while reading response header from "
                       r'upstream.*subrequest: "/slow/wait"'),
    ]:
        with host.ws(path) as ws:
            ws.recv(timeout=TIMEOUT)
            ws.send("hello?")
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=TIMEOUT)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "upstream failed")
        host.wait_log(r"\[error\] .*" + pattern)
        host.assert_serves_others()


# -- the example backend of the docs ------------------------------------------------------------


@pytest.fixture
def chat(run_nginxws, free_port, tmp_path):
    """nginxws on docs/backend.md's configuration, with contrib/chat_backend.py as its backend."""
    sys.path.insert(0, str(ROOT / "contrib"))
    try:
        import chat_backend
    finally:
        sys.path.remove(str(ROOT / "contrib"))
    port, pub_port = free_port(), free_port()
    backend = chat_backend.make_server(("127.0.0.1", 0), f"http://127.0.0.1:{pub_port}/pub", quiet=True)
    thread = threading.Thread(target=backend.serve_forever, daemon=True)
    thread.start()
    try:
        conf = (ROOT / "docs" / "backend.conf").read_text()  # its paths are relative to the prefix, tmp_path
        conf = (conf.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("127.0.0.1:8081", f"127.0.0.1:{pub_port}")
                .replace("127.0.0.1:9000", f"127.0.0.1:{backend.server_address[1]}"))
        started = Host(run_nginxws(conf), port, tmp_path / "logs")
        yield started
        started.assert_no_traceback()
    finally:
        backend.shutdown()
        backend.server_close()
        thread.join()


def test_the_example_backend_runs_a_chat(chat):
    assert chat.refused("/chat").status_code == 401
    assert chat.refused("/chat").headers["WWW-Authenticate"] == 'Bearer realm="chat"'
    assert chat.refused("/chat?token=mallory-token").status_code == 403
    with chat.ws("/chat?token=alice-token") as alice:
        assert PUSH_URL.fullmatch(alice.recv(timeout=TIMEOUT))
        assert alice.recv(timeout=TIMEOUT) == "welcome, alice (1 online)"  # pushed to its push URL
        assert alice.recv(timeout=TIMEOUT) == "alice joined"  # published to the room
        with chat.ws("/chat", additional_headers={"Cookie": "token=bob-token"}) as bob:
            bob.recv(timeout=TIMEOUT)
            assert bob.recv(timeout=TIMEOUT) == "welcome, bob (2 online)"
            assert bob.recv(timeout=TIMEOUT) == "bob joined"
            assert alice.recv(timeout=TIMEOUT) == "bob joined"
            alice.send("hello, bob")
            assert bob.recv(timeout=TIMEOUT) == "alice: hello, bob"
            assert alice.recv(timeout=TIMEOUT) == "alice: hello, bob"  # the room, alice included
            assert json.loads(alice.recv(timeout=TIMEOUT)) == {"ok": True, "reached": 2}  # the answer to her
        assert alice.recv(timeout=TIMEOUT) == "bob left"
