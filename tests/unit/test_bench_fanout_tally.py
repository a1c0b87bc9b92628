"""How `bench/run.py fanout` counts what a subscriber receives (bench/fanout_load.py's Tally):
a message numbered above all before it is a delivery; anything else is an order violation;
warm-ups count for neither. No server: messages are fed to the tally as the client would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def fanout_load():
    sys.path.insert(0, str(BENCH))
    try:
        import fanout_load
    finally:
        sys.path.remove(str(BENCH))
    return fanout_load


def feed(fanout_load, publishes: int, numbers: list[int | str]):
    tally = fanout_load.Tally(1, publishes)
    for number in numbers:
        body = fanout_load.warmup(64) if number == "warmup" else (
            fanout_load.message(number, 64) if isinstance(number, int) else number.encode()
        )
        tally.on_message(0, body)
    return tally


def test_every_message_in_order_is_delivered_without_violation(fanout_load):
    tally = feed(fanout_load, 5, [0, 1, 2, 3, 4])
    assert (tally.delivered, tally.violations) == (5, 0)


def test_a_gap_is_a_loss_not_a_violation(fanout_load):
    tally = feed(fanout_load, 5, [0, 1, 3, 4])
    assert (tally.delivered, tally.violations) == (4, 0)


def test_a_late_message_and_a_repeat_are_violations(fanout_load):
    tally = feed(fanout_load, 5, [0, 2, 1, 2, 3, 4])
    assert (tally.delivered, tally.violations) == (4, 2)


def test_a_number_past_the_last_publish_or_a_foreign_body_is_a_violation(fanout_load):
    tally = feed(fanout_load, 3, [0, 3, "hello", 1, 2])
    assert (tally.delivered, tally.violations) == (3, 2)


def test_warmups_prime_the_subscriber_and_count_for_nothing(fanout_load):
    tally = feed(fanout_load, 2, ["warmup", 0, "warmup", 1])
    assert (tally.delivered, tally.violations, tally.unprimed) == (2, 0, 0)


def test_messages_have_the_payload_size_and_start_with_their_number(fanout_load):
    body = fanout_load.message(42, 64)
    assert len(body) == 64 == len(fanout_load.warmup(64))
    assert body[:fanout_load.SEQ_DIGITS] == b"00000042"
