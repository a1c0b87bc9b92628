"""Static files, in process: how a URI maps to a path, the order in which
try_files and index look, the answer's type, ETag and conditionals, and the
front door's ``serve_files`` over a real directory (internal redirects
included).  No socket; a stand-in file system where root could read anything."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nginxws import static
from nginxws.conf import load
from nginxws.conf.model import DocumentRoot, FileSettings, TryFiles
from nginxws.conf.variables import Request as Variables
from nginxws.conf.variables import compile_value
from nginxws.frontdoor import Answer, FileAnswer, Static, decide, serve_files
from nginxws.routing import Router

LOCAL = ("127.0.0.1", 8080)
REMOTE = ("127.0.0.1", 50000)


def value(text: str):
    return compile_value(text)


def variables(uri: str, target: bytes | None = None, captures=None) -> Variables:
    return Variables(target=target or uri.encode(), remote_addr="127.0.0.1", uri=uri, captures=captures)


# -- paths -------------------------------------------------------------------------


@pytest.mark.parametrize(("root", "uri", "path"), [
    (DocumentRoot(value("/srv/www"), "/p/"), "/a/b.html", "/srv/www/a/b.html"),
    (DocumentRoot(value(""), "/p/"), "/etc/hosts", "/etc/hosts"),  # root /
    (DocumentRoot(value("$arg_dir"), "/p/"), "/x", "/p/html/x"),  # a relative value made absolute at run time
    (DocumentRoot(value("/srv/$host"), "/p/"), "/x", "/srv/example.org/x"),
    (DocumentRoot(value("/data/img/"), "/p/", alias=3), "/i/a.gif", "/data/img/a.gif"),
    (DocumentRoot(value("/data/img"), "/p/", alias=2), "/i/a.gif", "/data/img/a.gif"),
    (DocumentRoot(value("/data/img"), "/p/", alias=2), "/i../x", "/data/img../x"),  # refused later: outside
    (DocumentRoot(value("/data/f.ico"), "/p/", alias=12), "/favicon.ico", "/data/f.ico"),
])
def test_map_uri_to_path_appends_the_uri_to_root_and_the_rest_of_it_to_alias(root, uri, path) -> None:
    request = Variables(target=uri.encode() + b"?dir=html", headers=((b"host", b"Example.ORG:80"),), uri=uri)
    assert static.map_uri_to_path(root, uri, request)[0] == path


def test_alias_in_a_regex_location_is_the_whole_path_made_of_captures() -> None:
    import re
    match = re.search(r"^/r/(.+)$", "/r/a/b.txt")
    root = DocumentRoot(value("/data/$1"), "/p/", alias=0, whole=True)
    assert static.map_uri_to_path(root, "/r/a/b.txt", variables("/r/a/b.txt", captures=match)) == (
        "/data/a/b.txt", len("/data/a/b.txt"))
    assert static.containing_directory(root, "/data/a/b.txt") == "/data/"
    assert static.containing_directory(DocumentRoot(value("/data/f"), "/p/", alias=0, whole=True), "/data/f") == (
        "/data/f")


@pytest.mark.parametrize(("uri", "ext"), [
    ("/a.html", "html"), ("/a.b.CSS", "CSS"), ("/.hidden", ""), ("/d/.x", ""), ("/d.x/file", ""),
    ("/file.", ""), ("/noext", ""), ("/a/.b.c", "c"), ("/", ""),
])
def test_the_extension_is_nginx_s(uri, ext) -> None:
    assert static.extension(uri) == ext


def test_content_type_is_looked_up_in_any_case_else_default_type() -> None:
    files = FileSettings(types={"css": "text/css", "html": "text/html"}, default_type="application/octet-stream")
    assert [static.content_type(u, files) for u in ("/a.css", "/A.CSS", "/x.Html", "/x.js", "/x")] == [
        "text/css", "text/css", "text/html", "application/octet-stream", "application/octet-stream"]
    assert static.content_type("/index.html", FileSettings()) == "text/html"  # nginx's built-in three types


def test_etag_and_last_modified_are_nginx_s() -> None:
    assert static.etag(0x5F3E2A1B, 0x2C4) == '"5f3e2a1b-2c4"'
    assert static.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize("text", [b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT",
                                  b"Sun Nov  6 08:49:37 1994"])
def test_http_dates_in_the_three_formats(text) -> None:
    assert static.parse_http_date(text) == 784111777


def test_an_invalid_date_is_none() -> None:
    assert static.parse_http_date(b"yesterday") is None


@pytest.mark.parametrize(("uri", "location"), [
    ("/dir", "/dir"), ("/a b", "/a%20b"), ("/h#s?q%", "/h%23s%3Fq%25"), ("/é", "/%C3%A9"),
])
def test_escape_uri_escapes_what_a_location_cannot_hold(uri, location) -> None:
    assert static.escape_uri(uri) == location


# -- conditionals ---------------------------------------------------------------------

MTIME, TAG = 784111777, '"2ebc8d1-10"'
DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"
LATER = b"Sun, 06 Nov 1994 08:49:38 GMT"
EARLIER = b"Sun, 06 Nov 1994 08:49:36 GMT"


@pytest.mark.parametrize(("headers", "mode", "status"), [
    ((), "exact", 200),
    (((b"if-modified-since", DATE),), "exact", 304),
    (((b"if-modified-since", LATER),), "exact", 200),  # exact: only the same second
    (((b"if-modified-since", LATER),), "before", 304),
    (((b"if-modified-since", EARLIER),), "before", 200),
    (((b"if-modified-since", DATE),), "off", 200),
    (((b"if-modified-since", b"garbage"),), "before", 200),
    (((b"if-none-match", TAG.encode()),), "exact", 304),
    (((b"if-none-match", b'"x", W/' + TAG.encode()),), "exact", 304),  # weak comparison
    (((b"if-none-match", b'"x"'),), "exact", 200),
    (((b"if-none-match", b"*"),), "exact", 304),
    (((b"if-modified-since", DATE), (b"if-none-match", b'"x"')), "exact", 200),  # both must agree
    (((b"if-match", b'"x"'),), "exact", 412),
    (((b"if-match", b"W/" + TAG.encode()),), "exact", 412),  # strong comparison
    (((b"if-match", TAG.encode()), (b"if-none-match", TAG.encode())), "exact", 304),
    (((b"if-unmodified-since", EARLIER),), "exact", 412),
    (((b"if-unmodified-since", DATE),), "exact", 200),
    (((b"if-unmodified-since", b"garbage"),), "exact", 412),  # nginx: an unparsable date is -1
])
def test_not_modified_answers_as_nginx_s_filter(headers, mode, status) -> None:
    assert static.not_modified(headers, MTIME, TAG, mode) == status


def test_if_match_without_an_etag_fails_but_star_matches() -> None:
    assert static.not_modified(((b"if-match", b'"x"'),), MTIME, None, "exact") == 412
    assert static.not_modified(((b"if-match", b"*"),), MTIME, None, "exact") == 200


# -- resolve, on a directory ---------------------------------------------------------


@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    for name, text in {"index.html": "home", "a.css": "css", "dir/index.htm": "htm", "dir/x.txt": "x",
                       "empty/.keep": "", "app.html": "app",
                       "etagless/f.txt": "f"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "in.css").symlink_to(root / "a.css")
    (root / "out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "pipe")
    return root


def resolve(files, uri, method=b"GET", try_files=None, args="", fs=None, logs=None):
    logs = [] if logs is None else logs
    outcome = static.resolve(files, try_files, method, uri, args, variables(uri), fs or static.FileSystem(), logs)
    if isinstance(outcome, static.Found):
        os.close(outcome.fd)
    return outcome


def tried(*names: str, fallback: str = "=404") -> TryFiles:
    files = tuple((value(n[:-1] if n.endswith("/") else n), n.endswith("/")) for n in names)
    code = int(fallback[1:]) if fallback.startswith("=") else None
    return TryFiles(files, value(fallback), code)


def files_at(www: Path, **kw) -> FileSettings:
    return FileSettings(root=DocumentRoot(value(str(www)), "/p/"), **kw)


def test_a_file_is_found_with_its_size_time_and_type(www) -> None:
    found = resolve(files_at(www), "/a.css")
    info = (www / "a.css").stat()
    assert (found.path, found.size, found.mtime, found.content_type) == (
        str(www / "a.css"), 3, int(info.st_mtime), "text/plain")


def test_a_directory_uri_serves_its_index_through_an_internal_redirect(www) -> None:
    assert resolve(files_at(www), "/", args="a=1") == static.InternalRedirect("/index.html", "a=1")
    index = (value("index.html"), value("index.htm"))
    assert resolve(files_at(www, index=index), "/dir/") == static.InternalRedirect("/dir/index.htm", "")
    assert resolve(files_at(www, index=(value("none.html"), value("/last.html"))), "/dir/") == (
        static.InternalRedirect("/last.html", ""))


def test_a_directory_without_an_index_is_forbidden(www) -> None:
    assert resolve(files_at(www), "/empty/") == static.Refused(
        403, ("error", f'directory index of "{www}/empty/" is forbidden'))


def test_a_missing_directory_is_not_found_by_the_index_and_logged_unless_log_not_found_is_off(www) -> None:
    message = f'"{www}/none/index.html" is not found (2: No such file or directory)'
    assert resolve(files_at(www), "/none/") == static.Refused(404, ("error", message))
    assert resolve(files_at(www, log_not_found=False), "/none/") == static.Refused(404)
    assert resolve(files_at(www), "/a.css/") == static.Refused(
        404, ("error", f'"{www}/a.css/index.html" is not found (20: Not a directory)'))


def test_a_missing_file_is_404_with_nginx_s_open_line(www) -> None:
    assert resolve(files_at(www), "/missing.html") == static.Refused(
        404, ("error", f'open() "{www}/missing.html" failed (2: No such file or directory)'))
    assert resolve(files_at(www, log_not_found=False), "/missing.html") == static.Refused(404)


def test_a_directory_without_its_slash_is_redirected_with_the_arguments(www) -> None:
    assert resolve(files_at(www), "/dir", args="x=1") == static.Refused(301, location="/dir/?x=1")
    assert resolve(files_at(www), "/dir") == static.Refused(301, location="/dir/")


def test_methods_other_than_get_head_and_post_are_405_and_post_to_a_file_too(www) -> None:
    assert resolve(files_at(www), "/a.css", method=b"DELETE") == static.Refused(405)
    assert resolve(files_at(www), "/missing", method=b"PUT") == static.Refused(405)
    assert resolve(files_at(www), "/", method=b"OPTIONS") == static.Refused(405)
    assert resolve(files_at(www), "/a.css", method=b"POST") == static.Refused(405)
    assert resolve(files_at(www), "/missing", method=b"POST").status == 404
    assert isinstance(resolve(files_at(www), "/a.css", method=b"HEAD"), static.Found)


def test_a_fifo_is_not_a_regular_file(www) -> None:
    assert resolve(files_at(www), "/fifo/pipe") == static.Refused(
        404, ("crit", f'"{www}/fifo/pipe" is not a regular file'))


def test_a_symbolic_link_inside_the_root_is_followed_and_one_leading_out_refused(www) -> None:
    assert isinstance(resolve(files_at(www), "/in.css"), static.Found)
    refused = resolve(files_at(www), "/out.txt")
    assert refused == static.Refused(403, ("error", f'open() "{www}/out.txt" refused: it leads to '
                                                    f'"{www.parent}/secret.txt", outside the root "{www}"'))


def test_an_alias_without_its_slash_cannot_reach_a_sibling_directory(www) -> None:
    files = FileSettings(root=DocumentRoot(value(str(www / "dir")), "/p/", alias=2))
    assert isinstance(resolve(files, "/i/x.txt"), static.Found)
    (www / "dir..").mkdir()
    (www / "dir.." / "x.txt").write_text("sibling")
    assert resolve(files, "/i../x.txt").status == 403  # nginx would serve www/dir../x.txt


def test_try_files_tries_in_order_and_a_trailing_slash_wants_a_directory(www) -> None:
    files = files_at(www)
    assert resolve(files, "/a.css", try_files=tried("/none", "$uri", "/app.html")).path == str(www / "a.css")
    # "/dir" is a directory: "$uri" does not match it, "$uri/" does, and the file handler redirects.
    assert resolve(files, "/dir", try_files=tried("$uri", "$uri/")) == static.Refused(301, location="/dir/")
    assert resolve(files, "/", try_files=tried("$uri", "$uri/")) == static.InternalRedirect("/index.html", "")
    assert resolve(files, "/dir/", try_files=tried("$uri", "$uri/")).status == 403  # its index is index.htm
    assert resolve(files, "/gone", try_files=tried("$uri", "$uri/", fallback="/app.html?from=$uri")) == (
        static.InternalRedirect("/app.html", "from=/gone"))
    assert resolve(files, "/gone", try_files=tried("$uri", fallback="@app"), args="q") == (
        static.InternalRedirect("/gone", "q", name="app"))
    assert resolve(files, "/gone", try_files=tried("$uri", fallback="=418")) == static.Refused(418, code=True)


def test_try_files_found_file_sets_the_uri_its_type_comes_from(www) -> None:
    found = resolve(files_at(www, types={"html": "text/html"}), "/anything", try_files=tried("/app.html"))
    assert (found.path, found.content_type) == (str(www / "app.html"), "text/html")


def test_try_files_with_alias_drops_the_location_part_of_uri(www) -> None:
    files = FileSettings(root=DocumentRoot(value(str(www / "dir") + "/"), "/p/", alias=len("/i/")))
    assert resolve(files, "/i/x.txt", try_files=tried("$uri", fallback="=404")).path == str(www / "dir/x.txt")
    assert resolve(files, "/i/none", try_files=tried("$uri", fallback="=404")) == static.Refused(404, code=True)


class Forbidding(static.FileSystem):
    """Root reads anything: this one refuses ``path`` as a user without the right would be."""

    def __init__(self, *paths: str, error: int = errno.EACCES) -> None:
        self.paths, self.error = paths, error

    def _check(self, path: str) -> None:
        if path in self.paths:
            raise OSError(self.error, os.strerror(self.error), path)

    def stat(self, path: str) -> os.stat_result:
        self._check(path)
        return super().stat(path)

    def open(self, path: str) -> tuple[int, os.stat_result]:
        self._check(path)
        return super().open(path)


def test_an_unreadable_file_is_403_with_nginx_s_line(www) -> None:
    fs = Forbidding(f"{www}/a.css")
    assert resolve(files_at(www), "/a.css", fs=fs) == static.Refused(
        403, ("error", f'open() "{www}/a.css" failed (13: Permission denied)'))


def test_an_index_that_cannot_be_looked_up_is_403(www) -> None:
    fs = Forbidding(f"{www}/dir/index.html")
    assert resolve(files_at(www), "/dir/", fs=fs) == static.Refused(
        403, ("error", f'"{www}/dir/index.html" is forbidden (13: Permission denied)'))


def test_try_files_logs_other_errors_at_crit_and_tries_the_next(www) -> None:
    logs: list[tuple[str, str]] = []
    fs = Forbidding(f"{www}/a.css")
    found = resolve(files_at(www), "/a.css", try_files=tried("$uri", "/app.html"), fs=fs, logs=logs)
    assert found.path == str(www / "app.html")
    assert logs == [("crit", f'stat() "{www}/a.css" failed (13: Permission denied)')]


def test_an_open_failure_other_than_missing_or_forbidden_is_500_at_crit(www) -> None:
    fs = Forbidding(f"{www}/a.css", error=errno.EIO)
    assert resolve(files_at(www), "/a.css", fs=fs) == static.Refused(
        500, ("crit", f'open() "{www}/a.css" failed (5: Input/output error)'))


# -- serve_files: decide, resolve, redirect again ------------------------------------------


@pytest.fixture
def group(tmp_path: Path, www: Path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
events {{}}
http {{
    types {{ text/html html; text/css css; }}
    server {{
        listen 127.0.0.1:8080;
        server_name files.test;
        root {www};
        location /ws {{ websocket; }}
        location /tf/ {{ try_files $uri @named; }}
        location @named {{ return 200 "named"; }}
        location /to-ws/ {{ try_files $uri /ws; }}
        location /loop/ {{ index /loop/; }}
        location /gone/ {{ try_files $uri @nowhere; }}
        location /small/ {{ client_max_body_size 1; }}
        location /to-small/ {{ try_files $uri /small/x; }}
        location /etagless/ {{ etag off; }}
    }}
}}
""")
    return Router(load(str(conf)).http).servers_for(LOCAL)


