"""What stub_status, websocket_health and websocket_metrics answer, from a region in process.

The processes holding slots are this test's own (alive), a child that has
exited and not been reaped (a zombie: dead) and a pid that does not exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from nginxws import stats
from nginxws.metrics import Exposition
from nginxws.stats import (
    CLIENTS,
    CLOSED,
    HANDSHAKES,
    PUBLISHES,
    PUSHES,
    STATUS_INDEX,
    Region,
    region_bytes,
)
from nginxws.status import (
    HostState,
    connection_counts,
    health,
    host_state,
    read_process,
    stub_status,
    workers_by_state,
)

ALIVE = os.getpid()
NO_SUCH_PID = 2**22 + 1  # above Linux's pid_max


@pytest.fixture(scope="module")
def zombie():
    """The pid of a child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while True:
        with open(f"/proc/{child.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] == "Z":
                break
    yield child.pid
    child.wait()


def region() -> Region:
    return Region(bytearray(region_bytes(8)))


def serving(workers: int = 2, generation: int = 1) -> Region:
    """A master (this process) and ``workers`` ready workers (this process too) of ``generation``."""
    r = region()
    r.claim(0, ALIVE, 0, stats.READY)
    for slot in range(workers):
        r.claim(1 + slot, ALIVE, generation, stats.READY)
    r.serve_generation(generation, workers)
    return r


# -- /proc ---------------------------------------------------------------------------


def test_read_process_of_a_live_process(zombie) -> None:
    info = read_process(ALIVE, fds=True)
    assert info.cpu_seconds > 0 and info.rss_bytes > 1_000_000
    assert info.open_fds == len(os.listdir("/proc/self/fd")) - 1  # less listdir's own descriptor
    assert read_process(ALIVE).open_fds is None


def test_a_zombie_or_a_missing_process_is_dead(zombie) -> None:
    assert read_process(zombie) is None
    assert read_process(NO_SUCH_PID) is None


# -- stub_status ------------------------------------------------------------------------


def test_stub_status_is_nginx_page_to_the_byte() -> None:
    r = serving()
    first, second = r.worker_slot(0), r.worker_slot(1)
    first[stats.ACCEPTED] += 10
    first[stats.HANDLED] += 9
    second[stats.ACCEPTED] += 5
    second[stats.HANDLED] += 5
    first[stats.REQUESTS] += 20
    second[PUSHES + STATUS_INDEX[204]] += 3
    second[PUSHES + STATUS_INDEX[404]] += 1
    first[stats.READING] += 1
    first[stats.WRITING] += 4
    second[stats.WRITING] += 2
    second[stats.WAITING] += 3
    assert stub_status(host_state(r).totals) == (
        b"Active connections: 10 \n"
        b"server accepts handled requests\n"
        b" 15 14 24 \n"
        b"Reading: 1 Writing: 6 Waiting: 3 \n"
    )


def test_a_dead_worker_counters_stay_and_its_connections_go(zombie) -> None:
    r = serving(workers=1)
    r.claim(2, zombie, 1, stats.READY)  # killed, its master has not reaped it yet
    r.worker_slot(0)[stats.ACCEPTED] += 1
    r.worker_slot(0)[stats.WRITING] += 1
    r.worker_slot(1)[stats.ACCEPTED] += 4
    r.worker_slot(1)[stats.WRITING] += 4
    r.worker_slot(1)[CLIENTS] += 4
    totals = host_state(r).totals
    assert (totals.counter(stats.ACCEPTED), totals.gauge(stats.WRITING), totals.clients()) == (5, 1, ())
    assert connection_counts(r) == (5, 0, 5, 0), "the log variables count held slots, reaped or not"


# -- health --------------------------------------------------------------------------------


def test_healthy_when_every_worker_of_the_serving_generation_is_alive_and_ready() -> None:
    assert health(host_state(serving(workers=4))) == (True, b"ok\n")


def test_unhealthy_while_a_worker_is_dead_or_not_ready_or_nothing_serves_yet(zombie) -> None:
    r = serving(workers=2)
    r.claim(2, zombie, 1, stats.READY)
    assert health(host_state(r)) == (False, b"1 of 2 worker processes ready\n")
    r.release(2)  # reaped; its replacement starts
    r.claim(2, ALIVE, 1, stats.STARTING)
    assert health(host_state(r)) == (False, b"1 of 2 worker processes ready\n")
    r.set_state(2, stats.READY)
    assert health(host_state(r)) == (True, b"ok\n")
    assert health(host_state(region()))[0] is False


def test_draining_and_failed_generations_do_not_count(zombie) -> None:
    r = serving(workers=2, generation=1)
    for slot in (0, 1):
        r.set_state(1 + slot, stats.DRAINING)
        r.claim(3 + slot, ALIVE, 2, stats.READY)
    r.claim(5, ALIVE, 3, stats.STARTING)  # a reload whose workers could not all start
    assert health(host_state(r))[0] is False, "generation 2 is not serving yet"
    r.serve_generation(2, 2)
    assert health(host_state(r)) == (True, b"ok\n")
    assert workers_by_state(host_state(r)) == {"starting": 1, "ready": 2, "draining": 2}


def test_unhealthy_once_the_master_is_gone(zombie) -> None:
    r = serving()
    r.claim(0, zombie, 0, stats.READY)
    assert health(host_state(r)) == (False, b"master process is gone\n")


# -- metrics ----------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, parsed by prometheus_client: (name, labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_sum_every_worker_and_parse_with_prometheus_client(zombie) -> None:
    r = serving(workers=2)
    r.register_locations(["chat.example\0/ws", "127.0.0.1:8080\0= /feed"])
    r.claim(3, zombie, 1, stats.READY)
    for slot in (0, 1, 2):
        words = r.worker_slot(slot)
        words[HANDSHAKES + STATUS_INDEX[101]] += 10
        words[HANDSHAKES + STATUS_INDEX[426]] += 1
        words[PUSHES + STATUS_INDEX[204]] += 100
        words[PUSHES + STATUS_INDEX[503]] += 2
        words[PUBLISHES + STATUS_INDEX[202]] += 5
        words[stats.DELIVERIES] += 50
        words[CLOSED + stats.IDLE_TIMEOUT] += 1
        words[CLOSED + stats.CLIENT_CLOSE] += 3
        words[stats.SENT_BYTES] += 1000
        words[stats.RECEIVED_BYTES] += 10
        words[stats.BACKLOG_DROPPED] += 1
        words[CLIENTS + 0] += 6
        words[CLIENTS + 1] += 1
        words[stats.WRITING] += 7
    r.slot(0)[stats.RELOADS] += 2
    r.slot(0)[stats.RELOADS_FAILED] += 1
    r.slot(0)[stats.RESTARTS] += 1
    exposition = Exposition(r)
    assert exposition.content_type.startswith(b"text/plain; version=")
    got = samples(exposition.render().decode())
    expected = {
        ("nginxws_websocket_handshakes_total", (("status", "101"),)): 30,
        ("nginxws_websocket_handshakes_total", (("status", "426"),)): 3,
        ("nginxws_pushes_total", (("status", "204"),)): 300,
        ("nginxws_pushes_total", (("status", "503"),)): 6,
        ("nginxws_channel_publishes_total", (("status", "202"),)): 15,
        ("nginxws_channel_deliveries_total", ()): 150,
        ("nginxws_websocket_closed_total", (("reason", "idle_timeout"),)): 3,
        ("nginxws_websocket_closed_total", (("reason", "client_close"),)): 9,
        ("nginxws_websocket_closed_total", (("reason", "shutdown"),)): 0,
        ("nginxws_websocket_sent_bytes_total", ()): 3000,
        ("nginxws_websocket_received_bytes_total", ()): 30,
        ("nginxws_push_backlog_dropped_frames_total", ()): 3,
        # the dead worker's clients and connections are gone, its counters stay
        ("nginxws_websocket_clients", (("location", "/ws"), ("server", "chat.example"))): 12,
        ("nginxws_websocket_clients", (("location", "= /feed"), ("server", "127.0.0.1:8080"))): 2,
        ("nginxws_connections", (("state", "writing"),)): 14,
        ("nginxws_connections_active", ()): 14,
        ("nginxws_http_requests_total", ()): 306,
        ("nginxws_reloads_total", (("result", "ok"),)): 2,
        ("nginxws_reloads_total", (("result", "failed"),)): 1,
        ("nginxws_worker_restarts_total", ()): 1,
        ("nginxws_workers", (("state", "ready"),)): 2,
    }
    assert {key: got.get(key) for key in expected} == expected
    assert ("nginxws_pushes_total", (("status", "404"),)) not in got, "a status never answered is not shown"
    processes = {labels for name, labels in got if name == "nginxws_process_open_fds"}
    assert processes == {
        (("pid", str(ALIVE)), ("process", "master"), ("slot", "")),
        (("pid", str(ALIVE)), ("process", "worker"), ("slot", "0")),
        (("pid", str(ALIVE)), ("process", "worker"), ("slot", "1")),
    }
    for name in ("nginxws_process_cpu_seconds_total", "nginxws_process_resident_memory_bytes"):
        assert got[(name, (("pid", str(ALIVE)), ("process", "worker"), ("slot", "0")))] > 0


def test_every_family_follows_prometheus_naming() -> None:
    r = serving()
    for family in text_string_to_metric_families(Exposition(r).render().decode()):
        assert family.name.startswith("nginxws_")
        assert family.documentation
        if family.type == "counter":
            assert all(s.name == family.name + "_total" for s in family.samples)
        else:
            assert not family.name.endswith("_total")


def test_a_host_state_with_no_process_is_empty() -> None:
    state = host_state(region())
    assert isinstance(state, HostState) and state.processes == () and state.generation == 0


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist() -> None:
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "contrib" / "grafana-nginxws.json").read_text())
    families = {family.name for family in text_string_to_metric_families(Exposition(serving()).render().decode())}
    names = {sample for family in families for sample in (family, family + "_total")}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\bnginxws_[a-z_]+", target["expr"]))
            assert used and used <= names, (panel["title"], used - names)
