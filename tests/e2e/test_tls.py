"""TLS end to end: wss:// clients, https pushes, SNI, a renewed certificate
picked up by a reload, encrypted keys, and handshakes that go wrong.

Each test makes its own CA and certificates (``support.certs``) in its
temporary directory and trusts that CA only.  The Browser's side is in
``test_browser.py``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from support.certs import Authority, subject_name
from support.clients import CLIENT_TIMEOUT, handshake
from support.processes import poll, processes
from websockets.sync.client import connect

TIMEOUT = 10.0
PUSH_HTTPS = re.compile(r"https://(?P<id>[A-Za-z0-9_-]{24})@127\.0\.0\.1:(?P<port>\d+)/ws")

CONF = """
{main}
error_log {logs}/error.log info;
pid {logs}/nginxws.pid;
events {{ worker_connections 256; }}
http {{
    log_format scheme '$scheme $status "$request"';
    access_log {logs}/access.log scheme;
    {http}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name a.test;
        ssl_certificate {tls}/a.test.pem;
        ssl_certificate_key {tls}/a.test.key;
        location /ws {{ websocket push_ssl=on; }}
        location /who {{ return 200 "server a\\n"; }}
    }}
    {servers}
}}
"""
SINGLE = "daemon off;\nmaster_process off;"


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "tls")


def tls_conf(tmp_path: Path, port: int, *, main: str = SINGLE, http: str = "", servers: str = "") -> str:
    return CONF.format(main=main, logs=tmp_path, port=port, tls=tmp_path / "tls", http=http, servers=servers)


def log(tmp_path: Path, name: str = "error.log") -> str:
    path = tmp_path / name
    return path.read_text(errors="replace") if path.exists() else ""


def wait_log(tmp_path: Path, pattern: str, name: str = "error.log") -> re.Match[str]:
    found: list[re.Match[str]] = []

    def seen() -> bool:
        found[:] = re.finditer(pattern, log(tmp_path, name), re.M)
        return bool(found)

    assert poll(seen, TIMEOUT), f"{pattern!r} never appeared in {name}:\n{log(tmp_path, name)}"
    return found[0]


def peer_certificate(port: int, context: ssl.SSLContext, name: str | None) -> str:
    """The common name of the certificate 127.0.0.1:``port`` shows a client sending SNI ``name``."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            return subject_name(tls.getpeercert(binary_form=True))


