"""charset, source_charset, override_charset, charset_types: the Content-Type nginx 1.22.1 sends,
for its own answers (return, error pages, redirects, static files) and for upstream answers
with and without a charset parameter, X-Accel-Charset included."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair  # noqa: E402

from shadow.echo import Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

UP = "10.0.43.1:8001"

CONF = r"""
events {}
http {
    access_log off;
    types { text/html html; text/css css; application/javascript js; text/plain txt; }
    upstream u { server 10.0.43.1:8001; }
    server {
        listen 8943;
        root www;
        charset utf-8;
        location /ret/ { return 200 "r"; }
        location /err/ { return 404; }
        location /red301/ { return 301 /x; }
        location /red302/ { return 302 /x; }
        location /red307/ { return 307 /x; }
        location /static/ { }
        location /off/ { charset off; return 200 "off"; }
        location /var/ { charset $arg_cs; return 200 "v"; }
        location /types/ { charset_types text/css; alias www/static/; }
        location /any/ { charset_types *; proxy_pass http://u; }
        location /up/ { proxy_pass http://u; }
        location /over/ { override_charset on; proxy_pass http://u; }
        location /src/ { source_charset utf-8; proxy_pass http://u; }
        location /srcsame/ { source_charset UTF-8; return 200 "s"; }
        location /ign/ { proxy_ignore_headers X-Accel-Charset; proxy_pass http://u; }
    }
    server {
        listen 8944;
        location /accel/ { proxy_pass http://u; }
        location /ret/ { return 200 "no charset here"; }
    }
}
"""

FILES = {"www/static/a.html": "<p>a</p>", "www/static/b.css": "b{}", "www/static/c.js": "c()",
         "www/static/d.bin": "d", "www/static/e.txt": "e"}


def _typed(prefix: str, ctype: str, *extra: tuple[str, str]) -> Behaviour:
    return Behaviour(prefix=prefix, headers=(("Content-Type", ctype), *extra), body=b"body")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("charset"), CONF, FILES)
    try:
        behaviours = []
        for loc in ("up", "over", "src", "any", "ign", "accel"):
            behaviours += [
                _typed(f"/{loc}/html", "text/html"),
                _typed(f"/{loc}/json", "application/json"),
                _typed(f"/{loc}/own", "text/html; charset=ISO-8859-1"),
                _typed(f"/{loc}/same", "text/html; charset=UTF-8"),
                _typed(f"/{loc}/quoted", 'text/plain; charset="utf-8"'),
                _typed(f"/{loc}/param", "text/html; q=1"),
                _typed(f"/{loc}/upper", "TEXT/HTML"),
                _typed(f"/{loc}/xa", "text/html", ("X-Accel-Charset", "utf-8")),
                _typed(f"/{loc}/xaunknown", "text/html", ("X-Accel-Charset", "latin9")),
                Behaviour(prefix=f"/{loc}/r302", status=302,
                          headers=(("Location", "/y"), ("Content-Type", "text/html"))),
            ]
        p.behave(UP, *behaviours)
        yield p
    finally:
        p.close()


OWN = ["/ret/", "/err/", "/red301/", "/red302/", "/red307/", "/static/a.html", "/static/b.css",
       "/static/c.js", "/static/d.bin", "/static/e.txt", "/static/missing", "/off/",
       "/var/?cs=koi8-r", "/var/?cs=", "/types/b.css", "/types/a.html",
       "/srcsame/"]
UPSTREAM = [f"/{loc}/{kind}" for loc in ("up", "over", "src", "any", "ign")
            for kind in ("html", "json", "own", "same", "quoted", "param", "upper", "xa",
                         "xaunknown", "r302")]


@pytest.mark.parametrize("url", OWN)
def test_own_answers(pair: Pair, url: str) -> None:
    pair.ask(url).check()


@pytest.mark.parametrize("url", UPSTREAM)
def test_upstream_answers(pair: Pair, url: str) -> None:
    pair.ask(url).check()


@pytest.mark.parametrize("url", ["/accel/xa", "/accel/html", "/ret/"])
def test_no_charset_directive_in_server(pair: Pair, url: str) -> None:
    """X-Accel-Charset works with charset off when the name is known to the configuration."""
    pair.ask(url, port=8944).check()


def test_the_cases_are_not_all_alike(pair: Pair) -> None:
    """A guard against a test that cannot fail: nginx really adds, keeps and drops charsets."""
    seen = {url: pair.ask(url).header("content-type") for url in
            ("/ret/", "/red302/", "/up/own", "/over/same", "/static/b.css")}
    assert seen == {"/ret/": "text/plain; charset=utf-8", "/red302/": "text/html",
                    "/up/own": "text/html; charset=ISO-8859-1",
                    "/over/same": "text/html; charset=utf-8", "/static/b.css": "text/css"}
