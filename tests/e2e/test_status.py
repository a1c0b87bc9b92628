"""stub_status, websocket_metrics and websocket_health over HTTP, on the real process tree.

Every count is checked exactly after a known number of handshakes, pushes
and closes: a counter is incremented before the bytes that reveal its event
leave the server, and a connection leaves its gauge before the server
closes it.  So each helper here waits for what the server sends last (an
answer, the end of the connection) and the next scrape must see everything
before it.  Scrapes, refused handshakes and pushes use connections the
server closes (``Connection: close``), so the number of connections and
requests is known too.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.clients import PUSH_URL, handshake
from support.processes import poll
from support.servers import Server, server_conf
from support.wsclient import RawClient
from websockets.asyncio.client import connect

TIMEOUT = 10.0
ACCEPTS = re.compile(r"\[notice\] \d+#0: worker process (\d+) accepts pushes on 127\.0\.0\.1:(\d+)$", re.M)
LOCATIONS = """
        location = /basic_status { stub_status; access_log {logs}/status.log counts; }
        location = /metrics { websocket_metrics; }
        location = /health { websocket_health; }
        location /short { websocket pingintvl=100 idleintvl=300 max_message_size=16; }
"""
HTTP = "log_format counts '$status $connections_active $connections_reading $connections_writing $connections_waiting';"


@dataclass
class Host(Server):
    """A running nginxws with the report locations, and the count of what the test sent it."""

    connections: int = 0  # the test's connections to it (listen and push ports)
    requests: int = 0  # the test's HTTP requests to it (front door and push listeners)
    rewrite: Callable[..., None] = field(default=lambda **_: None)

    def worker_ports(self) -> dict[int, int]:
        """Push port -> pid of every worker that reported ready."""
        return {int(port): int(pid) for pid, port in ACCEPTS.findall(self.error_log())}

    async def get(self, path: str, extra: str = "", port: int | None = None) -> tuple[int, str]:
        """One request on a connection of its own, closed by the server; (status, body)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port or self.port)
        self.connections += 1
        self.requests += 1
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            answer = await reader.read()  # to the end: the server has closed
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    async def scrape(self) -> dict[tuple[str, tuple], float]:
        """The metrics, parsed by prometheus_client: (sample name, sorted labels) -> value."""
        status, text = await self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def stub_status(self) -> tuple[int, ...]:
        """Active, accepts, handled, requests, Reading, Writing, Waiting (this request counted)."""
        status, text = await self.get("/basic_status")
        assert status == 200
        match = re.fullmatch(r"Active connections: (\d+) \nserver accepts handled requests\n (\d+) (\d+) (\d+) \n"
                             r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n", text)
        assert match, repr(text)
        return tuple(map(int, match.groups()))

    async def health(self) -> tuple[int, str]:
        return await self.get("/health")

    async def push(self, port: int, pushes: list[tuple[str, str]]) -> list[int]:
        """Pipeline ``(id, body)`` pushes on one connection to ``port``, the last
        one closing it; the statuses of the answers."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self.connections += 1
        self.requests += len(pushes)
        requests = [f"POST /ws?id={push_id} HTTP/1.1\r\nHost: pusher\r\nContent-Length: {len(body)}\r\n"
                    f"{'Connection: close' + chr(13) + chr(10) if i == len(pushes) - 1 else ''}\r\n{body}"
                    for i, (push_id, body) in enumerate(pushes)]
        writer.write("".join(requests).encode())
        async with asyncio.timeout(TIMEOUT):
            answers = await reader.read()
        writer.close()
        return [int(status) for status in re.findall(rb"^HTTP/1\.1 (\d{3}) ", answers, re.M)]

    async def client(self, path: str = "/ws"):
        """A WebSocket client and its welcome's push URL match."""
        ws = await connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=TIMEOUT)
        self.connections += 1
        self.requests += 1
        return ws, PUSH_URL.fullmatch(await asyncio.wait_for(ws.recv(), TIMEOUT))

    async def close(self, ws) -> None:
        """Close a client; ``close`` returns once the server has closed the connection."""
        await asyncio.wait_for(ws.close(), TIMEOUT)


