"""The ``nginxws`` command line: argv -> show, test, signal or run, as ``nginx``.

The options, their parsing (flags may be combined, ``-tq``; an option's
argument may be attached, ``-cfile``, or follow it) and every message are
nginx's own, with ``nginxws`` for ``nginx``.

The prefix (``-p``) is fixed when nginxws is installed, as nginx's
``--prefix`` is when it is built (``default_prefix``): the virtual
environment nginxws is installed in, or ``/usr/local/nginxws/`` in a system
Python.  A relative ``-c`` is taken from the prefix, as nginx's
``ngx_conf_full_name`` takes it.

Everything a user can get wrong ends as one ``nginxws: ...`` line on stderr
and exit status 1, never a traceback.
"""

from __future__ import annotations

import os
import platform
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version

from nginxws import NAME, __version__, conf
from nginxws.conf.builder import DEFAULT_ACCESS_LOG, DEFAULT_ERROR_LOG, DEFAULT_PID
from nginxws.conf.model import AccessLog, Config, all_settings
from nginxws.log import (
    AccessLogger,
    ErrorLogger,
    LogFormatError,
    LogOpenError,
    os_error_text,
)
from nginxws.pidfile import PidFileError, read_pid

DEFAULT_CONF = "conf/nginx.conf"
# The prefix of an nginxws installed into a Python that is not a virtual
# environment: nginx's /usr/local/nginx/, renamed.
SYSTEM_PREFIX = "/usr/local/nginxws/"

SIGNALS = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reload": signal.SIGHUP,
    "reopen": signal.SIGUSR1,
}


def default_prefix(sys_prefix: str = sys.prefix, base_prefix: str = sys.base_prefix) -> str:
    """The prefix without ``-p``: nginx's ``--prefix``, fixed at install time.

    In a virtual environment (``python3 -m venv /opt/nginxws``, or pipx's),
    the environment's directory: it holds ``bin/nginxws`` and, under this
    prefix, ``conf/nginx.conf`` and ``logs/``, as nginx's
    ``/usr/local/nginx/`` holds ``sbin/nginx``, ``conf/`` and ``logs/``.
    In a system Python, whose prefix is ``/usr`` or ``/usr/local``,
    ``SYSTEM_PREFIX``.  Always absolute, ending in "/".
    """
    if sys_prefix == base_prefix:
        return SYSTEM_PREFIX
    prefix = os.path.abspath(sys_prefix)
    return prefix if prefix.endswith("/") else prefix + "/"


def usage(prefix: str) -> str:
    """What ``-h`` prints after the version, nginx's text with our defaults."""
    return f"""\
Usage: {NAME} [-?hvVtTq] [-s signal] [-p prefix]
               [-c filename] [-g directives]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: {prefix})
  -c filename   : set configuration file (default: {DEFAULT_CONF})
  -g directives : set global directives out of configuration file

"""


def configure_arguments(prefix: str) -> str:
    """nginx's ``configure arguments:`` for the paths fixed at install time."""
    return (
        f"--prefix={prefix} --conf-path={DEFAULT_CONF} --pid-path={DEFAULT_PID} "
        f"--error-log-path={DEFAULT_ERROR_LOG} --http-log-path={DEFAULT_ACCESS_LOG}"
    )


# The options that take an argument, and how nginx names what is missing.
_ARGUMENT_NAMES = {
    "p": "directory name",
    "c": "file name",
    "g": "parameter",
    "s": "parameter",
}


class UsageError(Exception):
    """A command line nginx would refuse; ``str()`` is its message."""


@dataclass(slots=True)
class Options:
    """What the command line asked for."""

    prefix: str | None = None
    conf_file: str | None = None
    directives: str | None = None
    signal: str | None = None
    test: bool = False
    dump: bool = False
    quiet: bool = False
    show_version: bool = False
    show_help: bool = False
    show_configure: bool = False


def parse_args(argv: Sequence[str]) -> Options:
    """Parse ``argv`` (without the program name) exactly as nginx's ngx_get_options."""
    opts = Options()
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-"):
            raise UsageError(f'invalid option: "{arg}"')
        pos = 1
        while pos < len(arg):
            flag = arg[pos]
            pos += 1
            if flag in "?h":
                opts.show_version = opts.show_help = True
            elif flag == "v":
                opts.show_version = True
            elif flag == "V":
                opts.show_version = opts.show_configure = True
            elif flag == "t":
                opts.test = True
            elif flag == "T":
                opts.test = opts.dump = True
            elif flag == "q":
                opts.quiet = True
            elif flag in _ARGUMENT_NAMES:
                value = arg[pos:] or next(args, None)
                if value is None:
                    raise UsageError(f'option "-{flag}" requires {_ARGUMENT_NAMES[flag]}')
                _set_argument(opts, flag, value)
                break
            else:
                raise UsageError(f'invalid option: "{flag}"')
    return opts


