"""The Python peer for the benchmarks: nginxws's protocol served by the `websockets` library.

One asyncio process (uvloop when installed) that speaks exactly what nginxws speaks, so the
harness drives both with the same client:

- a client connects to ``ws://HOST:PORT/ws``; right after the handshake it receives one text
  message, its push URL ``http://ID@HOST:PUSHPORT/ws``;
- a pusher POSTs the message body to ``http://HOST:PUSHPORT/ws`` with
  ``Authorization: Basic base64(ID + ":")``; the answer is 204 once the frame is written to the
  client (400 no or bad credentials, 404 unknown ID; 405 not POST, 411 chunked, 413 too large
  and 431 head too large also close the connection);
  a UTF-8 body becomes a text frame, anything else a binary frame;
- text and binary messages from a client are echoed back.

It is meant to be a strong, fair peer, so each choice is the fast one a careful engineer would
make with the library's public API:
- pushes go out through ``websockets.asyncio.server.broadcast``, the library's synchronous
  send (no task or future per push);
- the push listener is an ``asyncio.Protocol`` with a small HTTP/1.1 parser: keep-alive and
  pipelining, every complete request in one read handled at once and answered in one write;
- compression is off, as nginxws's by default; ``--deflate`` turns on permessage-deflate
  configured as nginxws's ``deflate=on``: zlib's defaults at 15 window bits and no context
  takeover either way, or with ``--deflate-context-takeover`` as
  ``deflate_no_context_takeover=off`` (not the library's ``compression="deflate"``, whose
  smaller window and memLevel would be another trade-off than nginxws's);
- the keepalive ping matches nginxws's default ``pingintvl``/``idleintvl`` (300 s / 360 s).

- ``--certificate FILE --key FILE`` serve ``wss://`` with that certificate (TLS from the
  standard library, as nginxws's; the push listener stays plain), for ``bench/tls_handshake.py``.

Usage: ``python websockets_server.py --port PORT [--host 127.0.0.1] [--no-uvloop]
[--deflate [--deflate-context-takeover]] [--certificate FILE --key FILE]``.
SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import itertools
import signal
import ssl
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response

MAX_HEAD = 8192
"""Largest request line plus headers the push listener reads, as nginx's default buffer."""

MAX_BODY = 1 << 20
"""Largest push body, the same 1 MiB as the WebSocket side's `max_size`."""

PING_INTERVAL = 300.0
PING_TIMEOUT = 60.0

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def _error(status: int, reason: str, close: bool) -> bytes:
    """An error answer; with `close` the listener closes the connection after it."""
    connection = "Connection: close\r\n" if close else ""
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n{connection}\r\n".encode()


BAD_CREDENTIALS = _error(400, "Bad Request", close=False)
UNKNOWN_ID = _error(404, "Not Found", close=False)
BAD_REQUEST = _error(400, "Bad Request", close=True)
NOT_FOUND = _error(404, "Not Found", close=True)
NOT_ALLOWED = _error(405, "Not Allowed", close=True)
LENGTH_REQUIRED = _error(411, "Length Required", close=True)
TOO_LARGE = _error(413, "Request Entity Too Large", close=True)
HEAD_TOO_LARGE = _error(431, "Request Header Fields Too Large", close=True)
KEEPS_ALIVE = frozenset((NO_CONTENT, BAD_CREDENTIALS, UNKNOWN_ID))


class Registry:
    """Push IDs to open connections; an ID is never reused within a run."""

    def __init__(self) -> None:
        self.sessions: dict[str, ServerConnection] = {}
        self._ids = itertools.count(1)

    def add(self, connection: ServerConnection) -> str:
        push_id = format(next(self._ids), "x")
        self.sessions[push_id] = connection
        return push_id

    def push(self, authorization: bytes | None, body: bytes) -> bytes:
        """Deliver `body` to the session named by a Basic `authorization`; the HTTP answer."""
        if authorization is None or authorization[:6].lower() != b"basic ":
            return BAD_CREDENTIALS
        try:
            user = base64.b64decode(authorization[6:].strip(), validate=True)
        except binascii.Error:
            return BAD_CREDENTIALS
        push_id, colon, _password = user.partition(b":")
        if not colon:
            return BAD_CREDENTIALS
        connection = self.sessions.get(push_id.decode("latin-1"))
        if connection is None:
            return UNKNOWN_ID
        broadcast((connection,), body, text=_is_text(body))
        return NO_CONTENT


def _is_text(body: bytes) -> bool:
    if body.isascii():
        return True
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


