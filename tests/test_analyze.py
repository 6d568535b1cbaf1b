"""Analysis of a loaded configuration: checks in nginx's words, support levels, the census, and
the model nodes built for directives (levels kept apart, conditions, maps, fragments)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.analyze import Analysis
from migrate.diagnostics import Diagnostic, Level
from migrate.directives import DIRECTIVES
from migrate.frontend import coverage, translate
from migrate.loader import Stmt, load
from proxy import model as m


def analyse(tmp_path: Path, text: str, name: str = "nginx.conf") -> tuple[Analysis, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return translate(str(path)), str(path)


def in_http(body: str) -> str:
    return f"events {{}}\nhttp {{\n{body}\n}}\n"  # body starts on line 3


def in_server(body: str) -> str:
    return f"events {{}}\nhttp {{\nserver {{\n{body}\n}}\n}}\n"  # body starts on line 4


def in_location(body: str) -> str:
    return f"events {{}}\nhttp {{\nserver {{\nlocation / {{\n{body}\n}}\n}}\n}}\n"  # line 5


def errors(a: Analysis) -> list[Diagnostic]:
    return [d for d in a.diagnostics if d.level is Level.ERROR]


# ---------------------------------------------------------------------------------------------
# errors: each one ERROR with file:line and nginx's words


@pytest.mark.parametrize(
    ("text", "line", "code", "words"),
    [
        (in_http("foo_bar on;"), 3, "unknown-directive", 'unknown directive "foo_bar"'),
        (in_location("proxy_passs http://x;"), 5, "unknown-directive",
         'unknown directive "proxy_passs"'),
        (in_http("proxy_pass http://x;"), 3, "context",
         '"proxy_pass" directive is not allowed here'),
        (in_http("location / {}"), 3, "context", '"location" directive is not allowed here'),
        (in_location("listen 80;"), 5, "context", '"listen" directive is not allowed here'),
        ("events {}\nserver_name x;\nhttp {}\n", 2, "context",
         '"server_name" directive is not allowed here'),
        (in_location("server { }"), 5, "context", '"server" directive is not allowed here'),
        (in_server("root /a /b;"), 4, "arity", 'invalid number of arguments in "root" directive'),
        (in_server("proxy_pass;"), 4, "context", '"proxy_pass" directive is not allowed here'),
        (in_location("proxy_pass;"), 5, "arity",
         'invalid number of arguments in "proxy_pass" directive'),
        (in_location("proxy_read_timeout abc;"), 5, "bad-value", "invalid value"),
        (in_location("return abc;"), 5, "bad-value", 'invalid return code "abc"'),
        (in_location("return 1000;"), 5, "bad-value", 'invalid return code "1000"'),
        (in_server("listen 99999;"), 4, "bad-value", 'invalid port in "99999"'),
        (in_server("listen 80 bogus;"), 4, "bad-value", 'invalid parameter "bogus"'),
        (in_location("expires xyz;"), 5, "bad-value", "invalid value"),
        (in_location("autoindex_format yaml;"), 5, "bad-value", 'invalid value "yaml"'),
        (in_location("proxy_cookie_flags a secure=1;"), 5, "bad-value",
         'invalid parameter "secure=1"'),
        (in_location("proxy_cookie_path ~(a /b;"), 5, "bad-value", "invalid regex"),
        (in_location("proxy_cookie_domain on;"), 5, "bad-value", 'invalid parameter "on"'),
        (in_server("resolver valid=5s;"), 4, "bad-value", "no name servers defined"),
        (in_server("resolver 127.0.0.1:99999;"), 4, "bad-value", "invalid port in resolver"),
        (in_location("allow 1.2.3.300;"), 5, "bad-value", 'invalid parameter "1.2.3.300"'),
        (in_location("deny 10.0.0.0/33;"), 5, "bad-value", 'invalid parameter "10.0.0.0/33"'),
        (in_location("error_page 200 /x;"), 5, "bad-value",
         'value "200" must be between 300 and 599'),
        (in_location("proxy_pass ftp://x;"), 5, "bad-value", "invalid URL prefix"),
        (in_location("gzip maybe;"), 5, "bad-value",
         'invalid value "maybe" in "gzip" directive, it must be "on" or "off"'),
        (in_location("rewrite ^ /x bogus;"), 5, "bad-value", 'invalid parameter "bogus"'),
        (in_location("root /a;\nroot /b;"), 6, "bad-value", '"root" directive is duplicate'),
        (in_location("root /a;\nalias /b;"), 6, "bad-value",
         '"alias" directive is duplicate, "root" directive was specified earlier'),
        (in_location("alias /a;\nroot /b;"), 6, "bad-value",
         '"root" directive is duplicate, "alias" directive was specified earlier'),
        (in_location("limit_req zone=nope burst=5;"), 5, "unknown-zone",
         'zero size shared memory zone "nope"'),
        (in_location("limit_conn nope 1;"), 5, "unknown-zone",
         'zero size shared memory zone "nope"'),
        (in_location("access_log logs/a.log nofmt;"), 5, "unknown-log-format",
         'unknown log format "nofmt"'),
        (in_server("location /a { }\nlocation /a { }"), 5, "duplicate",
         'duplicate location "/a"'),
        (in_http("upstream u { }"), 3, "empty-upstream", 'no servers are inside upstream "u"'),
        (in_location("if ($a = ) { }"), 5, "bad-value", "invalid condition"),
        (in_location("if (abc) { }"), 5, "bad-value", 'invalid condition "abc"'),
        (in_location("set a b;"), 5, "bad-value", 'invalid variable name "a"'),
    ],
)
def test_error_in_nginx_words(tmp_path: Path, text: str, line: int, code: str,
                              words: str) -> None:
    """An invalid directive is exactly one ERROR at its file:line, worded as nginx words it."""
    a, path = analyse(tmp_path, text)
    errs = errors(a)
    assert len(errs) == 1, [d.format() for d in a.diagnostics]
    (d,) = errs
    assert (d.file, d.line, d.code) == (path, line, code)
    assert words in d.message
    assert d.format().startswith(f"{path}:{line}: error: ")
    assert a.has_errors


def test_time_error_names_the_directive(tmp_path: Path) -> None:
    """A bad time names both the value and the directive."""
    a, _ = analyse(tmp_path, in_location("proxy_read_timeout abc;"))
    (d,) = errors(a)
    assert '"abc"' in d.message and '"proxy_read_timeout"' in d.message
    assert d.directive == "proxy_read_timeout"


@pytest.mark.parametrize(
    ("body", "line", "hint"),
    [
        # the ";" was forgotten at the end of line 5, so "root" swallowed line 6's words
        ("root /a\nindex i.html;", 5, 'missing ";" at the end of line 5'),
        ("proxy_pass http://a\nproxy_read_timeout 5s;", 5, 'missing ";" at the end of line 5'),
    ],
)
def test_arity_hint_for_missing_semicolon(tmp_path: Path, body: str, line: int,
                                          hint: str) -> None:
    """Wrong arity with arguments over several lines hints at a missing ';'."""
    a, path = analyse(tmp_path, in_location(body))
    (d,) = errors(a)
    assert (d.file, d.line, d.code) == (path, line, "arity")
    assert hint in d.message


def test_arity_without_hint_on_one_line(tmp_path: Path) -> None:
    """Wrong arity on a single line has no missing-';' hint."""
    a, _ = analyse(tmp_path, in_location("root /a /b;"))
    (d,) = errors(a)
    assert "missing" not in d.message


def test_error_in_included_file_has_that_file(tmp_path: Path) -> None:
    """A bad directive in an included file is reported at that file's line."""
    (tmp_path / "inc.conf").write_text("\n\nproxy_read_timeout never;\n", encoding="utf-8")
    a, _ = analyse(tmp_path, in_location("include inc.conf;"))
    (d,) = errors(a)
    assert (d.file, d.line) == (str(tmp_path / "inc.conf"), 3)


