"""Configuration text -> statements (the lark grammar in ``grammar/nginx.lark``).

This module knows only nginx's lexical and block structure: it turns text
into a tree of :class:`Statement` (name, arguments, place, optional block)
and turns lark's parse errors into nginx's messages.  What a directive means
is decided by ``nginxws.conf.directives``.

Places follow nginx: a statement's line is the line of the ``;`` or ``{``
that ends it, because that is where nginx stands when it reports a problem
with the directive.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lark import (
    Lark,
    Token,
    Tree,
    UnexpectedCharacters,
    UnexpectedInput,
    UnexpectedToken,
)

from nginxws.conf.errors import ConfigError

COMMAND_LINE = "command line"
"""The "file" name of directives given with ``-g`` (nginx says ``in command line``)."""

_ESCAPE = re.compile(r"\\([\"'\\tnr])")
_CONTROL = {"t": "\t", "n": "\n", "r": "\r"}
_WORDS = frozenset({"WORD", "DQUOTED", "SQUOTED"})
_BOUNDARIES = frozenset({"SEMI", "LBRACE", "RBRACE"})


@dataclass(frozen=True, slots=True)
class Statement:
    """One directive as written: ``name args... ;`` or ``name args... { block }``.

    ``block`` is ``None`` for a simple directive and a (possibly empty) tuple
    for a block directive.  ``line`` is ``None`` for ``-g`` directives.
    """

    name: str
    args: tuple[str, ...]
    file: str
    line: int | None
    column: int | None
    block: tuple[Statement, ...] | None = None

    def error(self, message: str) -> ConfigError:
        """A ConfigError placed at this statement."""
        return ConfigError(message, self.file, self.line)


def _grammar_text() -> str:
    installed = importlib.resources.files("nginxws") / "grammar" / "nginx.lark"
    if installed.is_file():
        return installed.read_text(encoding="utf-8")
    source_tree = Path(__file__).resolve().parents[2] / "grammar" / "nginx.lark"
    return source_tree.read_text(encoding="utf-8")


@cache
def _parser() -> Lark:
    return Lark(_grammar_text(), parser="lalr", lexer="basic", propagate_positions=True)


def parse(text: str, file: str) -> tuple[tuple[Statement, ...], ConfigError | None]:
    """Parse one file's text (or a ``-g`` string when ``file`` is COMMAND_LINE).

    Returns the statements and the syntax error, if any, with nginx's
    wording.  nginx reads a file statement by statement and acts on each
    before it reads the next, so a problem in a directive *before* a syntax
    error is reported first; to keep that order the statements completed
    before the error are returned with it (open blocks closed), and the
    caller reports the error once it has acted on them.
    """
    try:
        return _statements(_parser().parse(text), file), None
    except UnexpectedInput as err:
        error = _syntax_error(err, text, file)
        cut, depth = _last_boundary(text, err)
        head = _parser().parse(text[:cut] + "\n}" * depth)
        return _statements(head, file), error


def _last_boundary(text: str, err: UnexpectedInput) -> tuple[int, int]:
    """Where the last statement before ``err`` ended, and how many blocks are open there."""
    stop = err.token.start_pos if isinstance(err, UnexpectedToken) else err.pos_in_stream
    cut = depth = 0
    level = 0
    tokens = _parser().lex(text)
    try:
        for token in tokens:
            if token.start_pos is None or token.start_pos >= stop:
                break
            if token.type in _BOUNDARIES:
                level += 1 if token.type == "LBRACE" else -1 if token.type == "RBRACE" else 0
                cut, depth = token.end_pos, level
    except UnexpectedCharacters:
        pass
    return cut, depth


def _word(token: Token) -> str:
    raw = token.value if token.type == "WORD" else token.value[1:-1]
    return _ESCAPE.sub(lambda m: _CONTROL.get(m[1], m[1]), raw)


def _statements(root: Tree, file: str) -> tuple[Statement, ...]:
    # Iterative post-order walk: nesting depth is the user's to choose and
    # must not reach Python's recursion limit.
    line_of = (lambda tok: None) if file == COMMAND_LINE else (lambda tok: tok.line)
    built: dict[int, Statement] = {}
    pending: list[tuple[Tree, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        if not children_done:
            pending.append((node, True))
            pending.extend((c, False) for c in node.children if isinstance(c, Tree))
            continue
        if node is root:
            break
        words = [_word(c) for c in node.children if isinstance(c, Token) and c.type in _WORDS]
        end = next(c for c in node.children if isinstance(c, Token) and c.type in ("SEMI", "LBRACE"))
        block = None
        if node.data == "block":
            block = tuple(built.pop(id(c)) for c in node.children if isinstance(c, Tree))
        first = node.children[0]
        built[id(node)] = Statement(
            name=words[0],
            args=tuple(words[1:]),
            file=file,
            line=line_of(end),
            column=None if file == COMMAND_LINE else first.column,
            block=block,
        )
    return tuple(built.pop(id(c)) for c in root.children)


def _closing_quote(text: str, start: int) -> int | None:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == quote:
            return i
        else:
            i += 1
    return None


def _syntax_error(err: UnexpectedInput, text: str, file: str) -> ConfigError:
    command_line = file == COMMAND_LINE

    def at(message: str, line: int) -> ConfigError:
        return ConfigError(message, file, None if command_line else line)

    eof_line = text.count("\n") + 1
    if command_line:
        unfinished = ConfigError('unexpected end of parameter, expecting ";"', file)
    else:
        unfinished = at('unexpected end of file, expecting ";" or "}"', eof_line)

    if isinstance(err, UnexpectedCharacters):
        # Only a quote (unterminated, or followed by a non-separator) or a
        # backslash at the very end of the text can stop the lexer.
        pos = err.pos_in_stream
        if text[pos] in "\"'":
            close = _closing_quote(text, pos)
            if close is not None:
                glued = text[close + 1]
                return at(f'unexpected "{glued}"', text.count("\n", 0, close + 1) + 1)
        return unfinished

    if not isinstance(err, UnexpectedToken):
        return unfinished
    token = err.token
    if token.type == "$END":
        if "SEMI" in err.expected:
            return unfinished
        if command_line:
            return ConfigError("block directives are not supported in -g option", file)
        return at('unexpected end of file, expecting "}"', eof_line)
    return at(f'unexpected "{token.value}"', token.line)
