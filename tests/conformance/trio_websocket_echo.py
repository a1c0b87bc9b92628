"""trio-websocket's own echo server: the reference agent for the Autobahn run.

nginxws speaks WebSocket through trio-websocket (and wsproto below it), so
whatever this server scores is the ceiling nginxws inherits; the Autobahn
table in docs/conformance.md sets the two side by side. It is the echo
handler of trio-websocket's examples with nothing added: every message is
sent back as it came, pings are answered and closes completed by the library.

The message limit is raised to 16 MiB because Autobahn's 9.* cases send
messages of up to 16 MiB; with the library default (1 MiB) they would fail on
the limit, not on the protocol.

Usage: ``python trio_websocket_echo.py --port PORT [--host 127.0.0.1]``.
"""

import argparse

import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


async def echo(request: WebSocketRequest) -> None:
    """Accept any path and send every message back until the peer closes."""
    ws = await request.accept()
    while True:
        try:
            message = await ws.get_message()
            await ws.send_message(message)
        except ConnectionClosed:
            return


def main() -> None:
    """Serve the echo handler on the given loopback address until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        trio.run(
            lambda: serve_websocket(
                echo,
                args.host,
                args.port,
                ssl_context=None,
                max_message_size=MAX_MESSAGE_SIZE,
            )
        )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
