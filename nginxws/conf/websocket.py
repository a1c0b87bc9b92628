"""The ``websocket`` directive's arguments -> the model's WebSocket.

Forms accepted (all keys optional, in any order)::

    websocket;
    websocket pingintvl=10000 idleintvl=15000;      # the original module's form
    websocket 10000 15000;                          # positional: pingintvl idleintvl
    websocket pingintvl=30s idleintvl=1m30s max_message_size=64k welcome=off
              push_listen=127.0.0.1:9000 push_host=push.example.com,10.0.0.1
              push_queue=128;
    websocket deflate=on deflate_window_bits=10 deflate_no_context_takeover=on;
    websocket push_ssl=on;                          # pushes over TLS, with the server's certificate

Bare numbers are milliseconds, as in the original module; nginx time units
(``500ms``, ``30s``, ``5m``, ``1h``, ``1m30s``) are accepted too.
"""

from __future__ import annotations

from collections.abc import Callable

from nginxws.conf.address import AddressError, Resolve, parse_address, resolve_host
from nginxws.conf.model import PushListen, WebSocket
from nginxws.conf.values import parse_flag, parse_int, parse_msec, parse_size

POSITIONAL = ("pingintvl", "idleintvl")


class WebSocketArgError(ValueError):
    """A bad ``websocket`` argument; the text is nginx's message."""


def _interval(text: str) -> float | None:
    msec = parse_int(text)
    if msec is None:
        msec = parse_msec(text)
    return msec / 1000 if msec else None


def _size(text: str) -> int | None:
    size = parse_size(text)
    return size if size else None


def _push_listen(text: str, resolve: Resolve = resolve_host) -> PushListen | None:
    try:
        address = parse_address(text, default_port=0, allow_zero_port=True, wildcard=None, resolve=resolve)
    except AddressError:
        return None
    if address.unix is not None:
        return None
    return PushListen(address.host, address.port or 0, address.addresses)


def _push_host(text: str) -> tuple[str, ...] | None:
    names = tuple(text.split(","))
    return names if all(names) else None


def _positive(text: str) -> int | None:
    number = parse_int(text)
    return number if number else None


def _window_bits(text: str) -> int | None:
    # RFC 7692 allows 8 to 15; zlib's raw deflate streams need at least 9.
    number = parse_int(text)
    return number if number is not None and 9 <= number <= 15 else None


# key (also the WebSocket field it sets) -> parser, returning None for an invalid value
KEYS: dict[str, Callable[[str], object | None]] = {
    "pingintvl": _interval,
    "idleintvl": _interval,
    "max_message_size": _size,
    "welcome": parse_flag,
    "push_listen": _push_listen,
    "push_host": _push_host,
    "push_queue": _positive,
    "deflate": parse_flag,
    "deflate_window_bits": _window_bits,
    "deflate_no_context_takeover": parse_flag,
    "push_ssl": parse_flag,
}


def parse_websocket(args: tuple[str, ...], resolve: Resolve = resolve_host) -> WebSocket:
    """Build the WebSocket settings from the directive's arguments.

    ``resolve`` checks a ``push_listen`` host name.

    Raises WebSocketArgError(``invalid parameter "x"`` / ``invalid value "x"``
    / ``duplicate parameter "x"``).
    """
    values: dict[str, object] = {}
    positional = 0
    for arg in args:
        key, eq, text = arg.partition("=")
        if not eq:
            if positional >= len(POSITIONAL):
                raise WebSocketArgError(f'invalid parameter "{arg}"')
            key, text = POSITIONAL[positional], arg
            positional += 1
        if key not in KEYS:
            raise WebSocketArgError(f'invalid parameter "{arg}"')
        if key in values:
            raise WebSocketArgError(f'duplicate parameter "{arg}"')
        value = _push_listen(text, resolve) if key == "push_listen" else KEYS[key](text)
        if value is None:
            raise WebSocketArgError(f'invalid value "{arg}"')
        values[key] = value
    return WebSocket(**values)  # type: ignore[arg-type]
