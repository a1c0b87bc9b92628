"""What bench/run.py's subcommands share: where things are, the interpreter each continues in,
how big a run is, the Markdown section a run writes, and child processes that speak lines.

Standard library only: bench/run.py imports it before it knows which interpreter it will run
under.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ENTRY = BENCH / "run.py"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
"""The project's environment: nginxws and the versions of trio, h11, wsproto it runs on."""
BENCH_VENV = BENCH / ".venv"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
"""bench/.venv: the websockets peer and uvloop, from bench/requirements.txt."""
REQUIREMENTS = BENCH / "requirements.txt"


def bench_python() -> Path:
    """bench/.venv's interpreter, after creating or updating the environment when
    bench/requirements.txt changed since it was last installed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = BENCH_VENV / "requirements.sha256"
    if not BENCH_PYTHON.exists():
        print(f"bench: creating {BENCH_VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        print(f"bench: installing {REQUIREMENTS.name} into {BENCH_VENV}", file=sys.stderr)
        installed = subprocess.run(
            [str(BENCH_PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
        )
        if installed.returncode != 0:
            sys.exit("bench: could not install bench/requirements.txt (see pip's message above)")
        stamp.write_text(wanted + "\n")
    return BENCH_PYTHON


def continue_in(python: Path, argv: list[str], needs: Sequence[str] = ()) -> None:
    """Re-run bench/run.py with `argv` under `python`, unless this interpreter is that one or
    already imports every module in `needs` (then return and go on here)."""
    if Path(sys.prefix).resolve() == python.parents[1].resolve():
        return
    missing = [module for module in needs if not _importable(module)]
    if needs and not missing:
        return
    if not python.exists():
        sys.exit(f"bench: {', '.join(missing)} missing here, and {python} does not exist")
    os.execv(str(python), [str(python), str(ENTRY), *argv])


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def measuring_parser(prog: str, description: str, quick: str, smoke: str) -> argparse.ArgumentParser:
    """A subcommand's parser with the options every measuring subcommand takes: --quick, --smoke,
    --rounds, --time-limit (their defaults come from its counts, see `chosen_counts`) and
    --markdown."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=quick)
    size.add_argument("--smoke", action="store_true", help=smoke)
    parser.add_argument("--rounds", type=int, help="rounds, interleaved (default 3, --quick 1)")
    parser.add_argument("--time-limit", type=float, help="hard limit for the whole run, seconds")
    parser.add_argument("--markdown", type=Path, help="write the table into this Markdown file")
    return parser


Counts = TypeVar("Counts")


def chosen_counts(args: argparse.Namespace, full: Counts, quick: Counts, smoke: Counts,
                  **overrides: Any) -> Counts:
    """The counts --smoke or --quick (or neither) pick, with --rounds, --time-limit and any
    other override given a value; each counts class has `rounds` and `time_limit` fields."""
    base = smoke if args.smoke else quick if args.quick else full
    changes = {"rounds": args.rounds, "time_limit": args.time_limit, **overrides}
    return dataclasses.replace(base, **{key: value for key, value in changes.items() if value})


def write_section(path: Path, name: str, argv: list[str], body: list[str]) -> None:
    """Put `body`, headed by when and with what command it was run, between the ``NAME:begin``
    and ``NAME:end`` markers of `path`, keeping the rest of the file (a file without the
    markers gets the section at its end)."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", "bench/run.py", *argv])
    section = "\n".join([
        f"<!-- {name}:begin (written by bench/run.py --markdown; edits inside are replaced) -->",
        f"Latest run, {when}: `{command}`",
        "",
        *body,
        f"<!-- {name}:end -->",
    ])
    markers = re.compile(rf"<!-- {name}:begin\b.*?-->.*?<!-- {name}:end -->", re.DOTALL)
    text = path.read_text() if path.exists() else ""
    found = markers.search(text)
    if found:
        text = text[:found.start()] + section + text[found.end():]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


class Failed(Exception):
    """A child process that did not do what was expected of it; the message says why."""


class TimeLimit(Failed):
    """The deadline came before the line expected."""


class Child:
    """A child process speaking lines on stdin/stdout (the parent's end; `Control` is the
    child's), run from bench/; stopped by its pid in `stop`."""

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


class Control:
    """The parent's lines on stdin, in a child process run by `Child` (the child's end)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.partial = b""
        self.loop = loop
        loop.add_reader(0, self._read)

    def _read(self) -> None:
        data = os.read(0, 1024)
        if not data:
            self.loop.remove_reader(0)
            self.lines.put_nowait(None)
            return
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.lines.put_nowait(line.strip())

    async def wait_for(self, word: bytes) -> bool:
        """True once `word` arrives, False if stdin closes first."""
        while True:
            line = await self.lines.get()
            if line is None:
                return False
            if line == word:
                return True
