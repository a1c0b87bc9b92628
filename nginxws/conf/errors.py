"""Configuration errors: a value with a level and a place."""

from __future__ import annotations

from nginxws.errors import NginxwsError


class ConfigError(NginxwsError):
    """A configuration problem, printed as nginx prints it.

    ``str(err)`` is ``[emerg] <message> in <file>:<line>`` (see
    :class:`~nginxws.errors.NginxwsError` for the place).  The command line
    prefixes it with ``nginxws: `` and exits 1.  The same shape with
    ``level="warn"`` is a warning (``Config.warnings``).
    """
