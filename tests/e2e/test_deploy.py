"""Deploying without the repository's Makefile, as docs/deploy.md says.

``pip install .`` into a new virtual environment gives a working
``nginxws`` whose prefix is that environment; it finds its configuration and
its master from any directory.  contrib/'s files work as shipped: the
systemd unit passes ``systemd-analyze verify`` and its commands, run in
order as systemd runs them, start, reload and stop a daemon; the logrotate
snippet passes ``logrotate -d`` and, forced, rotates the logs of a running
server that then writes to new files.  contrib/'s paths name /opt/nginxws;
the tests put the new environment in its place.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from support.processes import NginxwsRun, accepts, poll, wait_for_matches

REPOSITORY = Path(__file__).resolve().parents[2]
CONTRIB = REPOSITORY / "contrib"
SHIPPED_PREFIX = "/opt/nginxws"  # where contrib/'s files expect nginxws
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new virtual environment with ``pip install REPOSITORY`` in it: what a
    user who never runs make gets (non-editable, the server's dependencies
    only).  Its directory is that nginxws's default prefix."""
    venv = tmp_path_factory.mktemp("fresh") / "nginxws"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(REPOSITORY)],
                               capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture
def site(fresh_venv: Path, free_port) -> Path:
    """The new environment set up as docs/deploy.md says: contrib/nginx.conf
    as its conf/nginx.conf (on loopback ports, one worker) and a logs/
    directory.  Emptied again afterwards, for the next test."""
    (fresh_venv / "conf").mkdir(exist_ok=True)
    (fresh_venv / "logs").mkdir(exist_ok=True)
    text = (CONTRIB / "nginx.conf").read_text()
    text = text.replace("listen       8080;", f"listen       127.0.0.1:{free_port()};")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{free_port()}")
    text = text.replace("worker_processes  auto;", "worker_processes  1;")
    (fresh_venv / "conf" / "nginx.conf").write_text(text)
    yield fresh_venv
    for path in (*(fresh_venv / "logs").iterdir(), fresh_venv / "conf" / "nginx.conf"):
        path.unlink()


