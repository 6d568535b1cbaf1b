"""Golden files for the fixture trees: the model JSON and the diagnostics of each fixture.

For every ``fixtures/nginx/<name>/nginx.conf`` two files sit beside it:

- ``expected.model.json``: ``to_json`` of the translated model;
- ``expected.diagnostics.json``: the list of ``Diagnostic.to_json()`` dicts.

Paths are made portable: the absolute fixture directory is written as ``.`` in every path field
(``file``, ``main_file``, ``prefix``, ``files``, ``includes``), and put back when a golden is read.

Regenerate after reviewing a change with::

    python -m tests.goldens --update
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from migrate.frontend import translate
from proxy.model import to_json

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures" / "nginx"
MODEL_GOLDEN = "expected.model.json"
DIAG_GOLDEN = "expected.diagnostics.json"
UPDATE_HINT = "python -m tests.goldens --update"

_PATH_KEYS = frozenset({"file", "main_file", "prefix"})
_PATH_LIST_KEYS = frozenset({"files", "includes"})


def fixture_dirs() -> list[Path]:
    """Every fixture tree (a directory holding ``nginx.conf``), sorted by name."""
    return sorted(p.parent for p in FIXTURES.glob("*/nginx.conf"))


def _map_path(value: str, old: str, new: str) -> str:
    if value == old:
        return new
    if value.startswith(old + "/"):
        return new + value[len(old):]
    return value


def _rewrite_paths(data: Any, old: str, new: str) -> Any:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in _PATH_KEYS and isinstance(value, str):
                out[key] = _map_path(value, old, new)
            elif key in _PATH_LIST_KEYS and isinstance(value, list):
                out[key] = [_map_path(v, old, new) if isinstance(v, str) else v for v in value]
            else:
                out[key] = _rewrite_paths(value, old, new)
        return out
    if isinstance(data, list):
        return [_rewrite_paths(v, old, new) for v in data]
    return data


def normalize(data: Any, fixture: Path) -> Any:
    """Replace the absolute fixture directory by ``.`` in every path field."""
    return _rewrite_paths(data, str(fixture), ".")


def denormalize(data: Any, fixture: Path) -> Any:
    """Inverse of ``normalize``: ``.`` back to the absolute fixture directory."""
    return _rewrite_paths(data, ".", str(fixture))


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(fixture: Path) -> dict[str, str]:
    """The golden texts of one fixture, freshly generated: ``{file name: text}``."""
    analysis = translate(str(fixture / "nginx.conf"))
    model = normalize(json.loads(to_json(analysis.config)), fixture)
    diags = normalize([d.to_json() for d in analysis.diagnostics], fixture)
    return {MODEL_GOLDEN: _dump(model), DIAG_GOLDEN: _dump(diags)}


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite (``--update``) the golden files; exit 1 when some differ."""
    parser = argparse.ArgumentParser(prog="python -m tests.goldens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = parser.parse_args(argv)
    stale = 0
    for fixture in fixture_dirs():
        for name, text in render(fixture).items():
            path = fixture / name
            old = path.read_text(encoding="utf-8") if path.exists() else None
            if old == text:
                continue
            stale += 1
            rel = path.relative_to(REPO)
            if args.update:
                path.write_text(text, encoding="utf-8")
                print(f"updated {rel}")
            else:
                print(f"differs: {rel}")
    if stale and not args.update:
        print(f"{stale} golden file(s) differ; review, then run: {UPDATE_HINT}")
        return 1
    if not stale:
        print("golden files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
