"""The ``nginxws`` command line behaves like ``nginx``'s.

Each test runs the installed program and checks its exact output and exit
status; the option parser is also checked in-process, table-driven.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from support.processes import poll
from websockets.sync.client import connect

from nginxws.cli import Options, UsageError, default_prefix, parse_args

TIMEOUT = 10.0  # seconds for any one nginxws command

VALID = """\
events {
    worker_connections 64;
}
http {
    server {
        listen 127.0.0.1:%(port)d;
        location /ws {
            websocket pingintvl=10000 idleintvl=15000;
        }
    }
}
"""

# The suite runs in the virtual environment nginxws is installed in, whose
# directory is then nginxws's prefix (nginx's --prefix, fixed at install).
INSTALL_PREFIX = sys.prefix.rstrip("/") + "/"

USAGE = f"""\
nginxws version: nginxws/0.1.0
Usage: nginxws [-?hvVtTq] [-s signal] [-p prefix]
               [-c filename] [-g directives]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: {INSTALL_PREFIX})
  -c filename   : set configuration file (default: conf/nginx.conf)
  -g directives : set global directives out of configuration file

"""


def nginxws(nginxws_bin: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginxws_bin, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def conf(tmp_path: Path, free_port) -> Path:
    """A valid configuration with its pid file in the prefix."""
    path = tmp_path / "nginx.conf"
    path.write_text("pid logs/nginxws.pid;\n" + VALID % {"port": free_port()})
    (tmp_path / "logs").mkdir()
    return path


# --- the option parser --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], Options()),
        (["-t"], Options(test=True)),
        (["-T"], Options(test=True, dump=True)),
        (["-tq"], Options(test=True, quiet=True)),
        (["-t", "-q"], Options(test=True, quiet=True)),
        (["-v"], Options(show_version=True)),
        (["-V"], Options(show_version=True, show_configure=True)),
        (["-h"], Options(show_version=True, show_help=True)),
        (["-?"], Options(show_version=True, show_help=True)),
        (["-c", "x.conf"], Options(conf_file="x.conf")),
        (["-cx.conf"], Options(conf_file="x.conf")),
        (["-tc", "x.conf"], Options(test=True, conf_file="x.conf")),
        (["-tcx.conf", "-q"], Options(test=True, quiet=True, conf_file="x.conf")),
        (["-p", "/srv"], Options(prefix="/srv")),
        (["-g", "daemon off;"], Options(directives="daemon off;")),
        (["-s", "reload"], Options(signal="reload")),
        (["-sstop"], Options(signal="stop")),
        (["-"], Options()),
    ],
)
def test_options_parse_as_nginx_parses_them(argv: list[str], expected: Options) -> None:
    assert parse_args(argv) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], 'invalid option: "x"'),
        (["-tx"], 'invalid option: "x"'),
        (["nginx.conf"], 'invalid option: "nginx.conf"'),
        ([""], 'invalid option: ""'),
        (["-c"], 'option "-c" requires file name'),
        (["-p"], 'option "-p" requires directory name'),
        (["-g"], 'option "-g" requires parameter'),
        (["-s"], 'option "-s" requires parameter'),
        (["-s", "restart"], 'invalid option: "-s restart"'),
    ],
)
def test_bad_options_are_refused_with_nginx_messages(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("sys_prefix", "base_prefix", "prefix"),
    [
        ("/opt/nginxws", "/usr", "/opt/nginxws/"),  # python3 -m venv /opt/nginxws
        ("/root/.local/share/pipx/venvs/nginxws", "/usr", "/root/.local/share/pipx/venvs/nginxws/"),
        ("/usr", "/usr", "/usr/local/nginxws/"),  # a system Python: nginx's /usr/local/nginx/
        ("/usr/local", "/usr/local", "/usr/local/nginxws/"),
    ],
)
def test_the_default_prefix_is_the_virtual_environment_else_usr_local_nginxws(
    sys_prefix: str, base_prefix: str, prefix: str
) -> None:
    assert default_prefix(sys_prefix, base_prefix) == prefix


def test_invalid_option_exits_1(nginxws_bin: str, tmp_path: Path) -> None:
    result = nginxws(nginxws_bin, "-x", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", 'nginxws: invalid option: "x"\n')


# --- showing ----------------------------------------------------------------------


def test_v_prints_the_version_on_stderr(nginxws_bin: str, tmp_path: Path) -> None:
    result = nginxws(nginxws_bin, "-v", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "nginxws version: nginxws/0.1.0\n")


def test_V_adds_what_it_is_built_with(nginxws_bin: str, tmp_path: Path) -> None:
    result = nginxws(nginxws_bin, "-V", cwd=tmp_path)
    python = ".".join(map(str, sys.version_info[:3]))
    libraries = ", ".join(f"{lib} {version(lib)}" for lib in ("trio", "h11", "wsproto", "httptools", "lark"))
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "nginxws version: nginxws/0.1.0",
        f"built by CPython {python}",
        f"built with {libraries}",
        f"configure arguments: --prefix={INSTALL_PREFIX} --conf-path=conf/nginx.conf --pid-path=logs/nginxws.pid"
        " --error-log-path=logs/error.log --http-log-path=logs/access.log",
    ]


@pytest.mark.parametrize("flag", ["-h", "-?"])
def test_h_prints_the_usage(nginxws_bin: str, tmp_path: Path, flag: str) -> None:
    result = nginxws(nginxws_bin, flag, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", USAGE)


def test_python_m_nginxws_is_the_same_program(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nginxws", "-v"], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert (result.returncode, result.stderr) == (0, "nginxws version: nginxws/0.1.0\n")


@pytest.mark.skipif(not os.environ.get("NGINXWS_TEST_INSTALLED"), reason="only make test installs the package")
def test_the_suite_runs_against_the_installed_package() -> None:
    import nginxws

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(nginxws.__file__).resolve().is_relative_to(site_packages)


# --- testing the configuration ------------------------------------------------


def test_t_reports_syntax_ok_and_success(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-t", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == (
        f"nginxws: the configuration file {conf} syntax is ok\n"
        f"nginxws: configuration file {conf} test is successful\n"
    )


def test_t_warns_about_a_conflicting_server_name(nginxws_bin: str, tmp_path: Path, free_port) -> None:
    port = free_port()
    conf = tmp_path / "dup.conf"
    conf.write_text(
        "events {}\nerror_log stderr;\npid nginxws.pid;\nhttp {\n    access_log off;\n"
        f"    server {{ listen 127.0.0.1:{port}; server_name a.test; }}\n"
        f"    server {{ listen 127.0.0.1:{port}; server_name a.test; }}\n}}\n"
    )
    result = nginxws(nginxws_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr.splitlines()[0] == (
        f'nginxws: [warn] conflicting server name "a.test" on 127.0.0.1:{port}, ignored'
    )


CHANNELS = """\
events {}
pid nginxws.pid;
http {
    access_log off;
    server {
        listen 127.0.0.1:%(port)d;
        location /chat {
            websocket;
            websocket_channels $arg_room news;
        }
        location ~ ^/sub/(\\w+)$ {
            websocket welcome=off;
            websocket_channels $1;
        }
        location ~ ^/named/(?<room>\\w+)$ { websocket; websocket_channels room-$room ${room}x; }
    }
    server {
        listen 127.0.0.1:%(publish_port)d;
        location /pub     { websocket_publish $arg_channel; }
        location ~ ^/pub/(\\w+)$ { websocket_publish $1; }
    }
}
"""


def test_t_accepts_channels_and_publish_locations(nginxws_bin: str, tmp_path: Path, free_port) -> None:
    conf = tmp_path / "channels.conf"
    conf.write_text(CHANNELS % {"port": free_port(), "publish_port": free_port()})
    result = nginxws(nginxws_bin, "-t", "-c", str(conf), "-g", "error_log stderr;", cwd=tmp_path)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        0,
        f"nginxws: configuration file {conf} test is successful",
    )


def test_t_refuses_channels_without_websocket(nginxws_bin: str, tmp_path: Path) -> None:
    conf = tmp_path / "channels.conf"
    conf.write_text("events {}\nhttp {\n    server {\n        location /chat { websocket_channels news; }\n    }\n}\n")
    result = nginxws(nginxws_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (
        1,
        f'nginxws: [emerg] "websocket_channels" directive requires "websocket" in the same location in {conf}:4\n'
        f"nginxws: configuration file {conf} test failed\n",
    )


def test_t_reports_the_error_then_test_failed(nginxws_bin: str, tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("events {\n}\nfoo;\n")
    result = nginxws(nginxws_bin, "-t", "-c", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f'nginxws: [emerg] unknown directive "foo" in {conf}:3\n'
        f"nginxws: configuration file {conf} test failed\n"
    )


def test_a_config_error_without_t_is_one_emerg_line(nginxws_bin: str, tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("events {\n}\nfoo;\n")
    result = nginxws(nginxws_bin, "-c", str(conf), cwd=tmp_path)
    assert (result.returncode, result.stderr) == (1, f'nginxws: [emerg] unknown directive "foo" in {conf}:3\n')


def test_a_missing_config_file_is_one_emerg_line(nginxws_bin: str, tmp_path: Path) -> None:
    result = nginxws(nginxws_bin, "-p", str(tmp_path), cwd=tmp_path)
    expected = f'nginxws: [emerg] open() "{tmp_path}/conf/nginx.conf" failed (2: No such file or directory)\n'
    assert (result.returncode, result.stderr) == (1, expected)


def test_a_relative_c_is_taken_from_the_prefix(nginxws_bin: str, conf: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = nginxws(nginxws_bin, "-t", "-p", str(conf.parent), "-c", conf.name, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert f"the configuration file {conf} syntax is ok" in result.stderr


def test_the_prefix_defaults_to_the_installation_not_the_current_directory(nginxws_bin: str, conf: Path) -> None:
    assert sys.prefix != sys.base_prefix, "the suite runs in a virtual environment"
    result = nginxws(nginxws_bin, "-t", cwd=conf.parent)
    missing = f"{INSTALL_PREFIX}conf/nginx.conf"
    assert (result.returncode, result.stderr.splitlines()[0]) == (
        1, f'nginxws: [emerg] open() "{missing}" failed (2: No such file or directory)')
    result = nginxws(nginxws_bin, "-t", "-c", conf.name, cwd=conf.parent)
    assert f'open() "{INSTALL_PREFIX}{conf.name}" failed' in result.stderr


def test_a_relative_p_is_taken_from_the_current_directory(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-t", "-p", ".", "-c", conf.name, cwd=conf.parent)
    assert result.returncode == 0, result.stderr
    assert f"the configuration file {conf} syntax is ok" in result.stderr


def test_g_directives_are_applied_and_errors_say_command_line(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-t", "-p", str(conf.parent), "-c", str(conf), "-g", "foo;", cwd=conf.parent)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        'nginxws: [emerg] unknown directive "foo" in command line',
        f"nginxws: configuration file {conf} test failed",
    ]


def test_warnings_are_printed_before_the_verdict(nginxws_bin: str, conf: Path) -> None:
    conf.write_text(conf.read_text().replace("http {", "http {\n    sendfile on;", 1))
    result = nginxws(nginxws_bin, "-t", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    lines = result.stderr.splitlines()
    assert result.returncode == 0
    assert re.fullmatch(rf'nginxws: \[warn\] .*"sendfile".* in {re.escape(str(conf))}:\d+', lines[0])
    assert lines[1:] == [
        f"nginxws: the configuration file {conf} syntax is ok",
        f"nginxws: configuration file {conf} test is successful",
    ]


@pytest.mark.parametrize("flags", [["-tq"], ["-t", "-q"], ["-qt"]])
def test_q_silences_everything_but_errors(nginxws_bin: str, conf: Path, flags: list[str]) -> None:
    conf.write_text(conf.read_text().replace("http {", "http {\n    sendfile on;", 1))
    result = nginxws(nginxws_bin, *flags, "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_q_still_reports_errors(nginxws_bin: str, conf: Path) -> None:
    conf.write_text("foo;\n")
    result = nginxws(nginxws_bin, "-tq", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert result.returncode == 1
    assert result.stderr == (
        f'nginxws: [emerg] unknown directive "foo" in {conf}:1\n'
        f"nginxws: configuration file {conf} test failed\n"
    )


def test_t_fails_when_a_log_file_cannot_be_opened(nginxws_bin: str, conf: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "error.log"
    conf.write_text(f"error_log {missing};\n" + conf.read_text())
    result = nginxws(nginxws_bin, "-t", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        f'nginxws: [emerg] open() "{missing}" failed (2: No such file or directory)',
        f"nginxws: configuration file {conf} test failed",
    ]


def test_T_dumps_every_file_read(nginxws_bin: str, conf: Path) -> None:
    included = conf.parent / "servers.conf"
    included.write_text("# included\nserver {\n    listen 127.0.0.1:1;\n}\n")
    main_text = conf.read_text().replace("http {", "http {\n    include servers.conf;", 1)
    conf.write_text(main_text)
    result = nginxws(nginxws_bin, "-T", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert result.stdout == (
        f"# configuration file {conf}:\n{main_text}\n"
        f"# configuration file {included}:\n{included.read_text()}\n"
    )


def test_T_with_q_still_dumps(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-Tq", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"# configuration file {conf}:\n{conf.read_text()}\n"


def test_T_into_a_closed_pipe_is_not_an_error(nginxws_bin: str, conf: Path) -> None:
    proc = subprocess.Popen(
        [nginxws_bin, "-T", "-p", str(conf.parent), "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=conf.parent,
    )
    proc.stdout.close()  # like `nginxws -T | head -0`
    stderr = proc.stderr.read().decode()
    assert proc.wait(TIMEOUT) == 0
    assert stderr.endswith("test is successful\n")


def test_v_with_t_shows_the_version_then_tests(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-vt", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "nginxws version: nginxws/0.1.0",
        f"nginxws: the configuration file {conf} syntax is ok",
        f"nginxws: configuration file {conf} test is successful",
    ]


# --- signalling -------------------------------------------------------------------


def test_s_without_a_pid_file(nginxws_bin: str, conf: Path) -> None:
    result = nginxws(nginxws_bin, "-s", "reload", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    pid_file = conf.parent / "logs" / "nginxws.pid"
    expected = f'nginxws: [error] open() "{pid_file}" failed (2: No such file or directory)\n'
    assert (result.returncode, result.stderr) == (1, expected)


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        ("", ""),
        ("\n", ""),
        ("abc\n", "abc"),
        ("12x\n", "12x"),
        ("-5\n", "-5"),
        ("0\n", "0"),
        ("2147483648\n", "2147483648"),
        ("123456789012345678901234567890\n", "1234567890123456789012"),
    ],
)
def test_s_with_an_invalid_pid(nginxws_bin: str, conf: Path, content: str, shown: str) -> None:
    pid_file = conf.parent / "logs" / "nginxws.pid"
    pid_file.write_text(content)
    result = nginxws(nginxws_bin, "-s", "stop", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    expected = f'nginxws: [error] invalid PID number "{shown}" in "{pid_file}"\n'
    assert (result.returncode, result.stderr) == (1, expected)


def test_s_with_a_stale_pid(nginxws_bin: str, conf: Path) -> None:
    gone = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    (conf.parent / "logs" / "nginxws.pid").write_text(f"{gone}\n")
    result = nginxws(nginxws_bin, "-s", "reload", "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
    expected = f"nginxws: [alert] kill({gone}, {signal.SIGHUP.value}) failed (3: No such process)\n"
    assert (result.returncode, result.stderr) == (1, expected)


RECORDER = """\
import os, signal, sys
record, pid_file = sys.argv[1], sys.argv[2]
def note(signo, frame):
    with open(record, "a") as f:
        f.write(signal.Signals(signo).name + "\\n")
