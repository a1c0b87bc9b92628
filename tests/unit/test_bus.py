"""The bus between workers (``nginxws.bus``): frames, splitting, the outbox."""

from __future__ import annotations

import trio
import trio.testing

from nginxws import bus


def test_frames_round_trip_text_and_binary():
    for name, message in (("news", "héllo"), ("b", b"\x00\x01\xff"), ("e", ""), ("x" * 128, b"")):
        assert bus.decode(bus.encode(name, message)) == (name, message)


def test_splitter_gives_whole_frames_from_any_cut():
    frames = [bus.encode("c", f"message {i}") for i in range(20)] + [bus.encode("big", b"z" * 100_000)]
    stream = b"".join(frames)
    for step in (1, 3, 7, 64, 4096, len(stream)):
        splitter = bus.Splitter()
        out = []
        for start in range(0, len(stream), step):
            out.extend(splitter.feed(stream[start:start + step]))
        assert out == frames


def test_outbox_writes_in_order_behind_what_came_before():
    trio.run(_outbox_in_order)


async def _outbox_in_order():
    sent, received = trio.testing.memory_stream_pair()
    outbox = bus.Outbox(lambda: None)
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(outbox.run, sent)
        nursery.start_soon(bus.receive, received, got.append, bus.encode("c", "first"))
        for i in range(100):
            outbox.put(bus.encode("c", str(i)))
        with trio.fail_after(5):
            while len(got) < 101:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert [bus.decode(f)[1] for f in got] == ["first"] + [str(i) for i in range(100)]


def test_outbox_drops_past_its_bound_and_says_so_once(monkeypatch):
    monkeypatch.setattr(bus, "QUEUE_BYTES", 100)
    drops = []
    outbox = bus.Outbox(lambda: drops.append(1))
    frame = bus.encode("c", "x" * 40)
    for _ in range(5):
        outbox.put(frame)
    assert len(outbox._frames) == 2
    assert drops == [1]


# -- what only websocket_redis sends -----------------------------------------------------


def test_control_frames_carry_a_kind_and_a_name_but_no_message():
    frames = [bus.control(bus.SUBSCRIBE, "news"), bus.control(bus.UNSUBSCRIBE, "x" * 128),
              bus.control(bus.REMOTE_UP), bus.control(bus.REMOTE_DOWN)]
    assert [bus.kind(f) for f in frames] == [bus.SUBSCRIBE, bus.UNSUBSCRIBE, bus.REMOTE_UP, bus.REMOTE_DOWN]
    assert [bus.channel(f) for f in frames] == ["news", "x" * 128, "", ""]
    assert frames[2] == bus.HEAD.pack(2, bus.REMOTE_UP, 0)


def test_message_kinds_stay_below_every_control_kind():
    # The master and the workers tell a message from a control frame with one comparison.
    assert {bus.TEXT, bus.BINARY} == {k for k in range(6) if k <= bus.BINARY}
    assert min(bus.SUBSCRIBE, bus.UNSUBSCRIBE, bus.REMOTE_UP, bus.REMOTE_DOWN) > bus.BINARY
    assert bus.kind(bus.encode("c", "t")) == bus.TEXT and bus.kind(bus.encode("c", b"b")) == bus.BINARY
    assert bus.channel(bus.encode("room-7", "hello")) == "room-7"


def test_splitter_separates_control_frames_from_messages():
    frames = [bus.control(bus.SUBSCRIBE, "a"), bus.encode("a", "m"), bus.control(bus.REMOTE_DOWN),
              bus.encode("a", b""), bus.control(bus.UNSUBSCRIBE, "a")]
    stream = b"".join(frames)
    splitter = bus.Splitter()
    out = [frame for byte in range(len(stream)) for frame in splitter.feed(stream[byte:byte + 1])]
    assert out == frames
