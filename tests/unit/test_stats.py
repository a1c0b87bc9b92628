"""The statistics region: its layout, who writes what, and what a sum counts.

The region is any buffer of its layout: a ``bytearray`` here, the master's
``memfd`` in the real process tree (``test_a_region_is_shared_through_its_descriptor``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nginxws import stats
from nginxws.conf import load
from nginxws.session import Ending
from nginxws.stats import (
    CLIENTS,
    CLOSE_REASONS,
    COUNTERS,
    GAUGES,
    HANDSHAKES,
    MAX_LOCATIONS,
    OTHER_LOCATION,
    PUSHES,
    SLOT_WORDS,
    STATUS_INDEX,
    STATUS_LABELS,
    Region,
    close_reason,
    location_keys,
    region_bytes,
)


def region(worker_slots: int = 4) -> Region:
    return Region(bytearray(region_bytes(worker_slots)))


# -- layout ---------------------------------------------------------------------


def test_every_counter_and_gauge_is_a_word_of_its_own_inside_a_slot() -> None:
    words = {name: getattr(stats, name) for name in (
        "ACCEPTED", "HANDLED", "REQUESTS", "RECEIVED_BYTES", "SENT_BYTES", "DELIVERIES", "BACKLOG_DROPPED",
        "RELOADS", "RELOADS_FAILED", "RESTARTS", "READING", "WRITING", "WAITING")}
    families = {"HANDSHAKES": len(STATUS_LABELS), "PUSHES": len(STATUS_LABELS), "PUBLISHES": len(STATUS_LABELS),
                "CLOSED": len(CLOSE_REASONS), "CLIENTS": MAX_LOCATIONS}
    taken = [w for w in words.values()]
    for name, size in families.items():
        taken += range(getattr(stats, name), getattr(stats, name) + size)
    assert len(taken) == len(set(taken)), "two values share a word"
    assert min(taken) > stats.GENERATION, "the master's words come first"
    assert max(taken) < SLOT_WORDS
    assert set(taken) == set(range(COUNTERS[0], COUNTERS[1])) | set(range(GAUGES[0], GAUGES[1]))
    assert COUNTERS[1] == GAUGES[0]


def test_slots_are_aligned_and_never_overlap() -> None:
    r = region(3)
    for index in range(4):
        words = r.slot(index)
        assert len(words) == SLOT_WORDS
        words[SLOT_WORDS - 1] = index + 1
    assert [r.slot(i)[SLOT_WORDS - 1] for i in range(4)] == [1, 2, 3, 4]
    assert (stats.TABLE_OFFSET + MAX_LOCATIONS * stats.LOCATION_BYTES) % stats.WORD == 0
    assert r.capacity == 3
    with pytest.raises(ValueError):
        r.worker_slot(3)


def test_worker_slot_s_is_region_slot_1_plus_s() -> None:
    r = region()
    r.worker_slot(2)[stats.ACCEPTED] += 5
    assert r.slot(3)[stats.ACCEPTED] == 5 and r.slot(2)[stats.ACCEPTED] == 0


@pytest.mark.parametrize(("status", "label"), [
    (101, "101"), (204, "204"), (404, "404"), (503, "503"), (499, "499"),
    (302, "3xx"), (418, "4xx"), (599, "5xx"), (0, "other"), (999, "other"),
])
def test_a_status_counts_as_itself_or_as_its_class(status: int, label: str) -> None:
    assert STATUS_LABELS[STATUS_INDEX[status]] == label


def test_a_buffer_of_another_layout_is_refused() -> None:
    buffer = bytearray(region_bytes(1))
    buffer[:8] = (12345).to_bytes(8, "little")
    with pytest.raises(ValueError):
        Region(buffer)


# -- slots over time --------------------------------------------------------------


def test_a_new_holder_goes_on_from_what_the_slot_counted_and_starts_with_no_gauges() -> None:
    r = region()
    r.claim(1, pid=100, generation=1)
    first = r.worker_slot(0)
    first[PUSHES + STATUS_INDEX[204]] += 7
    first[CLIENTS + 0] += 3
    first[stats.WRITING] += 3
    r.release(1)  # the master reaped it
    assert first[PUSHES + STATUS_INDEX[204]] == 7
    assert first[CLIENTS] == 0 and first[stats.WRITING] == 0
    assert (first[stats.PID], first[stats.STATE]) == (0, stats.FREE)
    r.claim(1, pid=101, generation=1)
    second = r.worker_slot(0)
    second[PUSHES + STATUS_INDEX[204]] += 1
    assert r.totals([1]).family(PUSHES, len(STATUS_LABELS))[STATUS_INDEX[204]] == 8


def test_counters_sum_over_every_slot_ever_used_and_gauges_over_live_ones() -> None:
    r = region()
    for index, pid in ((0, 10), (1, 11), (2, 12), (3, 13)):
        r.claim(index, pid, generation=1)
        r.slot(index)[stats.ACCEPTED] += index + 1
        r.slot(index)[stats.WAITING] += 10 * (index + 1)
    r.release(3)
    r.slot(3)[stats.WAITING] = 999  # whatever a dead holder left there, it is not live
    totals = r.totals(live=[0, 1, 2])
    assert totals.counter(stats.ACCEPTED) == 1 + 2 + 3 + 4
    assert totals.gauge(stats.WAITING) == 10 + 20 + 30
    assert [held.pid for held in r.holders()] == [10, 11, 12]


def test_a_slot_above_the_high_water_mark_is_not_read() -> None:
    r = region()
    r.claim(0, 10, 0)
    r.slot(2)[stats.ACCEPTED] = 5  # nobody ever held it: not a slot in use
    assert r.totals([0]).counter(stats.ACCEPTED) == 0
    r.claim(2, 12, 1)
    assert r.totals([0]).counter(stats.ACCEPTED) == 5


def test_the_master_says_which_generation_serves() -> None:
    r = region()
    assert (r.generation, r.expected) == (0, 0)
    r.claim(1, 11, generation=2)
    r.set_state(1, stats.READY)
    r.serve_generation(2, 4)
    assert (r.generation, r.expected) == (2, 4)
    assert r.holders()[0] == stats.SlotInfo(1, 11, stats.READY, 2)


# -- locations --------------------------------------------------------------------------


def test_locations_are_registered_once_and_keep_their_index(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
events {}
http {
    server { listen 127.0.0.1:8080; location /ws { websocket; } location = /x { websocket; } }
    server { listen 127.0.0.1:8081; server_name chat.example other; location ~ ^/c/(\\w+)$ { websocket; } }
}
""")
    config = load(str(conf))
    keys = [key for _, key in location_keys(config)]
    assert keys == ["127.0.0.1:8080\0/ws", "127.0.0.1:8080\0= /x", "chat.example\0~ ^/c/(\\w+)$"]
    r = region()
    r.register_locations(keys[1:])
    r.register_locations(keys)
    assert r.location_names() == [keys[1], keys[2], keys[0]]
    ids = r.location_indices(config)
    assert sorted(ids.values()) == [0, 1, 2]
    assert r.totals([]).locations == (("127.0.0.1:8080", "= /x"), ("chat.example", "~ ^/c/(\\w+)$"),
                                      ("127.0.0.1:8080", "/ws"))


