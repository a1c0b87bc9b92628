"""Running the configuration: the process that owns sockets, pid file and exit code.

Theory of operation
-------------------
* ``master_process on`` (the default): the master opens every ``listen``
  socket once, writes the pid file and starts ``worker_processes`` workers
  as child processes (``python -m nginxws.worker_process``), each handed the open
  sockets.  The master never accepts a client or a push: clients and pushers
  talk to workers only, and each worker owns its own push ports.
* Each worker has a *slot*, a small number; a fixed ``push_listen`` port P
  gives the worker in slot *s* the port P + *s*.  A new worker takes the
  lowest slot no live worker holds, so a draining generation keeps its
  ports while the next one starts.
* A worker that exits without being told to is logged as nginx logs it and
  restarted in its slot with its configuration.  A worker that cannot start
  (exit status 2, or no ``ready`` within ``WORKER_START_TIMEOUT``) is never
  restarted, so a broken worker does not loop; if that happens at start,
  the master stops and exits 1.
* Reload (HUP) is a new *generation*: the configuration is loaded again
  with the same path, prefix and ``-g`` directives; if it is invalid, or a
  new listen address cannot be bound, or a new worker cannot start, the
  running generation is left untouched.  Otherwise every new worker reports
  ready first, and only then does the old generation get QUIT: it stops
  accepting and drains, its clients still connected and pushable.
* Listen sockets are kept by their listen key across reloads, and closed
  when no live worker's configuration names them.  A ``reuseport`` listen
  has one socket per worker slot, so the kernel spreads connections over
  the workers; a slot's socket is closed as soon as no live worker holds
  the slot, since the kernel would keep queueing connections on it.
* Every child is waited for (no zombies) and the master holds only the
  descriptors it needs: listen sockets, its logs, one channel per worker
  (its lifeline: a worker whose master dies shuts down gracefully).
* The channels also carry the host's bus (``nginxws.bus``): what is
  published on one worker, the master relays to every other ready worker,
  of every generation, in the order it was published.  The master reads no
  message; it splits frames and queues them per worker.
* With ``websocket_redis`` the master also holds the host's link to Redis
  (``nginxws.redislink``, rules in ``nginxws.hosts``): it publishes each
  message of its workers there as well, relays what other hosts publish to
  the workers that hold the channel, counts which worker holds which
  channel (draining ones included, a worker that exits dropped) to
  subscribe to just those, and tells every worker whether Redis can be
  reached.  Without it no Redis module is imported and the bus is as
  above.
* ``master_process off``: the same process opens the sockets and runs one
  worker in itself; HUP is logged and ignored, since reloading needs a
  master.
* ``daemon on``: the process forks into the background once the sockets
  are open (errors until then reach the terminal), the daemon writes the pid
  file and detaches its stdio, and the command returns 0 only when the
  daemon reports that its workers serve (1 otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field

import setproctitle
import trio

import nginxws
from nginxws import bus, conf, hosts
from nginxws.conf.model import Config, Listen, log_paths
from nginxws.errors import NginxwsError
from nginxws.log import ErrorLogger, LogOpenError
from nginxws.pidfile import PidFileError, remove_pid, write_pid
from nginxws.privileges import give_files
from nginxws.listen_sockets import BindError, distinct_listens, open_listen
from nginxws.worker import FAST_SHUTDOWN, Worker
from nginxws.worker_process import FATAL_EXIT, READY, Order, frame_order, set_rlimit_nofile

MASTER_TITLE = "nginxws: master process"
SINGLE_TITLE = "nginxws: single worker process"
WORKER_START_TIMEOUT = 10.0  # seconds a new worker has to report ready
TERMINATE_TIMEOUT = FAST_SHUTDOWN + 2.0  # seconds after TERM before the master sends KILL
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1)
ACTIONS = {
    signal.SIGTERM: "exiting",
    signal.SIGINT: "exiting",
    signal.SIGQUIT: "shutting down",
    signal.SIGHUP: "reconfiguring",
    signal.SIGUSR1: "reopening logs",
}
WORKER_COMMAND = (sys.executable, "-P", "-m", "nginxws.worker_process")
# The worker imports the very nginxws this master runs, wherever it lives.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nginxws.__file__)))

Listening = dict[tuple, list[socket.socket]]


def run(config: Config, *, error_log: ErrorLogger, directives: str | None = None) -> int:
    """Serve ``config`` until a shutdown signal; return the exit status.

    ``directives`` are the ``-g`` directives, loaded again on reload along
    with ``config.path`` and ``config.prefix``.
    """
    try:
        listening = open_listening(config, {})
    except BindError as err:
        error_log.log(err.level, err.text)
        return 1
    try:
        ready_fd = None
        if config.daemon:
            status, ready_fd = _daemonize()
            if status is not None:
                return status
        try:
            write_pid(config.pid, os.getpid())
        except PidFileError as err:
            error_log.log(err.level, err.text)
            return 1
        try:
            if config.daemon:
                _detach_stdio()
            report = _Report(ready_fd)
            if config.master_process:
                setproctitle.setproctitle(f"{MASTER_TITLE} {' '.join(sys.argv)}")
                master = Master(config, listening, error_log, directives, report)
                status = trio.run(master.serve)
                error_log = master.error_log
                return status
            setproctitle.setproctitle(SINGLE_TITLE)
            return trio.run(_serve_single, config, listening, error_log, report)
        finally:
            _remove_pid(config.pid, error_log)
            error_log.notice("exit")
    finally:
        for sockets in listening.values():
            for sock in sockets:
                sock.close()


def listening_key(listen: Listen, slot: int) -> tuple:
    """Where ``Listening`` keeps the sockets of ``listen`` for the worker in ``slot``.

    A ``reuseport`` listen has a socket of its own per worker slot (the
    kernel spreads new connections over them, as nginx does); any other
    listen is one socket shared by every worker.
    """
    return (listen.key, slot) if listen.reuseport else listen.key


def open_listening(config: Config, listening: Listening) -> Listening:
    """The listen sockets of ``config``: those already in ``listening`` kept, the rest opened.

    A ``reuseport`` listen is opened for slot 0 here (which checks that it
    can be bound at all); the other slots' sockets are opened as their
    workers start.  Raises BindError after closing whatever it opened.
    """
    result: Listening = {}
    try:
        for listen in distinct_listens(config):
            key = listening_key(listen, 0)
            result[key] = listening.get(key) or open_listen(listen)
    except BindError:
        for key, sockets in result.items():
            if key not in listening:
                for sock in sockets:
                    sock.close()
        raise
    return result


# -- daemon on ---------------------------------------------------------------


@dataclass
class _Report:
    """The daemon's word to the command that started it: ready, or nothing (failed)."""

    fd: int | None

    def ready(self) -> None:
        if self.fd is not None:
            os.write(self.fd, b"ready")
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _daemonize() -> tuple[int | None, int | None]:
    """Fork into the background (fork, setsid, fork).

    Returns ``(status, None)`` in the starting process, once the daemon has
    reported: 0 if it serves, 1 if it failed; ``(None, fd)`` in the daemon,
    with ``fd`` the pipe on which it reports.
    """
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle:
        os.close(write_end)
        os.waitpid(middle, 0)
        with os.fdopen(read_end, "rb") as pipe:
            return (0 if pipe.read() == b"ready" else 1), None
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    return None, write_end


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _remove_pid(path: str, error_log: ErrorLogger) -> None:
    try:
        remove_pid(path)
    except PidFileError as err:
        error_log.log(err.level, err.text)


