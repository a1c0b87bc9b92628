"""allow/deny, push_allow/push_deny, realip and user as the configuration reads
them: inheritance, the compiled checks, warnings and errors."""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
from pathlib import Path
from types import SimpleNamespace

import pytest

from nginxws.conf import ConfigError, load
from nginxws.conf.model import Config, User, all_settings
from nginxws.inet import V4, V6, Peer

EVENTS = "events {}\n"


def load_text(tmp_path: Path, text: str, **kwargs) -> Config:
    (tmp_path / "nginx.conf").write_text(text)
    return load(str(tmp_path / "nginx.conf"), prefix=str(tmp_path), **kwargs)


def http(tmp_path: Path, body: str, **kwargs) -> Config:
    return load_text(tmp_path, EVENTS + "http {\n" + body + "\n}\n", **kwargs)


def peer(text: str) -> Peer:
    ip = ipaddress.ip_address(text)
    return Peer(V4 if ip.version == 4 else V6, int(ip))


def by_pattern(locations, pattern):
    return next(loc for loc in locations if loc.pattern == pattern)


def test_no_rule_and_no_realip_means_no_check_anywhere(tmp_path: Path) -> None:
    cfg = http(tmp_path, "server { location /ws { websocket; location /ws/in { } } location /r { return 204; } }")
    assert all(s.check is None and s.push_access is None for s in all_settings(cfg.http))


def test_rules_inherit_down_and_a_level_with_rules_replaces_them(tmp_path: Path) -> None:
    cfg = http(tmp_path, """
        deny 10.0.0.0/8;
        server {
            location /inherits { }
            location /own { allow 10.0.0.1; deny all;
                location /own/nested { }
                location /own/v6 { deny ::1; }
            }
        }
        server { allow all; }
    """)
    first, second = cfg.http.servers
    inherits, own = by_pattern(first.locations, "/inherits"), by_pattern(first.locations, "/own")
    nested, only_v6 = own.locations
    assert first.settings.check.rules is cfg.http.settings.check.rules
    assert inherits.settings.check.rules.denies(peer("10.1.1.1"))
    assert not own.settings.check.rules.denies(peer("10.0.0.1"))
    assert own.settings.check.rules.denies(peer("10.1.1.1"))
    assert own.settings.check.rules.denies(peer("192.0.2.1"))
    assert nested.settings.check.rules is own.settings.check.rules
    # a level with IPv6 rules only replaces the IPv4 ones too: nothing checks IPv4 there
    assert not only_v6.settings.check.rules.denies(peer("10.1.1.1"))
    assert only_v6.settings.check.rules.denies(peer("::1"))
    assert not second.settings.check.rules.denies(peer("10.1.1.1"))


def test_push_rules_are_apart_from_allow_and_deny(tmp_path: Path) -> None:
    cfg = http(tmp_path, """
        push_allow 127.0.0.1; push_deny all;
        server { allow all; location /ws { websocket; } location /open { websocket; push_allow all; } }
    """)
    (server,) = cfg.http.servers
    ws, open_ = server.locations
    assert ws.settings.push_access.denies(peer("::1"))
    assert not ws.settings.push_access.denies(peer("127.0.0.1"))
    assert not open_.settings.push_access.denies(peer("::1"))
    assert not ws.settings.check.rules.denies(peer("::1"))
    no_push_rules = http(tmp_path, "server { deny all; location /ws { websocket; } }").http.servers[0]
    assert no_push_rules.settings.push_access is None


def test_low_address_bits_warn_as_nginx(tmp_path: Path) -> None:
    cfg = http(tmp_path, "allow 10.1.2.3/8;\nset_real_ip_from 2001:db8::1/32;\nserver { }")
    assert [str(w) for w in cfg.warnings] == [
        f"[warn] low address bits of 10.1.2.3/8 are meaningless in {tmp_path}/nginx.conf:3",
        f"[warn] low address bits of 2001:db8::1/32 are meaningless in {tmp_path}/nginx.conf:4",
    ]


def test_realip_settings_are_each_inherited_on_their_own(tmp_path: Path) -> None:
    cfg = http(tmp_path, """
        set_real_ip_from 127.0.0.1;
        server {
            real_ip_header X-Forwarded-For;
            location /a { real_ip_recursive on; }
            location /b { set_real_ip_from 10.0.0.0/8; }
        }
    """)
    (server,) = cfg.http.servers
    a, b = server.locations
    assert cfg.http.settings.realip.header == "X-Real-IP"
    assert server.settings.realip.header == "X-Forwarded-For"
    assert server.settings.realip.trusted == cfg.http.settings.realip.trusted
    assert (a.settings.realip.header, a.settings.realip.recursive) == ("X-Forwarded-For", True)
    assert a.settings.realip.trusted == server.settings.realip.trusted
    assert b.settings.realip.header == "X-Forwarded-For" and not b.settings.realip.recursive
    assert len(b.settings.realip.trusted) == 1 and b.settings.realip.trusted[0].address == 0x0A000000


