"""Where an idle connection's memory goes, by owner: trio, trio-websocket, wsproto, h11, nginxws.

Runs one nginxws worker in this process (``master_process off`` semantics, the repository's
code), opens N idle WebSocket clients to it from a child process, and compares tracemalloc
snapshots taken before and after: bytes per connection by the package that allocated them, then
the largest allocation sites. The RSS figure of ``bench/run.py systems`` is what users see; this
says what it is made of.

    python bench/run.py memory                    # 2,000 clients
    python bench/run.py memory --clients 200 --top 10

`python bench/memory_owners.py ...` is `python bench/run.py memory ...`.

Loopback only; the child is killed and waited for before the worker stops.
"""

from __future__ import annotations

import argparse
import gc
import socket
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import trio

from nginxws.conf import load
from nginxws.log import ErrorLogger
from nginxws.worker import Worker

from machine import raise_file_limit

OWNERS = ("wsproto", "h11", "nginxws", "trio")
CONF = """daemon off; master_process off; error_log stderr warn;
events {{ worker_connections 20000; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port}; location /ws {{ websocket; }} }} }}
"""
# The child: N clients, each handshaken and past its welcome message, then idle until stdin closes.
CLIENTS = r"""
import base64, os, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    seen = b""
    while b"http://" not in seen:
        chunk = sock.recv(4096)
        if not chunk:
            sys.exit("closed before the welcome message")
        seen += chunk
    held.append(sock)
print("ready", flush=True)
sys.stdin.read()
"""


def owner(filename: str) -> str:
    for name in OWNERS:
        if f"/{name}/" in filename or f" {name}." in filename or f"<{name}." in filename:
            return name
    return "other (" + Path(filename).name + ")"


async def measure(clients: int, top: int) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="nginxws-memory-") as prefix:
        path = Path(prefix) / "memory.conf"
        path.write_text(CONF.format(port=port))
        config = load(str(path), prefix=prefix)
    worker = Worker(config, 0, ErrorLogger(config.error_logs))
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run, [listener])
        gc.collect()
        before = tracemalloc.take_snapshot()
        child = await trio.lowlevel.open_process(
            [sys.executable, "-c", CLIENTS, str(port), str(clients)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        try:
            with trio.fail_after(120):
                line = await child.stdout.receive_some(64)
                if not line.startswith(b"ready"):
                    sys.exit(f"memory_owners: the clients did not connect: {line!r}")
                while len(worker.sessions) < clients:
                    await trio.sleep(0.05)
            await trio.sleep(0.5)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            child.kill()
            await child.wait()
        nursery.cancel_scope.cancel()
    stats = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in stats)
    by_owner: dict[str, int] = {}
    for stat in stats:
        name = owner(stat.traceback[0].filename)
        by_owner[name] = by_owner.get(name, 0) + stat.size_diff
    print(f"{clients:,} idle connections: {total / clients:,.0f} B per connection (tracemalloc)\n")
    print("| allocated by | B per connection |\n|---|---|")
    for name, size in sorted(by_owner.items(), key=lambda item: -item[1]):
        if abs(size) / clients >= 1:
            print(f"| {name} | {size / clients:,.0f} |")
    print(f"\nThe {top} largest allocation sites:\n")
    print("| B per connection | objects per connection | where |\n|---|---|---|")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"| {stat.size_diff / clients:,.0f} | {stat.count_diff / clients:.1f} | {frame.filename}:{frame.lineno} |")


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """The two tables on stdout; the process exit status."""
    needed = 2 * args.clients + 100
    hard = raise_file_limit()
    if hard < needed:
        sys.exit(f"bench memory: the open files hard limit is {hard}, {needed} are needed")
    tracemalloc.start()
    trio.run(measure, args.clients, args.top)
    return 0


if __name__ == "__main__":
    import run as entry

    sys.exit(entry.main(["memory", *sys.argv[1:]]))