def test_bad_occurrence_is_skipped_others_kept(tmp_path: Path) -> None:
    """After an error the rest of the config is still analysed and modelled."""
    a, _ = analyse(tmp_path, in_location("bogus 1;\nreturn 204;"))
    assert len(errors(a)) == 1
    loc = a.config.http.servers[0].locations[0]  # type: ignore[union-attr]
    assert [type(r).__name__ for r in loc.scope.rewrites] == ["Return"]


# ---------------------------------------------------------------------------------------------
# support levels


@pytest.mark.parametrize(
    ("directive", "args"),
    [("ssi", "on"), ("uwsgi_pass", "127.0.0.1:9000"), ("proxy_cache", "zone1"),
     ("fastcgi_limit_rate", "1k")],
)
def test_unsupported_directive_is_reported_and_kept(tmp_path: Path, directive: str,
                                                    args: str) -> None:
    """An UNSUPPORTED directive gets a diagnostic with the table's reason and is kept raw."""
    a, path = analyse(tmp_path, in_location(f"{directive} {args};"))
    assert errors(a) == []
    (d,) = [d for d in a.diagnostics if d.level is Level.UNSUPPORTED]
    spec = DIRECTIVES[directive]
    assert spec.support is m.Support.UNSUPPORTED
    assert (d.file, d.line, d.code, d.directive) == (path, 5, "unsupported", directive)
    assert spec.reason and spec.reason in d.message
    loc = a.config.http.servers[0].locations[0]  # type: ignore[union-attr]
    assert loc.scope.other == (m.RawDirective(name=directive, args=tuple(args.split()),
                                              support=m.Support.UNSUPPORTED,
                                              source=m.SourceSpan(file=path, line=5)),)


