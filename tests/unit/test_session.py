"""The per-connection rules: timers driven by a fake clock, welcome format, IDs."""

import re


from nginxws.session import Action, PushAddress, Timers, new_id, welcome_message


def run_silence(timers: Timers, until: float) -> list[tuple[float, Action]]:
    """Jump a fake clock from deadline to deadline with no client traffic."""
    actions = []
    while timers.deadline <= until:
        now = timers.deadline
        action = timers.due(now)
        actions.append((now, action))
        if action is Action.CLOSE:
            break
    return actions


def test_nothing_is_due_before_pingintvl():
    timers = Timers(10, 15, now=0)
    assert timers.due(9.99) is Action.NOTHING
    assert timers.deadline == 10


def test_ping_after_pingintvl_of_silence_and_again_while_silence_lasts():
    timers = Timers(pingintvl=1, idleintvl=3.5, now=0)
    actions = run_silence(timers, until=5)
    assert actions == [(1.0, Action.PING), (2.0, Action.PING), (3.0, Action.PING), (3.5, Action.CLOSE)]


def test_idle_close_after_idleintvl():
    timers = Timers(pingintvl=10, idleintvl=15, now=100)
    assert timers.due(114.9) is Action.PING
    assert timers.due(115) is Action.CLOSE


def test_received_frame_resets_both_timers():
    timers = Timers(pingintvl=1, idleintvl=3, now=0)
    assert timers.due(1) is Action.PING
    timers.received(2.5)  # the pong
    assert timers.deadline == 3.5
    assert timers.due(3.4) is Action.NOTHING
    assert timers.due(5.4) is Action.PING
    assert timers.due(5.5) is Action.CLOSE


def test_ponging_client_is_never_idle():
    timers = Timers(pingintvl=1, idleintvl=2, now=0)
    now = 0.0
    for _ in range(100):
        now = timers.deadline
        assert timers.due(now) is Action.PING
        timers.received(now + 0.1)  # pong arrives 100 ms later
    assert now > 50


def test_late_loop_does_not_burst_pings():
    timers = Timers(pingintvl=1, idleintvl=100, now=0)
    assert timers.due(5.5) is Action.PING
    assert timers.due(5.6) is Action.NOTHING
    assert timers.deadline == 6


def test_idleintvl_not_above_pingintvl_closes_without_ping():
    timers = Timers(pingintvl=5, idleintvl=5, now=0)
    assert timers.due(5) is Action.CLOSE


def test_welcome_lists_one_url_per_address_joined_by_commas():
    addresses = (PushAddress("127.0.0.1", 4001), PushAddress("::1", 4001))
    assert welcome_message("abc", addresses, "/ws") == "http://abc@127.0.0.1:4001/ws,http://abc@[::1]:4001/ws"


def test_ids_are_url_safe_unguessable_and_distinct():
    ids = {new_id() for _ in range(10000)}
    assert len(ids) == 10000
    for push_id in list(ids)[:100]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{24}", push_id)  # 144 bits