@pytest.fixture
def start_host(run_nginxws, free_port, tmp_path):
    """``start_host(workers=4, main="")`` -> Host, once every worker is ready and the generation serves."""
    started: list[Host] = []

    def start(*, workers: int = 4, main: str | None = None) -> Host:
        port = free_port()
        logs = tmp_path / "logs"

        def text(**changes) -> str:
            settings = {"workers": workers, "main": main, **changes}
            head = settings["main"] if settings["main"] is not None else (
                f"daemon off;\nworker_processes {settings['workers']};")
            return server_conf(logs=logs, listen=f"127.0.0.1:{port}", main=head, http=HTTP,
                               locations=LOCATIONS.replace("{logs}", str(logs)) + settings.get("extra", ""))

        host = Host(run_nginxws(text()), port, logs)
        host.rewrite = lambda **changes: host.run.conf.write_text(text(**changes))
        started.append(host)
        if main is None:
            host.wait_log(ACCEPTS.pattern, count=workers)
        assert poll(lambda: asyncio.run(host.health())[0] == 200, TIMEOUT), "the host never became healthy"
        # What came before (the fixture's probes of the listen port, the health
        # checks) is counted from here on as the server counted it.
        _, host.connections, _, host.requests, *_ = asyncio.run(host.stub_status())
        return host

    yield start
    for host in started:
        host.assert_no_traceback()


def counted(metrics: dict, name: str, **labels) -> float:
    return metrics[(name, tuple(sorted(labels.items())))]


async def spread_clients(host: Host, count: int, minimum_workers: int) -> list[tuple]:
    """``count`` clients connecting at once (more, ten at a time, if needed)
    until they sit on ``minimum_workers`` workers."""
    clients = list(await asyncio.gather(*(host.client() for _ in range(count))))
    while len({m["port"] for _, m in clients}) < minimum_workers:
        assert len(clients) < count + 100, "the kernel never handed a client to another worker"
        clients += await asyncio.gather(*(host.client() for _ in range(10)))
    return clients


def by_port(clients: list[tuple], pushes_each: int) -> dict[int, list[tuple[str, str]]]:
    pushes: dict[int, list[tuple[str, str]]] = {}
    for i, (_, match) in enumerate(clients):
        pushes.setdefault(int(match["port"]), []).extend((match["id"], f"{i}:{j}") for j in range(pushes_each))
    return pushes


# -- exact counts across workers ------------------------------------------------------------


async def _counts_under_load(host: Host) -> None:
    clients = await spread_clients(host, 40, minimum_workers=2)
    handshakes = len(clients)
    for path in ("/ws", "/ws", "/short"):  # not handshakes: 426
        assert (await host.get(path))[0] == 426
    pushes = by_port(clients, pushes_each=5)
    for port in pushes:
        pushes[port].append(("no-such-client", "lost"))  # 404

    async def receive(ws) -> list[str]:
        return [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(5)]

    async def scrape_while(busy: asyncio.Task) -> int:
        """Scrape until ``busy`` is done: every scrape parses, counters only grow."""
        last, scrapes = 0.0, 0
        while not busy.done() or not scrapes:
            metrics = await host.scrape()
            scrapes += 1
            assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == handshakes
            delivered = counted(metrics, "nginxws_pushes_total", status="204")
            assert last <= delivered <= 5 * handshakes
            last = delivered
        return scrapes

    load = asyncio.ensure_future(asyncio.gather(*(host.push(port, p) for port, p in pushes.items()),
                                                *(receive(ws) for ws, _ in clients)))
    scrapes = await scrape_while(load)
    results = await load
    statuses = [status for answers in results[:len(pushes)] for status in answers]
    assert sorted(set(statuses)) == [204, 404] and statuses.count(204) == 5 * handshakes
    assert scrapes >= 1

    closing = clients[:10]
    for ws, _ in closing:
        await host.close(ws)
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == handshakes
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="426") == 3
    assert counted(metrics, "nginxws_pushes_total", status="204") == 5 * handshakes
    assert counted(metrics, "nginxws_pushes_total", status="404") == len(pushes)
    assert counted(metrics, "nginxws_websocket_closed_total", reason="client_close") == len(closing)
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == (
        handshakes - len(closing))
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/short") == 0
    assert counted(metrics, "nginxws_workers", state="ready") == 4
    pids = {labels for name, labels in metrics if name == "nginxws_process_open_fds"}
    assert {dict(labels)["process"] for labels in pids} == {"master", "worker"} and len(pids) == 5

    live = handshakes - len(closing)
    active, accepts, handled, requests, reading, writing, waiting = await host.stub_status()
    assert (active, reading, writing, waiting) == (live + 1, 0, live + 1, 0), "live sessions and this request"
    assert accepts == handled == host.connections
    assert requests == host.requests
    log = (host.logs / "status.log").read_text().splitlines()
    assert log[-1] == f"200 {live + 1} 0 {live + 1} 0"

    for ws, _ in clients[10:]:
        await host.close(ws)
    active, *_ = await host.stub_status()
    assert active == 1


