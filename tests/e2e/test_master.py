"""The master and its workers, end to end: a real process tree, real clients.

Every test starts ``nginxws`` with ``master_process on`` and checks what an
operator relies on: pushes reach the worker that holds the client and no
one else, a killed worker is replaced, a reload drops nobody, a broken
reload changes nothing, QUIT drains, TERM is fast, USR1 reopens logs, and
``nginxws -s`` drives a daemonized master.  After each test no worker is
left as a zombie and the master holds no descriptor it did not hold before.

Which worker holds a client is read from its push port; which pid owns a
push port from the master's ``worker process PID accepts pushes on ...``
notice.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.clients import PUSH_URL, connection_refused
from support.processes import fd_targets, poll, processes
from support.servers import Server, server_conf
from support.wsclient import RawClient
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

TIMEOUT = 10.0  # seconds for any one wait in these tests

ACCEPTS = re.compile(r"\[notice\] \d+#0: worker process (\d+) accepts pushes on 127\.0\.0\.1:(\d+)$", re.M)


@dataclass
class Master(Server):
    """A running master: its process, files (in ``logs/``) and port."""

    def worker_ports(self) -> dict[int, int]:
        """Push port -> pid of every worker that ever reported ready."""
        return {int(port): int(pid) for pid, port in ACCEPTS.findall(self.error_log())}

    def workers(self) -> list[int]:
        return [pid for pid, state in children(self.pid) if state != "Z"]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every child of ``pid``."""
    return [(child, state) for child, state, parent, _ in processes() if parent == pid]


def descriptors(pid: int) -> Counter:
    """What the open descriptors of ``pid`` are, by kind (``socket``, ``pipe``, a path...)."""
    return Counter(target.split(":")[0] if ":[" in target else target for target in fd_targets(pid))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def start_master(run_nginxws, free_port, tmp_path):
    """``start_master(workers=4, websocket="", main="", daemon="off", listen_options="")`` -> Master.

    Waits until every worker reported ready; at teardown checks that no
    worker is a zombie and no traceback was logged.
    """
    started: list[Master] = []

    def start(*, workers: int = 4, websocket: str = "", main: str = "", daemon: str = "off", wait: bool = True,
              listen_options: str = ""):
        port = free_port()
        text = master_conf(tmp_path / "logs", port, workers=workers, websocket=websocket, main=main, daemon=daemon,
                           listen_options=listen_options)
        master = Master(run_nginxws(text, wait=wait), port, tmp_path / "logs")
        started.append(master)
        if wait and "master_process off" not in main:
            master.wait_log(ACCEPTS.pattern, count=workers)
        return master

    yield start
    for master in started:
        assert not [pid for pid, state in children(master.pid) if state == "Z"], "zombie workers"
        master.assert_no_traceback()


def master_conf(logs: Path, port: int, *, workers: int = 4, websocket: str = "", main: str = "",
                daemon: str = "off", listen_options: str = "") -> str:
    """The configuration ``start_master`` runs: ``workers`` worker processes, ``main`` added to the main context."""
    return server_conf(logs=logs, listen=f"127.0.0.1:{port}{listen_options}", websocket=websocket,
                       main=f"daemon {daemon};\nworker_processes {workers};\n{main}")


def rewrite(master: Master, **changes) -> None:
    """Replace the running configuration file with the same template and ``changes``."""
    master.run.conf.write_text(master_conf(master.logs, master.port, **changes))


def welcome(ws) -> re.Match:
    """The push URL of a client's welcome (one, on 127.0.0.1, for ``/ws``)."""
    match = PUSH_URL.fullmatch(ws.recv(timeout=TIMEOUT))
    assert match and (match["host"], match["path"]) == ("127.0.0.1", "/ws")
    return match


def push(url: str, body: str) -> int:
    return httpx.post(url, content=body, timeout=TIMEOUT).status_code


def push_url(match: re.Match, port: int | None = None) -> str:
    return f"http://127.0.0.1:{port or match['port']}/ws?id={match['id']}"


def connect_spread(master: Master, stack: ExitStack, minimum_workers: int, limit: int = 60) -> list[tuple]:
    """Clients (``(ws, welcome)``, closed by ``stack``) until they sit on ``minimum_workers`` workers."""
    clients = []
    while len({int(m["port"]) for _, m in clients}) < minimum_workers:
        assert len(clients) < limit, "the kernel never handed a client to another worker"
        ws = stack.enter_context(connect(master.url, open_timeout=TIMEOUT))
        clients.append((ws, welcome(ws)))
    return clients


# -- push routing -------------------------------------------------------------


