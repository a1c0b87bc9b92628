"""One worker process: its listeners, its push listeners, its sessions.

Theory of operation
-------------------
* A worker accepts clients on the listening sockets it is handed (the
  master, or ``master_process off``, opened them) and owns everything that
  follows: the HTTP front door, the WebSocket sessions and the registry of
  their push IDs.  Workers know nothing of each other.
* Each worker binds its own push listener per ``server`` with a websocket
  location, reports the bound ports with ``nursery.start()``, and only then
  accepts clients, so every welcome message names a listening port of the
  worker that holds that client.
* Before it reports, a worker has opened every log it writes and, given a
  ``user`` (``nginxws.privileges``), has stopped being root.
* Every task has a parent: connection handlers and all accept loops live in
  the ``connections`` nursery; the accept loops of the ``listen`` sockets run
  under ``accept_scope``, cancelled to stop accepting (QUIT, TERM) while
  sessions and push listeners go on.
* Signals: TERM/INT close every session with 1001 and stop within
  ``FAST_SHUTDOWN`` seconds; QUIT stops accepting, lets sessions run (and
  stay pushable) until they end or ``worker_shutdown_timeout`` passes, then
  closes them with 1001; USR1 reopens the log files.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import socket
import ssl
import traceback

import setproctitle
import trio

from nginxws import bus
from nginxws.backend import Backend
from nginxws.channels import SLOW_CLOSE_CODE, SLOW_CLOSE_REASON, Channels, Subscriber
from nginxws.conf.model import (
    METRICS,
    STUB_STATUS,
    Config,
    Location,
    Server,
    User,
    all_locations,
    all_settings,
    websocket_locations,
)
from nginxws.errors import NginxwsError
from nginxws.frontdoor import FrontDoor, PlainHttpOnTlsPort
from nginxws.listen_sockets import bind_tcp
from nginxws.log import AccessLogger, ErrorLogger, Exchange, TlsExchange
from nginxws.streams import Listener, SocketStream
from nginxws.privileges import switch_user
from nginxws.pushlistener import PushConnection
from nginxws.registry import Registry
from nginxws.routing import Router
from nginxws.session import SHUTDOWN_CLOSE_CODE, SHUTDOWN_CLOSE_REASON, PushAddress
from nginxws.stats import ACCEPTED, DELIVERIES, HANDLED, Region
from nginxws.status import TEXT_PLAIN, connection_counts, health, host_state, stub_status
from nginxws.tls import (
    ListenTls,
    PushTls,
    TlsStream,
    WorkerTls,
    describe,
    first_byte,
    handshake_failure,
    looks_like_tls,
)
from nginxws.wsconn import SendWatch, Session

FAST_SHUTDOWN = 1.0  # seconds a TERM gives sessions to say goodbye
ACCEPT_RETRY = 0.1  # pause after EMFILE/ENFILE, as trio's serve_listeners does
# A push listener's listen() backlog: trio's open_tcp_listeners default, which
# the kernel caps at net.core.somaxconn: a burst of pushers waits, not refused.
PUSH_BACKLOG = 0xFFFF
WILDCARDS = frozenset({"0.0.0.0", "::"})
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def host_addresses(family: int) -> list[str]:
    """The host name's addresses, as the original advertised for a wildcard."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        return []
    found: list[str] = []
    for info in infos:
        address = info[4][0].partition("%")[0]
        if address not in found and not address.startswith("fe80"):
            found.append(address)
    return found


