"""Tern's lint against gixy-ng (PyPI ``gixy-ng``, the maintained gixy fork) on the lint fixtures.

gixy-ng runs as a subprocess (``python -m gixy -f json``) on every ``fixtures/lint/*/nginx.conf``.
Its plugins that match a Tern check are mapped to Tern's codes (``PLUGIN_TO_CODE``); the others
check things outside Tern's lint (``UNMAPPED``, listed in docs/lint.md). For every fixture and
code, ``ROWS`` records the lines each tool reports. Where the two disagree, each differing line
carries the id of its explanation in docs/lint.md ("Where Tern and gixy-ng differ").

The table was recorded with gixy-ng ``GIXY_VERSION``; another version may report differently,
which fails the comparison on purpose (update the table and the docs together).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from migrate.frontend import translate
from migrate.lint import CHECKS, lint

REPO = Path(__file__).resolve().parents[1]
LINT_FIXTURES = REPO / "fixtures" / "lint"
DOCS = REPO / "docs" / "lint.md"

GIXY_VERSION = "0.2.59"
"""gixy-ng version the table below was recorded with (``pip install gixy-ng==0.2.59``)."""

PLUGIN_TO_CODE = {
    "alias_traversal": "lint-alias-traversal",
    "add_header_redefinition": "lint-add-header-redefinition",
    "host_spoofing": "lint-host-spoofing",
    "ssrf": "lint-ssrf",
    "http_splitting": "lint-header-splitting",
    "origins": "lint-unanchored-regex",
    "missing_resolver": "lint-missing-resolver",
    "weak_ssl_tls": "lint-weak-tls",
    "if_is_evil": "lint-if-is-evil",
}
"""gixy-ng plugins that check what a Tern lint code checks."""

UNMAPPED = frozenset({
    "version_disclosure", "worker_rlimit_nofile_vs_connections", "try_files_is_evil_too",
    "hsts_header", "valid_referers", "unanchored_regex", "default_server_flag",
    "return_bypasses_allow_deny", "low_keepalive_requests", "proxy_pass_normalized",
    "add_header_content_type", "add_header_multiline", "allow_without_deny", "error_log_off",
    "filesystem_root_exposure", "hash_without_default", "http2_misdirected_request",
    "invalid_regex", "nginx_cves", "quic_bpf_reuseport", "regex_exact_match", "regex_redos",
    "resolver_external", "ssl_ecdh_curve", "ssl_stapling_letsencrypt",
    "ssl_stapling_without_resolver", "status_page_exposed",
})
"""gixy-ng plugins with no Tern counterpart (docs/lint.md says why each family is out of scope)."""


@dataclass(frozen=True)
class Row:
    """What each tool reports for one code on one fixture (lines as ``file:line``)."""

    fixture: str
    code: str
    tern: frozenset[str]
    gixy: frozenset[str]
    why: dict[str, str] = field(default_factory=dict)
    """For each line only one side reports: the id of the explanation in docs/lint.md."""
    note: str = ""
    """Explanation id that applies to the whole row (e.g. a different anchor line)."""


def _row(fixture: str, code: str, tern: set[str], gixy: set[str],
         why: dict[str, str] | None = None, note: str = "") -> Row:
    return Row(fixture, code, frozenset(tern), frozenset(gixy), why or {}, note)


ROWS: tuple[Row, ...] = (
    _row("alias-traversal", "lint-alias-traversal",
         {"nginx.conf:19", "nginx.conf:37"}, {"nginx.conf:19", "nginx.conf:33"},
         {"nginx.conf:37": "G2", "nginx.conf:33": "G1"}),
    # the same four parent->child drops; gixy anchors at the parent's header, Tern at the child's
    _row("add-header-redefinition", "lint-add-header-redefinition",
         {"snippets/security-headers.conf:2", "nginx.conf:30", "nginx.conf:42", "nginx.conf:46"},
         {"nginx.conf:11", "snippets/security-headers.conf:2", "nginx.conf:42"},
         {"nginx.conf:30": "G3", "nginx.conf:46": "G3", "nginx.conf:11": "G3"}, note="G3"),
    _row("clean", "lint-missing-resolver", set(), {"nginx.conf:57"}, {"nginx.conf:57": "G4"}),
    _row("header-splitting", "lint-header-splitting",
         {"nginx.conf:22", "nginx.conf:26", "nginx.conf:43", "nginx.conf:48"},
         {"nginx.conf:22", "nginx.conf:26", "nginx.conf:48"}, {"nginx.conf:43": "G5"}),
    _row("host-spoofing", "lint-host-spoofing",
         {"nginx.conf:22", "nginx.conf:27", "nginx.conf:31"}, {"nginx.conf:22"},
         {"nginx.conf:27": "G6", "nginx.conf:31": "G6"}),
    _row("if-is-evil", "lint-if-is-evil",
         {"nginx.conf:32", "nginx.conf:40", "nginx.conf:46"},
         {"nginx.conf:32", "nginx.conf:40", "nginx.conf:54"},
         {"nginx.conf:46": "G8", "nginx.conf:54": "G7"}),
    _row("location-shadowing", "lint-location-shadowing",
         {"nginx.conf:34", "nginx.conf:44", "nginx.conf:52", "nginx.conf:72", "nginx.conf:76"},
         set(), {f"nginx.conf:{n}": "G9" for n in (34, 44, 52, 72, 76)}),
    _row("missing-resolver", "lint-missing-resolver",
         {"nginx.conf:33", "nginx.conf:38"}, {"nginx.conf:33"}, {"nginx.conf:38": "G10"}),
    _row("ssrf", "lint-ssrf", {"nginx.conf:23", "nginx.conf:28", "nginx.conf:32"},
         {"nginx.conf:23", "nginx.conf:28", "nginx.conf:32"}),
    _row("ssrf", "lint-host-spoofing", {"nginx.conf:32"}, set(), {"nginx.conf:32": "G6"}),
    _row("ssrf", "lint-header-splitting", set(), {"nginx.conf:28"}, {"nginx.conf:28": "G11"}),
    _row("unanchored-regex", "lint-unanchored-regex",
         {"nginx.conf:16", "nginx.conf:29", "nginx.conf:49", "nginx.conf:56"},
         {"nginx.conf:16", "nginx.conf:29", "nginx.conf:49"}, {"nginx.conf:56": "G12"}),
    _row("unanchored-regex", "lint-if-is-evil", set(), {"nginx.conf:30"},
         {"nginx.conf:30": "G7"}),
    _row("weak-tls", "lint-weak-tls",
         {"nginx.conf:12", "nginx.conf:20", "nginx.conf:35", "nginx.conf:36"},
         {"nginx.conf:12", "nginx.conf:13", "nginx.conf:20", "nginx.conf:35", "nginx.conf:36"},
         {"nginx.conf:13": "G13"}),
)

FIXTURES = sorted(p.parent.name for p in LINT_FIXTURES.glob("*/nginx.conf"))


def _tern(fixture: str) -> dict[str, set[str]]:
    base = LINT_FIXTURES / fixture
    out: dict[str, set[str]] = {}
    for d in lint(translate(str(base / "nginx.conf")).config):
        out.setdefault(d.code, set()).add(f"{os.path.relpath(d.file, base)}:{d.line}")
    return out


def _expected(fixture: str, side: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in ROWS:
        if row.fixture == fixture and getattr(row, side):
            out[row.code] = set(getattr(row, side))
    return out


def _gixy_installed() -> str | None:
    if importlib.util.find_spec("gixy") is None:
        return None
    try:
        return importlib.metadata.version("gixy-ng")
    except importlib.metadata.PackageNotFoundError:
        return None


GIXY = _gixy_installed()
needs_gixy = pytest.mark.skipif(
    GIXY is None, reason="gixy-ng is not installed: pip install gixy-ng==" + GIXY_VERSION)


def _gixy(fixture: str) -> dict[str, set[str]]:
    base = LINT_FIXTURES / fixture
    proc = subprocess.run([sys.executable, "-m", "gixy", "-f", "json", str(base / "nginx.conf")],
                          capture_output=True, text=True, timeout=120)
    try:
        issues = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"gixy gave no JSON (exit {proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, set[str]] = {}
    for issue in issues:
        plugin = issue["plugin"]
        assert plugin in PLUGIN_TO_CODE or plugin in UNMAPPED, \
            f"gixy plugin {plugin!r} is new: map it to a Tern code or list it in UNMAPPED"
        if plugin in PLUGIN_TO_CODE:
            out.setdefault(PLUGIN_TO_CODE[plugin], set()).add(
                f"{os.path.relpath(issue['file'], base)}:{issue['line']}")
    return out


def test_table_covers_every_fixture_and_code() -> None:
    """Rows name existing fixtures and codes, and there is at most one row per pair."""
    pairs = [(r.fixture, r.code) for r in ROWS]
    assert len(pairs) == len(set(pairs))
    for fixture, code in pairs:
        assert fixture in FIXTURES and code in CHECKS


@pytest.mark.parametrize("fixture", FIXTURES)
def test_tern_side_of_the_table(fixture: str) -> None:
    """The table's Tern column is what Tern reports today (no gixy needed)."""
    assert _tern(fixture) == _expected(fixture, "tern")


