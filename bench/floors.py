"""What the fixed stack itself costs: trio, h11, trio-websocket/wsproto, measured in isolation.

    python bench/floors.py [--quick | --smoke] [--rounds N] [--time-limit S] [--markdown FILE]
                           [--uvloop-python PATH]

nginxws's push and handshake figures (bench/run.py) include what its libraries cost. This script
measures those floors alone and prints one table, µs of CPU per operation:

- the push path over loopback: a server process holding 1,000 connected clients (plain TCP, the
  load process reads the other ends) and 20 keep-alive pushers, each sending a fixed ~150-byte
  POST with one request in flight; the server finds the request's end with `bytes.find`, writes
  a 2-byte-header frame to the client the body names and a fixed 204 to the pusher. Layer by
  layer on trio (floors_trio.py): the pusher's request/answer alone; + the client frame written
  from the pusher's task; + a sender task per client woken by a trio.Event; trio-websocket's
  `send_message` instead of the raw write (from the pusher's task, then from a sender task: the
  shapes nginxws had while it ran on trio-websocket; it now frames with wsproto and writes from
  the pusher's task, the shape of the "push floor, trio" row). The same on asyncio `Protocol`s (floors_asyncio.py), on uvloop and on the
  standard loop, for comparison with the websockets peer's event loop.
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

Interpreters: the script runs under the project's .venv (it re-executes itself there when trio,
trio-websocket or h11 is missing), so trio, trio-websocket and h11 are the versions nginxws runs
on; nothing is installed. uvloop is optional: the asyncio + uvloop servers and the load generator
use the first interpreter that has it, of --uvloop-python, this one and bench/.venv/bin/python
(which `python bench/run.py` creates). Without one the uvloop rows show "—" and the load runs on
the standard asyncio loop.

`--smoke` runs everything at tiny counts (a test that it works, not a figure). The run has a
hard time limit (default 300 s, --quick 60 s, --smoke 20 s); rows not reached show "—" and the
exit status is 1, as it is when a server fails or a frame reaches the wrong client. Every child
process is stopped by pid when its scenario ends. `--markdown FILE` replaces the section
between the ``floors:begin`` and ``floors:end`` markers in FILE and leaves the rest alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from machine import loadavg, machine_line, package_version, raise_file_limit

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
BENCH_PYTHON = BENCH / ".venv" / "bin" / "python"
STACK = ("trio", "trio_websocket", "h11", "wsproto")

BEGIN = "<!-- floors:begin (written by bench/floors.py --markdown; edits inside are replaced) -->"
END = "<!-- floors:end -->"
MARKERS = re.compile(r"(<!-- floors:begin\b.*?-->).*?<!-- floors:end -->", re.DOTALL)
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


class Failed(Exception):
    """A scenario that did not produce a figure; the message says why."""


class TimeLimit(Failed):
    """The run's hard time limit came before the scenario's end."""


class Child:
    """A child process speaking lines on stdin/stdout; stopped by its pid in `stop`."""

    def __init__(self, argv: list[str], errors: IO[bytes]) -> None:
        self.errors = errors
        self.process = subprocess.Popen(
            argv, cwd=BENCH, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
        )
        self.buffer = b""

    def say(self, line: bytes) -> None:
        try:
            os.write(self.process.stdin.fileno(), line + b"\n")
        except OSError as error:
            raise Failed(f"gone ({error.strerror})") from None

    def expect(self, word: bytes, deadline: float) -> list[bytes]:
        """The words after `word` on the child's next line; Failed if anything else comes."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeLimit(f"no {word.decode()!r} before the time limit")
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                data = os.read(self.process.stdout.fileno(), 4096)
                if not data:
                    raise Failed(f"exited with status {self.process.wait()}{self.stderr_tail()}")
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        first, *rest = line.split()
        if first != word:
            raise Failed(f"said {line!r}, not {word.decode()!r}")
        return rest

    def stderr_tail(self) -> str:
        self.errors.flush()
        self.errors.seek(0)
        tail = self.errors.read().decode(errors="replace").strip().splitlines()[-5:]
        return (": " + " / ".join(tail)) if tail else ""

    def stop(self) -> None:
        """Close stdin (the child's cue to exit), then SIGTERM and SIGKILL by pid if need be."""
        process = self.process
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


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


def write_markdown(path: Path, argv: list[str], body: list[str]) -> None:
    """Put the section between the floors markers of `path`, keeping the rest of the file."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/floors.py", *argv])
    text = path.read_text() if path.exists() else ""
    found = MARKERS.search(text)
    begin = found.group(1) if found else BEGIN
    section = "\n".join([begin, f"Latest run, {when}: `{command}`", "", *body, END])
    if found:
        text = text[:found.start()] + section + text[found.end():]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section + "\n"
    path.write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/floors.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller counts, one round, < 60 s")
    size.add_argument("--smoke", action="store_true", help="tiny counts (a test, not a figure)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of the I/O scenarios (default 3, --quick and --smoke 1)"
    )
    parser.add_argument("--time-limit", type=float, help="hard limit for the whole run, seconds")
    parser.add_argument("--markdown", type=Path, help="write the table into this Markdown file")
    parser.add_argument("--uvloop-python", type=Path, help="an interpreter that has uvloop")
    return parser.parse_args(argv)


def ensure_stack() -> None:
    """Re-run this script in the project's .venv when this interpreter lacks the stack."""
    missing = [module for module in STACK if not _importable(module)]
    if not missing:
        return
    project = PROJECT_PYTHON.parents[1]
    if PROJECT_PYTHON.exists() and Path(sys.prefix).resolve() != project.resolve():
        script = str(Path(__file__).resolve())
        os.execv(str(PROJECT_PYTHON), [str(PROJECT_PYTHON), script, *sys.argv[1:]])
    sys.exit(f"bench floors: {', '.join(missing)} missing; run with the project's .venv/bin/python")


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    ensure_stack()
    sys.path.insert(0, str(BENCH))
    import floors_micro

    started = time.monotonic()
    load_before = loadavg()
    base = SMOKE if args.smoke else QUICK if args.quick else FULL
    counts = dataclasses.replace(
        base, rounds=args.rounds or base.rounds, time_limit=args.time_limit or base.time_limit
    )
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
        write_markdown(args.markdown, argv, body)
    sys.exit(1 if results.failed else 0)


if __name__ == "__main__":
    main()
