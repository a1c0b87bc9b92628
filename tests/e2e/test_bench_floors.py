"""`bench/run.py floors` keeps working: at tiny counts it fills every row of its table and exits 0.

No figure is asserted (the machines are shared and noisy): a row must only hold a number, or
"—" where the piece could not be measured here (no interpreter with uvloop).
"""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
FIGURE = re.compile(r"[\d,]+(\.\d+)?|—")


@pytest.fixture(scope="module")
def smoke_run() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "floors", "--smoke"],
        check=False, capture_output=True, text=True, timeout=60, cwd=BENCH,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def row_labels() -> list[str]:
    sys.path.insert(0, str(BENCH))
    try:
        floors = importlib.import_module("floors")
        micro = importlib.import_module("floors_micro")
    finally:
        sys.path.remove(str(BENCH))
    return [scenario.label for scenario in floors.SCENARIOS] + list(micro.LABELS)


def table_rows(stdout: str) -> dict[str, str]:
    rows = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def test_smoke_run_exits_zero(smoke_run):
    assert smoke_run.returncode == 0, smoke_run.stdout[-3000:] + smoke_run.stderr[-3000:]


def test_every_piece_has_a_row_with_a_figure_or_a_dash(smoke_run, row_labels):
    rows = table_rows(smoke_run.stdout)
    for label in row_labels:
        assert label in rows, f"no row for {label!r} in:\n{smoke_run.stdout}"
        assert FIGURE.fullmatch(rows[label]), f"{label!r}: {rows[label]!r}"


def test_the_run_names_the_versions_it_measured(smoke_run):
    versions = next(line for line in smoke_run.stdout.splitlines() if line.startswith("Versions:"))
    for library in ("Python", "trio", "trio-websocket", "h11", "uvloop"):
        assert library in versions
