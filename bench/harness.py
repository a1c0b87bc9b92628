"""The benchmark run: which systems and counts, the interleaved rounds, the table.

`run` is what `bench/run.py systems` calls once it is in the bench environment. It raises the file
limit, makes sure each requested system can run (installs nginx + nchan through apt when asked
for and missing), then for each round, each scenario, each system: starts the system fresh,
checks it speaks the protocol (`loadgen.probe_protocol`), runs the scenario, stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import loadgen
import shared
import systems
from machine import loadavg, machine_line, package_version, raise_file_limit
from systems import DEFLATE_VARIANTS, SystemSpec, StartError, Tools

try:
    import uvloop
except ImportError:
    uvloop = None


@dataclass(frozen=True, slots=True)
class Counts:
    """How big each scenario is."""

    handshakes: int
    handshake_concurrency: int
    push_clients: int
    pushers: int
    pushes: int
    latency_clients: int
    latency_rate: float
    latency_seconds: float
    latency_warmup: int
    idle_clients: int
    scenario_limit: float
    rounds: int
    time_limit: float
    """The whole run's hard limit, seconds."""


FULL = Counts(5000, 50, 1000, 20, 50_000, 100, 500.0, 10.0, 100, 5000, 300.0, 3, 1800.0)
QUICK = Counts(1000, 50, 1000, 20, 10_000, 100, 500.0, 3.0, 100, 2000, 120.0, 1, 600.0)
SMOKE = Counts(100, 10, 50, 5, 1000, 20, 200.0, 1.0, 10, 100, 8.0, 1, 30.0)

