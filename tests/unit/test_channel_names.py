"""The channel-name rule the configuration and the runtime share (nginxws.channel_names)."""

from __future__ import annotations

import pytest

from nginxws.channel_names import CHANNEL_NAME, MAX_CHANNEL_NAME_LENGTH, valid_channel, valid_channel_part


@pytest.mark.parametrize(
    "name",
    ["news", "a", "room-1", "user@example.com", "a.b:c_d-e", "ABC123", "x" * MAX_CHANNEL_NAME_LENGTH],
)
def test_valid_channel_names(name: str) -> None:
    assert valid_channel(name)
    assert CHANNEL_NAME.fullmatch(name)


@pytest.mark.parametrize(
    "name",
    ["", "x" * (MAX_CHANNEL_NAME_LENGTH + 1), "a b", "a/b", "a%20b", "café", "a\n", "news\n", "#x", "a+b", "٣"],
)
def test_invalid_channel_names(name: str) -> None:
    assert not valid_channel(name)


def test_a_part_may_be_empty_but_not_longer_than_a_name() -> None:
    assert valid_channel_part("")
    assert valid_channel_part("room-")
    assert valid_channel_part("x" * MAX_CHANNEL_NAME_LENGTH)
    assert not valid_channel_part("x" * (MAX_CHANNEL_NAME_LENGTH + 1))
    assert not valid_channel_part("room/")
