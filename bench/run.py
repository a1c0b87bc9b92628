"""nginxws's benchmarks, one command: systems, floors or memory (see bench/README.md).

    python bench/run.py [systems] [--quick | --smoke] [--systems nginxws,websockets,nchan] ...
    python bench/run.py floors [--quick | --smoke] [--uvloop-python PATH] ...
    python bench/run.py memory [--clients N] [--top N]
    python bench/run.py fanout [--quick | --smoke] [--systems nginxws,nchan] ...
    python bench/run.py fanout-hosts [--quick | --smoke] [--systems nginxws,nchan] ...

systems (the default, harness.py): nginxws side by side with its peers, fresh servers per
scenario, rounds interleaved; the table goes between the ``bench`` markers of --markdown.
floors (floors.py): what trio, trio-websocket, h11 and wsproto cost alone; the ``floors`` markers.
memory (memory_owners.py): an idle connection's memory by the library that allocated it.
fanout (fanout.py): one publish to 2,000 subscribers of a channel, nginxws beside nchan; the
``fanout`` markers.
fanout-hosts (fanout_hosts.py): the same across two instances of each sharing one redis-server,
Redis's CPU counted apart; the ``fanout-hosts`` markers.

Each subcommand continues in the interpreter it needs (shared.continue_in): systems and fanouts in
bench/.venv, created from bench/requirements.txt on first use (--no-venv: this interpreter);
floors and memory in the project's .venv when this interpreter lacks trio, h11, wsproto or
nginxws. Only the standard library is imported here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import shared

MODULES = {
    "systems": "harness", "floors": "floors", "memory": "memory_owners", "fanout": "fanout",
    "fanout-hosts": "fanout_hosts",
}
FLOORS_STACK = ("trio", "trio_websocket", "h11", "wsproto")


def add_system_options(parser: argparse.ArgumentParser, systems: str, nchan_workers: str) -> None:
    """The options of the subcommands that run whole systems (systems, fanout): which ones,
    with how many workers, which nginxws builds, which interpreter."""
    parser.add_argument("--systems", help=systems)
    parser.add_argument("--nginxws-workers", default="1,2", help="worker_processes values")
    parser.add_argument(
        "--nchan-workers", default=nchan_workers, help="worker_processes values for nchan"
    )
    parser.add_argument(
        "--nginxws-bin", type=Path, help="default: the repository's .venv/bin/nginxws"
    )
    parser.add_argument(
        "--baseline-bin", type=Path,
        help="another nginxws build (e.g. main's, in its own venv) run beside --nginxws-bin, "
        "interleaved, with a ratio column: before/after in one run",
    )
    parser.add_argument(
        "--no-venv", action="store_true",
        help="run with this interpreter as it is (uvloop optional; systems needs websockets)",
    )


def systems_parser() -> argparse.ArgumentParser:
    parser = shared.measuring_parser(
        "bench/run.py [systems]",
        "nginxws beside the websockets peer and nginx + nchan: handshakes, pushes, push latency "
        "and idle memory, server CPU per operation.",
        quick="smaller counts, one round",
        smoke="tiny counts against the websockets peer; fails on any loss (a test, not a figure)",
    )
    add_system_options(
        parser,
        "comma-separated: nginxws, websockets, nchan (default: all three; "
        "--smoke: websockets); nginxws-deflate, websockets-deflate: with permessage-deflate, "
        "no context takeover; nginxws-deflate-ctx, websockets-deflate-ctx: with context takeover",
        nchan_workers="1",
    )
    parser.add_argument(
        "--scenarios", default="handshake,push,latency,memory",
        help="comma-separated subset of handshake,push,latency,memory",
    )
    parser.add_argument("--handshakes", type=int, help="override (a)'s connection count")
    parser.add_argument("--pushes", type=int, help="override (b)'s push count")
    parser.add_argument("--idle-clients", type=int, help="override (d)'s client count")
    return parser


def fanout_parser(hosts: bool = False) -> argparse.ArgumentParser:
    what = ("Channels across hosts: two instances of each system sharing one redis-server on "
            "loopback, subscribers on both, the publisher on the first; deliveries/s, server and "
            "redis-server CPU per delivery apart, lost deliveries and order violations." if hosts else
            "Channels: sequential publishes, each to every subscriber of one channel, nginxws "
            "beside nginx + nchan; deliveries/s, server CPU per delivery, lost deliveries and order "
            "violations.")
    parser = shared.measuring_parser(
        "bench/run.py fanout-hosts" if hosts else "bench/run.py fanout", what,
        quick="500 subscribers, 20 publishes, one round",
        smoke="50 subscribers, 10 publishes (a test, not a figure)",
    )
    add_system_options(
        parser, "comma-separated: nginxws, nginxws-nagle (tcp_nodelay off, as nchan's "
        "subscribers), nchan (default: all three)", nchan_workers="1,2"
    )
    parser.set_defaults(systems="nginxws,nchan" if hosts else "nginxws,nginxws-nagle,nchan")
    parser.add_argument("--subscribers", type=int, help="override the subscriber count (2,000)")
    parser.add_argument("--publishes", type=int, help="override the publish count (100)")
    parser.add_argument("--payload", type=int, help="override each message's bytes (64)")
    parser.add_argument(
        "--read-batch", type=int,
        help="messages a subscriber's socket holds before the client reads them (default 10; "
             "1: one wake-up per message)",
    )
    parser.add_argument(
        "--client-processes", type=int,
        help="processes the subscribers are spread over (default: one per core)",
    )
    return parser


def floors_parser() -> argparse.ArgumentParser:
    parser = shared.measuring_parser(
        "bench/run.py floors",
        "What the fixed stack costs alone: trio, trio-websocket, h11, wsproto, with asyncio "
        "beside them; server CPU per operation.",
        quick="smaller counts, one round, < 60 s", smoke="tiny counts (a test, not a figure)",
    )
    parser.add_argument("--uvloop-python", type=Path, help="an interpreter that has uvloop")
    return parser


def memory_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py memory",
        description="Bytes per idle connection by the library that allocated them (tracemalloc).",
    )
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--top", type=int, default=20, help="how many allocation sites to list")
    return parser


PARSERS = {
    "systems": systems_parser, "floors": floors_parser, "memory": memory_parser,
    "fanout": fanout_parser, "fanout-hosts": lambda: fanout_parser(hosts=True),
}


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv and argv[0] in MODULES else ("systems", argv)
    args = PARSERS[command]().parse_args(rest)
    if command in ("systems", "fanout", "fanout-hosts") and not args.no_venv:
        shared.continue_in(shared.bench_python(), argv)
    elif command == "floors":
        shared.continue_in(shared.PROJECT_PYTHON, argv, needs=FLOORS_STACK)
    elif command == "memory":
        shared.continue_in(shared.PROJECT_PYTHON, argv, needs=("trio", "nginxws"))
    return importlib.import_module(MODULES[command]).run(args, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
