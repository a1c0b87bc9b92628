"""What a TLS handshake costs nginxws: server CPU per connection, ws:// against wss://.

    .venv/bin/python bench/tls_handshake.py [--connections N] [--rounds R] [--nginxws-bin PATH]
                                             [--peer PYTHON]

With ``--peer`` (a Python with ``websockets``, e.g. ``bench/.venv/bin/python``),
the websockets peer (``bench/peers/websockets_server.py``, uvloop if that
Python has it) is measured the same way, plain and with the same certificate.

Starts one nginxws worker (``master_process off``) with a plain and a TLS
listen (a self-signed ECDSA P-256 certificate made here, TLSv1.3), then,
per round and per scheme, opens N connections one after another from one
client thread: handshake (TLS, then WebSocket), the welcome, a close frame,
the socket closed.  The server's CPU time (``/proc/PID/stat``, user +
system) over the N connections, divided by N, is the cost of one; the
median of the rounds is printed.  The client (Python's ``ssl`` and a raw
WebSocket handshake) costs about as much, so both share the two cores.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.certs import Authority  # noqa: E402

CONF = """
daemon off;
master_process off;
error_log {prefix}/error.log warn;
pid {prefix}/nginxws.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{plain};
        location /ws {{ websocket; }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {prefix}/tls/bench.pem;
        ssl_certificate_key {prefix}/tls/bench.key;
        location /ws {{ websocket; }}
    }}
}}
"""
REQUEST = (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"  # a masked close frame, 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one(port: int, context: ssl.SSLContext | None) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(REQUEST)
        data = b""
        while data.count(b"\r\n\r\n") < 1 or len(data.partition(b"\r\n\r\n")[2]) < 2:
            data += sock.recv(4096)
        sock.sendall(CLOSE)
        while sock.recv(4096):
            pass


def started(argv: list[str], port: int) -> subprocess.Popen:
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"{argv[0]} did not start") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nginxws-bin", default=str(Path(sys.executable).with_name("nginxws")))
    parser.add_argument("--peer", help="a Python with websockets: measure the websockets peer too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nginxws-tls-bench-") as prefix:
        ca = Authority(Path(prefix) / "tls")
        ca.issue("bench")
        client = ca.client_context()
        client.check_hostname = False
        plain, tls = free_port(), free_port()
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(CONF.format(prefix=prefix, plain=plain, tls=tls))
        servers = [started([args.nginxws_bin, "-p", prefix, "-c", str(conf)], tls)]
        # (name, pid, port, client context)
        targets = [("nginxws ws://", servers[0].pid, plain, None), ("nginxws wss://", servers[0].pid, tls, client)]
        if args.peer:
            peer = str(Path(__file__).resolve().parent / "peers" / "websockets_server.py")
            for name, certificate in (("websockets ws://", []), ("websockets wss://", [
                    "--certificate", f"{prefix}/tls/bench.pem", "--key", f"{prefix}/tls/bench.key"])):
                port = free_port()
                servers.append(started([args.peer, peer, "--port", str(port), *certificate], port))
                targets.append((name, servers[-1].pid, port, client if certificate else None))
        try:
            results: dict[str, list[tuple[float, float]]] = {name: [] for name, *_ in targets}
            for _ in range(args.rounds):
                for name, pid, port, context in targets:
                    cpu, start = cpu_seconds(pid), time.perf_counter()
                    for _ in range(args.connections):
                        one(port, context)
                    elapsed = time.perf_counter() - start
                    results[name].append(((cpu_seconds(pid) - cpu) / args.connections, args.connections / elapsed))
            print("| server | server CPU per connection, µs | connections/s (one client) |")
            print("|---|---:|---:|")
            for name, rounds in results.items():
                cpu = statistics.median(r[0] for r in rounds) * 1e6
                rate = statistics.median(r[1] for r in rounds)
                print(f"| {name} | {cpu:.0f} | {rate:,.0f} |")
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)

if __name__ == "__main__":
    main()
