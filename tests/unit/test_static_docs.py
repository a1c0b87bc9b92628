"""docs/static.md describes each static-file directive with the table's own
Syntax, Default and Context lines, so the two cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginxws.conf.directives import TABLE

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "static.md").read_text()
STATIC = "root alias index try_files types default_type autoindex etag if_modified_since log_not_found".split()


@pytest.mark.parametrize("name", STATIC)
def test_each_static_directive_has_the_table_s_reference_lines(name: str) -> None:
    directive = TABLE[name]
    first, *more = directive.syntax.split("\n")
    lines = [f"    Syntax:  {first}", *(f"             {line}" for line in more),
             f"    Default: {directive.default}", f"    Context: {directive.context_line}"]
    assert f"### {name}\n\n" + "\n".join(lines) + "\n" in DOCS
