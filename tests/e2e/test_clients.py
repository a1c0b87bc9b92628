"""The seed's own push clients: the real httpie and curl command lines.

The original README pushes with ``echo 123 | http http://ID@ADDR:PORT/ws``;
that exact line, and its curl equivalent, must deliver ``123\\n`` to the
client.  ``tests/browser/install.sh`` installs httpie and curl; when they
are missing these tests fail and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.clients import PUSH_URL, first_push_url
from websockets.sync.client import connect

pytestmark = pytest.mark.apt

BIN = Path(sys.executable).parent
INSTALL_HINT = "run tests/browser/install.sh (pip httpie, apt curl)"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def shell_env(tmp_path) -> dict[str, str]:
    """An environment for the command lines: the venv's programs first, no
    proxies (loopback only), and httpie's update check (a network fetch in a
    background process) turned off in a config directory of its own."""
    config = tmp_path / "httpie"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"disable_update_warnings": True}))
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HTTPIE_CONFIG_DIR=str(config),
               NO_PROXY="*", no_proxy="*")
    return env


def run_shell(line: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(line, shell=True, env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_httpie_as_in_the_original_readme(start_server, shell_env):
    if not (BIN / "http").exists():
        pytest.fail(f"httpie's http is not in {BIN}: {INSTALL_HINT}")
    server = start_server()
    with connect(server.url, open_timeout=5) as ws:
        push_url = first_push_url(ws)
        done = run_shell(f"echo 123 | http {push_url}", shell_env)
        assert done.returncode == 0, done.stderr
        assert ws.recv(timeout=5) == "123\n"
    server.wait_log(r'"POST /ws HTTP/1.1" 204 .*"HTTPie/', log="access.log")


def test_curl_with_the_id_as_basic_auth_user(start_server, shell_env):
    if shutil.which("curl", path=shell_env["PATH"]) is None:
        pytest.fail(f"curl is missing: {INSTALL_HINT}")
    server = start_server()
    with connect(server.url, open_timeout=5) as ws:
        url = PUSH_URL.fullmatch(first_push_url(ws))
        done = run_shell(
            f"echo 123 | curl -sS -w '%{{http_code}}' -u {url['id']}: --data-binary @- "
            f"http://{url['address']}{url['path']}",
            shell_env,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == "204"
        assert ws.recv(timeout=5) == "123\n"
