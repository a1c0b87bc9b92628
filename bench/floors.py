"""What the fixed stack itself costs: trio, h11, trio-websocket/wsproto, measured in isolation.

    python bench/run.py floors [--quick | --smoke] [--rounds N] [--time-limit S] [--markdown FILE]
                               [--uvloop-python PATH]

nginxws's push and handshake figures (`bench/run.py systems`) include what its libraries cost.
This measures those floors alone and prints one table, µs of CPU per operation:

- the push path over loopback: a server process holding 1,000 connected clients (plain TCP, the
  load process reads the other ends) and 20 keep-alive pushers, each sending a fixed ~150-byte
  POST with one request in flight; the server finds the request's end with `bytes.find`, writes
  a 2-byte-header frame to the client the body names and a fixed 204 to the pusher. Layer by
  layer on trio (floors_trio.py): the pusher's request/answer alone; + the client frame written
  from the pusher's task (the "push floor, trio" row: how nginxws writes a push today, less its
  HTTP parsing, routing and wsproto framing); + a sender task per client woken by a trio.Event;
  trio-websocket's `send_message` instead of the raw write, from the pusher's task and from a
  sender task (the two ways nginxws pushed while it ran on trio-websocket, issue 6). The same on
  asyncio `Protocol`s (floors_asyncio.py), on uvloop and on the standard loop, for comparison
  with the websockets peer's event loop.
- the handshake: 5,000 cycles at concurrency 50 of upgrade request → 101 + one text frame →
  client's close frame and EOF → close; raw on trio, with trio-websocket's `serve_websocket`,
  raw on asyncio (uvloop and standard loop).
- without I/O, in this process (floors_micro.py): h11 parsing a push request and building a 204,
  wsproto building a frame, and trio's primitives (checkpoint, Event round trip, cancel scopes,
  nurseries, start_soon).

Server CPU is the server process's own utime + stime (`resource.getrusage`), read over the
measured phase through a ``cpu`` line on its stdin, divided by the operations. The load
(floors_load.py, asyncio on uvloop when available) runs in its own process; it connects and
warms up before the phase and checks every frame names its client. I/O scenarios run once per
round, interleaved, and the table shows the median over rounds.

Interpreters: this runs under the project's .venv (bench/run.py continues there when trio,
trio-websocket, h11 or wsproto is missing), so they are the versions nginxws runs on; nothing is
installed. uvloop is optional: the asyncio + uvloop servers and the load generator use the first
interpreter that has it, of --uvloop-python, this one and bench/.venv/bin/python (which
`python bench/run.py systems` creates). Without one the uvloop rows show "—" and the load runs
on the standard asyncio loop. The fixed answers carry the installed nginxws's version in their
``Server`` header, as nginxws's own do (floors_wire.py).

`--smoke` runs everything at tiny counts (a test that it works, not a figure). The run has a
hard time limit (default 300 s, --quick 60 s, --smoke 20 s); rows not reached show "—" and the
exit status is 1, as it is when a server fails or a frame reaches the wrong client. Every child
process is stopped by pid when its scenario ends. `--markdown FILE` replaces the section
between the ``floors:begin`` and ``floors:end`` markers in FILE and leaves the rest alone.
`python bench/floors.py ...` is `python bench/run.py floors ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import floors_wire
import shared
from machine import loadavg, machine_line, package_version, raise_file_limit
from shared import BENCH_PYTHON, Child, Failed, TimeLimit

UNAVAILABLE = "—"


@dataclass(frozen=True, slots=True)
class Counts:
    """How big each measurement is."""

    clients: int
    pushers: int
    pushes: int
    push_warmup: int
    handshakes: int
    concurrency: int
    handshake_warmup: int
    micro_ops: int
    micro_batches: int
    rounds: int
    time_limit: float


FULL = Counts(1000, 20, 20_000, 2_000, 5_000, 50, 250, 10_000, 5, 3, 300.0)
QUICK = Counts(1000, 20, 4_000, 500, 1_000, 50, 100, 2_000, 5, 1, 60.0)
SMOKE = Counts(100, 5, 200, 20, 50, 10, 10, 100, 3, 1, 20.0)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One server program under one load: a row of the table."""

    label: str
    program: str
    """floors_trio.py or floors_asyncio.py, with its arguments."""
    arguments: tuple[str, ...]
    load: str
    """push, push-no-frames or handshake."""
    needs_uvloop: bool = False


