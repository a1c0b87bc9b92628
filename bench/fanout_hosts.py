"""`bench/run.py fanout-hosts`: fan-out across two servers sharing one Redis (issue 15).

fanout.py's measurement (subscribe, prime, publish, collect; its counts and checks), with each
system run as a *deployment* on loopback: a fresh ``redis-server`` (Debian's, on a free port,
nothing saved) and two instances of the system configured with it (nginxws:
``websocket_redis redis://127.0.0.1:PORT;``; nginx + nchan: an upstream with
``nchan_redis_server`` in ``nostore`` mode, ``nchan_redis_pass`` on both locations, so Redis
carries pub/sub only, as for nginxws). The subscribers are spread over the two instances
(client process by client process), the publisher posts to the first one, so half the
deliveries cross Redis and half stay on the host that took the publish.

Figures per system (median over rounds): deliveries/s; server CPU per delivery of the two
instances together (master and workers of both); redis-server's CPU per delivery, apart; the
publish's answer time; the subscribers' client CPU; and lost / out of order / errors, which
must read 0 / 0 / 0 (the run exits 1 otherwise).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fanout
import harness
import shared
import systems
from fanout import FAILURE_KEYS, FULL, QUICK, SMOKE, Counts
from fanout_load import message, warmup
from harness import Failure, Row
from machine import loadavg, machine_line, raise_file_limit
from shared import Failed
from systems import RunningServer, StartError, SystemSpec, Tools

REDIS_SERVER = Path("/usr/bin/redis-server")
REDIS_SPEC = SystemSpec("redis-server", 1)
INSTANCES = 2

ROWS = [
    Row("deliveries/s", ("fanout_rate",), 0),
    Row("server CPU per delivery, both instances, µs", ("fanout_cpu_us",), 2),
    Row("redis-server CPU per delivery, µs", ("fanout_redis_cpu_us",), 2),
    Row("server + redis-server CPU per delivery, µs", ("fanout_total_cpu_us",), 2),
    Row("publish answered in, median, ms", ("fanout_publish_ms",), 3),
    Row("subscribers' client CPU per delivery, µs", ("fanout_client_us",), 2),
    Row(
        "lost deliveries / order violations / publish errors",
        ("fanout_lost", "fanout_violations", "fanout_errors"), 0, summed=True,
    ),
]


def start_redis(workdir: Path) -> RunningServer:
    """A fresh redis-server on a free loopback port, nothing saved; stopped like a system."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = systems.free_port()
    log = workdir / "redis.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [str(REDIS_SERVER), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
            preexec_fn=systems._die_with_parent,
        )
    server = RunningServer(REDIS_SPEC, process, port, log)
    server.wait_ready(1)
    return server


def run_one(
    spec: SystemSpec, counts: Counts, tools: Tools, workdir: Path, client_processes: int,
    deadline: float,
) -> dict[str, float] | Failure:
    """One round of one system: Redis and two instances, fresh; their figures, or why none."""
    started: list[RunningServer] = []
    try:
        redis = start_redis(workdir / "redis")
        started.append(redis)
        url = f"redis://127.0.0.1:{redis.port}"
        for n in range(INSTANCES):
            started.append(systems.start(spec, tools, workdir / f"instance{n}", fanout=True,
                                         redis_url=url))
    except StartError as error:
        for server in started:
            server.stop()
        return Failure(str(error), True)
    first, *others = started[1:]
    try:
        figures = fanout.fan_out(first, counts, client_processes, deadline, others=tuple(others),
                                 redis=redis)
        figures["fanout_total_cpu_us"] = figures["fanout_cpu_us"] + figures["fanout_redis_cpu_us"]
        return figures
    except Failed as failure:
        return Failure(f"{spec.label}: {failure}\n{first.log_tail()}", False)
    finally:
        for server in reversed(started):
            server.stop()


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The table; the exit status (1: a loss, a violation, an error, a system that did not
    run, or the time limit)."""
    started = time.monotonic()
    counts = shared.chosen_counts(
        args, FULL, QUICK, SMOKE,
        subscribers=args.subscribers, publishes=args.publishes, payload=args.payload,
        read_batch=args.read_batch,
    )
    if counts.payload < len(message(0, 0)) or counts.payload < len(warmup(0)):
        sys.exit(f"bench fanout-hosts: --payload must be at least {len(warmup(0))} bytes")
    if shutil.which(str(REDIS_SERVER)) is None:
        sys.exit(f"bench fanout-hosts: {REDIS_SERVER} is missing: bash tests/redis/install.sh")
    deadline = started + counts.time_limit
    client_processes = max(INSTANCES, args.client_processes or os.cpu_count() or 1)
    client_processes = len(fanout.shares(counts.subscribers, client_processes))
    specs = fanout.choose_systems(args)
    nofile = raise_file_limit()
    if nofile < counts.subscribers + 200:
        sys.exit(f"bench fanout-hosts: the open files hard limit is {nofile}, "
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
    with tempfile.TemporaryDirectory(prefix="nginxws-fanout-hosts-") as scratch:
        for round_number in range(1, counts.rounds + 1):
            for spec in specs:
                if spec.label in unavailable or deadline - time.monotonic() <= 1:
                    continue
                workdir = Path(scratch) / f"{round_number}-{spec.label.replace(' ', '')}"
                outcome = run_one(spec, counts, tools, workdir, client_processes, deadline)
                if isinstance(outcome, Failure):
                    failed = True
                    print(f"bench fanout-hosts: {outcome.message}", file=sys.stderr)
                    notes.setdefault(spec.label, []).append(outcome.message.splitlines()[0])
                    if outcome.whole_system:
                        unavailable.add(spec.label)
                    continue
                if any(outcome[key] for key in FAILURE_KEYS):
                    failed = True
                print(
                    f"bench fanout-hosts: round {round_number}/{counts.rounds} {spec.label:10} "
                    f"{outcome['fanout_rate']:,.0f} deliveries/s, {outcome['fanout_cpu_us']:.2f} µs "
                    f"server + {outcome['fanout_redis_cpu_us']:.2f} µs redis-server CPU per delivery, "
                    f"lost {outcome['fanout_lost']:.0f}, order violations "
                    f"{outcome['fanout_violations']:.0f}",
                    file=sys.stderr,
                )
                for key, value in outcome.items():
                    results[spec.label].setdefault(key, []).append(value)
    if time.monotonic() >= deadline:
        failed = True
        print(f"bench fanout-hosts: hard time limit of {counts.time_limit:.0f} s reached; partial table",
              file=sys.stderr)
    table = harness.render_table(specs, results, ROWS)
    note_lines = [f"- {label}: {why}" for label, whys in notes.items() for why in whys]
    redis_version = systems.version_of([str(REDIS_SERVER), "--version"])
    body = [
        f"{counts.rounds} round(s), median over rounds; lost, violations and errors summed. Each "
        f"column is {INSTANCES} instances of the system (N workers each) sharing one "
        "redis-server on loopback; the subscribers are spread over both, the publisher posts to "
        "the first. " + fanout.counts_line(counts, client_processes), "", table, "",
        *(note_lines + [""] if note_lines else []),
        machine_line(load_before, loadavg(), time.monotonic() - started), "",
        harness.versions_line(tools, specs).rstrip(".") + f"; {redis_version}.",
    ]
    print("\n".join(body))
    if args.markdown:
        shared.write_section(args.markdown, "fanout-hosts", argv, body)
        print(f"bench fanout-hosts: table written to {args.markdown}", file=sys.stderr)
    return 1 if failed else 0
