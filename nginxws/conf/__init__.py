"""nginx's configuration language: text -> parse tree -> typed model.

Public API (used by the command line, the master and the worker)::

    load(path, *, prefix=None, directives=None, resolve=resolve_host) -> Config
        # raises ConfigError; Config.warnings holds the [warn]s, routing's included

``compile_regex`` compiles a location or server_name regex exactly as the
configuration checked it (routing must use it).
"""

from nginxws.conf.builder import load
from nginxws.conf.errors import ConfigError
from nginxws.conf.model import Config
from nginxws.conf.values import compile_regex

__all__ = ["Config", "ConfigError", "compile_regex", "load"]
