"""The ``listen`` sockets: opened once, before any worker starts.

The process that opens them (the master, or the single process under
``master_process off``) owns them; workers are handed the open sockets, so
a worker that dies or is replaced never closes the port to new clients.

A socket is bound to each address the configuration's load resolved a
``listen`` to (``Listen.addresses``); nothing here resolves a name.
"""

from __future__ import annotations

import errno
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
    """Bind and listen on one ``listen`` address: a socket per address its host stands for."""
    if listen.unix:
        return [_bind_unix(listen)]
    result: list[socket.socket] = []
    for address in listen.addresses:
        try:
            sock = bind_tcp(
                address, listen.port, backlog=listen.backlog, reuseport=listen.reuseport, ipv6only=listen.ipv6only
            )
        except OSError as err:
            for other in result:
                other.close()
            raise _bind_failed(listen, err) from None
        sock.set_inheritable(True)
        result.append(sock)
    return result


def bind_tcp(
    address: str, port: int, *, backlog: int, reuseport: bool = False, ipv6only: bool = True
) -> socket.socket:
    """A TCP socket listening on ``address`` (an IP address, an IPv6 one with
    its ``%scope`` if it has one) and ``port``; raises OSError, leaving nothing open."""
    ip, _, scope = address.partition("%")
    if ":" in ip:
        family = socket.AF_INET6
        sockaddr: tuple = (ip, port, 0, _scope_id(scope) if scope else 0)
    else:
        family, sockaddr = socket.AF_INET, (ip, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(ipv6only))
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _scope_id(scope: str) -> int:
    """An IPv6 scope (``2`` or ``eth0``) as the interface index a socket address holds."""
    if scope.isdigit():
        return int(scope)
    try:
        return socket.if_nametoindex(scope)
    except OSError:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV)) from None


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
