"""The pieces of bench/floors.py measured without I/O: h11, wsproto and trio's primitives.

Each figure is the median, over `batches` batches of `ops` operations after one warm-up batch,
of the batch's `time.perf_counter` span divided by `ops`, in µs. Nothing else runs in the
process meanwhile, so wall time here is the process's CPU time, except when the machine takes
the core away; the median drops the batches where that happened.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import h11
import trio
import trio.testing
from floors_wire import DATE, SERVER, push_request
from wsproto import Connection, ConnectionType
from wsproto.events import TextMessage

REQUEST = push_request(8080, 1, 1)
CONTENT_LENGTH = (b"Content-Length", b"0")
BODY = "000001 00001"

H11_PARSE = (
    "h11: parse one push request (receive_data, next_event to EndOfMessage, start_next_cycle)"
)
H11_204 = "h11: build a 204 with Server, Date (Response + EndOfMessage)"
H11_204_3 = "h11: build a 204 with Server, Date, Content-Length"
WSPROTO_FRAME = "wsproto: build one 12-byte text frame (Connection.send(TextMessage))"
CHECKPOINT = "trio: `await trio.lowlevel.checkpoint()`"
EVENT_ROUND_TRIP = "trio: Event set → wait round trip between two tasks (two task switches)"
MOVE_ON_AFTER = "trio: `with trio.move_on_after(…)` enter + exit"
CANCEL_SCOPE = "trio: `with trio.CancelScope()` enter + exit, no deadline"
NURSERY = "trio: `async with trio.open_nursery()` open + close, no task"
START_SOON = "trio: `nursery.start_soon` of a trivial task (spawn, run, reap)"

LABELS = (
    H11_PARSE, H11_204, H11_204_3, WSPROTO_FRAME,
    CHECKPOINT, EVENT_ROUND_TRIP, MOVE_ON_AFTER, CANCEL_SCOPE, NURSERY, START_SOON,
)


def _median_us(spans: list[float], ops: int) -> float:
    return statistics.median(spans) / ops * 1e6


def h11_cycles(ops: int, headers: list[tuple[bytes, bytes]]) -> tuple[float, float]:
    """Seconds spent (parsing + next cycle, answering) over `ops` request/204 cycles."""
    connection = h11.Connection(h11.SERVER)
    clock = time.perf_counter
    parsing = answering = 0.0
    for _ in range(ops):
        start = clock()
        connection.receive_data(REQUEST)
        while type(connection.next_event()) is not h11.EndOfMessage:
            pass
        parsed = clock()
        connection.send(h11.Response(status_code=204, headers=headers))
        connection.send(h11.EndOfMessage())
        answered = clock()
        connection.start_next_cycle()
        parsing += (parsed - start) + (clock() - answered)
        answering += answered - parsed
    return parsing, answering


def wsproto_frames(ops: int) -> float:
    connection = Connection(ConnectionType.SERVER)
    message = TextMessage(data=BODY)
    start = time.perf_counter()
    for _ in range(ops):
        connection.send(message)
    return time.perf_counter() - start


async def checkpoints(ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        await trio.lowlevel.checkpoint()
    return time.perf_counter() - start


class _PingPong:
    __slots__ = ("ping", "pong")

    def __init__(self) -> None:
        self.ping = trio.Event()
        self.pong = trio.Event()


async def _ponger(pair: _PingPong) -> None:
    while True:
        await pair.ping.wait()
        pair.ping = trio.Event()
        pair.pong.set()


async def event_round_trips(ops: int) -> float:
    pair = _PingPong()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_ponger, pair)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for _ in range(ops):
            pair.pong = trio.Event()
            pair.ping.set()
            await pair.pong.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


async def move_on_afters(ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        with trio.move_on_after(60):  # noqa: ASYNC100 (the scope itself is measured)
            pass
    return time.perf_counter() - start


async def cancel_scopes(ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        with trio.CancelScope():  # noqa: ASYNC100 (the scope itself is measured)
            pass
    return time.perf_counter() - start


async def nurseries(ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        async with trio.open_nursery():
            pass
    return time.perf_counter() - start


async def _nothing() -> None:
    pass


async def spawns(ops: int) -> float:
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(ops):
            nursery.start_soon(_nothing)
    return time.perf_counter() - start


TRIO_PIECES: tuple[tuple[str, Callable[[int], Awaitable[float]]], ...] = (
    (CHECKPOINT, checkpoints),
    (EVENT_ROUND_TRIP, event_round_trips),
    (MOVE_ON_AFTER, move_on_afters),
    (CANCEL_SCOPE, cancel_scopes),
    (NURSERY, nurseries),
    (START_SOON, spawns),
)


async def _trio_pieces(ops: int, batches: int) -> dict[str, float]:
    figures = {}
    for label, measure in TRIO_PIECES:
        await measure(ops)
        figures[label] = _median_us([await measure(ops) for _ in range(batches)], ops)
    return figures


def measure_all(ops: int, batches: int) -> dict[str, float]:
    """Every figure of this module, µs per operation, by label."""
    figures: dict[str, float] = {}
    for label, headers in (
        (H11_204, [(b"Server", SERVER), (b"Date", DATE)]),
        (H11_204_3, [(b"Server", SERVER), (b"Date", DATE), CONTENT_LENGTH]),
    ):
        h11_cycles(ops, headers)
        spans = [h11_cycles(ops, headers) for _ in range(batches)]
        if label == H11_204:
            figures[H11_PARSE] = _median_us([parsing for parsing, _ in spans], ops)
        figures[label] = _median_us([answering for _, answering in spans], ops)
    wsproto_frames(ops)
    figures[WSPROTO_FRAME] = _median_us([wsproto_frames(ops) for _ in range(batches)], ops)
    figures.update(trio.run(_trio_pieces, ops, batches))
    return figures
