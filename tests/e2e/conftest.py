"""Server fixtures on top of ``run_nginxws``: one websocket server per test."""

from __future__ import annotations

import pytest
from support.servers import Server, server_conf


@pytest.fixture
def start_server(run_nginxws, free_port, tmp_path):
    """``start_server(websocket=..., http=..., server=..., locations=..., listen=...)`` -> Server.

    ``listen`` is the server's listen address, ``{port}`` standing for a free port.
    Its logs and pid file are in the prefix.
    """
    started: list[Server] = []

    def start(*, websocket: str = "", http: str = "", server: str = "", locations: str = "",
              listen: str = "127.0.0.1:{port}") -> Server:
        port = free_port()
        text = server_conf(logs=tmp_path, listen=listen.format(port=port), websocket=websocket, http=http,
                           server=server, locations=locations)
        started.append(Server(run_nginxws(text), port, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.assert_no_traceback()
