"""Channels end to end: the real process tree, real WebSocket and HTTP clients.

Subscribers join at the handshake (``websocket_channels``, with variables
and regex captures) or through their push URL (``?subscribe=``); a POST to a
``websocket_publish`` location reaches every subscriber on every worker,
once, in publish order, across a reload; a slow subscriber is closed while
the others keep up; channels that come and go leave nothing behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from contextlib import ExitStack

import httpx
import pytest
from support.clients import push_urls
from support.processes import poll
from support.servers import Server, server_conf
from websockets.sync.client import connect

TIMEOUT = 10.0  # seconds for any one wait

LOCATIONS = """
        location /chat {{ websocket {websocket}; websocket_channels $arg_room news; }}
        location ~ ^/sub/(\\w+)$ {{ websocket welcome=off; websocket_channels $1; }}
        location ~ ^/named/(?<room>\\w+)$ {{ websocket; websocket_channels room-$room; }}
        location /hdr {{ websocket; websocket_channels $http_x_room $cookie_room; }}
"""

PUBLISHER = """
    server {{
        listen 127.0.0.1:{pub_port};
        location /pub {{ websocket_publish $arg_channel; }}
        location ~ ^/pub/(\\w+)$ {{ websocket_publish $1; }}
        location /small {{ client_max_body_size 10; websocket_publish $arg_channel; }}
    }}
