"""The static-file directives in the model: root and alias, index, try_files,
types (and ``include mime.types``), default_type, etag, if_modified_since,
log_not_found, and how each is inherited."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginxws.conf import ConfigError, load
from nginxws.conf.builder import shipped_mime_types
from nginxws.conf.model import DEFAULT_TYPES, Config, FileSettings, Location


def loaded(tmp_path: Path, http: str, *, files: dict[str, str] | None = None) -> Config:
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "nginx.conf").write_text("events {}\nhttp {\n" + http + "\n}\n")
    return load("nginx.conf", prefix=str(tmp_path))


def location(cfg: Config, pattern: str, server: int = 0) -> Location:
    found = [loc for loc in cfg.http.servers[server].locations if loc.pattern == pattern]
    assert len(found) == 1, pattern
    return found[0]


def test_nothing_set_serves_no_files_with_nginx_defaults_for_the_rest(tmp_path: Path) -> None:
    files = loaded(tmp_path, "server { location / { } }").http.servers[0].settings.files
    assert files == FileSettings()
    assert files.root is None
    assert ([v.source for v in files.index], files.types, files.default_type) == (
        ["index.html"], DEFAULT_TYPES, "text/plain")
    assert (files.etag, files.if_modified_since, files.log_not_found) == (True, "exact", True)


def test_root_is_inherited_and_relative_to_the_prefix_without_its_trailing_slash(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, """
        root html/;
        server {
            location / { }
            location /abs/ { root /srv/www/; }
            location /slash/ { root /; }
        }""")
    assert location(cfg, "/").settings.files.root.path.source == f"{tmp_path}/html"
    assert location(cfg, "/abs/").settings.files.root.path.source == "/srv/www"
    # nginx keeps "root /" as the empty path: the URI alone is the file's path.
    assert location(cfg, "/slash/").settings.files.root.path.source == ""


def test_alias_replaces_the_location_name_or_is_the_whole_path_in_a_regex_location(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, r"""
        server {
            location /i/ { alias /data/img/; location /i/x/ { } }
            location = /favicon.ico { alias /data/f.ico; }
            location ~ ^/r/(.+)$ { alias /data/$1; }
        }""")
    prefix = location(cfg, "/i/").settings.files.root
    assert (prefix.path.source, prefix.alias, prefix.whole, prefix.directive) == ("/data/img/", 3, False, "alias")
    assert location(cfg, "/i/").locations[0].settings.files.root == prefix  # nginx lets nested locations inherit it
    assert location(cfg, "/favicon.ico").settings.files.root.alias == len("/favicon.ico")
    whole = location(cfg, "^/r/(.+)$").settings.files.root
    assert (whole.whole, whole.path.constant) == (True, False)


def test_index_names_add_up_on_one_level_and_replace_the_inherited_ones(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, """
        index a.html;
        server {
            index b.html c.html;
            index /fallback.html;
            location / { }
            location /own/ { index own.html; }
        }""")
    assert [v.source for v in location(cfg, "/").settings.files.index] == ["b.html", "c.html", "/fallback.html"]
    assert [v.source for v in location(cfg, "/own/").settings.files.index] == ["own.html"]


def test_try_files_belongs_to_its_block_and_marks_directories(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, """
        server {
            try_files $uri /index.html;
            location / { try_files $uri $uri/ @app; }
            location /plain/ { }
            location /code/ { try_files $uri =418; }
            location @app { return 204; }
        }""")
    server = cfg.http.servers[0]
    assert [(v.source, d) for v, d in server.try_files.files] == [("$uri", False)]
    assert (server.try_files.fallback.source, server.try_files.code) == ("/index.html", None)
    tf = location(cfg, "/").try_files
    assert [(v.source, d) for v, d in tf.files] == [("$uri", False), ("$uri", True)]
    assert tf.fallback.source == "@app"
    assert location(cfg, "/plain/").try_files is None  # not inherited from the server
    assert location(cfg, "/code/").try_files.code == 418


def test_types_blocks_of_one_level_add_up_and_replace_the_inherited_table(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, """
        types { text/html html; }
        types { image/png PNG; application/x-a a b; }
        default_type application/octet-stream;
        server {
            location / { }
            location /own/ { types { text/x-own own; } default_type text/x-default; }
            location /none/ { types { } }
        }""")
    inherited = location(cfg, "/").settings.files
    assert inherited.types == {"html": "text/html", "png": "image/png", "a": "application/x-a", "b": "application/x-a"}
    assert inherited.default_type == "application/octet-stream"
    own = location(cfg, "/own/").settings.files
    assert (own.types, own.default_type) == ({"own": "text/x-own"}, "text/x-default")
    assert location(cfg, "/none/").settings.files.types == {}


def test_a_duplicate_extension_warns_as_nginx_and_the_last_type_wins(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "types { text/a x; text/b X; }")
    assert cfg.http.settings.files.types == {"x": "text/b"}
    assert [str(w) for w in cfg.warnings] == [
        f'[warn] duplicate extension "x", content type: "text/b", previous content type: "text/a" '
        f"in {tmp_path}/nginx.conf:3"]


def test_include_mime_types_reads_the_file_next_to_the_configuration(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "include mime.types;", files={"mime.types": "types { text/x-mine mine; }\n"})
    assert cfg.http.settings.files.types == {"mine": "text/x-mine"}
    assert [f.path for f in cfg.files] == [f"{tmp_path}/nginx.conf", f"{tmp_path}/mime.types"]


def test_include_mime_types_without_one_reads_the_copy_debian_ships(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "include mime.types;")
    types = cfg.http.settings.files.types
    assert (types["css"], types["js"], types["svg"], types["woff2"], types["json"]) == (
        "text/css", "application/javascript", "image/svg+xml", "font/woff2", "application/json")
    assert [f.path for f in cfg.files] == [f"{tmp_path}/nginx.conf", shipped_mime_types()]
    assert cfg.warnings == ()


def test_include_inside_types_reads_type_lines(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "types { include more.types; text/x-a a; }", files={"more.types": "text/x-b b;\n"})
    assert cfg.http.settings.files.types == {"b": "text/x-b", "a": "text/x-a"}


def test_a_missing_include_other_than_mime_types_is_still_nginx_s_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'open\(\) ".*/other.types" failed \(2: No such file or directory\)'):
        loaded(tmp_path, "include other.types;")


def test_etag_if_modified_since_and_log_not_found_merge_down(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, """
        etag off;
        server {
            if_modified_since before;
            location / { log_not_found off; autoindex off; }
        }""")
    files = location(cfg, "/").settings.files
    assert (files.etag, files.if_modified_since, files.log_not_found) == (False, "before", False)


def test_sendfile_tcp_nopush_and_expires_stay_ignored_with_a_warning(tmp_path: Path) -> None:
    cfg = loaded(tmp_path, "sendfile on; tcp_nopush on; expires 1h;")
    assert [w.message for w in cfg.warnings] == [
        '"sendfile" directive is ignored', '"tcp_nopush" directive is ignored', '"expires" directive is ignored']
