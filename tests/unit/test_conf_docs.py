"""docs/configuration.md cannot drift from the directive table."""

from __future__ import annotations

from pathlib import Path

import pytest

from nginxws.conf import reference
from nginxws.conf.directives import SUPPORTED_DIRECTIVES, TABLE

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_generated_reference_in_docs_is_current() -> None:
    begin, end = DOCS.index(reference.BEGIN), DOCS.index(reference.END) + len(reference.END)
    assert DOCS[begin:end] + "\n" == reference.render(), "run: python -m nginxws.conf.reference"


@pytest.mark.parametrize("directive", SUPPORTED_DIRECTIVES, ids=lambda d: d.name)
def test_every_supported_directive_is_documented_with_syntax_and_context(directive) -> None:
    assert f"### {directive.name}\n" in DOCS
    assert f"Syntax:  {directive.syntax.splitlines()[0]}" in DOCS
    assert f"Context: {directive.context_line}" in DOCS
    assert directive.doc


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_table_entry_is_named_in_docs(name: str) -> None:
    assert f"`{name}`" in DOCS or f"### {name}\n" in DOCS
