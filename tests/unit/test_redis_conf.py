"""``websocket_redis``: its URLs (``nginxws.conf.redis``) and its place in the configuration."""

from __future__ import annotations

import importlib.util

import pytest

from nginxws.conf import ConfigError, load
from nginxws.conf.model import Redis, RedisNode
from nginxws.conf.redis import RedisUrlError, parse_redis


@pytest.mark.parametrize("args, expected", [
    (["redis://127.0.0.1:6380"], Redis((RedisNode("127.0.0.1", 6380),))),
    (["redis://localhost"], Redis((RedisNode("localhost", 6379),))),
    (["redis://:s3cret@10.0.0.5:6379/2"], Redis((RedisNode("10.0.0.5", 6379),), password="s3cret", db=2)),
    (["redis://app:p%40ss@redis.internal/0"],
     Redis((RedisNode("redis.internal", 6379),), username="app", password="p@ss")),
    (["rediss://:pw@cache.example.org:6380"], Redis((RedisNode("cache.example.org", 6380),), tls=True, password="pw")),
    (["redis://[::1]:7000"], Redis((RedisNode("::1", 7000),))),
    (["cluster", "redis://10.0.0.1:7000", "redis://10.0.0.2:7000"],
     Redis((RedisNode("10.0.0.1", 7000), RedisNode("10.0.0.2", 7000)), cluster=True)),
    (["cluster", "redis://10.0.0.1:7000", "redis://10.0.0.1:7000"],
     Redis((RedisNode("10.0.0.1", 7000),), cluster=True)),  # a seed given twice is one
    (["cluster", "rediss://:pw@a:7000/0"], Redis((RedisNode("a", 7000),), cluster=True, tls=True, password="pw")),
])
def test_urls_name_the_redis(args, expected):
    assert parse_redis(args) == expected


@pytest.mark.parametrize("args, message", [
    (["http://127.0.0.1:6379"], 'invalid redis URL "http://127.0.0.1:6379"'),
    (["127.0.0.1:6379"], 'invalid redis URL "127.0.0.1:6379"'),
    (["redis://"], 'invalid redis URL "redis://"'),
    (["redis://h:port"], 'invalid redis URL "redis://h:port"'),
    (["redis://h:0"], 'invalid redis URL "redis://h:0"'),
    (["redis://h:70000"], 'invalid redis URL "redis://h:70000"'),
    (["redis://h/db1"], 'invalid redis URL "redis://h/db1"'),
    (["redis://h/1?timeout=3"], 'invalid redis URL "redis://h/1?timeout=3"'),
    (["redis://:secret@h:x"], 'invalid redis URL "redis://:***@h:x"'),  # never the password
    (["redis://a", "redis://b"], '"websocket_redis" directive takes one URL, or "cluster" and seed node URLs'),
    (["cluster"], '"websocket_redis cluster" needs at least one seed node URL'),
    (["cluster", "redis://a:7000", "rediss://b:7000"],
     'redis URL "rediss://b:7000" differs in scheme or credentials from the first seed node'),
    (["cluster", "redis://:x@a:7000", "redis://:y@b:7000"],
     'redis URL "redis://:***@b:7000" differs in scheme or credentials from the first seed node'),
    (["cluster", "redis://a:7000/3"], 'redis URL "redis://a:7000/3" names database 3: a cluster has only 0'),
])
def test_urls_that_cannot_be_used_say_why(args, message):
    with pytest.raises(RedisUrlError) as err:
        parse_redis(args)
    assert str(err.value) == message


def test_the_address_logs_show_has_no_password():
    redis = parse_redis(["cluster", "redis://:pw@10.0.0.1:7000", "redis://:pw@[::1]:7001"])
    assert redis.address == "10.0.0.1:7000, [::1]:7001"
    assert "pw" not in repr(redis)


# -- in a configuration ------------------------------------------------------------------


def _load(tmp_path, http: str, main: str = ""):
    path = tmp_path / "nginx.conf"
    path.write_text(f"{main}\nevents {{}}\nhttp {{\n{http}\n}}\n")
    return load(str(path), prefix=str(tmp_path)), str(path)


def test_without_the_directive_there_is_no_redis(tmp_path):
    config, _ = _load(tmp_path, "server { listen 127.0.0.1:8080; }")
    assert config.http.redis is None


def test_the_directive_in_http_gives_the_model_its_redis(tmp_path):
    config, _ = _load(tmp_path, "websocket_redis redis://127.0.0.1:6390;")
    assert config.http.redis == Redis((RedisNode("127.0.0.1", 6390),))


@pytest.mark.parametrize("http, main, line, message", [
    ("websocket_redis redis://a;\nwebsocket_redis redis://b;", "", 5, '"websocket_redis" directive is duplicate'),
    ("websocket_redis ftp://a;", "", 4, 'invalid redis URL "ftp://a"'),
    ("server { websocket_redis redis://a; }", "", 4, '"websocket_redis" directive is not allowed here'),
    ("websocket_redis;", "", 4, 'invalid number of arguments in "websocket_redis" directive'),
    ("websocket_redis redis://a;", "master_process off;", 4,
     '"websocket_redis" directive requires "master_process on"'),
])
def test_misuse_is_an_emerg_with_its_place(tmp_path, http, main, line, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, http, main)
    assert str(err.value) == f"[emerg] {message} in {tmp_path / 'nginx.conf'}:{line}"


def test_without_coredis_the_directive_says_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coredis" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "websocket_redis redis://127.0.0.1;")
    assert str(err.value) == (
        '[emerg] "websocket_redis" directive needs the coredis package, which is not installed '
        f'(pip install "nginxws[redis]") in {tmp_path / "nginx.conf"}:4')
