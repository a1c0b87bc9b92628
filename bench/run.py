"""Benchmark nginxws side by side with its peers and print one table.

    python bench/run.py [--quick | --smoke] [--systems nginxws,websockets,nchan] [--rounds N]
                        [--markdown docs/performance.md]

The script installs what it needs itself: a virtual environment in bench/.venv with
bench/requirements.txt (it re-runs itself there), and nginx with Debian's nchan module through
apt when the nchan system is asked for (skipped, with a message, where apt cannot do it).
nginxws is the project's console script (`.venv/bin/nginxws` of the repository, or
`--nginxws-bin`); if it cannot be started the table says so and the other systems still run.

Scenarios (issue 6): (a) handshake: connect + handshake + welcome + close cycles at concurrency
50; (b) push throughput: pushes over keep-alive pushers to many clients, each checked to arrive
exactly once at the right client; (c) push latency at a fixed push rate; (d) idle memory: server
RSS with no client and with many idle clients. The primary figures are server CPU per operation
(utime + stime of the server's whole process tree over the phase). Every scenario runs on a
freshly started server; rounds interleave the systems (A B A B) and the table shows the median
over rounds. `--smoke` runs every scenario at tiny counts against the websockets peer (under
30 s) and exits non-zero if anything is lost, misrouted or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "requirements.txt"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller counts, one round")
    size.add_argument(
        "--smoke", action="store_true",
        help="tiny counts against the websockets peer; fails on any loss (a test, not a figure)",
    )
    parser.add_argument(
        "--systems", help="comma-separated: nginxws, websockets, nchan (default: all three; "
        "--smoke: websockets); nginxws-deflate, websockets-deflate: with permessage-deflate, "
        "no context takeover; nginxws-deflate-ctx, websockets-deflate-ctx: with context takeover",
    )
    parser.add_argument("--rounds", type=int, help="rounds A B A B... (default 3, --quick 1)")
    parser.add_argument(
        "--scenarios", default="handshake,push,latency,memory",
        help="comma-separated subset of handshake,push,latency,memory",
    )
    parser.add_argument("--nginxws-workers", default="1,2", help="worker_processes values")
    parser.add_argument("--nchan-workers", default="1", help="worker_processes values for nchan")
    parser.add_argument(
        "--nginxws-bin", type=Path, help="default: the repository's .venv/bin/nginxws"
    )
    parser.add_argument(
        "--baseline-bin", type=Path,
        help="another nginxws build (e.g. main's, in its own venv) run beside --nginxws-bin, "
        "interleaved, with a ratio column: before/after in one run",
    )
    parser.add_argument("--markdown", type=Path, help="write the table into this Markdown file")
    parser.add_argument("--handshakes", type=int, help="override (a)'s connection count")
    parser.add_argument("--pushes", type=int, help="override (b)'s push count")
    parser.add_argument("--idle-clients", type=int, help="override (d)'s client count")
    parser.add_argument(
        "--time-limit", type=float, help="hard limit for the whole run, seconds "
        "(default 1800, --quick 600, --smoke 30)",
    )
    parser.add_argument(
        "--no-venv", action="store_true",
        help="run with this interpreter as it is (needs websockets; uvloop optional)",
    )
    return parser.parse_args(argv)


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def bootstrap(argv: list[str]) -> None:
    """Create or update bench/.venv from requirements.txt, then run this script in it."""
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = VENV / "requirements.sha256"
    if not python.exists():
        print(f"bench: creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        print(f"bench: installing {REQUIREMENTS.name} into {VENV}", file=sys.stderr)
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
        )
        if installed.returncode != 0:
            sys.exit("bench: could not install bench/requirements.txt (see pip's message above)")
        stamp.write_text(wanted + "\n")
    os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if not args.no_venv and not _in_venv():
        bootstrap(argv)
    sys.path.insert(0, str(BENCH))
    from harness import run

    sys.exit(run(args, argv, REPO))


if __name__ == "__main__":
    main()