def test_partial_and_ignored_levels(tmp_path: Path) -> None:
    """PARTIAL gets a 'partial' diagnostic with the reason; IGNORED gets none and is kept raw."""
    a, path = analyse(tmp_path, in_http("sendfile on;\nproxy_buffering off;"))
    assert [(d.level, d.line, d.directive) for d in a.diagnostics] == [
        (Level.PARTIAL, 4, "proxy_buffering")]
    assert DIRECTIVES["proxy_buffering"].reason in a.diagnostics[0].message
    http = a.config.http
    assert http is not None
    assert http.scope.other == (m.RawDirective(name="sendfile", args=("on",),
                                               support=m.Support.IGNORED,
                                               source=m.SourceSpan(file=path, line=3)),)
    assert http.scope.proxy.buffering is False


def test_unsupported_block_is_kept_with_children(tmp_path: Path) -> None:
    """An unsupported block directive is kept raw with its children."""
    text = "events {}\nstream {\n    server {\n        listen 12345;\n    }\n}\nhttp {}\n"
    a, _ = analyse(tmp_path, text)
    assert errors(a) == []
    (stream,) = a.config.main.other
    assert stream.name == "stream" and stream.support is m.Support.UNSUPPORTED
    assert [c.name for c in stream.children] == ["server"]
    assert [c.name for c in stream.children[0].children] == ["listen"]


# ---------------------------------------------------------------------------------------------
# census


CENSUS_CONF = """\
worker_processes 2;
events {
    worker_connections 10;
}
http {
    include inc.conf;
    sendfile on;
    ssi on;
    map $host $x {
        default 0;
        a.example 1;
    }
    server {
        listen 80;
        server_name a;
        if ($x) {
            return 403;
        }
        location / {
            proxy_buffering off;
            proxy_pass http://127.0.0.1:1;
            limit_except GET {
                deny all;
            }
        }
    }
}
"""


def _count_stmts(stmts: list[Stmt], raw_blocks: frozenset[str]) -> int:
    n = 0
    for st in stmts:
        n += 1
        if st.block and st.name not in raw_blocks:
            n += _count_stmts(st.block, raw_blocks)
    return n


def test_census_counts_each_occurrence_once(tmp_path: Path) -> None:
    """Every directive occurrence (include too, map rows not) is counted exactly once."""
    (tmp_path / "inc.conf").write_text("keepalive_timeout 5;\nserver_tokens off;\n",
                                       encoding="utf-8")
    a, path = analyse(tmp_path, CENSUS_CONF)
    assert errors(a) == []
    # by hand: worker_processes, events, worker_connections, http, include, the 2 lines of
    # inc.conf, sendfile, ssi, map, server, listen, server_name, if, return, location,
    # proxy_buffering, proxy_pass, limit_except, deny
    assert len(a.census) == 20
    tree = load(path)
    expected = _count_stmts(tree.stmts, frozenset({"map"})) + len(tree.includes)
    assert len(a.census) == expected
    keys = [(e.file, e.line, e.name) for e in a.census]
    assert len(keys) == len(set(keys))
    inc = str(tmp_path / "inc.conf")
    assert (inc, 1, "keepalive_timeout") in keys and (inc, 2, "server_tokens") in keys


