"""The session's rules over wsproto, in process: a wsproto client on the
other side, a number for a clock, no socket."""

from __future__ import annotations

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

from nginxws.conf.model import WebSocket
from nginxws.session import CLOSE_TIMEOUT, SessionProtocol, Timers
from nginxws.wsconn import accept_response, negotiate

PING, IDLE = 10.0, 15.0


class Peer:
    """A client connection and the server session it talks to."""

    def __init__(self, max_message_size: int = 1024, client_extensions=(), server_extensions=()) -> None:
        self.client = Connection(ConnectionType.CLIENT, list(client_extensions))
        self.server = SessionProtocol(Connection(ConnectionType.SERVER, list(server_extensions)),
                                      Timers(PING, IDLE, 0.0), max_message_size,
                                      extensions=bool(server_extensions))

    def send(self, *events, now: float = 1.0, raw: bytes = b"") -> list:
        """The client sends ``events`` (and ``raw`` bytes); the events the server's answer makes."""
        data = b"".join(self.client.send(event) for event in events) + raw
        return self.hear(self.server.receive(data, now))

    def hear(self, data: bytes) -> list:
        if not data:
            return []
        self.client.receive_data(data)
        return list(self.client.events())


def texts(events) -> list:
    return [(type(event).__name__, event.data) for event in events if isinstance(event, Message)]


def test_every_message_is_echoed_with_its_type():
    peer = Peer()
    assert texts(peer.send(TextMessage("hi"), BytesMessage(b"\x00\x01"))) == [
        ("TextMessage", "hi"), ("BytesMessage", bytearray(b"\x00\x01"))]
    assert not peer.server.done


def test_a_fragmented_message_is_echoed_once_whole():
    peer = Peer()
    assert peer.send(TextMessage("frag", message_finished=False)) == []
    assert texts(peer.send(TextMessage("ment", message_finished=False), TextMessage("ed"))) == [
        ("TextMessage", "fragmented")]


def test_a_ping_is_answered_with_a_pong_of_its_payload():
    peer = Peer()
    [pong] = peer.send(Ping(b"are you there"))
    assert isinstance(pong, Pong) and pong.payload == b"are you there"


def test_any_frame_from_the_client_resets_the_timers():
    peer = Peer()
    peer.send(Pong(b""), now=9.0)
    assert peer.server.deadline == 9.0 + PING
    assert peer.server.tick(9.5) == b""


def test_silence_gets_a_ping_after_pingintvl_then_a_1001_close_after_idleintvl():
    peer = Peer()
    assert peer.server.deadline == PING
    [ping] = peer.hear(peer.server.tick(PING))
    assert isinstance(ping, Ping)
    assert peer.server.deadline == IDLE
    [close] = peer.hear(peer.server.tick(IDLE))
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1001, "idle timeout")
    assert peer.server.closing and not peer.server.done


def test_after_its_close_frame_the_server_waits_close_timeout_for_the_answer():
    peer = Peer()
    peer.hear(peer.server.close(1001, "server shutting down", 2.0))
    assert peer.server.deadline == 2.0 + CLOSE_TIMEOUT
    assert peer.server.tick(2.0 + CLOSE_TIMEOUT - 0.1) == b"" and not peer.server.done
    peer.server.tick(2.0 + CLOSE_TIMEOUT)
    assert peer.server.done


def test_the_clients_answer_to_the_close_frame_ends_the_session():
    peer = Peer()
    close = peer.server.close(1001, "server shutting down", 2.0)
    assert peer.send(TextMessage("late"), Ping(b""), now=3.0) == []  # crossed the close: read and dropped
    assert not peer.server.done
    peer.hear(close)
    assert peer.send(CloseConnection(1001), now=3.0) == []
    assert peer.server.done


def test_the_clients_close_is_answered_with_its_code_and_ends_the_session():
    peer = Peer()
    [close] = peer.send(CloseConnection(4000, "bye"))
    assert isinstance(close, CloseConnection) and close.code == 4000
    assert peer.server.done


def test_eof_ends_the_session_quietly():
    peer = Peer()
    assert peer.server.receive(None, 1.0) == b""
    assert peer.server.done


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"\x81\x02hi", 1002),  # a client frame without a mask
        (b"\x81\x82\x00\x00\x00\x00\xff\xfe", 1007),  # text that is not UTF-8
        (b"\x83\x80\x00\x00\x00\x00", 1002),  # a reserved opcode
    ],
)
def test_a_protocol_error_fails_the_connection_with_its_code_at_once(raw, code):
    peer = Peer()
    [close] = peer.send(raw=raw)
    assert isinstance(close, CloseConnection) and close.code == code
    assert peer.server.done  # no wait for an answer (RFC 6455 7.1.7)


def test_what_came_before_a_protocol_error_is_still_echoed():
    peer = Peer()
    events = peer.send(TextMessage("valid"), raw=b"\x81\x02hi")
    assert texts(events) == [("TextMessage", "valid")]
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1002


@pytest.mark.parametrize("size", [1023, 1024])
def test_a_message_up_to_max_message_size_is_echoed(size):
    peer = Peer(max_message_size=1024)
    assert texts(peer.send(BytesMessage(b"x" * size))) == [("BytesMessage", bytearray(b"x" * size))]


def test_a_message_over_max_message_size_is_closed_1009_even_in_fragments():
    peer = Peer(max_message_size=1024)
    assert peer.send(BytesMessage(b"x" * 1000, message_finished=False)) == []
    [close] = peer.send(BytesMessage(b"x" * 25))
    assert isinstance(close, CloseConnection) and close.code == 1009
    assert peer.server.done


