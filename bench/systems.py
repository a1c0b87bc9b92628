"""The systems under test: how to start, watch and stop each one.

A system is started fresh for every scenario, in its own temporary prefix, on a free loopback
port, as a child of the harness; it is stopped by pid (SIGTERM, then SIGKILL for whatever of
its process tree is left). Its CPU and memory are read from /proc over the whole process tree
(master and workers), so one-process and multi-process servers are measured alike.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from loadgen import ServerProbe

BENCH = Path(__file__).resolve().parent
PEER = BENCH / "peers" / "websockets_server.py"
NGINX = Path("/usr/sbin/nginx")
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PR_SET_PDEATHSIG = 1
_TCP_ESTABLISHED = "01"


class StartError(Exception):
    """A system could not be started or does not answer; the message says why."""


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate (RFC 7692) turned on in a system, as nginxws's location parameters.

    Both ends compress with zlib's defaults at 15 window bits; `context_takeover` keeps the
    compressor between messages (nginxws `deflate_no_context_takeover=off`), which an idle
    connection then holds from its welcome message on.
    """

    context_takeover: bool

    @property
    def suffix(self) -> str:
        return "-deflate-ctx" if self.context_takeover else "-deflate"

    @property
    def websocket_parameters(self) -> str:
        """What nginxws's ``websocket`` directive takes for it."""
        return " deflate=on" + (" deflate_no_context_takeover=off" if self.context_takeover else "")

    @property
    def peer_arguments(self) -> list[str]:
        """What bench/peers/websockets_server.py takes for it."""
        return ["--deflate", *(["--deflate-context-takeover"] if self.context_takeover else [])]


DEFLATE_VARIANTS = {"deflate": Deflate(False), "deflate-ctx": Deflate(True)}
"""System name suffixes (``nginxws-deflate``, ``websockets-deflate-ctx``) and what they turn on."""


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """One column of the table: which server, with how many worker processes."""

    kind: str
    """"nginxws", "websockets" or "nchan"."""
    workers: int
    baseline: bool = False
    """nginxws from `Tools.baseline` (another build, for before/after in one run)."""
    deflate: Deflate | None = None
    """permessage-deflate on (nginxws and the websockets peer); None: off, as by default."""
    nagle: bool = False
    """nginxws with ``tcp_nodelay off`` (``nginxws-nagle``): its sessions' sockets run Nagle's
    algorithm, as nchan's WebSocket subscribers do."""

    @property
    def label(self) -> str:
        name = ("baseline" if self.baseline else self.kind) + (
            self.deflate.suffix if self.deflate else ""
        ) + ("-nagle" if self.nagle else "")
        if self.kind == "websockets":
            return name
        return f"{name} {self.workers}w"

    @property
    def welcome(self) -> bool:
        return self.kind != "nchan"