SCENARIOS = (
    Scenario("push, trio: the pusher's request + 204 only, no client frame",
             "floors_trio.py", ("push-echo",), "push-no-frames"),
    Scenario("push floor, trio: + frame written to the client's SocketStream by the pusher's task",
             "floors_trio.py", ("push-direct",), "push"),
    Scenario("push, trio: frame written by a sender task per client, woken by a trio.Event",
             "floors_trio.py", ("push-sender",), "push"),
    Scenario("push, trio-websocket: `send_message` from the pusher's task",
             "floors_trio.py", ("push-tw-direct",), "push"),
    Scenario("push, trio-websocket: `send_message` from a sender task per client",
             "floors_trio.py", ("push-tw-sender",), "push"),
    Scenario("push floor, asyncio + uvloop: `Protocol`, `transport.write`",
             "floors_asyncio.py", ("push", "uvloop"), "push", needs_uvloop=True),
    Scenario("push floor, asyncio (standard loop): `Protocol`, `transport.write`",
             "floors_asyncio.py", ("push", "asyncio"), "push"),
    Scenario("handshake floor, trio: raw 101 + one frame, close on EOF",
             "floors_trio.py", ("handshake-raw",), "handshake"),
    Scenario("handshake, trio-websocket `serve_websocket`: accept, one message, client closes",
             "floors_trio.py", ("handshake-tw",), "handshake"),
    Scenario("handshake floor, asyncio + uvloop: raw, `Protocol`",
             "floors_asyncio.py", ("handshake", "uvloop"), "handshake", needs_uvloop=True),
    Scenario("handshake floor, asyncio (standard loop): raw, `Protocol`",
             "floors_asyncio.py", ("handshake", "asyncio"), "handshake"),
)


@dataclass(frozen=True, slots=True)
class Interpreters:
    """Which Python runs what."""

    stack: str
    """Runs this script and the trio servers: has trio, trio-websocket, h11."""
    uvloop: str | None
    """Has uvloop: runs the uvloop servers and the load; None when no interpreter has it."""

    @property
    def load(self) -> str:
        return self.uvloop or self.stack


def has_module(python: str, module: str) -> bool:
    return subprocess.run(
        [python, "-c", f"import {module}"], check=False, capture_output=True, timeout=30
    ).returncode == 0


def find_interpreters(explicit: Path | None) -> Interpreters:
    candidates = [str(explicit)] if explicit else [sys.executable, str(BENCH_PYTHON)]
    found = next(
        (python for python in candidates if Path(python).exists() and has_module(python, "uvloop")),
        None,
    )
    if explicit and found is None:
        sys.exit(f"bench floors: {explicit} cannot import uvloop")
    return Interpreters(sys.executable, found)


def load_argv(scenario: Scenario, counts: Counts, ports: list[bytes]) -> list[str]:
    if scenario.load == "handshake":
        numbers = [ports[0], counts.handshakes, counts.concurrency, counts.handshake_warmup]
        return ["handshake", *map(_text, numbers)]
    numbers = [*ports, counts.clients, counts.pushers, counts.pushes, counts.push_warmup]
    extra = ["--no-frames"] if scenario.load == "push-no-frames" else []
    return ["push", *map(_text, numbers), *extra]