# -- master_process off -------------------------------------------------------


async def _serve_single(config: Config, listening: Listening, error_log: ErrorLogger, report: _Report) -> int:
    """One worker in this process; HUP is logged and ignored."""
    sockets = [sock for sockets in listening.values() for sock in sockets]
    set_rlimit_nofile(config.worker_rlimit_nofile, error_log)
    worker = Worker(config, 0, error_log)
    with trio.open_signal_receiver(signal.SIGHUP) as hangups:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(_run_worker, worker, sockets, nursery.cancel_scope)
            except NginxwsError as err:  # a push port or an access log it cannot have
                error_log.log(err.level, err.text)
                report.close()
                return 1
            report.ready()
            nursery.start_soon(_ignore_reload, hangups, error_log)
    return 0


async def _run_worker(
    worker: Worker, sockets: list[socket.socket], done: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Run ``worker`` to its end, then cancel ``done`` (what ran beside it)."""
    await worker.run(sockets, task_status=task_status)
    done.cancel()


async def _ignore_reload(hangups, error_log: ErrorLogger) -> None:
    async for signum in hangups:
        error_log.notice(f"signal {signum} ({signal.Signals(signum).name}) received, ignoring")
        error_log.notice('reconfiguring needs "master_process on"')


# -- master_process on ---------------------------------------------------------


@dataclass(eq=False)
class WorkerProcess:
    """One worker child as the master sees it."""

    process: trio.Process
    slot: int
    config: Config
    channel: trio.SocketStream
    ready: bool = False
    stopping: bool = False  # told to stop: never restarted
    push: list[str] = field(default_factory=list)
    outbox: bus.Outbox | None = None  # bus frames for it, once it is ready

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)


class Master:
    """The supervising process: workers, signals, reload; ``serve`` runs it."""

    def __init__(
        self,
        config: Config,
        listening: Listening,
        error_log: ErrorLogger,
        directives: str | None,
        report: _Report,
    ) -> None:
        self.config = config
        self.listening = listening
        self.error_log = error_log
        self.directives = directives
        self.report = report
        self.workers: dict[int, WorkerProcess] = {}
        self.exiting = False
        self.terminating = False
        self._nursery: trio.Nursery | None = None
        self._done: trio.Event | None = None
        # The bus between hosts (websocket_redis): the link, its cancel
        # scope, and the channels the workers hold.
        self.host_id = hosts.new_host_id()
        self.interest = hosts.Interest()
        self.link = None  # redislink.RedisLink while websocket_redis is configured
        self._link_scope: trio.CancelScope | None = None

    async def serve(self) -> int:
        """Start the workers and supervise them until shutdown; the exit status."""
        self._done = trio.Event()
        started = False
        with trio.open_signal_receiver(*MASTER_SIGNALS) as signals:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    self.error_log.notice(f"{nginxws.NAME}/{nginxws.__version__}")
                    self._follow_redis(self.config)
                    self.error_log.notice("start worker processes")
                    started = await self._start_generation(self.config)
                    if started:
                        self.report.ready()
                        nursery.start_soon(self._handle_signals, signals)
                    else:
                        self._shutdown(signal.SIGTERM)
                    await self._done.wait()
                    nursery.cancel_scope.cancel()
                finally:
                    self.report.close()
                    with trio.CancelScope(shield=True):
                        await self._reap_all()
                    self.exiting = True
                    self._close_unused_listening()
        return 0 if started else 1

    # -- signals -------------------------------------------------------------

    async def _handle_signals(self, signals) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            self.error_log.notice(f"signal {signum} ({name}) received, {ACTIONS[signum]}")
            if signum == signal.SIGHUP:
                if not self.exiting:
                    await self._reload()
            elif signum == signal.SIGUSR1:
                self._reopen_logs()
            else:
                self._shutdown(signum)

    def _shutdown(self, signum: int) -> None:
        """QUIT: workers drain, then the master exits; TERM/INT: fast, KILL after a bound."""
        graceful = signum == signal.SIGQUIT
        if self.terminating or (self.exiting and graceful):
            return
        self.exiting = True
        self.terminating = not graceful
        for worker in self.workers.values():
            worker.stopping = True
            worker.signal(signal.SIGQUIT if graceful else signal.SIGTERM)
        self._close_unused_listening()
        if not graceful:
            self._nursery.start_soon(self._kill_after, TERMINATE_TIMEOUT)
        self._check_done()

    async def _kill_after(self, delay: float) -> None:
        await trio.sleep(delay)
        for worker in list(self.workers.values()):
            worker.signal(signal.SIGKILL)

    def _reopen_logs(self) -> None:
        self.error_log.notice("reopening logs")
        if os.geteuid() == 0:
            # Workers that gave up root open their new files only if the files are theirs.
            configs = {id(c): c for c in [self.config] + [w.config for w in self.workers.values()]}
            for config in configs.values():
                if config.user is not None:
                    for message in give_files(log_paths(config), config.user):
                        self.error_log.emerg(message)
        for message in self.error_log.reopen():
            self.error_log.emerg(message)
        for worker in self.workers.values():
            worker.signal(signal.SIGUSR1)

    # -- reload ----------------------------------------------------------------

    async def _reload(self) -> None:
        """HUP: a new generation on the reloaded configuration, or nothing changes."""
        self.error_log.notice("reconfiguring")
        try:
            config = conf.load(self.config.path, prefix=self.config.prefix, directives=self.directives)
            error_log = ErrorLogger(config.error_logs)
        except conf.ConfigError as err:
            self.error_log.log(err.level, err.text)
            return
        except LogOpenError as err:
            self.error_log.log(err.level, err.text)
            return
        for warning in config.warnings:
            self.error_log.log(warning.level, warning.text)
        try:
            self.listening = open_listening(config, self.listening) | self.listening
        except BindError as err:
            self.error_log.log(err.level, err.text)
            error_log.close()
            return
        old = [worker for worker in self.workers.values() if not worker.stopping]
        self.error_log.notice("start worker processes")
        if not await self._start_generation(config):
            self.error_log.alert("new worker processes could not start, the old ones keep running")
            error_log.close()
            self._close_unused_listening()
            return
        self.config = config
        self.error_log.close()
        self.error_log = error_log
        if self.link is not None:
            self.link.error_log = error_log
        self._follow_redis(config)
        for worker in old:
            worker.stopping = True
            worker.signal(signal.SIGQUIT)
        self._close_unused_listening()

    # -- workers -------------------------------------------------------------

    async def _start_generation(self, config: Config) -> bool:
        """Start ``worker_processes`` workers on ``config``; True once every one is ready.

        If any cannot start, the others of this generation are stopped.
        """
        taken = {worker.slot for worker in self.workers.values()}
        slots = [slot for slot in range(len(taken) + config.worker_processes) if slot not in taken]
        started = []
        for slot in slots[: config.worker_processes]:
            worker = await self._spawn(config, slot)
            if worker is None:
                break
            started.append(worker)
        async with trio.open_nursery() as nursery:
            for worker in started:
                nursery.start_soon(self._await_ready, worker)
        if len(started) == config.worker_processes and all(worker.ready for worker in started):
            return True
        for worker in started:
            worker.stopping = True
            worker.signal(signal.SIGTERM if worker.ready else signal.SIGKILL)
        return False

    async def _spawn(self, config: Config, slot: int) -> WorkerProcess | None:
        """Start a worker in ``slot`` and send it its order; None (logged) if the OS refuses."""
        try:
            sockets = self._sockets_for(config, slot)
        except BindError as err:
            self.error_log.log(err.level, err.text)
            return None
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (PACKAGE_ROOT, env.get("PYTHONPATH"))))
        try:
            process = await trio.lowlevel.open_process(
                WORKER_COMMAND, stdin=theirs.fileno(), pass_fds=[sock.fileno() for sock in sockets], env=env
            )
        except OSError as err:
            ours.close()
            self.error_log.alert(f'fork() failed while spawning "worker process" ({err.errno}: {err.strerror})')
            return None
        finally:
            theirs.close()
        self.error_log.notice(f"start worker process {process.pid}")
        worker = WorkerProcess(process, slot, config, trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
        self.workers[worker.pid] = worker
        self._nursery.start_soon(self._supervise, worker)
        order = Order(config, slot, tuple(sock.fileno() for sock in sockets))
        try:
            await worker.channel.send_all(frame_order(order))
        except trio.BrokenResourceError:
            pass  # it died already; _await_ready sees the end of the channel
        return worker

    def _sockets_for(self, config: Config, slot: int) -> list[socket.socket]:
        """The listen sockets of the worker in ``slot`` (a reuseport socket opened if new)."""
        sockets = []
        for listen in distinct_listens(config):
            key = listening_key(listen, slot)
            if key not in self.listening:
                self.listening[key] = open_listen(listen)
            sockets.extend(self.listening[key])
        return sockets

    async def _await_ready(self, worker: WorkerProcess) -> None:
        """Read the worker's ``ready`` line (or the end of its channel, or time
        out); once ready, the channel carries the bus (``_relay``)."""
        line = b""
        with trio.move_on_after(WORKER_START_TIMEOUT):
            while b"\n" not in line:
                try:
                    chunk = await worker.channel.receive_some()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break  # the worker is gone (_supervise may have closed the channel)
                if not chunk:
                    break
                line += chunk
        line, newline, rest = line.partition(b"\n")
        if line.startswith(READY) and newline:
            worker.ready = True
            worker.push = json.loads(line[len(READY):])
            if worker.push:
                self.error_log.notice(f"worker process {worker.pid} accepts pushes on {', '.join(worker.push)}")
            worker.outbox = bus.Outbox(lambda: self.error_log.alert(
                f"worker process {worker.pid} does not read its channel: channel messages for it are dropped"))
            if self.link is not None:
                worker.outbox.put(bus.control(bus.REMOTE_UP if self.link.up else bus.REMOTE_DOWN))
            self._nursery.start_soon(self._relay, worker, rest)

    async def _relay(self, worker: WorkerProcess, initial: bytes) -> None:
        """The bus through the master: each frame ``worker`` publishes goes to
        every other ready worker, draining ones included; what the others
        publish goes to ``worker``.  Ends with the channel."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_bus, worker)
            try:
                await bus.receive(worker.channel, lambda frame: self._forward(worker, frame), initial)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()

    async def _write_bus(self, worker: WorkerProcess) -> None:
        try:
            await worker.outbox.run(worker.channel)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _forward(self, source: WorkerProcess, frame: bytes) -> None:
        if frame[bus.KIND_AT] > bus.BINARY:
            self._interest_changed(source, frame)
            return
        for worker in self.workers.values():
            if worker is not source and worker.outbox is not None:
                worker.outbox.put(frame)
        if self.link is not None:
            self.link.publish(frame)

    # -- the bus between hosts (websocket_redis) --------------------------------

    def _follow_redis(self, config: Config) -> None:
        """Open, reopen or close the link to Redis as ``config`` names it."""
        wanted = config.http.redis if config.http is not None else None
        current = self.link.settings if self.link is not None else None
        if wanted == current:
            return
        if self._link_scope is not None:
            self._link_scope.cancel()
            self._link_scope = None
            self._link_state(False)
            self.link = None
        if wanted is not None:
            from nginxws.redislink import RedisLink  # only a host with websocket_redis loads coredis

            self.link = RedisLink(wanted, self.host_id, self.interest, self.error_log,
                                  self._link_state, self._from_other_hosts)
            self._link_scope = trio.CancelScope()
            self._nursery.start_soon(self._run_link, self.link, self._link_scope)

    @staticmethod
    async def _run_link(link, scope: trio.CancelScope) -> None:
        with scope:
            await link.run()

    def _link_state(self, up: bool) -> None:
        frame = bus.control(bus.REMOTE_UP if up else bus.REMOTE_DOWN)
        for worker in self.workers.values():
            if worker.outbox is not None:
                worker.outbox.put(frame)

    def _from_other_hosts(self, frame: bytes) -> None:
        """A message another host published: to this host's workers that hold the channel."""
        for pid in self.interest.holders(bus.channel(frame)):
            worker = self.workers.get(pid)
            if worker is not None and worker.outbox is not None:
                worker.outbox.put(frame)

    def _interest_changed(self, source: WorkerProcess, frame: bytes) -> None:
        name = bus.channel(frame)
        if frame[bus.KIND_AT] == bus.SUBSCRIBE:
            if self.interest.join(source.pid, name) and self.link is not None:
                self.link.subscribe(name)
        elif self.interest.leave(source.pid, name) and self.link is not None:
            self.link.unsubscribe(name)

    async def _supervise(self, worker: WorkerProcess) -> None:
        """Wait for the worker to exit (reaping it), log it, restart it if it died."""
        status = await worker.process.wait()
        await worker.channel.aclose()
        self._forget(worker)
        if status < 0:
            self.error_log.alert(f"worker process {worker.pid} exited on signal {-status}")
        else:
            self.error_log.notice(f"worker process {worker.pid} exited with code {status}")
        if status == FATAL_EXIT:
            self.error_log.alert(
                f"worker process {worker.pid} exited with fatal code {status} and cannot be respawned"
            )
        elif worker.ready and not worker.stopping and not self.exiting:
            replacement = await self._spawn(worker.config, worker.slot)
            if replacement is not None:
                await self._await_ready(replacement)
            if replacement is not None and not replacement.ready:
                replacement.stopping = True
                replacement.signal(signal.SIGKILL)
        self._close_unused_listening()
        self._check_done()

    def _forget(self, worker: WorkerProcess) -> None:
        """``worker`` has exited: it gets nothing more, and the host no longer holds its channels."""
        del self.workers[worker.pid]
        for name in self.interest.drop(worker.pid):
            if self.link is not None:
                self.link.unsubscribe(name)

    def _check_done(self) -> None:
        if self.exiting and not self.workers:
            self._done.set()

    def _close_unused_listening(self) -> None:
        """Close the listen sockets no live worker's configuration names (all of them when exiting).

        Workers hold their own copies: closing the master's never stops one
        from accepting.
        """
        used = set()
        if not self.exiting:
            # A reuseport socket no worker accepts on would still get its share
            # of new connections from the kernel: only live slots keep theirs.
            # A draining worker has stopped accepting: its slot is free too.
            holders = [(self.config, None)]
            holders += [(w.config, None if w.stopping else w.slot) for w in self.workers.values()]
            for config, slot in holders:
                for listen in distinct_listens(config):
                    if not listen.reuseport:
                        used.add(listen.key)
                    elif slot is not None:
                        used.add(listening_key(listen, slot))
        for key in [key for key in self.listening if key not in used]:
            for sock in self.listening.pop(key):
                sock.close()

    async def _reap_all(self) -> None:
        """Leave no child behind, whatever ended ``serve``."""
        for worker in list(self.workers.values()):
            worker.signal(signal.SIGKILL)
            await worker.process.wait()
            await worker.channel.aclose()

