"""`bench/run.py fanout`: one publish reaching every subscriber of a channel, nginxws beside
nginx + nchan (issue 11).

Each system is started fresh per round with its channels configuration (systems.start with
``fanout=True``): subscribers at ``ws://127.0.0.1:PORT/sub?channel=bench``, the publisher at
``POST http://127.0.0.1:PUBLISH_PORT/pub?channel=bench``. Per system and round:

1. SUBSCRIBERS WebSocket clients connect, spread over client processes (fanout_load.py, one per
   core by default), so the client keeps up on a small machine;
2. warm-up messages are published until every subscriber has received one (a subscription is
   live from then on; nchan with several workers registers a subscriber after its 101);
3. once the server's CPU is quiet, PUBLISHES messages of PAYLOAD bytes go out from this process
   over one keep-alive HTTP/1.1 connection, each after the previous one's answer;
4. the client processes are asked what they have until every subscriber has every message,
   or nothing more has arrived for the drain time.

Figures: deliveries/s is the deliveries counted ÷ the time from just before the first publish
to the last delivery; server CPU per delivery is the server's process tree (master and
workers) over the same phase, to the nanosecond (systems.RunningServer.cpu_seconds_exact),
read once every message has arrived; lost is SUBSCRIBERS × PUBLISHES minus the
deliveries; an order violation is a message a subscriber gets that is not numbered above all
it had before (fanout_load.py). The run exits 1 when anything is lost, out of order, answered
with other than 2xx, or a system cannot run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import harness
import loadgen
import shared
import systems
from fanout_load import message, warmup
from harness import Failure, Row
from machine import loadavg, machine_line, raise_file_limit
from shared import Child, Failed
from systems import SystemSpec, StartError, Tools

CHANNEL = "bench"
SUBSCRIBE_PATH = f"/sub?channel={CHANNEL}"
PUBLISH_PATH = f"/pub?channel={CHANNEL}"
PRIME_ATTEMPTS = 10
CONNECT_LIMIT = 120.0
"""Seconds for every subscriber to connect."""
REPORT_LIMIT = 10.0
"""Seconds for a client process to answer ``prime`` or ``report``."""
POLL = 0.02
"""Seconds between two questions to the client processes while the messages arrive."""
KINDS = ("nginxws", "nchan")
UNAVAILABLE = 503
UNAVAILABLE_PAUSE = 0.1
"""Seconds between warm-up publishes while the servers' Redis link comes up."""


@dataclass(frozen=True, slots=True)
class Counts:
    """How big a fan-out run is."""

    subscribers: int
    publishes: int
    payload: int
    """Bytes of each message's body (text)."""
    drain: float
    """Seconds without any delivery after which the missing ones are lost."""
    rounds: int
    time_limit: float
    """The whole run's hard limit, seconds."""
    read_batch: int = 10
    """Messages a subscriber's socket holds before it wakes the client (fanout_load.py); 1 is
    a wake-up and a read per message."""


FULL = Counts(2000, 100, 64, 10.0, 3, 1200.0)
QUICK = Counts(500, 20, 64, 5.0, 1, 300.0)
SMOKE = Counts(50, 10, 64, 3.0, 1, 60.0)

ROWS = [
    Row("deliveries/s", ("fanout_rate",), 0),
    Row("server CPU per delivery, µs", ("fanout_cpu_us",), 2),
    Row("publish answered in, median, ms", ("fanout_publish_ms",), 3),
    Row("subscribers' client CPU per delivery, µs", ("fanout_client_us",), 2),
    Row("subscribers on the busiest worker, %", ("fanout_busiest_pct",), 0),
    Row(
        "lost deliveries / order violations / publish errors",
        ("fanout_lost", "fanout_violations", "fanout_errors"), 0, summed=True,
    ),
]
FAILURE_KEYS = ("fanout_lost", "fanout_violations", "fanout_errors")


class Publisher:
    """One keep-alive HTTP/1.1 connection to the publisher port; one request at a time."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(loadgen.HOST, port, timeout=REPORT_LIMIT)

    def publish(self, body: bytes) -> int:
        """POST `body` as text; the answer's status, 0 when there was none."""
        try:
            self.connection.request(
                "POST", PUBLISH_PATH, body, {"Content-Type": "text/plain"}
            )
            answer = self.connection.getresponse()
            answer.read()
            return answer.status
        except (OSError, http.client.HTTPException):
            self.connection.close()
            return 0

    def close(self) -> None:
        self.connection.close()


