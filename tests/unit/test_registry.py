"""Push routing inside one worker and the answers a push gets."""


import pytest

from nginxws.conf.model import HttpSettings, Location, WebSocket
from nginxws.registry import Entry, PushError, Registry

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
