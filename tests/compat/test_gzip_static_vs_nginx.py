"""gzip_static on|always against nginx 1.22.1: which file is sent (the .gz or the plain one),
Content-Encoding, Vary (gzip_vary, also when the client does not get the .gz), no ranges on a
.gz, conditionals on the .gz's own ETag/Last-Modified, a .gz directory, a .gz alone, HEAD, and
gzip_static together with gzip on."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = r"""
events {}
http {
    access_log off;
    types { text/plain txt; text/html html; }
    server {
        listen 8946;
        root www;
        location /gs/ { gzip_static on; }
        location /al/ { alias www/gs/; gzip_static always; }
        location /vary/ { alias www/gs/; gzip_static on; gzip_vary on; }
        location /both/ { alias www/gs/; gzip_static on; gzip on; gzip_min_length 1;
                          gzip_vary on; }
        location /proxied/ { alias www/gs/; gzip_static on; gzip_proxied off; }
        location /off/ { alias www/gs/; gzip_static off; }
    }
}
"""

AE = (("Accept-Encoding", "gzip"),)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    files: dict[str, str | bytes] = {
        "www/gs/a.txt": "hello static\n" * 20,
        "www/gs/a.txt.gz": gzip.compress(b"hello static\n" * 20, mtime=0),
        "www/gs/b.txt": "only plain\n",
        "www/gs/c.txt.gz": gzip.compress(b"gz only", mtime=0),
        "www/gs/d.txt": "dir beside\n",
        "www/gs/d.txt.gz/keep": "x",
        "www/gs/e.html": "<p>" + "page " * 50 + "</p>",
        "www/gs/e.html.gz": gzip.compress(b"<p>precompressed</p>", mtime=0),
    }
    p = Pair(tmp_path_factory.mktemp("gzip_static"), CONF, files)
    try:
        yield p
    finally:
        p.close()


URLS = ["/gs/a.txt", "/gs/b.txt", "/gs/c.txt", "/gs/d.txt", "/gs/e.html", "/gs/",
        "/al/a.txt", "/al/c.txt", "/vary/a.txt", "/vary/b.txt", "/vary/d.txt", "/both/a.txt",
        "/both/b.txt", "/both/e.html", "/off/a.txt", "/proxied/a.txt"]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("accept", ["gzip", "none"])
def test_get(pair: Pair, url: str, accept: str) -> None:
    pair.ask(url, headers=AE if accept == "gzip" else ()).check()


@pytest.mark.parametrize("url", ["/gs/a.txt", "/vary/b.txt", "/al/c.txt"])
def test_head(pair: Pair, url: str) -> None:
    pair.ask(url, method="HEAD", headers=AE).check()


def test_no_ranges_on_the_gz(pair: Pair) -> None:
    pair.ask("/gs/a.txt", headers=AE + (("Range", "bytes=0-3"),)).check()
    pair.ask("/gs/a.txt", headers=(("Range", "bytes=0-3"),)).check()


def test_via_with_gzip_proxied_off(pair: Pair) -> None:
    pair.ask("/proxied/a.txt", headers=AE + (("Via", "1.1 cache"),)).check()


def test_conditional_on_the_gz(pair: Pair) -> None:
    first = pair.ask("/gs/a.txt", headers=AE).check()
    etag = first.header("etag")
    assert etag
    pair.ask("/gs/a.txt", headers=AE + (("If-None-Match", etag),)).check()


def test_the_gz_is_really_sent(pair: Pair) -> None:
    """A guard against a test that cannot fail."""
    out = pair.ask("/vary/a.txt", headers=AE).check()
    assert out.header("content-encoding") == "gzip"
    assert out.header("vary") == "Accept-Encoding"
    assert gzip.decompress(out.nginx.response.body) == b"hello static\n" * 20
    plain = pair.ask("/vary/a.txt").check()
    assert plain.header("content-encoding") is None and plain.header("vary") == "Accept-Encoding"
