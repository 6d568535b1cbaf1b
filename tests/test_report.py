"""``tern report``: the findings model agrees with ``tern check``, ``tern lint`` and ``tern diffs``;
gates and exit codes; bad input (missing store, newer store schema, unreadable config) exits 2
and writes nothing; the HTML is self-contained."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from migrate.cli import main
from migrate.report import SCHEMA_VERSION, write_atomic
from shadow.store import DiffRow, ExchangeRow, Store

REPO = Path(__file__).resolve().parent.parent
FIXTURES = sorted((REPO / "fixtures" / "nginx").glob("*/nginx.conf"))


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _json(result: Result) -> dict:
    return json.loads(result.stdout)


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_numbers_match_check_and_lint(conf: Path) -> None:
    """Coverage, directive table and findings are tern check's; lint findings are tern lint's;
    the exit code is 1 exactly when check reports unsupported directives."""
    rep = run("report", str(conf), "--format", "json")
    doc = _json(rep)
    check = run("check", str(conf), "--format", "json")
    chk = _json(check)
    lint = _json(run("lint", str(conf), "--format", "json"))
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["coverage"] == chk["coverage"]
    assert doc["directives"] == chk["directives"]
    assert doc["findings"] == chk["findings"]
    assert doc["lint"] == lint["findings"]
    unsupported = chk["summary"]["unsupported"]
    assert sum(1 for b in doc["blocking"] if b["category"] == "unsupported") == unsupported
    assert rep.exit_code == (1 if unsupported else 0) == doc["exit_code"]
    # without traffic the best verdict is "review" (nothing was compared)
    assert doc["verdict"] == ("blocked" if unsupported else "review")
    assert any("no traffic compared" in r for r in doc["reasons"])
    assert 0 <= doc["score"] <= 100
    # every server and location of the model is in the table, with the check's own counts
    total = sum(sum(s["directives"].values()) + sum(sum(x["directives"].values())
                                                    for x in s["locations"])
                for s in doc["servers"])
    assert total <= chk["coverage"]["total"]


def test_blocking_items_name_file_line_and_action(tmp_path: Path) -> None:
    # static-site (which has lint findings) with an unsupported directive added
    shutil.copytree(REPO / "fixtures/nginx/static-site", tmp_path / "site")
    with open(tmp_path / "site/conf.d/gzip.conf", "a") as fh:
        fh.write("ssi on;\n")
    conf = tmp_path / "site/nginx.conf"
    doc = _json(run("report", str(conf), "--format", "json", "--fail-on", "unsupported",
                    "--fail-on", "lint"))
    cats = {b["category"] for b in doc["blocking"]}
    assert cats == {"unsupported", "lint"}
    for b in doc["blocking"]:
        assert Path(b["file"]).is_file() and b["line"] > 0
        assert b["title"] and b["action"]
        line = Path(b["file"]).read_text().splitlines()[b["line"] - 1]
        directive = b["title"].split(":")[0].strip('"') if b["category"] == "unsupported" \
            else b["title"].split(": ", 1)[1]
        assert directive in line
    # only lint gated: the unsupported ssi line is no longer blocking
    doc2 = _json(run("report", str(conf), "--format", "json", "--fail-on", "lint"))
    assert {b["category"] for b in doc2["blocking"]} == {"lint"}


def _store(path: Path, rows: list[tuple[str, int, int, list[str]]]) -> None:
    """Exchanges (target, primary status, candidate status, differing fields)."""
    store = Store(str(path))
    try:
        for i, (target, ps, cs, fields) in enumerate(rows):
            store.add(ExchangeRow(source="replay", route=f"GET {target}", method="GET",
                                  host="shop.example.com", target=target, primary_status=ps,
                                  candidate_status=cs, primary_ms=1.0 + i,
                                  candidate_ms=2.0 + i,
                                  location="/api/",
                                  location_source=str(REPO / "fixtures/nginx/reverse-proxy/"
                                                          "sites-enabled/shop.conf") + ":19"),
                      [DiffRow(field=f, primary="a", candidate="b", verdict="difference")
                       for f in fields])
    finally:
        store.close()


def test_store_numbers_match_tern_diffs_and_gates(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    _store(db, [("/api/1", 200, 200, []), ("/api/2", 200, 502, ["status"]),
                ("/api/3", 200, 200, []), ("/api/4", 200, 200, ["header:x-a", "body"])])
    conf = str(REPO / "fixtures/nginx/reverse-proxy/nginx.conf")
    rep = run("report", conf, "--store", str(db), "--format", "json")
    doc = _json(rep)
    diffs = _json(run("diffs", "--store", str(db), "--json"))
    t = doc["traffic"]
    assert t["totals"] == diffs["totals"] == {"exchanges": 4, "differing": 2, "noisy_only": 0,
                                              "rate": 0.5}
    assert t["routes"] == diffs["routes"]
    assert t["top_fields"] == diffs["top_fields"]
    assert t["window"]["start"] and t["window"]["end"]
    assert t["latency"]["primary_ms"]["p50"] == pytest.approx(2.5)
    # the location row carries the store's counts
    loc = next(x for s in doc["servers"] for x in s["locations"] if x["line"] == 19)
    assert (loc["requests"], loc["differing"]) == (4, 2)
    assert rep.exit_code == 0 and doc["verdict"] == "review"
    assert doc["score_parts"]["equal"] == 0.5
    # threshold: 50% > 10% blocks
    rep2 = run("report", conf, "--store", str(db), "--format", "json", "--max-diff-rate", "0.1")
    doc2 = _json(rep2)
    assert rep2.exit_code == 1 and doc2["verdict"] == "blocked"
    assert [b["category"] for b in doc2["blocking"]] == ["threshold"]
    assert "50.00%" in doc2["blocking"][0]["title"]
    assert run("report", conf, "--store", str(db), "--max-diff-rate", "0.5",
               "--format", "json").exit_code == 0
    # --fail-on diffs: one item per differing route, pointing at the attributed location
    doc3 = _json(run("report", conf, "--store", str(db), "--format", "json",
                     "--fail-on", "diffs"))
    items = [b for b in doc3["blocking"] if b["category"] == "diffs"]
    assert len(items) == 2 and all(b["line"] == 19 for b in items)


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    conf = str(REPO / "fixtures/nginx/reverse-proxy/nginx.conf")
    out = tmp_path / "r.html"
    # missing store
    res = run("report", conf, "--store", str(tmp_path / "nope.db"), "-o", str(out))
    assert res.exit_code == 2 and "no such store" in res.stderr and not out.exists()
    # a store from a newer Tern
    db = tmp_path / "new.db"
    _store(db, [("/a", 200, 200, [])])
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    out.write_text("previous report")
    res = run("report", conf, "--store", str(db), "-o", str(out))
    assert res.exit_code == 2 and "newer" in res.stderr and "Traceback" not in res.output
    assert out.read_text() == "previous report"  # untouched, not a partial new one
    # not a store at all
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    res = run("report", conf, "--store", str(junk), "-o", str(out))
    assert res.exit_code == 2 and "not a Tern store" in res.stderr
    # unreadable configs: missing, a directory, invalid (file:line in the message)
    res = run("report", str(tmp_path / "missing.conf"), "-o", str(out))
    assert res.exit_code == 2 and "no such file" in res.stderr
    res = run("report", str(tmp_path), "-o", str(out))
    assert res.exit_code == 2 and "directory" in res.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text("http {\n  server {\n    listen 80\n  }\n")
    res = run("report", str(bad), "-o", str(out))
    assert res.exit_code == 2 and f"{bad}:" in res.stderr and "no report written" in res.stderr
    undecodable = tmp_path / "bin.conf"
    undecodable.write_bytes(b"\x00\xff\xfe garbage {{{")
    res = run("report", str(undecodable), "-o", str(out))
    assert res.exit_code == 2
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tern")) == []
    # bad option value
    res = run("report", conf, "--max-diff-rate", "5")
    assert res.exit_code == 2 and "--max-diff-rate" in res.output


def test_formats_and_self_contained_html(tmp_path: Path) -> None:
    conf = str(REPO / "fixtures/nginx/static-site/nginx.conf")
    for name in ("r.html", "r.md", "r.json"):
        res = run("report", conf, "-o", str(tmp_path / name), "--fail-on", "lint")
        assert res.exit_code == 1, res.output
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    # no network: no external src/href, no script, no @import
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:|#)', html)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    doc = json.loads((tmp_path / "r.json").read_text())
    md = (tmp_path / "r.md").read_text()
    assert f"score **{doc['score']}/100**" in md and doc["verdict"].upper() in md
    for b in doc["blocking"]:
        assert f"{b['line']}`" in md
    # text from the config is escaped in HTML
    evil = tmp_path / "evil.conf"
    evil.write_text('events {}\nhttp {\n  server {\n    listen 8080;\n'
                    '    location "/<script>x</script>" { return 204; }\n  }\n}\n')
    res = run("report", str(evil), "--format", "html")
    assert "<script>x" not in res.stdout and "&lt;script&gt;x" in res.stdout


def test_write_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_atomic(str(target), "complete")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