SCENARIOS = ("handshake", "push", "latency", "memory")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a metric, how to show it, how to combine rounds."""

    title: str
    keys: tuple[str, ...]
    digits: int = 1
    summed: bool = False
    """Counts of failures: summed over rounds and shown as a/b/c; otherwise the median."""


def rows(counts: Counts) -> list[Row]:
    return [
        Row("handshake: server CPU per connection, µs", ("handshake_cpu_us",), 0),
        Row("handshake: connections/s", ("handshake_rate",), 0),
        Row("push: server CPU per delivered push, µs", ("push_cpu_us",), 1),
        Row("push: delivered pushes/s", ("push_rate",), 0),
        Row(f"push latency p50 at {counts.latency_rate:g}/s, ms", ("latency_p50_ms",), 3),
        Row(f"push latency p99 at {counts.latency_rate:g}/s, ms", ("latency_p99_ms",), 3),
        Row("idle memory: server RSS, no client, MB", ("rss_idle_mb",), 1),
        Row(
            f"idle memory: server RSS, {counts.idle_clients:,} clients, MB", ("rss_clients_mb",), 1
        ),
        Row("idle memory per connection, KB", ("rss_per_client_kb",), 1),
        Row(
            "failures: handshakes / lost / misrouted / duplicated / push errors",
            ("handshake_failures", "lost", "misrouted", "push_duplicated", "errors"),
            0, summed=True,
        ),
    ]


FAILURE_KEYS = {
    "handshake_failures": ("handshake_failures",),
    "lost": ("push_lost", "latency_lost"),
    "misrouted": ("push_misrouted", "latency_misrouted"),
    "push_duplicated": ("push_duplicated",),
    "errors": ("push_errors", "latency_errors"),
}
"""A summed row's names that add up several scenarios' keys; any other name is a key itself."""


def ensure_nchan() -> str | None:
    """Make nginx + nchan available; None when they are, else why they cannot be."""
    if systems.NGINX.exists() and systems.NCHAN_MODULE.exists():
        return None
    if shutil.which("apt-get") is None:
        return "nchan skipped: apt-get is not available to install nginx and libnginx-mod-nchan"
    if os.geteuid() != 0:
        return "nchan skipped: installing nginx and libnginx-mod-nchan needs root"
    print("bench: installing nginx and libnginx-mod-nchan with apt-get", file=sys.stderr)
    # Debian's nginx package starts the service on install unless a policy forbids it.
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx",
                   "libnginx-mod-nchan"]
        done = subprocess.run(install, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update"], env=environment, capture_output=True)
            done = subprocess.run(install, env=environment, capture_output=True, text=True)
    finally:
        if made_policy:
            policy.unlink()
    if done.returncode != 0 or not systems.NCHAN_MODULE.exists():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"nchan skipped: apt-get install failed: {last[0]}"
    return None


def _worker_counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def choose_systems(args: argparse.Namespace) -> list[SystemSpec]:
    default = "websockets" if args.smoke else "nginxws,websockets,nchan"
    unknown = (
        "bench: unknown system {!r} (nginxws, websockets, nchan; nginxws and websockets also "
        f"with permessage-deflate as {', '.join('NAME-' + suffix for suffix in DEFLATE_VARIANTS)}; "
        "nginxws-nagle: tcp_nodelay off)"
    )
    chosen: list[SystemSpec] = []
    for name in (args.systems or default).split(","):
        name = name.strip()
        kind, _, variant = name.partition("-")
        nagle = variant == "nagle" and kind == "nginxws"
        deflate = DEFLATE_VARIANTS.get(variant) if variant and not nagle else None
        if variant and not nagle and (deflate is None or kind == "nchan"):
            sys.exit(unknown.format(name))
        if kind == "nginxws":
            workers = _worker_counts(args.nginxws_workers)
            chosen += [SystemSpec(kind, n, deflate=deflate, nagle=nagle) for n in workers]
            if args.baseline_bin:
                chosen += [SystemSpec(kind, n, baseline=True, deflate=deflate, nagle=nagle)
                           for n in workers]
        elif kind == "nchan":
            chosen += [SystemSpec(kind, n) for n in _worker_counts(args.nchan_workers)]
        elif kind == "websockets":
            chosen.append(SystemSpec(kind, 1, deflate=deflate))
        else:
            sys.exit(unknown.format(name))
    return chosen


def scenario_call(
    name: str, counts: Counts, target: loadgen.Target, server: systems.RunningServer
) -> Coroutine[Any, Any, dict[str, float]]:
    if name == "handshake":
        return loadgen.handshake_scenario(
            target, server, counts.handshakes, counts.handshake_concurrency
        )
    if name == "push":
        return loadgen.push_scenario(
            target, server, counts.push_clients, counts.pushers, counts.pushes,
            counts.scenario_limit,
        )
    if name == "latency":
        return loadgen.latency_scenario(
            target, server, counts.latency_clients, counts.latency_rate,
            counts.latency_seconds, counts.latency_warmup,
        )
    return loadgen.memory_scenario(target, server, counts.idle_clients)


def run_async(make: Callable[[], Coroutine[Any, Any, Any]], limit: float) -> Any:
    """Run a coroutine on a fresh loop (uvloop when installed) with a hard time limit."""

    async def bounded() -> Any:
        return await asyncio.wait_for(make(), limit)

    if uvloop is not None:
        return uvloop.run(bounded())
    return asyncio.run(bounded())


def _summary(name: str, result: dict[str, float]) -> str:
    if name == "handshake":
        return (
            f"{result['handshake_cpu_us']:.0f} µs CPU/conn, {result['handshake_rate']:.0f} conn/s"
            f" (load generator {result['handshake_loadgen_us']:.0f} µs/conn)"
        )
    if name == "push":
        return (
            f"{result['push_cpu_us']:.1f} µs CPU/push, {result['push_rate']:.0f} push/s"
            f" (load generator {result['push_loadgen_us']:.1f} µs/push)"
        )
    if name == "latency":
        return f"p50 {result['latency_p50_ms']:.3f} ms, p99 {result['latency_p99_ms']:.3f} ms"
    return f"{result['rss_per_client_kb']:.1f} KB/conn, {result['rss_clients_mb']:.1f} MB in all"


def _failures(result: dict[str, float]) -> int:
    return int(sum(result.get(key, 0) for keys in FAILURE_KEYS.values() for key in keys))


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The whole benchmark; the process exit status (1: something lost, failed or timed out)."""
    started = time.monotonic()
    counts = shared.chosen_counts(
        args, FULL, QUICK, SMOKE,
        handshakes=args.handshakes, pushes=args.pushes, idle_clients=args.idle_clients,
    )
    limit = counts.time_limit
    rounds = counts.rounds
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    for name in scenarios:
        if name not in SCENARIOS:
            sys.exit(f"bench: unknown scenario {name!r} ({', '.join(SCENARIOS)})")
    specs = choose_systems(args)
    nofile = raise_file_limit()
    needed = max(counts.idle_clients, counts.push_clients) + 200
    if nofile < needed:
        sys.exit(f"bench: the open files hard limit is {nofile}, {needed} are needed")
    tools = Tools(
        nginxws=args.nginxws_bin or shared.REPO / ".venv" / "bin" / "nginxws",
        bench_python=Path(sys.executable),
        nofile=nofile,
        baseline=args.baseline_bin,
    )
    load_before = loadavg()
    skipped: dict[str, str] = {}
    remarks: dict[str, str] = {}
    broken: dict[str, list[str]] = {}
    if any(spec.kind == "nchan" for spec in specs):
        why = ensure_nchan()
        if why:
            print(f"bench: {why}", file=sys.stderr)
            for spec in specs:
                if spec.kind == "nchan":
                    skipped[spec.label] = why
    for baseline, binary in ((False, tools.nginxws), (True, tools.baseline)):
        wanted = [spec for spec in specs if spec.kind == "nginxws" and spec.baseline == baseline]
        if wanted and not binary.exists():
            why = f"nginxws is not runnable yet: {binary} does not exist"
            print(f"bench: {why}", file=sys.stderr)
            for spec in wanted:
                skipped[spec.label] = why

    results: dict[str, dict[str, list[float]]] = {spec.label: {} for spec in specs}
    failed = False
    timed_out = False
    with tempfile.TemporaryDirectory(prefix="nginxws-bench-") as scratch:
        for round_number in range(1, rounds + 1):
            for scenario in scenarios:
                for spec in specs:
                    if spec.label in skipped:
                        continue
                    remaining = limit - (time.monotonic() - started)
                    if remaining <= 1:
                        timed_out = True
                        break
                    outcome = _run_one(
                        spec, scenario, counts, tools,
                        Path(scratch) / f"{round_number}-{scenario}-{spec.label.replace(' ', '')}",
                        min(remaining, counts.scenario_limit), remarks,
                    )
                    if isinstance(outcome, Failure):
                        print(f"bench: {outcome.message}", file=sys.stderr)
                        headline = outcome.message.splitlines()[0]
                        if outcome.whole_system:
                            skipped[spec.label] = headline
                        else:
                            broken.setdefault(spec.label, []).append(headline)
                        if not outcome.message.startswith("nginxws is not runnable"):
                            failed = True
                        continue
                    print(
                        f"bench: round {round_number}/{rounds} {scenario:9} {spec.label:12} "
                        f"{_summary(scenario, outcome)}",
                        file=sys.stderr,
                    )
                    if _failures(outcome):
                        failed = True
                    for key, value in outcome.items():
                        results[spec.label].setdefault(key, []).append(value)
    elapsed = time.monotonic() - started
    if timed_out:
        print(f"bench: hard time limit of {limit:.0f} s reached; partial table", file=sys.stderr)
    machine = machine_line(load_before, loadavg(), elapsed)
    versions = versions_line(tools, specs)
    table = render_table(specs, results, rows(counts))
    notes = [f"- {label}: {why}" for label, why in {**remarks, **skipped}.items()]
    notes += [f"- {label}: {why}" for label, whys in broken.items() for why in whys]
    print()
    print(table)
    if notes:
        print()
        print("\n".join(notes))
    print()
    print(machine)
    if args.markdown:
        body = [
            f"{rounds} round(s) of {', '.join(scenarios)}; median over rounds; failures summed. "
            + counts_line(counts), "", table, "", *(notes + [""] if notes else []), machine, "",
            versions,
        ]
        shared.write_section(args.markdown, "bench", argv, body)
        print(f"bench: table written to {args.markdown}", file=sys.stderr)
    return 1 if failed or timed_out else 0


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a scenario gave no figures; `whole_system`: the system cannot run at all."""

    message: str
    whole_system: bool


def _run_one(
    spec: SystemSpec, scenario: str, counts: Counts, tools: Tools, workdir: Path, limit: float,
    remarks: dict[str, str],
) -> dict[str, float] | Failure:
    """One scenario on a fresh server; its figures, or why it could not run.

    A server that ran with fewer processes than configured is noted in `remarks`.
    """
    try:
        # Once a system is known to run short of processes, do not wait for them again.
        server = systems.start(spec, tools, workdir, grace=0.5 if spec.label in remarks else 5.0)
    except StartError as error:
        if spec.kind == "nginxws":
            return Failure(f"nginxws is not runnable yet ({spec.label}): {error}", True)
        return Failure(f"{spec.label} did not start: {error}", True)
    if server.shortfall:
        remarks[spec.label] = server.shortfall
    try:
        target = loadgen.Target(server.port, spec.welcome, deflate=spec.deflate is not None)
        try:
            run_async(lambda: loadgen.probe_protocol(target), 15)
        except (OSError, loadgen.ProtocolError, asyncio.TimeoutError) as error:
            return Failure(
                f"{spec.label} does not speak the benchmark protocol: "
                f"{type(error).__name__}: {error}\n{server.log_tail()}",
                True,
            )
        try:
            return run_async(lambda: scenario_call(scenario, counts, target, server), limit)
        except asyncio.TimeoutError:
            return Failure(
                f"{spec.label} {scenario}: no result within {limit:.0f} s\n{server.log_tail()}",
                False,
            )
        except (OSError, loadgen.ProtocolError) as error:
            return Failure(
                f"{spec.label} {scenario}: {type(error).__name__}: {error}\n{server.log_tail()}",
                False,
            )
    finally:
        server.stop()


def _cell(values: list[float] | None, row: Row) -> str:
    if not values:
        return "—"
    return f"{statistics.median(values):,.{row.digits}f}"


def _failure_cell(result: dict[str, list[float]], row: Row) -> str:
    if not result:
        return "—"
    return " / ".join(
        str(int(sum(sum(result.get(key, [])) for key in FAILURE_KEYS.get(name, (name,)))))
        for name in row.keys
    )


def _ratio(mine: list[float] | None, theirs: list[float] | None) -> str:
    if not mine or not theirs:
        return "—"
    denominator = statistics.median(theirs)
    if denominator == 0:
        return "—"
    return f"{statistics.median(mine) / denominator:.2f}×"


def render_table(
    specs: list[SystemSpec], results: dict[str, dict[str, list[float]]], table_rows: list[Row]
) -> str:
    """The Markdown table: a column per system, then nginxws (its first column) / each peer
    (its baseline build first, when there is one), for each compression setting in the run:
    nginxws with deflate is compared with peers doing the same work."""
    labels = [spec.label for spec in specs]
    ratio_columns: list[tuple[str, str]] = []
    for deflate in dict.fromkeys(spec.deflate for spec in specs):
        alike = [spec for spec in specs if spec.deflate == deflate]
        mine = next(
            (spec.label for spec in alike if spec.kind == "nginxws" and not spec.baseline), None
        )
        if mine is None:
            continue
        peers = [next((spec.label for spec in alike if spec.baseline), None)]
        peers += [
            next((spec.label for spec in alike if spec.kind == kind), None)
            for kind in ("websockets", "nchan")
        ]
        ratio_columns += [(mine, peer) for peer in peers if peer is not None]
    header = ["metric", *labels, *(f"{mine} / {peer}" for mine, peer in ratio_columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows:
        if row.summed:
            cells = [_failure_cell(results[label], row) for label in labels]
            ratios = ["" for _ in ratio_columns]
        else:
            key = row.keys[0]
            cells = [_cell(results[label].get(key), row) for label in labels]
            ratios = [
                _ratio(results[mine].get(key), results[peer].get(key))
                for mine, peer in ratio_columns
            ]
        lines.append("| " + " | ".join([row.title, *cells, *ratios]) + " |")
    return "\n".join(lines)


def versions_line(tools: Tools, specs: list[SystemSpec]) -> str:
    kinds = {spec.kind for spec in specs}
    parts = [f"Python {platform.python_version()}"]
    if "nginxws" in kinds:
        parts.append(systems.version_of([str(tools.nginxws), "-v"]))
    if "websockets" in kinds:
        parts.append(
            f"websockets {package_version('websockets')}, uvloop {package_version('uvloop')}"
        )
    if "nchan" in kinds:
        nchan = systems.version_of(["dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-nchan"])
        nginx = systems.version_of([str(systems.NGINX), "-v"])
        parts.append(f"{nginx}, libnginx-mod-nchan {nchan}")
    parts.append(f"load generator on {'uvloop' if uvloop else 'asyncio'}")
    return "Versions: " + "; ".join(parts) + "."


def counts_line(counts: Counts) -> str:
    return (
        f"Counts: {counts.handshakes:,} handshakes at concurrency {counts.handshake_concurrency}; "
        f"{counts.pushes:,} pushes from {counts.pushers} pushers to {counts.push_clients:,} "
        f"clients; latency at {counts.latency_rate:g} pushes/s for {counts.latency_seconds:g} s "
        f"to {counts.latency_clients} clients; {counts.idle_clients:,} idle clients."
    )
