"""The configuration corpus: valid files load to the expected model, broken
files fail with exactly nginx's error line.

tests/conf_corpus/invalid/NAME.conf starts with ``# expect: <error line>``,
where ``{file}`` is the file's absolute path and ``{dir}`` its directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nginxws.conf import ConfigError
from nginxws.conf import load as load_with_dns
from nginxws.conf.model import (
    DEFAULT_IDLEINTVL,
    DEFAULT_PINGINTVL,
    AccessLog,
    Certificate,
    ErrorLog,
    Listen,
    PushListen,
    Return,
    Ssl,
    WebSocket,
)

CORPUS = Path(__file__).resolve().parents[1] / "conf_corpus"
VALID = CORPUS / "valid"
INVALID = sorted((CORPUS / "invalid").glob("*.conf"))
ROOT_PORT = 80 if os.getuid() == 0 else 8000


def only_localhost_resolves(name: str) -> tuple[str, ...]:
    """Keep the corpus independent of the machine's DNS."""
    return ("127.0.0.1",) if name == "localhost" else ()


def load(path: str, **kw):
    return load_with_dns(path, resolve=only_localhost_resolves, **kw)


@pytest.mark.parametrize("conf", INVALID, ids=lambda p: p.stem)
def test_broken_config_fails_with_nginx_error_line(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Loaded as root would load it, so that "user" is looked up (anyone else is only warned).
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    first = conf.read_text().splitlines()[0]
    assert first.startswith("# expect: ")
    expected = first[len("# expect: ") :].replace("{file}", str(conf)).replace("{dir}", str(conf.parent))
    with pytest.raises(ConfigError) as err:
        load(str(conf))
    assert str(err.value) == expected


def _load(name: str):
    return load(str(VALID / name), prefix=str(VALID))


def _location(server, pattern):
    return next(loc for loc in server.locations if loc.pattern == pattern)


def test_minimal_config_has_nginx_defaults() -> None:
    cfg = _load("minimal.conf")
    prefix = str(VALID) + "/"
    assert cfg.prefix == prefix
    assert cfg.path == prefix + "minimal.conf"
    assert cfg.worker_processes == 1
    assert cfg.pid == prefix + "logs/nginxws.pid"
    assert cfg.error_logs == (ErrorLog(prefix + "logs/error.log", "error"),)
    assert (cfg.daemon, cfg.master_process, cfg.worker_connections) == (True, True, 512)
    assert cfg.http is None
    assert cfg.warnings == ()
    assert [f.path for f in cfg.files] == [prefix + "minimal.conf"]


def test_stock_debian_config_with_websocket_location_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # "user www-data;" warns, whoever runs the test
    cfg = _load("debian/nginx.conf")
    d = str(VALID / "debian") + "/"
    assert cfg.worker_processes == (os.cpu_count() or 1)
    assert cfg.pid == "/run/nginx.pid"
    assert cfg.error_logs == (ErrorLog("/var/log/nginx/error.log"),)
    assert cfg.worker_connections == 768
    assert [f.path for f in cfg.files] == [
        d + "nginx.conf",
        d + "mime.types",
        d + "sites-enabled/default",
        d + "sites-enabled/push.example.com",
    ]
    assert cfg.http.settings.access_logs == (AccessLog("/var/log/nginx/access.log"),)
    default, push = cfg.http.servers
    assert [(x.host, x.port, x.default_server) for x in default.listens] == [
        ("0.0.0.0", 80, True),
        ("::", 80, True),
    ]
    assert default.server_names == ("_",)
    ws = _location(default, "/ws").websocket
    assert (ws.pingintvl, ws.idleintvl) == (10.0, 15.0)
    assert push.listens[0].key == ("127.0.0.1", 8080)
    ws = _location(push, r"^/ws/(\d+)$").websocket
    assert ws == WebSocket(
        pingintvl=30.0,
        idleintvl=60.0,
        welcome=False,
        push_listen=PushListen("127.0.0.1", 9000, ("127.0.0.1",)),
        push_host=("push.example.com", "10.0.0.1"),
    )
    ignored = [w.message.split('"')[1] for w in cfg.warnings]
    assert ignored == [
        "user", "sendfile", "tcp_nopush", "types_hash_max_size",
        "gzip",
    ]  # fmt: skip
    # The stock file's TLS lines (http level) are honoured, and inherited by every server.
    assert {server.ssl for server in cfg.http.servers} == {
        Ssl(protocols=("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"), prefer_server_ciphers=True)
    }
    assert str(cfg.warnings[0]) == (
        '[warn] the "user" directive makes sense only if the master process runs with super-user '
        f"privileges, ignored in {d}nginx.conf:1"
    )
    # The static files of the default site: root, index and try_files are served.
    files = default.settings.files
    assert (files.root.path.source, files.root.alias) == ("/var/www/html", None)
    assert [name.source for name in files.index] == ["index.html", "index.htm", "index.nginx-debian.html"]
    assert files.default_type == "application/octet-stream"
    assert (files.types["html"], files.types["jpg"], files.types["exe"]) == (
        "text/html", "image/jpeg", "application/octet-stream")
    site = _location(default, "/")
    assert site.settings.files == files
    assert [(name.source, directory) for name, directory in site.try_files.files] == [("$uri", False), ("$uri", True)]
    assert (site.try_files.fallback.source, site.try_files.code) == ("=404", 404)


def test_original_module_example_loads() -> None:
    cfg = _load("original.conf")
    (server,) = cfg.http.servers
    assert server.listens == (Listen("0.0.0.0", 8080, addresses=("0.0.0.0",)),)
    assert server.server_names == ("localhost",)
    assert server.locations[0].pattern == "/ws"
    assert server.locations[0].websocket == WebSocket(pingintvl=10.0, idleintvl=15.0)
    assert server.locations[0].where.line == 13


def test_listen_forms() -> None:
    cfg = _load("listen_forms.conf")
    first, second, third = cfg.http.servers
    assert [(x.host, x.port, x.unix, x.addresses) for x in first.listens] == [
        ("0.0.0.0", 8001, None, ("0.0.0.0",)),
        ("0.0.0.0", 8002, None, ("0.0.0.0",)),
        ("127.0.0.1", 8003, None, ("127.0.0.1",)),
        ("127.0.0.2", 80, None, ("127.0.0.2",)),
        ("::", 8004, None, ("::",)),
        ("::1", 80, None, ("::1",)),
        ("localhost", 8005, None, ("127.0.0.1",)),  # what the load resolved it to
        (None, None, "/run/nginxws.sock", ()),
    ]
    assert first.listens[1].reuseport and first.listens[1].backlog == 1024
    assert first.listens[2].default_server
    assert first.listens[4].ipv6only is False
    # socket options given once for *:8002 apply to every server on it
    assert (second.listens[0].reuseport, second.listens[0].backlog) == (True, 1024)
    assert third.listens == (Listen("0.0.0.0", ROOT_PORT, addresses=("0.0.0.0",)),)
    assert third.server_names == ("no-listen",)


def test_server_name_forms() -> None:
    (server,) = _load("server_names.conf").http.servers
    assert server.server_names == (
        "example.com",
        "*.example.org",
        ".example.net",
        "www.*",
        r"~^ws(?<n>\d+)\.example\.com$",
        "",
        "_",
        "extra.example.com",
    )


def test_location_modifiers_and_nesting() -> None:
    (server,) = _load("locations.conf").http.servers
    assert [(loc.modifier, loc.pattern) for loc in server.locations] == [
        ("=", "/exact"),
        ("^~", "/static/"),
        ("~", r"\.php$"),
        ("~*", "^/ws/[0-9]{2}$"),
        ("@", "named"),
        ("", "/outer"),
        ("=", "/glued"),
        ("~*", "^/glued-re"),
        ("", "/"),
    ]
    outer = _location(server, "/outer")
    assert [(loc.modifier, loc.pattern) for loc in outer.locations] == [("", "/outer/inner"), ("~", "^/outer/re")]
    assert outer.locations[0].websocket == WebSocket()
    assert _location(server, "/exact").return_ == Return(204)
    assert _location(server, "named").return_ == Return(200, "named")
    assert _location(server, "/").return_ == Return(302, "https://example.com/")


def test_http_settings_merge_down_as_nginx_merges() -> None:
    http = _load("merge.conf").http
    (server,) = http.servers
    loc = server.locations[0]
    deep = loc.locations[0]
    assert http.settings.client_max_body_size == 2 * 1024 * 1024
    assert http.settings.keepalive_timeout == 30.0
    assert http.settings.server_tokens is False
    assert http.settings.client_header_timeout == 60.0
    assert http.settings.large_client_header_buffers == (8, 16384)
    assert http.settings.client_header_buffer_size == 2048
    assert (server.settings.send_timeout, server.settings.client_body_timeout) == (20.0, 0.5)
    assert server.settings.client_max_body_size == 2 * 1024 * 1024
    assert (loc.settings.client_max_body_size, loc.settings.send_timeout) == (65536, 20.0)
    assert (deep.settings.client_max_body_size, deep.settings.send_timeout) == (65536, 3600.0)
    assert deep.settings.server_tokens is False


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/default", WebSocket()),
        ("/original", WebSocket(pingintvl=10.0, idleintvl=15.0)),
        ("/only-idle", WebSocket(pingintvl=DEFAULT_PINGINTVL, idleintvl=400.0)),
        ("/positional", WebSocket(pingintvl=10.0, idleintvl=15.0)),
        ("/units", WebSocket(pingintvl=0.5, idleintvl=90.0)),
        (
            "/all",
            WebSocket(
                pingintvl=30.0,
                idleintvl=300.0,
                max_message_size=65536,
                welcome=False,
                push_listen=PushListen("::1", 9000, ("::1",)),
                push_host=("a.example.com", "10.0.0.1"),
                push_queue=128,
            ),
        ),
        ("/push-port", WebSocket(push_listen=PushListen(None, 9100))),
        ("/push-addr", WebSocket(push_listen=PushListen("127.0.0.1", 0, ("127.0.0.1",)))),
        ("/deflate", WebSocket(deflate=True)),
        ("/deflate-small", WebSocket(deflate=True, deflate_window_bits=9)),
        ("/deflate-context", WebSocket(deflate=True, deflate_no_context_takeover=False)),
    ],
)
def test_websocket_directive_forms(path: str, expected: WebSocket) -> None:
    (server,) = _load("websocket_forms.conf").http.servers
    assert _location(server, path).websocket == expected
    assert DEFAULT_IDLEINTVL == 360.0