class PushProtocol(asyncio.Protocol):
    """One push connection: HTTP/1.1 requests in, 204s out, pipelined and kept alive."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        answers: list[bytes] = []
        start = 0
        close = False
        while True:
            head_end = buffer.find(b"\r\n\r\n", start)
            if head_end < 0:
                if len(buffer) - start > MAX_HEAD:
                    answers.append(HEAD_TOO_LARGE)
                    close = True
                break
            answer, body_end, keep_alive = self._request(buffer, start, head_end)
            if body_end < 0:
                break
            answers.append(answer)
            start = body_end
            if not keep_alive:
                close = True
                break
        self.buffer = buffer[start:] if not close else b""
        assert self.transport is not None
        if answers:
            self.transport.write(answers[0] if len(answers) == 1 else b"".join(answers))
        if close:
            self.transport.close()

    def _request(self, buffer: bytes, start: int, head_end: int) -> tuple[bytes, int, bool]:
        """Handle the request whose head spans `buffer[start:head_end]`.

        Returns the answer, where the request ends (-1: its body has not all arrived yet) and
        whether the connection stays open after it.
        """
        lines = buffer[start:head_end].split(b"\r\n")
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            return BAD_REQUEST, head_end + 4, False
        method, target, version = request_line
        keep_alive = version == b"HTTP/1.1"
        length = -1
        authorization = None
        for line in itertools.islice(lines, 1, None):
            name, colon, value = line.partition(b":")
            if not colon:
                return BAD_REQUEST, head_end + 4, False
            name = name.lower()
            if name == b"content-length":
                if length >= 0 or not value.strip().isdigit():
                    return BAD_REQUEST, head_end + 4, False
                length = int(value)
            elif name == b"authorization":
                authorization = value.strip()
            elif name == b"connection":
                token = value.strip().lower()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive":
                    keep_alive = True
            elif name == b"transfer-encoding":
                return LENGTH_REQUIRED, head_end + 4, False
        if length < 0:
            length = 0
        if length > MAX_BODY:
            return TOO_LARGE, head_end + 4, False
        body_end = head_end + 4 + length
        if len(buffer) < body_end:
            return b"", -1, keep_alive
        if method != b"POST":
            return NOT_ALLOWED, body_end, False
        if target.partition(b"?")[0] != b"/ws":
            return NOT_FOUND, body_end, False
        answer = self.registry.push(authorization, buffer[head_end + 4 : body_end])
        return answer, body_end, keep_alive and answer in KEEPS_ALIVE


def deflate_extensions(deflate: bool, context_takeover: bool) -> list[ServerExtensionFactory]:
    """permessage-deflate as nginxws's ``deflate=on`` offers it, or nothing."""
    if not deflate:
        return []
    no_context_takeover = not context_takeover
    return [
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=no_context_takeover,
            client_no_context_takeover=no_context_takeover,
        )
    ]


async def main(host: str, port: int, extensions: list[ServerExtensionFactory],
               tls: ssl.SSLContext | None = None) -> None:
    registry = Registry()
    loop = asyncio.get_running_loop()
    push_server = await loop.create_server(lambda: PushProtocol(registry), host, 0)
    push_port = push_server.sockets[0].getsockname()[1]
    url_format = f"http://{{}}@{host}:{push_port}/ws"

    def only_ws(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != "/ws":
            return connection.respond(404, "Not Found\n")
        return None

    async def session(connection: ServerConnection) -> None:
        push_id = registry.add(connection)
        try:
            await connection.send(url_format.format(push_id))
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass  # a client that goes away without a closing handshake is no error here
        finally:
            del registry.sessions[push_id]

    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(
        session,
        host,
        port,
        compression=None,
        extensions=extensions,
        process_request=only_ws,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        backlog=4096,
        ssl=tls,
    ):
        await stop
    push_server.close()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")
    parser.add_argument("--deflate", action="store_true", help="accept permessage-deflate")
    parser.add_argument(
        "--deflate-context-takeover", action="store_true",
        help="with --deflate: keep the compression context between messages",
    )
    parser.add_argument("--certificate", help="serve wss:// with this PEM certificate (and --key)")
    parser.add_argument("--key", help="the --certificate's PEM key")
    args = parser.parse_args()
    extensions = deflate_extensions(args.deflate, args.deflate_context_takeover)
    tls = None
    if args.certificate:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.certificate, args.key)
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            print("websockets_server: uvloop not installed, using asyncio", file=sys.stderr)
        else:
            uvloop.run(main(args.host, args.port, extensions, tls))
            return
    asyncio.run(main(args.host, args.port, extensions, tls))


if __name__ == "__main__":
    run()
