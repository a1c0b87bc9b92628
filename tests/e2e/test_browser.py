"""A real browser: headless Chromium connects with its own ``WebSocket``.

The demo page (``docs/demo/index.html``) is served by a tiny static server on
loopback; Playwright drives Debian's ``/usr/bin/chromium`` (never a
downloaded browser).  ``tests/browser/install.sh`` installs both; when they
are missing these tests fail and say so, since CI installs them.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.apt

CHROMIUM = Path("/usr/bin/chromium")
DEMO = Path(__file__).resolve().parents[2] / "docs" / "demo"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WAIT_MS = 10_000
INSTALL_HINT = "run tests/browser/install.sh (apt chromium, pip playwright)"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def demo_url():
    """``demo_url(ws_url)``: the demo page's address on a static server of its own."""
    handler = functools.partial(_QuietHandler, directory=str(DEMO))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    yield lambda ws_url: f"http://127.0.0.1:{port}/index.html?ws={quote(ws_url, safe='')}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: {INSTALL_HINT}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the playwright package is missing: {INSTALL_HINT}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, timeout=WAIT_MS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def open_demo(page, demo_url, server) -> str:
    """Load the demo page on ``server``; its push URL once the welcome arrived."""
    page.goto(demo_url(server.url))
    page.wait_for_function("document.getElementById('push-url').textContent !== ''")
    assert page.text_content("#state") == "open"
    return page.text_content("#push-url")


def shown(page, count: int) -> list[tuple[str, str]]:
    """The first ``count`` messages the page lists, as (kind, text)."""
    page.wait_for_function(f"document.querySelectorAll('#messages li').length >= {count}")
    items = page.query_selector_all("#messages li")
    return [(item.get_attribute("class"), item.text_content()) for item in items]


@pytest.mark.parametrize("websocket", [
    "",
    # Chromium offers permessage-deflate; it must take the server's answer
    # (no context takeover either way) and inflate every push.
    "deflate=on",
    "deflate=on deflate_no_context_takeover=off deflate_window_bits=9",
])
def test_browser_shows_pushed_text_utf8_and_binary(start_server, demo_url, page, websocket):
    server = start_server(websocket=websocket)
    push_url = open_demo(page, demo_url, server)
    agreed = page.evaluate("ws.extensions")  # the demo page's WebSocket
    assert agreed.startswith("permessage-deflate") if "deflate=on" in websocket else agreed == ""
    pushes = [
        ("hello browser".encode(), {}),
        ("héllo wörld 😀🎉 ✓".encode(), {}),
        (bytes([0, 1, 0x7F, 0x80, 0xFE, 0xFF]), {"Content-Type": "application/octet-stream"}),
    ]
    for body, headers in pushes:
        assert httpx.post(push_url, content=body, headers=headers, timeout=5).status_code == 204
    assert shown(page, 3) == [
        ("text", "hello browser"),
        ("text", "héllo wörld 😀🎉 ✓"),
        ("binary", "binary 6 bytes: 00 01 7f 80 fe ff"),
    ]


def test_browser_pongs_keep_it_alive_past_idleintvl(start_server, demo_url, page):
    server = start_server(websocket="pingintvl=300 idleintvl=900")
    push_url = open_demo(page, demo_url, server)
    # The page never sends anything itself: only its automatic pongs answer
    # the server's pings.  Without them it would be closed 1001 after 0.9 s.
    page.wait_for_timeout(3000)
    assert page.text_content("#state") == "open"
    assert httpx.post(push_url, content=b"still here", timeout=5).status_code == 204
    assert shown(page, 1) == [("text", "still here")]


def test_browser_connects_with_wss_and_shows_a_push_sent_over_https(browser, start_server, demo_url, tmp_path):
    """Chromium trusts the test's throwaway certificate by its key's hash
    (``--ignore-certificate-errors-spki-list``, honoured with a user data
    directory, which Playwright always gives), connects with ``wss://`` and
    shows a push sent to its ``https://`` push URL."""
    from support.certs import Authority

    ca = Authority(tmp_path / "tls")
    issued = ca.issue("localhost")
    server = start_server(listen="127.0.0.1:{port} ssl", websocket="push_ssl=on",
                          server=f"ssl_certificate {issued.cert}; ssl_certificate_key {issued.key};")
    flags = [*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={issued.spki_hash}"]
    # A browser of its own (the module's has no such flag), from the module's Playwright.
    trusting = browser.browser_type.launch(executable_path=str(CHROMIUM), headless=True, args=flags,
                                           timeout=WAIT_MS)
    try:
        page = trusting.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(demo_url(f"wss://127.0.0.1:{server.port}/ws"))
        page.wait_for_function("document.getElementById('push-url').textContent !== ''")
        assert page.text_content("#state") == "open"
        push_url = page.text_content("#push-url")
        assert push_url.startswith("https://")
        answer = httpx.post(push_url, content="über TLS 🔒".encode(), verify=ca.client_context(), timeout=5)
        assert answer.status_code == 204
        assert shown(page, 1) == [("text", "über TLS 🔒")]
    finally:
        trusting.close()
    server.wait_log(r'"GET /ws HTTP/1.1" 101 ', log="access.log")
