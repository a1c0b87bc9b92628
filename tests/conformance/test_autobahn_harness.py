"""The Autobahn harness: how it reads index.json, what it reports, when it fails.

The summary tests run on hand-made index.json data. The end-to-end tests run
real wstest against trio-websocket's echo server and against a server that
echoes wrongly; they need the environment from install-autobahn.sh, which
``make test`` runs first, and fail with that advice when it is missing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from run_autobahn import (
    REQUIRED,
    Agent,
    HarnessError,
    build_spec,
    case_key,
    format_markdown,
    format_summary,
    main,
    parse_args,
    parse_index,
    run,
)

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("NGINXWS_AUTOBAHN_CACHE",
                            Path.home() / ".cache" / "nginxws" / "autobahn"))
WSTEST = CACHE / "py27" / "bin" / "wstest"


def entry(behavior: str, close: str = "OK") -> dict[str, object]:
    return {"behavior": behavior, "behaviorClose": close, "duration": 1,
            "remoteCloseCode": 1000, "reportfile": "x.json"}


INDEX = {
    "good": {
        "1.1.1": entry("OK"),
        "3.2": entry("NON-STRICT"),
        "7.13.1": entry("INFORMATIONAL", "INFORMATIONAL"),
        "12.1.1": entry("UNIMPLEMENTED"),
    },
    "bad": {
        "1.1.1": entry("OK"),
        "9.10.1": entry("FAILED"),
        "9.2.1": entry("OK", "WRONG CODE"),
        "3.2": entry("NON-STRICT", "FAILED"),
    },
}


@pytest.mark.parametrize(("ids", "ordered"), [
    (["9.10.1", "9.2.1", "10.1.1", "1.1.1"], ["1.1.1", "9.2.1", "9.10.1", "10.1.1"]),
    (["4.2.3", "4.1.10", "4.1.4"], ["4.1.4", "4.1.10", "4.2.3"]),
])
def test_case_ids_sort_in_suite_order(ids: list[str], ordered: list[str]) -> None:
    assert sorted(ids, key=case_key) == ordered


def test_counts_are_per_column() -> None:
    good = parse_index(INDEX)["good"]
    assert good.counts("behavior") == {"OK": 1, "NON-STRICT": 1, "INFORMATIONAL": 1,
                                       "UNIMPLEMENTED": 1}
    assert good.counts("behaviorClose") == {"OK": 3, "INFORMATIONAL": 1}


def test_non_strict_informational_and_unimplemented_do_not_fail() -> None:
    assert parse_index(INDEX)["good"].failing() == {}


def test_unimplemented_fails_where_every_case_must_be_implemented() -> None:
    good = parse_index(INDEX)["good"]
    unimplemented = good.cases_with("UNIMPLEMENTED")
    assert unimplemented
    assert good.failing(REQUIRED) == {case: "behavior UNIMPLEMENTED" for case in unimplemented}


def test_any_status_outside_the_passing_four_fails_in_either_column() -> None:
    assert parse_index(INDEX)["bad"].failing() == {
        "3.2": "close FAILED",
        "9.2.1": "close WRONG CODE",
        "9.10.1": "behavior FAILED",
    }


def test_summary_lists_agents_side_by_side_with_case_ids() -> None:
    results = list(parse_index(INDEX).values())
    text = format_summary(results, 12.0)
    header = text.splitlines()[1]
    assert header.index("good") < header.index("bad")
    assert "good NON-STRICT: 3.2" in text
    assert "good FAILED: none" in text
    assert ("bad FAILED: 3.2 (close FAILED), 9.2.1 (close WRONG CODE), "
            "9.10.1 (behavior FAILED)") in text
    wrong_code = next(line for line in text.splitlines() if line.startswith("WRONG CODE"))
    assert wrong_code.split()[2:] == ["0", "0", "0", "1"]


def test_markdown_table_has_a_behavior_and_a_close_column_per_agent() -> None:
    md = format_markdown(list(parse_index(INDEX).values()), 12.0)
    lines = md.splitlines()
    assert lines[0] == "| Result | good behavior | good close | bad behavior | bad close |"
    assert "| OK | 1 | 3 | 2 | 2 |" in lines
    assert "| FAILED | 0 | 0 | 1 | 1 |" in lines
    assert "- **good**: NON-STRICT: 3.2; FAILED: none." in lines


def test_spec_names_every_agent_and_the_exclusions(tmp_path: Path) -> None:
    spec = build_spec(tmp_path, {"a": "ws://127.0.0.1:1/echo", "b": "ws://127.0.0.1:2/"},
                      ["*"], ["12.*", "13.*"])
    assert spec["servers"] == [{"agent": "a", "url": "ws://127.0.0.1:1/echo"},
                               {"agent": "b", "url": "ws://127.0.0.1:2/"}]
    assert spec["cases"] == ["*"]
    assert spec["exclude-cases"] == ["12.*", "13.*"]
    assert spec["outdir"] == str(tmp_path)


def test_agents_keep_command_line_order_and_server_urls() -> None:
    args = parse_args(["--server-cmd", "nginxws=nginxws -c conf/{port}.conf", "--reference",
                       "--url", "other=ws://127.0.0.1:9/x",
                       "--server-url", "nginxws=ws://127.0.0.1:{port}/ws"])
    assert [(a.name, a.url) for a in args.agents] == [
        ("nginxws", "ws://127.0.0.1:{port}/ws"),
        ("trio-websocket", "ws://127.0.0.1:{port}/echo"),
        ("other", "ws://127.0.0.1:9/x"),
    ]
    assert args.agents[0].command == ("nginxws", "-c", "conf/{port}.conf")
    assert args.cases == ["*"]


@pytest.mark.parametrize("argv", [
    [],
    ["--url", "no-equals-sign"],
    ["--reference", "--server-url", "unknown=ws://x"],
])
def test_bad_command_lines_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2


def test_a_server_that_dies_at_start_is_a_harness_error(tmp_path: Path) -> None:
    agent = Agent("dead", "ws://127.0.0.1:{port}/", (sys.executable, "-c", "raise SystemExit(3)"))
    with pytest.raises(HarnessError, match="exited with status 3"):
        run([agent], workdir=tmp_path, wstest="/bin/true", timeout=10)


@pytest.fixture
def wstest_installed() -> None:
    if not WSTEST.exists():
        pytest.fail(f"{WSTEST} is missing: run tests/conformance/install-autobahn.sh (make test does)")

TRUNCATING_ECHO = """
import sys, trio
from trio_websocket import serve_websocket, ConnectionClosed
async def echo(request):
    ws = await request.accept()
    while True:
        try:
            await ws.send_message((await ws.get_message())[:-1])
        except ConnectionClosed:
            return
