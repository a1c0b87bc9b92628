"""Who may be served: ``allow``/``deny`` (ngx_http_access_module), and what
a request's client address goes through before that is decided.

Rules, as nginx keeps them:

* A level's rules are one list per family (IPv4, IPv6, unix-domain), in the
  order written; ``all`` is put in every list.  A client is matched against
  its family's list only, first match wins: a match on a ``deny`` rule is
  403, on an ``allow`` rule it is served, no match at all is served.  A
  family the level wrote no rule for is not checked.
* An IPv4-mapped IPv6 client (``::ffff:127.0.0.1``, an IPv4 client of a
  dual-stack socket) is matched against the IPv4 list when there is one,
  else against the IPv6 list.
* A level that writes any rule replaces the inherited rules whole; one that
  writes none inherits them (http -> server -> location).

The order around the check is nginx's phases: realip with the server's
settings (post-read), realip with the location's if that found nothing
(pre-access), then allow/deny (access).  ``ClientCheck`` carries the three
for one level; a level without any is ``None`` in the model, so a request
there pays one attribute test.  The rules are compiled when the
configuration is loaded into tuples of integers: a match is an AND and a
comparison per rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nginxws.inet import UNIX, V4, V6, Cidr, Peer
from nginxws.realip import RealIp

FORBIDDEN = "access forbidden by rule"  # nginx's error-log message for a denied request

Compiled = tuple[tuple[int, int, bool], ...]  # (address, mask, deny), first match wins


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One ``allow``/``deny`` as written: ``cidr`` None stands for ``all``."""

    deny: bool
    cidr: Cidr | None


@dataclass(frozen=True, slots=True)
class AccessRules:
    """The ``allow``/``deny`` list of one level, compiled per family.

    ``None`` for a family means the level wrote no rule for it (nginx's
    ``NULL`` array): clients of that family are not checked.
    """

    v4: Compiled | None = None
    v6: Compiled | None = None
    unix: tuple[bool, ...] | None = None

    @classmethod
    def compile(cls, rules: Sequence[AccessRule]) -> AccessRules:
        """The lists of ``rules`` in order, ``all`` in each."""
        lists: dict[int, list] = {}
        for rule in rules:
            families = (V4, V6, UNIX) if rule.cidr is None else (rule.cidr.family,)
            for family in families:
                if family == UNIX:
                    lists.setdefault(UNIX, []).append(rule.deny)
                elif rule.cidr is None:
                    lists.setdefault(family, []).append((0, 0, rule.deny))
                else:
                    lists.setdefault(family, []).append((rule.cidr.address, rule.cidr.mask, rule.deny))
        found = {family: tuple(entries) for family, entries in lists.items()}
        return cls(found.get(V4), found.get(V6), found.get(UNIX))

    def denies(self, peer: Peer) -> bool:
        """Whether ``peer`` is refused (403), as ``ngx_http_access_handler`` decides."""
        family, value = peer.family, peer.value
        if family == V4:
            rules = self.v4
        elif family == V6:
            if self.v4 is not None and value >> 32 == 0xFFFF:
                rules, value = self.v4, value & 0xFFFFFFFF
            else:
                rules = self.v6
        else:
            return self.unix is not None and self.unix[0]
        if rules is None:
            return False
        for address, mask, deny in rules:
            if value & mask == address:
                return deny
        return False


@dataclass(frozen=True, slots=True)
class ClientCheck:
    """What a request to one level goes through, in nginx's phase order.

    ``realip`` is the server's (tried first, as nginx's post-read phase runs
    before a location is chosen); ``location_realip`` the location's own,
    tried when the server's changed nothing; ``rules`` the level's
    ``allow``/``deny``.  Any may be None.
    """

    realip: RealIp | None = None
    location_realip: RealIp | None = None
    rules: AccessRules | None = None

    def client(self, peer: Peer, headers: Sequence[tuple[bytes, bytes]]) -> Peer | None:
        """The address realip puts in place of ``peer``, or None."""
        found = None if self.realip is None else self.realip.client(peer, headers)
        if found is None and self.location_realip is not None:
            found = self.location_realip.client(peer, headers)
        return found
