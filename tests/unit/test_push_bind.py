"""A push listener that cannot bind says where, as nginx writes an address."""

from __future__ import annotations

import socket

import pytest

from nginxws.worker import PushBindError, _bind_push


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_taken_push_port_is_an_emerg_naming_the_address(family: int, host: str) -> None:
    with socket.socket(family) as taken:
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PushBindError) as err:
            _bind_push(host, (host,), port)
    shown = f"[{host}]" if ":" in host else host
    assert str(err.value) == f"[emerg] bind() to {shown}:{port} failed (98: Address already in use)"


def test_an_ipv4_mapped_address_binds_only_dual_stack() -> None:
    with pytest.raises(PushBindError):
        _bind_push("::ffff:127.0.0.1", ("::ffff:127.0.0.1",), 0)  # ipv6only: the kernel refuses
    (sock,) = _bind_push("::ffff:127.0.0.1", ("::ffff:127.0.0.1",), 0, ipv6only=False)
    with sock, socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5):
        accepted, peer = sock.accept()
        accepted.close()
    assert peer[0] == "::ffff:127.0.0.1"