async def _pipelined_pushes(port: int, pushes: list[tuple[str, str]]) -> list[int]:
    """Send every ``(id, body)`` push over one connection, pipelined; the answers' statuses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = (
        f"POST /ws?id={push_id} HTTP/1.1\r\nHost: pusher\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        for push_id, body in pushes
    )
    writer.write("".join(requests).encode())
    answers = b""
    try:
        async with asyncio.timeout(TIMEOUT):
            while answers.count(b"\r\n\r\n") < len(pushes) and (chunk := await reader.read(65536)):
                answers += chunk
    finally:
        writer.close()
    return [int(status) for status in re.findall(rb"^HTTP/1\.1 (\d{3}) ", answers, re.M)]


async def _clients_and_pushes(url: str, clients: int, pushes_each: int) -> tuple[set[int], int]:
    sockets = await asyncio.gather(*(aconnect(url, open_timeout=TIMEOUT) for _ in range(clients)))
    try:
        welcomes = [PUSH_URL.fullmatch(await asyncio.wait_for(ws.recv(), TIMEOUT)) for ws in sockets]
        by_worker: dict[int, list[tuple[str, str]]] = {}
        for i, match in enumerate(welcomes):
            by_worker.setdefault(int(match["port"]), []).extend((match["id"], f"{i}:{j}") for j in range(pushes_each))

        async def receive(ws) -> list[str]:
            return [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(pushes_each)]

        async def misroute(match: re.Match) -> int:
            other = next(port for port in by_worker if port != int(match["port"]))
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                return (await http.post(push_url(match, other), content="misrouted")).status_code

        received, statuses, misrouted = await asyncio.gather(
            asyncio.gather(*(receive(ws) for ws in sockets)),
            asyncio.gather(*(_pipelined_pushes(port, pushes) for port, pushes in by_worker.items())),
            asyncio.gather(*(misroute(match) for match in welcomes[::40])),
        )
        assert [len(s) for s in statuses] == [len(p) for p in by_worker.values()]
        assert {status for answers in statuses for status in answers} == {204}
        assert set(misrouted) == {404}
        for i, messages in enumerate(received):
            assert messages == [f"{i}:{j}" for j in range(pushes_each)]

        async def nothing_more(ws) -> bool:
            try:
                await asyncio.wait_for(ws.recv(), 0.3)
            except asyncio.TimeoutError:
                return True
            return False

        assert all(await asyncio.gather(*(nothing_more(ws) for ws in sockets)))
        return set(by_worker), sum(map(len, received))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


def test_pushes_reach_the_worker_holding_the_client_and_nobody_else(start_master):
    master = start_master(workers=4)
    ports, delivered = asyncio.run(_clients_and_pushes(master.url, clients=400, pushes_each=10))
    assert len(ports) > 1, "400 clients all on one worker"
    assert ports <= set(master.worker_ports())
    assert delivered == 4000


def test_workers_are_titled_as_nginx_and_get_worker_rlimit_nofile(start_master):
    master = start_master(workers=2, main="worker_rlimit_nofile 4000;")
    title = Path(f"/proc/{master.pid}/cmdline").read_bytes().rstrip(b"\0").decode()
    assert title.startswith("nginxws: master process ") and " -c " in title
    for pid in master.workers():
        assert Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0") == b"nginxws: worker process"
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert re.search(r"^Max open files\s+4000\s+4000\s", limits, re.M), limits


def test_worker_rlimit_nofile_applies_to_the_single_process_too(start_master):
    master = start_master(workers=1, main="master_process off; worker_rlimit_nofile 3000;")
    # The listen socket accepts before the limit is set; the first welcome
    # comes from the worker, which runs only once it is.
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        welcome(ws)
    limits = Path(f"/proc/{master.pid}/limits").read_text()
    assert re.search(r"^Max open files\s+3000\s+3000\s", limits, re.M), limits


# -- crash recovery -------------------------------------------------------------


def test_killed_worker_is_replaced_and_the_others_keep_their_clients(start_master):
    master = start_master(workers=4)
    before = descriptors(master.pid)
    stack = ExitStack()
    clients = connect_spread(master, stack, minimum_workers=2)
    victim_port = int(clients[0][1]["port"])
    victim = master.worker_ports()[victim_port]

    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    master.wait_log(rf"\[alert\] \d+#0: worker process {victim} exited on signal 9$")
    (started,) = master.wait_log(r"\[notice\] \d+#0: start worker process (\d+)$", count=5)[4:]
    replacement = int(started[1])
    master.wait_log(rf"worker process {replacement} accepts pushes on")
    assert time.monotonic() - killed_at < 1.0, "the replacement took more than a second"
    assert len(master.workers()) == 4 and victim not in master.workers()

    for ws, match in clients:
        if int(match["port"]) == victim_port:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
        else:
            assert push(push_url(match), "still here") == 204
            assert ws.recv(timeout=TIMEOUT) == "still here"
    stack.close()
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        welcome(ws)
    assert poll(lambda: descriptors(master.pid) == before, TIMEOUT), (before, descriptors(master.pid))


def test_workers_of_a_killed_master_drain_and_exit(start_master):
    master = start_master(workers=2)
    workers = master.workers()
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        match = welcome(ws)
        os.kill(master.pid, signal.SIGKILL)
        master.run.proc.wait(TIMEOUT)
        # A graceful shutdown: the open session still works, then the worker exits.
        assert push(push_url(match), "after the master") == 204
        assert ws.recv(timeout=TIMEOUT) == "after the master"
    assert poll(lambda: not any(alive(pid) for pid in workers), TIMEOUT), "orphaned workers"
    assert "master process is gone, gracefully shutting down" in master.error_log()


def test_worker_that_cannot_start_fails_loudly_not_in_a_loop(start_master):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        master = start_master(workers=1, websocket=f"push_listen=127.0.0.1:{busy}", wait=False)
        assert master.run.wait_exit(TIMEOUT) == 1
    log = master.error_log()
    assert re.search(rf"\[emerg\] \d+#0: bind\(\) to 127\.0\.0\.1:{busy} failed", log), log
    assert re.search(r"\[alert\] \d+#0: worker process \d+ exited with fatal code 2 and cannot be respawned", log)
    assert log.count("start worker process ") == 1
    assert not (master.logs / "nginxws.pid").exists()


# -- reload ---------------------------------------------------------------------------


async def _reload_with_live_clients(master: Master, clients: int) -> None:
    sockets = await asyncio.gather(*(aconnect(master.url, open_timeout=TIMEOUT) for _ in range(clients)))
    welcomes = [PUSH_URL.fullmatch(await asyncio.wait_for(ws.recv(), TIMEOUT)) for ws in sockets]
    old_ports = set(master.worker_ports())
    rewrite(master, workers=2, websocket="pingintvl=300 idleintvl=5000")
    master.signal(signal.SIGHUP)
    await asyncio.to_thread(master.wait_log, r"\[notice\] \d+#0: gracefully shutting down$", 2)
    new_ports = set(master.worker_ports()) - old_ports
    assert len(new_ports) == 2

    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        answers = await asyncio.gather(*(http.post(push_url(m), content=m["id"]) for m in welcomes))
    assert {a.status_code for a in answers} == {204}
    for ws, match in zip(sockets, welcomes):
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == match["id"]

    newcomer = await asyncio.to_thread(RawClient, master.port, auto_pong=False)
    match = PUSH_URL.fullmatch(await asyncio.to_thread(newcomer.message))
    assert int(match["port"]) in new_ports
    assert await asyncio.to_thread(newcomer.ping, 2.0) is not None, "the new pingintvl does not apply"
    newcomer.close()

    await asyncio.gather(*(ws.close() for ws in sockets))


def test_reload_drops_no_client_and_new_clients_get_the_new_config(start_master):
    master = start_master(workers=2, websocket="pingintvl=60000")
    old_workers = set(master.workers())
    before = descriptors(master.pid)
    asyncio.run(_reload_with_live_clients(master, clients=100))
    assert f"{master.pid}#0: signal 1 (SIGHUP) received, reconfiguring" in master.error_log()
    for pid in old_workers:
        master.wait_log(rf"worker process {pid} exited with code 0$")
    assert len(master.workers()) == 2 and not old_workers & set(master.workers())
    assert poll(lambda: descriptors(master.pid) == before, TIMEOUT), (before, descriptors(master.pid))


def test_a_session_on_an_old_worker_stays_open_and_pushable_after_the_reload(start_master):
    master = start_master(workers=1)
    (old_worker,) = master.workers()
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        match = welcome(ws)
        rewrite(master, workers=1)
        master.signal(signal.SIGHUP)
        master.wait_log(ACCEPTS.pattern, count=2)
        # The new worker is up and the old one has been told to stop, by
        # whichever signal: from here on it must drain, not close.
        master.wait_log(rf"\[notice\] {old_worker}#0: (?:gracefully shutting down|exiting)$")
        try:
            for n in range(3):
                assert push(push_url(match), f"after the reload {n}") == 204
                assert ws.recv(timeout=TIMEOUT) == f"after the reload {n}"
            ws.send("echo")
            assert ws.recv(timeout=TIMEOUT) == "echo"
        except (ConnectionClosed, httpx.TransportError) as err:
            pytest.fail(f"the session on the old worker did not survive the reload: {err!r}")
        assert alive(old_worker), "the old worker left while it still held a session"
    master.wait_log(rf"worker process {old_worker} exited with code 0$")


def test_a_draining_worker_reopens_its_logs_and_obeys_a_stop(start_master):
    # An old generation may drain for hours: log rotation (USR1) and a stop
    # (TERM) must still reach it, and the sessions it closes must be logged.
    master = start_master(workers=1)
    (old_worker,) = master.workers()
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        welcome(ws)
        rewrite(master, workers=1)
        master.signal(signal.SIGHUP)
        master.wait_log(rf"\[notice\] {old_worker}#0: gracefully shutting down$")
        master.signal(signal.SIGUSR1)
        master.wait_log(rf"\[notice\] {old_worker}#0: reopening logs$")
        master.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, "cut, not closed: KILLed?"
    assert master.run.wait_exit(TIMEOUT) == 0
    master.wait_log(rf"worker process {old_worker} exited with code 0$")
    assert re.search(r'"GET /ws HTTP/1\.1" 101 ', (master.logs / "access.log").read_text())


def listening_sockets(pid: int, port: int) -> set[str]:
    """Inodes of the sockets ``pid`` has open that listen on 127.0.0.1:``port``."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        inodes = {f[9] for f in (line.split() for line in table) if f[1] == wanted and f[3] == "0A"}
    return {target[8:-1] for target in fd_targets(pid) if target.startswith("socket:[") and target[8:-1] in inodes}