def request(target: bytes, method: bytes = b"GET", extra=()) -> h11.Request:
    return h11.Request(method=method, target=target, headers=[(b"Host", b"files.test:8080"), *extra])


def serve(group, req):
    decision = decide(req, group, b"", REMOTE)
    assert isinstance(decision, Static)
    result, logs = serve_files(decision, req, group, b"", REMOTE, LOCAL)
    if isinstance(result, FileAnswer):
        os.close(result.file.fd)
    return result, logs


def test_the_index_redirect_is_decided_again_and_served_with_nginx_s_headers(group, www) -> None:
    answer, logs = serve(group, request(b"/"))
    info = (www / "index.html").stat()
    assert (answer.status, answer.file.path, logs) == (200, str(www / "index.html"), [])
    assert answer.headers == (
        (b"Content-Type", b"text/html"),
        (b"Last-Modified", static.http_date(int(info.st_mtime)).encode()),
        (b"ETag", static.etag(int(info.st_mtime), 4).encode()),
    )


def test_a_304_has_no_content_type_and_a_412_is_an_error_page(group, www) -> None:
    date = static.http_date(int((www / "a.css").stat().st_mtime)).encode()
    answer, _ = serve(group, request(b"/a.css", extra=[(b"If-Modified-Since", date)]))
    assert (answer.status, [name for name, _ in answer.headers]) == (304, [b"Last-Modified", b"ETag"])
    answer, _ = serve(group, request(b"/a.css", extra=[(b"If-Match", b'"nope"')]))
    assert isinstance(answer, Answer) and (answer.status, answer.page) == (412, True)