def test_exact_counts_across_four_workers_under_load(start_host):
    asyncio.run(_counts_under_load(start_host(workers=4)))


def server_closed(client: RawClient) -> bool:
    """Wait for the server to close ``client``'s connection (a reset, when the
    server failed it at once and the client's close answer came after)."""
    try:
        return client.sock.recv(1) == b""
    except ConnectionResetError:
        return True


async def _closes_by_reason(host: Host) -> None:
    idle = await asyncio.to_thread(RawClient, host.port, "/short", auto_pong=False)
    assert (await asyncio.to_thread(idle.wait_closed, TIMEOUT)).code == 1001  # idle timeout, answered
    too_big = await asyncio.to_thread(RawClient, host.port, "/short")
    await asyncio.to_thread(too_big.message)  # the welcome
    too_big.send("x" * 17)
    assert (await asyncio.to_thread(too_big.wait_closed, TIMEOUT)).code == 1009
    broken = await asyncio.to_thread(RawClient, host.port, "/short")
    await asyncio.to_thread(broken.message)
    broken.send_raw(b"\x81\x02hi")  # not masked
    assert (await asyncio.to_thread(broken.wait_closed, TIMEOUT)).code == 1002
    for client in (idle, too_big, broken):
        assert await asyncio.to_thread(server_closed, client)
        client.close()
    metrics = await host.scrape()
    assert {reason: counted(metrics, "nginxws_websocket_closed_total", reason=reason)
            for reason in ("idle_timeout", "message_too_big", "protocol_error", "client_close")} == {
        "idle_timeout": 1, "message_too_big": 1, "protocol_error": 1, "client_close": 0}
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/short") == 0
    assert counted(metrics, "nginxws_websocket_received_bytes_total") > 17
    assert counted(metrics, "nginxws_websocket_sent_bytes_total") > 3 * len(b"HTTP/1.1 101 Switching Protocols")


def test_sessions_closed_by_the_server_are_counted_by_reason(start_host):
    asyncio.run(_closes_by_reason(start_host(workers=2)))


# -- reload ---------------------------------------------------------------------------------