def test_reuseport_gives_every_worker_its_own_socket_and_reload_strands_no_client(start_master):
    master = start_master(workers=2, listen_options=" reuseport")
    workers = master.workers()
    own = [listening_sockets(pid, master.port) for pid in workers]
    assert all(len(sockets) == 1 for sockets in own) and own[0] != own[1]
    with ExitStack() as stack:
        connect_spread(master, stack, minimum_workers=2)
    rewrite(master, workers=2, listen_options=" reuseport", websocket="pingintvl=60000")
    master.signal(signal.SIGHUP)
    for pid in workers:
        master.wait_log(rf"worker process {pid} exited with code 0$")
    # Were a drained worker's socket still open, the kernel would queue some
    # of these connections on it and they would never be answered.
    for _ in range(40):
        with connect(master.url, open_timeout=TIMEOUT) as ws:
            welcome(ws)
    assert len(listening_sockets(master.pid, master.port)) == 2


def test_reload_with_a_broken_config_keeps_the_old_one_serving(start_master):
    master = start_master(workers=2)
    workers = set(master.workers())
    master.run.conf.write_text(master.run.conf.read_text().replace("websocket ;", "websocket bogus=1;"))
    master.signal(signal.SIGHUP)
    master.wait_log(r"\[emerg\] \d+#0: .* in .*nginx\.conf:\d+$")
    assert set(master.workers()) == workers
    assert master.error_log().count("start worker process ") == 2
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        match = welcome(ws)
        assert push(push_url(match), "old config") == 204
        assert ws.recv(timeout=TIMEOUT) == "old config"


