"""The push listener's request parser: bytes in, ready requests out."""

from __future__ import annotations

import base64
import os

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nginxws.conf.model import HttpSettings, Listen, Location, Server, WebSocket
from nginxws.pushhttp import PushParser, channel_changes, push_id_from, push_message
from nginxws.registry import PushError

HEAD_LIMIT = 2 * 1024
SETTINGS = HttpSettings(large_client_header_buffers=(2, 1024), client_body_timeout=30.0)
WS_SETTINGS = HttpSettings(large_client_header_buffers=(2, 1024), client_body_timeout=7.0)
MAX_MESSAGE = 64
WS = Location("", "/ws", WS_SETTINGS, websocket=WebSocket(max_message_size=MAX_MESSAGE))
SERVER = Server((Listen("127.0.0.1", 8080),), ("",), SETTINGS,
                locations=(WS, Location("", "/plain", SETTINGS)))
AUTH = b"Authorization: Basic " + base64.b64encode(b"ID:")


def post(body: bytes = b"hi", *extra: bytes, target: bytes = b"/ws") -> bytes:
    head = [b"POST %s HTTP/1.1" % target, b"Host: x", AUTH, b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def chunked(*chunks: bytes, target: bytes = b"/ws") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    return b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (target, body)


def parse(*chunks: bytes, eof: bool = False) -> PushParser:
    parser = PushParser(SERVER)
    for chunk in chunks:
        parser.feed(chunk)
    if eof:
        parser.eof()
    return parser


def test_pipelined_requests_are_ready_in_order_with_their_bodies():
    parser = parse(post(b"one") + chunked(b"tw", b"o") + b"OPTIONS /ws HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(r.method, r.target, b"".join(r.body)) for r in parser.ready] == [
        (b"POST", b"/ws", b"one"), (b"POST", b"/ws", b"two"), (b"OPTIONS", b"/ws", b"")]
    first = parser.ready[0]
    assert (first.location, first.authorization, first.http_version, first.close) == (WS, AUTH[15:], b"1.1", False)
    assert first.headers == [(b"host", b"x"), (b"authorization", AUTH[15:]), (b"content-length", b"3")]
    assert parser.error is None and not parser.in_body


def test_the_query_is_kept_apart_for_the_push_id():
    (request,) = parse(post(target=b"/ws?id=ABC")).ready
    assert (request.target, request.query, request.location) == (b"/ws?id=ABC", b"id=ABC", WS)


def test_first_authorization_and_content_type_count():
    (request,) = parse(post(b"x", b"Content-Type: application/octet-stream", b"Content-Type: text/plain",
                            b"Authorization: Basic other")).ready
    assert (request.authorization, request.content_type) == (AUTH[15:], b"application/octet-stream")


@given(data=st.data())
def test_requests_split_anywhere_parse_the_same(data):
    stream = post(b"first") + chunked(b"a" * 10, b"b" * 20) + post(b"", target=b"/ws?id=q")
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=8))))
    parser = parse(*[stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])])
    assert [(r.target, b"".join(r.body)) for r in parser.ready] == [
        (b"/ws", b"first"), (b"/ws", b"a" * 10 + b"b" * 20), (b"/ws?id=q", b"")]


TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)


