"""The module graph of nginxws points one way: no import cycle, and conf/ stays pure.

Edges come from every ``import`` / ``from ... import`` of an nginxws module
anywhere in a file (a deferred import inside a function is a dependency
too).  Importing ``a.b.c`` from outside ``a.b`` also runs ``a/b/__init__``,
so that is an edge as well: it is how a package's ``__init__`` can close a
cycle that the submodules alone do not show.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import nginxws

PACKAGE = Path(nginxws.__file__).resolve().parent
# The modules that do I/O: the configuration must not reach into them.
IO_MODULES = frozenset(
    f"nginxws.{name}" for name in ("worker", "worker_process", "master", "frontdoor", "pushlistener", "wsconn", "streams", "http",
                                    "redislink", "backend", "tls")
)


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _imported(name: str, path: Path, is_package: bool) -> set[str]:
    """The nginxws modules named by ``name``'s import statements."""
    package = name if is_package else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                named.add(full if full in MODULES else base)
    return {module for module in named if module in MODULES}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, (path, is_package) in MODULES.items():
        edges = set()
        for target in _imported(name, path, is_package):
            # Packages above ``name`` are already imported when it runs.
            edges |= {m for m in {target} | _ancestors(target) if m in MODULES and m not in _ancestors(name)}
        graph[name] = edges - {name}
    return graph


GRAPH = _graph()


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif step in on_path:
                return path[path.index(step) :] + [step]
            elif step not in done:
                path.append(step)
                on_path.add(step)
                stack.append(iter(sorted(graph[step])))
    return None


def test_the_graph_sees_the_known_edges() -> None:
    assert "nginxws.conf.model" in GRAPH["nginxws.worker"]
    assert "nginxws.conf" in GRAPH["nginxws.routing"]  # through nginxws.conf.model, from outside
    assert "nginxws.master" in GRAPH["nginxws.cli"]  # a deferred import counts


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_module_graph_has_no_cycle() -> None:
    assert _cycle(GRAPH) is None


# Pure modules of nginxws that the configuration shares with the runtime; they import
# nothing of nginxws but each other.
CONF_SHARED = frozenset(
    {"nginxws.errors", "nginxws.channel_names", "nginxws.inet", "nginxws.realip", "nginxws.access"}
)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("nginxws.conf")))
def test_conf_imports_only_conf_and_the_shared_pure_modules(name: str) -> None:
    reached = GRAPH[name]
    assert not reached & IO_MODULES
    assert reached <= {m for m in MODULES if m.startswith("nginxws.conf")} | CONF_SHARED


@pytest.mark.parametrize("name", sorted(CONF_SHARED))
def test_shared_pure_modules_import_nothing_of_nginxws_but_each_other(name: str) -> None:
    assert GRAPH[name] <= CONF_SHARED


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m != "nginxws.__main__"))
def test_every_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    # Whatever is imported first, the import order cannot trip over a cycle.
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    )
    assert result.returncode == 0, result.stderr


def test_nothing_of_redis_is_imported_unless_a_configuration_asks_for_it() -> None:
    # Only nginxws.redislink imports coredis, and only the master imports it,
    # when it runs a configuration with websocket_redis.
    modules = " ".join(sorted(m for m in MODULES if m not in ("nginxws.__main__", "nginxws.redislink")))
    check = f"import sys\nimport {modules.replace(' ', ', ')}\nprint('coredis' in sys.modules, 'anyio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert {m for m in MODULES if "nginxws.redislink" in GRAPH[m]} == {"nginxws.master"}