async def _across_a_reload(host: Host) -> None:
    old = await spread_clients(host, 10, minimum_workers=2)
    old_pids = set(host.worker_ports().values())
    host.rewrite(extra="location /new { websocket; }")
    os.kill(host.pid, signal.SIGHUP)
    await asyncio.to_thread(host.wait_log, r"\[notice\] \d+#0: gracefully shutting down$", 2)
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_reloads_total", result="ok") == 1
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == len(old)
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == len(old)
    assert counted(metrics, "nginxws_workers", state="draining") == 2
    assert counted(metrics, "nginxws_workers", state="ready") == 2
    *_, writing, _ = await host.stub_status()
    assert writing == len(old) + 1, "the draining workers' sessions are counted"

    new = [await host.client("/new") for _ in range(3)]
    assert not {int(m["port"]) for _, m in new} & {int(m["port"]) for _, m in old}
    first, match = old[0]
    assert await host.push(int(match["port"]), [(match["id"], "after the reload")]) == [204]
    assert await asyncio.wait_for(first.recv(), TIMEOUT) == "after the reload"

    # A worker of the new generation told to stop at once (TERM) closes its
    # sessions with 1001 and is replaced; the old ones still drain.
    victim_port = int(new[0][1]["port"])
    victim = host.worker_ports()[victim_port]
    assert victim not in old_pids
    os.kill(victim, signal.SIGTERM)
    await asyncio.to_thread(host.wait_log, rf"worker process {victim} exited with code 0$")
    await asyncio.to_thread(host.wait_log, ACCEPTS.pattern, 5)  # its replacement
    on_victim = sum(1 for _, m in new if int(m["port"]) == victim_port)
    for ws, m in new:
        if int(m["port"]) == victim_port:
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1001
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_websocket_closed_total", reason="shutdown") == on_victim
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == len(old) + len(new)
    assert counted(metrics, "nginxws_pushes_total", status="204") == 1
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == len(old)
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/new") == (
        len(new) - on_victim)
    assert counted(metrics, "nginxws_worker_restarts_total") == 1
    assert counted(metrics, "nginxws_workers", state="draining") == 2
    for ws, m in old + new:
        if int(m["port"]) != victim_port:
            await host.close(ws)
    for pid in old_pids:
        await asyncio.to_thread(host.wait_log, rf"worker process {pid} exited with code 0$")
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == len(old) + len(new)
    assert counted(metrics, "nginxws_websocket_closed_total", reason="client_close") == len(old) + len(new) - on_victim
    assert counted(metrics, "nginxws_workers", state="draining") == 0
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == 0


def test_counts_keep_growing_across_a_reload_and_count_draining_workers(start_host):
    asyncio.run(_across_a_reload(start_host(workers=2)))


# -- a worker killed ------------------------------------------------------------------------------


def zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "Z"


async def _kill_9(host: Host) -> None:
    clients = await spread_clients(host, 20, minimum_workers=2)
    pushes = by_port(clients, pushes_each=2)
    for port, batch in pushes.items():
        assert set(await host.push(port, batch)) == {204}
    victim_port = int(clients[0][1]["port"])
    victim = host.worker_ports()[victim_port]
    on_victim = len(pushes[victim_port]) // 2
    os.kill(host.pid, signal.SIGSTOP)  # the master cannot reap nor respawn: the dead worker stays dead
    try:
        os.kill(victim, signal.SIGKILL)
        assert await asyncio.to_thread(poll, lambda: zombie(victim), TIMEOUT)
        metrics = await host.scrape()
        assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == len(clients)
        assert counted(metrics, "nginxws_pushes_total", status="204") == 2 * len(clients)
        assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == (
            len(clients) - on_victim)
        assert counted(metrics, "nginxws_workers", state="ready") == 3
        assert await host.health() == (503, "3 of 4 worker processes ready\n")
    finally:
        os.kill(host.pid, signal.SIGCONT)
    await asyncio.to_thread(host.wait_log, ACCEPTS.pattern, 5)
    assert await asyncio.to_thread(poll, lambda: asyncio.run(host.health()) == (200, "ok\n"), TIMEOUT)
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_worker_restarts_total") == 1
    assert counted(metrics, "nginxws_websocket_handshakes_total", status="101") == len(clients)
    assert counted(metrics, "nginxws_pushes_total", status="204") == 2 * len(clients)
    assert counted(metrics, "nginxws_websocket_clients", server=f"127.0.0.1:{host.port}", location="/ws") == (
        len(clients) - on_victim)
    assert counted(metrics, "nginxws_workers", state="ready") == 4
    for ws, match in clients:
        if int(match["port"]) != victim_port:
            await host.close(ws)


