"""add_before_body, add_after_body and addition_types against nginx 1.22.1: static, ``return``
and proxied main answers with static, ``return``, redirecting, missing and proxied additions;
addition_types (other types, ``*``), answers that get nothing (non-200, other types), HEAD,
Range, conditional requests, HTTP/1.0, inheritance (and ``""`` turning it off), gzip and
sub_filter together.  Heads and bodies byte for byte, and what the upstream received (the
proxied subrequests included).  A second configuration runs Tern with ``TERN_LANE_TRACE``: such
locations never ride the compiled lane (or the fast path), a control location does."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair  # noqa: E402

from shadow.echo import Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

UP = "10.0.47.1:8001"

CONF = r"""
events {}
http {
    log_format bytes '"$request" $status $body_bytes_sent';
    access_log logs/access.log bytes;
    types { text/html html; text/plain txt; text/css css; }
    upstream u { server 10.0.47.1:8001; }
    server {
        listen 8961;
        root www;
        location /both/ { add_before_body /parts/before.html; add_after_body /parts/after.html; }
        location /pre/ { alias www/both/; add_before_body /parts/before.html; }
        location /post/ { alias www/both/; add_after_body /parts/after.html; }
        location /types/ { alias www/both/; add_after_body /parts/after.html;
                           addition_types text/plain; }
        location /types2/ { alias www/both/; add_after_body /parts/after.html;
                            addition_types text/plain; addition_types TEXT/CSS; }
        location /star/ { alias www/both/; add_after_body /parts/after.html; addition_types *; }
        location /miss/ { alias www/both/; add_before_body /parts/nope.html;
                          add_after_body /parts/after.html; }
        location /redir/ { alias www/both/; add_before_body /jump; add_after_body /parts; }
        location /jump { return 302 /elsewhere; }
        location /int/ { alias www/both/; add_after_body /secret/x; }
        location /secret/ { internal; default_type text/html; return 200 "[secret $uri]"; }
        location /denied/ { alias www/both/; add_after_body /closed/after.html; }
        location /closed/ { alias www/parts/; deny all; }
        location /vars/ { alias www/both/; add_before_body /echo/v; }
        location /echo/ { default_type text/html;
                          return 200 "[$request_method $uri $args $request_uri]"; }
        location /ret/ { default_type text/html; add_before_body /parts/before.html;
                         add_after_body /parts/after.html; return 200 "returned"; }
        location /retempty/ { default_type text/html; add_before_body /parts/before.html;
                              add_after_body /parts/after.html; return 200 ""; }
        location /ret404/ { default_type text/html; add_before_body /parts/before.html;
                            return 404; }
        location /ret302/ { add_before_body /parts/before.html; return 302 /x; }
        location /ep/ { alias www/both/; add_before_body /parts/before.html;
                        error_page 404 =200 /parts/page.html; }
        location /up/ { add_before_body /parts/before.html; add_after_body /upadd/tail;
                        proxy_pass http://u; }
        location /upadd/ { proxy_pass http://u; }
        location /upint/ { add_after_body /parts/after.html; proxy_intercept_errors on;
                           error_page 404 =200 /parts/page.html; error_page 500 /parts/page.html;
                           proxy_pass http://u; }
        location /authed/ { alias www/both/; auth_request /check;
                            add_after_body /parts/after.html; }
        location = /check { if ($http_x_ok) { return 204; } return 401; }
        location /nest/ { alias www/both/; add_before_body /both/a.html; }
        location /gz/ { alias www/both/; add_before_body /parts/before.html;
                        add_after_body /parts/after.html; gzip on; gzip_min_length 1;
                        gzip_types text/plain; }
        location /sf/ { alias www/both/; add_before_body /sfparts/before.html;
                        add_after_body /sfparts/after.html; sub_filter main MAIN;
                        sub_filter abc XYZ; sub_filter_once off; }
        location /sfparts/ { alias www/parts/; sub_filter before BEFORE-SUBBED; }
        location /query/ { alias www/both/; add_before_body /echo/q?a=1&b=2;
                           add_after_body /parts/after.html?x; }
        location /epsub/ { alias www/both/; add_after_body /epmiss/x.html; }
        location /epmiss/ { error_page 404 /parts/page.html; }
        location /dir/ { alias www/both/; add_before_body /parts/; add_after_body /idx/; }
        location /idx/ { alias www/idx/; }
        location /rw/ { alias www/both/; add_after_body /old/after; }
        location /old/ { rewrite ^/old/(.*)$ /parts/$1.html last; }
        location /tf/ { alias www/both/; add_after_body /try/x; }
        location /try/ { try_files /nothing /parts/after.html =404; }
        location /auto/ { alias www/idx/; autoindex on; add_before_body /parts/before.html;
                          add_after_body /parts/after.html; }
        location /pct/ { alias www/both/; add_after_body /parts/sp%20ace.html; }
        location /rel/ { alias www/both/; add_after_body parts/after.html; }
        location /down/ { alias www/both/; add_after_body /dead/; }
        location /dead/ { proxy_pass http://127.0.0.1:9/; }
        location /closing/ { alias www/both/; add_after_body /c444; }
        location = /c444 { return 444; }
        location /bigadd/ { alias www/both/; add_before_body /both/big.html;
                            add_after_body /both/big.html; }
        location /cs/ { alias www/both/; charset utf-8; add_after_body /parts/after.html; }
        location /upost/ { add_before_body /upadd/tail; proxy_pass http://u; }
        location /sfgz/ { alias www/both/; add_after_body /sfparts/after.html;
                          sub_filter main MAIN; gzip on; gzip_min_length 1; }
    }
    server {
        listen 8965 http2;
        root www;
        location /both/ { add_before_body /parts/before.html; add_after_body /parts/after.html;
                          gzip on; gzip_min_length 1; }
        location /up/ { add_after_body /upadd/tail; proxy_pass http://u; }
        location /upadd/ { proxy_pass http://u; }
    }
    server {
        listen 8962;
        root www;
        add_before_body /parts/before.html;
        add_after_body /parts/after.html;
        location /inh/ { alias www/both/; }
        location /off/ { alias www/both/; add_before_body ""; }
        location /outer/ {
            alias www/both/;
            add_after_body /parts/page.html;
            location /outer/inner/ { alias www/both/; }
        }
    }
}
"""

FILES: dict[str, str | bytes] = {
    "www/both/a.html": "<p>main hello</p>\n",
    "www/both/b.txt": "plain text\n",
    "www/both/c.css": "p{}\n",
    "www/both/empty.html": "",
    "www/both/partial.html": "main xx ab",
    "www/both/big.html": "<p>" + "big main body, " * 6000 + "</p>\n",
    "www/parts/before.html": "<header>before</header>\n",
    "www/parts/after.html": "<footer>after</footer>\n",
    "www/parts/page.html": "<div>error page</div>\n",
    "www/idx/index.html": "<nav>index</nav>\n",
    "www/parts/sp%20ace.html": "<i>no decoding</i>\n",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("addition"), CONF, FILES)
    try:
        html = ("<p>" + "proxied hello, " * 5000 + "</p>").encode()
        p.behave(UP, Behaviour(prefix="/up/html", headers=(("Content-Type", "text/html"),),
                               body=html),
                 Behaviour(prefix="/up/small", headers=(("Content-Type", "text/html"),),
                           body=b"<i>small</i>"),
                 Behaviour(prefix="/up/charset",
                           headers=(("Content-Type", "text/html; charset=utf-8"),
                                    ("ETag", '"up-etag"'),
                                    ("Last-Modified", "Mon, 02 Jan 2023 10:00:00 GMT")),
                           body=b"with charset"),
                 Behaviour(prefix="/up/plain", headers=(("Content-Type", "text/plain"),),
                           body=b"plain upstream"),
                 Behaviour(prefix="/up/empty", headers=(("Content-Type", "text/html"),),
                           body=b""),
                 Behaviour(prefix="/up/404", status=404,
                           headers=(("Content-Type", "text/html"),), body=b"upstream 404"),
                 Behaviour(prefix="/up/500", status=500,
                           headers=(("Content-Type", "text/html"),), body=b"upstream 500"),
                 Behaviour(prefix="/upint/404", status=404,
                           headers=(("Content-Type", "text/html"),), body=b"upstream 404"),
                 Behaviour(prefix="/upint/500", status=500,
                           headers=(("Content-Type", "text/html"),), body=b"upstream 500"),
                 Behaviour(prefix="/upint/ok", headers=(("Content-Type", "text/html"),),
                           body=b"upstream ok"),
                 Behaviour(prefix="/upadd/tail", headers=(("Content-Type", "text/plain"),),
                           body=b"<tail from upstream>"))
        yield p
    finally:
        p.close()


GETS = [
    "/both/a.html", "/pre/a.html", "/post/a.html", "/both/empty.html", "/post/empty.html",
    "/both/big.html",
    # types
    "/both/b.txt", "/both/c.css", "/types/b.txt", "/types/a.html", "/types/c.css",
    "/types2/b.txt", "/types2/c.css", "/star/c.css", "/star/b.txt",
    # what the subrequests answer
    "/miss/a.html", "/redir/a.html", "/int/a.html", "/denied/a.html",
    "/vars/a.html?x=1&y=2",
    # return / error pages
    "/ret/", "/retempty/", "/ret404/", "/ret302/", "/ep/nothing.html", "/both/missing.html",
    # proxied
    "/upint/404", "/upint/500", "/upint/ok", "/nest/b.txt", "/nest/a.html",
    "/up/html", "/up/small", "/up/charset", "/up/plain", "/up/empty", "/up/404", "/up/500",
    # sub_filter
    "/sf/a.html", "/sf/partial.html", "/sf/empty.html",
    # error_page, index, rewrite and try_files in the subrequest; autoindex main
    "/epsub/a.html", "/dir/a.html", "/rw/a.html", "/tf/a.html", "/auto/",
    # URIs with a query, '%', relative; a dead upstream, a big addition, charset
    "/query/a.html", "/pct/a.html", "/rel/a.html", "/down/a.html", "/bigadd/a.html",
    "/cs/a.html", "/upost/small",
]


@pytest.mark.parametrize("url", GETS)
def test_get(pair: Pair, url: str) -> None:
    pair.ask(url).check()


@pytest.mark.parametrize("url", ["/inh/a.html", "/off/a.html", "/outer/a.html",
                                 "/outer/inner/a.html", "/inh/b.txt"])
def test_inheritance(pair: Pair, url: str) -> None:
    pair.ask(url, port=8962).check()


@pytest.mark.parametrize("url", ["/both/a.html", "/both/b.txt", "/up/html", "/ret/",
                                 "/both/empty.html"])
def test_head(pair: Pair, url: str) -> None:
    pair.ask(url, method="HEAD").check()


@pytest.mark.parametrize("url", ["/both/a.html", "/both/b.txt", "/up/small"])
def test_range_not_served_when_added(pair: Pair, url: str) -> None:
    pair.ask(url, headers=(("Range", "bytes=0-5"),)).check()


def test_conditional(pair: Pair) -> None:
    first = pair.ask("/both/a.html").check()
    etag = first.header("etag")
    assert etag and etag.startswith('W/"')
    # the weak ETag sent still matches (If-None-Match compares weakly): 304, no additions
    pair.ask("/both/a.html", headers=(("If-None-Match", etag),)).check()
    pair.ask("/both/a.html", headers=(("If-None-Match", etag[2:]),)).check()
    pair.ask("/both/a.html",
             headers=(("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),)).check()
    # the subrequests answer whole whatever the client's conditions (only the main request
    # is conditional)
    part = pair.ask("/parts/before.html").check()
    for name, value in (("If-None-Match", part.header("etag")),
                        ("If-Modified-Since", part.header("last-modified"))):
        assert value
        out = pair.ask("/up/small", headers=((name, value),)).check()
        assert out.nginx.response.body.startswith(b"<header>before</header>")


def test_post_main(pair: Pair) -> None:
    """The proxied subrequest is a GET (what the upstream received is compared too)."""
    pair.ask("/upost/small", method="POST", body=b"a=1&b=2",
             headers=(("Content-Type", "application/x-www-form-urlencoded"),)).check()


def test_subrequest_closing_the_connection(pair: Pair) -> None:
    """``return 444`` in the add_after_body subrequest closes the client's connection: no
    complete answer on either side (nginx had not written its small answer yet; Tern had
    sent the head and the main body: docs/differences.md)."""
    out = pair.raw(b"GET /closing/a.html HTTP/1.1\r\nHost: localhost\r\n{tag}\r\n\r\n",
                   compare_close=False, deadline=3.0)
    for side in (out.nginx, out.tern):
        assert side.closed
        assert side.responses == []
    assert out.tern.leftover.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not out.tern.leftover.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("ok", ["1", ""])
def test_auth_request(pair: Pair, ok: str) -> None:
    """auth_request allows (the answer gets its additions) or denies (a 401: none)."""
    out = pair.ask("/authed/a.html", headers=(("X-Ok", ok),) if ok else ()).check()
    assert out.status == (200 if ok else 401)


def test_keepalive_connection(pair: Pair) -> None:
    """Answers with additions, one after another on one connection (and one without)."""
    req = b"GET /%s HTTP/1.1\r\nHost: localhost\r\n{tag}\r\n\r\n"
    script = b"".join(req % u for u in (b"both/a.html", b"up/small", b"both/b.txt",
                                        b"sf/partial.html", b"both/empty.html"))
    out = pair.raw(script, expect=5, linger=0.2).check()
    assert out.statuses == [200] * 5


@pytest.mark.parametrize("url", ["/both/a.html", "/up/small", "/both/b.txt"])
@pytest.mark.parametrize("gz", [False, True])
def test_http2(pair: Pair, url: str, gz: bool) -> None:
    """Over HTTP/2 (h2c, curl --http2-prior-knowledge): the same head and body."""
    got = {}
    for side in (pair.nginx_side, pair.tern_side):
        port = pair.side_port(side, 8965)
        cmd = ["curl", "-s", "--http2-prior-knowledge", "-D", "-", "-o", "-",
               "--max-time", "5", f"http://127.0.0.1:{port}{url}"]
        if gz:
            cmd[1:1] = ["-H", "Accept-Encoding: gzip"]
        raw = subprocess.run(cmd, capture_output=True, check=True, timeout=10).stdout
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = sorted(ln for ln in head.split(b"\r\n")[1:]
                       if not ln.lower().startswith((b"date:", b"server:")))
        got[side.name] = (head.split(b"\r\n")[0], lines, body)
    nginx, tern = got[pair.nginx_side.name], got[pair.tern_side.name]
    assert nginx == tern
    assert nginx[0].strip() == b"HTTP/2 200"
    body = gzip.decompress(nginx[2]) if b"content-encoding: gzip" in nginx[1] else nginx[2]
    assert body.endswith(b"<tail from upstream>" if url == "/up/small" else
                         b"plain text\n" if url == "/both/b.txt" else b"</footer>\n")


def test_http10_client(pair: Pair) -> None:
    pair.ask("/both/a.html", version="1.0").check()
    pair.ask("/up/small", version="1.0").check()


@pytest.mark.parametrize("url", ["/gz/a.html", "/gz/b.txt", "/gz/empty.html", "/gz/big.html",
                                 "/sfgz/partial.html"])
def test_gzip_compresses_the_whole_answer(pair: Pair, url: str) -> None:
    out = pair.ask(url, headers=(("Accept-Encoding", "gzip"),)).check()
    if url != "/gz/b.txt" and out.header("content-encoding") == "gzip":
        text = gzip.decompress(out.nginx.response.body)
        assert text.startswith(b"<header>") or url.startswith("/sfgz/")
        assert text.endswith(b"</footer>\n")


def test_gzip_not_asked(pair: Pair) -> None:
    pair.ask("/gz/a.html").check()


def test_additions_happen(pair: Pair) -> None:
    """A guard against a test that cannot fail: nginx really adds, and says so."""
    out = pair.ask("/both/a.html").check()
    assert out.nginx.response.body == (b"<header>before</header>\n<p>main hello</p>\n"
                                       b"<footer>after</footer>\n")
    assert out.header("content-length") is None
    assert out.header("accept-ranges") is None
    assert out.header("last-modified") is not None
    miss = pair.ask("/miss/a.html").check()
    assert b"404 Not Found" in miss.nginx.response.body
    up = pair.ask("/up/small").check()
    assert up.nginx.response.body.endswith(b"<i>small</i><tail from upstream>")
    pct = pair.ask("/pct/a.html").check()
    assert pct.nginx.response.body.endswith(b"<i>no decoding</i>\n")
    query = pair.ask("/query/a.html").check()
    assert query.nginx.response.body.startswith(b"[GET /echo/q?a=1&b=2  /query/a.html]")
    sf = pair.ask("/sf/partial.html").check()
    assert sf.nginx.response.body == (b"<header>BEFORE-SUBBED</header>\nMAIN xx ab"
                                      b"<footer>after</footer>\n")


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_body_bytes_sent(pair: Pair, version: str) -> None:
    """$body_bytes_sent counts the additions (and the chunk framing on HTTP/1.1), once."""
    urls = [f"{u}?bb{version}" for u in ("/both/a.html", "/both/empty.html", "/up/small",
                                        "/sf/partial.html", "/ret/", "/both/b.txt",
                                        "/both/big.html", "/up/html")]
    # (an addition body over 32 KB is chunked differently by nginx: docs/differences.md)
    for url in urls:
        pair.ask(url, version=version).check()
    for url in ["/gz/a.html?bbgz" + version, "/gz/big.html?bbgz" + version]:
        pair.ask(url, version=version, headers=(("Accept-Encoding", "gzip"),)).check()
        urls.append(url)
    deadline = time.monotonic() + 3
    while True:
        got = {s.name: [ln for ln in pair.log_lines(s) if f"?bb{version}" in ln
                        or f"?bbgz{version}" in ln] for s in (pair.nginx_side, pair.tern_side)}
        if all(len(v) == len(urls) for v in got.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got[pair.nginx_side.name] == got[pair.tern_side.name]
    assert len(got[pair.nginx_side.name]) == len(urls)


# -- the compiled lane and the fast path leave these locations alone ---------------------------

UP2 = "10.0.47.2:8001"
LANE_CONF = r"""
events {}
http {
    access_log off;
    upstream app { server 10.0.47.2:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 8963;
        location /plain/ { proxy_pass http://app; }
        location /add/ { add_after_body /tail/; proxy_pass http://app; }
        location /tail/ { default_type text/html; return 200 "[tail]"; }
    }
    server {
        listen 8964;
        add_before_body /head/;
        location /inh/ { proxy_pass http://app; }
        location /head/ { default_type text/html; return 200 "[head]"; }
    }
}
"""


@pytest.fixture(scope="module")
def lane_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("addition_lane")
    p = Pair(tmp / "run", LANE_CONF, trace=True)
    try:
        p.behave(UP2, Behaviour(prefix="/", headers=(("Content-Type", "text/html"),),
                                body=b"<p>upstream</p>"))
        yield p
    finally:
        p.close()


@pytest.mark.parametrize(("url", "port", "served"), [("/plain/a", 8963, True),
                                                     ("/add/a", 8963, False),
                                                     ("/inh/a", 8964, False)])
def test_lane_leaves_additions_to_the_general_path(lane_pair: Pair, url: str, port: int,
                                                   served: bool) -> None:
    for _ in range(2):  # warm: a pooled upstream connection (lane, fast path)
        lane_pair.ask_side(lane_pair.tern_side, url, port=port)
    mark = lane_pair.trace_mark()
    out = lane_pair.ask(url, port=port).check()
    lines = lane_pair.trace_lines(mark, url)
    assert any(" served " in f" {ln} " for ln in lines) == served, lines
    if not served:
        assert b"[" in out.tern.response.body  # the addition is there (not the fast path)


LANE_H2_CONF = LANE_CONF.replace("listen 8963;", "listen 8963 http2;").replace(
    "listen 8964;", "listen 8964 http2;")


@pytest.fixture(scope="module")
def lane_h2_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("addition_lane_h2")
    p = Pair(tmp / "run", LANE_H2_CONF, trace=True)
    p.cmp.http2 = True
    try:
        p.behave(UP2, Behaviour(prefix="/", headers=(("Content-Type", "text/html"),),
                                body=b"<p>upstream</p>"))
        yield p
    finally:
        p.close()


@pytest.mark.parametrize(("url", "port", "served"), [("/plain/h2", 8963, True),
                                                     ("/add/h2", 8963, False),
                                                     ("/inh/h2", 8964, False)])
def test_h2_lane_leaves_additions_to_the_general_path(lane_h2_pair: Pair, url: str, port: int,
                                                      served: bool) -> None:
    pair = lane_h2_pair
    for _ in range(2):
        pair.ask_side(pair.tern_side, url, port=port)
    mark = pair.trace_mark()
    out = pair.ask(url, port=port).check()
    assert out.nginx.response.version == "2" and out.tern.response.version == "2"
    lines = pair.trace_lines(mark, url)
    assert any(" h2-served " in f" {ln} " for ln in lines) == served, lines
    if not served:
        assert b"[" in out.tern.response.body


# -- configuration checks ------------------------------------------------------------------------

@pytest.mark.parametrize(("directives", "message"), [
    ("add_before_body /a; add_before_body /b;", '"add_before_body" directive is duplicate'),
    ('add_after_body /a; add_before_body /b; add_after_body "";',
     '"add_after_body" directive is duplicate'),
    ("add_after_body;", 'invalid number of arguments in "add_after_body" directive'),
    ("add_before_body /a /b;", 'invalid number of arguments in "add_before_body" directive'),
    ("addition_types;", 'invalid number of arguments in "addition_types" directive'),
    # accepted by both
    ("add_before_body /a; addition_types * text/plain; addition_types text/css;", None),
    ('add_before_body ""; location /x { add_before_body /b; }', None),
])
def test_config_checks_like_nginx(tmp_path: Path, directives: str, message: str | None) -> None:
    """nginx -t and tern check refuse the same addition mistakes at the same line, and accept
    what nginx accepts."""
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 18999;\n    location / {\n"
                    f"      {directives}\n    }}\n  }}\n}}\n".replace("}}", "}"))
    ngx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                          "-g", f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"],
                         capture_output=True, text=True, timeout=30)
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(conf)],
                          capture_output=True, text=True, timeout=60)
    said = tern.stdout + tern.stderr
    assert "Traceback" not in said
    if message is None:
        assert ngx.returncode == 0, ngx.stderr
        assert tern.returncode == 0, said
        return
    assert ngx.returncode != 0 and message in ngx.stderr and "nginx.conf:6" in ngx.stderr
    assert tern.returncode == 2
    assert f"{conf}:6: error: {message}" in said
