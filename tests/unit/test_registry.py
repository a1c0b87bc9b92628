"""Push routing inside one worker and the answers a push gets."""

import base64

import pytest

from nginxws.conf.model import HttpSettings, Location, WebSocket
from nginxws.registry import Entry, Push, PushError, Registry, push_id_from, push_message

WS = Location("", "/ws", HttpSettings(), websocket=WebSocket())
OTHER = Location("", "/other", HttpSettings(), websocket=WebSocket())


class Queue:
    def __init__(self, limit):
        self.limit, self.items = limit, []

    def offer(self, message):
        if len(self.items) >= self.limit:
            return False
        self.items.append(message)
        return True


def basic(user: str, password: str = "") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_push_reaches_only_the_named_session():
    registry, a, b = Registry(), Queue(4), Queue(4)
    registry.add("A", Entry(WS, a.offer))
    registry.add("B", Entry(WS, b.offer))
    registry.deliver(Push("A", "hi"), WS)
    assert a.items == ["hi"] and b.items == []


@pytest.mark.parametrize("push_id", ["nobody", "", "A "])
def test_unknown_id_is_404(push_id):
    registry = Registry()
    registry.add("A", Entry(WS, Queue(1).offer))
    with pytest.raises(PushError) as err:
        registry.deliver(Push(push_id, "x"), WS)
    assert err.value.status == 404


def test_departed_id_is_404_and_never_reused():
    registry = Registry()
    registry.add("A", Entry(WS, Queue(1).offer))
    registry.remove("A")
    with pytest.raises(PushError) as err:
        registry.deliver(Push("A", "x"), WS)
    assert err.value.status == 404

def test_adding_a_live_id_twice_is_refused():
    registry = Registry()
    registry.add("A", Entry(WS, Queue(1).offer))
    with pytest.raises(ValueError):
        registry.add("A", Entry(WS, Queue(1).offer))


def test_push_to_another_location_of_the_server_is_404():
    registry = Registry()
    registry.add("A", Entry(WS, Queue(1).offer))
    with pytest.raises(PushError) as err:
        registry.deliver(Push("A", "x"), OTHER)
    assert err.value.status == 404


def test_full_queue_is_503_and_keeps_what_was_queued():
    registry, queue = Registry(), Queue(2)
    registry.add("A", Entry(WS, queue.offer))
    registry.deliver(Push("A", "1"), WS)
    registry.deliver(Push("A", "2"), WS)
    with pytest.raises(PushError) as err:
        registry.deliver(Push("A", "3"), WS)
    assert err.value.status == 503
    assert queue.items == ["1", "2"]


@pytest.mark.parametrize(
    "authorization, query, expected",
    [
        (basic("abc"), b"", "abc"),
        (basic("abc", "secret"), b"", "abc"),
        (b"basic " + base64.b64encode(b"xyz:"), b"", "xyz"),
        (None, b"id=q1", "q1"),
        (basic(""), b"id=q2", "q2"),
        (b"Bearer token", b"id=q3", "q3"),
    ],
)
def test_push_id_from_basic_user_or_query(authorization, query, expected):
    assert push_id_from(authorization, query) == expected


@pytest.mark.parametrize(
    "authorization, query",
    [(None, b""), (basic(""), b""), (b"Basic !!!notbase64", b""), (None, b"id="), (b"Bearer x", b"")],
)
def test_missing_or_malformed_id_is_400(authorization, query):
    with pytest.raises(PushError) as err:
        push_id_from(authorization, query)
    assert err.value.status == 400


def test_body_is_text_by_default_and_binary_by_content_type():
    assert push_message("héllo 😀".encode(), None, 100) == "héllo 😀"
    assert push_message(b"\xff\x00", b"application/octet-stream", 100) == b"\xff\x00"
    assert push_message(b"\xff", b"Application/Octet-Stream; x=1", 100) == b"\xff"
    assert push_message(b"", None, 100) == ""


def test_text_body_that_is_not_utf8_is_400():
    with pytest.raises(PushError) as err:
        push_message(b"\xff\xfe", b"text/plain", 100)
    assert err.value.status == 400


def test_body_over_max_message_size_is_413():
    push_message(b"x" * 100, None, 100)
    with pytest.raises(PushError) as err:
        push_message(b"x" * 101, None, 100)
    assert err.value.status == 413