def test_a_location_check_tries_its_server_s_realip_first(tmp_path: Path) -> None:
    cfg = http(tmp_path, """
        server {
            set_real_ip_from 127.0.0.1;
            location /same { }
            location /own { set_real_ip_from ::1; }
        }
        server { location /only { set_real_ip_from ::1; } }
    """)
    first, second = cfg.http.servers
    same, own = first.locations
    assert same.settings.check.realip is first.settings.realip and same.settings.check.location_realip is None
    assert own.settings.check.realip is first.settings.realip
    assert own.settings.check.location_realip is own.settings.realip
    (only,) = second.locations
    assert second.settings.check is None
    assert (only.settings.check.realip, only.settings.check.location_realip) == (None, only.settings.realip)


def test_set_real_ip_from_a_host_name_trusts_every_address_it_resolves_to(tmp_path: Path) -> None:
    table = {"balancer.test": ("10.0.0.5", "fe80::5%2")}
    cfg = http(tmp_path, "set_real_ip_from balancer.test;\nset_real_ip_from unix:;", resolve=lambda n: table.get(n, ()))
    trusted = cfg.http.settings.realip.trusted
    link_local = int(ipaddress.ip_address("fe80::5"))
    assert [(c.family, c.address) for c in trusted] == [(4, 0x0A000005), (6, link_local), (0, 0)]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("allow 10.0.0.256;", 3, 'invalid parameter "10.0.0.256"'),
        ("deny localhost;", 3, 'invalid parameter "localhost"'),  # nginx resolves no name here
        ("push_deny 10.0.0.0/33;", 3, 'invalid parameter "10.0.0.0/33"'),
        ("allow;", 3, 'invalid number of arguments in "allow" directive'),
        ("deny 1.2.3.4 5.6.7.8;", 3, 'invalid number of arguments in "deny" directive'),
        ("set_real_ip_from nosuch.test;", 3, 'host not found in set_real_ip_from "nosuch.test"'),
        ("real_ip_header proxy_protocol;", 3,
         'the "proxy_protocol" parameter of the "real_ip_header" directive is not supported by nginxws'),
        ("real_ip_header X-Real-IP;\nreal_ip_header X-Forwarded-For;", 4, '"real_ip_header" directive is duplicate'),
        ("real_ip_recursive yes;", 3, 'invalid value "yes" in "real_ip_recursive" directive, it must be "on" or "off"'),
        ("user nobody;", 3, '"user" directive is not allowed here'),
    ],
)
def test_errors_are_nginx_s(tmp_path: Path, body: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        http(tmp_path, body, resolve=lambda name: ())
    assert str(err.value) == f"[emerg] {message} in {tmp_path}/nginx.conf:{line}"


def test_allow_in_main_is_not_allowed_here(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, "allow all;\n" + EVENTS)
    assert str(err.value) == f'[emerg] "allow" directive is not allowed here in {tmp_path}/nginx.conf:1'


# -- user ------------------------------------------------------------------------------


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch):
    """Root, and a passwd/group database that knows only what the test says."""
    users = {"www-data": 33, "svc": 1500}
    groups = {"www-data": 33, "nogroup": 65534}

    def getpwnam(name: str):
        if name not in users:
            raise KeyError(name)
        return SimpleNamespace(pw_uid=users[name], pw_gid=999)

    def getgrnam(name: str):
        if name not in groups:
            raise KeyError(name)
        return SimpleNamespace(gr_gid=groups[name])

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    monkeypatch.setattr(grp, "getgrnam", getgrnam)


@pytest.mark.usefixtures("accounts")
def test_user_without_group_takes_the_group_of_the_same_name(tmp_path: Path) -> None:
    assert load_text(tmp_path, "user www-data;\n" + EVENTS).user == User("www-data", 33, 33)
    assert load_text(tmp_path, "user svc nogroup;\n" + EVENTS).user == User("svc", 1500, 65534)
    assert load_text(tmp_path, EVENTS).user is None


@pytest.mark.usefixtures("accounts")
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user nosuch;", 'getpwnam("nosuch") failed'),
        ("user svc;", 'getgrnam("svc") failed'),  # no group "svc": nginx does not take the user's primary group
        ("user svc nosuch;", 'getgrnam("nosuch") failed'),
        ("user svc nogroup;\nuser svc nogroup;", '"user" directive is duplicate'),
        ("user a b c;", 'invalid number of arguments in "user" directive'),
    ],
)
def test_user_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text + "\n" + EVENTS)
    line = text.count("\n") + 1
    assert str(err.value) == f"[emerg] {message} in {tmp_path}/nginx.conf:{line}"


def test_user_is_ignored_with_nginx_s_warning_unless_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cfg = load_text(tmp_path, "user nosuch-user-at-all;\n" + EVENTS)
    assert cfg.user is None
    assert [str(w) for w in cfg.warnings] == [
        '[warn] the "user" directive makes sense only if the master process runs with super-user privileges, '
        f"ignored in {tmp_path}/nginx.conf:1"
    ]
    assert str(load(str(tmp_path / "nginx.conf"), directives="user x;").warnings[0]).endswith(
        "ignored in command line")