def test_a_killed_worker_keeps_its_counts_loses_its_clients_and_health_says_so(start_host):
    asyncio.run(_kill_9(start_host(workers=4)))


# -- one process ------------------------------------------------------------------------------------


async def _single(host: Host) -> None:
    ws, _ = await host.client()
    assert await host.health() == (200, "ok\n")
    active, accepts, handled, requests, reading, writing, waiting = await host.stub_status()
    assert (active, reading, writing, waiting) == (2, 0, 2, 0)
    assert (accepts, handled, requests) == (host.connections, host.connections, host.requests)
    metrics = await host.scrape()
    assert counted(metrics, "nginxws_workers", state="ready") == 1
    assert {dict(labels)["process"] for name, labels in metrics if name == "nginxws_process_open_fds"} == {"worker"}
    await host.close(ws)


def test_master_process_off_reports_its_one_process(start_host):
    asyncio.run(_single(start_host(main="daemon off;\nmaster_process off;")))


def test_a_report_location_refuses_post_and_answers_head_without_a_body(start_host):
    host = start_host(workers=1)

    async def check() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        writer.write(b"HEAD /basic_status HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        async with asyncio.timeout(TIMEOUT):
            answers = await reader.read()
        writer.close()
        first, second = answers.split(b"HTTP/1.1 ")[1:]
        assert first.startswith(b"200 OK\r\n") and b"Content-Type: text/plain\r\n" in first
        assert first.endswith(b"\r\n\r\n"), "HEAD: no body"
        assert second.startswith(b"405 Not Allowed\r\n") or second.startswith(b"405 ")
        assert b"Allow:" not in second

    asyncio.run(check())


def test_the_handshake_bytes_are_counted_once(start_host):
    host = start_host(workers=1)

    async def check() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
        writer.write(handshake())
        async with asyncio.timeout(TIMEOUT):
            head = await reader.readuntil(b"\r\n\r\n")
            welcome = await reader.readexactly(2)
            welcome += await reader.readexactly(welcome[1])
        writer.write(b"\x88\x80\x00\x00\x00\x00")  # close, masked, no payload
        async with asyncio.timeout(TIMEOUT):
            rest = await reader.read()
        writer.close()
        metrics = await host.scrape()
        assert counted(metrics, "nginxws_websocket_sent_bytes_total") == len(head) + len(welcome) + len(rest)
        assert counted(metrics, "nginxws_websocket_received_bytes_total") == 6

    asyncio.run(check())


# -- workers as another user ----------------------------------------------------------------------


def test_workers_running_as_another_user_still_report_the_whole_host(run_nginxws, free_port, tmp_path):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    logs = Path(tempfile.mkdtemp(prefix="nginxws-status-"))  # a directory nobody can traverse
    logs.chmod(0o755)
    try:
        port = free_port()
        text = server_conf(logs=logs, listen=f"127.0.0.1:{port}", http=HTTP,
                           main=f"user nobody {group};\ndaemon off;\nworker_processes 2;",
                           locations=LOCATIONS.replace("{logs}", str(logs)))
        host = Host(run_nginxws(text), port, logs)
        host.wait_log(ACCEPTS.pattern, count=2)
        assert poll(lambda: asyncio.run(host.health()) == (200, "ok\n"), TIMEOUT)
        metrics = asyncio.run(host.scrape())
        fds = {dict(labels)["process"] for name, labels in metrics if name == "nginxws_process_open_fds"}
        cpu = {dict(labels)["process"] for name, labels in metrics if name == "nginxws_process_cpu_seconds_total"}
        assert cpu == {"master", "worker"}, "the root master is seen alive"
        # Its descriptors are counted where the kernel tells their number
        # (Linux 6.2 on) without listing them, which nobody may not do.
        assert "worker" in fds
        assert counted(metrics, "nginxws_workers", state="ready") == 2
    finally:
        shutil.rmtree(logs)
