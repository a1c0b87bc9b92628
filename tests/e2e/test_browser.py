"""A real browser: headless Chromium loads the demo page from nginxws and
connects with its own ``WebSocket``.

The page is the one nginxws ships (``nginxws/demo/index.html``, from the
package the tests import), served by the ``root`` of ``sample.conf`` or of
a test configuration.  Playwright drives Debian's ``/usr/bin/chromium``
(never a downloaded browser).  ``tests/browser/install.sh`` installs both;
when they are missing these tests fail and say so, since CI installs them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from support.clients import PUSH_URL

import nginxws

pytestmark = pytest.mark.apt

CHROMIUM = Path("/usr/bin/chromium")
DEMO = Path(nginxws.__file__).resolve().parent / "demo"
REPOSITORY = Path(__file__).resolve().parents[2]
SCREENSHOT = REPOSITORY / "docs" / "demo" / "page.png"
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
RECONNECT_MS = 30_000  # the page's backoff: a few attempts while the server restarts
INSTALL_HINT = "run tests/browser/install.sh (apt chromium, pip playwright)"
DEMO_LOCATION = f"location / {{ root {DEMO}; }}"


def demo_conf(port: int, publish_port: int) -> str:
    """sample.conf as ``make run`` serves it, on free ports, its root the page of the package."""
    text = (REPOSITORY / "sample.conf").read_text()
    assert "root  nginxws/demo;" in text
    return (text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            .replace("127.0.0.1:8081", f"127.0.0.1:{publish_port}")
            .replace("root  nginxws/demo;", f"root  {DEMO};"))


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
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def open_demo(page, url: str) -> str:
    """Load the demo page; its push URL once the welcome arrived."""
    page.goto(url)
    page.wait_for_function("document.getElementById('push-url').textContent !== ''")
    assert page.text_content("#state") == "open"
    return page.text_content("#push-url")


def shown(page, count: int) -> list[tuple[str, str]]:
    """The first ``count`` messages the page lists, as (kind, text)."""
    page.wait_for_function(f"document.querySelectorAll('#messages li').length >= {count}")
    items = page.query_selector_all("#messages li")
    return [(item.get_attribute("class"), item.query_selector(".data").text_content()) for item in items]


def run_command(line: str) -> str:
    """A command line copied from the page, run as a user would paste it."""
    result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, (line, result.stderr)
    return result.stdout


def test_the_demo_page_of_sample_conf_shows_its_push_url_and_what_is_pushed_and_published(
        run_nginxws, free_port, page):
    port, publish_port = free_port(), free_port()
    run_nginxws(demo_conf(port, publish_port))
    push_url = open_demo(page, f"http://127.0.0.1:{port}/?pub=http://127.0.0.1:{publish_port}/pub")
    assert PUSH_URL.fullmatch(push_url)["host"] == "127.0.0.1"
    assert page.text_content("#url") == f"ws://127.0.0.1:{port}/ws?room=lobby"
    assert page.text_content("#room") == "lobby"
    push, binary, publish = (page.text_content(f"#{name}") for name in ("push-curl", "push-curl-binary", "publish-curl"))
    assert push == f"curl --data 'hello from curl' '{push_url}'"
    assert publish == f"curl --data 'hello, lobby' 'http://127.0.0.1:{publish_port}/pub?channel=lobby'"
    # What the page tells a user to paste does what it says.
    assert run_command(push) == ""  # 204
    assert run_command(binary) == ""
    # sample.conf runs a worker per core: the page's may or may not be the one that took the publish.
    assert re.fullmatch(r'\{"channel": "lobby", "local_subscribers": [01]\}\n', run_command(publish))
    assert httpx.post(push_url, content="héllo wörld 😀 ✓".encode(), timeout=5).status_code == 204
    assert shown(page, 4) == [
        ("text", "hello from curl"),
        ("binary", "binary 4 bytes: 00 01 fe ff"),
        ("text", "hello, lobby"),
        ("text", "héllo wörld 😀 ✓"),
    ]
    assert page.text_content("#last").endswith(" ago")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_the_page_reconnects_when_the_server_restarts(run_nginxws, free_port, page):
    port, publish_port = free_port(), free_port()
    conf = demo_conf(port, publish_port)
    server = run_nginxws(conf)
    first = open_demo(page, f"http://127.0.0.1:{port}/")
    assert server.stop() == []
    page.wait_for_function("document.getElementById('state').textContent === 'waiting'")
    assert "reconnecting in" in page.text_content("#detail")
    run_nginxws(conf)
    page.wait_for_function(f"document.getElementById('push-url').textContent !== {first!r}", timeout=RECONNECT_MS)
    assert page.text_content("#state") == "open"
    second = page.text_content("#push-url")
    assert httpx.post(second, content=b"after the restart", timeout=5).status_code == 204
    assert shown(page, 1) == [("text", "after the restart")]


@pytest.mark.parametrize("websocket", [
    "",
    # Chromium offers permessage-deflate; it must take the server's answer
    # (no context takeover either way) and inflate every push.
    "deflate=on",
    "deflate=on deflate_no_context_takeover=off deflate_window_bits=9",
])
def test_browser_shows_pushed_text_utf8_and_binary(start_server, page, websocket):
    server = start_server(websocket=websocket, locations=DEMO_LOCATION)
    push_url = open_demo(page, f"http://127.0.0.1:{server.port}/")
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


def test_browser_pongs_keep_it_alive_past_idleintvl(start_server, page):
    server = start_server(websocket="pingintvl=300 idleintvl=900", locations=DEMO_LOCATION)
    push_url = open_demo(page, f"http://127.0.0.1:{server.port}/")
    # The page never sends anything itself: only its automatic pongs answer
    # the server's pings.  Without them it would be closed 1001 after 0.9 s.
    page.wait_for_timeout(3000)
    assert page.text_content("#state") == "open"
    assert page.text_content("#uptime") != "0 s (not connected)"
    assert httpx.post(push_url, content=b"still here", timeout=5).status_code == 204
    assert shown(page, 1) == [("text", "still here")]


def test_browser_connects_with_wss_and_shows_a_push_sent_over_https(browser, start_server, tmp_path):
    """Chromium trusts the test's throwaway certificate by its key's hash
    (``--ignore-certificate-errors-spki-list``, honoured with a user data
    directory, which Playwright always gives), loads the demo page from
    nginxws over ``https://`` (a static file sent through TLS), connects with
    ``wss://`` and shows a push sent to its ``https://`` push URL."""
    from support.certs import Authority

    ca = Authority(tmp_path / "tls")
    issued = ca.issue("localhost")
    server = start_server(listen="127.0.0.1:{port} ssl", websocket="push_ssl=on", locations=DEMO_LOCATION,
                          server=f"ssl_certificate {issued.cert}; ssl_certificate_key {issued.key};")
    flags = [*CHROMIUM_FLAGS, f"--ignore-certificate-errors-spki-list={issued.spki_hash}"]
    # A browser of its own (the module's has no such flag), from the module's Playwright.
    trusting = browser.browser_type.launch(executable_path=str(CHROMIUM), headless=True, args=flags,
                                           timeout=WAIT_MS)
    try:
        page = trusting.new_context().new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"https://127.0.0.1:{server.port}/")
        page.wait_for_function("document.getElementById('push-url').textContent !== ''")
        assert page.text_content("#state") == "open"
        push_url = page.text_content("#push-url")
        assert push_url.startswith("https://")
        answer = httpx.post(push_url, content="über TLS 🔒".encode(), verify=ca.client_context(), timeout=5)
        assert answer.status_code == 204
        assert shown(page, 1) == [("text", "über TLS 🔒")]
    finally:
        trusting.close()
    server.wait_log(r'"GET /ws\?room=lobby HTTP/1.1" 101 ', log="access.log")