for signo in (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT, signal.SIGTERM):
    signal.signal(signo, note)
with open(pid_file + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\\n")
os.rename(pid_file + ".tmp", pid_file)
while True:
    signal.pause()
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [("stop", "SIGTERM"), ("quit", "SIGQUIT"), ("reload", "SIGHUP"), ("reopen", "SIGUSR1")],
)
def test_s_sends_the_signal_named_to_the_pid_in_the_pid_file(
    nginxws_bin: str, conf: Path, name: str, expected: str
) -> None:
    pid_file = conf.parent / "logs" / "nginxws.pid"
    record = conf.parent / "signals"
    recorder = subprocess.Popen([sys.executable, "-c", RECORDER, str(record), str(pid_file)])
    try:
        assert poll(pid_file.exists, TIMEOUT), "the recorder did not start"
        result = nginxws(nginxws_bin, "-s", name, "-p", str(conf.parent), "-c", str(conf), cwd=conf.parent)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
        assert poll(record.exists, TIMEOUT)
        assert poll(lambda: record.read_text().endswith("\n"), TIMEOUT)
        assert record.read_text() == f"{expected}\n"
    finally:
        recorder.kill()
        recorder.wait(TIMEOUT)


# --- running --------------------------------------------------------------------------


def sample_conf(port: int, publish_port: int = 8081) -> str:
    text = (Path(__file__).parents[2] / "sample.conf").read_text()
    return text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
        "127.0.0.1:8081", f"127.0.0.1:{publish_port}")


