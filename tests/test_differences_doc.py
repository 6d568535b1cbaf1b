"""The list of differences from nginx lives in proxy/differences.py and docs/differences.md."""

from __future__ import annotations

from pathlib import Path

from proxy.differences import DIFFERENCES, render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "differences.md"


def test_doc_matches_table() -> None:
    """docs/differences.md is exactly what the table renders (regenerate with
    `python -m proxy.differences > docs/differences.md`)."""
    assert DOC.read_text() == render_markdown()


def test_entries_are_complete() -> None:
    """Every entry has a unique key, a kind, and says what both sides do and why."""
    keys = [d.key for d in DIFFERENCES]
    assert len(keys) == len(set(keys))
    for d in DIFFERENCES:
        assert d.kind in ("deliberate", "gap")
        assert d.nginx and d.tern and d.why and d.area
