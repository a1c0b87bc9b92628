"""What a user sees when something is wrong: a message with a level and a place.

Every error that ends as a line for a user (a configuration problem, a
listen socket that cannot be bound, a push port a worker cannot take)
derives from :class:`NginxwsError`, so whoever prints it needs no parsing:
the command line prints ``str(err)`` after ``nginxws: ``, a logger writes
``err.text`` at ``err.level``.  This module imports nothing of nginxws.
"""

from __future__ import annotations


class NginxwsError(Exception):
    """A problem as nginx reports it: ``[level] message in file:line``.

    The place is left out when there is none (nginx does so for errors
    outside any file); a file without a line, such as ``"command line"`` for
    ``-g`` directives, gives ``... in command line``.
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

    @property
    def text(self) -> str:
        """The message and its place, without the level (what a logger writes after its own)."""
        if self.file and self.line:
            return f"{self.message} in {self.file}:{self.line}"
        if self.file:
            return f"{self.message} in {self.file}"
        return self.message

    def __str__(self) -> str:
        return f"[{self.level}] {self.text}"
