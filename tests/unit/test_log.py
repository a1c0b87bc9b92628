"""error_log and access_log write nginx's lines."""

from __future__ import annotations

import base64
import os
import re
import time
from pathlib import Path

import pytest

from nginxws.conf.model import AccessLog, ErrorLog
from nginxws.log import (
    LEVELS,
    AccessEntry,
    AccessLogger,
    ErrorLogger,
    LogFormatError,
    LogOpenError,
    bootstrap_error_log,
    compile_format,
    escape_default,
    escape_json,
)

# 2026-11-29 21:34:18.250 in a zone 5h30 east of UTC (see the ``ist`` fixture).
NOW = 1795968258.25
COMBINED = AccessLog("unused").format


@pytest.fixture(autouse=True)
def ist(monkeypatch: pytest.MonkeyPatch):
    """Run every test in local time UTC+05:30, so that offsets are visible."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def entry(**overrides) -> AccessEntry:
    """A WebSocket handshake as the worker reports it, with overrides."""
    fields = dict(
        remote_addr="192.0.2.7",
        status=101,
        start=NOW - 1.2345,
        method=b"GET",
        target=b"/ws/caf%C3%A9?room=1&x=2",
        http_version=b"1.1",
        headers=[
            (b"host", b"Example.COM:8080"),
            (b"user-agent", b"curl/8.5.0"),
            (b"referer", b"https://example.com/page"),
            (b"upgrade", b"websocket"),
        ],
        body_bytes_sent=1234,
        bytes_sent=1400,
        connection=5,
        server_name="example.com",
        server_port=8080,
    )
    fields.update(overrides)
    return AccessEntry(**fields)


def render(text: str, e: AccessEntry | None = None, escape: str = "default") -> str:
    return compile_format(text, escape)(e or entry(), NOW).decode("utf-8", "surrogateescape")


# --- error log --------------------------------------------------------------------


def test_error_line_has_nginx_shape(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = ErrorLogger((ErrorLog(str(path), "info"),), pid=1234)
    log.info("client closed connection while waiting for request", conn=5)
    log.error('open() "/x" failed (2: No such file or directory)')
    log.close()
    first, second = path.read_text().splitlines()
    stamp = r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}"
    assert re.fullmatch(rf"{stamp} \[info\] 1234#0: \*5 client closed connection while waiting for request", first)
    assert re.fullmatch(rf'{stamp} \[error\] 1234#0: open\(\) "/x" failed \(2: No such file or directory\)', second)


def test_error_line_time_is_local_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "error.log"
    log = ErrorLogger((ErrorLog(str(path), "debug"),), pid=1)
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: NOW)
        log.notice("start worker processes")
    log.close()
    assert path.read_text() == "2026/11/29 21:34:18 [notice] 1#0: start worker processes\n"


def test_pid_defaults_to_the_logging_process(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = ErrorLogger((ErrorLog(str(path), "notice"),))
    log.notice("exiting")
    log.close()
    assert f"[notice] {os.getpid()}#0: exiting" in path.read_text()


@pytest.mark.parametrize("target_level", LEVELS)
def test_a_target_gets_its_level_and_more_severe(tmp_path: Path, target_level: str) -> None:
    path = tmp_path / "error.log"
    log = ErrorLogger((ErrorLog(str(path), target_level),), pid=1)
    for level in LEVELS:
        getattr(log, level)(f"message at {level}")
    log.close()
    logged = re.findall(r"\[(\w+)\] 1#0: message at (\w+)", path.read_text())
    expected = LEVELS[: LEVELS.index(target_level) + 1]
    assert logged == [(level, level) for level in expected]


def test_each_target_filters_by_its_own_level(tmp_path: Path) -> None:
    quiet, verbose = tmp_path / "quiet.log", tmp_path / "verbose.log"
    log = ErrorLogger((ErrorLog(str(quiet), "error"), ErrorLog(str(verbose), "info")), pid=1)
    assert log.enabled("info") and not log.enabled("debug")
    log.info("client closed connection", conn=1)
    log.crit("accept() failed")
    log.debug("never written")
    log.close()
    assert "client closed" not in quiet.read_text() and "accept() failed" in quiet.read_text()
    assert "client closed" in verbose.read_text() and "accept() failed" in verbose.read_text()
    assert "never written" not in verbose.read_text()


def test_stderr_target_writes_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    log = bootstrap_error_log(pid=42)
    log.notice("using the bootstrap log")
    log.info("below notice: dropped")
    log.close()
    log.warn("stderr stays open after close()")
    err = capfd.readouterr().err
    assert re.fullmatch(r"\S+ \S+ \[notice\] 42#0: using the bootstrap log\n\S+ \S+ \[warn\] 42#0: .*\n", err)


def test_error_log_reopens_after_rename(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = ErrorLogger((ErrorLog(str(path), "info"),), pid=1)
    log.info("before rotation")
    path.rename(tmp_path / "error.log.1")
    log.info("still into the renamed file")
    assert log.reopen() == ()
    log.info("after rotation")
    log.close()
    assert (tmp_path / "error.log.1").read_text().count("\n") == 2
    assert path.read_text().endswith("after rotation\n")
    assert path.read_text().count("\n") == 1


def test_reopen_failure_is_reported_and_keeps_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "error.log"
    log = ErrorLogger((ErrorLog(str(path), "info"),), pid=1)
    path.rename(tmp_path / "error.log.1")
    directory.rmdir()
    assert log.reopen() == (f'open() "{path}" failed (2: No such file or directory)',)
    log.info("kept writing")
    log.close()
    assert "kept writing" in (tmp_path / "error.log.1").read_text()


def test_unopenable_file_is_an_nginx_message(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "error.log"
    with pytest.raises(LogOpenError) as caught:
        ErrorLogger((ErrorLog(str(tmp_path / "fine.log")), ErrorLog(str(path))))
    assert caught.value.text == f'open() "{path}" failed (2: No such file or directory)'
    assert str(caught.value) == f"[emerg] {caught.value.text}"


# --- access log: formats ------------------------------------------------------------


def test_combined_format() -> None:
    user = b"Basic " + base64.b64encode(b"alice:secret")
    e = entry(headers=[*entry().headers, (b"authorization", user)])
    assert render(COMBINED, e) == (
        '192.0.2.7 - alice [29/Nov/2026:21:34:18 +0530] "GET /ws/caf%C3%A9?room=1&x=2 HTTP/1.1" 101 1234'
        ' "https://example.com/page" "curl/8.5.0"\n'
    )


def test_combined_format_with_nothing_known() -> None:
    e = AccessEntry(remote_addr="192.0.2.7", status=400, start=NOW)
    line = render(COMBINED, e)
    assert re.fullmatch(r'192\.0\.2\.7 - - \[[^]]+\] "-" 400 0 "-" "-"\n', line)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$remote_addr", "192.0.2.7"),
        ("$request", "GET /ws/caf%C3%A9?room=1&x=2 HTTP/1.1"),
        ("$request_method", "GET"),
        ("$request_uri", "/ws/caf%C3%A9?room=1&x=2"),
        ("$uri", "/ws/caf\\xC3\\xA9"),
        ("$args", "room=1&x=2"),
        ("$query_string", "room=1&x=2"),
        ("$is_args", "?"),
        ("$server_protocol", "HTTP/1.1"),
        ("$scheme", "http"),
        ("$host", "example.com"),
        ("$status", "101"),
        ("$body_bytes_sent", "1234"),
        ("$bytes_sent", "1400"),
        ("$request_time", "1.234"),
        ("$msec", "1795968258.250"),
        ("$connection", "5"),
        ("$pid", str(os.getpid())),
        ("$server_name", "example.com"),
        ("$server_port", "8080"),
        ("$http_user_agent", "curl/8.5.0"),
        ("$http_upgrade", "websocket"),
        ("$remote_user", "-"),
        ("$http_x_forwarded_for", "-"),
        ("${status}${server_port}", "1018080"),
        ("[$status]", "[101]"),
        ("no variables", "no variables"),
        ("$status$", None),
    ],
)
def test_variables(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(LogFormatError):
            render(text)
    else:
        assert render(text) == expected + "\n"


def test_time_variables_are_local_time() -> None:
    assert render("$time_local|$time_iso8601") == "29/Nov/2026:21:34:18 +0530|2026-11-29T21:34:18+05:30\n"


def test_status_has_three_digits() -> None:
    assert render("$status", entry(status=0)) == "000\n"


def test_host_falls_back_to_server_name_and_keeps_ipv6_brackets() -> None:
    assert render("$host", entry(headers=[])) == "example.com\n"
    assert render("$host", entry(headers=[(b"host", b"[::1]:8080")])) == "[::1]\n"


def test_repeated_headers_are_joined_as_nginx_does() -> None:
    headers = [
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"x-forwarded-for", b"10.0.0.2"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
    ]
    assert render("$http_x_forwarded_for|$http_cookie", entry(headers=headers)) == "10.0.0.1, 10.0.0.2|a=1; b=2\n"


@pytest.mark.parametrize(
    ("authorization", "user"),
    [
        (b"Basic " + base64.b64encode(b"k3Yx:"), "k3Yx"),
        (b"basic " + base64.b64encode(b"bob:pw:with:colons"), "bob"),
        (b"Basic " + base64.b64encode(b"no-colon"), "-"),
        (b"Basic !!!", "-"),
        (b"Bearer abc", "-"),
    ],
)
def test_remote_user_is_the_basic_auth_user(authorization: bytes, user: str) -> None:
    assert render("$remote_user", entry(headers=[(b"authorization", authorization)])) == user + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$nonsense", 'unknown "nonsense" variable'),
        ("$http_", 'unknown "http_" variable'),
        ("100$", 'invalid parameter "100$"'),
        ("${status", 'the closing bracket in "status" variable is missing'),
    ],
)
def test_bad_formats_are_refused_with_nginx_messages(text: str, message: str) -> None:
    with pytest.raises(LogFormatError) as caught:
        compile_format(text)
    assert caught.value.text == message


# --- access log: escaping ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "default", "json"),
    [
        (b"plain text/1.0", "plain text/1.0", "plain text/1.0"),
        (b'say "hi"', "say \\x22hi\\x22", 'say \\"hi\\"'),
        (b"back\\slash", "back\\x5Cslash", "back\\\\slash"),
        (b"tab\there\nnl\rcr", "tab\\x09here\\x0Anl\\x0Dcr", "tab\\there\\nnl\\rcr"),
        (b"\x00\x01\x1f\x08\x0c", "\\x00\\x01\\x1F\\x08\\x0C", "\\u0000\\u0001\\u001F\\b\\f"),
        (b"del\x7f", "del\\x7F", "del\x7f"),
        ("café".encode(), "caf\\xC3\\xA9", "café"),
        (b"bad \xff byte", "bad \\xFF byte", "bad \udcff byte"),
    ],
)
def test_escaping(raw: bytes, default: str, json: str) -> None:
    assert escape_default(raw).decode() == default
    assert escape_json(raw).decode("utf-8", "surrogateescape") == json


def test_escape_modes_apply_to_variables_not_to_the_format_text() -> None:
    e = entry(headers=[(b"user-agent", b'a"b')])
    assert render('"$http_user_agent" "$http_referer"', e) == '"a\\x22b" "-"\n'
    assert render('{"ua":"$http_user_agent","ref":"$http_referer"}', e, "json") == '{"ua":"a\\"b","ref":""}\n'
    assert render('"$http_user_agent" "$http_referer"', e, "none") == '"a"b" ""\n'


def test_unknown_escape_mode_is_refused() -> None:
    with pytest.raises(LogFormatError, match='unknown log format escaping "xml"'):
        compile_format("$status", "xml")


# --- access log: files ----------------------------------------------------------------


def test_access_logger_writes_one_line_per_target(tmp_path: Path) -> None:
    combined, short = tmp_path / "access.log", tmp_path / "short.log"
    logger = AccessLogger((AccessLog(str(combined)), AccessLog(str(short), "short", "$status $uri")))
    logger.log(entry())
    logger.log(entry(status=204, target=b"/ws"))
    logger.close()
    assert short.read_text() == "101 /ws/caf\\xC3\\xA9\n204 /ws\n"
    assert [line.split('"')[1] for line in combined.read_text().splitlines()] == [
        "GET /ws/caf%C3%A9?room=1&x=2 HTTP/1.1",
        "GET /ws HTTP/1.1",
    ]


def test_access_log_reopens_after_rename(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    logger = AccessLogger((AccessLog(str(path), "s", "$status"),))
    logger.log(entry(status=101))
    path.rename(tmp_path / "access.log.1")
    assert logger.reopen() == ()
    logger.log(entry(status=204))
    logger.close()
    assert (tmp_path / "access.log.1").read_text() == "101\n"
    assert path.read_text() == "204\n"


def test_access_logger_refuses_a_bad_format_before_opening_anything(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with pytest.raises(LogFormatError):
        AccessLogger((AccessLog(str(path), "bad", "$nonsense"),))
    assert not path.exists()


def test_connections_variables_are_read_when_a_line_is_written() -> None:
    counts = [(7, 1, 4, 2)]
    line = compile_format("$connections_active $connections_reading ${connections_writing} $connections_waiting",
                          "json", lambda: counts[0])
    assert line(entry(), NOW) == b"7 1 4 2\n"
    counts[0] = (0, 0, 0, 0)
    assert line(entry(), NOW) == b"0 0 0 0\n"
    assert render("$connections_active") == "0\n", "no worker: a format is only checked"
