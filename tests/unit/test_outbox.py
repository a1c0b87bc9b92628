"""A session's outbox: bounded, never blocking a push, waking its sender."""

import trio
import trio.testing

from nginxws.wsconn import Outbox


def run(fn):
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_messages_come_out_in_order_and_the_limit_refuses_more():
    async def main():
        outbox = Outbox(limit=2)
        assert outbox.offer("a") and outbox.offer(b"b")
        assert not outbox.offer("c")
        assert await outbox.next() == "a"
        assert await outbox.next() == b"b"
        assert outbox.offer("d")

    run(main)


def test_next_waits_for_a_message_as_long_as_it_takes():
    async def main():
        outbox = Outbox(limit=1)
        with trio.move_on_after(3600) as scope:
            await outbox.next()
        assert scope.cancelled_caught
        outbox.offer("late")
        assert await outbox.next() == "late"

    run(main)


def test_an_offer_wakes_a_waiting_sender_at_once():
    async def main():
        outbox = Outbox(limit=4)
        got = []

        async def sender():
            got.append((await outbox.next(), trio.current_time()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await trio.sleep(3)
            outbox.offer("pushed")
        assert got == [("pushed", 3.0)]

    run(main)


def test_a_closed_outbox_refuses_pushes():
    outbox = Outbox(limit=4)
    outbox.closed = True
    assert not outbox.offer("late")


def test_empty_string_is_a_message_not_nothing():
    async def main():
        outbox = Outbox(limit=1)
        outbox.offer("")
        assert await outbox.next() == ""

    run(main)