trio.run(lambda: serve_websocket(echo, "127.0.0.1", int(sys.argv[1]), ssl_context=None))
"""


@pytest.mark.usefixtures("wstest_installed")
@pytest.mark.timeout(60)
def test_reference_echo_server_passes_and_a_wrong_echo_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = tmp_path / "truncating_echo.py"
    server.write_text(TRUNCATING_ECHO)
    status = main(["--reference", "--server-cmd", f"truncating={sys.executable} {server} {{port}}",
                   "--cases", "1.1.2", "--cases", "2.1", "--wstest", str(WSTEST),
                   "--outdir", str(tmp_path / "run"), "--markdown", str(tmp_path / "t.md"),
                   "--timeout", "50"])
    out = capsys.readouterr().out
    assert status == 1
    assert "trio-websocket FAILED: none" in out
    assert "truncating FAILED: 1.1.2 (behavior FAILED" in out
    assert json.loads((tmp_path / "run" / "reports" / "index.json").read_text()).keys() == {
        "trio-websocket", "truncating"}
    assert "| cases run | 2 | 2 | 2 | 2 |" in (tmp_path / "t.md").read_text()


@pytest.mark.usefixtures("wstest_installed")
@pytest.mark.timeout(30)
def test_installer_is_idempotent_and_prints_wstest() -> None:
    done = subprocess.run(["bash", str(HERE / "install-autobahn.sh")], capture_output=True,
                          text=True, timeout=25, check=True)
    assert done.stdout == f"{WSTEST}\n"
    assert done.stderr == ""


def test_installer_names_the_missing_python27(tmp_path: Path) -> None:
    env = {**os.environ, "NGINXWS_AUTOBAHN_CACHE": str(tmp_path),
           "NGINXWS_PYTHON27": str(tmp_path / "no-python2.7")}
    done = subprocess.run(["bash", str(HERE / "install-autobahn.sh")], capture_output=True,
                          text=True, timeout=10, env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Python 2.7 not found" in done.stderr