def _set_argument(opts: Options, flag: str, value: str) -> None:
    if flag == "p":
        opts.prefix = value
    elif flag == "c":
        opts.conf_file = value
    elif flag == "g":
        opts.directives = value
    elif value in SIGNALS:
        opts.signal = value
    else:
        raise UsageError(f'invalid option: "-s {value}"')


def version_text(opts: Options) -> str:
    """What ``-v``, ``-V`` and ``-h`` print, in nginx's order."""
    text = f"{NAME} version: {NAME}/{__version__}\n"
    if opts.show_help:
        text += usage(default_prefix())
    if opts.show_configure:
        libraries = ", ".join(f"{lib} {version(lib)}" for lib in ("trio", "h11", "wsproto", "httptools", "lark"))
        text += (
            f"built by {platform.python_implementation()} {platform.python_version()}\n"
            f"built with {libraries}\n"
            f"configure arguments: {configure_arguments(default_prefix())}\n"
        )
    return text


def resolve_paths(opts: Options) -> tuple[str, str]:
    """The prefix (absolute, ending in "/") and the absolute configuration path.

    As nginx (``ngx_process_options``): ``-p`` or the prefix fixed at
    install time; a relative ``-c`` is taken from the prefix, not the
    current directory.  A relative ``-p`` is taken from the current
    directory.
    """
    if opts.prefix:
        prefix = os.path.abspath(opts.prefix)
        prefix = prefix if prefix.endswith("/") else prefix + "/"
    else:
        prefix = default_prefix()
    conf_file = os.path.join(prefix, opts.conf_file or DEFAULT_CONF)
    return prefix, conf_file


def main(argv: Sequence[str] | None = None) -> int:
    """The ``nginxws`` program; returns the exit status."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        _say(str(err))
        return 1

    if opts.show_version:
        sys.stderr.write(version_text(opts))
        sys.stderr.flush()
        if not opts.test:
            return 0

    prefix, conf_file = resolve_paths(opts)
    try:
        config = conf.load(conf_file, prefix=prefix, directives=opts.directives)
    except conf.ConfigError as err:
        _say(str(err))
        if opts.test:
            _say(f"configuration file {conf_file} test failed")
        return 1

    if not (opts.test and opts.quiet):
        for warning in config.warnings:
            _say(str(warning))

    if opts.test:
        return _test(config, opts)
    if opts.signal is not None:
        return _send_signal(config, opts.signal)
    return _run(config, opts.directives)


def _say(message: str) -> None:
    """One line on stderr as nginx's ngx_log_stderr writes it."""
    sys.stderr.write(f"{NAME}: {message}\n")
    sys.stderr.flush()


def _test(config: Config, opts: Options) -> int:
    if not opts.quiet:
        _say(f"the configuration file {config.path} syntax is ok")
    try:
        _open_logs(config).close()
    except (LogOpenError, LogFormatError) as err:
        _say(str(err))
        _say(f"configuration file {config.path} test failed")
        return 1
    if not opts.quiet:
        _say(f"configuration file {config.path} test is successful")
    if opts.dump:
        for source in config.files:
            _write_stdout(f"# configuration file {source.path}:\n{source.text}\n")
    return 0


def _write_stdout(text: str) -> None:
    """Write to stdout as nginx does: unbuffered, ignoring a reader that left (``-T | head``)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(sys.stdout.fileno(), data) :]
    except OSError:
        pass


def _send_signal(config: Config, name: str) -> int:
    try:
        pid = read_pid(config.pid)
    except PidFileError as err:
        _say(str(err))
        return 1
    signo = SIGNALS[name]
    try:
        os.kill(pid, signo)
    except OSError as err:
        _say(f"[alert] kill({pid}, {signo.value}) failed {os_error_text(err)}")
        return 1
    return 0


def _run(config: Config, directives: str | None) -> int:
    try:
        error_log = _open_logs(config)
    except (LogOpenError, LogFormatError) as err:
        _say(str(err))
        return 1
    from nginxws import master  # the serving machinery is only loaded to serve

    # The master re-reads the configuration on reload with the same -g.
    return master.run(config, error_log=error_log, directives=directives)


def _open_logs(config: Config) -> ErrorLogger:
    """Open every log the configuration names, as nginx does before it runs.

    The access logs are only tried (and closed again): each worker opens its
    own.  Returns the opened error log.
    """
    AccessLogger(_access_logs(config)).close()
    return ErrorLogger(config.error_logs)


def _access_logs(config: Config) -> tuple[AccessLog, ...]:
    """Every distinct ``access_log`` target, at any level."""
    if config.http is None:
        return ()
    return tuple(dict.fromkeys(log for settings in all_settings(config.http) for log in settings.access_logs))
