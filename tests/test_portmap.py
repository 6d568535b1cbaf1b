"""``migrate.portmap``: port-mapped single-file copies of config trees for side-by-side runs.

Every fixture tree is rewritten and must pass ``nginx -t``; its listens get unique free ports on
127.0.0.1, its upstream addresses the given replacements, and every other directive reads back
exactly as it was (arguments survive crossplane.build and nginx's quoting rules).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from migrate.loader import Stmt, Tree, load
from migrate.portmap import (
    Rewritten,
    Scan,
    _bare_ok,
    normalise_address,
    prepare_run_dir,
    quote_arg,
    rewrite,
    scan,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = sorted((REPO / "fixtures" / "nginx").glob("*/nginx.conf"))
NGINX = Path("/usr/sbin/nginx")
needs_nginx = pytest.mark.skipif(not NGINX.exists() and not os.environ.get("CI"),
                                 reason=f"{NGINX} is not installed (CI must have it)")

REWRITTEN = frozenset({
    "listen", "pid", "error_log", "access_log", "lock_file", "user", "daemon", "master_process",
    "worker_processes", "root", "alias", "load_module", "proxy_pass", "fastcgi_pass",
    "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass", "events",
    "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path",
    "scgi_temp_path", "proxy_cache_path", "ssl_certificate", "ssl_certificate_key",
    "auth_basic_user_file",
})
"""Directives the rewrite may change, add or drop (everything else must read back the same)."""


def nginx_t(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NGINX), "-t", "-p", str(run_dir), "-c", str(run_dir / "nginx.conf"),
         "-g", "daemon off; master_process off;"],
        capture_output=True, text=True, timeout=30)


def rewrite_fixture(conf: Path, run_dir: Path
                    ) -> tuple[Tree, Scan, dict[str, str], Rewritten]:
    tree = load(str(conf))
    assert not tree.diagnostics
    found = scan(tree)
    upstreams = {a: f"127.0.0.1:{40000 + i}" for i, a in enumerate(found.upstreams)}
    prepare_run_dir(str(run_dir))
    result = rewrite(tree, run_dir=str(run_dir), upstreams=upstreams)
    result.write(str(run_dir / "nginx.conf"))
    return tree, found, upstreams, result


def flatten(stmts: list[Stmt], parents: tuple[str, ...] = (), *, skip_upstream_servers: bool
            ) -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """(enclosing block names, name, args) of every directive not in REWRITTEN, in order."""
    out: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = []
    for st in stmts:
        upstream_server = parents[-1:] == ("upstream",) and st.name == "server"
        if st.name in REWRITTEN or (upstream_server and skip_upstream_servers):
            pass
        else:
            args = st.args
            if st.name == "if":
                args = _if_args(st.args, st.quoted)
            out.append((parents, st.name, args))
        if st.block is not None:
            out.extend(flatten(st.block, (*parents, st.name),
                               skip_upstream_servers=skip_upstream_servers))
    return out


def _if_args(args: tuple[str, ...], quoted: tuple[bool, ...]) -> tuple[str, ...]:
    values = list(args)
    if values and not quoted[0] and values[0].startswith("("):
        values[0] = values[0][1:]
    if values and not quoted[-1] and values[-1].endswith(")"):
        values[-1] = values[-1][:-1]
    return tuple(v for i, v in enumerate(values)
                 if v or quoted[i])  # nginx's "(" / ")" tokens vanish


# --------------------------------------------------------------------------------------------
# every fixture


@needs_nginx
@pytest.mark.nginx
@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_rewrite_passes_nginx_t(conf: Path, tmp_path: Path) -> None:
    """The rewritten copy of every fixture is accepted by Debian's nginx."""
    _, _, _, _ = rewrite_fixture(conf, tmp_path)
    result = nginx_t(tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_ports_are_unique_and_on_loopback(conf: Path, tmp_path: Path) -> None:
    """Each original endpoint gets its own new port; every listen uses 127.0.0.1 and a port of
    the mapping, and servers that shared an endpoint still share its new port."""
    tree, found, _, result = rewrite_fixture(conf, tmp_path)
    assert set(result.ports) == {s.key for s in found.listens}
    assert len(set(result.ports.values())) == len(result.ports)
    assert not set(result.ports.values()) & {s.port for s in found.listens}
    reread = load(str(tmp_path / "nginx.conf"))
    assert not reread.diagnostics
    listens = [st for st, _ in _walk(reread.stmts) if st.name == "listen"]
    assert listens
    for st in listens:
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", st.args[0])
        assert m, st.args
        assert int(m.group(1)) in result.ports.values()
        assert not any(a.startswith("ipv6only") for a in st.args)


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_upstreams_are_replaced(conf: Path, tmp_path: Path) -> None:
    """Upstream ``server`` lines and literal ``*_pass`` hosts all point at replacements; no
    original upstream address is left in the text."""
    tree, found, upstreams, result = rewrite_fixture(conf, tmp_path)
    assert dict(result.upstreams) == upstreams
    reread = load(str(tmp_path / "nginx.conf"))
    replacements = set(upstreams.values())
    for st, parents in _walk(reread.stmts):
        if parents[-1:] == ("upstream",) and st.name == "server":
            assert st.args[0] in replacements
        elif st.name in ("proxy_pass", "fastcgi_pass") and "$" not in st.args[0]:
            host = re.sub(r"^\w+://", "", st.args[0]).split("/")[0]
            assert host in replacements or host.lower() in _groups(reread.stmts), st.args
    for original in upstreams:
        shown = original[:-3] if original.endswith(":80") else original
        assert not re.search(re.escape(shown) + r"(?!\d)", result.text), original


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_other_directives_read_back_unchanged(conf: Path, tmp_path: Path) -> None:
    """Every directive the rewrite does not own reads back with the same arguments, in order."""
    tree, _, _, _ = rewrite_fixture(conf, tmp_path)
    reread = load(str(tmp_path / "nginx.conf"))
    before = flatten(tree.stmts, skip_upstream_servers=True)
    after = flatten(reread.stmts, skip_upstream_servers=True)
    if scan(tree).variable_targets:
        # rule 2: map/set values that are literal upstream addresses were replaced as well
        before = [e for e in before if not _ip_port_value(e)]
        after = [e for e in after if not _ip_port_value(e)]
    assert after == before
    assert len(before) > 10


def _ip_port_value(entry: tuple[tuple[str, ...], str, tuple[str, ...]]) -> bool:
    return bool(entry[2]) and re.fullmatch(r"[\d.]+:\d+", entry[2][-1]) is not None


@pytest.mark.parametrize("conf", FIXTURES, ids=lambda p: p.parent.name)
def test_fixture_source_map_points_at_original_lines(conf: Path, tmp_path: Path) -> None:
    """Each line of the copy that holds a directive maps to that directive's file:line."""
    tree, _, _, result = rewrite_fixture(conf, tmp_path)
    originals = {(st.file, st.line): st.name for st, _ in _walk(tree.stmts)}
    lines = result.text.split("\n")
    mapped = 0
    for number, line in enumerate(lines, 1):
        origin = result.origin(number)
        if origin is None:
            continue
        mapped += 1
        name = line.strip().split(" ", 1)[0].rstrip(";")
        assert (origin.file, origin.line) in originals
        if originals[(origin.file, origin.line)] not in ("if",):
            assert name.strip("'\"") == originals[(origin.file, origin.line)] or \
                name.startswith(("'", '"')), (number, line, origin)
    assert mapped > 5


# --------------------------------------------------------------------------------------------
# rules in detail


def _walk(stmts: list[Stmt], parents: tuple[str, ...] = ()
          ) -> list[tuple[Stmt, tuple[str, ...]]]:
    out: list[tuple[Stmt, tuple[str, ...]]] = []
    for st in stmts:
        out.append((st, parents))
        if st.block is not None:
            out.extend(_walk(st.block, (*parents, st.name)))
    return out


def _groups(stmts: list[Stmt]) -> set[str]:
    return {st.args[0].lower() for st, _ in _walk(stmts) if st.name == "upstream"}


def write(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "src" / "nginx.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)
    return conf


def rewrite_text(tmp_path: Path, text: str, upstreams: dict[str, str] | None = None
                 ) -> tuple[Tree, Scan, Rewritten, Tree]:
    conf = write(tmp_path, text)
    tree = load(str(conf))
    assert not tree.diagnostics, tree.diagnostics
    run = tmp_path / "run"
    prepare_run_dir(str(run))
    found = scan(tree)
    mapping = upstreams if upstreams is not None else {
        a: f"127.0.0.1:{41000 + i}" for i, a in enumerate(found.upstreams)}
    result = rewrite(tree, run_dir=str(run), upstreams=mapping)
    result.write(str(run / "nginx.conf"))
    return tree, found, result, load(str(run / "nginx.conf"))


TRICKY = [
    "plain", "with space", "semi;colon", "{brace}", "a}b", 'dq"x', "sq'x", "both\"'q",
    "back\\slash", "\\.php$", "ends\\", "\\n-literal", "\\\\double", "tab\there",
    "new\nline", "#hash", "mid#hash", "$var", "${var}x", "x$", "", "(paren)", "é-unicode",
    "ctl\x01char",
]


@pytest.mark.parametrize("value", TRICKY)
def test_quote_arg_reads_back(value: str) -> None:
    """quote_arg's token, read by nginx's tokenizer rules, is the value again."""
    from migrate.lexer import tokenize

    tokens = tokenize(f"x {quote_arg(value)};")
    assert [t.value for t in tokens[1:-1]] == [value]


def test_tricky_arguments_survive_the_rewrite(tmp_path: Path) -> None:
    """Rule 5: quotes, braces, semicolons, escapes, ``#``, ``$`` and newlines read back
    exactly, as arguments, map keys and map values, and inside ``if`` conditions."""
    args = " ".join(quote_arg(v) for v in TRICKY)
    rows = "\n".join(f"{quote_arg(v)} {quote_arg(v)};" for v in TRICKY if v not in ("",))
    text = f"""
events {{}}
http {{
    map $uri $m {{
        default "";
        if 1;
        {rows}
    }}
    server {{
        listen 8080;
        add_header X-T {args};
        if ($http_x = ")") {{ return 403; }}
        if ($http_x ~ "^(a|b) c$") {{ return 404; }}
        if ($m) {{ return 200 "x"; }}
        location ~ "^/a b/(?<x>[a-z]{{2,3}})$" {{ return 200 "$x"; }}
    }}
}}
"""
    tree, _, _, reread = rewrite_text(tmp_path, text)
    assert flatten(reread.stmts, skip_upstream_servers=False) == flatten(
        tree.stmts, skip_upstream_servers=False)


@needs_nginx
@pytest.mark.nginx
def test_tricky_return_text_reaches_the_client(tmp_path: Path) -> None:
    """nginx itself reads the emitted quoting back: a ``return`` text full of quoting hazards
    arrives byte for byte."""
    text_value = "a\"b'c\\d\\n{;}#e\tf\nnext line é"
    conf = f"""
events {{}}
http {{
    server {{
        listen 8080;
        location / {{ default_type text/plain; return 200 {quote_arg(text_value)}; }}
    }}
}}
"""
    _, _, result, _ = rewrite_text(tmp_path, conf)
    run = tmp_path / "run"
    assert nginx_t(run).returncode == 0
    port = result.ports[("*", 8080)]
    proc = subprocess.Popen([str(NGINX), "-p", str(run), "-c", str(run / "nginx.conf"),
                             "-g", "daemon off; master_process off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(5)
    assert body == text_value.encode("utf-8")


def test_listen_rules(tmp_path: Path) -> None:
    """Rule 1: ``80``, ``*:80`` and ``0.0.0.0:80`` are one endpoint; a specific address is
    another; parameters stay (ipv6only goes); a server without listen gets the implicit one;
    unix sockets move into the run directory."""
    text = """
events {}
http {
    server { listen 8080 default_server; server_name a; }
    server { listen *:8080; server_name b; }
    server { listen 0.0.0.0:8080 ; server_name c; }
    server { listen 127.0.0.1:8080; server_name d; }
    server { listen [::]:8080 ipv6only=on; server_name e; }
    server { listen 8443 ssl http2; server_name f; }
    server { server_name g; }
    server { listen unix:/var/run/x.sock; server_name h; }
}
"""
    tree, found, result, reread = rewrite_text(tmp_path, text)
    implicit = 80 if os.geteuid() == 0 else 8000
    assert [s.key for s in found.listens] == [
        ("*", 8080), ("127.0.0.1", 8080), ("[::]", 8080), ("*", 8443), ("*", implicit),
        ("unix:/var/run/x.sock", 0)]
    assert [s.ssl for s in found.listens] == [False, False, False, True, False, False]
    assert found.listens[4].implicit
    assert set(result.ports) == {k.key for k in found.listens[:5]}
    servers = [st for st, p in _walk(reread.stmts) if st.name == "server"]
    listens = [c.args for s in servers for c in s.block or [] if c.name == "listen"]
    p = result.ports
    assert listens == [
        (f"127.0.0.1:{p[('*', 8080)]}", "default_server"),
        (f"127.0.0.1:{p[('*', 8080)]}",), (f"127.0.0.1:{p[('*', 8080)]}",),
        (f"127.0.0.1:{p[('127.0.0.1', 8080)]}",), (f"127.0.0.1:{p[('[::]', 8080)]}",),
        (f"127.0.0.1:{p[('*', 8443)]}", "ssl", "http2"),
        (f"127.0.0.1:{p[('*', implicit)]}",),
        (f"unix:{tmp_path / 'run' / 'sockets' / '1.sock'}",),
    ]
    assert found.listen(8080) is not None and found.listen(8080).address == "*"  # type: ignore[union-attr]
    assert found.listen(8080, "127.0.0.1").address == "127.0.0.1"  # type: ignore[union-attr]
    assert found.listen(9999) is None


def test_upstream_rules(tmp_path: Path) -> None:
    """Rule 2: upstream servers and literal *_pass hosts are replaced, group names are not,
    https becomes http, the URI part stays, and variable targets are reported."""
    text = """
events {}
http {
    upstream app { server 10.0.0.1:8000 weight=2; server Backend.internal; server unix:/x.sock; }
    map $arg_b $dyn { default 10.0.0.9:9000; other app; }
    server {
        listen 8080;
        location /a { proxy_pass http://app; }
        location /b { proxy_pass https://api.example.com/v2/; }
        location /c { proxy_pass http://10.0.0.2:81$request_uri; }
        location /d { proxy_pass http://unix:/run/y.sock:/u; }
        location /e { proxy_pass http://$dyn; }
        location /f { fastcgi_pass 10.0.0.3:9000; }
        location /g { proxy_pass http://app:8080; }
    }
}
"""
    tree, found, result, reread = rewrite_text(tmp_path, text)
    assert found.upstreams == (
        "10.0.0.1:8000", "backend.internal:80", "unix:/x.sock", "api.example.com:443",
        "10.0.0.2:81", "unix:/run/y.sock", "10.0.0.3:9000", "app:8080", "10.0.0.9:9000")
    assert found.variable_targets
    assert [d.line for d in found.diagnostics] == [12]
    r = dict(result.upstreams)
    passes = [st.args[0] for st, _ in _walk(reread.stmts) if st.name.endswith("_pass")]
    assert passes == [
        "http://app", f"http://{r['api.example.com:443']}/v2/",
        f"http://{r['10.0.0.2:81']}$request_uri", f"http://{r['unix:/run/y.sock']}:/u",
        "http://$dyn", r["10.0.0.3:9000"], f"http://{r['app:8080']}"]
    servers = [st.args for st, p in _walk(reread.stmts) if p[-1:] == ("upstream",)]
    assert servers == [(r["10.0.0.1:8000"], "weight=2"), (r["backend.internal:80"],),
                       (r["unix:/x.sock"],)]
    rows = [st for st, p in _walk(reread.stmts) if st.name == "map"][0].block or []
    assert [row.args for row in rows] == [(r["10.0.0.9:9000"],), ("app",)]


def test_missing_replacement_is_a_warning(tmp_path: Path) -> None:
    """An upstream address without a replacement stays and is reported."""
    text = "events {}\nhttp { server { listen 8080; location / { proxy_pass http://10.1.1.1; } } }"
    _, _, result, _ = rewrite_text(tmp_path, text, upstreams={})
    assert "10.1.1.1" in result.text
    assert any("no replacement" in d.message for d in result.diagnostics)


def test_run_directory_and_paths(tmp_path: Path) -> None:
    """Rules 3 and 4: logs, pid, temp and cache paths move into the run directory; relative
    paths become absolute against the prefix (root) or the conf directory (certificates)."""
    text = """
user www-data;
daemon on;
master_process on;
worker_processes auto;
pid /run/nginx.pid;
lock_file /run/lock;
error_log /var/log/nginx/error.log warn;
events {}
http {
    access_log /var/log/nginx/access.log combined buffer=4k;
    error_log syslog:server=10.0.0.1 info;
    proxy_cache_path /var/cache/nginx keys_zone=c:1m;
    proxy_temp_path /var/lib/nginx/proxy 1 2;
    server {
        listen 8443 ssl;
        root html;
        access_log off;
        ssl_certificate certs/a.crt;
        ssl_certificate_key /etc/ssl/a.key;
        location /x/ { alias files/x/; }
        location /v { root $document_root/v; }
    }
}
"""
    tree, _, result, reread = rewrite_text(tmp_path, text)
    run = str(tmp_path / "run")
    src = str(tmp_path / "src")
    got = {(st.name, p): st.args for st, p in _walk(reread.stmts)}
    names = [st.name for st in reread.stmts]
    assert "user" not in names and "daemon" not in names and "master_process" not in names
    assert "lock_file" not in names
    assert got[("pid", ())] == (f"{run}/nginx.pid",)
    assert got[("error_log", ())] == (f"{run}/logs/error.log", "warn")
    assert got[("worker_processes", ())] == ("1",)
    assert got[("access_log", ("http",))] == (f"{run}/logs/access.log", "combined", "buffer=4k")
    assert got[("error_log", ("http",))] == (f"{run}/logs/error.log", "info")
    assert got[("proxy_cache_path", ("http",))] == (f"{run}/cache/1", "keys_zone=c:1m")
    assert got[("proxy_temp_path", ("http",))] == (f"{run}/tmp/proxy", "1", "2")
    assert got[("client_body_temp_path", ("http",))] == (f"{run}/tmp/client_body",)
    assert got[("access_log", ("http", "server"))] == ("off",)
    assert got[("root", ("http", "server"))] == (f"{src}/html",)
    assert got[("ssl_certificate", ("http", "server"))] == (f"{src}/certs/a.crt",)
    assert got[("ssl_certificate_key", ("http", "server"))] == ("/etc/ssl/a.key",)
    assert got[("alias", ("http", "server", "location"))] == (f"{src}/files/x/",)
    assert got[("root", ("http", "server", "location"))] == ("$document_root/v",)


def test_events_block_is_added_when_missing(tmp_path: Path) -> None:
    """nginx needs an events block; the copy has one."""
    _, _, _, reread = rewrite_text(tmp_path, "http { server { listen 8080; } }")
    assert [st.name for st in reread.stmts][:3] == ["pid", "error_log", "events"]


@pytest.mark.parametrize(("text", "port", "expected"), [
    ("10.0.0.1:8080", 80, "10.0.0.1:8080"),
    ("Backend", 80, "backend:80"),
    ("backend", 443, "backend:443"),
    ("[::1]:9000", 80, "[::1]:9000"),
    ("[::1]", 80, "[::1]:80"),
    ("unix:/run/a.sock", 80, "unix:/run/a.sock"),
])
def test_normalise_address(text: str, port: int, expected: str) -> None:
    """Rule 2: addresses are compared as host:port with the scheme's default port."""
    assert normalise_address(text, port) == expected


def test_bare_ok_is_conservative() -> None:
    """Only values crossplane emits correctly go through it without a placeholder."""
    assert _bare_ok("\\.php$") and _bare_ok("$host") and _bare_ok("~*bot")
    for value in ("", "a b", "#x", "a;b", "a{b", 'a"b', "a\\", "a\\nb", "\x01"):
        assert not _bare_ok(value)