def test_census_matches_coverage(tmp_path: Path) -> None:
    """Coverage counts are the census grouped by support level, every level present."""
    (tmp_path / "inc.conf").write_text("keepalive_timeout 5;\n", encoding="utf-8")
    a, _ = analyse(tmp_path, CENSUS_CONF)
    cov = coverage(a)
    assert set(cov.counts) == {s.value for s in m.Support}
    assert cov.total == len(a.census)
    assert cov.counts["unsupported"] == sum(
        1 for e in a.census if e.support is m.Support.UNSUPPORTED) >= 2  # ssi, limit_except
    assert abs(sum(cov.share(s) for s in m.Support) - 1.0) < 1e-9


def test_census_skips_rejected_occurrences(tmp_path: Path) -> None:
    """Occurrences rejected with an ERROR are not counted."""
    a, _ = analyse(tmp_path, in_location("bogus 1;\nlisten 80;\nreturn 204;"))
    assert len(errors(a)) == 2
    assert [e.name for e in a.census] == ["events", "http", "server", "location", "return"]


# ---------------------------------------------------------------------------------------------
# array directives stay per level: inheritance is the proxy's job


PER_LEVEL = """\
events {}
http {
    add_header X-Http 1;
    proxy_set_header Host $host;
    server {
        listen 80;
        location / {
            add_header X-Loc 2 always;
            proxy_pass http://127.0.0.1:1;
        }
        location /b {
            proxy_set_header X-B b;
            proxy_set_header X-C "c d";
            proxy_pass http://127.0.0.1:1;
        }
    }
}
"""


def test_array_directives_stay_per_level(tmp_path: Path) -> None:
    """add_header / proxy_set_header are stored where written; None where not written."""
    a, path = analyse(tmp_path, PER_LEVEL)
    assert errors(a) == []
    http = a.config.http
    assert http is not None
    src = lambda line: m.SourceSpan(file=path, line=line)  # noqa: E731
    assert http.scope.add_headers == (m.HeaderValue(
        name="X-Http", value=m.Template(raw="1", parts=(m.Lit(text="1"),)), source=src(3)),)
    assert [h.name for h in http.scope.proxy.set_headers or ()] == ["Host"]
    server = http.servers[0]
    assert server.scope.add_headers is None
    assert server.scope.proxy.set_headers is None
    loc_a, loc_b = server.locations
    assert [(h.name, h.always) for h in loc_a.scope.add_headers or ()] == [("X-Loc", True)]
    assert loc_a.scope.proxy.set_headers is None
    assert loc_b.scope.add_headers is None
    assert [(h.name, h.value.raw, h.source.line) for h in loc_b.scope.proxy.set_headers or ()] == [
        ("X-B", "b", 12), ("X-C", "c d", 13)]


# ---------------------------------------------------------------------------------------------
# if conditions (built through the lark grammar)


def _tpl(raw: str) -> m.Template:
    from migrate.grammars import parse_template

    return parse_template(raw)