def test_max_message_size_counts_the_bytes_of_text():
    peer = Peer(max_message_size=1024)
    [close] = peer.send(TextMessage("é" * 513))  # 513 characters, 1026 bytes
    assert isinstance(close, CloseConnection) and close.code == 1009


def test_no_push_frame_once_the_session_is_closing():
    peer = Peer()
    assert peer.server.message("welcome") is not None
    peer.server.close(1000, "", 1.0)
    assert peer.server.message("late push") is None


# -- how a session ended, for the error log at info ---------------------------------


def close_after_idle(peer: Peer) -> None:
    peer.server.tick(PING)
    peer.hear(peer.server.tick(IDLE))


@pytest.mark.parametrize(
    ("end", "ending"),
    [
        (lambda p: p.send(CloseConnection(1000)), "client closed connection with 1000"),
        (lambda p: p.send(CloseConnection(4000, "bye")), "client closed connection with 4000"),
        (lambda p: p.server.receive(None, 1.0), "client prematurely closed connection"),
        (lambda p: p.send(raw=b"\x81\x02hi"),
         "client sent invalid frame: server received unexpected unmasked frame, closed with 1002"),
        (lambda p: p.send(BytesMessage(b"x" * 2000)), "client sent too large message, closed with 1009"),
        # The idle close is the server's decision, whatever the client does next.
        (lambda p: (close_after_idle(p), p.send(CloseConnection(1001))), "client timed out, closed with 1001"),
        (lambda p: (close_after_idle(p), p.server.receive(None, IDLE + 1)), "client timed out, closed with 1001"),
        (lambda p: (close_after_idle(p), p.server.tick(IDLE + CLOSE_TIMEOUT)), "client timed out, closed with 1001"),
    ],
    ids=["close", "close-4000", "eof", "protocol-error", "too-big", "idle-answered", "idle-then-eof",
         "idle-unanswered"],
)
def test_the_ending_names_how_the_client_left(end, ending):
    peer = Peer()
    assert peer.server.ending() is None
    end(peer)
    assert peer.server.done
    assert peer.server.ending() == ending


def test_a_close_the_server_starts_on_its_own_account_has_no_ending():
    # A stop or a slow subscriber's close is logged where it is decided.
    peer = Peer()
    peer.hear(peer.server.close(1001, "server shutting down", 2.0))
    peer.send(CloseConnection(1001), now=3.0)
    assert peer.server.done and peer.server.ending() is None


# -- permessage-deflate -------------------------------------------------------------


def test_deflate_is_declined_unless_the_location_turns_it_on():
    assert negotiate(("permessage-deflate",), WebSocket()) == ([], None)


def test_deflate_is_accepted_when_on_and_offered_without_context_takeover_by_default():
    extensions, answer = negotiate(("x-webkit-deflate-frame", "permessage-deflate; client_max_window_bits"),
                                   WebSocket(deflate=True))
    assert answer == (b"permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
                      b"client_max_window_bits=15")
    assert [type(e) for e in extensions] == [PerMessageDeflate]


def test_deflate_with_no_offer_is_not_used():
    assert negotiate((), WebSocket(deflate=True)) == ([], None)


def test_the_server_window_is_capped_at_deflate_window_bits():
    [deflate], answer = negotiate(("permessage-deflate; server_max_window_bits=12",),
                                  WebSocket(deflate=True, deflate_window_bits=10))
    assert deflate.server_max_window_bits == 10


def test_context_takeover_is_kept_only_when_asked_for():
    [deflate], answer = negotiate(("permessage-deflate",), WebSocket(deflate=True, deflate_no_context_takeover=False))
    assert answer == b"permessage-deflate"
    assert not deflate.server_no_context_takeover


def test_an_offer_wsproto_cannot_honour_is_declined():
    # zlib's raw deflate has no 8-bit window; the client may offer a second choice.
    assert negotiate(("permessage-deflate; client_max_window_bits=8",), WebSocket(deflate=True)) == ([], None)
    extensions, answer = negotiate(("permessage-deflate; client_max_window_bits=8", "permessage-deflate"),
                                   WebSocket(deflate=True, deflate_no_context_takeover=False))
    assert answer == b"permessage-deflate" and extensions


def test_compressed_messages_are_echoed_compressed():
    client_deflate = PerMessageDeflate()
    offer = client_deflate.offer()
    server_extensions, answer = negotiate((f"permessage-deflate; {offer}",),
                                          WebSocket(deflate=True, deflate_no_context_takeover=False))
    client_deflate.finalize(answer.decode())
    peer = Peer(client_extensions=[client_deflate], server_extensions=server_extensions)
    message = "compress me " * 50
    wire = peer.client.send(TextMessage(message))
    assert len(wire) < len(message) // 4
    echo = peer.server.receive(wire, 1.0)
    assert len(echo) < len(message) // 4
    assert texts(peer.hear(echo)) == [("TextMessage", message)]


def test_the_101_carries_the_accept_token_and_the_agreed_extensions():
    response = accept_response(b"dGhlIHNhbXBsZSBub25jZQ==", b"permessage-deflate", tokens=False)
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\nServer: nginxws\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in response
    assert response.endswith(b"\r\n\r\n")
    assert b"Sec-WebSocket-Extensions" not in accept_response(b"dGhlIHNhbXBsZSBub25jZQ==", None, tokens=True)
