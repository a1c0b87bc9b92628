"""The fixed bytes of bench/floors.py's scenarios, and the control line every child speaks.

Shared by the servers (floors_trio.py, floors_asyncio.py) and the load generator
(floors_load.py); standard library only, so any of the interpreters floors.py uses can import it.

A "client" is a TCP connection that opens with a WebSocket upgrade request to ``/ws/NNNNNN`` (its
index) and then only reads; a "pusher" is a keep-alive HTTP/1.1 connection that sends
`push_request` and waits for `RESPONSE_204`, one request in flight. The push body is
``NNNNNN SSSSS`` (client index, sequence number): exactly `BODY_LENGTH` bytes, so a server finds
a request's end with a plain `find` and needs no HTTP parsing. Every server answers on stdin's
``cpu`` line with its own CPU seconds so far (utime + stime of the whole process). The fixed
answers name nginxws's version in their ``Server`` header, as nginxws's answers do: the
installed one, read at run time; floors.py hands it to its children in `VERSION_VARIABLE`, so
a child on an interpreter without nginxws (the uvloop one) sends the same bytes.
"""

from __future__ import annotations

import os
import resource
from importlib import metadata


def _installed_nginxws() -> str:
    try:
        return metadata.version("nginxws")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION_VARIABLE = "BENCH_NGINXWS_VERSION"
NGINXWS_VERSION = os.environ.get(VERSION_VARIABLE) or _installed_nginxws()
SERVER = b"nginxws/" + NGINXWS_VERSION.encode()
DATE = b"Sun, 29 Nov 2026 23:28:00 GMT"

HOST = "127.0.0.1"

BODY_LENGTH = 12
END_OF_HEAD = b"\r\n\r\n"
FRAME_HEADER = bytes((0x81, BODY_LENGTH))
"""A server frame: FIN + text, unmasked, 12-byte payload; the push body is the payload."""
FRAME_LENGTH = len(FRAME_HEADER) + BODY_LENGTH

RESPONSE_204 = b"HTTP/1.1 204 No Content\r\nServer: %s\r\nDate: %s\r\n\r\n" % (SERVER, DATE)
RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Server: %s\r\n"
    b"\r\n" % SERVER
)
WELCOME = "http://AAAAAAAAAAAAAAAA@127.0.0.1:8080/ws"
"""The handshake scenario's one message, as long as nginxws's welcome (the push URL)."""
WELCOME_FRAME = bytes((0x81, len(WELCOME))) + WELCOME.encode()

CLIENT_CLOSE_FRAME = bytes((0x88, 0x80)) + b"\x00\x00\x00\x00"
"""A masked close frame without payload (the zero mask keeps it fixed)."""


def push_request(port: int, client: int, seq: int) -> bytes:
    """One push: about 150 bytes, like a backend's POST to nginxws's push URL."""
    return (
        b"POST /ws HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Authorization: Basic QUFBQUFBQUFBQUFBQUFBQTo=\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 12\r\n"
        b"\r\n"
        b"%06d %05d" % (port, client, seq % 100_000)
    )


def upgrade_request(port: int, client: int) -> bytes:
    """A client's WebSocket handshake; the path names the client's index."""
    return (
        b"GET /ws/%06d HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n" % (client, port)
    )


def client_index(head: bytes) -> int:
    """The index in an upgrade request's path (``GET /ws/NNNNNN ...``)."""
    return int(head[8:14])


def body_client(body: bytes) -> int:
    """The client a push body names."""
    return int(body[:6])


def cpu_seconds() -> float:
    """This process's CPU so far: user + system, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def answer_control(data: bytes) -> bool:
    """Answer the orchestrator's control lines read from stdin; False once it is gone (EOF)."""
    if not data:
        return False
    for _line in data.split(b"\n")[:-1]:
        os.write(1, b"cpu %.6f\n" % cpu_seconds())
    return True


def announce(*ports: int) -> None:
    """Tell the orchestrator the server is listening, and where."""
    os.write(1, b"ready " + b" ".join(b"%d" % port for port in ports) + b"\n")
