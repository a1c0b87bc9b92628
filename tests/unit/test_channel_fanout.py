"""The channels of one worker (``nginxws.channels``): membership and fan-out, no sockets."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from nginxws.channels import Channels


class Member:
    """A subscriber that records what it was given; ``state`` picks its answer."""

    def __init__(self, state: bool | None = True, plain: bool = True) -> None:
        self.channels: set[str] | None = None
        self.limit = 4
        self.state = state
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def deliver(self, frame: bytes, message: str | bytes) -> bool | None:
        if self.state:
            self.frames.append(frame)
        return self.state

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def frame_of(message: str | bytes) -> bytes:
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(message))


def test_publish_reaches_every_member_once_with_one_frame():
    channels = Channels()
    members = [Member() for _ in range(3)]
    for member in members:
        channels.join(member, "news")
    channels.join(members[0], "news")  # joining twice is one membership
    delivered, slow = channels.publish("news", "hello")
    assert (delivered, slow) == (3, [])
    assert [m.frames for m in members] == [[frame_of("hello")]] * 3
    frames = {id(m.frames[0]) for m in members}
    assert len(frames) == 1  # built once, not once per member


def test_binary_message_makes_a_binary_frame():
    channels = Channels()
    member = Member()
    channels.join(member, "b")
    channels.publish("b", b"\x00\xff")
    assert member.frames == [frame_of(b"\x00\xff")]
    assert member.frames[0][0] == 0x82


def test_publish_to_a_channel_without_members_delivers_nothing():
    channels = Channels()
    assert channels.publish("nobody", "x") == (0, [])
    assert len(channels) == 0


def test_slow_members_are_reported_and_others_still_get_the_message():
    channels = Channels()
    fast, slow, closing = Member(), Member(state=None), Member(state=False)
    for member in (fast, slow, closing):
        channels.join(member, "c")
    delivered, too_slow = channels.publish("c", "m")
    assert delivered == 1
    assert too_slow == [slow]
    assert fast.frames == [frame_of("m")]


def test_members_get_only_their_channels():
    channels = Channels()
    a, b = Member(), Member()
    channels.join(a, "x")
    channels.join(b, "y")
    channels.publish("x", "to x")
    assert a.frames and not b.frames


def test_leave_and_leave_all_remove_empty_channels():
    channels = Channels()
    member = Member()
    for name in ("a", "b", "c"):
        channels.join(member, name)
    assert channels.leave(member, "a") is True
    assert channels.leave(member, "a") is False
    assert channels.count("a") == 0 and len(channels) == 2
    channels.leave_all(member)
    assert len(channels) == 0
    assert member.channels is None
    assert channels.publish("b", "x") == (0, [])


def test_leaving_the_last_channel_leaves_no_set_behind():
    channels = Channels()
    member = Member()
    channels.join(member, "a")
    channels.leave(member, "a")
    assert member.channels is None


def test_channels_that_come_and_go_leave_nothing_behind():
    channels = Channels()
    members = [Member() for _ in range(10)]
    for i in range(100_000):
        member = members[i % 10]
        channels.join(member, f"room-{i}")
        if i >= 10:
            channels.leave(members[(i - 10) % 10], f"room-{i - 10}")
    assert len(channels) == 10
    for member in members:
        channels.leave_all(member)
    assert len(channels) == 0
    assert channels._members == {}


@pytest.mark.parametrize("count", [1, 2, 50])
def test_count_is_members_of_this_worker(count):
    channels = Channels()
    for _ in range(count):
        channels.join(Member(), "n")
    assert channels.count("n") == count


def test_watch_hears_of_a_channels_first_member_and_its_last_only():
    heard: list[tuple[str, bool]] = []
    channels = Channels(lambda name, held: heard.append((name, held)))
    a, b = Member(), Member()
    channels.join(a, "room")
    channels.join(b, "room")
    channels.join(a, "room")  # already a member
    channels.join(a, "other")
    assert heard == [("room", True), ("other", True)]
    channels.leave(a, "room")
    assert heard[2:] == []
    channels.leave_all(b)
    channels.leave(a, "other")
    assert heard[2:] == [("room", False), ("other", False)]
    assert len(channels) == 0
