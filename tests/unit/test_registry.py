"""Push routing inside one worker and the answers a push gets."""

import base64

import pytest

from nginxws.conf.model import HttpSettings, Location, WebSocket
from nginxws.registry import Entry, PushError, Registry, push_id_from, push_message

WS = Location("", "/ws", HttpSettings(), websocket=WebSocket())
OTHER = Location("", "/other", HttpSettings(), websocket=WebSocket())


class Client:
    """A session as the registry sees it: a backlog that can be full."""

    def __init__(self, is_full=False):
        self.is_full = is_full

    def entry(self, location=None):
        return Entry(location or WS, self)

    def full(self):
        return self.is_full

    async def push(self, message):
        raise AssertionError("the registry itself never sends")


def basic(user: str, password: str = "") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def test_push_goes_to_the_named_session_only():
    registry, a, b = Registry(), Client(), Client()
    registry.add("A", a.entry())
    registry.add("B", b.entry())
    assert registry.target("A", WS) is a
    assert registry.target("B", WS) is b


@pytest.mark.parametrize("push_id", ["nobody", "", "A "])
def test_unknown_id_is_404(push_id):
    registry = Registry()
    registry.add("A", Client().entry())
    with pytest.raises(PushError) as err:
        registry.target(push_id, WS)
    assert err.value.status == 404


def test_departed_id_is_404_and_never_reused():
    registry = Registry()
    registry.add("A", Client().entry())
    registry.remove("A")
    with pytest.raises(PushError) as err:
        registry.target("A", WS)
    assert err.value.status == 404

def test_adding_a_live_id_twice_is_refused():
    registry = Registry()
    registry.add("A", Client().entry())
    with pytest.raises(ValueError):
        registry.add("A", Client().entry())


def test_push_to_another_location_of_the_server_is_404():
    registry = Registry()
    registry.add("A", Client().entry())
    with pytest.raises(PushError) as err:
        registry.target("A", OTHER)
    assert err.value.status == 404


def test_full_backlog_is_503_until_it_drains():
    registry, client = Registry(), Client(is_full=True)
    registry.add("A", client.entry())
    with pytest.raises(PushError) as err:
        registry.target("A", WS)
    assert err.value.status == 503
    client.is_full = False
    assert registry.target("A", WS) is client


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
