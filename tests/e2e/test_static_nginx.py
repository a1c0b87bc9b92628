"""Static files beside Debian's nginx: the same directory, the same
locations, the same requests, and the same answers.

Both servers run on loopback for the whole module: ``/usr/sbin/nginx`` (a
master and one worker, started here on a configuration of its own and
stopped by its pid) and nginxws (one process).  When the tests run as root,
both are started without the capabilities that let root read any file
(``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``, dropped from the bounding
set), so that a file whose mode forbids reading is refused as it would be
on a real host; nginx's worker serves as ``nobody``.  Each row of ``CASES`` is
sent to both; the status, the headers that matter (Content-Type,
Content-Length, Last-Modified, ETag, Location), the body and the error-log
lines it caused must be equal, once each server's name and port are written
the same way.  The few places where nginxws refuses what nginx serves are
tested apart, both answers pinned.
"""

from __future__ import annotations

import ctypes
import grp
import hashlib
import http.client
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
from support.clients import first_push_url
from support.processes import NginxwsRun, accepts, installed_nginxws, poll
from websockets.sync.client import connect

NGINX = Path("/usr/sbin/nginx")
START = 10.0  # seconds for a server to listen
HOST = "files.test"
SIGNATURE = (b"<center>nginxws</center>", b"<center>nginx</center>")  # server_tokens off, both
COMPARED = ("content-type", "content-length", "last-modified", "etag", "location")
_ERROR_LINE = re.compile(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)$", re.M)

LOCATIONS = """
        location /ws {{ websocket; }}
        location /tfd/ {{ try_files $uri $uri/ =404; }}
        location /spa/ {{ try_files $uri /spa/index.html; }}
        location /named/ {{ try_files $uri @fallback; }}
        location @fallback {{ try_files /index.html =404; }}
        location /code/ {{ try_files $uri =403; }}
        location /alias/ {{ alias {www}/sub/; }}
        location = /aliasfile {{ alias {www}/style.css; }}
        location ~ ^/re/(.+)$ {{ alias {www}/sub/$1; }}
        location /notypes/ {{ alias {www}/; types {{ }} default_type text/x-none; }}
        location /etagoff/ {{ alias {www}/; etag off; }}
        location /before/ {{ alias {www}/; if_modified_since before; }}
        location /quiet/ {{ alias {www}/; log_not_found off; }}
        location /idx/ {{ alias {www}/; index missing.html /abs-target.html; }}
        location /al {{ alias {www}/sub/; }}
        location /loop/ {{ alias {www}/; index /loop/; }}
"""

SERVER = """
    server {{
        listen 127.0.0.1:{port};
        server_name {host};
        root {www};
        {locations}
    }}
"""

NGINX_CONF = """
daemon off;
{user}
worker_processes 1;
pid {logs}/nginx.pid;
error_log {logs}/error.log error;
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    client_body_temp_path {logs}/body;
    proxy_temp_path {logs}/proxy;
    fastcgi_temp_path {logs}/fastcgi;
    uwsgi_temp_path {logs}/uwsgi;
    scgi_temp_path {logs}/scgi;
    {server}
}}
"""

NGINXWS_CONF = """
daemon off;
master_process off;
pid {logs}/nginxws.pid;
error_log {logs}/error.log error;
events {{ worker_connections 64; }}
http {{
    include mime.types;
    default_type application/octet-stream;
    access_log off;
    server_tokens off;
    {server}
}}
"""

FILES = {
    "index.html": b"<h1>home</h1>\n",
    "style.css": b"body { color: #333; }\n",
    "app.js": b"console.log('hi');\n",
    "data.json": b'{"a": 1}\n',
    "image.png": bytes(range(256)),
    "noext": b"no extension\n",
    "UPPER.CSS": b"p {}\n",
    ".hidden": b"dotfile\n",
    "a b.txt": b"space\n",
    "percent%41.txt": b"percent\n",
    "empty.txt": b"",
    "abs-target.html": b"absolute index\n",
    "dir/index.html": b"dir index\n",
    "sp ace/index.html": b"spaced dir\n",
    "sub/index.html": b"sub index\n",
    "sub/nested/file.txt": b"nested\n",
    "tfd/page.html": b"tfd page\n",
    "tfd/sub/index.html": b"tfd sub\n",
    "spa/index.html": b"single page\n",
    "unreadable.txt": b"nobody reads this\n",
    "locked/f.txt": b"behind a locked door\n",
}