@pytest.mark.parametrize(
    ("cond", "op", "subject", "value", "pattern"),
    [
        ("($is_bot)", m.CondOp.TRUTHY, "$is_bot", None, None),
        ("($request_method = POST)", m.CondOp.EQ, "$request_method", "POST", None),
        ('($http_x != "a b")', m.CondOp.NE, "$http_x", "a b", None),
        ('($a = "")', m.CondOp.EQ, "$a", "", None),
        ("($a = $b$c)", m.CondOp.EQ, "$a", "$b$c", None),
        ('($http_user_agent ~* "bot|crawl")', m.CondOp.MATCH_CI, "$http_user_agent", None,
         "bot|crawl"),
        (r"($uri ~ ^/(\d+)$)", m.CondOp.MATCH, "$uri", None, r"^/(\d+)$"),
        ("($uri !~ foo)", m.CondOp.NOT_MATCH, "$uri", None, "foo"),
        ("($uri !~* FOO)", m.CondOp.NOT_MATCH_CI, "$uri", None, "FOO"),
        ("(-f $request_filename)", m.CondOp.FILE, "$request_filename", None, None),
        ("(!-f $request_filename)", m.CondOp.NOT_FILE, "$request_filename", None, None),
        ("(-d $document_root$uri)", m.CondOp.DIR, "$document_root$uri", None, None),
        ("(!-d /srv)", m.CondOp.NOT_DIR, "/srv", None, None),
        ("(-e $request_filename)", m.CondOp.EXISTS, "$request_filename", None, None),
        ("(!-e $request_filename)", m.CondOp.NOT_EXISTS, "$request_filename", None, None),
        ("(-x /bin/sh)", m.CondOp.EXEC, "/bin/sh", None, None),
        ("(!-x /bin/sh)", m.CondOp.NOT_EXEC, "/bin/sh", None, None),
        ("( $a )", m.CondOp.TRUTHY, "$a", None, None),
    ],
)
def test_if_condition(tmp_path: Path, cond: str, op: m.CondOp, subject: str,
                      value: str | None, pattern: str | None) -> None:
    """``if`` arguments become a Condition with the right operator and operands."""
    a, path = analyse(tmp_path, in_location(f"if {cond} {{\n    return 403;\n}}"))
    assert errors(a) == [], [d.format() for d in a.diagnostics]
    (stmt,) = a.config.http.servers[0].locations[0].scope.rewrites  # type: ignore[union-attr]
    assert isinstance(stmt, m.If)
    expected = m.Condition(op=op, subject=_tpl(subject),
                           value=None if value is None else _tpl(value), pattern=pattern,
                           source=m.SourceSpan(file=path, line=5))
    assert stmt.condition == expected
    assert stmt.scope.rewrites == (m.Return(code=403, source=m.SourceSpan(file=path, line=6)),)


def test_if_scope_is_its_own_level(tmp_path: Path) -> None:
    """Directives inside ``if`` go to the If's scope, in order; the location keeps the rest."""
    body = ("set $a 1;\nif ($x) {\n    set $b 2;\n    rewrite ^ /y break;\n    break;\n"
            "    proxy_pass http://127.0.0.1:1;\n    add_header X-If 1;\n}\nreturn 204;")
    a, _ = analyse(tmp_path, in_location(body))
    assert errors(a) == []
    loc = a.config.http.servers[0].locations[0]  # type: ignore[union-attr]
    kinds = [type(r).__name__ for r in loc.scope.rewrites]
    assert kinds == ["SetVar", "If", "Return"]
    outer = loc.scope.rewrites[1]
    assert isinstance(outer, m.If)
    assert [type(r).__name__ for r in outer.scope.rewrites] == ["SetVar", "Rewrite", "Break"]
    assert outer.scope.proxy_pass is not None
    assert [h.name for h in outer.scope.add_headers or ()] == ["X-If"]
    assert loc.scope.add_headers is None and loc.scope.proxy_pass is None


def test_server_level_if(tmp_path: Path) -> None:
    """``if`` at server level is modelled in the server's rewrite program."""
    a, _ = analyse(tmp_path, in_server("if ($host = old.example) {\n    return 301 /;\n}"))
    assert errors(a) == []
    (stmt,) = a.config.http.servers[0].scope.rewrites  # type: ignore[union-attr]
    assert isinstance(stmt, m.If) and stmt.condition.op is m.CondOp.EQ


def test_if_inside_if_is_rejected(tmp_path: Path) -> None:
    """``if`` inside ``if`` is a context ERROR, as in nginx."""
    a, _ = analyse(tmp_path, in_location("if ($a) {\n    if ($b) { return 404; }\n}"))
    (d,) = errors(a)
    assert (d.line, d.code, d.message) == (6, "context", '"if" directive is not allowed here')


