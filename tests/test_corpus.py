"""Every config of the shared corpus goes through the frontend and the CLI without crashing.

The corpus (``../shared/corpus``: public configs from GitHub projects and nginx's own test
suite) is real-world input: the point is robustness (no exception, diagnostics that point at a
file Tern read) and a census of how much of it Tern supports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from migrate.analyze import Analysis
from migrate.frontend import coverage, translate
from proxy.model import Support, from_json, to_json

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
PARTS = ("public", "nginx-tests-configs")
SKIP_SUFFIXES = {".md", ".jsonl"}
CLI_SAMPLE = 20


def corpus_files() -> list[Path]:
    """Every corpus file (documentation and manifests excepted), sorted."""
    return sorted(p for part in PARTS for p in (CORPUS / part).rglob("*")
                  if p.is_file() and p.suffix not in SKIP_SUFFIXES)


pytestmark = pytest.mark.skipif(not (CORPUS / "public").is_dir(),
                                reason=f"corpus not found at {CORPUS}")


def _problems(path: Path, analysis: Analysis) -> list[str]:
    out: list[str] = []
    known = set(analysis.config.files) | {str(path), analysis.config.main_file}
    for d in analysis.diagnostics:
        if not d.file or d.line < 0 or d.file not in known:
            out.append(f"{path}: bad diagnostic location {d.file!r}:{d.line} ({d.message})")
        if not d.message:
            out.append(f"{path}: empty diagnostic message at {d.file}:{d.line}")
    for e in analysis.census:
        if e.file not in known or e.line < 1:
            out.append(f"{path}: census entry {e.name} at {e.file}:{e.line}")
    if not analysis.has_errors:
        try:
            back = from_json(to_json(analysis.config))
        except Exception as exc:  # noqa: BLE001 - reported below with the file
            out.append(f"{path}: model JSON does not read back: {exc!r}")
        else:
            if back != analysis.config:
                out.append(f"{path}: model JSON round trip changed the model")
    return out


def test_corpus_translates_without_exceptions() -> None:
    """Every corpus file translates without an exception; diagnostics point at files read."""
    files = corpus_files()
    assert len(files) > 100, f"only {len(files)} corpus files under {CORPUS}"
    problems: list[str] = []
    counts: Counter[str] = Counter()
    with_errors = 0
    for path in files:
        try:
            analysis = translate(str(path))
        except Exception as exc:  # noqa: BLE001 - every crash is collected and reported
            problems.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        problems += _problems(path, analysis)
        counts.update(coverage(analysis).counts)
        with_errors += analysis.has_errors
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:50])

    total = sum(counts.values())
    shares = {lvl.value: counts[lvl.value] / total for lvl in Support}
    print(f"\ncorpus: {len(files)} files, {with_errors} with errors, {total} directive "
          "occurrences")
    for level, share in shares.items():
        print(f"  {level:<12} {counts[level]:>7}  {share:6.1%}")
    # sane totals: a real corpus, mostly supported, every level seen
    assert total > 10_000
    assert set(counts) <= {lvl.value for lvl in Support}
    assert all(counts[lvl.value] > 0 for lvl in Support)
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    assert shares["supported"] > 0.5
    assert shares["unsupported"] < 0.35
    assert with_errors < len(files) / 2


def _sample(files: list[Path], n: int) -> list[Path]:
    """n files spread evenly over the sorted list (deterministic)."""
    step = max(1, len(files) // n)
    return files[::step][:n]


@pytest.mark.parametrize("index", range(CLI_SAMPLE))
def test_cli_check_on_corpus_sample(index: int) -> None:
    """``tern check --format json`` on a corpus sample: exit 0/1/2, JSON out, no traceback."""
    files = _sample(corpus_files(), CLI_SAMPLE)
    if index >= len(files):
        pytest.skip("corpus smaller than the sample")
    path = files[index]
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "check", "--format", "json",
                           str(path)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          errors="surrogateescape")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode in (0, 1, 2), (path, proc.returncode, proc.stderr)
    doc = json.loads(proc.stdout)
    assert doc["summary"]["exit_code"] == proc.returncode
    assert doc["config"]
