"""Counters and gauges in shared memory: each worker writes its own slot, a scrape sums them.

Theory of operation
-------------------
* One region per running nginxws, as nginx's statistics zone: the master
  creates it once (a ``memfd``) and hands it to every worker it starts by
  descriptor, with ``pass_fds``, as it hands the listen sockets; a worker
  maps it and closes the descriptor.  ``master_process off`` makes the same
  region for its one process.  The region outlives every worker: what a
  worker counted stays when it crashes.
* Every value is a 64-bit word (``memoryview.cast("q")``), 8-byte aligned.
  The layout is a header, a table of location names, then slots of
  ``SLOT_WORDS`` words: slot 0 is the master's, slot ``1 + s`` the worker
  whose (push) slot is ``s`` (``master.py``: a new worker takes the lowest
  slot no live worker holds; a crashed worker's replacement takes its slot).
* One writer per word, so no lock: the master writes the header, the
  location table and each slot's first words (pid, state, generation); the
  worker that holds a slot writes its counters and gauges, one ``+= 1`` per
  event in its single thread.  Aligned 8-byte stores and loads are
  single-copy atomic on x86-64 and arm64 (CPython's memoryview stores a
  "q" with one 8-byte ``memcpy``, which compilers emit as one move): a
  reader never sees half of a word.  It may see one word updated and the
  next not yet: a scrape is a sum of words read one after the other, as
  nginx's ``stub_status`` reads its counters.
* Counters only ever grow.  A slot's counters are never reset: a new holder
  of a slot (a respawned worker, or a later generation's) continues from
  what the previous holders counted, so a sum over every slot ever used
  (``slots_used``) neither loses nor counts twice what a dead worker
  counted.  Gauges (connections now, clients connected) belong to the live
  holder: a reader sums them over live workers only, and the master zeroes
  them when it has reaped the holder, before the slot is taken again.
* What an event's counter counts is incremented before the bytes that
  reveal the event leave (the 101, a push's answer, the TCP close of a
  session): a client that saw its answer and then scrapes sees it counted.

Everything here works on any buffer (a ``bytearray`` in the tests); only
``Region.create``/``Region.attach`` touch the OS.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nginxws.channels import SLOW_CLOSE_CODE
from nginxws.conf.model import Config, Listen, Location, Server, websocket_locations
from nginxws.session import Ending

MAGIC = 0x6E67696E78777331  # "nginxws1": a region this layout wrote
WORD = 8  # bytes
MAX_WORKER_SLOTS = 1024  # live workers, draining generations included; more are refused
MAX_LOCATIONS = 128  # distinct websocket locations over the master's life (the last entry is "other")
LOCATION_BYTES = 256  # one entry of the location table: a 2-byte length, then UTF-8
OTHER_LOCATION = "*\0*"  # the last entry: every location past the table's size

# -- the header (written by the master) ----------------------------------------
H_MAGIC = 0
H_SLOT_WORDS = 1
H_SLOTS_USED = 2  # slots ever used, master's included: a sum of counters covers them
H_GENERATION = 3  # the generation that serves (every one of its workers reported ready)
H_EXPECTED = 4  # its worker_processes
H_LOCATIONS = 5  # entries of the location table in use
HEADER_WORDS = 16
TABLE_OFFSET = HEADER_WORDS * WORD

# -- a slot's first words (written by the master) ------------------------------
PID, STATE, GENERATION = 0, 1, 2
FREE, STARTING, READY, DRAINING = 0, 1, 2, 3
STATE_NAMES = {STARTING: "starting", READY: "ready", DRAINING: "draining"}

# -- statuses: exact codes, then classes for any other -------------------------
STATUSES = (101, 200, 202, 204, 400, 401, 403, 404, 405, 408, 413, 414, 426, 431, 494, 499, 500, 501, 502, 503, 504)
STATUS_LABELS = tuple(str(code) for code in STATUSES) + ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
_OTHER_STATUS = len(STATUS_LABELS) - 1
STATUS_INDEX: tuple[int, ...] = tuple(
    STATUSES.index(code) if code in STATUSES
    else len(STATUSES) + code // 100 - 1 if 100 <= code <= 599
    else _OTHER_STATUS
    for code in range(1000)
)
"""A status code (0..999) -> its entry in a family of ``STATUS_LABELS``."""

# -- why a WebSocket session ended ---------------------------------------------
CLOSE_REASONS = ("client_close", "idle_timeout", "slow_reader", "slow_subscriber", "protocol_error",
                 "message_too_big", "upstream_error", "shutdown")
(CLIENT_CLOSE, IDLE_TIMEOUT, SLOW_READER, SLOW_SUBSCRIBER, PROTOCOL_ERROR, MESSAGE_TOO_BIG, UPSTREAM_ERROR,
 SHUTDOWN) = range(len(CLOSE_REASONS))
UPSTREAM_CLOSE_CODE = 1011  # RFC 6455's "internal error": wsconn closes a session whose message request failed


class _Words:
    """Hands out consecutive word indices of a slot, in the order written below."""

    def __init__(self, start: int) -> None:
        self.next = start

    def take(self, count: int = 1) -> int:
        first, self.next = self.next, self.next + count
        return first


_w = _Words(8)
# Counters (only ever grow).  Each is the index of its word in a slot; a
# family is the index of its first entry.
ACCEPTED = _w.take()  # connections accepted (listen and push ports)
HANDLED = _w.take()  # of them, handled (not closed at once for worker_connections)
REQUESTS = _w.take()  # HTTP requests of the front door (push requests are PUSHES)
RECEIVED_BYTES = _w.take()  # WebSocket sessions' bytes from clients, added when a session ends
SENT_BYTES = _w.take()  # WebSocket sessions' bytes to clients (the 101 on), added when a session ends
DELIVERIES = _w.take()  # channel messages written or queued to a subscriber
BACKLOG_DROPPED = _w.take()  # frames still in a session's backlog when it ended
RELOADS = _w.take()  # master: reloads that started a new generation
RELOADS_FAILED = _w.take()  # master: reloads that changed nothing
RESTARTS = _w.take()  # master: workers respawned after they died
HANDSHAKES = _w.take(len(STATUS_LABELS))  # requests to a websocket location, by answer
PUSHES = _w.take(len(STATUS_LABELS))  # push listener requests, by answer
PUBLISHES = _w.take(len(STATUS_LABELS))  # requests to a websocket_publish location, by answer
CLOSED = _w.take(len(CLOSE_REASONS))  # WebSocket sessions ended, by reason
COUNTERS = (8, _w.next)
# Gauges (the live holder's; zeroed when it is gone).  Every connection of a
# listen or push port is in exactly one of READING, WRITING and WAITING from
# its accept to its close, so nginx's "Active connections" is their sum.
# They are also the values of a connection's state (``frontdoor``,
# ``pushlistener``): ``counters[state] -= 1`` leaves it.
READING = _w.take()
WRITING = _w.take()
WAITING = _w.take()
CLIENTS = _w.take(MAX_LOCATIONS)  # WebSocket clients connected, by location (the table's index)
GAUGES = (READING, _w.next)
SLOT_WORDS = 256
assert _w.next <= SLOT_WORDS
del _w


def region_bytes(worker_slots: int = MAX_WORKER_SLOTS) -> int:
    """The size of a region with ``worker_slots`` worker slots (and the master's)."""
    return TABLE_OFFSET + MAX_LOCATIONS * LOCATION_BYTES + (1 + worker_slots) * SLOT_WORDS * WORD


def location_key(server: Server, location: Location) -> str:
    """How the table names a websocket location: its server's first name (or,
    without one, its first listen address) and the location as nginx writes it,
    joined by NUL."""
    name = server.server_names[0] if server.server_names and server.server_names[0] else _listen_text(server.listens)
    where = f"{location.modifier} {location.pattern}" if location.modifier else location.pattern
    return f"{name}\0{where}"


def _listen_text(listens: Sequence[Listen]) -> str:
    if not listens:
        return ""
    listen = listens[0]
    if listen.unix:
        return f"unix:{listen.unix}"
    host = f"[{listen.host}]" if listen.host and ":" in listen.host else listen.host
    return f"{host}:{listen.port}"


def location_keys(config: Config) -> list[tuple[Location, str]]:
    """Every websocket location of ``config`` with its key, in file order."""
    if config.http is None:
        return []
    return [(location, location_key(server, location))
            for server in config.http.servers for location in websocket_locations(server.locations)]


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """A slot some process holds, as the master wrote it."""

    slot: int  # 0: the master; 1 + s: the worker in slot s
    pid: int
    state: int
    generation: int


@dataclass(frozen=True, slots=True)
class Totals:
    """A region summed: counters over every slot ever used, gauges over the live ones."""

    counters: tuple[int, ...]  # indexed by word - COUNTERS[0]
    gauges: tuple[int, ...]  # indexed by word - GAUGES[0]
    locations: tuple[tuple[str, str], ...]  # (server, location) of each table entry in use

    def counter(self, word: int) -> int:
        return self.counters[word - COUNTERS[0]]

    def family(self, first: int, size: int) -> tuple[int, ...]:
        start = first - COUNTERS[0]
        return self.counters[start:start + size]

    def gauge(self, word: int) -> int:
        return self.gauges[word - GAUGES[0]]

    def clients(self) -> tuple[int, ...]:
        """Clients connected per table entry in use."""
        start = CLIENTS - GAUGES[0]
        return self.gauges[start:start + len(self.locations)]


class Region:
    """The region, mapped (or any buffer of its layout): the master's side and the readers'."""

    __slots__ = ("buffer", "words", "fd", "capacity")

    def __init__(self, buffer, fd: int | None = None) -> None:
        self.buffer = buffer
        self.words = memoryview(buffer).cast("q")
        self.fd = fd  # the memfd, kept by the master to hand to workers
        self.capacity = (len(buffer) - TABLE_OFFSET - MAX_LOCATIONS * LOCATION_BYTES) // (SLOT_WORDS * WORD) - 1
        if self.words[H_MAGIC] == 0:
            self.words[H_SLOT_WORDS] = SLOT_WORDS
            self.words[H_SLOTS_USED] = 1
            self.words[H_MAGIC] = MAGIC
        elif self.words[H_MAGIC] != MAGIC or self.words[H_SLOT_WORDS] != SLOT_WORDS:
            raise ValueError("not a statistics region of this layout")

    @classmethod
    def create(cls, worker_slots: int = MAX_WORKER_SLOTS) -> Region:
        """A new region in a ``memfd`` (its pages are allocated as they are written)."""
        fd = os.memfd_create("nginxws-stats", os.MFD_CLOEXEC)
        size = region_bytes(worker_slots)
        os.ftruncate(fd, size)
        return cls(mmap.mmap(fd, size), fd)

    @classmethod
    def private(cls, worker_slots: int = MAX_WORKER_SLOTS) -> Region:
        """A region in this process's memory only, for a master or worker run
        in process (tests, benchmarks): nothing else can read it."""
        return cls(bytearray(region_bytes(worker_slots)))

    @classmethod
    def attach(cls, fd: int) -> Region:
        """The region of descriptor ``fd`` (a worker's, from its master), which it closes."""
        try:
            return cls(mmap.mmap(fd, os.fstat(fd).st_size))
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the descriptor the master keeps; the mapping goes with the process
        (a worker's slot may still be in use by whatever is tearing down)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # -- slots -----------------------------------------------------------------

    def slot(self, index: int) -> memoryview:
        """The words of slot ``index`` (0: the master's)."""
        start = (TABLE_OFFSET + MAX_LOCATIONS * LOCATION_BYTES) // WORD + index * SLOT_WORDS
        return self.words[start:start + SLOT_WORDS]

    def worker_slot(self, slot: int) -> memoryview:
        """The words the worker in (push) slot ``slot`` counts in."""
        if not 0 <= slot < self.capacity:
            raise ValueError(f"no statistics slot for worker slot {slot} (at most {self.capacity})")
        return self.slot(1 + slot)

    # -- the master's side -----------------------------------------------------

    def claim(self, index: int, pid: int, generation: int, state: int = STARTING) -> None:
        """Slot ``index`` is now held by ``pid``: its counters go on from what they hold."""
        words = self.slot(index)
        words[GENERATION] = generation
        words[STATE] = state
        words[PID] = pid
        if index + 1 > self.words[H_SLOTS_USED]:
            self.words[H_SLOTS_USED] = index + 1

    def set_state(self, index: int, state: int) -> None:
        self.slot(index)[STATE] = state

    def release(self, index: int) -> None:
        """The holder of slot ``index`` is gone (reaped): its gauges are zeroed, its counters stay."""
        words = self.slot(index)
        words[PID] = 0
        words[STATE] = FREE
        words[GAUGES[0]:GAUGES[1]] = memoryview(bytes((GAUGES[1] - GAUGES[0]) * WORD)).cast("q")

    def serve_generation(self, generation: int, workers: int) -> None:
        """``generation`` (of ``workers`` workers) now serves: health checks look at it."""
        self.words[H_EXPECTED] = workers
        self.words[H_GENERATION] = generation

    def add(self, index: int, word: int, count: int = 1) -> None:
        """Count in slot ``index`` (the master's own counters)."""
        self.slot(index)[word] += count

    def register_locations(self, keys: Iterable[str]) -> None:
        """Give each key not in the table yet an entry (the last entry, "other",
        takes every key past the table's size)."""
        known = set(self.location_names())
        overflow = False
        for key in keys:
            if key in known:
                continue
            used = self.words[H_LOCATIONS]
            if used >= MAX_LOCATIONS - 1:
                overflow = True
                continue
            self._write_location(used, key)
            known.add(key)
            self.words[H_LOCATIONS] = used + 1
        if overflow and self.words[H_LOCATIONS] < MAX_LOCATIONS:
            self._write_location(MAX_LOCATIONS - 1, OTHER_LOCATION)
            self.words[H_LOCATIONS] = MAX_LOCATIONS

    def _write_location(self, index: int, key: str) -> None:
        data = key.encode()[: LOCATION_BYTES - 2].decode(errors="ignore").encode()
        start = TABLE_OFFSET + index * LOCATION_BYTES
        raw = memoryview(self.buffer)
        raw[start + 2:start + 2 + len(data)] = data
        raw[start:start + 2] = len(data).to_bytes(2, "little")

    # -- the readers' side -----------------------------------------------------

    def location_names(self) -> list[str]:
        """The keys of the table entries in use, by index."""
        raw = memoryview(self.buffer)
        names = []
        for index in range(self.words[H_LOCATIONS]):
            start = TABLE_OFFSET + index * LOCATION_BYTES
            size = int.from_bytes(raw[start:start + 2], "little")
            names.append(bytes(raw[start + 2:start + 2 + size]).decode())
        return names

    def location_indices(self, config: Config) -> dict[int, int]:
        """``id(location)`` -> its table entry, for every websocket location of
        ``config`` (registered by the master before the worker started)."""
        index = {name: i for i, name in enumerate(self.location_names())}
        other = MAX_LOCATIONS - 1
        return {id(location): index.get(key, other) for location, key in location_keys(config)}

    @property
    def generation(self) -> int:
        return self.words[H_GENERATION]

    @property
    def expected(self) -> int:
        return self.words[H_EXPECTED]

    def holders(self) -> list[SlotInfo]:
        """Every slot held now (by a process that may have died since)."""
        held = []
        for index in range(self.words[H_SLOTS_USED]):
            words = self.slot(index)
            pid = words[PID]
            if pid:
                held.append(SlotInfo(index, pid, words[STATE], words[GENERATION]))
        return held

    def totals(self, live: Iterable[int]) -> Totals:
        """Counters summed over every slot ever used; gauges over the slots in ``live``."""
        counters = [0] * (COUNTERS[1] - COUNTERS[0])
        for index in range(self.words[H_SLOTS_USED]):
            words = self.slot(index)[COUNTERS[0]:COUNTERS[1]].tolist()
            counters = [a + b for a, b in zip(counters, words)]
        gauges = [0] * (GAUGES[1] - GAUGES[0])
        for index in live:
            words = self.slot(index)[GAUGES[0]:GAUGES[1]].tolist()
            gauges = [a + b for a, b in zip(gauges, words)]
        locations = tuple(tuple(name.split("\0", 1)) for name in self.location_names())
        return Totals(tuple(counters), tuple(gauges), locations)  # type: ignore[arg-type]


def close_reason(ending: Ending | None, close_code: int | None, timed_out: bool) -> int:
    """Why a session ended (a ``CLOSE_REASONS`` index), from what its protocol
    decided (``SessionProtocol.how_ended``: the client's doing or a timer's),
    the first close frame's code (``close_code``: the server's own when it
    closed on its account) and whether a write outlasted ``send_timeout``."""
    if timed_out:
        return SLOW_READER
    if ending is Ending.IDLE:
        return IDLE_TIMEOUT
    if ending is Ending.TOO_BIG:
        return MESSAGE_TOO_BIG
    if ending is Ending.INVALID:
        return PROTOCOL_ERROR
    if ending is not None or close_code is None:
        return CLIENT_CLOSE  # its close frame, or gone without one
    if close_code == SLOW_CLOSE_CODE:
        return SLOW_SUBSCRIBER
    if close_code == UPSTREAM_CLOSE_CODE:
        return UPSTREAM_ERROR
    return SHUTDOWN