def test_location_inside_if_is_rejected(tmp_path: Path) -> None:
    """A ``location`` inside ``if`` is a context ERROR."""
    a, _ = analyse(tmp_path, in_server("if ($x) {\n    location /a { }\n}"))
    (d,) = errors(a)
    assert (d.line, d.code) == (5, "context")


# ---------------------------------------------------------------------------------------------
# map


MAP_CONF = r"""events {}
http {
    map $http_host $tier {
        hostnames;
        volatile;
        default              std;
        example.com          prod;
        *.beta.example.com   beta;
        .example.net         legacy;
        www.example.*        www;
        ~^api\d+\.           api;
        ~*^ADMIN             admin-$1;
        \~literal            tilde;
        ""                   empty;
    }
    map $uri $plain {
        *.not-wild           x;
        ~/a/(?<id>\d+)       $id;
    }
}
"""


def test_map_entries(tmp_path: Path) -> None:
    """Map rows keep their kind (exact, regex, regex_ci, wildcards), default and flags."""
    a, path = analyse(tmp_path, MAP_CONF)
    assert errors(a) == []
    http = a.config.http
    assert http is not None
    tier, plain = http.maps
    assert (tier.variable, tier.source_value.raw, tier.hostnames, tier.volatile) == (
        "tier", "$http_host", True, True)
    assert tier.default == _tpl("std")
    rows = [(e.kind, e.key, e.value.raw, e.source.line) for e in tier.entries]
    assert rows == [
        (m.MapKeyKind.EXACT, "example.com", "prod", 7),
        (m.MapKeyKind.WILDCARD_START, "*.beta.example.com", "beta", 8),
        (m.MapKeyKind.WILDCARD_START, ".example.net", "legacy", 9),
        (m.MapKeyKind.WILDCARD_END, "www.example.*", "www", 10),
        (m.MapKeyKind.REGEX, r"^api\d+\.", "api", 11),
        (m.MapKeyKind.REGEX_CI, "^ADMIN", "admin-$1", 12),
        (m.MapKeyKind.EXACT, "~literal", "tilde", 13),
        (m.MapKeyKind.EXACT, "", "empty", 14),
    ]
    assert tier.source == m.SourceSpan(file=path, line=3)
    # without "hostnames", "*.x" is an exact key; captures in values are variables
    assert (plain.hostnames, plain.volatile, plain.default) == (False, False, None)
    assert [(e.kind, e.key) for e in plain.entries] == [
        (m.MapKeyKind.EXACT, "*.not-wild"), (m.MapKeyKind.REGEX, r"/a/(?<id>\d+)")]
    assert plain.entries[1].value.variables == ("id",)


def test_map_rows_are_not_directives(tmp_path: Path) -> None:
    """Map rows are data: no unknown-directive errors, not counted in the census."""
    a, _ = analyse(tmp_path, MAP_CONF)
    assert [e.name for e in a.census] == ["events", "http", "map", "map"]


def test_map_row_with_wrong_arity(tmp_path: Path) -> None:
    """A map row with two values is an ERROR at that row."""
    a, _ = analyse(tmp_path, in_http("map $a $b {\n    x 1 2;\n}"))
    (d,) = errors(a)
    assert (d.line, d.code) == (4, "arity")


# ---------------------------------------------------------------------------------------------
# fragments


def _fragment_note(a: Analysis) -> Diagnostic:
    (note,) = [d for d in a.diagnostics if d.code == "fragment"]
    return note


def test_fragment_of_server_blocks(tmp_path: Path) -> None:
    """A file of only ``server {}`` blocks is read inside http {} with an INFO note."""
    text = ("server {\n    listen 8080;\n    server_name a.example;\n"
            "    location / { return 200 a; }\n}\n\nserver {\n    listen 8081;\n}\n")
    a, path = analyse(tmp_path, text, "site.conf")
    assert [d for d in a.diagnostics if d.level is not Level.INFO] == []
    note = _fragment_note(a)
    assert (note.level, note.file, note.line) == (Level.INFO, path, 0)
    assert "http {}" in note.message and "server {}" not in note.message
    http = a.config.http
    assert http is not None
    assert [(s.source.line, [lst.port for lst in s.listens]) for s in http.servers] == [
        (1, [8080]), (7, [8081])]
    # the implied blocks are not directive occurrences
    assert [e.name for e in a.census] == ["server", "listen", "server_name", "location", "return",
                                          "server", "listen"]


