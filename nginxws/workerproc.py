"""A worker process: what the master starts as ``python -m nginxws.workerproc``.

Hand-off between master and worker
----------------------------------
* The master opens the ``listen`` sockets and passes them with ``pass_fds``,
  so they keep their descriptor numbers; every other descriptor of the
  master is closed in the child.
* The child's stdin is one end of a socket pair.  The master writes a
  pickled :class:`Order` (the configuration, the worker's slot and the
  descriptor numbers of its listen sockets) and shuts its side for writing.
* Once the worker listens for pushes, the child writes one line back,
  ``ready`` followed by its push addresses as JSON, and stdin becomes
  /dev/null.  A worker that cannot start (its push port cannot be bound, its
  log cannot be opened) logs the ``[emerg]`` line and exits with status
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
TITLE = "nginxws: worker process"


@dataclass(frozen=True, slots=True)
class Order:
    """What the master tells a new worker: its configuration, slot and sockets."""

    config: Config
    slot: int  # the worker's number; a fixed push port P gives this worker P + slot
    fds: tuple[int, ...]  # the listen sockets, as numbered in the worker


def main() -> int:
    """Run one worker from the order on stdin; the process's exit status."""
    signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Outside the worker's own handlers an INT (a terminal's Ctrl-C reaches
    # every process) must not raise KeyboardInterrupt; the master stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    order: Order = pickle.loads(_read_order())

    import setproctitle
    import trio

    from nginxws.log import ErrorLogger, LogOpenError
    from nginxws.worker import Worker

    setproctitle.setproctitle(TITLE)
    try:
        error_log = ErrorLogger(order.config.error_logs)
    except LogOpenError as err:
        sys.stderr.write(f"nginxws: [emerg] {err}\n")
        return FATAL_EXIT
    sockets = [socket.socket(fileno=fd) for fd in order.fds]
    try:
        _set_rlimit_nofile(order.config.worker_rlimit_nofile, error_log)
        status = trio.run(_serve, Worker(order.config, order.slot, error_log), sockets)
    finally:
        for sock in sockets:
            sock.close()
        error_log.notice("exit")
        error_log.close()
    return status


async def _serve(worker: Worker, sockets: list[socket.socket]) -> int:
    """Serve until shutdown: 0, or ``FATAL_EXIT`` when the worker cannot start."""
    import trio

    from nginxws.worker import PushBindError

    async with trio.open_nursery() as nursery:
        try:
            push_addresses = await nursery.start(worker.run, sockets)
        except PushBindError as err:
            worker.error_log.emerg(str(err))
            return FATAL_EXIT
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
        _report_ready([a.netloc for addresses in push_addresses.values() for a in addresses])
    return 0


def _read_order() -> bytes:
    chunks = []
    while chunk := os.read(0, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _report_ready(push_addresses: list[str]) -> None:
    """Tell the master this worker serves, then let go of the channel."""
    try:
        os.write(0, READY + json.dumps(push_addresses).encode() + b"\n")
    except OSError:
        pass  # the master is gone: no one is left to tell
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _set_rlimit_nofile(limit: int | None, error_log: ErrorLogger) -> None:
    """``worker_rlimit_nofile``: both limits, as nginx sets them; failure is an alert."""
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