@st.composite
def valid_request(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(st.sampled_from([b"POST", b"OPTIONS", b"GET", b"PUT", b"DELETE"]))
    target = b"/" + draw(TOKEN).encode() + draw(st.sampled_from([b"", b"?id=" + draw(TOKEN).encode()]))
    names = draw(st.lists(TOKEN.map(lambda t: b"X-" + t.encode()), max_size=5))
    headers = [(b"host", b"x")] + [(n.lower(), draw(TOKEN).encode()) for n in names]
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        headers.append((b"content-length", b"%d" % len(body)))
        wire = body
    else:
        headers.append((b"transfer-encoding", b"chunked"))
        wire = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    head = b"%s %s HTTP/1.1\r\n" % (method, target) + b"".join(b"%s: %s\r\n" % h for h in headers)
    return head + b"\r\n" + wire, method, target, headers, body


@given(requests=st.lists(valid_request(), min_size=1, max_size=4))
def test_valid_requests_read_as_h11_reads_them(requests):
    """h11, the front door's parser, is the oracle for well-formed requests."""
    expected = []
    for wire, *_ in requests:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(wire)
        request = conn.next_event()
        body = b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            body += event.data
        expected.append((request.method, request.target, list(request.headers), body))
    ready = parse(b"".join(r[0] for r in requests)).ready
    # Only a POST to the websocket location keeps its body (the rest is dropped).
    assert [(r.method, r.target, r.headers) for r in ready] == [e[:3] for e in expected]
    for request, (method, target, _, body) in zip(ready, expected, strict=True):
        if request.location is not None and len(body) <= MAX_MESSAGE:
            assert b"".join(request.body) == body


def test_post_to_no_websocket_location_is_404_and_its_body_dropped():
    (request,) = parse(post(b"x" * 100, target=b"/plain")).ready
    assert (request.status, request.body, request.close) == (404, [], False)
    (request,) = parse(post(b"x", target=b"/%zz")).ready
    assert request.status == 404


def test_each_post_is_routed_by_its_own_path():
    parser = parse(post(b"a") + post(b"b", target=b"/plain") + post(b"c", target=b"/ws?id=x") + post(b"d"))
    assert [(r.status, r.location) for r in parser.ready] == [(0, WS), (404, None), (0, WS), (0, WS)]


def test_other_methods_bodies_are_dropped_whatever_their_size():
    (request,) = parse(b"PUT /ws HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000).ready
    assert (request.method, request.status, request.body) == (b"PUT", 0, [])


def test_content_length_over_max_message_size_is_413_at_once_and_the_last():
    parser = parse(post(b"x" * (MAX_MESSAGE + 1))[:-10])
    (request,) = parser.ready
    assert (request.status, request.close) == (413, True)
    parser.feed(b"x" * 10 + post())
    assert len(parser.ready) == 1


def test_chunked_body_over_max_message_size_is_413_before_it_ends():
    parser = parse(chunked(b"x" * MAX_MESSAGE, b"y")[:-5])
    (request,) = parser.ready
    assert (request.status, request.close) == (413, True)
    (request,) = parse(chunked(b"x" * MAX_MESSAGE)).ready
    assert (request.status, b"".join(request.body)) == (0, b"x" * MAX_MESSAGE)


@pytest.mark.parametrize("head", [b"POST /ws HTTP/1.1\r\nConnection: close\r\n", b"POST /ws HTTP/1.0\r\n"])
def test_a_request_that_closes_is_the_last(head):
    parser = parse(head + b"Content-Length: 1\r\n\r\nx" + post())
    (request,) = parser.ready
    assert request.close


def test_http10_keep_alive_still_closes_as_h11_does():
    (request,) = parse(b"POST /ws HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").ready
    assert (request.http_version, request.close) == (b"1.0", True)


def test_body_reads_wait_the_location_client_body_timeout():
    parser = parse(post(b"abcdef")[:-3])
    assert parser.in_body and parser.body_timeout == 7.0
    parser = parse(b"GET /ws HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert parser.in_body and parser.body_timeout == 30.0


def test_head_over_large_client_header_buffers_is_431():
    many = [b"X-H%d: %s" % (i, b"v" * 100) for i in range(30)]
    parser = parse(post(b"x", *many) + post())
    assert (parser.ready, parser.error) == ([], (431, "request header too large"))
    parser = parse(post(b"x", b"X-Big: " + b"v" * (HEAD_LIMIT - 200)))
    assert parser.error is None and len(parser.ready) == 1


def test_one_endless_header_is_cut_by_the_bytes_fed():
    parser = parse(b"POST /ws HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    for _ in range(HEAD_LIMIT // 100 + 1):
        assert parser.error is None
        parser.feed(b"v" * 100)
    assert parser.error == (431, "request header too large")


def test_endless_target_is_431():
    parser = parse(b"POST /")
    for _ in range(HEAD_LIMIT // 100 + 1):
        parser.feed(b"a" * 100)
    assert parser.error == (431, "request header too large")


@pytest.mark.parametrize(("wire", "status"), [
    (b"FOO /ws HTTP/1.1\r\n\r\n", 400),
    (b"POST /w\x00s HTTP/1.1\r\n\r\n", 400),
    (b"POST /ws HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400),
    (b"POST /ws HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"POST /ws HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
])
def test_a_malformed_head_ends_with_an_answer_after_the_requests_before_it(wire, status):
    parser = parse(post(b"first") + wire + post())
    assert [r.body for r in parser.ready] == [[b"first"]]
    assert parser.error is not None and parser.error[0] == status
    parser.feed(post())
    assert len(parser.ready) == 1


def test_a_malformed_body_ends_without_an_answer():
    parser = parse(b"POST /ws HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert parser.ready == [] and parser.error is not None and parser.error[0] == 0


def test_end_of_stream_mid_head_is_400_mid_body_no_answer_between_requests_nothing():
    assert parse(b"POST /ws HTTP/1.1\r\nHost", eof=True).error == (400, "peer unexpectedly closed")
    assert parse(post(b"abc")[:-1], eof=True).error == (0, "peer unexpectedly closed")
    parser = parse(post(), eof=True)
    assert parser.error is None and len(parser.ready) == 1


def test_an_upgrade_request_is_an_ordinary_request_and_parsing_goes_on():
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    parser = parse(upgrade + post(b"after") + upgrade + b"CONNECT x:1 HTTP/1.1\r\n\r\n" + post(b"end"))
    assert [(r.method, r.body) for r in parser.ready] == [
        (b"GET", []), (b"POST", [b"after"]), (b"GET", []), (b"CONNECT", []), (b"POST", [b"end"])]
    assert parser.error is None


def test_an_upgrade_request_with_a_body_is_refused():
    parser = parse(post(b"abc", b"Upgrade: h2c", b"Connection: Upgrade") + post())
    assert (parser.ready, parser.error) == ([], (400, "Upgrade with a request body"))


# -- fuzz ------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("NGINXWS_PARSER_FUZZ_EXAMPLES", "1000"))

SEEDS = [post(b"hello"), post(b"", target=b"/ws?id=x"), post(b"x" * 80), chunked(b"ab", b"cd"),
         post(b"x", target=b"/plain"), b"OPTIONS /ws HTTP/1.1\r\nHost: x\r\n\r\n",
         b"HEAD /ws HTTP/1.1\r\n\r\n", b"GET /ws HTTP/1.0\r\n\r\n",
         b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"]
PIECES = [b"\r\n", b"\r\n\r\n", b":", b" ", b"\x00", b"\n", b"Content-Length: 5\r\n", b"Content-Length: 99999\r\n",
          b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"Upgrade: x\r\nConnection: upgrade\r\n",
          b"0\r\n\r\n", b"ffffffff\r\n", b"v" * 3000]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=4)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + draw(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=8))) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif kind == "truncate":
            data = data[:at]
    return data


@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), split=st.data(), eof=st.booleans())
def test_fuzzed_bytes_give_ready_requests_or_an_end_never_an_exception(data, split, eof):
    cuts = sorted(set(split.draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6))))
    parser = parse(*[data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if data[a:b]], eof=eof)
    for i, request in enumerate(parser.ready):
        assert request.method and request.http_version
        assert request.status in (0, 404, 413)
        assert request.close == (request.status == 413) or request.close
        assert not request.close or i == len(parser.ready) - 1, "nothing is ready after a closing request"
        assert sum(len(n) + len(v) + 4 for n, v in request.headers) + len(request.target) <= HEAD_LIMIT
        if request.method == b"POST" and request.status == 0:
            assert request.location is WS and sum(map(len, request.body)) <= MAX_MESSAGE
        else:
            assert request.body == []
    if parser.error is not None:
        assert parser.error[0] in (0, 400, 431, 501)
    if parser.error is not None or (parser.ready and parser.ready[-1].close):
        count = len(parser.ready)
        parser.feed(post())
        assert len(parser.ready) == count


# -- the push ID and the message a push carries --------------------------------------


def basic(user: str, password: str = "") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    "authorization, query, expected",
    [
        (basic("abc"), b"", "abc"),
        (basic("abc", "secret"), b"", "abc"),
        (b"basic " + base64.b64encode(b"xyz:"), b"", "xyz"),
        (None, b"id=q1", "q1"),
        (basic(""), b"id=q2", "q2"),
        (b"Bearer token", b"id=q3", "q3"),
    ],
)
def test_push_id_from_basic_user_or_query(authorization, query, expected):
    assert push_id_from(authorization, query) == expected


@pytest.mark.parametrize(
    "authorization, query",
    [(None, b""), (basic(""), b""), (b"Basic !!!notbase64", b""), (None, b"id="), (b"Bearer x", b"")],
)
def test_missing_or_malformed_id_is_400(authorization, query):
    with pytest.raises(PushError) as err:
        push_id_from(authorization, query)
    assert err.value.status == 400


def test_body_is_text_by_default_and_binary_by_content_type():
    assert push_message("héllo 😀".encode(), None, 100) == "héllo 😀"
    assert push_message(b"\xff\x00", b"application/octet-stream", 100) == b"\xff\x00"
    assert push_message(b"\xff", b"Application/Octet-Stream; x=1", 100) == b"\xff"
    assert push_message(b"", None, 100) == ""


def test_text_body_that_is_not_utf8_is_400():
    with pytest.raises(PushError) as err:
        push_message(b"\xff\xfe", b"text/plain", 100)
    assert err.value.status == 400


def test_body_over_max_message_size_is_413():
    push_message(b"x" * 100, None, 100)
    with pytest.raises(PushError) as err:
        push_message(b"x" * 101, None, 100)
    assert err.value.status == 413


def test_a_chunked_body_over_the_limit_keeps_nothing_it_read():
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (b"ab", b"cd", b"x" * MAX_MESSAGE))
    parser = parse(b"POST /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
    (request,) = parser.ready
    assert (request.status, request.body) == (413, [])


@pytest.mark.parametrize("query, changes", [
    (b"", []),
    (b"id=abc", []),
    (b"subscribe=news", [("subscribe", "news")]),
    (b"unsubscribe=a&subscribe=b&id=x&subscribe=c", [("unsubscribe", "a"), ("subscribe", "b"), ("subscribe", "c")]),
    (b"subscribe=user%3A42", [("subscribe", "user:42")]),
])
def test_channel_changes_in_order(query, changes):
    assert channel_changes(query) == changes


@pytest.mark.parametrize("query", [b"subscribe=", b"subscribe=a%20b", b"unsubscribe=" + b"x" * 129, b"subscribe=a/b"])
def test_a_channel_change_with_a_bad_name_is_400(query):
    with pytest.raises(PushError) as refused:
        channel_changes(query)
    assert refused.value.status == 400
