"""Layering rules of the packages, checked on the import statements of every source file.

- ``proxy/model/**`` imports only the standard library and modules inside ``proxy.model``;
- nothing in ``proxy/`` imports ``shadow`` or ``migrate``;
- nothing in ``shadow/`` imports ``migrate``.

Imports are read with ``ast`` (so imports inside functions and ``TYPE_CHECKING`` blocks count),
relative imports are resolved to absolute module names first.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STDLIB = frozenset(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    """Dotted module name of a source file below the repository root."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> Iterator[
        tuple[int, str]]:
    """Yield (line, absolute module name) for every import in ``source``.

    ``from pkg import name`` yields ``pkg.name`` as well as ``pkg`` (``name`` may be a submodule).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".") if package else []
                up = node.level - 1
                if up > len(base_parts):
                    yield node.lineno, "." * node.level + (node.module or "")
                    continue
                base_parts = base_parts[: len(base_parts) - up]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}" if base else alias.name


NO_IO = frozenset({"asyncio", "socket", "ssl", "selectors", "uvloop", "time"})
"""What sans-I/O code must not touch: sockets, event loops, clocks (time is an argument)."""


def _top(name: str) -> str:
    return name.split(".")[0]


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(source: str, module: str, *, is_package: bool = False) -> list[str]:
    """Every import of ``module`` (given as source text) that breaks a layering rule."""
    bad: list[str] = []
    for line, name in imported_modules(source, module, is_package=is_package):
        where = f"{module}:{line} imports {name}"
        if name.startswith("."):
            bad.append(f"{where} (relative import above the top package)")
        elif _inside(module, "proxy.model"):
            # "from __future__ import annotations" yields "__future__.annotations": the top counts
            if _top(name) not in STDLIB and not _inside(name, "proxy.model"):
                bad.append(f"{where} (proxy.model may use only the standard library)")
        elif _inside(module, "proxy"):
            if _top(name) in ("shadow", "migrate"):
                bad.append(f"{where} (proxy must not depend on shadow or migrate)")
            if _inside(module, "proxy.protocol") and _top(name) in NO_IO:
                bad.append(f"{where} (protocol adapters are sans-I/O: no {_top(name)})")
        elif _inside(module, "shadow"):
            if _top(name) == "migrate":
                bad.append(f"{where} (shadow must not depend on migrate)")
    return bad


def source_files() -> list[Path]:
    """Every .py file of the three packages."""
    return sorted(p for pkg in ("proxy", "shadow", "migrate") for p in (REPO / pkg).rglob("*.py"))


def test_scanner_sees_the_packages() -> None:
    """The scan covers the model, the proxy and migrate (a scan of nothing would pass vacuously)."""
    names = {module_name(p) for p in source_files()}
    assert {"proxy.model", "proxy.model.nodes", "proxy.model.codec", "proxy.routing",
            "migrate.analyze", "migrate.cli"} <= names


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("proxy.model.fake", "import lark\n"),
        ("proxy.model.fake", "from click import echo\n"),
        ("proxy.model.fake", "from .. import routing\n"),
        ("proxy.model.fake", "from ..routing import Router\n"),
        ("proxy.model.fake", "def f():\n    import migrate.cli\n"),
        ("proxy.model.fake", "import proxy.interp\n"),
        ("proxy.routing", "from migrate.analyze import analyze\n"),
        ("proxy.routing", "from ..migrate import loader\n"),
        ("proxy.engine.fake", "import shadow\n"),
        ("proxy.protocol.fake", "import asyncio\n"),
        ("proxy.protocol.fake", "from socket import socket\n"),
        ("proxy.protocol.fake", "import time\n"),
        ("shadow.fake", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from migrate import frontend\n"),
        ("shadow.fake", "from ...outside import x\n"),
    ],
)
def test_scanner_flags_bad_imports(module: str, source: str) -> None:
    """The scanner reports each forbidden import in a synthetic source (the check can fail)."""
    assert violations(source, module), f"not flagged: {module}: {source!r}"


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("proxy.model.fake", "from __future__ import annotations\nimport enum, json\n"
                             "from dataclasses import dataclass\nfrom . import nodes\n"
                             "from ._base import SourceSpan\nfrom .nodes import Lit\n"),
        ("proxy.model.fake", "import proxy.model.nodes\n"),
        ("proxy.routing", "from .model import Config\nfrom .regex import compile_pcre\n"),
        ("shadow.fake", "from proxy.model import Config\nimport h2\n"),
        ("migrate.fake", "from proxy import model\nimport shadow\nimport lark\n"),
    ],
)
def test_scanner_accepts_allowed_imports(module: str, source: str) -> None:
    """Standard library, in-package relative imports and downward imports are not flagged."""
    assert violations(source, module) == []


def test_layering_rules_hold() -> None:
    """No source file under proxy/, shadow/ or migrate/ breaks a layering rule."""
    bad: list[str] = []
    for path in source_files():
        bad += violations(path.read_text(encoding="utf-8"), module_name(path),
                          is_package=path.name == "__init__.py")
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_model_import_is_cheap() -> None:
    """Importing proxy.model loads none of the heavy third-party packages."""
    code = ("import proxy.model, sys; bad=[m for m in sys.modules if m.split('.')[0] in "
            "('h2','aioquic','click','jinja2','lark','crossplane','httptools')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_cheap_import_check_can_fail() -> None:
    """The same subprocess check fails when a heavy package is imported (it is not vacuous)."""
    code = ("import proxy.model, lark, sys; bad=[m for m in sys.modules if m.split('.')[0] in "
            "('h2','aioquic','click','jinja2','lark','crossplane','httptools')]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "lark" in proc.stderr