def _text(value: bytes | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_scenario(
    scenario: Scenario, counts: Counts, pythons: Interpreters, deadline: float
) -> tuple[float, float]:
    """(µs of server CPU per operation, operations per second) of one run."""
    python = pythons.uvloop if scenario.needs_uvloop else pythons.stack
    operations = counts.handshakes if scenario.load == "handshake" else counts.pushes
    with tempfile.TemporaryFile() as server_errors, tempfile.TemporaryFile() as load_errors:
        server = Child([python, scenario.program, *scenario.arguments], server_errors)
        try:
            try:
                ports = server.expect(b"ready", deadline)
            except Failed as failure:
                raise Failed(f"server: {failure}") from None
            load = Child(
                [pythons.load, "floors_load.py", *load_argv(scenario, counts, ports)], load_errors
            )
            try:
                load.expect(b"ready", deadline)
                before = float(_server_cpu(server, deadline))
                load.say(b"go")
                elapsed, failures = load.expect(b"done", deadline)
                after = float(_server_cpu(server, deadline))
                load.say(b"quit")
            except TimeLimit:
                raise
            except Failed as failure:
                if server.process.poll() is not None:
                    raise Failed(f"server: {server.stderr_tail() or 'exited'}") from None
                raise Failed(f"load: {failure}") from None
            finally:
                load.stop()
        finally:
            server.stop()
    if int(failures):
        raise Failed(f"{int(failures)} frames or answers were wrong or misrouted")
    return (after - before) / operations * 1e6, operations / float(elapsed)


def _server_cpu(server: Child, deadline: float) -> bytes:
    server.say(b"cpu")
    return server.expect(b"cpu", deadline)[0]


@dataclass
class Results:
    """Figures by row label, what was skipped or failed, and why."""

    figures: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    failed: bool = False


def run_io(counts: Counts, pythons: Interpreters, deadline: float, results: Results) -> None:
    for round_number in range(1, counts.rounds + 1):
        for scenario in SCENARIOS:
            if scenario.label in results.notes:
                continue
            if scenario.needs_uvloop and pythons.uvloop is None:
                results.notes[scenario.label] = "no interpreter with uvloop"
                continue
            try:
                cpu_us, rate = run_scenario(scenario, counts, pythons, deadline)
            except Failed as failure:
                results.failed = True
                results.notes[scenario.label] = str(failure)
                print(f"bench floors: {scenario.label}: {failure}", file=sys.stderr)
                if isinstance(failure, TimeLimit):
                    return
                continue
            results.figures.setdefault(scenario.label, []).append(cpu_us)
            print(
                f"bench floors: round {round_number}: {scenario.label}: "
                f"{cpu_us:.1f} µs server CPU per op, {rate:,.0f} ops/s", file=sys.stderr,
            )


def _cell(values: list[float] | None) -> str:
    if not values:
        return UNAVAILABLE
    value = statistics.median(values)
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(results: Results, labels: list[str]) -> str:
    lines = ["| piece | µs per op |", "|---|---|"]
    for label in labels:
        lines.append(f"| {label} | {_cell(results.figures.get(label))} |")
    return "\n".join(lines)


def counts_line(counts: Counts) -> str:
    return (
        f"Push rows: µs of server CPU per push, {counts.pushes:,} pushes from {counts.pushers} "
        f"keep-alive pushers (one request in flight each) to {counts.clients:,} clients. "
        f"Handshake rows: µs of server CPU per connection, {counts.handshakes:,} cycles at "
        f"concurrency {counts.concurrency}. Median over {counts.rounds} round(s). h11, wsproto "
        f"and trio rows: µs per operation in one process, median of {counts.micro_batches} "
        f"batches of {counts.micro_ops:,}."
    )


def versions_line(pythons: Interpreters) -> str:
    parts = [f"Python {platform.python_version()}"]
    parts += [f"{name} {package_version(name)}" for name in ("trio", "trio-websocket", "h11", "wsproto")]
    if pythons.uvloop:
        uvloop = subprocess.run(
            [pythons.uvloop, "-c", "import uvloop; print(uvloop.__version__)"],
            check=False, capture_output=True, text=True, timeout=30,
        ).stdout.strip()
        parts.append(f"uvloop {uvloop}")
        parts.append("load generator on uvloop")
    else:
        parts.append("uvloop not installed (its rows show —); load generator on asyncio")
    return "Versions: " + "; ".join(parts) + "."


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The floors table; the process exit status (1: a row failed or was not reached)."""
    os.environ[floors_wire.VERSION_VARIABLE] = floors_wire.NGINXWS_VERSION
    import floors_micro

    started = time.monotonic()
    load_before = loadavg()
    counts = shared.chosen_counts(args, FULL, QUICK, SMOKE)
    deadline = started + counts.time_limit
    needed = counts.clients * 2 + 200
    if raise_file_limit() < needed:
        sys.exit(f"bench floors: the open files hard limit is below the {needed} needed")
    pythons = find_interpreters(args.uvloop_python)
    results = Results()
    print("bench floors: h11, wsproto and trio without I/O", file=sys.stderr)
    for label, value in floors_micro.measure_all(counts.micro_ops, counts.micro_batches).items():
        results.figures[label] = [value]
    run_io(counts, pythons, deadline, results)
    for scenario in SCENARIOS:
        if scenario.label not in results.figures and scenario.label not in results.notes:
            results.notes[scenario.label] = "not reached before the time limit"

    labels = [scenario.label for scenario in SCENARIOS] + list(floors_micro.LABELS)
    body = [counts_line(counts), "", table(results, labels), ""]
    if results.notes:
        body += ["Not measured: " + "; ".join(
            f"{label}: {why}" for label, why in results.notes.items()
        ) + ".", ""]
    body += [machine_line(load_before, loadavg(), time.monotonic() - started), "", versions_line(pythons)]
    print("\n".join(body))
    if args.markdown:
        shared.write_section(args.markdown, "floors", argv, body)
    return 1 if results.failed else 0


if __name__ == "__main__":
    import run as entry

    sys.exit(entry.main(["floors", *sys.argv[1:]]))
