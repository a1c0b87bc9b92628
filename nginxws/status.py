"""What ``stub_status`` and ``websocket_health`` answer, from the host's statistics.

``host_state`` reads the shared region (``nginxws.stats``) and, for each
process that holds a slot, ``/proc/PID``: whether it is alive (a killed
worker is a zombie until its master reaps it, and counts as gone at once),
and for the metrics its CPU time, resident memory and open descriptors.
Gauges are summed over live processes only; counters over every slot ever
used.  The renderings below are pure.

What the connection states mean (nginx's ``stub_status``, and the
``$connections_*`` variables): every connection accepted on a ``listen``
or push port is in one state from its accept to its close.

* Waiting: idle, before its first request and between keep-alive requests
  (a push connection between pushes);
* Reading: reading a request's head (a push connection: a push's body);
* Writing: from a complete request head to the end of its answer, and for
  a WebSocket session the whole session, as nginx counts a proxied
  WebSocket connection (its request lives until the tunnel closes).

So ``Active connections`` is Reading + Writing + Waiting, and ``requests``
counts every HTTP request of the front door and of the push listeners.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from nginxws.stats import (
    ACCEPTED,
    HANDLED,
    PUSHES,
    READING,
    READY,
    REQUESTS,
    STATE_NAMES,
    STATUS_LABELS,
    WAITING,
    WRITING,
    Region,
    SlotInfo,
    Totals,
)

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
TEXT_PLAIN = b"text/plain"


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One live process as ``/proc`` shows it."""

    cpu_seconds: float  # user + system
    rss_bytes: int
    open_fds: int | None  # None: not asked for, or not ours to see


def read_process(pid: int, *, fds: bool = False) -> ProcessInfo | None:
    """``pid``'s CPU time, resident memory and (``fds``) open descriptors,
    when this process may see them; None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    # After the command: state, ppid, ... utime (12th), stime (13th), ..., rss (22nd).
    if fields[0] in (b"Z", b"X"):
        return None
    open_fds = None
    if fds:
        try:
            # Since Linux 6.2 the size of /proc/PID/fd is the number of open descriptors.
            open_fds = os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
        except PermissionError:
            pass  # another user's process (the master, when the workers run as ``user``)
        except OSError:
            return None
    return ProcessInfo((int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE, open_fds)


@dataclass(frozen=True, slots=True)
class HostState:
    """The host at one moment: its totals and the processes holding slots."""

    totals: Totals
    processes: tuple[tuple[SlotInfo, ProcessInfo | None], ...]  # None: dead, not reaped yet
    generation: int  # the serving generation
    expected: int  # its number of workers


def host_state(region: Region, *, fds: bool = False) -> HostState:
    """Read the region and ``/proc`` (descriptors too with ``fds``)."""
    processes = tuple((held, read_process(held.pid, fds=fds)) for held in region.holders())
    totals = region.totals(held.slot for held, info in processes if info is not None)
    return HostState(totals, processes, region.generation, region.expected)


def connection_counts(region: Region) -> tuple[int, int, int, int]:
    """Active, Reading, Writing, Waiting over every slot held now: the
    ``$connections_*`` variables (a crashed worker's connections count until
    its master has reaped it, milliseconds later)."""
    reading = writing = waiting = 0
    for held in region.holders():
        words = region.slot(held.slot)
        reading += words[READING]
        writing += words[WRITING]
        waiting += words[WAITING]
    return reading + writing + waiting, reading, writing, waiting


def requests(totals: Totals) -> int:
    """nginx's ``requests``: the front door's and the push listeners'."""
    return totals.counter(REQUESTS) + sum(totals.family(PUSHES, len(STATUS_LABELS)))


def stub_status(totals: Totals) -> bytes:
    """nginx's stub_status page, to the byte (``ngx_http_stub_status_module.c``)."""
    reading, writing, waiting = totals.gauge(READING), totals.gauge(WRITING), totals.gauge(WAITING)
    return (
        b"Active connections: %d \nserver accepts handled requests\n %d %d %d \nReading: %d Writing: %d Waiting: %d \n"
        % (reading + writing + waiting, totals.counter(ACCEPTED), totals.counter(HANDLED), requests(totals),
           reading, writing, waiting)
    )


def health(state: HostState) -> tuple[bool, bytes]:
    """Whether the host serves fully (every worker of the serving generation
    alive and ready, and the master alive), and a line saying so."""
    if any(held.slot == 0 and info is None for held, info in state.processes):
        return False, b"master process is gone\n"
    ready = sum(1 for held, info in state.processes
                if held.slot and held.generation == state.generation and held.state == READY and info is not None)
    if state.generation and ready >= state.expected:
        return True, b"ok\n"
    return False, b"%d of %d worker processes ready\n" % (ready, state.expected)


def workers_by_state(state: HostState) -> dict[str, int]:
    """Live worker processes by state: ``starting``, ``ready``, ``draining``."""
    counts = dict.fromkeys(STATE_NAMES.values(), 0)
    for held, info in state.processes:
        if held.slot and info is not None:
            counts[STATE_NAMES[held.state]] += 1
    return counts
