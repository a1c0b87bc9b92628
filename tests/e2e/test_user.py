"""``user`` end to end: with a root master the workers run as ``nobody``,
bind a push port below 1024 first, and keep writing their logs after a
rotation and ``-s reopen``; a master that is not root warns and ignores it.

The logs live in a directory ``nobody`` can traverse (pytest's temporary
directories are root's, mode 0700): a worker that gave up root reopens its
logs by path, as nginx's do.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import httpx
import pytest
from support.clients import push_urls
from support.processes import STOP_TIMEOUT, NginxwsRun, poll, processes
from support.servers import Server, server_conf
from websockets.sync.client import connect

import nginxws

TIMEOUT = 10.0
NOBODY = pwd.getpwnam("nobody")
NOBODY_GROUP = grp.getgrgid(NOBODY.pw_gid).gr_name  # "nogroup" on Debian, "nobody" elsewhere
ACCEPTS = r"\[notice\] \d+#0: worker process \d+ accepts pushes on "


@pytest.fixture
def open_dir():
    """A directory under the system's temporary directory that every user can traverse."""
    path = Path(tempfile.mkdtemp(prefix="nginxws-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def ids(pid: int) -> dict[str, list[int]]:
    """The ``Uid``, ``Gid`` (real, effective, saved, filesystem) and ``Groups`` of a process."""
    found = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                found[key] = [int(n) for n in value.split()]
    return found


def workers_of(master: int) -> list[int]:
    return [pid for pid, state, parent, _ in processes() if parent == master and state != "Z"]


def free_low_ports(count: int) -> int:
    """A port below 1024 such that it and the ``count - 1`` after it are free on 127.0.0.1."""
    for first in range(1023 - count, 800, -1):
        try:
            for port in range(first, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError("no free ports below 1024 on 127.0.0.1")


def test_workers_run_as_the_user_and_keep_their_logs_across_reopen(run_nginxws, free_port, open_dir, nginxws_bin):
    port, push_port = free_port(), free_low_ports(2)
    text = server_conf(logs=open_dir, listen=f"127.0.0.1:{port}", websocket=f"push_listen=127.0.0.1:{push_port}",
                       main=f"user nobody {NOBODY_GROUP};\ndaemon off;\nworker_processes 2;")
    server = Server(run_nginxws(text), port, open_dir)
    server.wait_log(ACCEPTS, count=2)

    assert ids(server.pid)["Uid"] == [0, 0, 0, 0]
    workers = workers_of(server.pid)
    assert len(workers) == 2
    for pid in workers:
        worker = ids(pid)
        assert worker["Uid"] == [NOBODY.pw_uid] * 4
        assert worker["Gid"] == [NOBODY.pw_gid] * 4
        assert 0 not in worker["Groups"]

    def push_round(body: str) -> None:
        with connect(server.url, open_timeout=TIMEOUT) as ws:
            (url,) = push_urls(ws.recv(timeout=TIMEOUT))
            assert int(url["port"]) in (push_port, push_port + 1)  # bound as root, served as nobody
            assert httpx.post(url.group(0), content=body.encode(), timeout=TIMEOUT).status_code == 204
            assert ws.recv(timeout=TIMEOUT) == body

    push_round("before")
    access, error = open_dir / "access.log", open_dir / "error.log"
    assert poll(lambda: access.read_text().count(" 101 ") == 1, TIMEOUT)
    access.rename(open_dir / "access.log.1")
    error.rename(open_dir / "error.log.1")
    subprocess.run([nginxws_bin, "-p", str(server.prefix), "-c", str(server.run.conf), "-s", "reopen"],
                   check=True, timeout=TIMEOUT)
    server.wait_log(r"\[notice\] \d+#0: reopening logs$", count=2)  # both workers, in the new file
    assert "signal 10 (SIGUSR1) received, reopening logs" in (open_dir / "error.log.1").read_text()
    assert error.stat().st_uid == NOBODY.pw_uid and access.stat().st_uid == NOBODY.pw_uid

    push_round("after")
    assert poll(lambda: access.read_text().count(" 101 ") == 1 and access.read_text().count(" 204 ") == 1, TIMEOUT)
    logs = (open_dir / "error.log.1").read_text() + error.read_text()
    assert "[emerg]" not in logs and "[alert]" not in logs, logs


def python_for(user: pwd.struct_passwd, env: dict[str, str], cwd: Path) -> str:
    """An interpreter ``user`` can start, as the master starts its workers,
    that imports nginxws with ``env``.

    The test's own comes first; a virtual environment made from a Python
    under root's home (pyenv) is out of other users' reach, and then the
    system's Python of the same version, with the same packages on
    PYTHONPATH, is.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    tried = []
    for candidate in dict.fromkeys([sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]):
        started = subprocess.run(
            ["/bin/sh", "-c", 'exec "$0" -P -c "import nginxws.master"', candidate],
            user=user.pw_uid, group=user.pw_gid, extra_groups=[], env=env, cwd=cwd,
            capture_output=True, text=True, timeout=TIMEOUT,
        )
        if started.returncode == 0:
            return candidate
        tried.append(f"{candidate}: {started.stderr.strip()[-200:]}")
    pytest.fail(f"no Python {version} that {user.pw_name} can start:\n" + "\n".join(tried))


def test_a_master_not_started_as_root_warns_and_ignores_user(free_port, open_dir):
    os.chown(open_dir, NOBODY.pw_uid, NOBODY.pw_gid)
    port = free_port()
    conf = open_dir / "nginx.conf"
    conf.write_text(server_conf(logs=open_dir, listen=f"127.0.0.1:{port}",
                                main=f"user nobody {NOBODY_GROUP};\ndaemon off;\nworker_processes 1;"))
    root = str(Path(nginxws.__file__).resolve().parents[1])
    packages = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *packages]))
    python = python_for(NOBODY, env, open_dir)
    out, err = open_dir / "nginxws.stdout", open_dir / "nginxws.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [python, "-P", "-m", "nginxws", "-p", str(open_dir), "-c", str(conf)],
            user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], env=env, cwd=open_dir,
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True,
        )
    run = NginxwsRun(proc, open_dir, conf, out, err)
    try:
        server = Server(run, port, open_dir)
        server.wait_log(ACCEPTS, count=1)
        assert run.stderr() == (
            'nginxws: [warn] the "user" directive makes sense only if the master process runs with super-user '
            f"privileges, ignored in {conf}:2\n"
        )
        for pid in [proc.pid, *workers_of(proc.pid)]:
            assert ids(pid)["Uid"] == [NOBODY.pw_uid] * 4
        with connect(server.url, open_timeout=TIMEOUT) as ws:
            assert push_urls(ws.recv(timeout=TIMEOUT))
    finally:
        killed = run.stop()
        proc.wait(STOP_TIMEOUT)
    assert killed == [] and proc.returncode == 0
