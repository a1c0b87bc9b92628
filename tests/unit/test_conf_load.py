"""load(): prefix and path rules, include (globs, recursion), -g directives, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginxws.conf import ConfigError, load
from nginxws.conf.model import Config, ErrorLog

EVENTS = "events {}\n"


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def warning_lines(cfg: Config) -> tuple[str, ...]:
    """The warnings as the command line prints them (after ``nginxws: ``)."""
    return tuple(str(w) for w in cfg.warnings)


def test_relative_config_path_is_relative_to_prefix(tmp_path: Path) -> None:
    write(tmp_path, {"conf/nginx.conf": EVENTS})
    cfg = load("conf/nginx.conf", prefix=str(tmp_path))
    assert cfg.path == f"{tmp_path}/conf/nginx.conf"
    assert cfg.prefix == f"{tmp_path}/"


def test_prefix_defaults_to_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"nginx.conf": EVENTS})
    monkeypatch.chdir(tmp_path)
    cfg = load("nginx.conf")
    assert (cfg.prefix, cfg.pid) == (f"{tmp_path}/", f"{tmp_path}/logs/nginxws.pid")


def test_include_is_relative_to_config_dir_and_logs_to_prefix(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "conf/nginx.conf": "include main.d/*.conf;\n" + EVENTS,
            "conf/main.d/logs.conf": "pid run/x.pid;\nerror_log logs/e.log notice;\n",
        },
    )
    cfg = load("conf/nginx.conf", prefix=str(tmp_path))
    assert cfg.pid == f"{tmp_path}/run/x.pid"
    assert cfg.error_logs == (ErrorLog(f"{tmp_path}/logs/e.log", "notice"),)


def test_include_glob_reads_matches_in_sorted_order_into_current_block(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "nginx.conf": EVENTS + "http {\n    include sites/*.conf;\n}\n",
            "sites/b.conf": "server { listen 8002; }\n",
            "sites/a.conf": "server { listen 8001; }\n",
            "sites/.hidden.conf": "garbage\n",
            "sites/c.txt": "garbage\n",
        },
    )
    cfg = load(str(tmp_path / "nginx.conf"))
    assert [s.listens[0].port for s in cfg.http.servers] == [8001, 8002]
    assert [Path(f.path).name for f in cfg.files] == ["nginx.conf", "a.conf", "b.conf"]
    assert cfg.files[1].text == "server { listen 8001; }\n"


def test_include_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": "include none.d/*.conf;\n" + EVENTS})
    assert load(str(tmp_path / "nginx.conf")).warnings == ()


def test_error_in_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + "include inc.conf;\n", "inc.conf": "\n\nbogus;\n"})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"))
    assert str(err.value) == f'[emerg] unknown directive "bogus" in {tmp_path}/inc.conf:3'


def test_include_recursion_through_another_file_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + "include a.conf;\n", "a.conf": "include b.conf;\n", "b.conf": "include a.conf;\n"})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"))
    assert str(err.value) == f'[emerg] recursive include of "{tmp_path}/a.conf" in {tmp_path}/b.conf:1'


def test_same_file_included_twice_is_not_recursion_and_listed_once(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": "include w.conf;\nevents { include w.conf; }\n", "w.conf": "\n"})
    cfg = load(str(tmp_path / "nginx.conf"))
    assert [Path(f.path).name for f in cfg.files] == ["nginx.conf", "w.conf"]


def test_missing_main_file_is_open_error_without_place(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nope.conf"))
    assert str(err.value) == f'[emerg] open() "{tmp_path}/nope.conf" failed (2: No such file or directory)'


def test_g_directives_apply_in_main_context(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS})
    cfg = load(str(tmp_path / "nginx.conf"), directives="daemon off; master_process off; worker_processes 3;")
    assert (cfg.daemon, cfg.master_process, cfg.worker_processes) == (False, False, 3)


def test_g_directive_repeated_in_file_is_duplicate_at_the_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + "daemon on;\n"})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"), directives="daemon off;")
    assert str(err.value) == f'[emerg] "daemon" directive is duplicate in {tmp_path}/nginx.conf:2'


@pytest.mark.parametrize(
    ("directives", "expected"),
    [
        ("foo;", '[emerg] unknown directive "foo" in command line'),
        ("daemon maybe;", '[emerg] invalid value "maybe" in "daemon" directive, it must be "on" or "off" in command line'),
        ("daemon off", '[emerg] unexpected end of parameter, expecting ";" in command line'),
        ("events { }", "[emerg] block directives are not supported in -g option in command line"),
        ("daemon off; }", '[emerg] unexpected "}" in command line'),
        ("websocket;", '[emerg] "websocket" directive is not allowed here in command line'),
        ("daemon off; daemon on;", '[emerg] "daemon" directive is duplicate in command line'),
    ],
)
def test_g_errors_are_reported_in_command_line(tmp_path: Path, directives: str, expected: str) -> None:
    write(tmp_path, {"nginx.conf": EVENTS})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"), directives=directives)
    assert str(err.value) == expected


def test_g_warnings_are_placed_in_command_line(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS})
    cfg = load(str(tmp_path / "nginx.conf"), directives="worker_priority 0;")
    assert warning_lines(cfg) == ('[warn] "worker_priority" directive is ignored in command line',)


def test_directive_error_before_a_syntax_error_is_reported_first(tmp_path: Path) -> None:
    # nginx acts on each statement as it reads it.
    write(tmp_path, {"nginx.conf": EVENTS + "http {\n    nosuch;\n    server {\n"})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"))
    assert str(err.value) == f'[emerg] unknown directive "nosuch" in {tmp_path}/nginx.conf:3'


def test_every_ignored_directive_occurrence_warns_with_its_place(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + "http {\n  sendfile on;\n  server { sendfile off; gzip_vary on; }\n}\n"})
    cfg = load(str(tmp_path / "nginx.conf"))
    f = tmp_path / "nginx.conf"
    assert warning_lines(cfg) == (
        f'[warn] "sendfile" directive is ignored in {f}:3',
        f'[warn] "sendfile" directive is ignored in {f}:4',
        f'[warn] "gzip_vary" directive is ignored in {f}:4',
    )


def test_idleintvl_not_above_pingintvl_warns(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + "http { server { location / { websocket 30s 10s; } } }\n"})
    cfg = load(str(tmp_path / "nginx.conf"))
    assert warning_lines(cfg) == (
        '[warn] "websocket" idleintvl (10s) is not greater than pingintvl (30s): '
        f"no ping will be sent in {tmp_path}/nginx.conf:2",
    )


def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path) -> None:
    depth = 300
    body = "".join(f"location /{'a' * (i + 1)} {{\n" for i in range(depth)) + "}\n" * depth
    write(tmp_path, {"nginx.conf": EVENTS + "http { server {\n" + body + "} }\n"})
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path / "nginx.conf"))
    assert "nested deeper than" in str(err.value)


def test_push_settings_of_a_later_websocket_location_warn(tmp_path: Path) -> None:
    write(tmp_path, {"nginx.conf": EVENTS + (
        "http { server {\n"
        "  location /a { websocket push_host=a.example; }\n"
        "  location /b { websocket push_host=b.example; }\n"
        "  location /c { websocket push_host=a.example; }\n"
        "  location /d { websocket push_host=a.example push_ssl=off; }\n"
        "  location /e { websocket push_host=a.example push_ssl=on; }\n"
        "} }\n"
    )})
    cfg = load(str(tmp_path / "nginx.conf"))
    assert warning_lines(cfg) == tuple(
        f'[warn] "push_listen", "push_host" and "push_ssl" of location "{name}" are ignored: '
        f'the server\'s first websocket location "/a" sets them in {tmp_path}/nginx.conf:{line}'
        for name, line in (("/b", 4), ("/e", 7))
    )


def test_conflicting_server_names_warn_after_the_other_warnings(tmp_path: Path) -> None:
    # nginx's ngx_http_server_names: a later server on the same address loses the name.
    write(tmp_path, {"nginx.conf": EVENTS + (
        "http {\n"
        "  sendfile on;\n"
        "  server { listen 127.0.0.1:8080; server_name a.example .b.example; }\n"
        "  server { listen localhost:8080; server_name A.example b.example; }\n"
        "  server { listen 127.0.0.1:8081; server_name a.example; }\n"
        "}\n"
    )})
    cfg = load(str(tmp_path / "nginx.conf"), resolve=lambda name: ("127.0.0.1",) if name == "localhost" else ())
    assert warning_lines(cfg) == (
        f'[warn] "sendfile" directive is ignored in {tmp_path}/nginx.conf:3',
        '[warn] conflicting server name "a.example" on 127.0.0.1:8080, ignored',
        '[warn] conflicting server name "b.example" on 127.0.0.1:8080, ignored',
    )


def test_a_host_name_is_resolved_once_per_load(tmp_path: Path) -> None:
    asked = []

    def resolve(name: str) -> tuple[str, ...]:
        asked.append(name)
        return ("127.0.0.1",)

    write(tmp_path, {"nginx.conf": EVENTS + (
        "http {\n"
        "  server { listen ws.test:8080; location / { websocket push_listen=ws.test:9000; } }\n"
        "  server { listen ws.test:8081; }\n"
        "}\n"
    )})
    load(str(tmp_path / "nginx.conf"), resolve=resolve)
    assert asked == ["ws.test"]