def test_locations_past_the_table_share_its_last_entry() -> None:
    r = region()
    r.register_locations(f"s\0/l{i}" for i in range(MAX_LOCATIONS + 5))
    names = r.location_names()
    assert len(names) == MAX_LOCATIONS
    assert names[-1] == OTHER_LOCATION and names[-2] == f"s\0/l{MAX_LOCATIONS - 2}"
    r.register_locations(["s\0/new"])
    assert len(r.location_names()) == MAX_LOCATIONS


def test_a_long_location_name_is_cut_to_its_entry() -> None:
    r = region()
    r.register_locations(["s\0/" + "é" * 300])
    (name,) = r.location_names()
    assert len(name.encode()) <= stats.LOCATION_BYTES - 2 and name.startswith("s\0/é")


# -- why sessions end -------------------------------------------------------------------


@pytest.mark.parametrize(("ending", "close_code", "timed_out", "expected"), [
    (Ending.CLIENT_CLOSED, 1000, False, "client_close"),
    (Ending.PREMATURE, 1006, False, "client_close"),
    (None, None, False, "client_close"),  # the connection broke before any close
    (Ending.IDLE, 1001, False, "idle_timeout"),
    (Ending.TOO_BIG, 1009, False, "message_too_big"),
    (Ending.INVALID, 1002, False, "protocol_error"),
    (Ending.INVALID, 1007, False, "protocol_error"),
    (None, 1001, False, "shutdown"),  # the server closed on its own account
    (None, 1008, False, "slow_subscriber"),
    (None, 1011, False, "upstream_error"),
    (None, None, True, "slow_reader"),
    (None, 1001, True, "slow_reader"),
])
def test_close_reasons(ending, close_code, timed_out, expected) -> None:
    assert CLOSE_REASONS[close_reason(ending, close_code, timed_out)] == expected


# -- the real region --------------------------------------------------------------------


def test_a_private_region_has_no_descriptor() -> None:
    r = Region.private(worker_slots=2)
    assert (r.capacity, r.fd) == (2, None)


def test_a_region_is_shared_through_its_descriptor() -> None:
    created = Region.create(worker_slots=2)
    try:
        attached = Region.attach(os.dup(created.fd))
        attached.worker_slot(1)[HANDSHAKES + STATUS_INDEX[101]] += 1
        created.claim(2, os.getpid(), 1)
        assert created.totals([2]).family(HANDSHAKES, len(STATUS_LABELS))[STATUS_INDEX[101]] == 1
        assert attached.holders()[0].pid == os.getpid()
        assert attached.fd is None, "a worker keeps no descriptor"
    finally:
        created.close()