def test_reload_opens_new_listen_addresses_and_closes_removed_ones(start_master, free_port):
    master = start_master(workers=1)
    old_port, new_port = master.port, free_port()
    master.port = new_port
    rewrite(master, workers=1)
    master.signal(signal.SIGHUP)
    master.wait_log(r"exited with code 0$")
    with connect(f"ws://127.0.0.1:{new_port}/ws", open_timeout=TIMEOUT) as ws:
        welcome(ws)
    assert poll(lambda: connection_refused(old_port), TIMEOUT), "the removed listen address still accepts"


def test_hup_without_a_master_process_is_logged_and_ignored(start_master):
    master = start_master(workers=1, main="master_process off;")
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        welcome(ws)
    master.signal(signal.SIGHUP)
    master.wait_log(r'\[notice\] \d+#0: reconfiguring needs "master_process on"$')
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        welcome(ws)


# -- shutdown -------------------------------------------------------------------------


def test_quit_drains_open_sessions_then_exits(start_master):
    master = start_master(workers=2)
    with connect(master.url, open_timeout=TIMEOUT) as ws:
        match = welcome(ws)
        master.signal(signal.SIGQUIT)
        master.wait_log(r"gracefully shutting down$", count=2)
        assert poll(lambda: len(master.workers()) == 1, TIMEOUT), "the idle worker did not leave"
        assert poll(lambda: connection_refused(master.port), TIMEOUT), "still accepting new clients"
        assert push(push_url(match), "draining") == 204
        assert ws.recv(timeout=TIMEOUT) == "draining"
        ws.send("echo")
        assert ws.recv(timeout=TIMEOUT) == "echo"
        assert master.run.proc.poll() is None
    assert master.run.wait_exit(TIMEOUT) == 0
    assert re.search(r"\[notice\] \d+#0: exit$", master.error_log(), re.M)
    assert not (master.logs / "nginxws.pid").exists()