def installed(venv: Path, name: str = "nginxws") -> str:
    return str(venv / "bin" / name)


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def listen_port(conf: Path) -> int:
    return int(re.search(r"listen\s+127\.0\.0\.1:(\d+);", conf.read_text())[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


# -- pip install . -------------------------------------------------------------------------


def test_the_wheel_holds_every_module_and_the_grammar(tmp_path: Path) -> None:
    built = run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(REPOSITORY)],
                cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("nginxws-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(path.relative_to(REPOSITORY)) for path in (REPOSITORY / "nginxws").rglob("*.py")}
    assert modules <= names, modules - names
    assert "nginxws/grammar/nginx.lark" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]


def test_pip_install_gives_a_working_nginxws_that_checks_sample_conf_from_anywhere(
    fresh_venv: Path, tmp_path: Path
) -> None:
    where = run([installed(fresh_venv, "python"), "-c", "import nginxws; print(nginxws.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(fresh_venv), where.stdout
    result = run([installed(fresh_venv), "-t", "-p", str(tmp_path), "-c", str(REPOSITORY / "sample.conf")],
                 cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, (
        f"nginxws: the configuration file {REPOSITORY}/sample.conf syntax is ok\n"
        f"nginxws: configuration file {REPOSITORY}/sample.conf test is successful\n"))


def test_the_default_prefix_is_the_environment_and_s_reload_finds_the_master_from_anywhere(
    site: Path, tmp_path: Path
) -> None:
    version = run([installed(site), "-V"], cwd=tmp_path)
    assert f"configure arguments: --prefix={site}/ --conf-path=conf/nginx.conf " in version.stderr
    started_in, elsewhere = tmp_path / "a", tmp_path / "b"
    started_in.mkdir()
    elsewhere.mkdir()
    assert run([installed(site), "-t"], cwd=elsewhere).returncode == 0
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen([installed(site), "-g", "daemon off;"], cwd=started_in, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    server = NginxwsRun(proc, site, site / "conf" / "nginx.conf", tmp_path / "stdout", tmp_path / "stderr")
    error_log = site / "logs" / "error.log"
    try:
        wait_for_matches(error_log.read_text, r"accepts pushes on ", timeout=TIMEOUT, where="error.log")
        assert (site / "logs" / "nginxws.pid").read_text() == f"{proc.pid}\n"
        reload = run([installed(site), "-s", "reload"], cwd=elsewhere)
        assert (reload.returncode, reload.stderr) == (0, "")
        wait_for_matches(error_log.read_text, rf"{proc.pid}#0: signal 1 \(SIGHUP\) received, reconfiguring$",
                         timeout=TIMEOUT, where="error.log")
        wait_for_matches(error_log.read_text, r"accepts pushes on ", count=2, timeout=TIMEOUT, where="error.log")
        quit_ = run([installed(site), "-s", "quit"], cwd=tmp_path)
        assert (quit_.returncode, quit_.stderr) == (0, "")
        assert proc.wait(TIMEOUT) == 0
    finally:
        assert not server.stop(), "nginxws had to be killed"


# -- contrib/nginxws.service -------------------------------------------------------------


def unit_for(venv: Path, tmp_path: Path) -> Path:
    """contrib/nginxws.service with the new environment for /opt/nginxws."""
    unit = tmp_path / "nginxws.service"
    unit.write_text((CONTRIB / "nginxws.service").read_text().replace(SHIPPED_PREFIX, str(venv)))
    return unit


@pytest.mark.apt
def test_the_systemd_unit_passes_systemd_analyze_verify(fresh_venv: Path, tmp_path: Path) -> None:
    tool = subprocess.run(["bash", str(REPOSITORY / "tests" / "contrib" / "install.sh")], timeout=600)
    assert tool.returncode == 0, "tests/contrib/install.sh could not install systemd"
    unit = unit_for(fresh_venv, tmp_path)
    # --recursive-errors=no: only this unit's faults count, not those of the
    # machine's other units; --man=no: no man pages are needed.
    verified = run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no", str(unit)], cwd=tmp_path)
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_the_units_commands_start_reload_and_stop_a_daemon_as_systemd_runs_them(site: Path, tmp_path: Path) -> None:
    """Type=forking: ExecStartPre, then ExecStart, which returns once the
    daemon is ready with PIDFile written; ExecReload; ExecStop, after which
    the daemon must be gone within TimeoutStopSec."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read_string(unit_for(site, tmp_path).read_text())
    service = unit["Service"]
    assert (service["Type"], service["KillMode"]) == ("forking", "mixed")

    def exec_(key: str) -> subprocess.CompletedProcess[str]:
        return run(shlex.split(service[key]), cwd=Path("/"))

    assert exec_("ExecStartPre").returncode == 0
    started = exec_("ExecStart")
    assert (started.returncode, started.stderr) == (0, ""), started.stderr
    pid_file = Path(service["PIDFile"])
    daemon = int(pid_file.read_text())
    try:
        assert accepts(("127.0.0.1", listen_port(site / "conf" / "nginx.conf")))
        error_log = site / "logs" / "error.log"
        reloaded = exec_("ExecReload")
        assert (reloaded.returncode, reloaded.stderr) == (0, "")
        wait_for_matches(error_log.read_text, rf"{daemon}#0: signal 1 \(SIGHUP\) received", timeout=TIMEOUT,
                         where="error.log")
        stopped = exec_("ExecStop")
        assert (stopped.returncode, stopped.stderr) == (0, "")
        stop_timeout = float(service["TimeoutStopSec"].removesuffix("s"))
        assert poll(lambda: not alive(daemon), stop_timeout), "the daemon outlived TimeoutStopSec"
        assert not pid_file.exists()
    finally:
        if alive(daemon):
            os.kill(daemon, signal.SIGKILL)


# -- contrib/nginxws.logrotate ----------------------------------------------------------


@pytest.mark.apt
def test_the_logrotate_snippet_rotates_and_nginxws_reopens(site: Path, tmp_path: Path) -> None:
    tool = subprocess.run(["bash", str(REPOSITORY / "tests" / "contrib" / "install.sh")], timeout=600)
    assert tool.returncode == 0, "tests/contrib/install.sh could not install logrotate"
    config = tmp_path / "nginxws.logrotate"
    config.write_text((CONTRIB / "nginxws.logrotate").read_text().replace(SHIPPED_PREFIX, str(site)))
    logrotate = ["logrotate", "--state", str(tmp_path / "state")]
    checked = run([*logrotate, "--debug", str(config)], cwd=tmp_path)
    assert checked.returncode == 0 and "error" not in checked.stderr.lower(), checked.stderr
    assert run([installed(site)], cwd=tmp_path).returncode == 0  # daemon on: returns once ready
    daemon = int((site / "logs" / "nginxws.pid").read_text())
    try:
        port = listen_port(site / "conf" / "nginx.conf")
        access, rotated = site / "logs" / "access.log", site / "logs" / "access.log.1"
        assert httpx.get(f"http://127.0.0.1:{port}/before", timeout=TIMEOUT).status_code == 404
        assert poll(lambda: "GET /before " in access.read_text(), TIMEOUT)
        forced = run([*logrotate, "--force", str(config)], cwd=tmp_path)
        assert forced.returncode == 0, forced.stderr
        # The worker's notice goes to the new error.log once it has reopened its files.
        error_log = site / "logs" / "error.log"
        wait_for_matches(lambda: error_log.read_text() if error_log.exists() else "",
                         r"\[notice\] \d+#0: reopening logs$", timeout=TIMEOUT, where="the new error.log")
        assert httpx.get(f"http://127.0.0.1:{port}/after", timeout=TIMEOUT).status_code == 404
        assert poll(lambda: access.exists() and "GET /after " in access.read_text(), TIMEOUT)
        assert "GET /before " in rotated.read_text() and "GET /after " not in rotated.read_text()
    finally:
        os.kill(daemon, signal.SIGTERM)
        if not poll(lambda: not alive(daemon), TIMEOUT):
            os.kill(daemon, signal.SIGKILL)
