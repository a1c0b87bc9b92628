"""nginx's configuration language: text -> parse tree -> typed model.

Public API (used by the command line, the master and the worker)::

    load(path, *, prefix=None, directives=None) -> Config   # raises ConfigError
"""

from nginxws.conf.errors import ConfigError
from nginxws.conf.model import Config

__all__ = ["ConfigError", "Config"]
