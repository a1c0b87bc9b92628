"""Configuration errors: a value with a level and a place."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, printed as nginx prints it.

    ``str(err)`` is ``[emerg] <message> in <file>:<line>`` (the place is left
    out when there is none, as nginx does for errors outside any file).  The
    command line prefixes it with ``nginxws: `` and exits 1.
    """

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        level: str = "emerg",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.level = level

    def __str__(self) -> str:
        where = f" in {self.file}:{self.line}" if self.file and self.line else ""
        return f"[{self.level}] {self.message}{where}"