def test_term_is_fast_and_closes_sessions_with_1001(start_master):
    master = start_master(workers=4)
    with ExitStack() as stack:
        clients = [stack.enter_context(connect(master.url, open_timeout=TIMEOUT)) for _ in range(20)]
        for ws in clients:
            welcome(ws)
        started = time.monotonic()
        master.signal(signal.SIGTERM)
        assert master.run.wait_exit(TIMEOUT) == 0
        assert time.monotonic() - started < 2.0
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert not (master.logs / "nginxws.pid").exists()


# -- logs -----------------------------------------------------------------------------


def test_ctrl_c_to_the_whole_process_group_is_a_clean_fast_shutdown(start_master):
    # A terminal's Ctrl-C sends INT to every process of the group: the workers
    # get it directly and the master's TERM after it; none may die of a signal.
    master = start_master(workers=2)
    os.killpg(master.pid, signal.SIGINT)
    assert master.run.wait_exit() == 0
    master.wait_log(r"\[notice\] \d+#0: exit$", count=3)
    assert "exited on signal" not in master.error_log()


def test_usr1_reopens_a_rotated_access_log(start_master):
    master = start_master(workers=2)
    ports = list(master.worker_ports())
    for port in ports:
        assert push(f"http://127.0.0.1:{port}/ws?id=nobody", "") == 404
    access, rotated = master.logs / "access.log", master.logs / "access.log.1"
    assert poll(lambda: access.exists() and access.read_text().count(" 404 ") == 2, TIMEOUT)
    access.rename(rotated)
    master.signal(signal.SIGUSR1)
    master.wait_log(r"\[notice\] \d+#0: signal 10 \(SIGUSR1\) received, reopening logs$")
    master.wait_log(r"\[notice\] \d+#0: reopening logs$", count=3)
    for port in ports:
        assert push(f"http://127.0.0.1:{port}/ws?id=nobody", "") == 404
    assert poll(lambda: access.exists() and access.read_text().count(" 404 ") == 2, TIMEOUT)
    assert rotated.read_text().count(" 404 ") == 2


# -- daemon and nginxws -s ---------------------------------------------------------------


def test_signal_commands_drive_a_daemonized_master(start_master, nginxws_bin):
    master = start_master(workers=2, daemon="on", wait=False)
    assert master.run.wait_exit(TIMEOUT) == 0, master.run.stderr()
    pid_file = master.logs / "nginxws.pid"
    daemon = int(pid_file.read_text())
    command = [nginxws_bin, "-p", str(master.run.prefix), "-c", str(master.run.conf), "-s"]
    try:
        assert daemon != master.pid and alive(daemon)
        assert os.getsid(daemon) not in (master.pid, os.getsid(0)), "the daemon has a session of its own"
        assert os.readlink(f"/proc/{daemon}/fd/2") == "/dev/null"
        with connect(master.url, open_timeout=TIMEOUT) as ws:
            welcome(ws)

        subprocess.run([*command, "reload"], check=True, timeout=TIMEOUT)
        master.wait_log(rf"{daemon}#0: signal 1 \(SIGHUP\) received, reconfiguring$")
        master.wait_log(r"exited with code 0$", count=2)
        subprocess.run([*command, "reopen"], check=True, timeout=TIMEOUT)
        master.wait_log(rf"{daemon}#0: signal 10 \(SIGUSR1\) received, reopening logs$")
        workers = [pid for pid, state in children(daemon) if state != "Z"]
        assert len(workers) == 2
        subprocess.run([*command, "quit"], check=True, timeout=TIMEOUT)
        assert poll(lambda: not alive(daemon), TIMEOUT)
        assert not any(alive(pid) for pid in workers) and not pid_file.exists()

        second = start_master(workers=1, daemon="on", wait=False)
        assert second.run.wait_exit(TIMEOUT) == 0
        daemon = int(pid_file.read_text())
        subprocess.run([*command[:4], str(second.run.conf), "-s", "stop"], check=True, timeout=TIMEOUT)
        assert poll(lambda: not alive(daemon), TIMEOUT)
        assert not pid_file.exists()
    finally:
        if alive(daemon):
            os.kill(daemon, signal.SIGKILL)