class Worker:
    """A worker's state; ``run`` serves until shutdown."""

    def __init__(self, config: Config, index: int, error_log: ErrorLogger, region: Region | None = None,
                 user: User | None = None) -> None:
        self.config = config
        self.index = index
        self.error_log = error_log
        self.user = user  # who to become once the push ports are bound and the logs open
        self.log_info = error_log.enabled("info")  # checked once: the levels never change
        # The host's statistics: this worker counts in its slot; a report reads
        # them all.  A worker run alone (a test, a benchmark) has a region of
        # its own in its memory.
        if region is None:
            region = Region.private(worker_slots=index + 1)
        self.region = region
        self.counters = region.worker_slot(index)
        self.location_ids = region.location_indices(config)
        self._exposition = None  # websocket_metrics' renderer
        if any(location.report == METRICS for location in all_locations(config)):
            # Imported before the worker gives up root (``user``): it may not
            # read the interpreter's files afterwards.  Only a configuration
            # that has the metrics pays prometheus_client's import.
            from nginxws.metrics import Exposition

            self._exposition = Exposition(region)
        self.router = Router(config.http)
        self.tls: WorkerTls | None = None  # built by ``run`` from the model's files
        self.registry = Registry()
        # websocket_redis: the master subscribes the host to the channels its
        # workers hold, and says whether Redis can be reached (publishes are
        # answered 503 until it says so).
        self.redis = config.http is not None and config.http.redis is not None
        self.remote_up = False
        self.channels = Channels(self._channel_watched if self.redis else None)
        # Frames for the other workers, through the master; None when there
        # are none (``master_process off``).
        self.bus: bus.Outbox | None = None
        self.sessions: set[Session] = set()
        self.send_watch = SendWatch()
        self.backend = Backend(error_log)
        if config.http is not None and any(_proxies(server.locations) for server in config.http.servers):
            self.backend.warm()
        self._access_logs: dict[tuple, AccessLogger] = {}
        self._push_addresses: dict[int, tuple[PushAddress, ...]] = {}
        self._conn_ids = itertools.count(1)
        self.active = 0
        self.accept_scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None  # the connections nursery, where flushers run too
        self.draining = False
        self._drained = trio.Event()

    # -- sessions --------------------------------------------------------

    def add_session(self, session: Session) -> None:
        self.sessions.add(session)

    def remove_session(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions and self.draining:
            self._drained.set()

    # -- channels ----------------------------------------------------------

    def publish(self, channel: str, message: str | bytes) -> int | None:
        """Deliver ``message`` to ``channel`` here and hand it to the bus for
        the other workers (and, with ``websocket_redis``, the other hosts);
        how many subscribers of this worker got it.  None, with nothing
        delivered anywhere, while Redis cannot be reached: the publisher is
        answered 503 and may retry."""
        if self.redis and not self.remote_up:
            return None
        delivered = self._deliver(channel, message)
        if self.bus is not None:
            self.bus.put(bus.encode(channel, message))
        return delivered

    def deliver_frame(self, frame: bytes) -> None:
        """A bus frame from the master: a message for this worker's subscribers
        (from another worker or another host), or word of the link to Redis."""
        kind = frame[bus.KIND_AT]
        if kind <= bus.BINARY:
            channel, message = bus.decode(frame)
            self._deliver(channel, message)
        elif kind == bus.REMOTE_UP:
            self.remote_up = True
        elif kind == bus.REMOTE_DOWN:
            self.remote_up = False

    def _channel_watched(self, name: str, held: bool) -> None:
        if self.bus is not None:
            self.bus.put(bus.control(bus.SUBSCRIBE if held else bus.UNSUBSCRIBE, name))

    def _deliver(self, channel: str, message: str | bytes) -> int:
        delivered, slow = self.channels.publish(channel, message)
        self.counters[DELIVERIES] += delivered
        if slow:
            self._close_slow(channel, slow)
        return delivered

    def _close_slow(self, channel: str, slow: list[Subscriber]) -> None:
        for session in slow:
            session.close(SLOW_CLOSE_CODE, SLOW_CLOSE_REASON)
        self.error_log.warn(
            f'closed {len(slow)} slow subscriber(s) of channel "{channel}" with {SLOW_CLOSE_CODE}: '
            f"push_queue ({slow[0].limit}) messages were waiting for each"
        )

    def push_addresses(self, server: Server) -> tuple[PushAddress, ...]:
        return self._push_addresses[id(server)]

    # -- logs ------------------------------------------------------------

    def open_access_logs(self) -> None:
        """Open every access log of the configuration now, as nginx opens its
        files before it serves (and before a worker gives up root)."""
        for settings in all_settings(self.config.http) if self.config.http else ():
            targets = settings.access_logs
            if targets and targets not in self._access_logs:
                self._access_logs[targets] = AccessLogger(targets, self._connection_counts)

    def log_access(self, exchange: Exchange, remote, local) -> None:
        targets = exchange.settings.access_logs
        if not targets:
            return
        logger = self._access_logs.get(targets)
        if logger is None:
            logger = self._access_logs[targets] = AccessLogger(targets, self._connection_counts)
        logger.log(exchange.entry(remote, local))

    def _connection_counts(self) -> tuple[int, int, int, int]:
        return connection_counts(self.region)

    # -- reports -----------------------------------------------------------

    def report(self, kind: str) -> tuple[int, bytes, bytes]:
        """What a stub_status, websocket_metrics or websocket_health location answers."""
        if kind == METRICS:
            return 200, self._exposition.content_type, self._exposition.render()
        state = host_state(self.region)
        if kind == STUB_STATUS:
            return 200, TEXT_PLAIN, stub_status(state.totals)
        healthy, text = health(state)
        return (200 if healthy else 503), TEXT_PLAIN, text

    def reopen_logs(self) -> None:
        self.error_log.reopen()
        for logger in self._access_logs.values():
            logger.reopen()
        self.error_log.notice("reopening logs")

    # -- running ---------------------------------------------------------

    async def run(self, sockets: list[socket.socket], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve on ``sockets`` until a shutdown signal; reports push ports via ``task_status``.

        Raises (before reporting) what keeps it from starting: a push port
        it cannot bind, a log it cannot open, a ``user`` it cannot become, a
        TLS file that no longer loads (``ConfigError``).
        """
        # Certificates and keys are read now, while the worker is still root
        # (as nginx's master reads them): a key may be readable by root only.
        self.tls = WorkerTls(self.config.http, self.router)
        listeners = [Listener(s) for s in sockets]
        for listener in listeners:
            listener.tls = self.tls.for_listen(_address(listener.socket.getsockname()))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1) as signals:
            push_listeners = self._open_push_listeners()
            self.open_access_logs()
            if self.user is not None:
                # Everything that needs root is done: as nginx's workers, for good.
                for problem in switch_user(self.user):
                    self.error_log.emerg(problem)
            async with trio.open_nursery() as connections:
                self.nursery = connections
                self.backend.start(connections)
                for server, listener in push_listeners:
                    connections.start_soon(self._accept_loop, listener, connections, server)
                connections.start_soon(self._accept_clients, listeners, connections)
                connections.start_soon(self.send_watch.run)
                task_status.started(self._push_addresses)
                await self._handle_signals(signals)
                await self.backend.drain()  # the disconnects of the sessions just closed
                connections.cancel_scope.cancel()
            await self.backend.aclose()

    async def _accept_clients(self, listeners: list[Listener], connections: trio.Nursery) -> None:
        with self.accept_scope:
            async with trio.open_nursery() as acceptors:
                for listener in listeners:
                    acceptors.start_soon(self._accept_loop, listener, connections, None)

    async def _handle_signals(self, signals) -> None:
        """Obey signals until the worker is done: at once after TERM/INT, once
        drained after QUIT.  A draining worker still reopens its logs and
        still stops fast on TERM (it may drain for as long as its sessions last)."""
        async with trio.open_nursery() as draining:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    self.reopen_logs()
                elif signum == signal.SIGQUIT:
                    if not self.draining:
                        self.error_log.notice("gracefully shutting down")
                        setproctitle.setproctitle(f"{setproctitle.getproctitle()} is shutting down")
                        self.accept_scope.cancel()
                        self.draining = True
                        draining.start_soon(self._graceful, draining.cancel_scope)
                else:
                    self.error_log.notice("exiting")
                    await self._close_sessions(FAST_SHUTDOWN)
                    break
            draining.cancel_scope.cancel()

    async def _graceful(self, done: trio.CancelScope) -> None:
        """Let the sessions end (or ``worker_shutdown_timeout`` pass), close
        what is left with 1001, then end the signal handling (``done``)."""
        if self.sessions:
            timeout = self.config.worker_shutdown_timeout
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                await self._drained.wait()
        await self._close_sessions(FAST_SHUTDOWN)
        done.cancel()

    async def _close_sessions(self, grace: float) -> None:
        self.accept_scope.cancel()
        self.draining = True
        for session in list(self.sessions):
            session.close(SHUTDOWN_CLOSE_CODE, SHUTDOWN_CLOSE_REASON)
        if self.sessions:
            with trio.move_on_after(grace):
                await self._drained.wait()

    async def _accept_loop(self, listener: Listener, nursery: trio.Nursery, server) -> None:
        tls = listener.tls
        try:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as err:
                    if err.errno not in RESOURCE_ERRNOS:
                        raise
                    self.error_log.crit(f"accept() failed ({err.errno}: {os.strerror(err.errno)})")
                    await trio.sleep(ACCEPT_RETRY)
                    continue
                self.counters[ACCEPTED] += 1
                if self.active >= self.config.worker_connections:
                    self.error_log.alert(f"{self.config.worker_connections} worker_connections are not enough")
                    stream.close()
                    continue
                self.counters[HANDLED] += 1
                nursery.start_soon(self._serve, stream, server, tls)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()

    async def _serve(self, stream: SocketStream, server: Server | None, tls: ListenTls | PushTls | None) -> None:
        self.active += 1
        conn = next(self._conn_ids)
        try:
            local = _address(stream.socket.getsockname())
            remote = _address(stream.socket.getpeername())
        except OSError:
            self.active -= 1
            stream.close()
            return
        try:
            if tls is not None:
                await self._serve_tls(stream, server, tls, local, remote, conn)
            elif server is None:
                await FrontDoor(self, stream, local, remote, conn).serve()
            else:
                await PushConnection(self, stream, local, remote, conn, server).serve()
        except Exception as err:
            # One connection's failure must never take the worker and every
            # other client down with it: log it, drop that connection.
            self.error_log.alert(f"unexpected error, closing connection: {_describe(err)}", conn=conn)
            stream.close()
        finally:
            self.active -= 1

    async def _serve_tls(self, stream: SocketStream, server: Server | None, tls: ListenTls | PushTls,
                         local, remote, conn: int) -> None:
        """A connection to a TLS port: the handshake, which must end within
        ``client_header_timeout`` (nginx's bound), then the front door or the
        push listener over TLS.  A handshake that fails or times out is
        logged at info and the connection closed."""
        if server is None:
            settings = tls.group.default_server.settings
            deadline = trio.current_time() + settings.client_header_timeout
            first = None
            with trio.move_on_at(deadline):
                first = await first_byte(stream)
            if first == b"":
                self.error_log.info(f"client closed connection while SSL handshaking, {describe(local, remote)}",
                                    conn=conn)
                stream.close()
                return
            if first is not None and not looks_like_tls(first):
                await PlainHttpOnTlsPort(self, stream, local, remote, conn).serve()
                return
            secure: TlsStream | trio.SSLStream = TlsStream(stream, tls.context)
            handshake = secure.handshake
        else:
            settings = server.settings
            deadline = trio.current_time() + settings.client_header_timeout
            secure = trio.SSLStream(stream, tls.context, server_side=True, https_compatible=True)
            handshake = secure.do_handshake
        try:
            with trio.fail_at(deadline):
                await handshake()
        except trio.TooSlowError:
            self.error_log.info(f"client timed out while SSL handshaking, {describe(local, remote)}", conn=conn)
            stream.close()
            return
        except (ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError) as err:
            self.error_log.info(f"{handshake_failure(err)} while SSL handshaking, {describe(local, remote)}",
                                conn=conn)
            stream.close()
            return
        if server is None:
            await FrontDoor(self, secure, local, remote, conn, TlsExchange).serve()
        else:
            await PushConnection(self, secure, local, remote, conn, server, TlsExchange).serve()

    def _open_push_listeners(self) -> list[tuple[Server, Listener]]:
        """Bind one push listener per server with a websocket location."""
        opened: list[tuple[Server, Listener]] = []
        for server in self.config.http.servers if self.config.http else ():
            found = next(websocket_locations(server.locations), None)
            if found is None:
                continue
            settings = found.websocket
            push_listen = settings.push_listen
            # host as written -> (the addresses conf.load resolved it to, ipv6only); a push
            # listener on a listen's address takes its ipv6only (a dual-stack listen
            # gets a dual-stack push listener, and an IPv4-mapped address binds at all)
            hosts: dict[str, tuple[tuple[str, ...], bool]]
            if push_listen is not None and push_listen.host:
                hosts = {push_listen.host: (push_listen.addresses, True)}
            else:
                hosts = {l.host: (l.addresses, l.ipv6only) for l in server.listens if l.host}
                hosts = hosts or {"127.0.0.1": (("127.0.0.1",), True)}
            port = push_listen.port + self.index if push_listen is not None and push_listen.port else 0
            advertised: list[PushAddress] = []
            push_tls = self.tls.for_push(server) if settings.push_ssl else None
            scheme = "https" if push_tls is not None else "http"
            for host, (addresses, ipv6only) in hosts.items():
                for sock in _bind_push(host, addresses, port, ipv6only):
                    listener = Listener(sock)
                    listener.tls = push_tls
                    bound_host, bound_port = listener.socket.getsockname()[:2]
                    port = port or bound_port
                    opened.append((server, listener))
                    if settings.push_host:
                        continue
                    if bound_host in WILDCARDS:
                        family = socket.AF_INET6 if ":" in bound_host else socket.AF_INET
                        names = host_addresses(family) or [("::1" if ":" in bound_host else "127.0.0.1")]
                    else:
                        names = [bound_host]
                    advertised.extend(PushAddress(name, bound_port, scheme) for name in names)
            if settings.push_host:
                advertised = [PushAddress(name, port, scheme) for name in settings.push_host]
            self._push_addresses[id(server)] = tuple(dict.fromkeys(advertised))
        return opened


def _proxies(locations: tuple[Location, ...]) -> bool:
    """Whether a location here or nested has ``proxy_pass``."""
    return any(location.proxy is not None or _proxies(location.locations) for location in locations)


class PushBindError(NginxwsError):
    """A push listener could not be bound: the worker cannot start."""


def _bind_push(host: str, addresses: tuple[str, ...], port: int, ipv6only: bool = True) -> list[socket.socket]:
    """A push listener's socket on each address of ``host`` this system supports.

    As trio's ``open_tcp_listeners`` did for a host name: an address whose
    family the system lacks is skipped while another one binds.
    """
    sockets: list[socket.socket] = []
    unsupported: OSError | None = None
    try:
        for address in addresses:
            try:
                sockets.append(bind_tcp(address, port, backlog=PUSH_BACKLOG, ipv6only=ipv6only))
            except OSError as err:
                if err.errno != errno.EAFNOSUPPORT:
                    raise
                unsupported = err
        if unsupported is not None and not sockets:
            raise unsupported
    except OSError as err:
        for sock in sockets:
            sock.close()
        reason = f"{err.errno}: {os.strerror(err.errno or 0)}"
        shown = f"[{host}]" if ":" in host else host
        raise PushBindError(f"bind() to {shown}:{port} failed ({reason})") from None
    return sockets


def _describe(err: BaseException) -> str:
    """One line naming an unexpected error; for a group, the errors inside it."""
    if isinstance(err, BaseExceptionGroup):
        return " | ".join(_describe(inner) for inner in err.exceptions)
    return " ".join(traceback.format_exception_only(err)).strip()


def _address(sockname) -> tuple[str, int] | str:
    if isinstance(sockname, tuple):
        return (sockname[0], sockname[1])
    return sockname if isinstance(sockname, str) else sockname.decode()
