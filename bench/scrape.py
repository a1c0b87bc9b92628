"""bench/run.py scrape: what one scrape of the status locations costs with many workers.

nginxws starts with ``--workers`` worker processes (16 by default) and the report locations
(``websocket_metrics``, ``stub_status``, ``websocket_health``); idle WebSocket clients connect
first, so every worker holds sessions and descriptors to count. Then each location is asked
``--scrapes`` times, one request after the other, each on a connection of its own that the
server closes (``Connection: close``), the locations interleaved in rounds. For each location:
the client's time from connect to the end of the answer (median, p99), the server's CPU per
scrape (its whole process tree, from /proc/PID/task/TID/schedstat over the phase, divided by
the scrapes: the master and the other workers are idle meanwhile) and the answer's size. A
``return 200`` location is measured beside them, as the cost of any request on the same host
(the accept alone wakes every worker waiting on the listen socket): a report's own cost is the
difference.

Reported, not asserted: issue 13 asks that a scrape cost no more than a few milliseconds with
16 workers. The client is this process, on the same two cores.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import shared
from machine import loadavg, machine_line, raise_file_limit
from systems import StartError, SystemSpec, Tools, start

REPORT_LOCATIONS = """
        location = /metrics { websocket_metrics; }
        location = /basic_status { stub_status; }
        location = /health { websocket_health; }
        location = /plain { return 200 "ok\\n"; }"""
PATHS = ("/metrics", "/basic_status", "/health", "/plain")
"""The reports, and a plain ``return`` beside them: what any request costs on this host (its
accept wakes every worker waiting on the shared listen socket)."""
HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
TIMEOUT = 10.0
OK = b"HTTP/1.1 200 "


@dataclass(frozen=True, slots=True)
class Counts:
    workers: int
    clients: int
    scrapes: int
    rounds: int = 1
    time_limit: float = 300.0


FULL = Counts(workers=16, clients=2000, scrapes=500, rounds=3, time_limit=900.0)
QUICK = Counts(workers=16, clients=500, scrapes=200)
SMOKE = Counts(workers=2, clients=20, scrapes=10, time_limit=60.0)


def get(port: int, path: str) -> tuple[float, bytes]:
    """One request on its own connection; the seconds it took and the answer."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        parts = []
        while chunk := sock.recv(65536):
            parts.append(chunk)
    return time.perf_counter() - started, b"".join(parts)


def connect_clients(port: int, count: int) -> list[socket.socket]:
    """``count`` idle WebSocket clients, each past its 101 and welcome."""
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.sendall(HANDSHAKE)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                raise shared.Failed("a client was closed during its handshake")
            received += chunk
        if not received.startswith(b"HTTP/1.1 101 "):
            raise shared.Failed(f"handshake answered {received[:40]!r}")
        clients.append(sock)
    return clients


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace, argv: list[str]) -> int:
    started = time.monotonic()
    counts = shared.chosen_counts(args, FULL, QUICK, SMOKE, workers=args.workers, clients=args.clients,
                                  scrapes=args.scrapes)
    nofile = raise_file_limit()
    tools = Tools(nginxws=args.nginxws_bin or shared.REPO / ".venv" / "bin" / "nginxws",
                  bench_python=Path(sys.executable), nofile=nofile)
    load_before = loadavg()
    spec = SystemSpec("nginxws", counts.workers)
    timings: dict[str, list[float]] = {path: [] for path in PATHS}
    cpu: dict[str, list[float]] = {path: [] for path in PATHS}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="nginxws-scrape-") as scratch:
        try:
            server = start(spec, tools, Path(scratch), locations=REPORT_LOCATIONS)
        except StartError as error:
            print(f"bench: {error}", file=sys.stderr)
            return 1
        clients: list[socket.socket] = []
        try:
            while not get(server.port, "/health")[1].startswith(OK):
                if time.monotonic() - started > counts.time_limit:
                    raise shared.Failed("the workers never all became ready")
                time.sleep(0.05)
            clients = connect_clients(server.port, counts.clients)
            for path in PATHS:  # warm: every worker has answered each at least once
                for _ in range(2 * counts.workers):
                    get(server.port, path)
            for round_number in range(counts.rounds):
                for path in PATHS:
                    if time.monotonic() - started > counts.time_limit:
                        print("bench: time limit reached", file=sys.stderr)
                        return 1
                    before = server.cpu_seconds_exact()
                    for _ in range(counts.scrapes):
                        elapsed, answer = get(server.port, path)
                        if not answer.startswith(OK):
                            raise shared.Failed(f"{path} answered {answer[:40]!r}")
                        timings[path].append(elapsed)
                    cpu[path].append((server.cpu_seconds_exact() - before) / counts.scrapes)
                    sizes[path] = len(answer.partition(b"\r\n\r\n")[2])
                    print(f"bench: round {round_number + 1}/{counts.rounds} {path:14} "
                          f"median {statistics.median(timings[path]) * 1e3:.2f} ms", file=sys.stderr)
        except (OSError, shared.Failed) as error:
            print(f"bench: {error}\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            for sock in clients:
                sock.close()
            server.stop()
    lines = [
        f"nginxws with {counts.workers} workers and {counts.clients} idle WebSocket clients; "
        f"{counts.scrapes} scrapes per location per round, {counts.rounds} round(s), one at a time, "
        "each on a new connection.",
        "",
        "| location | answer, median ms | answer, p99 ms | server CPU per scrape, ms | body bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        lines.append(
            f"| `{path}` | {statistics.median(timings[path]) * 1e3:.2f} | "
            f"{percentile(timings[path], 0.99) * 1e3:.2f} | {statistics.median(cpu[path]) * 1e3:.2f} | "
            f"{sizes[path]:,} |"
        )
    lines += ["", machine_line(load_before, loadavg(), time.monotonic() - started)]
    print("\n".join(lines))
    if args.markdown:
        shared.write_section(args.markdown, "scrape", argv, lines)
    return 0
