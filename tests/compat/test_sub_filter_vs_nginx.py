"""sub_filter against nginx 1.22.1: bodies and heads of static files, ``return`` answers, error
pages and proxied answers (streamed in pieces, so matches cross read boundaries), with
sub_filter_once, sub_filter_types, sub_filter_last_modified, several strings, variables, gzip
behind it, HEAD, Range, 304; and a seeded random differential run (small alphabet, overlapping
strings) that compares the replaced bodies byte for byte."""

from __future__ import annotations

import random
import sys
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

UP = "10.0.44.1:8001"
SEED = int(__import__("os").environ.get("TERN_SUB_SEED", "20261130"))
RANDOM_CASES = int(__import__("os").environ.get("TERN_SUB_CASES", "40"))


def _random_cases() -> list[tuple[list[str], bool, str]]:
    rnd = random.Random(SEED)
    cases = []
    for _ in range(RANDOM_CASES):
        n = rnd.randint(1, 3)
        strings = list(dict.fromkeys(
            "".join(rnd.choice("abA") for _ in range(rnd.randint(1, 4))).lower()
            for _ in range(n)))
        body = "".join(rnd.choice("abAB ") for _ in range(rnd.randint(0, 60)))
        cases.append((strings, rnd.random() < 0.5, body))
    return cases


CASES = _random_cases()


def _conf() -> str:
    rand_locs = []
    for i, (strings, once, _) in enumerate(CASES):
        subs = " ".join(f"sub_filter {s} <{j}>;" for j, s in enumerate(strings))
        rand_locs.append(f"location /rnd{i}/ {{ {subs} sub_filter_once {'on' if once else 'off'};"
                         f" alias www/rnd/; }}")
    rand = "\n        ".join(rand_locs)
    return r"""
events {}
http {
    access_log off;
    types { text/html html; text/plain txt; text/css css; }
    upstream u { server 10.0.44.1:8001; }
    server {
        listen 8945;
        root www;
        location /sf/ { sub_filter hello bye; }
        location /all/ { alias www/sf/; sub_filter hello bye; sub_filter_once off; }
        location /multi/ { alias www/sf/; sub_filter hello 1; sub_filter world 2;
                           sub_filter 'hello world' 3; sub_filter_once off; }
        location /multi1/ { alias www/sf/; sub_filter hello 1; sub_filter world 2;
                            sub_filter 'hello world' 3; }
        location /lm/ { alias www/sf/; sub_filter hello bye; sub_filter_last_modified on; }
        location /txt/ { alias www/sf/; sub_filter hello bye; }
        location /types/ { alias www/sf/; sub_filter hello bye; sub_filter_types text/plain; }
        location /star/ { alias www/sf/; sub_filter hello bye; sub_filter_types *; }
        location /err/ { sub_filter 'not found' GONE; sub_filter '</h1>' '!</h1>';
                         sub_filter_once off; return 404; }
        location /ret/ { sub_filter hello $host; default_type text/html; return 200 "hello hello"; }
        location /var/ { alias www/sf/; sub_filter $arg_m "[$arg_r]"; sub_filter_once off; }
        location /gz/ { alias www/sf/; sub_filter hello bye; gzip on; gzip_min_length 1; }
        location /up/ { sub_filter hello bye; sub_filter_once off; proxy_pass http://u; }
        location /inherit/ {
            sub_filter hello outer;
            location /inherit/inner/ { alias www/sf/; }
            location /inherit/own/ { alias www/sf/; sub_filter world own; }
        }
        """ + rand + """
    }
}
"""


FILES: dict[str, str | bytes] = {
    "www/sf/a.html": "<html>Hello World hello world HELLO abcabc aaa nginx</html>",
    "www/sf/b.txt": "plain Hello text",
    "www/sf/c.css": "hello{}",
    "www/sf/empty.html": "",
}
for _i, (_s, _o, _body) in enumerate(CASES):
    FILES[f"www/rnd/{_i}.html"] = _body


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("sub_filter"), _conf(), FILES)
    try:
        html = ("<p>" + "hello world, " * 3000 + "HeLLo</p>").encode()
        p.behave(UP, Behaviour(prefix="/up/html", headers=(("Content-Type", "text/html"),),
                               body=html),
                 Behaviour(prefix="/up/plain", headers=(("Content-Type", "text/plain"),),
                           body=b"hello plain"),
                 Behaviour(prefix="/up/charset",
                           headers=(("Content-Type", "text/html; charset=utf-8"),),
                           body=b"hello with charset"),
                 Behaviour(prefix="/up/empty", headers=(("Content-Type", "text/html"),),
                           body=b""),
                 Behaviour(prefix="/up/404", status=404,
                           headers=(("Content-Type", "text/html"),), body=b"hello missing"))
        yield p
    finally:
        p.close()


GETS = ["/sf/a.html", "/all/a.html", "/multi/a.html", "/multi1/a.html", "/lm/a.html",
        "/txt/b.txt", "/types/b.txt", "/star/c.css", "/sf/empty.html", "/err/", "/ret/",
        "/var/a.html?m=World&r=W", "/var/a.html?m=&r=W", "/var/a.html?m=HELLO%20&r=x",
        "/up/html", "/up/plain", "/up/charset", "/up/empty", "/up/404", "/inherit/inner/a.html",
        "/inherit/own/a.html", "/sf/missing.html"]


@pytest.mark.parametrize("url", GETS)
def test_get(pair: Pair, url: str) -> None:
    pair.ask(url).check()


@pytest.mark.parametrize("url", ["/sf/a.html", "/lm/a.html", "/up/html", "/txt/b.txt"])
def test_head(pair: Pair, url: str) -> None:
    pair.ask(url, method="HEAD").check()


@pytest.mark.parametrize("url", ["/sf/a.html", "/txt/b.txt"])
def test_range_is_not_served_when_filtered(pair: Pair, url: str) -> None:
    pair.ask(url, headers=(("Range", "bytes=0-5"),)).check()


def test_gzip_after_sub_filter(pair: Pair) -> None:
    out = pair.ask("/gz/a.html", headers=(("Accept-Encoding", "gzip"),)).check()
    assert out.header("content-encoding") == "gzip"


def test_conditional_get(pair: Pair) -> None:
    first = pair.ask("/txt/b.txt").check()
    etag = first.header("etag")
    assert etag
    pair.ask("/txt/b.txt", headers=(("If-None-Match", etag),)).check()
    pair.ask("/sf/a.html", headers=(("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),)
             ).check()


def test_http10_client(pair: Pair) -> None:
    pair.ask("/all/a.html", version="1.0").check()


@pytest.mark.parametrize("i", range(RANDOM_CASES))
def test_random_bodies(pair: Pair, i: int) -> None:
    pair.ask(f"/rnd{i}/{i}.html").check()


def test_replacements_happen(pair: Pair) -> None:
    """A guard against a test that cannot fail: nginx really replaces."""
    out = pair.ask("/multi1/a.html").check()
    assert out.nginx.response.body == b"<html>1 2 3 HELLO abcabc aaa nginx</html>"
    assert out.header("content-length") is None
