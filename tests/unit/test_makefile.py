"""The Makefile keeps its promises (README.md, docs/testing.md), read from
``make --dry-run --always-make``: the commands each target would run, its
prerequisites' included, none executed.

``make run`` installs the server's dependencies, not the test tools;
``make test-python`` needs neither apt-get nor Python 2.7; ``make test``
says that it needs both before it runs either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
NEEDS_SYSTEM = ("apt-get", "install.sh", "install-autobahn", "run_autobahn", "python2", "2.7")
# Run by make test, the suite must not hand its own make's flags down.
ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def dry_run(target: str) -> list[str]:
    assert shutil.which("make"), "make is needed to build the project"
    done = subprocess.run(["make", "--dry-run", "--always-make", "--no-print-directory", target], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=60, env=ENV)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_make_run_installs_only_what_the_server_needs_and_runs_it_with_this_prefix() -> None:
    commands = dry_run("run")
    assert any("dependencies | .venv/bin/pip install" in line for line in commands), commands
    assert not any(" test | " in line or ".[test]" in line for line in commands), commands
    assert commands[-1] == f".venv/bin/nginxws -p {REPOSITORY}/ -c sample.conf"


def test_make_run_reinstalls_the_package_only_when_its_files_change() -> None:
    done = subprocess.run(["make", "--print-data-base", "--question", ".venv/.installed"], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=60, env=ENV)
    rule = next(line for line in done.stdout.splitlines() if line.startswith(".venv/.installed:"))
    for prerequisite in ("pyproject.toml", "nginxws/cli.py", "nginxws/conf/builder.py", "grammar/nginx.lark"):
        assert f" {prerequisite}" in rule, rule


@pytest.mark.parametrize("word", NEEDS_SYSTEM)
def test_make_test_python_needs_neither_apt_get_nor_python_2_7(word: str) -> None:
    commands = dry_run("test-python")
    assert not [line for line in commands if word in line]
    assert commands[-1] == 'NGINXWS_TEST_INSTALLED=1 .venv/bin/python -P -m pytest -m "not apt"'


def test_make_test_says_what_it_needs_before_it_gets_it() -> None:
    commands = dry_run("test")
    first_system = next(i for i, line in enumerate(commands)
                        if not line.startswith("echo ") and any(word in line for word in NEEDS_SYSTEM))
    said = " ".join(line for line in commands[:first_system] if line.startswith("echo "))
    assert "apt-get" in said and "CPython 2.7" in said and "make test-python" in said, commands