def test_etag_off_sends_none_and_if_none_match_then_never_matches(group) -> None:
    answer, _ = serve(group, request(b"/etagless/f.txt", extra=[(b"If-None-Match", b'"x"')]))
    assert (answer.status, [name for name, _ in answer.headers]) == (200, [b"Content-Type", b"Last-Modified"])


def test_a_missing_file_logs_nginx_s_line_with_the_request(group, www) -> None:
    answer, logs = serve(group, request(b"/missing"))
    assert (answer.status, answer.page, answer.read_body) == (404, True, True)
    assert logs == [("error", f'open() "{www}/missing" failed (2: No such file or directory), client: 127.0.0.1, '
                              'server: files.test, request: "GET /missing HTTP/1.1", host: "files.test:8080"')]


def test_a_directory_redirect_is_absolute_with_the_host_and_the_local_port(group) -> None:
    answer, _ = serve(group, request(b"/dir?a=1"))
    assert (answer.status, answer.headers) == (301, ((b"Location", b"http://files.test:8080/dir/?a=1"),))


def test_try_files_falls_back_to_a_named_location(group) -> None:
    answer, _ = serve(group, request(b"/tf/none"))
    assert (answer.status, answer.body) == (200, b"named")


def test_an_internal_redirect_may_reach_a_websocket_location(group) -> None:
    answer, _ = serve(group, request(b"/to-ws/none"))
    assert (answer.status, answer.headers) == (426, ((b"Upgrade", b"websocket"), (b"Sec-WebSocket-Version", b"13")))


