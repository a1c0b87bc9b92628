"""A worker process: what the master starts as ``python -m nginxws.worker_process``.

Hand-off between master and worker
----------------------------------
* The master opens the ``listen`` sockets and passes them with ``pass_fds``,
  so they keep their descriptor numbers, and the host's statistics region
  (``nginxws.stats``) the same way; every other descriptor of the master is
  closed in the child.
* The child's stdin is one end of a socket pair.  The master writes a
  pickled :class:`Order` (the configuration, the worker's slot and the
  descriptor numbers of its listen sockets), preceded by its length.
* Once the worker listens for pushes, the child writes one line back,
  ``ready`` followed by its push addresses as JSON.  The channel then
  carries the bus (``nginxws.bus``: channel messages between workers,
  through the master) and stays open as a lifeline: when the master dies,
  its end closes and the worker shuts down gracefully instead of living on
  as an orphan holding the ports.  A worker that cannot start (its push port cannot be bound, its
  log cannot be opened, it cannot become its ``user``) logs the ``[emerg]`` line and exits with status
  ``FATAL_EXIT`` (2), which the master never respawns, as nginx's.
* The worker's shutdown signals are blocked from the first line of
  ``main`` until the worker's own signal handlers are in place, so a signal
  the master sends early is delivered, not lost or fatal.  HUP is ignored:
  only the master reloads.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the heavy imports wait until the signals are blocked
    from nginxws.conf.model import Config
    from nginxws.log import ErrorLogger
    from nginxws.worker import Worker

WORKER_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1})
FATAL_EXIT = 2  # nginx's NGX_FATAL exit: "cannot be respawned"
READY = b"ready "
ORDER_LENGTH = 8  # bytes of the order's length prefix
TITLE = "nginxws: worker process"


@dataclass(frozen=True, slots=True)
class Order:
    """What the master tells a new worker: its configuration, slot and sockets."""

    config: Config
    slot: int  # the worker's number; a fixed push port P gives this worker P + slot
    fds: tuple[int, ...]  # the listen sockets, as numbered in the worker
    stats_fd: int  # the host's statistics region (``nginxws.stats``), mapped then closed


def main() -> int:
    """Run one worker from the order on stdin; the process's exit status."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    # Outside the worker's own handlers (before they are in place, and while
    # the worker exits) every signal is ignored: a terminal's Ctrl-C reaches
    # every process of the group, and the master's TERM then comes second;
    # neither may kill a worker that is already shutting down.
    for signum in (signal.SIGHUP, *WORKER_SIGNALS):
        signal.signal(signum, signal.SIG_IGN)
    order: Order = pickle.loads(_read_order())

    import setproctitle
    import trio

    from nginxws.bus import Outbox
    from nginxws.log import ErrorLogger, LogOpenError
    from nginxws.stats import Region
    from nginxws.worker import Worker

    setproctitle.setproctitle(TITLE)
    region = Region.attach(order.stats_fd)
    try:
        error_log = ErrorLogger(order.config.error_logs)
    except LogOpenError as err:
        sys.stderr.write(f"nginxws: {err}\n")
        return FATAL_EXIT
    sockets = [socket.socket(fileno=fd) for fd in order.fds]
    try:
        set_rlimit_nofile(order.config.worker_rlimit_nofile, error_log)
        worker = Worker(order.config, order.slot, error_log, region, user=order.config.user)
        worker.bus = Outbox(lambda: error_log.alert(
            "the master process does not read the channel: messages for the other workers are dropped"))
        status = trio.run(_serve, worker, sockets)
    finally:
        for sock in sockets:
            sock.close()
        error_log.notice("exit")
        error_log.close()
    return status


async def _serve(worker: Worker, sockets: list[socket.socket]) -> int:
    """Serve until shutdown: 0, or ``FATAL_EXIT`` when the worker cannot start."""
    import trio

    from nginxws.errors import NginxwsError

    async with trio.open_nursery() as nursery:
        try:
            push_addresses = await nursery.start(_run_worker, worker, sockets, nursery.cancel_scope)
        except NginxwsError as err:  # a push port, an access log, the user, a TLS file it cannot have
            worker.error_log.log(err.level, err.text)
            return FATAL_EXIT
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
        _report_ready([a.netloc for addresses in push_addresses.values() for a in addresses])
        nursery.start_soon(_talk_to_master, worker)
    return 0


async def _run_worker(worker: Worker, sockets, watching, *, task_status) -> None:
    """The worker itself; when it is done, so is the watch on the master."""
    try:
        await worker.run(sockets, task_status=task_status)
    finally:
        watching.cancel()


async def _talk_to_master(worker: Worker) -> None:
    """The channel to the master after ``ready``: the bus (``nginxws.bus``)
    both ways, and the lifeline: when the master dies (its end closes), shut
    down gracefully.

    nginx's workers outlive a killed master and keep its ports; ours drain
    their clients and exit, so a new master can take over cleanly.
    """
    import trio

    from nginxws import bus

    stream = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=os.dup(0))))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.bus.run, stream)
            await bus.receive(stream, worker.deliver_frame)
            nursery.cancel_scope.cancel()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        stream.socket.close()
    worker.error_log.alert("master process is gone, gracefully shutting down")
    os.kill(os.getpid(), signal.SIGQUIT)


def frame_order(order: Order) -> bytes:
    """The order as the master sends it: its length (8 bytes, big-endian), then the pickle."""
    data = pickle.dumps(order)
    return len(data).to_bytes(ORDER_LENGTH, "big") + data


def _read_order() -> bytes:
    """Read one framed order from the channel (the master keeps its end open)."""
    data = b""
    size = None
    while size is None or len(data) < size:
        chunk = os.read(0, 65536)
        if not chunk:
            raise SystemExit(FATAL_EXIT)  # the master died before the order was complete
        data += chunk
        if size is None and len(data) >= ORDER_LENGTH:
            size = ORDER_LENGTH + int.from_bytes(data[:ORDER_LENGTH], "big")
    return data[ORDER_LENGTH:]


def _report_ready(push_addresses: list[str]) -> None:
    """Tell the master this worker serves; the channel stays open as a lifeline."""
    try:
        os.write(0, READY + json.dumps(push_addresses).encode() + b"\n")
    except OSError:
        pass  # the master is gone: _talk_to_master sees it


def set_rlimit_nofile(limit: int | None, error_log: ErrorLogger) -> None:
    """``worker_rlimit_nofile``: both limits, as nginx sets them; failure is an alert.

    With ``master_process off`` nginx leaves it unapplied (only its workers
    set it); nginxws applies it to the single process too, so a
    ``worker_connections`` that needs it works the same in both modes.
    """
    if limit is None:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError) as err:
        # Python reports a refused raise of the hard limit as ValueError.
        code = getattr(err, "errno", None) or errno.EPERM
        error_log.alert(f"setrlimit(RLIMIT_NOFILE, {limit}) failed ({code}: {os.strerror(code)})")


if __name__ == "__main__":
    sys.exit(main())
