"""Each fixture's model and diagnostics equal the reviewed golden files beside it.

The goldens are written by ``python -m tests.goldens --update`` (see ``tests/goldens.py``); a
difference means the frontend's output changed: review the diff, then regenerate.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from migrate.frontend import translate
from proxy.model import from_dict

try:  # tests/ on sys.path (pytest's default import mode) or the repository root on it
    from goldens import (
        DIAG_GOLDEN,
        MODEL_GOLDEN,
        REPO,
        UPDATE_HINT,
        denormalize,
        fixture_dirs,
        normalize,
        render,
    )
except ImportError:  # pragma: no cover - depends on how pytest was started
    from tests.goldens import (  # type: ignore[no-redef]
        DIAG_GOLDEN,
        MODEL_GOLDEN,
        REPO,
        UPDATE_HINT,
        denormalize,
        fixture_dirs,
        normalize,
        render,
    )

FIXTURES = fixture_dirs()
IDS = [p.name for p in FIXTURES]


def test_fixtures_exist() -> None:
    """There are fixture trees to compare (the tests below are not vacuous)."""
    assert len(FIXTURES) >= 5


@pytest.mark.parametrize("fixture", FIXTURES, ids=IDS)
@pytest.mark.parametrize("name", [MODEL_GOLDEN, DIAG_GOLDEN])
def test_golden_matches(fixture: Path, name: str) -> None:
    """A fresh translation of the fixture gives exactly the golden text (paths made relative)."""
    golden = fixture / name
    assert golden.exists(), f"{golden.relative_to(REPO)} is missing: run {UPDATE_HINT}"
    expected = golden.read_text(encoding="utf-8")
    actual = render(fixture)[name]
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"{golden.relative_to(REPO)} (golden)",
            tofile=f"{golden.relative_to(REPO)} (fresh)", n=2))
        pytest.fail(f"{golden.relative_to(REPO)} differs from a fresh translation:\n{diff}\n"
                    f"If the change is intended, review it and run: {UPDATE_HINT}",
                    pytrace=False)


@pytest.mark.parametrize("fixture", FIXTURES, ids=IDS)
def test_golden_model_loads_back(fixture: Path) -> None:
    """The golden model JSON (paths restored) decodes to a Config equal to a fresh translation."""
    data = json.loads((fixture / MODEL_GOLDEN).read_text(encoding="utf-8"))
    config = from_dict(denormalize(data, fixture))
    assert config == translate(str(fixture / "nginx.conf")).config


@pytest.mark.parametrize("fixture", FIXTURES, ids=IDS)
def test_golden_paths_are_portable(fixture: Path) -> None:
    """Golden files hold no absolute path of the machine that wrote them."""
    for name in (MODEL_GOLDEN, DIAG_GOLDEN):
        text = (fixture / name).read_text(encoding="utf-8")
        assert str(REPO) not in text
    data = json.loads((fixture / MODEL_GOLDEN).read_text(encoding="utf-8"))
    assert data["main_file"] == "./nginx.conf"
    assert all(f == "." or f.startswith("./") for f in data["files"])


def test_path_normalisation_roundtrips(tmp_path: Path) -> None:
    """normalize/denormalize map the fixture dir to '.' and back, leaving other paths alone."""
    data = {"main_file": f"{tmp_path}/nginx.conf", "prefix": str(tmp_path),
            "files": [f"{tmp_path}/a.conf", "/etc/other.conf"],
            "x": [{"source": {"file": f"{tmp_path}/b/c.conf", "line": 3}}],
            "root": f"{tmp_path}/not-a-path-field",
            "sibling": {"file": f"{tmp_path}-other/x.conf"}}
    norm = normalize(data, tmp_path)
    assert norm == {"main_file": "./nginx.conf", "prefix": ".",
                    "files": ["./a.conf", "/etc/other.conf"],
                    "x": [{"source": {"file": "./b/c.conf", "line": 3}}],
                    "root": f"{tmp_path}/not-a-path-field",
                    "sibling": {"file": f"{tmp_path}-other/x.conf"}}
    assert denormalize(norm, tmp_path) == data