def test_sample_conf_passes_t(nginxws_bin: str, tmp_path: Path) -> None:
    conf = tmp_path / "sample.conf"
    conf.write_text(sample_conf(8080))
    result = nginxws(nginxws_bin, "-t", "-p", str(tmp_path), "-c", conf.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith(f"nginxws: configuration file {conf} test is successful\n")


def test_sample_conf_serves_in_the_foreground_until_s_stop(nginxws_bin: str, run_nginxws, free_port) -> None:
    server = run_nginxws(sample_conf(free_port(), free_port()))
    pid_file = server.prefix / "nginxws.pid"
    # The listen socket accepts before the pid file is written (nginx orders it
    # the same way), so wait for the file rather than read it at once.
    assert poll(lambda: pid_file.exists() and pid_file.read_text() == f"{server.pid}\n", 10), (
        pid_file.read_text() if pid_file.exists() else "no pid file")
    result = nginxws(nginxws_bin, "-p", str(server.prefix), "-c", server.conf.name, "-s", "stop", cwd=server.prefix)
    assert (result.returncode, result.stderr) == (0, "")
    assert server.wait_exit() == 0
    assert not (server.prefix / "nginxws.pid").exists()
    assert "Traceback" not in server.stderr()


def test_sample_conf_channels_work_as_the_readme_shows(run_nginxws, free_port) -> None:
    port, publish_port = free_port(), free_port()
    server = run_nginxws(sample_conf(port, publish_port))
    with connect(f"ws://127.0.0.1:{port}/ws?room=lobby", open_timeout=TIMEOUT) as ws:
        ws.recv(timeout=TIMEOUT)  # the welcome
        answer = httpx.post(f"http://127.0.0.1:{publish_port}/pub", params={"channel": "lobby"},
                            content="hello, lobby", timeout=TIMEOUT)
        assert answer.status_code == 202
        assert ws.recv(timeout=TIMEOUT) == "hello, lobby"
    server.stop()