@dataclass(frozen=True, slots=True)
class Tools:
    """Where the programs the systems need are."""

    nginxws: Path
    bench_python: Path
    nofile: int
    """The RLIMIT_NOFILE the servers inherit and are configured with."""
    baseline: Path | None = None
    """Another nginxws build to run beside `nginxws` (`--baseline-bin`)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: be sent SIGTERM if the harness dies without stopping us."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from a scan of /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        ppid = int(data[data.rfind(b")") + 2 :].split(None, 2)[1])
        children.setdefault(ppid, []).append(int(name))
    tree = [root]
    for pid in tree:
        tree.extend(children.get(pid, ()))
    return tree


class RunningServer(ServerProbe):
    """A started system: its port, its process tree's CPU and memory, and how to stop it."""

    def __init__(
        self, spec: SystemSpec, process: subprocess.Popen[bytes], port: int, log: Path,
        publish_port: int | None = None,
    ):
        self.spec = spec
        self.process = process
        self.port = port
        self.publish_port = publish_port
        """The fan-out configuration's publisher port (`start(fanout=True)`); else None."""
        self.log = log
        self.known_pids: set[int] = {process.pid}
        self.shortfall: str | None = None
        """Set when the server runs fewer processes than its configuration asks for."""

    def pids(self) -> list[int]:
        tree = _process_tree(self.process.pid)
        self.known_pids.update(tree)
        return tree

    def cpu_seconds(self) -> float:
        ticks = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        return ticks / _CLOCK_TICKS

    def cpu_seconds_exact(self) -> float:
        """The tree's CPU time to the nanosecond: the scheduler's run time (user and system,
        the same total `cpu_seconds` counts in 10 ms ticks) of each thread, from
        /proc/PID/task/TID/schedstat. Threads that ended are not counted: read it over a phase
        in which the server's threads stay (nginx's and nginxws's workers keep theirs)."""
        nanoseconds = 0
        for pid in self.pids():
            try:
                threads = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for thread in threads:
                try:
                    with open(f"/proc/{pid}/task/{thread}/schedstat", "rb") as schedstat:
                        nanoseconds += int(schedstat.read().split(None, 1)[0])
                except (OSError, ValueError):
                    continue
        return nanoseconds / 1e9

    def connections_by_process(self, port: int) -> list[int]:
        """How many established TCP connections to `port` each process of the tree holds, from
        /proc/net/tcp and each process's /proc/PID/fd (after a fork a connection is held by the
        process that accepted it)."""
        wanted = f":{port:04X}"
        inodes: set[str] = set()
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[1].endswith(wanted) and fields[3] == _TCP_ESTABLISHED:
                    inodes.add(f"socket:[{fields[9]}]")
        counts = []
        for pid in self.pids():
            held = 0
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        held += os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
                    except OSError:
                        continue
            except OSError:
                pass
            counts.append(held)
        return counts

    def rss_bytes(self) -> int:
        pages = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/statm", "rb") as statm:
                    pages += int(statm.read().split()[1])
            except OSError:
                continue
        return pages * _PAGE

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, processes: int, limit: float = 20.0, grace: float = 5.0) -> None:
        """Wait until the port accepts connections and the tree has `processes` processes.

        A server that accepts but keeps fewer processes than asked for (say, a master that
        does not fork workers yet) is still used after `grace` seconds; `shortfall` says so.
        """
        deadline = time.monotonic() + limit
        accepting_since: float | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartError(
                    f"{self.spec.label} exited with status {self.process.returncode}:\n"
                    f"{self.log_tail()}"
                )
            if accepting_since is None and _accepts(self.port):
                accepting_since = time.monotonic()
            if accepting_since is not None:
                found = len(self.pids())
                if found >= processes:
                    return
                if time.monotonic() - accepting_since >= grace:
                    self.shortfall = f"ran as {found} process(es), {processes} expected"
                    return
            time.sleep(0.05)
        raise StartError(
            f"{self.spec.label} not ready after {limit:.0f} s ({len(self.pids())} of {processes} "
            f"processes; port {self.port} accepting: {_accepts(self.port)})\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM the root, then SIGKILL any process of its tree still there after 10 s."""
        if self.process.poll() is None:
            self.pids()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        deadline = time.monotonic() + 5
        for pid in sorted(self.known_pids - {self.process.pid}):
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


NGINXWS_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
error_log stderr warn;
pid nginxws.pid;
worker_rlimit_nofile {nofile};
events {{ worker_connections 20000; }}
http {{
    access_log off;
{http}
{servers}
}}
"""

NGINXWS_PUSH = """\
    server {{
        listen 127.0.0.1:{port};
        location /ws {{ websocket{parameters}; }}
    }}"""

NGINXWS_FANOUT = """\
    server {{
        listen 127.0.0.1:{port};
        location /sub {{ websocket welcome=off; websocket_channels $arg_channel; }}
    }}
    server {{
        listen 127.0.0.1:{publish_port};
        location /pub {{ websocket_publish $arg_channel; }}
    }}"""

NCHAN_CONF = """\
load_module {module};
worker_processes {workers};
daemon off;
master_process on;
error_log stderr warn;
pid nginx.pid;
worker_rlimit_nofile {nofile};
events {{ worker_connections 20000; }}
http {{
    access_log off;
{temp_paths}
{servers}
}}
"""

NCHAN_PUSH = """\
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/ws/(\\w+)$ {{
            nchan_subscriber websocket;
            nchan_channel_id $1;
            nchan_message_buffer_length 0;
        }}
        location ~ ^/pub/(\\w+)$ {{
            nchan_publisher http;
            nchan_channel_id $1;
            nchan_message_buffer_length 0;
        }}
    }}"""

NCHAN_FANOUT = """\
    server {{
        listen 127.0.0.1:{port};
        location /sub {{
            nchan_subscriber websocket;
            nchan_channel_id $arg_channel;
            nchan_message_buffer_length 0;
        }}
    }}
    server {{
        listen 127.0.0.1:{publish_port};
        location /pub {{
            nchan_publisher http;
            nchan_channel_id $arg_channel;
            nchan_message_buffer_length 0;
        }}
    }}"""
"""nchan as nginxws's fan-out configuration: subscribers on the first port, the publisher on
an internal one, memory storage, no message kept for later subscribers (nginxws keeps none)."""


def _nginx_temp_paths(workdir: Path) -> str:
    """Point every temp path this nginx build has into `workdir`, away from /var/lib/nginx."""
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10).stderr
    lines = []
    for kind in re.findall(r"--http-(\w+)-temp-path=", built):
        directive = "client_body" if kind == "client-body" else kind
        lines.append(f"    {directive}_temp_path {workdir / ('temp_' + directive)};")
    return "\n".join(lines)


NGINXWS_REDIS = "    websocket_redis {url};"
NCHAN_REDIS = """\
    upstream nchan_redis {{
        nchan_redis_server {url};
        nchan_redis_storage_mode nostore;
    }}"""
"""nchan's Redis, as nginxws uses it: pub/sub between servers, no message stored (nchan's
``nostore`` mode), every location on it (``nchan_redis_pass``)."""


def start(
    spec: SystemSpec, tools: Tools, workdir: Path, grace: float = 5.0, fanout: bool = False,
    redis_url: str | None = None,
) -> RunningServer:
    """Start `spec` in `workdir` and wait until it accepts connections.

    `grace`: how long to wait for the configured number of processes once the port accepts.
    `fanout`: the channels configuration (nginxws and nchan only): subscribers connect to
    ``/sub?channel=NAME`` on `RunningServer.port`, a POST to ``/pub?channel=NAME`` on
    `RunningServer.publish_port` reaches them all. `redis_url` (with `fanout`): the channels
    go through that Redis (nginxws's ``websocket_redis``, nchan's ``nchan_redis_url``), so
    servers started with the same one share them.
    """
    port = free_port()
    publish_port = None
    if fanout:
        publish_port = free_port()
        while publish_port == port:
            publish_port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    if spec.kind == "nginxws":
        conf = workdir / "bench.conf"
        if fanout:
            servers = NGINXWS_FANOUT.format(port=port, publish_port=publish_port)
        else:
            parameters = spec.deflate.websocket_parameters if spec.deflate else ""
            servers = NGINXWS_PUSH.format(port=port, parameters=parameters)
        http = "    tcp_nodelay off;" if spec.nagle else ""
        if redis_url:
            http += "\n" + NGINXWS_REDIS.format(url=redis_url)
        conf.write_text(NGINXWS_CONF.format(workers=spec.workers, nofile=tools.nofile, http=http,
                                            servers=servers))
        binary = tools.baseline if spec.baseline else tools.nginxws
        command = [str(binary), "-p", f"{workdir}/", "-c", str(conf)]
        processes = 1 + spec.workers
    elif spec.kind == "nchan":
        conf = workdir / "nchan.conf"
        servers = (
            NCHAN_FANOUT.format(port=port, publish_port=publish_port) if fanout
            else NCHAN_PUSH.format(port=port)
        )
        if redis_url:
            servers = NCHAN_REDIS.format(url=redis_url) + "\n" + servers.replace(
                "nchan_message_buffer_length 0;", "nchan_message_buffer_length 0;\n            nchan_redis_pass nchan_redis;")
        conf.write_text(
            NCHAN_CONF.format(
                module=NCHAN_MODULE, workers=spec.workers, nofile=tools.nofile,
                temp_paths=_nginx_temp_paths(workdir), servers=servers,
            )
        )
        command = [str(NGINX), "-p", f"{workdir}/", "-c", str(conf), "-e", "stderr"]
        processes = 1 + spec.workers
    elif spec.kind == "websockets" and not fanout:
        command = [str(tools.bench_python), str(PEER), "--port", str(port)]
        if spec.deflate:
            command += spec.deflate.peer_arguments
        processes = 1
    else:
        raise ValueError(f"no {'fan-out ' if fanout else ''}configuration for {spec.kind!r}")
    log = workdir / "server.log"
    with open(log, "wb") as log_file:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                cwd=workdir, preexec_fn=_die_with_parent,
            )
        except OSError as error:
            raise StartError(f"{spec.label}: cannot run {command[0]}: {error}") from None
    server = RunningServer(spec, process, port, log, publish_port)
    try:
        server.wait_ready(processes, grace=grace)
    except BaseException:
        server.stop()
        raise
    return server


def version_of(command: list[str]) -> str:
    """The first line a program prints for its version flag, or why there is none."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else f"unavailable (exit {done.returncode})"

