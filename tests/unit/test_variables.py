"""Values with variables (nginxws.conf.variables): compiled as nginx compiles them, evaluated per request."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nginxws.conf.model import HttpSettings, Location, WebSocket
from nginxws.conf.values import compile_regex
from nginxws.conf.variables import (
    Argument,
    Capture,
    ComplexValue,
    ComplexValueError,
    Cookie,
    Header,
    InvalidVariableName,
    Reference,
    Request,
    RequestVariable,
    compile_value,
    scan,
)

# -- compiling --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$", "invalid variable name"),
        ("room-$", "invalid variable name"),
        ("$-x", "invalid variable name"),
        ("a$ b", "invalid variable name"),
        ("${", "invalid variable name"),
        ("${}", "invalid variable name"),
        ("${room", 'the closing bracket in "room" variable is missing'),
        ("${arg_room-x}", 'the closing bracket in "arg_room" variable is missing'),
        ("${-x}", 'the closing bracket in "" variable is missing'),
        ("$nonsense", 'unknown "nonsense" variable'),
        ("$NonSense", 'unknown "nonsense" variable'),  # nginx names variables in lower case
        ("$0", 'unknown "0" variable'),  # no $0 in nginx: $1..$9 only
        ("${1}", 'unknown "1" variable'),  # only the unbraced one-digit form is a capture
        ("$arg_", 'unknown "arg_" variable'),
        ("$http_", 'unknown "http_" variable'),
        ("$cookie_", 'unknown "cookie_" variable'),
        ("$room", 'unknown "room" variable'),  # a named capture only where a regex defines it
        ("$status", 'unknown "status" variable'),  # log_format's own variables are not request variables
        # A malformed reference is found before an unknown name, wherever it is.
        ("$nonsense ${room", 'the closing bracket in "room" variable is missing'),
    ],
)
def test_compile_errors_have_nginx_messages(text: str, message: str) -> None:
    with pytest.raises(ComplexValueError) as caught:
        compile_value(text)
    assert str(caught.value) == message


def test_invalid_variable_name_has_its_own_type() -> None:
    # log_format words this case its own way ("invalid parameter").
    with pytest.raises(InvalidVariableName):
        compile_value("x$")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("news", ("news",)),
        ("", ()),
        ("$arg_room", (Argument(b"&room="),)),
        ("$ARG_Room", (Argument(b"&room="),)),
        ("room-${arg_room}x", ("room-", Argument(b"&room="), "x")),
        ("$http_x_room", (Header(b"x-room"),)),
        ("$cookie_Room", (Cookie(b"room"),)),
        ("$uri$request_uri", (RequestVariable("uri"), RequestVariable("request_uri"))),
        ("$args|$query_string", (RequestVariable("args"), "|", RequestVariable("query_string"))),
        ("$remote_addr@$host", (RequestVariable("remote_addr"), "@", RequestVariable("host"))),
        ("$1", (Capture(1),)),
        ("$12", (Capture(1), "2")),
        ("$9x", (Capture(9), "x")),
    ],
)
def test_compiled_parts(text: str, parts: tuple) -> None:
    value = compile_value(text)
    assert (value.source, value.parts) == (text, parts)


def test_named_captures_are_variables_where_given_in_any_case() -> None:
    value = compile_value("room-$Room ${room}x", captures=frozenset({"room"}))
    assert value.parts == ("room-", Capture("room"), " ", Capture("room"), "x")
    assert compile_value("$room", captures=frozenset({"Room"})).parts == (Capture("Room"),)


def test_nginx_variables_come_before_named_captures() -> None:
    assert compile_value("$uri", captures=frozenset({"uri"})).parts == (RequestVariable("uri"),)


def test_scan_for_log_format_has_no_numbered_captures() -> None:
    assert list(scan("a$1b ${x}y")) == ["a", Reference("1b"), " ", Reference("x"), "y"]
    assert list(scan("a$1b", numbered_captures=True)) == ["a", Reference("1", 1), "b"]


def test_scan_yields_the_pieces_before_a_malformed_reference() -> None:
    pieces = scan("a$b c$")
    assert [next(pieces), next(pieces), next(pieces)] == ["a", Reference("b"), " c"]
    with pytest.raises(InvalidVariableName):
        next(pieces)


# -- evaluating -------------------------------------------------------------------


def value_of(text: str, request: Request, captures: frozenset[str] = frozenset()) -> str:
    return compile_value(text, captures=captures).evaluate(request)


@pytest.mark.parametrize(
    ("target", "text", "expected"),
    [
        (b"/chat?room=a%20b", "$arg_room", "a%20b"),  # as sent, never percent-decoded
        (b"/chat?room=a+b&x=1", "$arg_room", "a+b"),
        (b"/chat?x=1&room=r1&room=r2", "$arg_room", "r1"),  # the first one
        (b"/chat?ROOM=Up", "$arg_room", "Up"),  # the name in any case
        (b"/chat?room=up", "$arg_ROOM", "up"),
        (b"/chat?xroom=no&room=yes", "$arg_room", "yes"),  # a whole name, after "&" or at the start
        (b"/chat?rooms=no", "$arg_room", ""),
        (b"/chat?room", "$arg_room", ""),  # no "=": not found
        (b"/chat?room=", "$arg_room", ""),
        (b"/chat?a=1;room=no", "$arg_room", ""),  # ";" separates nothing for nginx
        (b"/chat", "$arg_room", ""),
        (b"/chat?", "$arg_room", ""),
        (b"/chat?room=caf\xc3\xa9", "$arg_room", "caf\xc3\xa9"),  # bytes kept one to one (latin-1)
        (b"/chat?a=1&b=2", "$args", "a=1&b=2"),
        (b"/chat?a=1&b=2", "$query_string", "a=1&b=2"),
        (b"/chat", "$args", ""),
        (b"/c%68at?a=1", "$request_uri", "/c%68at?a=1"),
    ],
)
def test_request_line_variables(target: bytes, text: str, expected: str) -> None:
    assert value_of(text, Request(target=target)) == expected


def test_uri_is_the_normalized_path_and_remote_addr_the_client() -> None:
    request = Request(target=b"/a/../c%68at?x", uri="/chat", remote_addr="10.0.0.7")
    assert value_of("$uri from $remote_addr", request) == "/chat from 10.0.0.7"


@pytest.mark.parametrize(
    ("headers", "text", "expected"),
    [
        ([(b"x-room", b"lobby")], "$http_x_room", "lobby"),
        ([(b"x-room", b"a"), (b"other", b"z"), (b"x-room", b"b")], "$http_x_room", "a, b"),
        ([(b"cookie", b"a=1"), (b"cookie", b"b=2")], "$http_cookie", "a=1; b=2"),
        ([], "$http_x_room", ""),
        ([(b"host", b"Chat.Example.COM:8080")], "$host", "chat.example.com"),
        ([(b"host", b"[::1]:8080")], "$host", "[::1]"),
        ([], "$host", ""),
    ],
)
def test_header_variables(headers: list[tuple[bytes, bytes]], text: str, expected: str) -> None:
    assert value_of(text, Request(headers=headers)) == expected


@pytest.mark.parametrize(
    ("cookie_lines", "name", "expected"),
    [
        ([b"room=lobby"], "room", "lobby"),
        ([b"a=1; room=lobby; b=2"], "room", "lobby"),
        ([b"a=1;room=lobby"], "room", "lobby"),
        ([b"a=1;   room = lobby ;b=2"], "room", "lobby "),  # spaces around "=" skipped; the value runs to ";"
        ([b"ROOM=up"], "room", "up"),  # the name in any case
        ([b"rooms=no; room=yes"], "room", "yes"),
        ([b"a=1", b"room=second-line"], "room", "second-line"),
        ([b"room=first", b"room=second"], "room", "first"),
        ([b"room="], "room", ""),
        ([b"a=1"], "room", ""),
        ([b"room;room=no"], "room", ""),  # nginx's parser skips the rest of the pair after a bad one
        ([b"x=a%20b"], "x", "a%20b"),
    ],
)
def test_cookie_variable(cookie_lines: list[bytes], name: str, expected: str) -> None:
    headers = [(b"cookie", line) for line in cookie_lines] + [(b"x-other", b"room=no")]
    assert value_of(f"$cookie_{name}", Request(headers=headers)) == expected


def test_numbered_captures() -> None:
    match = compile_regex(r"^/sub/(\w+)/(x)?(\d*)$").search("/sub/lobby/")
    request = Request(captures=match)
    assert value_of("$1|$2|$3|$4|$9", request) == "lobby||||"  # not taking part, or beyond the groups: empty
    assert value_of("$1", Request(captures=None)) == ""


def test_named_captures() -> None:
    regex = compile_regex(r"^/named/(?<room>\w+)$")
    request = Request(captures=regex.search("/named/lobby"))
    captures = frozenset(regex.groupindex)
    assert value_of("room-$room ${room}x $1", request, captures) == "room-lobby lobbyx lobby"
    # a group of an enclosing regex location, when a nested regex matched instead
    other = Request(captures=compile_regex(r"^/named/(\w+)$").search("/named/lobby"))
    assert value_of("[$room]", other, captures) == "[]"


class Untouchable:
    """A request that fails if anything reads it."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"read {name}")


