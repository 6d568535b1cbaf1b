"""The store, ``tern diffs``, ``tern replay`` (access logs, custom log_format, HAR, JSONL),
rules files and attribution."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.shadow_cmd import diffs_cmd, replay_cmd
from shadow.diff import CapturedResponse
from shadow.echo import Behaviour, EchoServer
from shadow.logparse import LogParser, request_of
from shadow.noise import normalise, route_key
from shadow.rules import RulesError, load_rules
from shadow.store import SCHEMA_VERSION, Store, StoreError
from tests.shadow_support import ProxyRunner, get

LOG = "\n".join([
    '127.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a?x=1 HTTP/1.1" 200 12 "-" "curl/8.0"',
    "this line is garbage",
    '10.0.0.2 - bob [10/Oct/2023:13:55:37 +0000] "GET /b/42 HTTP/1.1" 404 0 "http://r/" '
    '"ua \\x22q\\x22"',
    "",
    '10.0.0.3 - - [10/Oct/2023:13:55:38 +0000] "NOT A REQUEST" 400 0 "-" "-"',
    ""])


def test_store_schema_and_diffs(tmp_path: Path) -> None:
    """The store has a schema_version and every documented table; ``tern diffs`` shows totals,
    per-route rates, top fields and examples, as text and as JSON."""
    db = tmp_path / "s.db"
    with EchoServer("p") as p, EchoServer("c", behaviours=[Behaviour(prefix="/bad",
                                                                     status=500)]) as c:
        with ProxyRunner(f"http://{p.address}", f"http://{c.address}",
                         store_path=str(db)) as r:
            for path in ("/ok/1", "/bad/2", "/bad/3"):
                get(r.port, path)
            r.wait_mirrored(3)
    con = sqlite3.connect(db)
    tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "meta", "counters", "exchanges", "differences", "noise",
            "routes"} <= tables
    assert con.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    con.close()
    res = CliRunner().invoke(diffs_cmd, ["--store", str(db), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["totals"]["exchanges"] == 3
    assert doc["counters"]["mirrored"] == 3
    routes = {x["route"]: x for x in doc["routes"]}
    assert routes["GET /bad/{id}"]["differing"] == 2
    assert routes["GET /bad/{id}"]["rate"] == 1.0
    assert any(f["field"] == "status" for f in doc["top_fields"])
    assert routes["GET /bad/{id}"]["examples"][0]["target"] in ("/bad/2", "/bad/3")
    text = CliRunner().invoke(diffs_cmd, ["--store", str(db)])
    assert text.exit_code == 0 and "GET /bad/{id}" in text.output and "status" in text.output


def test_diffs_missing_store_and_newer_schema(tmp_path: Path) -> None:
    """A missing store or one from a newer Tern: a clear message and exit 2."""
    res = CliRunner().invoke(diffs_cmd, ["--store", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and "no such store" in res.output
    db = tmp_path / "new.db"
    Store(str(db)).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    res = CliRunner().invoke(diffs_cmd, ["--store", str(db)])
    assert res.exit_code == 2 and "newer" in res.output
    with pytest.raises(StoreError):
        Store(str(db))


def test_logparse_combined_and_custom() -> None:
    """The combined format and a custom one (with escape=json) read back."""
    v = LogParser().parse('1.2.3.4 - - [10/Oct/2023:13:55:36 +0000] "GET /p?q HTTP/1.0" 200 5 '
                          '"-" "a \\x22b\\x22"')
    r = request_of(v)
    assert (r.method, r.target, r.version) == ("GET", "/p?q", "1.0")
    assert dict(r.headers) == {"User-Agent": 'a "b"'}
    from proxy.accesslog import _log_template
    from proxy.model import NOWHERE, LogFormat
    fmt = LogFormat(name="j", escape="json", source=NOWHERE, format=_log_template(
        '{"host":"$host","m":"$request_method","u":"$request_uri","t":$request_time,'
        '"ua":"$http_user_agent"}'))
    r = request_of(LogParser(fmt).parse(
        '{"host":"shop.example","m":"POST","u":"/cart?id=1","t":0.012,"ua":"x\\"y"}'))
    assert (r.method, r.target, r.host) == ("POST", "/cart?id=1", "shop.example")
    assert dict(r.headers) == {"User-Agent": 'x"y'}


def _replay(tmp_path: Path, source: Path, *extra: str) -> tuple[dict[str, object], list, list]:
    db = tmp_path / "r.db"
    with EchoServer("p") as p, EchoServer("c") as c:
        res = CliRunner().invoke(replay_cmd, [str(source), "--primary", f"http://{p.address}",
                                              "--candidate", f"http://{c.address}",
                                              "--store", str(db), "--json", *extra])
        assert res.exit_code == 0, res.output
        out = json.loads(res.output[res.output.index("{"):])
        return out, p.records, c.records


def test_replay_combined_log(tmp_path: Path) -> None:
    """A combined access log: good lines replayed to both sides, bad lines counted with their
    line numbers."""
    src = tmp_path / "access.log"
    src.write_text(LOG)
    out, prec, crec = _replay(tmp_path, src)
    assert out["sent"] == 2 and out["malformed"] == 2
    assert [m["line"] for m in out["malformed_lines"]] == [2, 5]
    assert [r.target for r in prec] == ["/a?x=1", "/b/42"]
    assert all(r.header("X-Tern-Shadow") == "1" for r in crec)
    assert prec[1].header("User-Agent") == 'ua "q"'


def test_replay_custom_format_from_config(tmp_path: Path) -> None:
    """--config + --format NAME reads the log with that log_format."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(textwrap.dedent("""\
        events {}
        http {
            log_format mine '$remote_addr|$host|$request|$status';
            server { listen 8080; server_name shop.example; location / { return 200; } }
        }
        """))
    src = tmp_path / "mine.log"
    src.write_text("1.1.1.1|shop.example|GET /x HTTP/1.1|200\nbroken\n"
                   "1.1.1.1|shop.example|HEAD /y HTTP/1.1|200\n")
    out, prec, _ = _replay(tmp_path, src, "--config", str(conf), "--format", "mine")
    assert out["sent"] == 2 and out["malformed"] == 1
    assert [(r.method, r.target, r.header("Host")) for r in prec] == [
        ("GET", "/x", "shop.example"), ("HEAD", "/y", "shop.example")]
    con = sqlite3.connect(tmp_path / "r.db")
    locs = {x for (x,) in con.execute("SELECT location_source FROM exchanges")}
    con.close()
    assert locs == {f"{conf}:4"}


def test_replay_har(tmp_path: Path) -> None:
    """A HAR file: entries replayed, a broken entry counted."""
    har = {"log": {"entries": [
        {"request": {"method": "GET", "url": "http://h.example/a?b=1", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": ":authority", "value": "h.example"},
                                 {"name": "Accept", "value": "*/*"}]}},
        {"request": {"url": "http://h.example/nomethod"}},
        {"request": {"method": "POST", "url": "http://h.example/p", "headers": [],
                     "postData": {"text": "hello"}}}]}}
    src = tmp_path / "x.har"
    src.write_text(json.dumps(har))
    out, prec, _ = _replay(tmp_path, src)
    assert out["sent"] == 2 and out["malformed"] == 1
    assert out["malformed_lines"][0]["line"] == 2
    got = sorted((r.method, r.target, r.header("Host"), r.body) for r in prec)
    assert got == [("GET", "/a?b=1", "h.example", b""), ("POST", "/p", "h.example", b"hello")]


def test_replay_jsonl(tmp_path: Path) -> None:
    """Tern's JSONL capture (compare's request-set format); bad lines counted."""
    src = tmp_path / "cap.jsonl"
    src.write_text('{"url": "/j1", "host": "a.example"}\n{not json\n'
                   '{"method": "PUT", "url": "http://b.example/j2", "body": "x"}\n'
                   '{"nourl": 1}\n')
    out, prec, _ = _replay(tmp_path, src)
    assert out["sent"] == 2 and [m["line"] for m in out["malformed_lines"]] == [2, 4]
    assert sorted((r.method, r.target, r.header("Host")) for r in prec) == [
        ("GET", "/j1", "a.example"), ("PUT", "/j2", "b.example")]


def test_rules_file(tmp_path: Path) -> None:
    """A TOML rules file: ignored headers, JSON paths and regex masks take effect; a bad one is
    refused with its name."""
    rules = tmp_path / "rules.toml"
    rules.write_text(textwrap.dedent("""\
        ignore_headers = ["X-Echo-Id"]
        ignore_json_paths = ["$.server"]
        [[mask]]
        pattern = "req-[0-9]+"
        replace = "req-N"
        """))
    r = load_rules(str(rules))
    a = CapturedResponse(status=200, headers=((b"Content-Type", b"application/json"),
                                               (b"X-Echo-Id", b"p")),
                         body=b'{"server":"p","rid":"req-1"}')
    b = CapturedResponse(status=200, headers=((b"Content-Type", b"application/json"),
                                               (b"X-Echo-Id", b"c")),
                         body=b'{"server":"c","rid":"req-2"}')
    from shadow.diff import diff_responses
    assert diff_responses(normalise(a, r), normalise(b, r), r.options()) == []
    bad = tmp_path / "bad.json"
    bad.write_text('{"mask": [{"pattern": "("}]}')
    with pytest.raises(RulesError, match="bad.json"):
        load_rules(str(bad))


def test_normalise_gzip_and_route_key() -> None:
    """gzip bodies are compared decoded; id-like path segments fold into one route."""
    import gzip
    plain = CapturedResponse(status=200, version="1.0", headers=((b"Content-Length", b"2"),),
                             body=b"hi")
    zipped = CapturedResponse(status=200, headers=((b"Content-Encoding", b"gzip"),
                                                   (b"Content-Length", b"22")),
                              body=gzip.compress(b"hi"))
    n = normalise(zipped)
    assert n.body == b"hi" and normalise(plain).version == n.version == "1.1"
    assert route_key("get", "/u/123/o/550e8400-e29b-41d4-a716-446655440000?x") == \
        "GET /u/{id}/o/{id}"


def test_marker_reflection_removed_on_marked_sides_only() -> None:
    """The shadow marker echoed back by the candidate's upstream is not a difference; the same
    text on the primary (which never got the marker), or another value, still is."""
    from shadow.diff import diff_responses
    from shadow.mirror import MARKER
    js = ((b"Content-Type", b"application/json"),)
    prim = CapturedResponse(status=200, headers=js + ((b"Content-Length", b"27"),),
                            body=b'{"headers":[["Host","a"]]}\n')
    cand_body = b'{"headers":[["Host","a"],["x-tern-shadow", "1"]]}\n'
    cand = CapturedResponse(status=200, body=cand_body, headers=js + (
        (b"Content-Length", b"%d" % len(cand_body)), (b"X-Tern-Shadow", b"1")))
    assert diff_responses(normalise(prim), normalise(cand, marker=MARKER)) == []
    assert {d.field for d in diff_responses(normalise(prim), normalise(cand))} == {
        "body:$.headers[1]", "header:x-tern-shadow"}
    other = CapturedResponse(status=200, headers=js,
                             body=b'{"headers":[["Host","a"],["X-Tern-Shadow","2"]]}\n')
    assert [d.field for d in diff_responses(normalise(prim), normalise(other, marker=MARKER))] \
        == ["body:$.headers[1]"]
    text = CapturedResponse(status=200, body=b"GET / HTTP/1.1\r\nX-Tern-Shadow: 1\r\nA: b\r\n")
    assert normalise(text, marker=MARKER).body == b"GET / HTTP/1.1\r\nA: b\r\n"
    assert normalise(text).body == text.body


def test_error_page_signature_masked_like_server() -> None:
    """nginx's and Tern's built-in error pages differ only in the signature that repeats their
    own Server header: equal once normalised; a page naming some other server still differs."""
    from shadow.diff import diff_responses

    def page(server: bytes, sig: bytes) -> CapturedResponse:
        body = b"<html>\r\n<hr><center>" + sig + b"</center>\r\n</html>\r\n"
        return CapturedResponse(status=404, headers=(
            (b"Server", server), (b"Content-Type", b"text/html"),
            (b"Content-Length", b"%d" % len(body))), body=body)

    ng, tern = page(b"nginx/1.22.1", b"nginx/1.22.1"), page(b"tern/0.1.0", b"tern/0.1.0")
    assert diff_responses(normalise(ng), normalise(tern)) == []
    assert diff_responses(normalise(page(b"nginx", b"nginx")), normalise(tern)) == []
    stray = page(b"tern/0.1.0", b"nginx/1.22.1")
    assert [d.field for d in diff_responses(normalise(ng), normalise(stray))] == ["body"]


def test_analyzer_process_stores_counts_and_drops(tmp_path: Path) -> None:
    """tern shadow's analysis process: what is submitted is diffed and stored by the child,
    the mirror counters reach the store, and past its backlog it refuses and counts."""
    from shadow.mirror import Analyzer, AnalyzerProcess, Exchange, Fetched, OutRequest

    path = str(tmp_path / "p.db")
    Store(path).close()
    req = OutRequest(method="GET", target="/a/1", headers=((b"Host", b"h"),))
    ok = Fetched(status=200, headers=[(b"Content-Length", b"2")], body=b"ok")
    other = Fetched(status=200, headers=[(b"Content-Length", b"2")], body=b"no")
    ap = AnalyzerProcess(lambda: Analyzer(Store(path, create=False)),
                         counters=lambda: {"mirrored": 3}).start()
    for cand in (ok, other, ok):
        assert ap.submit(Exchange(source="shadow", request=req, host="h", primary=ok,
                                  candidate=cand))
    ap.max_backlog = -1  # as if the child were that far behind
    assert not ap.submit(Exchange(source="shadow", request=req, host="h", primary=ok,
                                  candidate=ok))
    ap.close()
    assert (ap.analysed, ap.differing, ap.dropped, ap.errors) == (3, 1, 1, [])
    st = Store(path, create=False)
    try:
        assert st.counters()["mirrored"] == 3 and st.counters()["analysis_dropped"] == 1
        assert st.db.execute("SELECT COUNT(*) FROM exchanges").fetchone()[0] == 3
    finally:
        st.close()
