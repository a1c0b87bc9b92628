"""nginx's request routing: listen address -> server_name -> location.

Cases marked "nginx docs" are the examples of nginx.org's
http/ngx_http_core_module.html#location, http/server_names.html and
http/request_processing.html.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nginxws.conf.errors import ConfigError
from nginxws.conf.model import Http, HttpSettings, Listen, Location, Server, Where
from nginxws.conf.names import conflicting_server_names
from nginxws.routing import (
    Router,
    compile_regex,
    match_location,
    normalize_host,
    normalize_path,
    select_location,
    target_host,
)

SETTINGS = HttpSettings()


def loc(spec: str, *nested: Location) -> Location:
    """A location from its header as written: ``"^~ /images/"``, ``"/"``."""
    modifier, _, pattern = spec.rpartition(" ")
    if spec.startswith("@"):
        modifier, pattern = "@", spec[1:]
    return Location(modifier, pattern, SETTINGS, locations=nested)


def server(
    *names: str,
    listen: str = "0.0.0.0:80",
    default: bool = False,
    locations: tuple[Location, ...] = (),
    addresses: tuple[str, ...] | None = None,
) -> Server:
    """A server with one ``listen``; a host name needs the ``addresses`` the load would have resolved."""
    if listen.startswith("unix:"):
        lst = Listen(None, None, unix=listen[5:], default_server=default)
    else:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        lst = Listen(host, int(port), default_server=default, addresses=addresses or (host,))
    return Server((lst,), names, SETTINGS, locations)


def router(*servers: Server) -> Router:
    return Router(Http(servers, SETTINGS))


def where(location: Location | None) -> str | None:
    """A location as written, for readable assertions."""
    if location is None:
        return None
    return f"{location.modifier} {location.pattern}".strip()


# ---------------------------------------------------------------------------
# Locations

DOCS_LOCATIONS = (
    loc("= /"),  # A
    loc("/"),  # B
    loc("/documents/"),  # C
    loc("^~ /images/"),  # D
    loc(r"~* \.(gif|jpg|jpeg)$"),  # E
)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/", "= /"),  # A
        ("/index.html", "/"),  # B
        ("/documents/document.html", "/documents/"),  # C
        ("/images/1.gif", "^~ /images/"),  # D
        ("/documents/1.jpg", r"~* \.(gif|jpg|jpeg)$"),  # E
    ],
)
def test_nginx_docs_location_example(path, expected):
    assert where(select_location(DOCS_LOCATIONS, path)) == expected


REQUEST_PROCESSING_LOCATIONS = (
    loc("/"),
    loc(r"~* \.(gif|jpg|png)$"),
    loc(r"~ \.php$"),
)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/logo.gif", r"~* \.(gif|jpg|png)$"),
        ("/index.php", r"~ \.php$"),
        ("/about.html", "/"),
        ("/", "/"),
    ],
)
def test_nginx_docs_request_processing_locations(path, expected):
    assert where(select_location(REQUEST_PROCESSING_LOCATIONS, path)) == expected


@pytest.mark.parametrize(
    "locations, path, expected",
    [
        # test_exact_match_beats_prefix
        ((loc("/a"), loc("= /a")), "/a", "= /a"),
        ((loc("/a"), loc("= /a")), "/ab", "/a"),
        # an exact location only matches the whole path
        ((loc("= /a"),), "/a/", None),
        # exact beats a regex listed first
        ((loc("~ ^/a$"), loc("= /a")), "/a", "= /a"),
        # the longest prefix wins whatever the order
        ((loc("/"), loc("/a/b/"), loc("/a/")), "/a/b/c", "/a/b/"),
        ((loc("/a/b/"), loc("/a/"), loc("/")), "/a/c", "/a/"),
        # prefixes compare characters, not path segments
        ((loc("/ab"),), "/abc/d", "/ab"),
        # a regex beats a plain prefix
        ((loc("/a/"), loc(r"~ \.php$")), "/a/x.php", r"~ \.php$"),
        # no regex match: the longest prefix stands
        ((loc("/a/"), loc(r"~ \.php$")), "/a/x.html", "/a/"),
        # a ^~ longer than the plain prefix stops the regexes ...
        ((loc("/"), loc("^~ /static/"), loc(r"~ \.css$")), "/static/a.css", "^~ /static/"),
        # ... a shorter ^~ does not, when a longer plain prefix matches
        ((loc("^~ /a"), loc("/a/b"), loc("~ x$")), "/a/b/x", "~ x$"),
        ((loc("^~ /a"), loc("/a/b"), loc("~ x$")), "/a/x", "^~ /a"),
        # ~ is case-sensitive, ~* is not
        ((loc(r"~ \.PNG$"),), "/a.png", None),
        ((loc(r"~* \.PNG$"),), "/a.png", r"~* \.PNG$"),
        # prefixes are case-sensitive
        ((loc("/Docs/"),), "/docs/a", None),
        # regexes are searched, not anchored
        ((loc("~ b/c"),), "/a/b/c/d", "~ b/c"),
        # named locations never match a URI
        ((loc("@fallback"), loc("/")), "/fallback", "/"),
        ((loc("@fallback"),), "/fallback", None),
        # nothing matches: no location
        ((loc("/a/"),), "/b", None),
        ((), "/", None),
    ],
)
def test_location_precedence(locations, path, expected):
    assert where(select_location(locations, path)) == expected


def test_exact_match_beats_prefix():
    locations = (loc("/"), loc("= /"))
    assert where(select_location(locations, "/")) == "= /"


def test_caret_tilde_stops_regex_search():
    locations = (loc("^~ /images/"), loc(r"~* \.gif$"))
    assert where(select_location(locations, "/images/a.gif")) == "^~ /images/"
    assert where(select_location(locations, "/other/a.gif")) == r"~* \.gif$"


def test_regex_in_order_first_wins():
    first, second = loc(r"~ \.php$"), loc(r"~ ^/app/")
    assert select_location((first, second), "/app/x.php") is first
    assert select_location((second, first), "/app/x.php") is second


@pytest.mark.parametrize(
    "locations, path, expected",
    [
        # a nested prefix refines its parent
        ((loc("/a", loc("/a/b")),), "/a/b/c", "/a/b"),
        ((loc("/a", loc("/a/b")),), "/a/c", "/a"),
        # regexes nested in a prefix are checked
        ((loc("/a", loc(r"~ \.php$")),), "/a/x.php", r"~ \.php$"),
        # a nested exact match ends the search, outer regexes included
        ((loc("/a", loc("= /a/x")), loc("~ x$")), "/a/x", "= /a/x"),
        # a nested regex match ends the search before outer regexes
        (
            (loc("/a", loc(r"~ \.php$")), loc(r"~ \.(php|html)$")),
            "/a/x.php",
            r"~ \.php$",
        ),
        # an outer regex beats the nested prefix of a plain prefix
        ((loc("/a", loc("/a/b")), loc(r"~ \.php$")), "/a/b/x.php", r"~ \.php$"),
        # a nested ^~ silences only its own level's regexes
        (
            (loc("/a", loc("^~ /a/b"), loc(r"~ \.php$")), loc(r"~ \.(php|x)$")),
            "/a/b/x.php",
            r"~ \.(php|x)$",
        ),
        # an outer ^~ silences the outer regexes, not the nested ones
        ((loc("^~ /a", loc(r"~ \.php$")), loc(r"~ \.php$")), "/a/x.php", r"~ \.php$"),
        # a regex location's nested locations are searched too
        ((loc("~ ^/r", loc(r"~ \.php$")),), "/r/x.php", r"~ \.php$"),
        ((loc("~ ^/r", loc(r"~ \.php$")),), "/r/x.html", "~ ^/r"),
    ],
)
def test_nested_locations(locations, path, expected):
    assert where(select_location(locations, path)) == expected


def test_nested_caret_tilde_vs_outer_regex_picks_the_right_objects():
    nested_regex, outer_regex = loc(r"~ \.php$"), loc(r"~ \.php$")
    outer = (loc("^~ /a", nested_regex), outer_regex)
    assert select_location(outer, "/a/x.php") is nested_regex
    assert select_location(outer, "/b/x.php") is outer_regex


def test_regex_captures_are_exposed():
    found = match_location((loc(r"~ ^/u/(?<user>\w+)/(\d+)$"),), "/u/joe/42")
    assert found is not None
    assert found.captures is not None
    assert found.captures["user"] == "joe"
    assert found.captures.group(2) == "42"
    plain = match_location((loc("/"),), "/u/joe/42")
    assert plain is not None and plain.captures is None
    assert match_location((loc("/a"),), "/b") is None


@pytest.mark.parametrize(
    "pattern, subject, group",
    [
        (r"^(?<name>\w+)$", "abc", "abc"),  # Perl 5.10 / PCRE 7
        (r"^(?'name'\w+)$", "abc", "abc"),  # Perl 5.10 / PCRE 7
        (r"^(?P<name>\w+)$", "abc", "abc"),  # Python syntax, PCRE 4
        (r"^(?<name>\w\d{1,3}+)\.example\.net$", "a12.example.net", "a12"),  # docs
    ],
)
def test_pcre_named_group_syntaxes(pattern, subject, group):
    m = compile_regex(pattern).search(subject)
    assert m is not None and m["name"] == group


def test_pcre_translation_leaves_escapes_and_classes_alone():
    assert compile_regex(r"\(?<a").search("(<a")
    assert compile_regex(r"^[(?<]+$").search("(?<")
    assert compile_regex(r"(?<=a)b").search("ab")  # lookbehind, not a group


def test_regex_matching_is_ascii_like_pcre():
    assert compile_regex(r"^\w+$").search("café") is None
    assert compile_regex("É", caseless=True).search("é") is None


def test_bad_location_regex_is_a_config_error():
    bad = Location("~", "(unclosed", SETTINGS, where=Where("/etc/n.conf", 7))
    with pytest.raises(ConfigError) as err:
        router(server("a", locations=(bad,)))
    assert str(err.value).startswith("[emerg] pcre_compile() failed: ")
    assert str(err.value).endswith(' in "(unclosed" in /etc/n.conf:7')


# ---------------------------------------------------------------------------
# Request target -> path


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/", "/"),
        (b"/a/b", "/a/b"),
        (b"/a/b?x=1&y=/../..", "/a/b"),
        (b"/a#frag", "/a"),
        (b"/a%20b", "/a b"),
        (b"/caf%C3%A9", "/café"),
        (b"/a//b///c", "/a/b/c"),
        (b"//", "/"),
        (b"/a/./b/.", "/a/b/"),
        (b"/a/b/../c", "/a/c"),
        (b"/a/b/..", "/a/"),
        (b"/a/b/../", "/a/"),
        (b"/a/..", "/"),
        (b"/.hidden/.../a.", "/.hidden/.../a."),
        (b"/..", None),
        (b"/../a", None),
        (b"/a/../../b", None),
        (b"/a/..?x", "/"),
        (b"/%2e%2E/x", None),
        (b"/a/%2e%2e/b", "/b"),
        (b"/a%2Fb", "/a/b"),
        (b"/a%2f%2F/b", "/a/b"),
        (b"/a%252F", "/a%2F"),  # decoded once
        (b"/a%3Fb?c", "/a?b"),
        (b"/a%23b", "/a#b"),
        (b"/%zz", None),
        (b"/a%4", None),
        (b"/a%", None),
        (b"/a%00", None),
        (b"/a b", None),
        (b"/a\x01", None),
        (b"/a\x7f", None),
        (b"*", None),
        (b"a/b", None),
        (b"", None),
        (b"http://example.com/a//b?q", "/a/b"),
        (b"http://example.com", "/"),
        (b"https://example.com:8443?x", "/"),
        (b"HTTP://[::1]:80/x", "/x"),
        (b"ws://host/../x", None),
        (b"http://exa mple.com/", None),
        (b"http:/example.com/", None),
    ],
)
def test_normalize_path(target, expected):
    assert normalize_path(target) == expected


def test_invalid_utf8_in_path_never_equals_a_configured_name():
    path = normalize_path(b"/caf%E9")
    assert path is not None and path != "/café"
    assert select_location((loc("= /café"), loc("/caf")), path).pattern == "/caf"


@given(
    st.one_of(
        st.binary(max_size=40),
        st.lists(
            st.sampled_from([b"/", b".", b"..", b"%2e", b"%2F", b"%", b"a", b"?", b"#", b"%00"]),
            max_size=20,
        ).map(b"".join),
    )
)
def test_normalize_path_property(target):
    path = normalize_path(target)
    if path is not None:
        assert path.startswith("/")
        assert "//" not in path and "/./" not in path and "/../" not in path
        assert not path.endswith(("/.", "/.."))


@pytest.mark.parametrize(
    "target, expected",
    [
        (b"/a", None),
        (b"http://Example.com/a", "Example.com"),
        (b"http://example.com:8080", "example.com:8080"),
        (b"http://[::1]:80/", "[::1]:80"),
        (b"http:///a", ""),
        (b"*", None),
    ],
)
def test_target_host(target, expected):
    assert target_host(target) == expected


# ---------------------------------------------------------------------------
# Host


@pytest.mark.parametrize(
    "host, expected",
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        (b"Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        ("example.com.", "example.com"),
        ("example.com.:80", "example.com"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("_", "_"),
        ("", None),
        (".", None),
        (":80", None),
        ("a..b", None),
        ("a/b", None),
        ("a b", None),
        ("a\x00b", None),
    ],
)
def test_normalize_host(host, expected):
    assert normalize_host(host) == expected


# ---------------------------------------------------------------------------
# Server names

DOCS_SERVERS = (
    server("example.org", "www.example.org"),
    server("*.example.org"),
    server("mail.*"),
    server(r"~^(?<user>.+)\.example\.net$"),
)


@pytest.mark.parametrize(
    "host, index",
    [
        ("example.org", 0),
        ("www.example.org", 0),
        ("foo.example.org", 1),
        ("www.sub.example.org", 1),  # an asterisk matches several name parts
        ("mail.example.com", 2),
        ("mail.example.org", 1),  # leading wildcard beats trailing wildcard
        ("mail.example.net", 2),  # trailing wildcard beats regex
        ("joe.example.net", 3),
        ("example.net", 0),  # nothing matches: the first server is the default
    ],
)
def test_nginx_docs_server_names(host, index):
    group = router(*DOCS_SERVERS).servers_for(("10.0.0.1", 80))
    assert group.select_server(host) is DOCS_SERVERS[index]


def _pick(names_per_server: list[tuple[str, ...]], host: str | None) -> int:
    servers = [server(*names) for names in names_per_server]
    chosen = router(*servers).servers_for(("127.0.0.1", 80)).select_server(host)
    return servers.index(chosen)


@pytest.mark.parametrize(
    "names, host, index",
    [
        # exact beats any wildcard and regex
        ([("*.example.org",), ("~.*",), ("www.example.org",)], "www.example.org", 2),
        # .example.org is both example.org and *.example.org
        ([("x",), (".example.org",)], "example.org", 1),
        ([("x",), (".example.org",)], "a.b.example.org", 1),
        # *.example.org does not match example.org itself
        ([("x",), ("*.example.org",)], "example.org", 0),
        # the longest trailing wildcard wins
        ([("www.*",), ("www.example.*",)], "www.example.com", 1),
        ([("www.example.*",), ("www.*",)], "www.other.com", 1),
        # a trailing wildcard needs something after its dot
        ([("www.*",), ("www.example.*",)], "www.example", 0),
        ([("x",), ("mail.*",)], "mail", 0),
        # regexes in order of appearance
        ([("x",), (r"~^a",), (r"~^ab",)], "abc", 1),
        ([("x",), (r"~^ab",), (r"~^a",)], "abc", 1),
        # a regex with an upper-case letter is case-insensitive (nginx rule)
        ([("x",), (r"~^[A-Z]+\.test$",)], "abc.test", 1),
        ([("x",), (r"~^[a-z]+\.TEST$",)], "abc.test", 1),
        # the IP address is a name like any other
        ([("x",), ("192.168.1.1",)], "192.168.1.1:80", 1),
        ([("x",), ("[::1]",)], "[::1]:8080", 1),
        # names are compared case-insensitively, without port and final dot
        ([("x",), ("WWW.Example.org",)], "www.EXAMPLE.org.:8080", 1),
        # no Host: the empty name
        ([("x",), ("",)], None, 1),
        # a server without server_name has nginx's default, ""
        ([("x",), ()], None, 1),
        # regexes are not tried without a Host
        ([("x",), ("~.*",)], None, 0),
        # an invalid Host (nginx answers 400) goes to the default server
        ([("x",), ("",), ("~.*",)], "a..b", 0),
        # "_" is just a name that never matches a real host
        ([("_",), ("example.org",)], "example.net", 0),
    ],
)
def test_server_name_precedence(names, host, index):
    assert _pick(names, host) == index


def test_longest_leading_wildcard():
    names = [("*.example.org",), ("*.sub.example.org",)]
    assert _pick(names, "a.sub.example.org") == 1
    assert _pick(names, "sub.example.org") == 0
    assert _pick(names, "a.example.org") == 0
    assert _pick(list(reversed(names)), "a.sub.example.org") == 0


def test_default_server_when_no_name_matches():
    # nginx docs (request_processing): default_server on the second server.
    servers = (
        server("example.org", "www.example.org"),
        server("example.net", "www.example.net", default=True),
        server("example.com", "www.example.com"),
    )
    group = router(*servers).servers_for(("127.0.0.1", 80))
    assert group.default_server is servers[1]
    assert group.select_server("unknown.example") is servers[1]
    assert group.select_server(None) is servers[1]
    assert group.select_server("www.example.com") is servers[2]


def test_empty_server_name_catches_requests_without_host():
    # nginx docs: "How to prevent processing requests with undefined server names".
    servers = (server("example.org"), server(""))
    group = router(*servers).servers_for(("127.0.0.1", 80))
    assert group.select_server(None) is servers[1]
    assert group.select_server("example.org") is servers[0]


def test_single_server_skips_name_matching():
    only = server("example.org")
    group = router(only).servers_for(("127.0.0.1", 80))
    assert group.select_server("other.net") is only
    assert group.select_server("a..b") is only


def test_conflicting_server_name_first_wins_with_warning():
    first, second = server("example.org"), server("example.org", ".example.com")
    third = server("example.com")
    r = router(first, second, third)
    group = r.servers_for(("127.0.0.1", 80))
    assert group.select_server("example.org") is first
    assert group.select_server("example.com") is second
    warnings = conflicting_server_names(Http((first, second, third), SETTINGS))
    assert [str(w) for w in warnings] == [
        '[warn] conflicting server name "example.org" on 0.0.0.0:80, ignored',
        '[warn] conflicting server name "example.com" on 0.0.0.0:80, ignored',
    ]


def test_bad_server_name_regex_is_a_config_error():
    bad = Server((Listen("0.0.0.0", 80, addresses=("0.0.0.0",)),), ("~(",), SETTINGS, where=Where("/n.conf", 3))
    with pytest.raises(ConfigError, match=r"pcre_compile\(\) failed: .* in /n.conf:3$"):
        router(bad)


# ---------------------------------------------------------------------------
# Listen addresses


def test_specific_address_beats_wildcard():
    wildcard = server("example.org", listen="0.0.0.0:80")
    specific = server("other.net", listen="127.0.0.1:80")
    r = router(wildcard, specific)
    # Servers on the wildcard are not candidates, whatever the Host.
    assert r.servers_for(("127.0.0.1", 80)).servers == (specific,)
    assert r.servers_for(("127.0.0.1", 80)).select_server("example.org") is specific
    assert r.servers_for(("10.1.2.3", 80)).servers == (wildcard,)


@pytest.mark.parametrize(
    "default_on_second, host, local, index",
    [
        # nginx docs: "Mixed name-based and IP-based virtual servers"
        (False, "www.example.com", "192.168.1.1", 0),
        (True, "www.example.com", "192.168.1.1", 1),
        (True, "example.org", "192.168.1.1", 0),
        (True, "example.org", "192.168.1.2", 2),
    ],
)
def test_nginx_docs_mixed_name_and_ip_servers(default_on_second, host, local, index):
    servers = (
        server("example.org", "www.example.org", listen="192.168.1.1:80"),
        server(
            "example.net",
            "www.example.net",
            listen="192.168.1.1:80",
            default=default_on_second,
        ),
        server("example.com", "www.example.com", listen="192.168.1.2:80", default=True),
    )
    group = router(*servers).servers_for((local, 80))
    assert group.select_server(host) is servers[index]


def test_port_is_part_of_the_address():
    a, b = server("a", listen="0.0.0.0:80"), server("b", listen="0.0.0.0:8080")
    r = router(a, b)
    assert r.servers_for(("127.0.0.1", 8080)).servers == (b,)
    with pytest.raises(LookupError):
        r.servers_for(("127.0.0.1", 9999))


def test_ipv6_wildcard_and_specific():
    wildcard = server("w", listen="[::]:80")
    loopback = server("l", listen="[::1]:80")
    r = router(wildcard, loopback)
    assert r.servers_for(("::1", 80, 0, 0)).servers == (loopback,)
    assert r.servers_for(("0:0:0:0:0:0:0:1", 80, 0, 0)).servers == (loopback,)
    assert r.servers_for(("fe80::1%eth0", 80, 0, 2)).servers == (wildcard,)
    assert r.servers_for(("::1", 80, 0, 0)).address == "[::1]:80"


def test_ipv4_mapped_address_on_dual_stack_wildcard():
    dual = Server((Listen("::", 80, ipv6only=False, addresses=("::",)),), ("d",), SETTINGS)
    r = router(dual)
    assert r.servers_for(("::ffff:127.0.0.1", 80, 0, 0)).servers == (dual,)


def test_ipv4_and_ipv6_wildcards_are_separate():
    v4, v6 = server("v4", listen="0.0.0.0:80"), server("v6", listen="[::]:80")
    r = router(v4, v6)
    assert r.servers_for(("127.0.0.1", 80)).servers == (v4,)
    assert r.servers_for(("::1", 80, 0, 0)).servers == (v6,)


def test_unix_socket_group():
    a = server("a", listen="unix:/tmp/a.sock")
    b = server("b", listen="unix:/tmp/a.sock", default=True)
    group = router(a, b).servers_for("/tmp/a.sock")
    assert group.servers == (a, b)
    assert group.select_server("x") is b
    assert group.address == "unix:/tmp/a.sock"


def test_listen_host_name_joins_every_address_it_resolved_to():
    named = server("n", listen="web.internal:80", addresses=("127.0.0.1", "::1"))
    r = router(named)
    assert r.servers_for(("127.0.0.1", 80)).servers == (named,)
    assert r.servers_for(("::1", 80, 0, 0)).servers == (named,)
    assert r.servers_for(("::1", 80, 0, 0)).address == "[::1]:80"


def test_a_listen_without_its_resolved_addresses_is_refused():
    # Only conf.load resolves; a Router never looks a name up itself.
    with pytest.raises(ValueError, match="no resolved addresses"):
        router(Server((Listen("web.internal", 80),), ("n",), SETTINGS))


def test_default_server_flag_on_any_listen_of_the_address():
    # listen 80; listen 0.0.0.0:80 default_server; are one address.
    a = server("a")
    b = Server(
        (
            Listen("0.0.0.0", 80, addresses=("0.0.0.0",)),
            Listen("0.0.0.0", 80, default_server=True, addresses=("0.0.0.0",)),
        ),
        ("b",),
        SETTINGS,
    )
    group = router(a, b).servers_for(("127.0.0.1", 80))
    assert group.servers == (a, b)
    assert group.default_server is b