def test_wss_client_gets_its_welcome_echoes_and_pushes_over_https(run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test")
    port = free_port()
    run_nginxws(tls_conf(tmp_path, port))
    context = ca.client_context()
    with connect(f"wss://127.0.0.1:{port}/ws", ssl=context, server_hostname="a.test",
                 open_timeout=TIMEOUT) as ws:
        welcome = ws.recv(timeout=CLIENT_TIMEOUT)
        assert PUSH_HTTPS.fullmatch(welcome), welcome
        ws.send("echo me")
        assert ws.recv(timeout=CLIENT_TIMEOUT) == "echo me"
        # The push listener speaks TLS with the server's certificate (made for
        # a.test and 127.0.0.1): a client that checks it pushes.
        answer = httpx.post(welcome, content="héllo over https".encode(), verify=context, timeout=TIMEOUT)
        assert answer.status_code == 204
        assert ws.recv(timeout=CLIENT_TIMEOUT) == "héllo over https"
        # A plain-HTTP push to the https listener does not get through.
        with pytest.raises(httpx.HTTPError):
            httpx.post(welcome.replace("https://", "http://"), content=b"x", timeout=TIMEOUT)
    wait_log(tmp_path, r'^https 101 "GET /ws HTTP/1.1"$', "access.log")
    wait_log(tmp_path, r'^https 204 "POST /ws HTTP/1.1"$', "access.log")


def test_a_channel_publish_reaches_wss_subscribers_on_every_worker(run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test")
    ca.issue("chat.test")
    port = free_port()
    # The default server of the address: clients that name no known host come here.
    channels = f"""
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name chat.test;
        ssl_certificate {tmp_path}/tls/chat.test.pem;
        ssl_certificate_key {tmp_path}/tls/chat.test.key;
        location /chat {{ websocket; websocket_channels news; }}
        location /pub {{ websocket_publish news; }}
    }}"""
    run = run_nginxws(tls_conf(tmp_path, port, main="daemon off;\nworker_processes 2;", servers=channels))
    wait_log(tmp_path, r"worker process \d+ accepts pushes")
    context = ca.client_context()
    with contextlib.ExitStack() as opened:
        clients = [opened.enter_context(connect(f"wss://127.0.0.1:{port}/chat", ssl=context,
                                                server_hostname="chat.test", open_timeout=TIMEOUT))
                   for _ in range(6)]
        for client in clients:
            client.recv(timeout=CLIENT_TIMEOUT)  # the welcome
        messages = ["first", "x" * 200_000, "third"]  # the large one fills socket buffers
        for message in messages:
            answer = _post(port, "/pub", message.encode(), context)
            assert answer.startswith(b"HTTP/1.1 202 ")
        for client in clients:
            assert [client.recv(timeout=CLIENT_TIMEOUT) for _ in messages] == messages
    assert "Traceback" not in run.stderr() + log(tmp_path)


def _post(port: int, path: str, body: bytes, context: ssl.SSLContext) -> bytes:
    """POST ``body`` to https://chat.test:``port``/``path``; the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        with context.wrap_socket(sock, server_hostname="chat.test") as tls:
            tls.sendall(b"POST %s HTTP/1.1\r\nHost: chat.test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                        % (path.encode(), len(body)) + body)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return data


def test_sni_chooses_each_servers_certificate_and_host_routes(run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test")
    ca.issue("b.test")
    port = free_port()
    b_server = f"""
    server {{
        listen 127.0.0.1:{port};
        server_name b.test *.b.test;
        ssl_certificate {tmp_path}/tls/b.test.pem;
        ssl_certificate_key {tmp_path}/tls/b.test.key;
        location /who {{ return 200 "server b\\n"; }}
    }}"""
    run_nginxws(tls_conf(tmp_path, port, servers=b_server))
    checking = ca.client_context()
    assert peer_certificate(port, checking, "a.test") == "a.test"
    assert peer_certificate(port, checking, "b.test") == "b.test"
    anything = ssl.create_default_context()
    anything.check_hostname, anything.verify_mode = False, ssl.CERT_NONE
    # The names nginx's rules give to b (a wildcard), and the default server's
    # certificate for a name no server has and for a client without SNI.
    assert peer_certificate(port, anything, "x.b.test") == "b.test"
    assert peer_certificate(port, anything, "nobody.test") == "a.test"
    assert peer_certificate(port, anything, None) == "a.test"
    # Past the handshake, the Host header routes as over plain HTTP.
    for name in ("a.test", "b.test"):
        assert _get_by_name(port, name, checking) == f"server {name[0]}\n"


def _get_by_name(port: int, name: str, context: ssl.SSLContext) -> str:
    """GET /who from 127.0.0.1:``port`` as https://``name``/ (SNI and Host); the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
        with context.wrap_socket(sock, server_hostname=name) as tls:
            tls.sendall(f"GET /who HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def test_reload_picks_up_a_renewed_certificate_and_keeps_connected_clients(
        run_nginxws, free_port, tmp_path, ca) -> None:
    first = ca.issue("a.test")
    port = free_port()
    run = run_nginxws(tls_conf(tmp_path, port, main="daemon off;\nworker_processes 1;"))
    wait_log(tmp_path, r"worker process \d+ accepts pushes")
    context = ca.client_context()
    with connect(f"wss://127.0.0.1:{port}/ws", ssl=context, server_hostname="a.test",
                 open_timeout=TIMEOUT) as old_client:
        push_url = old_client.recv(timeout=CLIENT_TIMEOUT)
        renewed = ca.issue("a.test")  # the same files, a new certificate and key
        assert renewed.certificate.serial_number != first.certificate.serial_number
        run.proc.send_signal(signal.SIGHUP)
        wait_log(tmp_path, r"gracefully shutting down")
        # New clients get the renewed certificate from the new worker...
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as sock:
            with context.wrap_socket(sock, server_hostname="a.test") as tls:
                serial = _serial(tls.getpeercert(binary_form=True))
        assert serial == renewed.certificate.serial_number
        # ...while the client connected before stays connected to the old one,
        # echoed and pushed to over its old https push URL.
        old_client.send("still here")
        assert old_client.recv(timeout=CLIENT_TIMEOUT) == "still here"
        assert httpx.post(push_url, content=b"after reload", verify=context, timeout=TIMEOUT).status_code == 204
        assert old_client.recv(timeout=CLIENT_TIMEOUT) == "after reload"
        with connect(f"wss://127.0.0.1:{port}/ws", ssl=context, server_hostname="a.test",
                     open_timeout=TIMEOUT) as new_client:
            assert PUSH_HTTPS.fullmatch(new_client.recv(timeout=CLIENT_TIMEOUT))
    assert "Traceback" not in run.stderr() + log(tmp_path)


def _serial(der: bytes) -> int:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


def test_a_reload_with_a_broken_certificate_keeps_the_running_generation(
        run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test")
    port = free_port()
    run = run_nginxws(tls_conf(tmp_path, port, main="daemon off;\nworker_processes 1;"))
    wait_log(tmp_path, r"worker process \d+ accepts pushes")
    key = tmp_path / "tls" / "a.test.key"
    ca.issue("other", file="other")
    key.write_bytes((tmp_path / "tls" / "other.key").read_bytes())  # no longer the certificate's key
    run.proc.send_signal(signal.SIGHUP)
    wait_log(tmp_path, r'\[emerg\] \d+#0: SSL_CTX_use_PrivateKey\("' + re.escape(str(key))
             + r'"\) failed \(SSL: \[X509: KEY_VALUES_MISMATCH\] key values mismatch\)')
    assert "gracefully shutting down" not in log(tmp_path)
    assert peer_certificate(port, ca.client_context(), "a.test") == "a.test"


def test_an_encrypted_key_loads_with_the_passwords_of_ssl_password_file(run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test", password=b"s3cret phrase")
    (tmp_path / "tls" / "passwords").write_bytes(b"not this one\r\n\ns3cret phrase\n")
    port = free_port()
    run_nginxws(tls_conf(tmp_path, port, http=f"ssl_password_file {tmp_path}/tls/passwords;"))
    assert peer_certificate(port, ca.client_context(), "a.test") == "a.test"


def test_bad_handshakes_are_answered_or_closed_and_the_worker_serves_on(
        run_nginxws, free_port, tmp_path, ca) -> None:
    ca.issue("a.test")
    port = free_port()
    run = run_nginxws(tls_conf(tmp_path, port, http="client_header_timeout 1s;"))
    address = ("127.0.0.1", port)
    # Bytes that are no TLS record but start like one: the handshake fails, the connection closes.
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05" + bytes(range(256)) * 4)
        assert _read_all(sock) == b""
    wait_log(tmp_path, r"\[info\] \d+#0: \*\d+ SSL_do_handshake\(\) failed \(SSL: \[SSL: [A-Z_]+\] [^)]+\) "
                       r"while SSL handshaking, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+$")
    # Plain HTTP to the TLS port: nginx's 400, then the connection closes.
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(handshake())
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close\r\n" in answer
    assert answer.endswith(b"<center>The plain HTTP request was sent to HTTPS port</center>\r\n"
                           b"<hr><center>nginxws/0.1.0</center>\r\n</body>\r\n</html>\r\n")
    wait_log(tmp_path, r"\[info\] .* client sent plain HTTP request to HTTPS port while reading client request headers")
    # Half a ClientHello, then nothing: closed after client_header_timeout.
    context = ca.client_context()
    hello = _client_hello(context)
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(hello[: len(hello) // 2])
        opened = time.monotonic()
        assert _read_all(sock) == b""
        assert time.monotonic() - opened >= 0.9
    wait_log(tmp_path, r"\[info\] .* client timed out while SSL handshaking, client: 127\.0\.0\.1")
    # A client that hangs up in the middle of its handshake.
    with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(hello)
        sock.recv(1)
    wait_log(tmp_path, r"\[info\] .* peer closed connection in SSL handshake while SSL handshaking")
    # A client that connects and leaves without a byte.
    socket.create_connection(address, timeout=CLIENT_TIMEOUT).close()
    wait_log(tmp_path, r"\[info\] .* client closed connection while SSL handshaking, client: 127\.0\.0\.1")
    # A client that refuses the server's certificate (it trusts another CA).
    stranger = Authority(tmp_path / "stranger", "someone else").client_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_certificate(port, stranger, "a.test")
    wait_log(tmp_path, r"SSL_do_handshake\(\) failed \(SSL: \[SSL: "
                       r"(TLSV1_ALERT_UNKNOWN_CA|SSLV3_ALERT_BAD_CERTIFICATE)\]")
    # The same worker still serves a good client.
    with connect(f"wss://127.0.0.1:{port}/ws", ssl=context, server_hostname="a.test", open_timeout=TIMEOUT) as ws:
        assert PUSH_HTTPS.fullmatch(ws.recv(timeout=CLIENT_TIMEOUT))
    assert run.proc.poll() is None
    assert "Traceback" not in run.stderr() + log(tmp_path)
    assert not re.search(r"\[(alert|crit|emerg)\]", log(tmp_path)), log(tmp_path)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a client of ``context`` (its ClientHello), as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname="a.test")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize(("case", "expected"), [
    ("broken certificate",
     'cannot load certificate "{tls}/a.test.pem": PEM_read_bio_X509_AUX() failed '
     "(SSL: [X509] PEM lib) in {conf}:14"),
    ("missing key",
     'cannot load certificate key "{tls}/a.test.key": BIO_new_file() failed (2: No such file or directory) '
     "in {conf}:15"),
    ("key that does not match",
     'SSL_CTX_use_PrivateKey("{tls}/a.test.key") failed (SSL: [X509: KEY_VALUES_MISMATCH] key values mismatch) '
     "in {conf}:15"),
])
def test_t_refuses_certificate_files_that_do_not_load(nginxws_bin, free_port, tmp_path, ca, case, expected) -> None:
    issued = ca.issue("a.test")
    if case == "broken certificate":
        issued.cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    elif case == "missing key":
        issued.key.unlink()
    else:
        ca.issue("other", file="other")
        issued.key.write_bytes((tmp_path / "tls" / "other.key").read_bytes())
    conf = tmp_path / "nginx.conf"
    conf.write_text(tls_conf(tmp_path, free_port()))
    done = subprocess.run([nginxws_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "nginxws: [emerg] " + expected.format(tls=tmp_path / "tls", conf=conf),
        f"nginxws: configuration file {conf} test failed",
    ]


def test_workers_load_a_root_only_key_before_they_become_their_user(run_nginxws, free_port, tmp_path, ca) -> None:
    # As nginx's master loads certificates as root, a worker loads its own
    # before it gives root up for ``user``: a key only root may read serves.
    import grp
    import os
    import pwd

    nobody = pwd.getpwnam("nobody")
    issued = ca.issue("a.test")
    issued.key.chmod(0o600)
    port = free_port()
    group = grp.getgrgid(nobody.pw_gid).gr_name
    run = run_nginxws(tls_conf(tmp_path, port, main=f"user nobody {group};\ndaemon off;\nworker_processes 1;"))
    wait_log(tmp_path, r"worker process \d+ accepts pushes")
    workers = [pid for pid, state, parent, _ in processes() if parent == run.pid and state != "Z"]
    assert [os.stat(f"/proc/{pid}").st_uid for pid in workers] == [nobody.pw_uid]
    assert peer_certificate(port, ca.client_context(), "a.test") == "a.test"
