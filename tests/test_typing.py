"""The leaf packages (model, protocol adapters, responses, access log, balancers) pass
``mypy --strict`` with ``warn_unused_ignores`` (files listed in pyproject's [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mypy_strict_on_leaf_packages() -> None:
    """mypy finds no error in the files pyproject.toml lists."""
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout
