"""The trio servers bench/floors.py measures: the push path and the handshake, layer by layer.

    python bench/floors_trio.py KIND

Each prints ``ready PORT...`` once listening, answers ``cpu`` lines on stdin with its own CPU
seconds (floors_wire.answer_control) and exits when stdin closes. One task per connection
(`trio.serve_tcp` / `trio_websocket.serve_websocket`); nothing else runs. KIND is one of:

push-echo        pushers only: read a request, write the 204; no client frame
push-direct      + the pusher's task writes the frame to the client's SocketStream itself
push-sender      the frame goes through a sender task per client, woken by a trio.Event
push-tw-direct   clients are trio-websocket connections; the pusher's task calls send_message
push-tw-sender   trio-websocket clients, sender task per client calling send_message
handshake-raw    read the upgrade request, write a fixed 101 + one text frame, read until EOF
handshake-tw     trio-websocket's serve_websocket: accept, send one message, wait for the close

Push servers listen on two ports, clients first (``ready CLIENT_PORT PUSH_PORT``). A pusher
finds each request's end with `bytes.find` (the body length is fixed) and writes the fixed 204.
trio-websocket is configured as nginxws configured it while it ran on trio-websocket (a
one-message queue, 4 KiB receive buffer).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from floors_wire import (
    BODY_LENGTH,
    END_OF_HEAD,
    FRAME_HEADER,
    HOST,
    RESPONSE_101,
    RESPONSE_204,
    WELCOME,
    WELCOME_FRAME,
    announce,
    answer_control,
    body_client,
    client_index,
)
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

RECEIVE_BUFFER = 4 * 1024
MESSAGE_QUEUE = 1
GONE = (trio.BrokenResourceError, trio.ClosedResourceError)

Deliver = Callable[[bytes], Awaitable[None]]


class Outbox:
    """What a client's sender task has to send, and the event that wakes it."""

    __slots__ = ("pending", "wake")

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.wake = trio.Event()

    def offer(self, item: bytes) -> None:
        self.pending.append(item)
        self.wake.set()

    async def taken(self) -> list[bytes]:
        await self.wake.wait()
        self.wake = trio.Event()
        items, self.pending = self.pending, []
        return items


async def read_head(stream: trio.SocketStream) -> bytes:
    """The bytes up to the end of an HTTP head (a client sends nothing after it)."""
    head = b""
    while END_OF_HEAD not in head:
        data = await stream.receive_some(4096)
        if not data:
            raise trio.BrokenResourceError("closed during the handshake")
        head += data
    return head


async def until_eof(stream: trio.SocketStream) -> None:
    async for _data in stream:
        pass


async def pusher(deliver: Deliver | None, stream: trio.SocketStream) -> None:
    """A keep-alive push connection: each request's body is delivered, then answered 204."""
    buffer = b""
    try:
        async with stream:
            async for data in stream:
                buffer += data
                while True:
                    end = buffer.find(END_OF_HEAD)
                    stop = end + len(END_OF_HEAD) + BODY_LENGTH
                    if end < 0 or len(buffer) < stop:
                        break
                    body = buffer[stop - BODY_LENGTH:stop]
                    buffer = buffer[stop:]
                    if deliver is not None:
                        await deliver(body)
                    await stream.send_all(RESPONSE_204)
    except GONE:
        pass


async def register(
    clients: dict, index: int, connection: object,
    sender: Callable[[Any, Outbox], Awaitable[None]] | None, until_gone: Callable[[], Awaitable[None]],
) -> None:
    """Hold `connection` in `clients` under `index` until `until_gone()` returns; with a
    `sender`, hold an Outbox there instead and run `sender(connection, outbox)` beside."""
    if sender is None:
        clients[index] = connection
        await until_gone()
        return
    outbox = Outbox()
    clients[index] = outbox
    async with trio.open_nursery() as tasks:
        tasks.start_soon(sender, connection, outbox)
        await until_gone()
        tasks.cancel_scope.cancel()


