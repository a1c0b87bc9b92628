"""The asyncio servers bench/floors.py compares trio with: the same work on `asyncio.Protocol`.

    python bench/floors_asyncio.py KIND LOOP        # KIND: push | handshake; LOOP: uvloop | asyncio

The same contract as floors_trio.py (``ready PORT...``, ``cpu`` on stdin, exit on stdin's EOF)
and the same bytes: `push` is floors_trio's push-direct (a pusher's request is delivered with one
`transport.write` of the frame to the client's transport, then answered 204), `handshake` its
handshake-raw (fixed 101 + one text frame, close on the client's EOF). No task or future per
connection or push: callbacks only, as the websockets peer's push listener does.
"""

from __future__ import annotations

import asyncio
import os
import sys

from floors_wire import (
    BODY_LENGTH,
    END_OF_HEAD,
    FRAME_HEADER,
    HOST,
    RESPONSE_101,
    RESPONSE_204,
    WELCOME_FRAME,
    announce,
    answer_control,
    body_client,
    client_index,
)

BACKLOG = 4096


class Connection(asyncio.Protocol):
    """What every connection keeps: its transport."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


class Pusher(Connection):
    """A keep-alive push connection."""

    def __init__(self, clients: dict[int, asyncio.Transport]) -> None:
        self.clients = clients
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(END_OF_HEAD)
            stop = end + len(END_OF_HEAD) + BODY_LENGTH
            if end < 0 or len(buffer) < stop:
                break
            body = buffer[stop - BODY_LENGTH:stop]
            buffer = buffer[stop:]
            self.clients[body_client(body)].write(FRAME_HEADER + body)
            self.transport.write(RESPONSE_204)
        self.buffer = buffer


class Upgraded(Connection):
    """A connection that opens with an upgrade request: `upgraded` once its head is read; what
    follows is ignored."""

    head: bytes | None = b""

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return
        self.head += data
        if END_OF_HEAD in self.head:
            self.upgraded(self.head)
            self.head = None

    def upgraded(self, head: bytes) -> None:
        raise NotImplementedError


class Client(Upgraded):
    """A push client: fixed 101 after its upgrade request, then registered until it closes."""

    def __init__(self, clients: dict[int, asyncio.Transport]) -> None:
        self.clients = clients

    def upgraded(self, head: bytes) -> None:
        self.clients[client_index(head)] = self.transport
        self.transport.write(RESPONSE_101)


class Handshake(Upgraded):
    """One handshake cycle: 101 + welcome after the upgrade request, close on the client's EOF."""

    def upgraded(self, head: bytes) -> None:
        self.transport.write(RESPONSE_101 + WELCOME_FRAME)

    def eof_received(self) -> None:
        return None


async def main(kind: str) -> None:
    loop = asyncio.get_running_loop()
    gone = loop.create_future()

    def on_control() -> None:
        if not answer_control(os.read(0, 1024)) and not gone.done():
            gone.set_result(None)

    if kind == "handshake":
        server = await loop.create_server(Handshake, HOST, 0, backlog=BACKLOG)
        servers = [server]
    else:
        clients: dict[int, asyncio.Transport] = {}
        servers = [
            await loop.create_server(lambda: Client(clients), HOST, 0, backlog=BACKLOG),
            await loop.create_server(lambda: Pusher(clients), HOST, 0, backlog=BACKLOG),
        ]
    announce(*(server.sockets[0].getsockname()[1] for server in servers))
    loop.add_reader(0, on_control)
    await gone


if __name__ == "__main__":
    if sys.argv[2] == "uvloop":
        import uvloop

        uvloop.run(main(sys.argv[1]))
    else:
        asyncio.run(main(sys.argv[1]))
