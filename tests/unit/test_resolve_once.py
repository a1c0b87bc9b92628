"""A host name is resolved once, by ``conf.load``: what runs after it uses the
addresses the model carries (``Listen.addresses``, ``PushListen.addresses``).

The master opens the listen sockets from the loaded model, and a worker gets
that model pickled, builds its router and binds its push listeners; none of
them may ask the resolver again (a reload loads, so resolves, anew).
"""

from __future__ import annotations

import pickle
import socket
from pathlib import Path

import pytest
import trio

from nginxws.conf import Config, load
from nginxws.listen_sockets import distinct_listens, open_listen
from nginxws.log import ErrorLogger
from nginxws.routing import Router
from nginxws.session import PushAddress
from nginxws.worker import Worker

pytestmark = pytest.mark.timeout(10)

# Names no real resolver knows: only the load's table can answer for them.
NAMES = {"ws.test": ("127.0.0.1",), "push.test": ("127.0.0.1",)}


def resolve_from_table(name: str) -> tuple[str, ...]:
    return NAMES.get(name, ())


def load_text(tmp_path: Path, text: str, **kwargs) -> Config:
    (tmp_path / "logs").mkdir(exist_ok=True)  # a worker opens its access logs as it starts
    (tmp_path / "nginx.conf").write_text("events {}\n" + text)
    return load(str(tmp_path / "nginx.conf"), prefix=str(tmp_path), **kwargs)


def refuse_resolving(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """From now on every ``getaddrinfo`` (trio's goes through it too) raises; the calls are kept."""
    calls: list[tuple] = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise socket.gaierror(socket.EAI_NONAME, "the resolver was asked after conf.load")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


def test_after_the_load_routing_listen_sockets_and_push_listeners_never_resolve(
    tmp_path: Path, free_port, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = free_port(), free_port()
    loaded = load_text(tmp_path, (
        "http {\n"
        f"  server {{ listen ws.test:{first}; server_name a; location / {{ websocket push_listen=push.test; }} }}\n"
        # no push_listen: the push listener binds to the server's listen addresses
        f"  server {{ listen ws.test:{second}; server_name b; location / {{ websocket; }} }}\n"
        "}\n"
    ), resolve=resolve_from_table)
    calls = refuse_resolving(monkeypatch)
    config: Config = pickle.loads(pickle.dumps(loaded))  # as a worker receives it
    assert config == loaded

    router = Router(config.http)
    sockets = [sock for listen in distinct_listens(config) for sock in open_listen(listen)]
    try:
        assert sorted(sock.getsockname() for sock in sockets) == sorted([("127.0.0.1", first), ("127.0.0.1", second)])
        server_a, server_b = config.http.servers
        assert router.servers_for(("127.0.0.1", first)).servers == (server_a,)

        async def start_worker() -> dict[int, tuple[PushAddress, ...]]:
            worker = Worker(config, 0, ErrorLogger(()))
            async with trio.open_nursery() as nursery:
                push = await nursery.start(worker.run, sockets)
                nursery.cancel_scope.cancel()
            return push

        push = trio.run(start_worker)
    finally:
        for sock in sockets:
            sock.close()
    assert [address.host for address in push[id(server_a)]] == ["127.0.0.1"]
    assert [address.host for address in push[id(server_b)]] == ["127.0.0.1"]
    assert calls == []


def test_a_listen_host_name_stands_for_every_address_the_system_resolver_gives(
    tmp_path: Path, free_port, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    config = load_text(tmp_path, f"http {{ server {{ listen localhost:{port}; }} }}\n")
    (listen,) = config.http.servers[0].listens
    system = {info[4][0] for info in socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)}
    assert (listen.host, set(listen.addresses)) == ("localhost", system)
    calls = refuse_resolving(monkeypatch)

    router = Router(config.http)
    sockets = open_listen(listen)
    try:
        assert {sock.getsockname()[0] for sock in sockets} == system
        for address in system:
            assert router.servers_for((address, port)).servers == config.http.servers
    finally:
        for sock in sockets:
            sock.close()
    assert calls == []
