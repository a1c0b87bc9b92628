"""Run Autobahn|Testsuite's fuzzing client against WebSocket echo servers.

This is the conformance gate of docs/conformance.md: it points `wstest -m
fuzzingclient` at one or more echo endpoints ("agents"), reads the suite's
`index.json` and prints, per agent, how many cases ended OK, NON-STRICT,
INFORMATIONAL, UNIMPLEMENTED or FAILED, for the protocol behaviour and for
the closing behaviour separately, with the ids of the NON-STRICT and failing
cases. It exits 1 when any case failed in either column, so CI can gate on it.

Agents come from three options, in the order given:
  --url NAME=URL          a server that is already listening;
  --server-cmd NAME=CMD   a server this script starts: CMD (shell words) and
                          its URL (--server-url NAME=URL, by default
                          ws://127.0.0.1:{port}/echo) may use {port}, a free
                          loopback port picked here; the process is started
                          in its own process group and stopped by its pid
                          (then its group) at the end;
  --reference             trio-websocket's own echo server
                          (trio_websocket_echo.py beside this file), started
                          the same way, as agent "trio-websocket".
wstest itself comes from install-autobahn.sh (a Python 2.7 environment)
unless --wstest names one. Everything runs under one hard time limit
(--timeout); the run is cut and reported as an error past it.

Exit status: 0 no failures, 1 some case failed, 2 the run itself could not
be done (server did not start, wstest missing or too slow, bad options).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTALLER = HERE / "install-autobahn.sh"
REFERENCE_SERVER = HERE / "trio_websocket_echo.py"

# The five outcomes Autobahn reports and that this summary counts by name.
# The first four do not fail a run. Autobahn has further failing outcomes for
# the close column ("WRONG CODE", "UNCLEAN", "NO_CLOSE", ...); they are
# counted under their own name and fail the run like FAILED.
STATUSES = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
PASSING = frozenset(STATUSES[:4])
# With --require-implemented: a server that must implement every case run
# (an extension it was configured for) fails on UNIMPLEMENTED too.
REQUIRED = frozenset(STATUSES[:3])
COLUMNS = (("behavior", "behavior"), ("behaviorClose", "close"))

# One run of all 517 cases against trio-websocket takes about 20 s here; the
# limit leaves room for two agents on a loaded CI machine while keeping the
# gate well inside CI's budget.
DEFAULT_TIMEOUT = 180.0
# How long a started server may take to accept TCP connections.
DEFAULT_STARTUP_TIMEOUT = 20.0
# How long a server may take to exit after SIGTERM before its group is killed.
STOP_GRACE = 10.0
DEFAULT_SERVER_URL = "ws://127.0.0.1:{port}/echo"


class HarnessError(Exception):
    """A reason the run could not be done at all (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Agent:
    """One server under test: its name in the report, URL, and how to start it.

    An empty `command` means the server is already running at `url`.
    Otherwise `command` and `url` may contain `{port}`, filled in with the
    free loopback port the server is started on.
    """

    name: str
    url: str
    command: tuple[str, ...] = ()


REFERENCE_AGENT = Agent(
    name="trio-websocket",
    url=DEFAULT_SERVER_URL,
    command=(sys.executable, str(REFERENCE_SERVER), "--port", "{port}"),
)


@dataclass(frozen=True, slots=True)
class AgentResult:
    """The outcome of every case for one agent, per column (case id -> status)."""

    agent: str
    behavior: Mapping[str, str]
    behavior_close: Mapping[str, str]
    details: Mapping[str, str] = field(default_factory=dict)

    def column(self, key: str) -> Mapping[str, str]:
        """The case -> status map of the index.json column named `key`."""
        return self.behavior if key == "behavior" else self.behavior_close

    def counts(self, key: str) -> Counter[str]:
        """How many cases ended in each status in column `key`."""
        return Counter(self.column(key).values())

    def cases_with(self, status: str) -> list[str]:
        """Case ids whose behaviour or close behaviour is `status`, in suite order."""
        return sorted(
            {case for key, _ in COLUMNS for case, s in self.column(key).items() if s == status},
            key=case_key,
        )

    def failing(self, passing: frozenset[str] = PASSING) -> dict[str, str]:
        """Case id -> its failing outcomes ("behavior FAILED, close WRONG CODE"), in suite order.

        `passing`: the statuses that do not fail (`REQUIRED` makes UNIMPLEMENTED fail too)."""
        cases = sorted({case for key, _ in COLUMNS for case, status in self.column(key).items()
                        if status not in passing}, key=case_key)
        return {
            case: ", ".join(f"{label} {self.column(key)[case]}" for key, label in COLUMNS
                            if self.column(key).get(case, "OK") not in passing)
            for case in cases
        }


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key putting Autobahn case ids in suite order (9.10 after 9.2)."""
    return tuple(int(part) for part in case_id.split(".") if part.isdigit())


def build_spec(outdir: Path, agents: Mapping[str, str], cases: Sequence[str],
               exclude: Sequence[str]) -> dict[str, object]:
    """The fuzzingclient spec for `agents` (name -> ws URL)."""
    return {
        "outdir": str(outdir),
        "servers": [{"agent": name, "url": url} for name, url in agents.items()],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }


def parse_index(index: Mapping[str, Mapping[str, Mapping[str, object]]],
                reports: Path | None = None) -> dict[str, AgentResult]:
    """Turn index.json (agent -> case -> entry) into one AgentResult per agent.

    With `reports` (the outdir), failing cases also carry Autobahn's own
    description and verdict from their per-case report, for the log.
    """
    results = {}
    for agent, cases in index.items():
        details = {}
        if reports is not None:
            for case, entry in cases.items():
                if {entry["behavior"], entry["behaviorClose"]} - PASSING:
                    details[case] = _case_detail(reports / str(entry.get("reportfile", "")))
        results[agent] = AgentResult(
            agent=agent,
            behavior={case: str(entry["behavior"]) for case, entry in cases.items()},
            behavior_close={case: str(entry["behaviorClose"]) for case, entry in cases.items()},
            details=details,
        )
    return results


def _case_detail(report: Path) -> str:
    """One line from a per-case report: what was sent and what went wrong."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return f"(no report {report.name})"
    return " | ".join(
        str(data.get(key, "")).replace("<b>", "").replace("</b>", "")
        for key in ("description", "result", "resultClose")
    )


def _rows(results: Sequence[AgentResult]) -> list[tuple[str, list[int]]]:
    """(status, counts per agent and column) for the five statuses and any others seen."""
    extra = sorted({
        status
        for result in results
        for key, _ in COLUMNS
        for status in result.column(key).values()
        if status not in STATUSES
    })
    return [
        (status, [result.counts(key)[status] for result in results for key, _ in COLUMNS])
        for status in (*STATUSES, *extra)
    ]


def _id_list(cases: Sequence[str]) -> str:
    return ", ".join(cases) if cases else "none"


def format_summary(results: Sequence[AgentResult], seconds: float) -> str:
    """The plain-text table printed at the end of a run, agents side by side."""
    grid = [["", *(label for _ in results for _, label in COLUMNS)],
            ["cases", *(str(len(r.behavior)) for r in results for _ in COLUMNS)],
            *([status, *map(str, counts)] for status, counts in _rows(results))]
    width = max([*(len(cell) + 2 for row in grid for cell in row[1:]),
                 *((len(r.agent) + 3) // 2 for r in results)])
    lines = [f"Autobahn|Testsuite fuzzingclient, {seconds:.1f} s",
             " " * 15 + "".join(f"{r.agent:>{2 * width}}" for r in results)]
    lines += [f"{row[0]:<15}" + "".join(f"{cell:>{width}}" for cell in row[1:]) for row in grid]
    for result in results:
        lines.append(f"{result.agent} NON-STRICT: {_id_list(result.cases_with('NON-STRICT'))}")
        failing = result.failing()
        lines.append(f"{result.agent} FAILED: "
                     + _id_list([f"{case} ({outcome})" for case, outcome in failing.items()]))
        lines += [f"  {case}: {result.details[case]}" for case in failing if case in result.details]
    return "\n".join(lines)


def format_markdown(results: Sequence[AgentResult], seconds: float) -> str:
    """The same summary as a Markdown table, for docs/conformance.md."""
    header = ["Result"] + [f"{r.agent} {label}" for r in results for _, label in COLUMNS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" + "---:|" * (len(header) - 1)]
    rows = [("cases run", [len(r.behavior) for r in results for _ in COLUMNS]), *_rows(results)]
    for status, counts in rows:
        lines.append("| " + " | ".join([status, *map(str, counts)]) + " |")
    lines.append("")
    for result in results:
        failing = [f"{case} ({outcome})" for case, outcome in result.failing().items()]
        lines.append(f"- **{result.agent}**: NON-STRICT: "
                     f"{_id_list(result.cases_with('NON-STRICT'))}; "
                     f"FAILED: {_id_list(failing)}.")
    lines.append("")
    lines.append(f"Run time of the whole suite for all agents: {seconds:.0f} s.")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll until 127.0.0.1:`port` accepts a connection; fail if `process` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"server exited with status {process.returncode} before "
                               f"listening on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise HarnessError(f"server did not listen on port {port} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started in its own group: SIGTERM its pid, then kill the group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            pass
    # Workers a server forked share its process group; none may outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def running(agent: Agent, logdir: Path, startup_timeout: float) -> Iterator[str]:
    """Start `agent`'s server if it has a command; yield its URL; stop it on exit."""
    if not agent.command:
        yield agent.url
        return
    port = free_port()
    argv = [word.replace("{port}", str(port)) for word in agent.command]
    log = logdir / f"{agent.name}.log"
    with log.open("wb") as out:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HarnessError(f"cannot start {agent.name}: {exc}") from None
    try:
        try:
            wait_listening(port, process, startup_timeout)
        except HarnessError as exc:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise HarnessError(f"{agent.name}: {exc}" + "".join(f"\n  {t}" for t in tail)) from None
        yield agent.url.replace("{port}", str(port))
    finally:
        stop_process(process)


def find_wstest(explicit: str | None) -> str:
    """The wstest to run: the one named, or the one install-autobahn.sh provides."""
    if explicit:
        return explicit
    done = subprocess.run(["bash", str(INSTALLER)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise HarnessError("install-autobahn.sh failed:\n" + done.stderr.strip())
    return done.stdout.strip().splitlines()[-1]


def run_wstest(wstest: str, spec: dict[str, object], workdir: Path, timeout: float) -> None:
    """Run the fuzzing client on `spec` in `workdir`, killed if it exceeds `timeout`."""
    spec_file = workdir / "spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    with (workdir / "wstest.log").open("wb") as out:
        try:
            process = subprocess.Popen([wstest, "-m", "fuzzingclient", "-s", str(spec_file)],
                                       cwd=workdir, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HarnessError(f"cannot run wstest: {exc}") from None
    try:
        status = process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"wstest did not finish within {timeout:.0f} s "
                           f"(log: {workdir / 'wstest.log'})") from None
    finally:
        stop_process(process)
    if status != 0:
        raise HarnessError(f"wstest exited with status {status} (log: {workdir / 'wstest.log'})")


def run(agents: Sequence[Agent], *, workdir: Path, wstest: str, cases: Sequence[str] = ("*",),
        exclude: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT) -> tuple[list[AgentResult], float]:
    """Start the agents, run the suite on all of them at once, return results and seconds.

    Reports (HTML and JSON, index.json) are left in `workdir`/reports, server
    logs and the wstest log in `workdir`.
    """
    names = [agent.name for agent in agents]
    if len(set(names)) != len(names):
        raise HarnessError(f"agent names must differ: {', '.join(names)}")
    outdir = workdir / "reports"
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        urls = {agent.name: stack.enter_context(running(agent, workdir, startup_timeout))
                for agent in agents}
        remaining = timeout - (time.monotonic() - started)
        run_wstest(wstest, build_spec(outdir, urls, cases, exclude), workdir, remaining)
    seconds = time.monotonic() - started
    try:
        index = json.loads((outdir / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"no usable index.json in {outdir}: {exc}") from None
    by_agent = parse_index(index, outdir)
    missing = [name for name in names if name not in by_agent]
    if missing:
        raise HarnessError(f"index.json has no results for {', '.join(missing)} "
                           "(did it accept WebSocket connections?)")
    return [by_agent[name] for name in names], seconds


def _named(value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return name, rest


def _ready_agent(value: str) -> Agent:
    name, url = _named(value)
    return Agent(name=name, url=url)


def _spawned_agent(value: str) -> Agent:
    name, command = _named(value)
    try:
        argv = tuple(shlex.split(command))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad command for {name}: {exc}") from None
    return Agent(name=name, url=DEFAULT_SERVER_URL, command=argv)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line described in the module docstring."""
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite (fuzzingclient) against WebSocket echo servers.")
    parser.add_argument("--url", dest="agents", action="append", type=_ready_agent,
                        metavar="NAME=URL", help="an agent that is already listening")
    parser.add_argument("--server-cmd", dest="agents", action="append", type=_spawned_agent,
                        metavar="NAME=CMD",
                        help="an agent to start; {port} in CMD is replaced by a free port")
    parser.add_argument("--server-url", dest="server_urls", action="append", type=_named,
                        default=[], metavar="NAME=URL",
                        help=f"URL of a --server-cmd agent (default {DEFAULT_SERVER_URL})")
    parser.add_argument("--reference", dest="agents", action="append_const",
                        const=REFERENCE_AGENT,
                        help="also run trio-websocket's own echo server (agent trio-websocket)")
    parser.add_argument("--cases", action="append", metavar="PATTERN",
                        help="case ids or patterns to run (default: *, all)")
    parser.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                        help="case ids or patterns to skip, e.g. 12.* (repeatable)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="hard limit in seconds for the whole run (default %(default)s)")
    parser.add_argument("--startup-timeout", type=float, default=DEFAULT_STARTUP_TIMEOUT,
                        help="seconds a started server may take to listen (default %(default)s)")
    parser.add_argument("--wstest", help="wstest to use (default: from install-autobahn.sh)")
    parser.add_argument("--outdir", type=Path,
                        help="keep spec, logs and reports here (default: a temporary directory)")
    parser.add_argument("--require-implemented", action="store_true",
                        help="fail on UNIMPLEMENTED too (e.g. 12.*/13.* against a server with "
                             "permessage-deflate on, so a negotiation that silently stopped fails)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write the summary as a Markdown table to FILE")
    args = parser.parse_args(argv)
    if not args.agents:
        parser.error("no agent: give --url, --server-cmd or --reference")
    urls = dict(args.server_urls)
    spawned = {agent.name for agent in args.agents if agent.command}
    unknown = sorted(set(urls) - spawned)
    if unknown:
        parser.error(f"--server-url names no --server-cmd agent: {', '.join(unknown)}")
    args.agents = [Agent(a.name, urls.get(a.name, a.url), a.command) for a in args.agents]
    args.cases = args.cases or ["*"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite as the command line asks; print the summary; return the exit status."""
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.outdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="autobahn-")))
        else:
            workdir = args.outdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        try:
            wstest = find_wstest(args.wstest)
            results, seconds = run(args.agents, workdir=workdir, wstest=wstest,
                                   cases=args.cases, exclude=args.exclude,
                                   timeout=args.timeout, startup_timeout=args.startup_timeout)
        except (HarnessError, subprocess.TimeoutExpired) as exc:
            print(f"run_autobahn: {exc}", file=sys.stderr)
            return 2
    print(format_summary(results, seconds))
    if args.markdown is not None:
        args.markdown.write_text(format_markdown(results, seconds))
    passing = REQUIRED if args.require_implemented else PASSING
    failed = {result.agent: result.failing(passing) for result in results}
    for agent, cases in failed.items():
        if args.require_implemented and cases:
            print(f"{agent} not passing (UNIMPLEMENTED counts): {', '.join(cases)}")
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
