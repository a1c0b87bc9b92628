"""A session's outbox (bounded, never blocking a push, a sender only while messages wait) and the send watch."""

import trio

from nginxws.wsconn import DONE, Outbox, SendWatch, Session


class Starts:
    """Records each time the outbox asks for a sender."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, outbox: Outbox) -> None:
        self.count += 1


def drain(outbox: Outbox) -> list:
    taken = []
    while (message := outbox.take()) is not DONE:
        taken.append(message)
    return taken


def test_the_first_offer_starts_one_sender_and_later_ones_join_its_queue():
    starts = Starts()
    outbox = Outbox(limit=4, start=starts)
    assert outbox.offer("a") and outbox.offer(b"b") and outbox.offer("c")
    assert starts.count == 1
    assert drain(outbox) == ["a", b"b", "c"]


def test_a_push_while_the_sender_sends_its_last_message_is_sent_by_the_same_sender():
    starts = Starts()
    outbox = Outbox(limit=4, start=starts)
    outbox.offer("a")
    assert outbox.take() == "a"  # the sender now sends "a"; the queue is empty
    assert outbox.offer("b")
    assert starts.count == 1
    assert drain(outbox) == ["b"]


def test_once_the_sender_has_ended_the_next_offer_starts_another():
    starts = Starts()
    outbox = Outbox(limit=4, start=starts)
    outbox.offer("a")
    assert drain(outbox) == ["a"]
    outbox.offer("b")
    assert starts.count == 2
    assert drain(outbox) == ["b"]


def test_the_limit_counts_waiting_messages_and_refuses_more():
    outbox = Outbox(limit=2, start=Starts())
    assert outbox.offer("a") and outbox.offer("b")
    assert not outbox.offer("c")
    assert outbox.take() == "a"
    assert outbox.offer("d")
    assert drain(outbox) == ["b", "d"]


def test_a_closed_outbox_refuses_pushes_and_starts_nothing():
    starts = Starts()
    outbox = Outbox(limit=4, start=starts)
    outbox.closed = True
    assert not outbox.offer("late")
    assert starts.count == 0


def test_empty_string_is_a_message_not_the_end():
    outbox = Outbox(limit=1, start=Starts())
    outbox.offer("")
    assert drain(outbox) == [""]


def test_send_watch_gives_up_on_sends_past_their_deadline_only():
    async def main():
        watch = SendWatch()
        slow, quick, later = Session(), Session(), Session()

        async def send(session, deadline, finish):
            watch.start(session, deadline)
            if finish:
                watch.done()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, slow, 10.0, False)
            nursery.start_soon(send, quick, 10.0, True)
            nursery.start_soon(send, later, 70.0, False)
        assert watch.expired(9.9) == []
        assert watch.expired(10.0) == [slow]
        assert watch.expired(60.0) == []  # slow has left the watch
        assert watch.expired(70.0) == [later]

    trio.run(main)


def test_send_watch_keeps_watching_a_session_while_another_of_its_sends_goes_on():
    async def main():
        watch = SendWatch()
        session = Session()
        echo_started, push_done = trio.Event(), trio.Event()

        async def push():
            watch.start(session, 10.0)
            await echo_started.wait()
            watch.done()
            push_done.set()

        async def echo():
            watch.start(session, 20.0)
            echo_started.set()
            await push_done.wait()  # still sending when the push is done

        async with trio.open_nursery() as nursery:
            nursery.start_soon(push)
            nursery.start_soon(echo)
        assert watch.expired(15.0) == []
        assert watch.expired(20.0) == [session]

    trio.run(main)