def shares(subscribers: int, processes: int) -> list[int]:
    """`subscribers` spread as evenly as can be over at most `processes` client processes."""
    processes = max(1, min(processes, subscribers))
    return [subscribers // processes + (n < subscribers % processes) for n in range(processes)]


def fan_out(
    server: systems.RunningServer, counts: Counts, client_processes: int, deadline: float,
    others: tuple[systems.RunningServer, ...] = (), redis: systems.RunningServer | None = None,
) -> dict[str, float]:
    """Subscribe, prime, publish, collect: one system's figures for one round.

    `others` (fanout_hosts.py): more servers sharing the channel through `redis`; the
    subscribers are spread over all of them (client process by client process), the
    publisher stays on `server`, the server CPU is the sum of them all, and Redis's CPU is
    counted apart (``fanout_redis_cpu_us``)."""
    servers = (server, *others)
    with ExitStack() as stack:
        children: list[Child] = []
        for number, share in enumerate(shares(counts.subscribers, client_processes)):
            errors = stack.enter_context(tempfile.TemporaryFile())
            target = servers[number % len(servers)]
            child = Child(
                [sys.executable, "fanout_load.py", str(target.port), SUBSCRIBE_PATH, str(share),
                 str(counts.publishes), str(counts.payload), str(counts.read_batch)],
                errors,
            )
            stack.callback(child.stop)
            children.append(child)
        connected_by = min(deadline, time.monotonic() + CONNECT_LIMIT)
        for child in children:
            child.expect(b"ready", connected_by)
        publisher = Publisher(server.publish_port)
        stack.callback(publisher.close)
        _prime(publisher, children, counts, deadline, wait_unavailable=redis is not None)
        held = [n for each in servers for n in each.connections_by_process(each.port)]
        for each in (*servers, *([redis] if redis else [])):
            harness.run_async(lambda each=each: loadgen.quiesce(each), 10)
        for child in children:
            child.say(b"go")
        statuses: list[int] = []
        answer_ns: list[int] = []
        cpu_before = sum(each.cpu_seconds_exact() for each in servers)
        redis_before = redis.cpu_seconds_exact() if redis else 0.0
        started_ns = time.monotonic_ns()
        for seq in range(counts.publishes):
            sent_ns = time.monotonic_ns()
            statuses.append(publisher.publish(message(seq, counts.payload)))
            answer_ns.append(time.monotonic_ns() - sent_ns)
        reports = _collect(children, counts, deadline)
        cpu = sum(each.cpu_seconds_exact() for each in servers) - cpu_before
        redis_cpu = redis.cpu_seconds_exact() - redis_before if redis else float("nan")
    delivered = sum(int(report[0]) for report in reports)
    violations = sum(int(report[1]) for report in reports)
    last_ns = max(int(report[2]) for report in reports)
    client_cpu = sum(float(report[3]) for report in reports)
    dropped = sum(int(report[4]) for report in reports)
    elapsed = (last_ns - started_ns) / 1e9 if last_ns > started_ns else float("nan")
    return {
        "fanout_rate": delivered / elapsed,
        "fanout_cpu_us": cpu / max(delivered, 1) * 1e6,
        "fanout_redis_cpu_us": redis_cpu / max(delivered, 1) * 1e6,
        "fanout_publish_ms": statistics.median(answer_ns) / 1e6,
        "fanout_client_us": client_cpu / max(delivered, 1) * 1e6,
        "fanout_busiest_pct": max(held) / sum(held) * 100 if sum(held) else float("nan"),
        "fanout_lost": counts.subscribers * counts.publishes - delivered,
        "fanout_violations": violations,
        "fanout_errors": sum(1 for status in statuses if status not in loadgen.OK_STATUSES),
        "fanout_dropped": dropped,
    }


def _prime(publisher: Publisher, children: list[Child], counts: Counts, deadline: float,
           wait_unavailable: bool = False) -> None:
    """Publish warm-up messages until every subscriber has had one.

    `wait_unavailable`: a 503 (nginxws whose Redis link is not up yet) is waited out, until
    the deadline, rather than failing."""
    missing = counts.subscribers
    attempt = 0
    while attempt < PRIME_ATTEMPTS:
        status = publisher.publish(warmup(counts.payload))
        if wait_unavailable and status == UNAVAILABLE and time.monotonic() < deadline:
            time.sleep(UNAVAILABLE_PAUSE)
            continue
        attempt += 1
        if status not in loadgen.OK_STATUSES:
            raise Failed(f"a warm-up publish was answered {status or 'with nothing'}")
        for child in children:
            child.say(b"prime")
        answered_by = min(deadline, time.monotonic() + REPORT_LIMIT)
        missing = sum(int(child.expect(b"primed", answered_by)[0]) for child in children)
        if not missing:
            return
    raise Failed(f"{missing} subscribers got none of {PRIME_ATTEMPTS} warm-up publishes")


def _collect(children: list[Child], counts: Counts, deadline: float) -> list[list[bytes]]:
    """The client processes' ``report`` words once every subscriber has every message, or
    once none has arrived for `Counts.drain` seconds (or the deadline came)."""
    expected = counts.subscribers * counts.publishes
    delivered = -1
    arriving_since = time.monotonic()
    while True:
        for child in children:
            child.say(b"report")
        answered_by = min(deadline, time.monotonic() + REPORT_LIMIT)
        reports = [child.expect(b"report", answered_by) for child in children]
        now = time.monotonic()
        so_far = sum(int(report[0]) for report in reports)
        if so_far != delivered:
            delivered = so_far
            arriving_since = now
        if delivered >= expected or now - arriving_since >= counts.drain or now >= deadline:
            return reports
        time.sleep(POLL)


def run_one(
    spec: SystemSpec, counts: Counts, tools: Tools, workdir: Path, client_processes: int,
    deadline: float,
) -> dict[str, float] | Failure:
    """One round of one system on a fresh server; its figures, or why there are none."""
    try:
        server = systems.start(spec, tools, workdir, fanout=True)
    except StartError as error:
        return Failure(str(error), True)
    try:
        return fan_out(server, counts, client_processes, deadline)
    except Failed as failure:
        return Failure(f"{spec.label}: {failure}\n{server.log_tail()}", False)
    finally:
        server.stop()


def choose_systems(args: argparse.Namespace) -> list[SystemSpec]:
    specs = harness.choose_systems(args)
    for spec in specs:
        if spec.kind not in KINDS or spec.deflate:  # nginxws-nagle is nginxws
            sys.exit(f"bench fanout: {spec.label!r} has no channels; --systems takes "
                     f"{', '.join(KINDS)}")
    return specs


def targets(results: dict[str, dict[str, list[float]]]) -> str:
    """Issue 11's targets, from the medians: each nginxws figure over nchan's."""
    lines = [
        "| target (issue 11) | nginxws | nchan | ratio | met |",
        "|---|---|---|---|---|",
    ]
    goals = []
    # nginxws as it ships (tcp_nodelay on, as nginx), then with the socket option nchan's
    # subscribers run with (tcp_nodelay off): the like-for-like comparison.
    for name in ("nginxws", "nginxws-nagle"):
        if not any(label.startswith(f"{name} ") for label in results):
            continue
        goals += [
            (f"server CPU per delivery ≤ 1.5× nchan's, 1 worker ({name})", "fanout_cpu_us",
             f"{name} 1w", "nchan 1w", 2, lambda ratio: ratio <= 1.5),
            (f"server CPU per delivery ≤ 1.5× nchan's, 2 workers ({name})", "fanout_cpu_us",
             f"{name} 2w", "nchan 2w", 2, lambda ratio: ratio <= 1.5),
            (f"deliveries/s, 2 workers ≥ nchan 1 worker ({name})", "fanout_rate",
             f"{name} 2w", "nchan 1w", 0, lambda ratio: ratio >= 1.0),
        ]
    for title, key, mine, theirs, digits, met in goals:
        mine_values = results.get(mine, {}).get(key)
        their_values = results.get(theirs, {}).get(key)
        if not mine_values or not their_values:
            lines.append(f"| {title} | — | — | — | — |")
            continue
        mine_median = statistics.median(mine_values)
        their_median = statistics.median(their_values)
        ratio = mine_median / their_median
        lines.append(
            f"| {title} | {mine_median:,.{digits}f} ({mine}) | {their_median:,.{digits}f} "
            f"({theirs}) | {ratio:.2f}× | {'yes' if met(ratio) else 'no'} |"
        )
    return "\n".join(lines)


def _headline(message: str) -> str:
    """A failure's first line, and its last (the server's last log line) when there are more."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"


def counts_line(counts: Counts, client_processes: int) -> str:
    return (
        f"Counts: {counts.subscribers:,} subscribers on one channel, over {client_processes} "
        f"client process(es); {counts.publishes} sequential publishes of {counts.payload} bytes "
        f"of text; {counts.subscribers * counts.publishes:,} deliveries expected; the subscribers' "
        f"client reads {counts.read_batch} message(s) per wake-up until the last ones."
    )


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The fan-out table; the process exit status (1: a loss, a violation, an error, a system
    that did not run, or the time limit)."""
    started = time.monotonic()
    counts = shared.chosen_counts(
        args, FULL, QUICK, SMOKE,
        subscribers=args.subscribers, publishes=args.publishes, payload=args.payload,
        read_batch=args.read_batch,
    )
    if counts.payload < len(message(0, 0)) or counts.payload < len(warmup(0)):
        sys.exit(f"bench fanout: --payload must be at least {len(warmup(0))} bytes")
    deadline = started + counts.time_limit
    client_processes = len(shares(counts.subscribers, args.client_processes or os.cpu_count() or 1))
    specs = choose_systems(args)
    nofile = raise_file_limit()
    if nofile < counts.subscribers + 200:
        sys.exit(f"bench fanout: the open files hard limit is {nofile}, "
                 f"{counts.subscribers + 200} are needed")
    tools = Tools(
        nginxws=args.nginxws_bin or shared.REPO / ".venv" / "bin" / "nginxws",
        bench_python=Path(sys.executable), nofile=nofile, baseline=args.baseline_bin,
    )
    load_before = loadavg()
    notes: dict[str, list[str]] = {}
    unavailable: set[str] = set()
    if any(spec.kind == "nchan" for spec in specs):
        why = harness.ensure_nchan()
        if why:
            unavailable.update(spec.label for spec in specs if spec.kind == "nchan")
            for spec in specs:
                if spec.kind == "nchan":
                    notes[spec.label] = [why]
    results: dict[str, dict[str, list[float]]] = {spec.label: {} for spec in specs}
    failed = bool(unavailable)
    timed_out = False
    with tempfile.TemporaryDirectory(prefix="nginxws-fanout-") as scratch:
        for round_number in range(1, counts.rounds + 1):
            for spec in specs:
                if spec.label in unavailable:
                    continue
                if deadline - time.monotonic() <= 1:
                    timed_out = True
                    break
                workdir = Path(scratch) / f"{round_number}-{spec.label.replace(' ', '')}"
                outcome = run_one(spec, counts, tools, workdir, client_processes, deadline)
                if isinstance(outcome, Failure):
                    failed = True
                    print(f"bench fanout: {outcome.message}", file=sys.stderr)
                    notes.setdefault(spec.label, []).append(_headline(outcome.message))
                    if outcome.whole_system:
                        unavailable.add(spec.label)
                    continue
                if any(outcome[key] for key in FAILURE_KEYS):
                    failed = True
                if outcome["fanout_dropped"]:
                    notes.setdefault(spec.label, []).append(
                        f"round {round_number}: {outcome['fanout_dropped']:.0f} subscribers' "
                        "connections ended before the end"
                    )
                print(
                    f"bench fanout: round {round_number}/{counts.rounds} {spec.label:10} "
                    f"{outcome['fanout_rate']:,.0f} deliveries/s, "
                    f"{outcome['fanout_cpu_us']:.2f} µs server CPU per delivery, lost "
                    f"{outcome['fanout_lost']:.0f}, order violations "
                    f"{outcome['fanout_violations']:.0f} (client "
                    f"{outcome['fanout_client_us']:.2f} µs per delivery)",
                    file=sys.stderr,
                )
                for key, value in outcome.items():
                    results[spec.label].setdefault(key, []).append(value)
    if timed_out:
        failed = True
        print(f"bench fanout: hard time limit of {counts.time_limit:.0f} s reached; partial table",
              file=sys.stderr)
    table = harness.render_table(specs, results, ROWS)
    note_lines = [f"- {label}: {why}" for label, whys in notes.items() for why in whys]
    body = [
        f"{counts.rounds} round(s), median over rounds; lost, violations and errors summed. "
        + counts_line(counts, client_processes), "", table, "", targets(results), "",
        *(note_lines + [""] if note_lines else []),
        machine_line(load_before, loadavg(), time.monotonic() - started), "",
        harness.versions_line(tools, specs),
    ]
    print("\n".join(body))
    if args.markdown:
        shared.write_section(args.markdown, "fanout", argv, body)
        print(f"bench fanout: table written to {args.markdown}", file=sys.stderr)
    return 1 if failed else 0