def test_a_constant_value_is_its_text_without_reading_the_request() -> None:
    value = compile_value("news")
    assert value.constant
    assert value.evaluate(Untouchable()) is value.source  # type: ignore[arg-type]
    assert not compile_value("news-$1").constant


def test_values_and_locations_with_channels_pickle() -> None:
    channels = (
        compile_value("$arg_room"),
        compile_value("news"),
        compile_value("room-$room$1", captures=frozenset({"room"})),
        compile_value("$http_x_room$cookie_room$host$uri$args$request_uri$remote_addr"),
    )
    location = Location(
        "~",
        r"^/named/(?<room>\w+)$",
        HttpSettings(),
        websocket=WebSocket(),
        channels=channels,
        locations=(Location("", "/pub", HttpSettings(), publish=compile_value("$arg_channel")),),
    )
    copy = pickle.loads(pickle.dumps(location))
    assert copy == location
    assert [c.constant for c in copy.channels] == [False, True, False, False]
    match = compile_regex(location.pattern).search("/named/lobby")
    request = Request(target=b"/named/lobby?room=r", captures=match)
    assert [c.evaluate(request) for c in copy.channels[:3]] == ["r", "news", "room-lobbylobby"]
    assert copy.locations[0].publish.evaluate(Request(target=b"/pub?channel=c")) == "c"


