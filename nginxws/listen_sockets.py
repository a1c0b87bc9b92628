"""The ``listen`` sockets: opened once, before any worker starts.

The process that opens them (the master, or the single process under
``master_process off``) owns them; workers are handed the open sockets, so
a worker that dies or is replaced never closes the port to new clients.
"""

from __future__ import annotations

import os
import socket
import stat

from nginxws.conf.model import Config, Listen
from nginxws.errors import NginxwsError


class BindError(NginxwsError):
    """A listen socket could not be opened (nginx's ``[emerg] bind() to ... failed``)."""


def distinct_listens(config: Config) -> list[Listen]:
    """Each listen address once, in file order (several servers may share one)."""
    seen: dict[tuple, Listen] = {}
    for server in config.http.servers if config.http else ():
        for listen in server.listens:
            seen.setdefault(listen.key, listen)
    return list(seen.values())


def _describe(listen: Listen) -> str:
    if listen.unix:
        return f"unix:{listen.unix}"
    host = f"[{listen.host}]" if ":" in (listen.host or "") else listen.host
    return f"{host}:{listen.port}"


def open_listen(listen: Listen) -> list[socket.socket]:
    """Bind and listen on one ``listen`` address (a host name may give several sockets)."""
    if listen.unix:
        return [_bind_unix(listen)]
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        raise BindError(f'host not found in "{_describe(listen)}" of the "listen" directive') from None
    result = []
    seen = set()
    for family, kind, proto, _, address in infos:
        if address in seen:
            continue
        seen.add(address)
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if listen.reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(listen.ipv6only))
            sock.bind(address)
            sock.listen(listen.backlog)
        except OSError as err:
            sock.close()
            for other in result:
                other.close()
            raise _bind_failed(listen, err) from None
        sock.set_inheritable(True)
        result.append(sock)
    return result


def _bind_unix(listen: Listen) -> socket.socket:
    path = listen.unix
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # nginx removes a stale socket file left by a previous run.
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
        sock.bind(path)
        sock.listen(listen.backlog)
    except OSError as err:
        sock.close()
        raise _bind_failed(listen, err) from None
    sock.set_inheritable(True)
    return sock


def _bind_failed(listen: Listen, err: OSError) -> BindError:
    return BindError(f"bind() to {_describe(listen)} failed ({err.errno}: {os.strerror(err.errno or 0)})")
