"""The ``nginxws`` command line: argv -> show, test, signal or run, as ``nginx``.

The options, their parsing (flags may be combined, ``-tq``; an option's
argument may be attached, ``-cfile``, or follow it) and every message are
nginx's own, with ``nginxws`` for ``nginx``.  One difference: nginx's
default prefix is compiled in, ours is the current directory.

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

SIGNALS = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reload": signal.SIGHUP,
    "reopen": signal.SIGUSR1,
}

USAGE = f"""\
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
  -p prefix     : set prefix path (default: current directory)
  -c filename   : set configuration file (default: {DEFAULT_CONF})
  -g directives : set global directives out of configuration file

"""

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
        text += USAGE
    if opts.show_configure:
        libraries = ", ".join(f"{lib} {version(lib)}" for lib in ("trio", "h11", "wsproto", "httptools", "lark"))
        text += (
            f"built by {platform.python_implementation()} {platform.python_version()}\n"
            f"built with {libraries}\n"
            "configure arguments:\n"
        )
    return text


def resolve_paths(opts: Options) -> tuple[str, str]:
    """The prefix (absolute, ending in "/") and the absolute configuration path.

    As nginx: a relative ``-c`` is taken from the prefix, not the current
    directory.
    """
    prefix = os.path.abspath(opts.prefix or os.getcwd())
    prefix = prefix if prefix.endswith("/") else prefix + "/"
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