def test_logs_and_main_settings() -> None:
    cfg = _load("logs.conf")
    p = str(VALID) + "/"
    assert cfg.error_logs == (ErrorLog("stderr", "info"), ErrorLog(p + "logs/main.log"))
    assert cfg.pid == p + "run/nginxws.pid"
    assert (cfg.daemon, cfg.master_process) == (False, False)
    assert (cfg.worker_rlimit_nofile, cfg.worker_shutdown_timeout) == (4096, 10.0)
    json_log = AccessLog("/dev/stdout", "json", '{"addr":"$remote_addr","status":$status}', "json")
    assert cfg.http.settings.access_logs == (json_log,)
    assert cfg.http.settings.error_logs == (ErrorLog(p + "logs/http.log", "warn"),)
    logged_off, debug = cfg.http.servers
    assert logged_off.settings.access_logs == ()
    assert logged_off.locations[0].settings.access_logs == (AccessLog("stderr"),)
    assert debug.settings.access_logs == (json_log,)
    assert debug.settings.error_logs == (ErrorLog("stderr", "debug"),)
    assert dict(cfg.http.log_formats)["json"] == json_log.format


def test_lexical_rules_quotes_escapes_comments_variables() -> None:
    http = _load("lexical.conf").http
    formats = dict(http.log_formats)
    assert formats["quoted name"] == "single 'quoted' with ; and { and #" + ' "double" \t tab' + "$remote_addr${remote_user}x"
    (server,) = http.servers
    assert server.listens[0].port == 8080
    assert server.server_names == ("a#b.example.com",)
    assert [loc.pattern for loc in server.locations] == ["/with space", "^/a{2}$", r"^/(\d+)/x$"]
    assert server.locations[0].return_ == Return(200, "a;b{c}#d")