async def raw_client(clients: dict, with_sender: bool, stream: trio.SocketStream) -> None:
    """A client on a plain SocketStream: fixed 101, then registered until it closes."""
    try:
        async with stream:
            index = client_index(await read_head(stream))
            await stream.send_all(RESPONSE_101)
            sender = raw_sender if with_sender else None
            await register(clients, index, stream, sender, functools.partial(until_eof, stream))
    except GONE:
        pass


async def raw_sender(stream: trio.SocketStream, outbox: Outbox) -> None:
    while True:
        await stream.send_all(b"".join(await outbox.taken()))


async def ws_client(clients: dict, with_sender: bool, request: WebSocketRequest) -> None:
    """A client on trio-websocket: registered by its path's index until it closes."""
    ws = await request.accept()
    index = int(request.path.rsplit("/", 1)[1])
    try:
        sender = ws_sender if with_sender else None
        await register(clients, index, ws, sender, functools.partial(_until_closed, ws))
    except ConnectionClosed:
        pass


async def ws_sender(ws: WebSocketConnection, outbox: Outbox) -> None:
    while True:
        for body in await outbox.taken():
            await ws.send_message(body.decode())


async def _until_closed(ws: WebSocketConnection) -> None:
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed:
        pass


async def handshake_raw(stream: trio.SocketStream) -> None:
    try:
        async with stream:
            await read_head(stream)
            await stream.send_all(RESPONSE_101 + WELCOME_FRAME)
            await until_eof(stream)
    except GONE:
        pass


async def handshake_tw(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        await ws.send_message(WELCOME)
        await ws.get_message()
    except ConnectionClosed:
        pass


def deliverer(kind: str, clients: dict) -> Deliver | None:
    """How a pusher hands a body to its client, per KIND."""

    async def write_frame(body: bytes) -> None:
        await clients[body_client(body)].send_all(FRAME_HEADER + body)

    async def send_message(body: bytes) -> None:
        await clients[body_client(body)].send_message(body.decode())

    async def offer(body: bytes) -> None:
        clients[body_client(body)].offer(body)

    async def offer_frame(body: bytes) -> None:
        clients[body_client(body)].offer(FRAME_HEADER + body)

    return {
        "push-echo": None,
        "push-direct": write_frame,
        "push-sender": offer_frame,
        "push-tw-direct": send_message,
        "push-tw-sender": offer,
    }[kind]


async def serve_raw(nursery: trio.Nursery, handler: Callable) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host=HOST))
    return listeners[0].socket.getsockname()[1]


async def serve_ws(nursery: trio.Nursery, handler: Callable) -> int:
    server = await nursery.start(functools.partial(
        serve_websocket, handler, HOST, 0, ssl_context=None,
        message_queue_size=MESSAGE_QUEUE, receive_buffer_size=RECEIVE_BUFFER,
    ))
    return server.port


async def control() -> None:
    """Answer the orchestrator until it closes our stdin."""
    while True:
        await trio.lowlevel.wait_readable(0)
        if not answer_control(os.read(0, 1024)):
            return


async def main(kind: str) -> None:
    async with trio.open_nursery() as nursery:
        if kind == "handshake-raw":
            ports = [await serve_raw(nursery, handshake_raw)]
        elif kind == "handshake-tw":
            ports = [await serve_ws(nursery, handshake_tw)]
        else:
            clients: dict = {}
            with_sender = kind.endswith("-sender")
            if kind.startswith("push-tw-"):
                client_port = await serve_ws(
                    nursery, functools.partial(ws_client, clients, with_sender)
                )
            else:
                client_port = await serve_raw(
                    nursery, functools.partial(raw_client, clients, with_sender)
                )
            push_port = await serve_raw(
                nursery, functools.partial(pusher, deliverer(kind, clients))
            )
            ports = [client_port, push_port]
        announce(*ports)
        await control()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