"""

ACCEPTS = re.compile(r"worker process (\d+) accepts pushes on 127\.0\.0\.1:(\d+)$", re.M)


class Host(Server):
    """A running nginxws with the channel locations and a publisher port."""

    pub_port: int

    def publish(self, channel: str, message: str | bytes, client: httpx.Client | None = None, *,
                path: str = "/pub", binary: bool = False) -> httpx.Response:
        headers = {"Content-Type": "application/octet-stream"} if binary else {}
        url = f"http://127.0.0.1:{self.pub_port}{path}"
        params = {"channel": channel} if path == "/pub" else None
        if client is None:
            return httpx.post(url, params=params, content=message, headers=headers, timeout=TIMEOUT)
        return client.post(url, params=params, content=message, headers=headers)

    def ws(self, path: str, **kwargs):
        return connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=TIMEOUT, **kwargs)


@pytest.fixture
def start_host(run_nginxws, free_port, tmp_path):
    """``start_host(workers=0, websocket="")`` -> Host; ``workers=0`` is ``master_process off``."""
    started: list[Host] = []

    def start(*, workers: int = 0, websocket: str = "", http: str = "") -> Host:
        port, pub_port = free_port(), free_port()
        main = (f"daemon off;\nworker_processes {workers};" if workers else
                "daemon off;\nmaster_process off;")
        text = server_conf(logs=tmp_path, listen=f"127.0.0.1:{port}", main=main,
                           locations=LOCATIONS.format(websocket=websocket),
                           http=PUBLISHER.format(pub_port=pub_port) + http)
        host = Host(run_nginxws(text), port, tmp_path)
        host.pub_port = pub_port
        if workers:
            host.wait_log(r"accepts pushes on", count=workers)
        started.append(host)
        return host

    yield start
    for host in started:
        host.assert_no_traceback()


def receive_all(ws, count: int) -> list[str]:
    return [ws.recv(timeout=TIMEOUT) for _ in range(count)]


# -- fan-out over workers ----------------------------------------------------------


def test_subscribers_on_four_workers_get_every_message_once_in_order(start_host):
    host = start_host(workers=4)
    with ExitStack() as stack:
        by_worker: dict[int, list] = {}
        for _ in range(200):  # bounded: until every worker holds two subscribers
            ws = stack.enter_context(host.ws("/chat?room=lobby"))
            port = int(push_urls(ws.recv(timeout=TIMEOUT))[0]["port"])
            by_worker.setdefault(port, []).append(ws)
            if len(by_worker) == 4 and all(len(v) >= 2 for v in by_worker.values()):
                break
        assert len(by_worker) == 4, "the clients did not spread over the four workers"
        subscribers = [ws for group in by_worker.values() for ws in group]
        with httpx.Client(timeout=TIMEOUT) as client:  # one publisher connection
            for n in range(50):
                answer = host.publish("lobby", f"message {n}", client)
                assert answer.status_code == 202
                assert answer.json()["channel"] == "lobby"
            assert host.publish("news", b"\x00\x01", client, binary=True).status_code == 202
        for ws in subscribers:
            assert receive_all(ws, 50) == [f"message {n}" for n in range(50)]
            assert ws.recv(timeout=TIMEOUT) == b"\x00\x01"  # the constant channel, binary
        # Once: nothing more arrives.
        for ws in subscribers:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)


def test_the_answer_counts_the_subscribers_of_the_worker_that_took_the_publish(start_host):
    host = start_host()
    with host.ws("/sub/count") as a, host.ws("/sub/count") as b:
        answer = host.publish("count", "hi")
        assert answer.status_code == 202
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"channel": "count", "local_subscribers": 2}
        assert a.recv(timeout=TIMEOUT) == b.recv(timeout=TIMEOUT) == "hi"
    assert host.publish("nobody-here", "x").json() == {"channel": "nobody-here", "local_subscribers": 0}


# -- which channels a client joins -----------------------------------------------------


def test_variables_and_regex_captures_pick_the_channels(start_host):
    host = start_host()
    with ExitStack() as stack:
        numbered = stack.enter_context(host.ws("/sub/alpha"))
        named = stack.enter_context(host.ws("/named/beta"))
        named.recv(timeout=TIMEOUT)  # welcome
        header = stack.enter_context(host.ws("/hdr", additional_headers={"X-Room": "gamma", "Cookie": "a=1; room=delta"}))
        header.recv(timeout=TIMEOUT)
        chat = stack.enter_context(host.ws("/chat?room=epsilon&x=1"))
        chat.recv(timeout=TIMEOUT)
        empty = stack.enter_context(host.ws("/chat"))  # $arg_room empty: only "news"
        empty.recv(timeout=TIMEOUT)
        for channel in ("alpha", "room-beta", "gamma", "delta", "epsilon", "news"):
            assert host.publish(channel, f"to {channel}").status_code == 202
        assert numbered.recv(timeout=TIMEOUT) == "to alpha"
        assert named.recv(timeout=TIMEOUT) == "to room-beta"
        assert receive_all(header, 2) == ["to gamma", "to delta"]
        assert receive_all(chat, 2) == ["to epsilon", "to news"]
        assert empty.recv(timeout=TIMEOUT) == "to news"
        for ws in (numbered, named, header, chat, empty):
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)
        # The regex publish location takes its channel from the path.
        assert host.publish("", "by path", path="/pub/alpha").status_code == 202
        assert numbered.recv(timeout=TIMEOUT) == "by path"


@pytest.mark.parametrize("path", ["/chat?room=bad%20name", "/chat?room=" + "x" * 129, "/chat?room=%2e%2e"])
def test_a_channel_name_that_breaks_the_rule_refuses_the_handshake(start_host, path):
    host = start_host()
    with pytest.raises(Exception) as refused:
        with host.ws(path):
            pass
    assert getattr(getattr(refused.value, "response", None), "status_code", None) == 400, refused.value


def test_subscribe_and_unsubscribe_through_the_push_url(start_host):
    host = start_host()
    with host.ws("/chat?room=first") as ws:
        url = push_urls(ws.recv(timeout=TIMEOUT))[0]
        push = f"http://{url['address']}{url['path']}"
        auth = (url["id"], "")
        assert httpx.post(push, params={"subscribe": "second"}, auth=auth).status_code == 204
        assert httpx.post(push, params={"unsubscribe": "first"}, auth=auth).status_code == 204
        host.publish("first", "not for you")
        host.publish("second", "for you")
        assert ws.recv(timeout=TIMEOUT) == "for you"
        # Several changes in one request, in order; subscribing twice is one membership.
        answer = httpx.post(f"{push}?subscribe=third&subscribe=third&unsubscribe=second", auth=auth)
        assert answer.status_code == 204
        host.publish("second", "gone")
        host.publish("third", "once")
        assert ws.recv(timeout=TIMEOUT) == "once"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.2)
        assert httpx.post(push, params={"subscribe": "bad name"}, auth=auth).status_code == 400
        assert httpx.post(push, params={"subscribe": "x"}, content="body", auth=auth).status_code == 400
    # The client has gone.
    assert poll(lambda: httpx.post(push, params={"subscribe": "x"}, auth=auth).status_code == 404, TIMEOUT)


# -- bad requests to the publisher ----------------------------------------------------------


def test_bad_publishes_get_their_status(start_host):
    host = start_host()
    base = f"http://127.0.0.1:{host.pub_port}"
    assert httpx.get(f"{base}/pub?channel=a").status_code == 405
    assert httpx.get(f"{base}/pub?channel=a").headers["allow"] == "POST"
    assert httpx.put(f"{base}/pub?channel=a", content="x").status_code == 405
    assert httpx.post(f"{base}/pub", content="x").status_code == 400  # no channel
    assert httpx.post(f"{base}/pub?channel=bad%20name", content="x").status_code == 400
    assert httpx.post(f"{base}/pub?channel=a", content=b"\xff\xfe").status_code == 400  # text, not UTF-8
    assert httpx.post(f"{base}/small?channel=a", content="x" * 11).status_code == 413
    chunked = httpx.post(f"{base}/small?channel=a", content=iter([b"x" * 6, b"y" * 6]))
    assert chunked.status_code == 413
    assert httpx.post(f"{base}/small?channel=a", content="x" * 10).status_code == 202
    # The worker goes on serving everyone.
    with host.ws("/sub/a") as ws:
        assert host.publish("a", "still here").status_code == 202
        assert ws.recv(timeout=TIMEOUT) == "still here"


# -- reload ----------------------------------------------------------------------------


def test_publishes_during_and_after_a_reload_reach_old_and_new_subscribers(start_host):
    host = start_host(workers=2)
    with ExitStack() as stack:
        old = [stack.enter_context(host.ws("/sub/r")) for _ in range(6)]
        assert host.publish("r", "before").status_code == 202
        for ws in old:
            assert ws.recv(timeout=TIMEOUT) == "before"
        os.kill(host.pid, signal.SIGHUP)
        sent = 0
        with httpx.Client(timeout=TIMEOUT) as client:
            # Publish while the new generation starts and the old one drains.
            deadline = time.monotonic() + TIMEOUT
            while len(re.findall(r"accepts pushes on", host.error_log())) < 4 and time.monotonic() < deadline:
                assert host.publish("r", f"during {sent}", client).status_code == 202
                sent += 1
            assert len(re.findall(r"accepts pushes on", host.error_log())) >= 4, "the reload did not finish"
            new = [stack.enter_context(host.ws("/sub/r")) for _ in range(6)]
            for n in range(5):
                assert host.publish("r", f"after {n}", client).status_code == 202
        expected = [f"during {n}" for n in range(sent)] + [f"after {n}" for n in range(5)]
        for ws in old:
            assert receive_all(ws, sent + 5) == expected
        for ws in new:
            # A publish answered before the client joined may still be on its
            # way to the client's worker: a new subscriber gets a tail of the
            # sequence, in order, and everything published after it joined.
            got = [ws.recv(timeout=TIMEOUT)]
            while got[-1] != "after 4":
                got.append(ws.recv(timeout=TIMEOUT))
            assert got == expected[-len(got):]


def test_a_respawned_workers_subscribers_are_served(start_host):
    host = start_host(workers=2)
    pids = [int(pid) for pid, _ in ACCEPTS.findall(host.error_log())]
    os.kill(pids[0], signal.SIGKILL)
    host.wait_log(r"accepts pushes on", count=3)
    with ExitStack() as stack:
        by_worker: dict[int, object] = {}
        for _ in range(100):
            ws = stack.enter_context(host.ws("/chat?room=respawn"))
            by_worker.setdefault(int(push_urls(ws.recv(timeout=TIMEOUT))[0]["port"]), ws)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2
        assert host.publish("respawn", "to both").status_code == 202
        for ws in by_worker.values():
            assert ws.recv(timeout=TIMEOUT) == "to both"


# -- a slow subscriber -----------------------------------------------------------------------


def test_a_slow_subscriber_is_closed_while_the_others_keep_up(start_host):
    host = start_host(websocket="push_queue=4")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(TIMEOUT)
    slow.connect(("127.0.0.1", host.port))
    slow.sendall(b"GET /chat?room=flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert slow.recv(12) == b"HTTP/1.1 101"  # then it reads no more
    message = "m" * 65536
    with host.ws("/chat?room=flood", max_size=None) as fast, httpx.Client(timeout=TIMEOUT) as client:
        fast.recv(timeout=TIMEOUT)  # welcome
        # 200 x 64 KiB: more than the kernel buffers toward the slow client hold.
        for n in range(200):
            assert host.publish("flood", f"{n:03d}{message}", client).status_code == 202
            assert fast.recv(timeout=TIMEOUT)[:3] == f"{n:03d}"
    host.wait_log(r'\[warn\] .*closed 1 slow subscriber\(s\) of channel "flood" with 1008')
    # The slow client is let go: once it reads, it finds the close frame,
    # and the connection ends (it never answers the close).
    tail = b""
    deadline = time.monotonic() + 3 * TIMEOUT
    while time.monotonic() < deadline:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        tail = (tail + chunk)[-64:]
    else:
        pytest.fail("the slow subscriber's connection did not end")
    slow.close()
    assert b"\x88" in tail and b"\x03\xf0slow subscriber" in tail  # close frame, 1008


# -- channels that come and go ------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read())[1])


def churn(address: tuple[str, int], path: str, push_id: str, start: int, count: int) -> None:
    """Move one client through ``count`` channels (join the next, leave the last),
    pipelining the requests on one connection."""
    import base64

    auth = base64.b64encode(f"{push_id}:".encode()).decode()
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        batch = 500
        for first in range(start, start + count, batch):
            requests = "".join(
                f"POST {path}?unsubscribe=churn-{i - 1}&subscribe=churn-{i} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Basic {auth}\r\nContent-Length: 0\r\n\r\n"
                for i in range(first, min(first + batch, start + count))
            )
            sock.sendall(requests.encode())
            answers = b""
            expected = min(batch, start + count - first)
            while answers.count(b"HTTP/1.1 204") < expected:
                chunk = sock.recv(65536)
                assert chunk, "the push listener closed the connection"
                answers += chunk
            assert answers.count(b"HTTP/1.1 ") == expected, answers[:200]


def test_100000_channels_coming_and_going_leave_nothing_behind(start_host):
    host = start_host()
    with host.ws("/chat") as ws:
        url = push_urls(ws.recv(timeout=TIMEOUT))[0]
        address = (url["host"], int(url["port"]))
        churn(address, url["path"], url["id"], 1, 20_000)
        warm = rss_kib(host.pid)
        churn(address, url["path"], url["id"], 20_001, 80_000)
        grown = rss_kib(host.pid) - warm
        # Only the last channel is held: a publish to it arrives, to an old one not.
        host.publish("churn-50000", "old")
        host.publish("churn-100000", "current")
        assert ws.recv(timeout=TIMEOUT) == "current"
        news = host.publish("news", "x").json()
        assert news["local_subscribers"] == 1
    assert grown < 2048, f"RSS grew by {grown} KiB over 80,000 channel changes"
