"""TLS without the program: password files, contexts from settings, the SNI
choice, and ``TlsStream`` over a socket pair (its writes never wait)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
from support.certs import Authority
from support.inprocess import PAIR_BUFFER
from support.scheduling import scheduler_trips

from nginxws.conf.handlers import PasswordFileError, read_passwords
from nginxws.conf.model import Certificate, Listen, Server, Ssl
from nginxws.conf.tls import server_context
from nginxws.routing import Router
from nginxws.streams import SocketStream
from nginxws.tls import TlsStream, choose_server, looks_like_tls

from test_routing import SETTINGS  # noqa: E402  (the routing tests' settings)


@pytest.mark.parametrize(("data", "passwords"), [
    (b"one\ntwo\n", (b"one", b"two")),
    (b"one\r\ntwo", (b"one", b"two")),  # CR LF, and a last line without LF
    (b"\n\none\n\n", (b"one",)),  # empty lines are skipped
    (b"\r\n", (b"",)),  # no password at all: one empty one, as nginx
    (b"", (b"",)),
    (b" spaced out \n", (b" spaced out ",)),  # nothing else is stripped
    (b"x" * 4095 + b"\n", (b"x" * 4095,)),
])
def test_password_file_lines_are_the_passwords_in_order(data: bytes, passwords: tuple[bytes, ...]) -> None:
    assert read_passwords(data) == passwords


def test_a_password_line_of_nginxs_buffer_size_is_refused() -> None:
    with pytest.raises(PasswordFileError):
        read_passwords(b"x" * 4096 + b"\n")


@pytest.mark.parametrize(("protocols", "minimum", "maximum", "off"), [
    (("TLSv1.2", "TLSv1.3"), ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3, 0),
    (("TLSv1.3",), ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3, 0),
    (("SSLv2", "TLSv1.2"), ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, 0),
    # A gap is closed with OpenSSL's per-version switch.
    (("TLSv1", "TLSv1.2"), ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2, ssl.OP_NO_TLSv1_1),
])
def test_ssl_protocols_become_the_contexts_versions(protocols, minimum, maximum, off) -> None:
    context = server_context(Ssl(protocols=protocols))
    assert (context.minimum_version, context.maximum_version) == (minimum, maximum)
    assert context.options & (ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1 | ssl.OP_NO_TLSv1_2) == off


def test_cipher_preference_tickets_and_renegotiation_follow_nginx() -> None:
    default = server_context(Ssl())
    assert not default.options & ssl.OP_CIPHER_SERVER_PREFERENCE  # nginx's default is off
    assert not default.options & ssl.OP_NO_TICKET
    assert default.options & ssl.OP_NO_RENEGOTIATION
    chosen = server_context(Ssl(prefer_server_ciphers=True, session_tickets=False, ciphers="ECDHE+AESGCM"))
    assert chosen.options & ssl.OP_CIPHER_SERVER_PREFERENCE and chosen.options & ssl.OP_NO_TICKET
    assert {c["name"] for c in chosen.get_ciphers() if c["protocol"] == "TLSv1.2"} <= {
        c["name"] for c in ssl.create_default_context().get_ciphers()}


def _group():
    listen = Listen("127.0.0.1", 443, addresses=("127.0.0.1",), ssl=True)
    default = Server((listen,), ("a.example",), SETTINGS)
    wildcard = Server((listen,), ("*.b.example", "b.example"), SETTINGS)
    regex = Server((listen,), ("~^ws\\d+\\.example$",), SETTINGS)
    chosen = Server((Listen("127.0.0.1", 443, default_server=True, addresses=("127.0.0.1",), ssl=True),),
                    ("c.example",), SETTINGS)
    router = Router(type("Http", (), {"servers": (default, wildcard, regex, chosen)})())
    return router.servers_for(("127.0.0.1", 443)), default, wildcard, regex, chosen


@pytest.mark.parametrize(("name", "expected"), [
    ("a.example", "default"),
    ("A.Example.", "default"),  # as a Host is compared: case, trailing dot
    ("x.b.example", "wildcard"),
    ("b.example", "wildcard"),
    ("ws7.example", "regex"),
    ("c.example", "chosen"),
    ("nobody.example", "chosen"),  # unknown: the address's default server
    (None, "chosen"),  # no SNI
    ("", "chosen"),
])
def test_sni_picks_the_server_as_the_host_header_would(name, expected) -> None:
    group, *servers = _group()
    by_name = dict(zip(("default", "wildcard", "regex", "chosen"), servers))
    assert choose_server(group, name) is by_name[expected]


@pytest.mark.parametrize(("first", "tls"), [
    (b"\x16", True), (b"\x80", True), (b"\x85", True),  # a handshake record, an SSLv2-style hello
    (b"G", False), (b"P", False), (b"\x00", False), (b"\x15", False),
])
def test_a_first_byte_tells_tls_from_plain_http(first: bytes, tls: bool) -> None:
    assert looks_like_tls(first) is tls


# -- TlsStream over a socket pair ----------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Authority, ssl.SSLContext]:
    ca = Authority(tmp_path_factory.mktemp("tls"))
    issued = ca.issue("stream.test")
    return ca, server_context(Ssl(certificates=(Certificate(str(issued.cert), str(issued.key)),)))


class Client:
    """The other end: a TLS client over a non-blocking socket, driven by hand."""

    def __init__(self, sock: socket.socket, ca: Authority) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ca.client_context().wrap_bio(self.incoming, self.outgoing, server_hostname="stream.test")

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.setblocking(True)
            self.sock.sendall(data)
            self.sock.setblocking(False)

    def pump(self) -> None:
        """Feed what arrived to the TLS object."""
        try:
            while data := self.sock.recv(65536):
                self.incoming.write(data)
        except BlockingIOError:
            pass

    def step_handshake(self) -> bool:
        self.pump()
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self.flush()
            return False
        self.flush()
        return True

    def read(self) -> bytes:
        self.pump()
        data = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return data
            if not chunk:  # after the server's close_notify
                return data
            data += chunk


async def _handshaken(server: TlsStream, client: Client) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handshake)
        while not client.step_handshake():
            await trio.sleep(0.001)


def test_tls_stream_reads_what_the_client_wrote_and_writes_without_waiting(certificate) -> None:
    ca, context = certificate

    async def main() -> None:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        with ours, theirs:
            server, client = TlsStream(SocketStream(ours), context), Client(theirs, ca)
            await _handshaken(server, client)
            client.tls.write(b"hello server")
            client.flush()
            assert await server.receive_some() == b"hello server"
            with scheduler_trips() as trips:
                assert server.send_nowait(b"hello client") == len(b"hello client")
            assert trips.count == 0
            while (got := client.read()) == b"":
                await trio.sleep(0.001)
            assert got == b"hello client"
            server.close()
            client.read()
            # close_notify arrived: a read is the TLS end of the stream, not "want more".
            assert client.tls.read(1) == b""

    trio.run(main)


def test_a_send_the_kernel_cannot_take_is_retried_with_the_same_data_and_never_encrypted_twice(certificate) -> None:
    ca, context = certificate

    async def main() -> None:
        ours, theirs = socket.socketpair()
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PAIR_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PAIR_BUFFER)
        theirs.setblocking(False)
        with ours, theirs:
            server, client = TlsStream(SocketStream(ours), context), Client(theirs, ca)
            await _handshaken(server, client)
            message = bytes(range(256)) * 1024  # 256 KiB: far more than the socket buffers
            assert server.send_nowait(message) == 0  # its records wait in the stream
            assert server.send_nowait(message) == 0  # still waiting: nothing taken twice
            received = b""
            while True:
                received += client.read()
                sent = server.send_nowait(message)
                if sent:
                    break
                await trio.sleep(0.001)
            assert sent == len(message)
            assert server.send_nowait(b"next") == 4
            while len(received) < len(message) + 4:
                received += client.read()
                await trio.sleep(0.001)
            assert received == message + b"next"

    trio.run(main)


def test_a_client_that_closes_without_close_notify_ends_the_stream(certificate) -> None:
    ca, context = certificate

    async def main() -> None:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        with ours:
            server, client = TlsStream(SocketStream(ours), context), Client(theirs, ca)
            await _handshaken(server, client)
            client.read()  # what the server sent after its handshake (TLS 1.3 tickets)
            theirs.close()
            assert await server.receive_some() == b""

    trio.run(main)


def test_a_failed_handshake_raises_ssl_error(certificate) -> None:
    _, context = certificate

    async def main() -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            server = TlsStream(SocketStream(ours), context)
            theirs.sendall(b"\x16\x03\x01\x00\x04junkjunk")
            with pytest.raises(ssl.SSLError):
                await server.handshake()

    trio.run(main)


def test_the_corpus_certificate_with_its_encrypted_key_loads_with_the_second_password() -> None:
    tls = Path(__file__).resolve().parents[1] / "conf_corpus" / "tls"
    context = server_context(Ssl(
        certificates=(Certificate(str(tls / "server.pem"), str(tls / "encrypted.key")),),
        passwords=(b"not-this-one", b"corpus-secret"),
    ))
    assert isinstance(context, ssl.SSLContext)
