"""The rules of the bus between hosts (``nginxws.hosts``): interest, backoff, messages on Redis."""

from __future__ import annotations

import pytest

from nginxws import bus, hosts

HOST, OTHER = b"\x01" * 8, b"\x02" * 8


# -- interest: which channels the host holds ---------------------------------------


def test_the_first_worker_to_hold_a_channel_subscribes_the_host():
    interest = hosts.Interest()
    assert interest.join(1, "room") is True
    assert interest.join(2, "room") is False
    assert interest.join(1, "room") is False  # told twice: still one holder
    assert interest.channels == ["room"] and interest.holders("room") == {1, 2}


def test_the_last_worker_to_leave_a_channel_unsubscribes_the_host():
    interest = hosts.Interest()
    interest.join(1, "room")
    interest.join(2, "room")
    assert interest.leave(1, "room") is False
    assert interest.leave(1, "room") is False  # not held any more: nothing changes
    assert interest.leave(2, "room") is True
    assert len(interest) == 0 and "room" not in interest and interest.holders("room") == set()


def test_a_worker_that_exits_drops_the_channels_only_it_held():
    interest = hosts.Interest()
    for name in ("mine", "shared", "also-mine"):
        interest.join(1, name)
    interest.join(2, "shared")
    assert sorted(interest.drop(1)) == ["also-mine", "mine"]
    assert interest.channels == ["shared"] and interest.holders("shared") == {2}
    assert interest.drop(1) == []  # dropped already
    assert interest.drop(2) == ["shared"]
    assert len(interest) == 0


def test_a_draining_generation_keeps_its_channels_until_its_workers_leave_them():
    # Workers of every generation are counted alike: the old one's channel stays
    # held while the new generation has none, until the old worker exits.
    interest = hosts.Interest()
    interest.join(101, "drain")  # old generation
    interest.join(202, "fresh")  # new generation
    assert interest.channels == ["drain", "fresh"]
    assert interest.drop(101) == ["drain"]


def test_channels_that_come_and_go_leave_nothing_behind():
    interest = hosts.Interest()
    for n in range(10_000):
        assert interest.join(n % 3, f"c{n}")
        assert interest.leave(n % 3, f"c{n}")
    assert len(interest) == 0 and interest._held == {}


# -- backoff --------------------------------------------------------------------------------


def test_backoff_doubles_from_the_first_delay_to_the_longest_then_stays():
    backoff = hosts.Backoff(first=0.2, most=5.0, jitter=0.2, rand=lambda: 0.5)  # 0.5: no jitter
    assert [round(backoff.next(), 3) for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_backoff_starts_again_after_a_success():
    backoff = hosts.Backoff(rand=lambda: 0.5)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.next() == pytest.approx(hosts.BACKOFF_FIRST)


@pytest.mark.parametrize("draw, factor", [(0.0, 0.8), (1.0, 1.2), (0.25, 0.9)])
def test_backoff_jitter_stays_within_its_bounds(draw, factor):
    backoff = hosts.Backoff(first=1.0, most=8.0, jitter=0.2, rand=lambda: draw)
    assert backoff.next() == pytest.approx(1.0 * factor)
    assert backoff.next() == pytest.approx(2.0 * factor)


# -- messages on Redis --------------------------------------------------------------------


@pytest.mark.parametrize("message", ["héllo", "", b"\x00\xff", b"", "x" * 100_000])
def test_a_message_round_trips_through_redis_to_another_host(message):
    frame = bus.encode("room-7", message)
    channel, payload = hosts.to_redis(HOST, frame)
    assert channel == b"nginxws:room-7" == hosts.redis_channel("room-7")
    assert payload.startswith(HOST)
    assert hosts.from_redis(OTHER, channel, payload) == frame


def test_a_host_skips_its_own_messages_when_redis_brings_them_back():
    channel, payload = hosts.to_redis(HOST, bus.encode("room", "mine"))
    assert hosts.from_redis(HOST, channel, payload) is None


@pytest.mark.parametrize("channel, payload", [
    (b"nginxws:room", b"short"),  # no host id
    (b"nginxws:room", OTHER),  # no kind
    (b"nginxws:room", OTHER + b"\x07data"),  # unknown kind
    (b"nginxws:room", OTHER + bytes([bus.TEXT]) + b"\xff\xfe"),  # text that is not UTF-8
    (b"nginxws:bad name", OTHER + bytes([bus.TEXT]) + b"x"),  # not a channel name
    (b"nginxws:\xff", OTHER + bytes([bus.TEXT]) + b"x"),
    (b"other:room", OTHER + bytes([bus.TEXT]) + b"x"),  # not our prefix
])
def test_what_no_nginxws_host_publishes_is_ignored(channel, payload):
    assert hosts.from_redis(HOST, channel, payload) is None


def test_host_ids_differ():
    assert len({hosts.new_host_id() for _ in range(100)}) == 100
    assert len(hosts.new_host_id()) == hosts.HOST_ID_BYTES