def test_every_disagreement_is_explained_in_the_docs() -> None:
    """Each line only one tool reports has an explanation id, and docs/lint.md defines it."""
    text = DOCS.read_text(encoding="utf-8")
    defined = set(re.findall(r"\*\*(G\d+)\*\*", text))
    for row in ROWS:
        for line in row.tern ^ row.gixy:
            assert line in row.why, f"{row.fixture} {row.code} {line}: no explanation id"
        for key in row.why:
            assert key in row.tern ^ row.gixy, f"{row.fixture} {row.code}: {key} agrees"
        for ident in set(row.why.values()) | ({row.note} if row.note else set()):
            assert ident in defined, f"{ident} is not explained in {DOCS.name}"


def test_agreement_summary_is_in_the_docs() -> None:
    """docs/lint.md shows the table's counts per fixture and code (both, Tern only, gixy only)."""
    text = DOCS.read_text(encoding="utf-8")
    for row in ROWS:
        both = len(row.tern & row.gixy)
        cells = f"| {row.fixture} | {row.code} | {both} | {len(row.tern - row.gixy)} | " \
                f"{len(row.gixy - row.tern)} |"
        assert cells in text, f"docs/lint.md lacks the row: {cells}"


@needs_gixy
@pytest.mark.parametrize("fixture", FIXTURES)
def test_gixy_side_of_the_table(fixture: str) -> None:
    """gixy-ng's findings, mapped to Tern codes, are the table's gixy column."""
    found = _gixy(fixture)
    expected = _expected(fixture, "gixy")
    assert found == expected, (
        f"gixy-ng {GIXY} (table recorded with {GIXY_VERSION}) differs on {fixture}: update "
        f"ROWS and the explanations in docs/lint.md together")
