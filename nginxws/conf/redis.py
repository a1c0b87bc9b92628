"""``websocket_redis``: the Redis that joins the channels of many hosts, from its URLs.

Pure: the arguments as written in, a ``Redis`` (``conf.model``) or an error
message out.  Nothing here resolves a name or opens a socket: ``-t`` checks
the directive's syntax, never the network.

* ``websocket_redis URL;`` names one Redis: ``redis://[[user]:password@]host[:port][/db]``,
  ``rediss://`` for TLS.  The port defaults to Redis's 6379, the database
  to 0 (Redis's pub/sub is not scoped by database; the number is accepted
  as Redis URLs carry it, and only selected).
* ``websocket_redis cluster URL ...;`` names seed nodes of a Redis Cluster
  (one or more): the client learns the rest of the cluster from them.  They
  share a scheme and credentials, and a cluster has only database 0.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from nginxws.conf.model import Redis, RedisNode

DEFAULT_PORT = 6379
SCHEMES = {"redis": False, "rediss": True}  # scheme -> TLS
CLUSTER = "cluster"


class RedisUrlError(ValueError):
    """An argument of ``websocket_redis`` that cannot be used; ``str`` is nginx's message."""


def parse_redis(args: list[str] | tuple[str, ...]) -> Redis:
    """The ``Redis`` that ``websocket_redis ARGS;`` names; raises RedisUrlError."""
    args = list(args)
    cluster = bool(args) and args[0] == CLUSTER
    if cluster:
        args.pop(0)
    if not args:
        raise RedisUrlError('"websocket_redis cluster" needs at least one seed node URL')
    if len(args) > 1 and not cluster:
        raise RedisUrlError('"websocket_redis" directive takes one URL, or "cluster" and seed node URLs')
    parsed = [_parse_url(text) for text in args]
    tls, username, password, db, _node = parsed[0]
    for text, (other_tls, other_user, other_password, _db, _node) in zip(args, parsed):
        if (other_tls, other_user, other_password) != (tls, username, password):
            raise RedisUrlError(f'redis URL "{_shown(text)}" differs in scheme or credentials from the first seed node')
    if cluster:
        for text, (*_rest, other_db, _node) in zip(args, parsed):
            if other_db:
                raise RedisUrlError(f'redis URL "{_shown(text)}" names database {other_db}: a cluster has only 0')
    nodes = tuple(dict.fromkeys(node for *_rest, node in parsed))
    return Redis(nodes=nodes, cluster=cluster, tls=tls, username=username, password=password, db=db)


def _parse_url(text: str) -> tuple[bool, str | None, str | None, int, RedisNode]:
    invalid = RedisUrlError(f'invalid redis URL "{_shown(text)}"')
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError:
        raise invalid from None
    if url.scheme not in SCHEMES or not url.hostname or url.query or url.fragment:
        raise invalid
    path = url.path.lstrip("/")
    if path and not (path.isdigit() and path.isascii()):
        raise invalid
    if port == 0:
        raise invalid
    username = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password is not None else None
    return SCHEMES[url.scheme], username, password, int(path or 0), RedisNode(url.hostname, port or DEFAULT_PORT)


def _shown(text: str) -> str:
    """The URL as an error message shows it: never the password."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return text
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else text