@dataclass
class Servers:
    base: Path
    www: Path
    nginx_port: int
    nginxws_port: int
    nginx_logs: Path
    nginxws_logs: Path
    nginxws_pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ROOT = os.getuid() == 0
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def without_file_override() -> None:
    """In the child before exec: root keeps its uid but obeys file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def start(argv: list[str], runs: list[NginxwsRun], *, cwd: Path, port: int, name: str) -> NginxwsRun:
    """Start a server (its own session) and wait until it listens; ``runs``
    holds it from the start, so that the fixture stops it whatever happens."""
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True, cwd=cwd, preexec_fn=without_file_override if ROOT else None)
    run = NginxwsRun(proc, cwd, cwd / "nginx.conf", out, err)
    runs.append(run)
    if not poll(lambda: proc.poll() is not None or accepts(("127.0.0.1", port)), START) or proc.poll() is not None:
        pytest.fail(f"{name} does not listen on {port}:\n{err.read_text()}")
    return run


def make_tree(www: Path, outside: Path) -> None:
    """The directory both servers serve: FILES, and what cannot be written as bytes."""
    for name, data in FILES.items():
        (www / name).parent.mkdir(parents=True, exist_ok=True)
        (www / name).write_bytes(data)
    (www / "emptydir").mkdir()
    (www / "in.css").symlink_to(www / "style.css")
    outside.write_bytes(b"outside the root\n")
    (www / "out.txt").symlink_to(outside)
    os.mkfifo(www / "fifo")
    (www / "unreadable.txt").chmod(0)
    (www / "locked").chmod(0)


@pytest.fixture(scope="module")
def servers():
    if not NGINX.exists():
        pytest.fail(f"{NGINX} is missing: apt-get install nginx (the comparison needs Debian's nginx)")
    base = Path(tempfile.mkdtemp(prefix="nginxws-static-"))
    base.chmod(0o755)  # nginx's worker serves as nobody
    www, nginx_dir, nginxws_dir = base / "www", base / "nginx", base / "nginxws"
    runs: list[NginxwsRun] = []
    try:
        make_tree(www, base / "outside.txt")
        for directory in (nginx_dir / "logs", nginxws_dir / "logs"):
            directory.mkdir(parents=True)
        nginx_port, nginxws_port = free_port(), free_port()
        locations = LOCATIONS.format(www=www)
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        (nginx_dir / "nginx.conf").write_text(NGINX_CONF.format(
            user=f"user nobody {group};" if ROOT else "", logs=nginx_dir / "logs",
            server=SERVER.format(port=nginx_port, host=HOST, www=www,
                                 locations=locations.replace("location /ws { websocket; }", ""))))
        (nginxws_dir / "nginx.conf").write_text(NGINXWS_CONF.format(
            logs=nginxws_dir / "logs",
            server=SERVER.format(port=nginxws_port, host=HOST, www=www, locations=locations)))
        start([str(NGINX), "-p", f"{nginx_dir}/", "-c", str(nginx_dir / "nginx.conf"),
               "-e", str(nginx_dir / "logs" / "startup.log")], runs, cwd=nginx_dir, port=nginx_port, name="nginx")
        ours = start([str(installed_nginxws()), "-p", f"{nginxws_dir}/", "-c", str(nginxws_dir / "nginx.conf")],
                     runs, cwd=nginxws_dir, port=nginxws_port, name="nginxws")
        yield Servers(base, www, nginx_port, nginxws_port, nginx_dir / "logs", nginxws_dir / "logs", ours.pid)
    finally:
        killed = [run.stop() for run in runs]
        error_log = nginxws_dir / "logs" / "error.log"
        text = "".join(run.stderr() for run in runs) + (error_log.read_text() if error_log.exists() else "")
        if (www / "locked").exists():
            (www / "locked").chmod(0o755)
        shutil.rmtree(base)
    assert not any(killed), f"processes left running after TERM, killed: {killed}"
    assert "Traceback" not in text, text


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    log: list[tuple[str, str]]


def ask(port: int, logs: Path, method: str, target: str, headers: dict[str, str], body: bytes | None = None) -> Answer:
    """One request on a connection of its own; the answer and the error-log lines it caused."""
    log = logs / "error.log"
    before = log.stat().st_size if log.exists() else 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, body=body, headers={"Host": HOST, **headers})
        response = conn.getresponse()
        data = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
    finally:
        conn.close()
    with open(log, "rb") as f:
        f.seek(before)
        lines = f.read().decode()
    return Answer(response.status, found, data, _ERROR_LINE.findall(lines))


def normalized(answer: Answer, port: int, ours: bool) -> Answer:
    """The answer with the server's port and name written as nginx's."""
    headers = {name: answer.headers[name].replace(f":{port}/", ":PORT/") for name in COMPARED if name in answer.headers}
    body = answer.body
    if ours and answer.status >= 300 and headers.get("content-type") == "text/html":
        body = body.replace(*SIGNATURE)
        headers["content-length"] = str(int(headers["content-length"]) - len(SIGNATURE[0]) + len(SIGNATURE[1]))
    return Answer(answer.status, headers, body, answer.log)


def both(servers: Servers, method: str, target: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[Answer, Answer]:
    """(nginx's answer, nginxws's), normalized."""
    nginx = ask(servers.nginx_port, servers.nginx_logs, method, target, headers or {}, body)
    ours = ask(servers.nginxws_port, servers.nginxws_logs, method, target, headers or {}, body)
    return normalized(nginx, servers.nginx_port, False), normalized(ours, servers.nginxws_port, True)


def style_dates(servers: Servers) -> dict[str, str]:
    """What the conditional rows fill in: style.css's Last-Modified, one second
    either side, and its ETag."""
    info = (servers.www / "style.css").stat()
    mtime = int(info.st_mtime)
    return {"lm": formatdate(mtime, usegmt=True), "later": formatdate(mtime + 1, usegmt=True),
            "earlier": formatdate(mtime - 1, usegmt=True), "etag": f'"{mtime:x}-{info.st_size:x}"'}


# (id, method, target, headers, body); docs/static.md sums the groups up.
CASES = [
    # files, their types (include mime.types, default_type) and the index
    ("index", "GET", "/", {}, None),
    ("index-head", "HEAD", "/", {}, None),
    ("css", "GET", "/style.css", {}, None),
    ("css-head", "HEAD", "/style.css", {}, None),
    ("js", "GET", "/app.js", {}, None),
    ("json", "GET", "/data.json", {}, None),
    ("png", "GET", "/image.png", {}, None),
    ("no-extension", "GET", "/noext", {}, None),
    ("upper-case-extension", "GET", "/UPPER.CSS", {}, None),
    ("dotfile", "GET", "/.hidden", {}, None),
    ("encoded-space", "GET", "/a%20b.txt", {}, None),
    ("encoded-percent", "GET", "/percent%2541.txt", {}, None),
    ("empty-file", "GET", "/empty.txt", {}, None),
    ("arguments-ignored", "GET", "/style.css?v=2", {}, None),
    ("symlink-inside", "GET", "/in.css", {}, None),
    # directories
    ("dir-redirect", "GET", "/dir", {}, None),
    ("dir-redirect-args", "GET", "/dir?x=1&y=2", {}, None),
    ("dir-redirect-escaped", "GET", "/sp%20ace", {}, None),
    ("dir-index", "GET", "/dir/", {}, None),
    ("dir-without-index", "GET", "/emptydir/", {}, None),
    ("missing-dir", "GET", "/nodir/", {}, None),
    ("file-as-dir", "GET", "/style.css/", {}, None),
    # errors
    ("missing", "GET", "/missing.html", {}, None),
    ("missing-head", "HEAD", "/missing.html", {}, None),
    ("below-a-file", "GET", "/style.css/x", {}, None),
    ("unreadable", "GET", "/unreadable.txt", {}, None),
    ("locked-dir-file", "GET", "/locked/f.txt", {}, None),
    ("locked-dir-index", "GET", "/locked/", {}, None),
    ("fifo", "GET", "/fifo", {}, None),
    # methods
    ("post-file", "POST", "/style.css", {"Content-Type": "text/plain"}, b"x=1"),
    ("post-missing", "POST", "/missing.html", {}, b"x=1"),
    ("post-dir", "POST", "/dir", {}, b""),
    ("delete-file", "DELETE", "/style.css", {}, None),
    ("put-missing", "PUT", "/missing.html", {}, b"data"),
    ("options-index", "OPTIONS", "/", {}, None),
    ("delete-dir", "DELETE", "/dir/", {}, None),
    # traversal: refused before any file is looked at, or kept under the root
    ("dot-dot", "GET", "/../etc/passwd", {}, None),
    ("encoded-dot-dot", "GET", "/%2e%2e/", {}, None),
    ("encoded-slashes", "GET", "/a/..%2f..%2fetc/passwd", {}, None),
    ("encoded-dot-dot-slash", "GET", "/..%2f..%2fetc/passwd", {}, None),
    ("double-slash", "GET", "//etc/passwd", {}, None),
    ("backslashes", "GET", "/..\\..\\etc/passwd", {}, None),
    ("dot-dot-inside", "GET", "/dir/../style.css", {}, None),
    ("encoded-dot", "GET", "/%2e/style.css", {}, None),
    ("encoded-nul", "GET", "/style.css%00.html", {}, None),
    # conditional requests
    ("ims-exact", "GET", "/style.css", {"If-Modified-Since": "{lm}"}, None),
    ("ims-exact-head", "HEAD", "/style.css", {"If-Modified-Since": "{lm}"}, None),
    ("ims-later", "GET", "/style.css", {"If-Modified-Since": "{later}"}, None),
    ("ims-invalid", "GET", "/style.css", {"If-Modified-Since": "yesterday"}, None),
    ("ims-before-later", "GET", "/before/style.css", {"If-Modified-Since": "{later}"}, None),
    ("ims-before-earlier", "GET", "/before/style.css", {"If-Modified-Since": "{earlier}"}, None),
    ("inm-etag", "GET", "/style.css", {"If-None-Match": "{etag}"}, None),
    ("inm-weak", "GET", "/style.css", {"If-None-Match": '"x", W/{etag}'}, None),
    ("inm-other", "GET", "/style.css", {"If-None-Match": '"other"'}, None),
    ("inm-star", "GET", "/style.css", {"If-None-Match": "*"}, None),
    ("ims-and-inm-other", "GET", "/style.css", {"If-Modified-Since": "{lm}", "If-None-Match": '"x"'}, None),
    ("if-match-other", "GET", "/style.css", {"If-Match": '"other"'}, None),
    ("if-match-etag", "GET", "/style.css", {"If-Match": "{etag}"}, None),
    ("ius-earlier", "GET", "/style.css", {"If-Unmodified-Since": "{earlier}"}, None),
    ("ius-exact", "GET", "/style.css", {"If-Unmodified-Since": "{lm}"}, None),
    ("etag-off", "GET", "/etagoff/style.css", {}, None),
    ("etag-off-inm", "GET", "/etagoff/style.css", {"If-None-Match": "{etag}"}, None),
    # try_files
    ("tf-file", "GET", "/tfd/page.html", {}, None),
    ("tf-dir-redirect", "GET", "/tfd/sub", {}, None),
    ("tf-dir-index", "GET", "/tfd/sub/", {}, None),
    ("tf-dir-without-index", "GET", "/tfd/", {}, None),
    ("tf-code", "GET", "/tfd/none", {}, None),
    ("tf-uri-fallback", "GET", "/spa/deep/link?x=1", {}, None),
    ("tf-named-fallback", "GET", "/named/none", {}, None),
    ("tf-named-file", "GET", "/named/", {}, None),
    ("tf-code-403", "GET", "/code/none", {}, None),
    # alias, types, index, log_not_found
    ("alias-file", "GET", "/alias/nested/file.txt", {}, None),
    ("alias-index", "GET", "/alias/", {}, None),
    ("alias-missing", "GET", "/alias/none", {}, None),
    ("alias-dir-redirect", "GET", "/alias/nested", {}, None),
    ("alias-exact-file", "GET", "/aliasfile", {}, None),
    ("alias-regex", "GET", "/re/nested/file.txt", {}, None),
    ("alias-regex-missing", "GET", "/re/none", {}, None),
    ("empty-types", "GET", "/notypes/style.css", {}, None),
    ("index-absolute", "GET", "/idx/", {}, None),
    ("log-not-found-off", "GET", "/quiet/none", {}, None),
    ("log-not-found-off-index", "GET", "/quiet/nodir/", {}, None),
    ("redirect-cycle", "GET", "/loop/", {}, None),
]


@pytest.mark.parametrize(("method", "target", "headers", "body"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_answers_as_nginx_does(servers, method, target, headers, body) -> None:
    values = style_dates(servers)
    headers = {name: value.format(**values) for name, value in headers.items()}
    nginx, ours = both(servers, method, target, headers, body)
    assert ours == nginx


def test_every_row_is_compared_on_what_matters(servers) -> None:
    """The table shows each kind of answer: 200, 301, 304, 400, 403, 404, 405, 412, 500."""
    statuses = {both(servers, m, t, {k: v.format(**style_dates(servers)) for k, v in h.items()}, b)[0].status
                for _, m, t, h, b in CASES}
    assert statuses == {200, 301, 304, 400, 403, 404, 405, 412, 500}


# -- where nginxws refuses what nginx serves ----------------------------------------------


def test_a_symlink_out_of_the_root_is_refused_where_nginx_follows_it(servers) -> None:
    nginx, ours = both(servers, "GET", "/out.txt")
    assert (nginx.status, nginx.body) == (200, b"outside the root\n")  # disable_symlinks off
    assert (ours.status, ours.body.count(b"outside")) == (403, 0)
    assert ours.log == [("error", f'open() "{servers.www}/out.txt" refused: it leads to "{servers.base}/outside.txt", '
                                  f'outside the root "{servers.www}", client: 127.0.0.1, server: {HOST}, '
                                  f'request: "GET /out.txt HTTP/1.1", host: "{HOST}"')]


def test_an_alias_whose_location_has_no_slash_cannot_climb_out_where_nginx_lets_it(servers) -> None:
    # "location /al { alias .../sub/; }": /al../style.css maps to .../sub/../style.css, which nginx
    # serves (the URI has no ".." segment to refuse); the file is outside the alias, so nginxws refuses it.
    nginx, ours = both(servers, "GET", "/al../style.css")
    assert (nginx.status, nginx.body) == (200, FILES["style.css"])
    assert ours.status == 403
    assert ours.log[0][1].startswith(f'open() "{servers.www}/sub/../style.css" refused: it leads to '
                                     f'"{servers.www}/style.css", outside the alias "{servers.www}/sub/"')


def test_a_range_is_answered_whole_where_nginx_sends_the_part(servers) -> None:
    nginx, ours = both(servers, "GET", "/style.css", {"Range": "bytes=0-3"})
    assert (nginx.status, nginx.body) == (206, FILES["style.css"][:4])
    assert (ours.status, ours.body) == (200, FILES["style.css"])  # RFC 9110 lets a server ignore Range


# -- streaming ------------------------------------------------------------------------

BIG = 50 * 1024 * 1024
RSS_SLACK_KIB = 16 * 1024  # far less than the file: a server that read it whole would hold 50 MiB


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of ``pid``, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_a_large_file_streams_with_bounded_memory_while_the_worker_serves_others(servers) -> None:
    block = os.urandom(1024 * 1024)
    big = servers.www / "big.bin"
    with open(big, "wb") as f:
        for _ in range(BIG // len(block)):
            f.write(block)
    expected = hashlib.sha256(block * (BIG // len(block))).hexdigest()
    big.chmod(0o644)
    pid = servers.nginxws_pid
    before = memory_kib(pid)
    try:
        with socket.create_connection(("127.0.0.1", servers.nginxws_port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(f"GET /big.bin HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            head, body = read_head(sock)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and f"Content-Length: {BIG}".encode() in head
            digest = hashlib.sha256(body)
            received = len(body)
            while received < 1024 * 1024:
                chunk = sock.recv(65536)
                digest.update(chunk)
                received += len(chunk)
            # The file is part sent, the socket full: the worker serves a WebSocket client meanwhile.
            with connect(f"ws://127.0.0.1:{servers.nginxws_port}/ws", open_timeout=10) as ws:
                push_url = first_push_url(ws)
                assert httpx.post(push_url, content="while the file streams", timeout=10).status_code == 204
                assert ws.recv(timeout=10) == "while the file streams"
            while received < BIG:
                chunk = sock.recv(1024 * 1024)
                assert chunk, received
                digest.update(chunk)
                received += len(chunk)
        assert (received, digest.hexdigest()) == (BIG, expected)
    finally:
        big.unlink()
    after = memory_kib(pid)
    assert after["VmHWM"] - before["VmHWM"] < RSS_SLACK_KIB, (before, after)

