"""The pid file: how ``nginxws -s`` finds the master, as nginx's ``pid`` file.

The master writes its pid followed by a newline (``write_pid``) and removes
the file when it exits (``remove_pid``); ``nginxws -s`` reads it
(``read_pid``).  Every failure is a ``PidFileError`` whose ``str()`` is the
line nginx prints, e.g. ``[error] open() "/x/logs/nginx.pid" failed (2: No
such file or directory)``.
"""

from __future__ import annotations

import os

from nginxws.log import os_error_text
from nginxws.errors import NginxwsError

_READ_LIMIT = 22  # nginx reads NGX_INT64_LEN + 2 bytes
_PID_MAX = 2**31 - 1  # the largest pid_t


class PidFileError(NginxwsError):
    """A pid file that cannot be written, read or understood."""

    def __init__(self, message: str, level: str = "error") -> None:
        super().__init__(message, level=level)


def write_pid(path: str, pid: int) -> None:
    """Create or truncate ``path`` and write ``pid`` into it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise PidFileError(f'open() "{path}" failed {os_error_text(err)}', "emerg") from err
    try:
        os.write(fd, b"%d\n" % pid)
    except OSError as err:
        raise PidFileError(f'write() to "{path}" failed {os_error_text(err)}', "emerg") from err
    finally:
        os.close(fd)


def read_pid(path: str) -> int:
    """The pid written in ``path``.

    Like nginx, only the first 22 bytes are read, trailing CR/LF are
    ignored, and anything else that is not a decimal number a pid can be is
    refused; unlike nginx, 0 is refused too, since ``kill(0, ...)`` would
    signal our own process group.
    """
    try:
        with open(path, "rb") as file:
            data = file.read(_READ_LIMIT)
    except OSError as err:
        raise PidFileError(f'open() "{path}" failed {os_error_text(err)}') from err
    text = data.rstrip(b"\r\n")
    if not text.isdigit() or not 0 < int(text) <= _PID_MAX:
        shown = text.decode("utf-8", "backslashreplace")
        raise PidFileError(f'invalid PID number "{shown}" in "{path}"')
    return int(text)


def remove_pid(path: str) -> None:
    """Remove ``path``; a file that is already gone is not an error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise PidFileError(f'unlink() "{path}" failed {os_error_text(err)}', "alert") from err