def test_the_location_an_internal_redirect_reaches_applies_its_own_limits(group) -> None:
    answer, _ = serve(group, request(b"/to-small/none", method=b"GET", extra=[(b"Content-Length", b"5")]))
    assert answer.status == 413


def test_a_missing_named_location_is_500(group) -> None:
    answer, logs = serve(group, request(b"/gone/none"))
    assert answer.status == 500
    assert logs == []  # decide's own answer carries it
    assert answer.log == ("error", 'could not find named location "@nowhere"')


def test_a_redirect_cycle_ends_after_ten_with_nginx_s_500(group) -> None:
    answer, logs = serve(group, request(b"/loop/"))
    assert (answer.status, answer.close) == (500, True)
    assert [level for level, _ in logs] == ["error"]
    assert logs[0][1].startswith('rewrite or internal redirection cycle while internally redirecting to "/loop/"')


# -- any target at all ------------------------------------------------------------------

SEGMENTS = st.sampled_from(["", ".", "..", "%2e", "%2E%2e", "%2f", "%2F", "%5c", "\\", "a.css", "in.css", "out.txt",
                            "dir", "dir..", "index.html", "empty", "secret.txt", "www", "%00", "%", "%zz", "~", "?"])
TARGETS = st.lists(SEGMENTS, min_size=1, max_size=8).map(lambda parts: ("/" + "/".join(parts)).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=TARGETS, method=st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT"]))
def test_no_target_reaches_a_file_outside_the_root(group, www, target, method) -> None:
    """Whatever the target, the answer is a file inside the root (links resolved) or no file."""
    req = request(target, method=method)
    decision = decide(req, group, b"", REMOTE)
    if not isinstance(decision, Static):
        assert isinstance(decision, Answer) and decision.status in (400, 404, 405, 426)
        return
    result, _ = serve_files(decision, req, group, b"", REMOTE, LOCAL)
    if isinstance(result, FileAnswer):
        try:
            real = os.path.realpath(result.file.path)
        finally:
            os.close(result.file.fd)
        assert real.startswith(str(www.resolve()) + "/"), (target, real)
