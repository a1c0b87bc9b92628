"""Configuration errors: a value with a level and a place."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, printed as nginx prints it.

    ``str(err)`` is ``[emerg] <message> in <file>:<line>`` (the place is left
    out when there is none, as nginx does for errors outside any file; a
    file without a line, such as ``"command line"`` for ``-g`` directives,
    gives ``... in command line``).  The command line prefixes it with
    ``nginxws: `` and exits 1.  The same shape with ``level="warn"`` formats
    warnings.
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
        if self.file and self.line:
            where = f" in {self.file}:{self.line}"
        elif self.file:
            where = f" in {self.file}"
        else:
            where = ""
        return f"[{self.level}] {self.message}{where}"
