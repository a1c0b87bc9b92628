"""Server names that two servers claim on one listen address (nginx's ``conflicting server name``).

nginx checks this while it reads the configuration
(``ngx_http_server_names``): on each address, the first server to claim a
name keeps it, and every later claim is ignored with a ``[warn]``.  The
rules of a claim are routing's (``nginxws.routing.ServerGroup``, which
applies them at run time): an exact name, ``*.example.org``, ``mail.*``,
and ``.example.org`` (the name itself and its subdomains) claim separately;
regular expressions never conflict.  A ``listen`` host name counts as every
address it resolved to (``Listen.addresses``).
"""

from __future__ import annotations

from typing import TypeVar

from nginxws.conf.address import endpoint_text, endpoints
from nginxws.conf.errors import ConfigError
from nginxws.conf.model import Http, Server

T = TypeVar("T")

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def conflicting_server_names(http: Http) -> list[ConfigError]:
    """nginx's warnings for the names a later server on the same address cannot have."""
    groups: dict[str, dict[int, Server]] = {}  # address as nginx prints it -> servers in file order
    for server in http.servers:
        for listen in server.listens:
            for endpoint in endpoints(listen):
                groups.setdefault(endpoint_text(endpoint), {}).setdefault(id(server), server)
    warnings = []
    for address, servers in groups.items():
        exact: dict[str, Server] = {}
        head: dict[str, Server] = {}
        tail: dict[str, Server] = {}
        for server in servers.values():
            for name in server.server_names or ("",):
                if not name.startswith("~") and not claim(name, exact, head, tail, server):
                    warnings.append(
                        ConfigError(f'conflicting server name "{name}" on {address}, ignored', level="warn")
                    )
    return warnings


def claim(name: str, exact: dict[str, T], head: dict[str, T], tail: dict[str, T], holder: T) -> bool:
    """Record ``holder`` for a ``server_name`` that is not a regular
    expression, in the tables routing looks names up in: ``exact`` names,
    ``head`` (``.example.org`` for ``*.example.org``) and ``tail`` (``mail.``
    for ``mail.*``).  False when an earlier holder has it (nginx's
    ``conflicting server name``)."""
    name = name.translate(_ASCII_LOWER)
    if name.startswith("*."):
        return _add(head, name[1:], holder)
    if name.startswith(".") and len(name) > 1:
        if name[1:] in exact or name in head:
            return False
        exact[name[1:]] = holder
        head[name] = holder
        return True
    if name.endswith(".*"):
        return _add(tail, name[:-1], holder)
    return _add(exact, name, holder)


def _add(table: dict[str, T], key: str, holder: T) -> bool:
    if key in table:
        return False
    table[key] = holder
    return True
