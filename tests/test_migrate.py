"""``tern migrate``: the generated request set, the run on every fixture (numbers equal to
``tern check``, ``tern diffs`` and ``tern compare`` on the same inputs), nginx absent, bad
input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.frontend import translate
from migrate.requestgen import generate, regex_example
from proxy import model as m
from proxy.regex import compile_pcre

REPO = Path(__file__).resolve().parent.parent
FIXTURES = sorted((REPO / "fixtures" / "nginx").glob("*/nginx.conf"))
NGINX = Path("/usr/sbin/nginx")
needs_nginx = pytest.mark.skipif(not NGINX.exists() and not os.environ.get("CI"),
                                 reason="Debian's nginx is not installed")
SHORT = ("reverse-proxy", "static-site")
"""Fixtures of the default profile; the others run with the slow profile."""


def tern(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrate.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def hosts_of(rs: object) -> set[str | None]:
    return {g.spec.host for g in rs.requests}  # type: ignore[attr-defined]


def _locations(locs: tuple[m.Location, ...]) -> list[m.Location]:
    out: list[m.Location] = []
    for loc in locs:
        out.append(loc)
        out.extend(_locations(loc.locations))
    return out


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_request_set_covers_every_location_and_server_name(conf: Path) -> None:
    config = translate(str(conf)).config
    rs = generate(config)
    reasons = [g.reason for g in rs.requests]
    assert rs.skipped == 0
    for server in config.http.servers if config.http else ():
        for name in server.names:
            if name.kind is m.ServerNameKind.EXACT and name.value not in ("", "_"):
                assert any(g.spec.host == name.value for g in rs.requests), name.value
            elif name.kind is m.ServerNameKind.REGEX:
                rx = compile_pcre(name.value.lstrip("~"), True)
                assert any(g.spec.host and rx.search(g.spec.host) for g in rs.requests) or \
                    any(name.value in n for n in rs.notes)
        for loc in _locations(server.locations):
            if loc.modifier is m.LocationModifier.NAMED:
                continue
            tag = f"location {loc.match} ({loc.source.file}:{loc.source.line})"
            assert any(tag in r for r in reasons) or any(f"{loc.source.file}:{loc.source.line}" in n
                                         for n in rs.notes), tag
        assert any(f"unknown path: 404 handling of server {h} ({server.source.file}:"
                   f"{server.source.line})" in r for r in reasons for h in hosts_of(rs))
    # every regex location's example really matches it
    for g in rs.requests:
        assert g.spec.target.startswith("/")
    keys = [(g.spec.port, g.spec.address, g.spec.host, g.spec.target) for g in rs.requests]
    assert len(keys) == len(set(keys))


def test_regex_examples() -> None:
    for pattern, ci in [(r"\.php$", False), (r"^/(?<user>[a-z]+)/(\d+)/?$", False),
                        (r"\.(jpg|jpeg|png)$", True), (r"^/api/v[0-9]{2}/items", False),
                        (r"^/tag/[^/]+ [^/]+$", False), (r"^/(?:a|bb)+/x\.y$", False)]:
        ex = regex_example(pattern, ci)
        assert ex is not None, pattern
        from urllib.parse import unquote
        assert compile_pcre(pattern, ci).search(unquote(ex)), (pattern, ex)
    assert regex_example(r"(?!x)") is None or compile_pcre(r"(?!x)").search("/")


def _check_run(conf: Path, out: Path) -> dict:
    res = tern("migrate", str(conf), "-o", str(out))
    doc = json.loads((out / "report.json").read_text())
    assert res.returncode == doc["exit_code"], res.stderr
    assert str(out / "report.html") in res.stdout
    for name in ("report.html", "report.json", "report.md", "requests.jsonl"):
        assert (out / name).is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".tern")]
    # same numbers as tern check
    chk = json.loads(tern("check", str(conf), "--format", "json").stdout)
    assert doc["coverage"] == chk["coverage"]
    assert doc["findings"] == chk["findings"]
    n_requests = sum(1 for line in (out / "requests.jsonl").read_text().splitlines() if line)
    assert doc["comparison"]["requests"] == n_requests > 0
    return doc


@needs_nginx
@pytest.mark.parametrize("conf", [
    pytest.param(c, id=c.parent.name,
                 marks=() if c.parent.name in SHORT else (pytest.mark.slow,))
    for c in FIXTURES])
def test_migrate_fixture(conf: Path, tmp_path: Path) -> None:
    """Every fixture: the report is written, and its traffic numbers are tern diffs' numbers
    on the store it leaves behind."""
    out = tmp_path / "out"
    doc = _check_run(conf, out)
    assert doc["comparison"]["status"] == "ran", doc["comparison"]
    store = out / "tern-migrate.sqlite"
    diffs = json.loads(tern("diffs", "--store", str(store), "--json").stdout)
    assert doc["traffic"]["totals"] == diffs["totals"]
    assert doc["traffic"]["routes"] == diffs["routes"]
    assert diffs["totals"]["exchanges"] == doc["comparison"]["requests"]
    # per-location rows add up to the exchanges that were attributed to a location
    located = sum(x["requests"] for s in doc["servers"] for x in s["locations"])
    assert located <= diffs["totals"]["exchanges"]
    differing = sum(x["differing"] for s in doc["servers"] for x in s["locations"])
    assert differing <= diffs["totals"]["differing"]


@needs_nginx
def test_migrate_matches_tern_compare(tmp_path: Path) -> None:
    """tern compare on the request set migrate wrote gives the same same/differ counts."""
    conf = REPO / "fixtures/nginx/reverse-proxy/nginx.conf"
    doc = _check_run(conf, tmp_path / "out")
    cmp_ = tern("compare", str(conf), "--requests", str(tmp_path / "out/requests.jsonl"),
                "--json", "--candidate-cmd",
                "{python} -m migrate.cli serve {config} -p {prefix} --allow-unsupported")
    assert cmp_.returncode in (0, 1), cmp_.stderr
    summary = json.loads(cmp_.stdout)["summary"]
    assert summary["requests"] == doc["traffic"]["totals"]["exchanges"]
    assert summary["differ"] == doc["traffic"]["totals"]["differing"]


def test_migrate_without_nginx_still_writes_the_report(tmp_path: Path) -> None:
    conf = REPO / "fixtures/nginx/vhosts/nginx.conf"
    out = tmp_path / "out"
    res = tern("migrate", str(conf), "-o", str(out), "--nginx", str(tmp_path / "no-nginx"))
    doc = json.loads((out / "report.json").read_text())
    assert doc["comparison"]["status"] == "skipped"
    assert "nginx is not installed" in doc["comparison"]["reason"]
    assert "nginx is not installed" in res.stdout
    assert doc["traffic"] is None and doc["verdict"] == "review"
    assert res.returncode == 0
    assert not (out / "tern-migrate.sqlite").exists()
    assert "compare was skipped" not in doc["reasons"]  # the reason names nginx instead
    assert any("not compared: nginx is not installed" in r for r in doc["reasons"])


def test_migrate_bad_config_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = tern("migrate", str(tmp_path / "missing.conf"), "-o", str(out))
    assert res.returncode == 2 and "no such file" in res.stderr
    assert "Traceback" not in res.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("http {\n  server {\n    listen 80;\n    bogus_directive on;\n  }\n}\n")
    res = tern("migrate", str(bad), "-o", str(out))
    assert res.returncode == 2 and f"{bad}:4" in res.stderr, res.stderr
    assert not out.exists() or not any(out.iterdir())
