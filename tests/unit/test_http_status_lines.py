"""Status lines and stock error pages read as nginx writes them.

nginx's reason phrases (``ngx_http_status_lines``) are not all the RFC's:
``405 Not Allowed``, ``408 Request Time-out``, ``503 Service Temporarily
Unavailable``.  Both the front door (h11) and the push listener (bytes) must
write nginx's, and the error pages carry nginx's titles
(``ngx_http_special_response.c``).
"""

from __future__ import annotations

import h11
import pytest
import trio

from nginxws.http import error_page, response_head, send_response

# What nginx 1.27 writes, copied from its two tables; 101 and 426, which
# nginx has no line for, keep the RFC's phrase.
STATUS_LINES = {
    101: "Switching Protocols",
    200: "OK",
    202: "Accepted",
    204: "No Content",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Not Allowed",
    408: "Request Time-out",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    426: "Upgrade Required",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
PAGE_TITLES = {302: "302 Found", 401: "401 Authorization Required", 405: "405 Not Allowed",
               408: "408 Request Time-out", 494: "400 Request Header Or Cookie Too Large"}


class Recorder(trio.abc.Stream):
    def __init__(self) -> None:
        self.written = b""

    async def send_all(self, data) -> None:
        self.written += bytes(data)

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes=None) -> bytes:
        return b""

    async def aclose(self) -> None:
        pass


def front_door_answer(status: int) -> bytes:
    """What the front door writes for an empty answer with ``status`` (through h11)."""
    http = h11.Connection(h11.SERVER)
    http.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(http.next_event(), h11.Request)
    stream = Recorder()
    trio.run(lambda: send_response(http, stream, status, [], b"", tokens=False))
    return stream.written


@pytest.mark.parametrize(("status", "phrase"), [(s, p) for s, p in STATUS_LINES.items() if s >= 200])
def test_the_front_door_writes_nginx_s_status_line(status: int, phrase: str) -> None:
    assert front_door_answer(status).startswith(f"HTTP/1.1 {status} {phrase}\r\n".encode())


@pytest.mark.parametrize(("status", "phrase"), STATUS_LINES.items())
def test_the_push_listener_writes_nginx_s_status_line(status: int, phrase: str) -> None:
    head = response_head(status, (), 0, False, False)
    assert head.startswith(f"HTTP/1.1 {status} {phrase}\r\n".encode())


@pytest.mark.parametrize(("status", "title"), PAGE_TITLES.items())
def test_error_pages_carry_nginx_s_titles(status: int, title: str) -> None:
    page = error_page(status, tokens=False).decode()
    assert f"<head><title>{title}</title></head>" in page