def test_fragment_of_location_blocks(tmp_path: Path) -> None:
    """A file of only ``location`` blocks is read inside http {} > server {}."""
    text = "location /a {\n    return 200 a;\n}\nlocation = /b {\n    return 204;\n}\n"
    a, path = analyse(tmp_path, text, "locs.conf")
    assert [d for d in a.diagnostics if d.level is not Level.INFO] == []
    assert "http {} > server {}" in _fragment_note(a).message
    (server,) = a.config.http.servers  # type: ignore[union-attr]
    assert [(loc.match, loc.source) for loc in server.locations] == [
        ("/a", m.SourceSpan(file=path, line=1)), ("= /b", m.SourceSpan(file=path, line=4))]


def test_fragment_of_server_level_directives(tmp_path: Path) -> None:
    """A server-level snippet (root, locations) is read inside a server, not at http level."""
    text = "root /srv/www;\nerror_page 404 /404.html;\nlocation /a {\n    return 204;\n}\n"
    a, _ = analyse(tmp_path, text, "snippet.conf")
    assert [d for d in a.diagnostics if d.level is not Level.INFO] == []
    assert "http {} > server {}" in _fragment_note(a).message
    (server,) = a.config.http.servers  # type: ignore[union-attr]
    assert server.scope.static.root is not None
    assert [loc.match for loc in server.locations] == ["/a"]


def test_fragment_of_location_level_directives(tmp_path: Path) -> None:
    """A location-level snippet (proxy_pass with headers) is read inside a location."""
    text = "proxy_set_header Host $host;\nproxy_pass http://127.0.0.1:8080;\n"
    a, _ = analyse(tmp_path, text, "proxy.conf")
    assert [d for d in a.diagnostics if d.level is not Level.INFO] == []
    assert "http {} > server {} > location {}" in _fragment_note(a).message
    (loc,) = a.config.http.servers[0].locations  # type: ignore[union-attr]
    assert loc.scope.proxy_pass is not None


def test_fragment_of_http_level_directives(tmp_path: Path) -> None:
    """An http-level snippet (upstream, map, add_header) is read inside http {}."""
    text = "upstream u {\n    server 127.0.0.1:1;\n}\nadd_header X-A 1;\n"
    a, _ = analyse(tmp_path, text, "http.conf")
    assert [d for d in a.diagnostics if d.level is not Level.INFO] == []
    assert _fragment_note(a).message.endswith("http {}")


def test_main_file_is_not_a_fragment(tmp_path: Path) -> None:
    """A complete nginx.conf gets no fragment note."""
    a, _ = analyse(tmp_path, in_server("listen 80;"))
    assert [d.code for d in a.diagnostics] == []


def test_fragment_references_are_warnings(tmp_path: Path) -> None:
    """In a fragment, a zone or log format defined elsewhere is a warning, not an error."""
    text = "server {\n    access_log logs/a.log main;\n    limit_req zone=z;\n}\n"
    a, _ = analyse(tmp_path, text, "site.conf")
    assert errors(a) == []
    assert sorted(d.code for d in a.diagnostics if d.level is Level.WARNING) == [
        "unknown-log-format", "unknown-zone"]


def _walk_spans(node: object) -> Iterator[m.SourceSpan]:
    import dataclasses

    if isinstance(node, m.SourceSpan):
        yield node
    elif isinstance(node, tuple):
        for v in node:
            yield from _walk_spans(v)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _walk_spans(getattr(node, f.name))


def test_fragment_spans_point_into_the_file(tmp_path: Path) -> None:
    """Every node built from a fragment points at a real line of that file."""
    text = "location /a {\n    return 200 a;\n}\n"
    a, path = analyse(tmp_path, text, "locs.conf")
    spans = [s for s in _walk_spans(a.config) if s.line != 0]
    assert spans and all(s.file == path and 1 <= s.line <= 3 for s in spans)
