"""nginx's lexical rules (ngx_conf_read_token), as the grammar reads them."""

from __future__ import annotations

import pytest

from nginxws.conf.syntax import COMMAND_LINE, parse


def words(text: str) -> list[tuple[str, ...]]:
    statements, error = parse(text, "/f.conf")
    assert error is None, error
    return [(s.name, *s.args) for s in statements]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b c;", [("a", "b", "c")]),
        ("a\tb\r\n  c ;", [("a", "b", "c")]),
        ('a "b c" \'d e\';', [("a", "b c", "d e")]),
        ('a "x;{}#y";', [("a", "x;{}#y")]),
        (r'a "q\"q" \'s\'s\';', [("a", 'q"q', "'s's'")]),  # a word may start with an escape
        (r"""a "q\"q" 's\'s';""", [("a", 'q"q', "s's")]),
        (r'a "t\tn\nr\r\\";', [("a", "t\tn\nr\r\\")]),
        (r"a ^/ws/(\d+)$;", [("a", r"^/ws/(\d+)$")]),
        ("a b#c; # comment ; {\n d;", [("a", "b#c"), ("d",)]),
        ("a x}y;", [("a", "x}y")]),
        ('a x"y;', [("a", 'x"y')]),
        ("a $v x${v}y x$${v};", [("a", "$v", "x${v}y", "x$${v}")]),
        ('a ")";', [("a", ")")]),
        ('if ($a = "x") ;', [("if", "($a", "=", "x", ")")]),
        (r"a \; b;", [("a", "\\;", "b")]),  # escaped, kept with its backslash
        ("", []),
        ("# only a comment", []),
    ],
)
def test_words(text: str, expected: list[tuple[str, ...]]) -> None:
    assert words(text) == expected


def test_blocks_nest_and_keep_their_children() -> None:
    (http,), error = parse("http {\n  server { listen 80; }\n}\n", "/f.conf")
    assert error is None
    (server,) = http.block
    assert server.block[0].name == "listen"
    assert (http.line, server.line, server.block[0].line) == (1, 2, 2)


def test_line_of_a_statement_is_the_line_of_its_terminator() -> None:
    (st,), _ = parse("a\n b\n ;", "/f.conf")
    assert (st.line, st.column) == (3, 1)


def test_variable_brace_at_word_start_belongs_to_the_word_as_in_nginx() -> None:
    # nginx 1.13.8 and later ("Allowed configuration token to start with a variable").
    (st,), error = parse("a ${v} ${v}x ${{;", "/f.conf")
    assert (st.name, st.args, st.block) == ("a", ("${v}", "${v}x", "${{"), None)
    assert error is None


def test_brace_after_a_lone_dollar_word_opens_a_block() -> None:
    (st,), error = parse("a $ {b;}", "/f.conf")
    assert (st.args, [b.name for b in st.block]) == (("$",), ["b"])
    assert error is None


def test_brace_in_unquoted_regex_starts_a_block_as_in_nginx() -> None:
    (st,), error = parse("location ~ ^/a{2}$ { }", "/f.conf")
    assert (st.name, st.args) == ("location", ("~", "^/a"))
    assert str(error) == '[emerg] unexpected end of file, expecting "}" in /f.conf:1'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("}", 'unexpected "}" in /f.conf:1'),
        ("a }", 'unexpected "}" in /f.conf:1'),
        (";", 'unexpected ";" in /f.conf:1'),
        ("a;\n{", 'unexpected "{" in /f.conf:2'),
        ("a {\n", 'unexpected end of file, expecting "}" in /f.conf:2'),
        ("a b", 'unexpected end of file, expecting ";" or "}" in /f.conf:1'),
        ('a "b\n\n', 'unexpected end of file, expecting ";" or "}" in /f.conf:3'),
        ("a b\\", 'unexpected end of file, expecting ";" or "}" in /f.conf:1'),
        ('a "b"c;', 'unexpected "c" in /f.conf:1'),
        ("a 'b'#;", 'unexpected "#" in /f.conf:1'),
        ('a\n"b\nb"};', 'unexpected "}" in /f.conf:3'),
    ],
)
def test_syntax_errors_in_nginx_words(text: str, expected: str) -> None:
    _, error = parse(text, "/f.conf")
    assert str(error) == "[emerg] " + expected


def test_statements_before_a_syntax_error_are_kept() -> None:
    statements, error = parse("a;\nb {\n c;\n d e", "/f.conf")
    assert [(s.name, s.block and [c.name for c in s.block]) for s in statements] == [("a", None), ("b", ["c"])]
    assert str(error) == '[emerg] unexpected end of file, expecting ";" or "}" in /f.conf:4'


def test_command_line_statements_have_no_line() -> None:
    (st,), error = parse("daemon off;", COMMAND_LINE)
    assert error is None and (st.file, st.line) == (COMMAND_LINE, None)
