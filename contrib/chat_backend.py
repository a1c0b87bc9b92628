"""A complete backend for nginxws: a chat room behind auth_request and websocket_*_request.

Standard library only.  It answers the four subrequests of the configuration
in docs/backend.md and talks back to nginxws through its push URLs and its
publish location:

    GET  /auth               who is it?  200 with X-User, 401 with WWW-Authenticate, 403
    POST /events/connect     a session started: greet it on its push URL, tell the room
    POST /events/disconnect  a session ended: tell the room
    POST /events/message     a client said something: publish it to the room, answer the sender

A client proves who it is with a token, in the ``token`` cookie or in the
query string of its WebSocket URL (``ws://HOST/chat?token=alice-token``; the
configuration passes the original URI in ``X-Original-URI``).  Run it with::

    python contrib/chat_backend.py --listen 127.0.0.1:9000 --publish http://127.0.0.1:8081/pub

The end-to-end tests run this file (tests/e2e/test_backend.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
import urllib.request
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKENS = {"alice-token": "alice", "bob-token": "bob", "mallory-token": "mallory"}
BANNED = {"mallory"}
ROOM = "room"  # the channel every client joins (websocket_channels room user:$user)
TIMEOUT = 5.0  # seconds for a request to nginxws


class Chat:
    """Who is online, and the way back to nginxws."""

    def __init__(self, publish_url: str) -> None:
        self.publish_url = publish_url
        self.lock = threading.Lock()
        self.online: dict[str, tuple[str, str]] = {}  # push ID -> (user, push URL)

    def user_of(self, headers, original_uri: str) -> str | None:
        """The user a request's token names (cookie first, then ?token=), if any."""
        cookie = SimpleCookie(headers.get("Cookie", ""))
        token = cookie["token"].value if "token" in cookie else None
        if token is None:
            token = parse_qs(urlsplit(original_uri).query).get("token", [None])[0]
        return TOKENS.get(token or "")

    def publish(self, text: str, channel: str = ROOM) -> int:
        """Send ``text`` to every subscriber of ``channel``; how many of the worker's got it."""
        request = urllib.request.Request(f"{self.publish_url}?channel={channel}", data=text.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return json.load(answer)["local_subscribers"]

    def push(self, push_url: str, text: str) -> int:
        """Send ``text`` to one client through its push URL (its ID is the Basic-auth user)."""
        parts = urlsplit(push_url)
        credentials = base64.b64encode(f"{parts.username}:".encode()).decode()
        url = f"http://{parts.hostname}:{parts.port}{parts.path}"
        request = urllib.request.Request(url, data=text.encode(), method="POST",
                                         headers={"Authorization": f"Basic {credentials}"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: nginxws keeps a pool of connections to its backend
    chat: Chat  # set by make_server
    quiet = False

    def do_GET(self) -> None:
        if self.path != "/auth":
            return self.answer(404)
        user = self.chat.user_of(self.headers, self.headers.get("X-Original-URI", ""))
        if user is None:
            return self.answer(401, headers={"WWW-Authenticate": 'Bearer realm="chat"'})
        if user in BANNED:
            return self.answer(403)
        self.answer(200, headers={"X-User": user})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/events/connect":
            event = json.loads(body)
            user = self.headers["X-User"]  # proxy_set_header X-User $user: what auth_request_set stored
            push_url = event["push_urls"][0]
            with self.chat.lock:
                self.chat.online[event["id"]] = (user, push_url)
                count = len(self.chat.online)
            self.answer(204)
            self.chat.push(push_url, f"welcome, {user} ({count} online)")
            self.chat.publish(f"{user} joined")
        elif self.path == "/events/disconnect":
            event = json.loads(body)
            with self.chat.lock:
                user, _ = self.chat.online.pop(event["id"], (self.headers["X-User"], ""))
            self.answer(204)
            self.chat.publish(f"{user} left")
        elif self.path == "/events/message":
            user = self.headers["X-User"]
            if self.headers["X-Message-Type"] != "text":
                return self.answer(200, b'{"error": "text only"}', {"Content-Type": "application/json"})
            reached = self.chat.publish(f"{user}: {body.decode()}")
            answer = json.dumps({"ok": True, "reached": reached}).encode()
            self.answer(200, answer, {"Content-Type": "application/json"})
        else:
            self.answer(404)

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(listen: tuple[str, int], publish_url: str, *, quiet: bool = False) -> ThreadingHTTPServer:
    """The backend, bound to ``listen`` (port 0: any), not yet serving."""
    handler = type("ChatHandler", (Handler,), {"chat": Chat(publish_url), "quiet": quiet})
    server = ThreadingHTTPServer(listen, handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9000", help="address:port to listen on")
    parser.add_argument("--publish", default="http://127.0.0.1:8081/pub", help="nginxws's publish location")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    server = make_server((host, int(port)), args.publish)
    print(f"chat backend on http://{args.listen}, publishing to {args.publish}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
