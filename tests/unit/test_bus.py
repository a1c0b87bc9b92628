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