def test_channels_and_publish_locations() -> None:
    chat, publish = _load("channels.conf").http.servers
    sources = {loc.pattern: [v.source for v in loc.channels] for loc in chat.locations}
    assert sources == {
        "/chat": ["$arg_room", "news"],
        r"^/sub/(\w+)$": ["$1"],
        r"^/named/(?<room>\w+)$": ["room-$room", "${room}x"],
        "/late": ["late"],
        r"^/outer/(?<area>\w+)/": [],  # not inherited
    }
    nested = _location(chat, r"^/outer/(?<area>\w+)/").locations[0]
    assert [v.source for v in nested.channels] == ["$area.$1", "$cookie_user@$host:$http_x_team"]
    assert [loc.channels[0].constant for loc in chat.locations[:3]] == [False, False, False]
    assert _location(chat, "/chat").channels[1].constant
    assert all(loc.publish is None for loc in chat.locations)
    assert [(loc.publish.source, loc.publish.constant, loc.websocket) for loc in publish.locations] == [
        ("$arg_channel", False, None),
        ("$1", False, None),
        ("news", True, None),
    ]


def test_tls_settings_merge_from_http_and_ssl_covers_the_whole_address() -> None:
    cfg = _load("tls.conf")
    tls = str(VALID) + "/../tls/"
    inherited, own, plain = cfg.http.servers
    assert inherited.ssl == Ssl(
        certificates=(Certificate(tls + "server.pem", tls + "encrypted.key"),),
        passwords=(b"not-this-one", b"corpus-secret"),
        protocols=("TLSv1.3",),
    )
    assert own.ssl == Ssl(
        certificates=(Certificate(tls + "server.pem", tls + "server.key"),),
        passwords=(b"not-this-one", b"corpus-secret"),
        protocols=("TLSv1.2", "TLSv1.3"),
        ciphers="ECDHE+AESGCM",
        prefer_server_ciphers=True,
        session_tickets=False,
    )
    # "ssl" on one listen of an address makes the address TLS for every server on it.
    assert [lst.ssl for server in (inherited, own, plain) for lst in server.listens] == [True, True, False]
    assert inherited.locations[0].websocket.push_ssl
    assert [str(w) for w in cfg.warnings] == [
        f'[warn] "{name}" directive is ignored in {VALID}/tls.conf:{line}'
        for name, line in (("ssl_session_cache", 7), ("ssl_session_timeout", 8))
    ]


def test_status_metrics_and_health_locations() -> None:
    (server,) = _load("status.conf").http.servers
    assert {loc.pattern: loc.report for loc in server.locations} == {
        "/ws": None,
        "/basic_status": "stub_status",
        "/old_status": "stub_status",
        "/metrics": "websocket_metrics",
        "/health": "websocket_health",
    }
    assert _location(server, "/health").settings.access_logs == ()
