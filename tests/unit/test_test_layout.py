"""The test tree itself: pytest imports test modules by their basename
(rootdir-relative, no packages), so two files of one name in tests/unit and
tests/e2e stop the whole suite at collection. Caught here, in the fast tier."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
