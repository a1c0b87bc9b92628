"""Running the configuration: the process that owns sockets, pid file and exit code.

With ``master_process off`` this process opens the listen sockets, writes
the pid file and runs one worker in itself, in the foreground, as nginx
does.  The supervising master of ``master_process on`` (many workers,
reload, crash recovery) is issue 4; until it lands, ``master_process on``
runs the same single worker and says so in the error log.
"""

from __future__ import annotations

import os

import setproctitle
import trio

from nginxws.conf.model import Config
from nginxws.log import ErrorLogger
from nginxws.pidfile import remove_pid, write_pid
from nginxws.sockets import BindError, open_listen_sockets
from nginxws.worker import PushBindError, Worker


def run(config: Config, *, error_log: ErrorLogger) -> int:
    """Serve ``config`` until a shutdown signal; return the exit status."""
    log = ErrorLogger(config.error_logs, pid=os.getpid())
    try:
        sockets = open_listen_sockets(config)
    except BindError as err:
        error_log.emerg(str(err))
        return 1
    try:
        write_pid(config.pid, os.getpid())
    except OSError as err:
        error_log.emerg(f'open() "{config.pid}" failed ({err.errno}: {err.strerror})')
        return 1
    if config.master_process:
        log.notice("master_process on is served by a single process for now")
    setproctitle.setproctitle("nginxws: single worker process")
    try:
        worker = Worker(config, 0, log)
        trio.run(worker.run, sockets)
    except PushBindError as err:
        log.emerg(str(err))
        return 1
    finally:
        for sock in sockets:
            sock.close()
        remove_pid(config.pid)
        log.close()
    return 0
