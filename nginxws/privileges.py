"""The ``user`` directive at run time: workers serve as that user.

Theory of operation (nginx's, ``ngx_worker_process_init`` and
``ngx_reopen_files``):

* Only a process running as root switches; the configuration carries a
  ``user`` only when it was loaded by root (anyone else was warned then).
* The master stays root: it binds the ``listen`` sockets, writes the pid
  file and starts the workers.  A worker starts as root too, opens its error
  and access logs and binds its push listeners (ports below 1024 included:
  nginx's workers bind nothing, ours own their push ports), and only then
  switches for good: setgid, initgroups, setuid.  From there it can open
  nothing that only root may.
* Files the workers open later are the log files on ``-s reopen``
  (logrotate renamed the old ones).  Before it tells the workers to reopen,
  the master opens (creating) each of them and gives it to the user, with
  read and write for its owner, so that the workers can open it.
* ``master_process off``: the single process keeps its identity, as
  nginx's does.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from nginxws.conf.model import User
from nginxws.errors import NginxwsError
from nginxws.log import os_error_text

_FILE_MODE = 0o644  # as log.py opens its files (nginx's NGX_FILE_DEFAULT_ACCESS)


class PrivilegeError(NginxwsError):
    """A worker could not become its user (nginx's fatal ``setgid()``/``setuid()`` failures)."""


def switch_user(user: User) -> list[str]:
    """Become ``user`` for good, when running as root: the messages of what
    failed without being fatal (``initgroups``, logged ``[emerg]`` as nginx
    logs it).  Raises PrivilegeError when ``setgid`` or ``setuid`` fails."""
    if os.geteuid() != 0:
        return []
    problems = []
    try:
        os.setgid(user.gid)
    except OSError as err:
        raise PrivilegeError(f"setgid({user.gid}) failed {os_error_text(err)}") from None
    try:
        os.initgroups(user.name, user.gid)
    except OSError as err:
        problems.append(f"initgroups({user.name}, {user.gid}) failed {os_error_text(err)}")
    try:
        os.setuid(user.uid)
    except OSError as err:
        raise PrivilegeError(f"setuid({user.uid}) failed {os_error_text(err)}") from None
    return problems


def give_files(paths: Iterable[str], user: User) -> list[str]:
    """Open (creating) each log file and make it the user's, readable and
    writable by its owner, as nginx's master does before its workers reopen
    their logs; the ``[emerg]`` messages of those that failed.

    ``stderr`` and anything that is not a regular file (``/dev/stdout``) are
    left alone: giving a terminal or a pipe away is no log rotation's business.
    """
    problems = []
    for path in dict.fromkeys(paths):
        if path == "stderr":
            continue
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        except OSError as err:
            problems.append(f'open() "{path}" failed {os_error_text(err)}')
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                continue
            if info.st_uid != user.uid:
                try:
                    os.fchown(fd, user.uid, -1)
                except OSError as err:
                    problems.append(f'chown("{path}", {user.uid}) failed {os_error_text(err)}')
                    continue
            if info.st_mode & (stat.S_IRUSR | stat.S_IWUSR) != stat.S_IRUSR | stat.S_IWUSR:
                try:
                    os.fchmod(fd, stat.S_IMODE(info.st_mode) | stat.S_IRUSR | stat.S_IWUSR)
                except OSError as err:
                    problems.append(f'chmod() "{path}" failed {os_error_text(err)}')
        finally:
            os.close(fd)
    return problems
