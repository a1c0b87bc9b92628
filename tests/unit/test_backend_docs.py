"""docs/backend.md cannot drift from the directive table, nor its example from
docs/backend.conf (the configuration the end-to-end tests run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nginxws.conf import load
from nginxws.conf.directives import SUPPORTED_DIRECTIVES

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = (DOCS / "backend.md").read_text()
BACKEND = [d for d in SUPPORTED_DIRECTIVES
           if d.name.startswith(("auth_request", "proxy_", "websocket_connect", "websocket_disconnect",
                                 "websocket_message")) or d.name == "internal"]


def test_the_backend_directives_are_these() -> None:
    assert len(BACKEND) == 14


@pytest.mark.parametrize("directive", BACKEND, ids=lambda d: d.name)
def test_every_backend_directive_has_nginx_reference_lines(directive) -> None:
    assert re.search(rf"^### .*\b{directive.name}\b", PAGE, re.M), directive.name
    assert f"{directive.syntax.splitlines()[0]}" in PAGE
    assert f"Context: {directive.context_line}" in PAGE
    if directive.default != "\u2014":
        assert directive.default in PAGE


def test_the_example_in_the_page_is_the_configuration_the_tests_run() -> None:
    snippet = re.search(r"```nginx\n(.*?)```", PAGE, re.S).group(1)
    conf = [line.strip() for line in (DOCS / "backend.conf").read_text().splitlines()]
    lines = iter(conf)
    for line in (line.strip() for line in snippet.splitlines()):
        if line:
            assert line in lines, f"{line!r} is not in docs/backend.conf (in this order)"


def test_the_example_configuration_loads(tmp_path) -> None:
    config = load(str(DOCS / "backend.conf"), prefix=str(tmp_path))
    chat = config.http.servers[0].locations[0]
    assert chat.backend is not None and chat.settings.auth_request == "/auth"