def test_equal_texts_compile_to_equal_values() -> None:
    assert compile_value("a$arg_b") == compile_value("a$arg_b")
    assert compile_value("a$arg_b") != compile_value("a$arg_c")
    assert isinstance(compile_value("a"), ComplexValue)


def test_request_is_the_protocol_a_value_reads() -> None:
    # The runtime passes its own objects; the plain Request has exactly the fields evaluation reads.
    assert Request.__slots__ == ("target", "headers", "remote_addr", "realip_remote_addr", "uri", "captures")


# -- any text -------------------------------------------------------------------------

# Pieces that matter to the scanner, joined in any order.
PIECES = st.sampled_from(list("${}_aA19-/ ") + ["$arg_", "$http_", "$cookie_", "$uri", "${", "$aA"])


@given(st.lists(PIECES, max_size=12).map("".join))
def test_any_text_compiles_or_fails_with_a_message(text: str) -> None:
    request = Request(target=b"/a?b=c", headers=[(b"cookie", b"a=1")], captures=compile_regex("(a)").search("a"))
    try:
        value = compile_value(text, captures=frozenset({"aA"}))
    except ComplexValueError as err:
        assert str(err)
    else:
        assert isinstance(value.evaluate(request), str)
        assert value.constant == ("$" not in text)


@given(st.text().filter(lambda t: "$" not in t))
def test_text_without_dollar_is_constant_and_itself(text: str) -> None:
    value = compile_value(text)
    assert value.constant and value.evaluate(Request()) == text
