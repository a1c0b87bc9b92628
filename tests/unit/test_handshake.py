"""The front door's check of an RFC 6455 opening handshake (the one parse of it)."""

import h11
import pytest

from nginxws.frontdoor import read_handshake

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    (b"Host", b"example.com"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Key", KEY),
    (b"Sec-WebSocket-Version", b"13"),
]


def request(method=b"GET", replace=None, drop=(), extra=()):
    headers = [(name, (replace or {}).get(name.lower(), value)) for name, value in GOOD
               if name.lower() not in drop]
    return h11.Request(method=method, target=b"/ws", headers=[*headers, *extra])


@pytest.mark.parametrize(
    ("req", "status"),
    [
        (request(), None),
        (request(replace={b"connection": b"keep-alive, Upgrade"}, extra=[(b"Upgrade", b"h2c")]), None),
        (request(replace={b"upgrade": b"WebSocket"}), None),
        (request(method=b"POST"), 405),
        (request(method=b"HEAD"), 400),
        (request(drop={b"upgrade"}), 426),
        (request(replace={b"upgrade": b"h2c"}), 426),
        (request(drop={b"connection"}), 400),
        (request(replace={b"sec-websocket-version": b"8"}), 426),
        (request(drop={b"sec-websocket-version"}), 426),
        (request(drop={b"sec-websocket-key"}), 400),
        (request(replace={b"sec-websocket-key": b"c2hvcnQ="}), 400),
        (request(replace={b"sec-websocket-key": b"not base64!"}), 400),
        # names nginx accepts are accepted (nothing decodes Host or a subprotocol)
        (request(replace={b"host": b"xn--zz"}), None),
        (request(extra=[(b"Sec-WebSocket-Protocol", b"chat\xff")]), None),
        # extension offers are read, so they must be ASCII
        (request(extra=[(b"Sec-WebSocket-Extensions", b"permessage-deflate\xff")]), 400),
        # the first key and version count, as for any repeated header
        (request(extra=[(b"Sec-WebSocket-Version", b"8")]), None),
        (request(drop={b"upgrade"}, replace={b"sec-websocket-version": b"8"}), 426),
    ],
)
def test_handshake_check_answers_as_nginxws_documents(req, status):
    result = read_handshake(req)
    assert (result if isinstance(result, int) else None) == status


def test_a_valid_handshake_gives_its_key_and_every_extension_offer_in_order():
    req = request(extra=[(b"Sec-WebSocket-Extensions", b"permessage-deflate; client_max_window_bits, x-foo"),
                         (b"Sec-WebSocket-Extensions", b"permessage-deflate")])
    assert read_handshake(req) == (
        KEY, ("permessage-deflate; client_max_window_bits", "x-foo", "permessage-deflate"))
