"""Static files, ``try_files``, ``index``, ``alias`` and the header filter: ``tern serve`` answers
exactly like Debian's nginx 1.22.1 on the same config.

nginx and ``tern serve`` run once on port-mapped copies of one configuration (:mod:`servepair`);
every case sends the same request to both and asserts identical answers (status, headers as
:mod:`shadow.diff` normalises them, body). The cases pin down:

* ``try_files ... $uri/ ...``: the candidate loses its "/" (``$uri`` stays ``/dir``) and may be a
  directory (or a file); the static handler then redirects the directory with a 301 keeping the
  arguments; any other candidate never matches a directory (``try_files $uri =404`` on ``/dir/``
  is the fallback, not a 403);
* plain static: directory with and without trailing slash, index present or absent, autoindex,
  methods other than GET/HEAD/POST (405 before the disk is looked at), POST;
* ``alias`` with and without ``try_files``;
* ``error_page 404 /404.html`` served from a file: no ``Last-Modified`` (the header filter keeps
  it for 200, 206 and 304 only), no ``Accept-Ranges`` (the range filter adds it to 200 only), the
  ETag kept, ``add_header`` of the server level (``always``) applied, HEAD, ``If-Modified-Since``
  (the not-modified filter looks at 200 only) and ``Range`` on the error page (ignored).
"""

from __future__ import annotations

import os
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

STATIC = r"""
events {}
http {
    access_log off;
    types { text/html html; text/css css; text/plain txt; }
    default_type application/octet-stream;

    server {
        listen 8001 default_server;
        server_name localhost;
        root html;
        index index.html;
        add_header X-Content-Type-Options nosniff always;
        error_page 404 /404.html;

        location = /404.html { internal; }

        # SPA fallback
        location / { try_files $uri $uri/ /index.html; }

        # fingerprinted assets: a directory is not a candidate without the "/"
        location ^~ /assets/ {
            add_header Cache-Control "public, immutable";
            try_files $uri =404;
        }

        # only a directory-style candidate
        location /tfdir/ { try_files $uri/ =404; }

        # plain static (no try_files)
        location /plain/ { }
        location /auto/ { autoindex on; }
        location /idx/ { index none.html /about.html; }
        location /cached/ { expires 1h; add_header X-Plain p; add_header X-Alw b always; }
        location /before/ { alias html/plain/; if_modified_since before; max_ranges 1; }
        location /off/ { alias html/plain/; if_modified_since off; max_ranges 0; }
        location /noetag/ { alias html/plain/; etag off; }

        # no error_page here
        location /bare/ { error_page 404 =404 /nothing; try_files $uri $uri/ =404; }

        location /docs/ {
            alias html/documentation/;
            try_files $uri $uri/ =404;
        }
        location /al/ { alias html/documentation/; }
    }
}
"""

FILES: dict[str, str | bytes] = {
    "html/index.html": "<h1>spa index</h1>\n",
    "html/404.html": "<h1>custom not found</h1>\n",
    "html/about.html": "about\n",
    "html/_partials/footer.html": "footer\n",
    "html/emptydir/.keep": "",
    "html/assets/app.css": "body { color: red }\n",
    "html/assets/sub/x.css": "x\n",
    "html/tfdir/file.txt": "tfdir file\n",
    "html/tfdir/sub/index.html": "tfdir sub index\n",
    "html/plain/withindex/index.html": "plain index\n",
    "html/plain/noindex/a.txt": "a\n",
    "html/plain/file.txt": "0123456789abcdefghij\n",
    "html/auto/d/b.txt": "b\n",
    "html/auto/c.txt": "c\n",
    "html/cached/f.txt": "0123456789abcdefghij\n",
    "html/plain/sp ace/a.txt": "space\n",
    "html/plain/dirindex/index.html/inner.txt": "an index.html that is a directory\n",
    "html/idx/a/x.txt": "x\n",
    "html/idx/about.html": "not a directory\n",
    "html/plain/caf\u00e9/a.txt": "utf-8\n",
    "html/bare/dir/x.txt": "x\n",
    "html/documentation/index.html": "docs index\n",
    "html/documentation/install.html": "install\n",
    "html/documentation/guide/page.html": "guide page\n",
}

STAMP = 1_700_000_000


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("static")
    for name, content in FILES.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    # fixed times: autoindex listings and Last-Modified do not depend on when the test ran
    for dirpath, dirnames, filenames in os.walk(tmp / "html"):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (STAMP, STAMP))
    p = Pair(tmp, STATIC)
    try:
        yield p
    finally:
        p.close()


def _ask(pair: Pair, url: str, **kw: object):  # type: ignore[no-untyped-def]
    return pair.ask(url, **kw).check()  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# try_files $uri/ and directories


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/_partials", 301),  # $uri/ matches the directory; /_partials stays, static redirects
        ("/_partials?a=1&b=2", 301),  # the redirect keeps the arguments
        ("/emptydir", 301),
        ("/emptydir/", 403),  # $uri/ on "/emptydir/": the directory, no index, no autoindex
        ("/about.html", 200),
        ("/missing", 200),  # the fallback /index.html
        ("/", 200),
        ("/tfdir/file.txt", 404),  # a "/" candidate matches directories only
        ("/tfdir/sub", 301),
        ("/tfdir/sub/", 404),  # index redirects to /tfdir/sub/index.html: not a directory
        ("/tfdir/nothing", 404),  # =404, then error_page 404 /404.html
        ("/bare/dir", 301),
        ("/bare/none", 404),  # error_page to a missing page: nginx's own 404
    ],
)
def test_try_files_directories(pair: Pair, url: str, status: int) -> None:
    got = _ask(pair, url)
    assert got.status == status


def test_try_files_directory_redirect_location(pair: Pair) -> None:
    """The Location is absolute, with the Host and port asked for, and the arguments."""
    got = _ask(pair, "/_partials?x=1", host="example.test")
    loc = got.header("location")
    assert loc is not None and loc.endswith("/_partials/?x=1"), loc


@pytest.mark.parametrize("url", ["/assets/", "/assets/sub/", "/assets/sub", "/assets/none.css"])
def test_non_directory_candidate_skips_directories(pair: Pair, url: str) -> None:
    """``try_files $uri =404`` never takes a directory: the fallback 404 and its error page."""
    got = _ask(pair, url)
    assert got.status == 404
    assert got.header("x-content-type-options") == "nosniff"


def test_assets_file(pair: Pair) -> None:
    got = _ask(pair, "/assets/app.css")
    assert got.status == 200 and got.header("cache-control") == "public, immutable"


# ---------------------------------------------------------------------------------------------
# plain static, index, autoindex, methods


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/plain/withindex", 301),
        ("/plain/withindex?q=1", 301),
        ("/plain/withindex/", 200),
        ("/plain/noindex", 301),
        ("/plain/noindex/", 403),
        ("/plain/absent/", 404),
        ("/plain/file.txt", 200),
        ("/plain/file.txt/", 404),
        ("/auto/", 200),
        ("/auto/d", 301),
        ("/auto/d/", 200),
        ("/plain/dirindex/", 301),  # index.html opens (a directory): redirect, then 301
        ("/idx/a/", 200),  # the absolute last index name: internal redirect to /about.html
        ("/idx/missing/", 404),  # the directory is tested before the absolute name is used
        ("/idx/about.html/", 404),  # ENOTDIR
        ("/plain/sp%20ace", 301),  # Location carries the decoded URI, as nginx writes it
        ("/plain/sp%20ace?a=%20b", 301),
        ("/plain/caf%C3%A9", 301),
    ],
)
def test_plain_static(pair: Pair, url: str, status: int) -> None:
    got = _ask(pair, url)
    assert got.status == status


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("HEAD", "/plain/file.txt"),
        ("HEAD", "/missing-page"),
        ("HEAD", "/assets/"),
        ("HEAD", "/auto/"),
        ("POST", "/plain/file.txt"),
        ("POST", "/plain/withindex/"),
        ("POST", "/plain/noindex/"),
        ("POST", "/auto/"),
        ("PUT", "/plain/file.txt"),
        ("PUT", "/plain/missing"),
        ("PUT", "/plain/noindex"),
        ("DELETE", "/plain/withindex/"),
        ("DELETE", "/auto/"),
    ],
)
def test_methods(pair: Pair, method: str, url: str) -> None:
    _ask(pair, url, method=method)


# ---------------------------------------------------------------------------------------------
# alias


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/docs/", 200),
        ("/docs/install.html", 200),
        ("/docs/guide", 301),
        ("/docs/guide/", 403),  # $uri/ matches, no index.html in guide/
        ("/docs/nothing", 404),
        ("/al/", 200),
        ("/al/guide", 301),
        ("/al/guide?x=1&y", 301),
        ("/al/guide/", 403),
        ("/al/guide/page.html", 200),
    ],
)
def test_alias(pair: Pair, url: str, status: int) -> None:
    got = _ask(pair, url)
    assert got.status == status


# ---------------------------------------------------------------------------------------------
# error_page to a static file: the header filter


def test_error_page_file_headers(pair: Pair) -> None:
    """The 404 page: ETag kept, no Last-Modified, no Accept-Ranges (nginx's own answer)."""
    got = _ask(pair, "/assets/none.css")
    assert got.status == 404
    assert got.header("etag") is not None
    assert got.header("last-modified") is None
    assert got.header("accept-ranges") is None


def test_static_200_headers(pair: Pair) -> None:
    got = _ask(pair, "/plain/file.txt")
    assert got.header("last-modified") is not None
    assert got.header("accept-ranges") == "bytes"


def test_if_modified_since_on_error_page(pair: Pair) -> None:
    """The not-modified filter looks at 200 answers only: the 404 page is sent whole."""
    stamp = "Tue, 14 Nov 2023 22:13:20 GMT"  # STAMP
    got = _ask(pair, "/assets/none.css", headers=[("If-Modified-Since", stamp)])
    assert got.status == 404


def test_if_modified_since_on_file(pair: Pair) -> None:
    stamp = "Tue, 14 Nov 2023 22:13:20 GMT"
    got = _ask(pair, "/plain/file.txt", headers=[("If-Modified-Since", stamp)])
    assert got.status == 304


ETAG = '"6553f100-15"'
"""The ETag of html/plain/file.txt (STAMP, 21 bytes)."""
AT = "Tue, 14 Nov 2023 22:13:20 GMT"
LATER = "Tue, 14 Nov 2023 22:13:21 GMT"
EARLIER = "Tue, 14 Nov 2023 22:13:19 GMT"


@pytest.mark.parametrize("where", ["/plain/", "/before/", "/off/", "/noetag/"])
@pytest.mark.parametrize(
    "headers",
    [
        [("If-Modified-Since", AT)],
        [("If-Modified-Since", LATER)],
        [("If-Modified-Since", EARLIER)],
        [("If-Modified-Since", "Tuesday, 14-Nov-23 22:13:20 GMT")],  # RFC 850
        [("If-Modified-Since", "Tue Nov 14 22:13:20 2023")],  # asctime
        [("If-Modified-Since", "yesterday")],
        [("If-None-Match", ETAG)],
        [("If-None-Match", "W/" + ETAG)],
        [("If-None-Match", '"a", ' + ETAG + ' , "b"')],
        [("If-None-Match", '"other"')],
        [("If-None-Match", "*")],
        [("If-None-Match", ETAG), ("If-Modified-Since", EARLIER)],
        [("If-None-Match", '"other"'), ("If-Modified-Since", AT)],
        [("If-Match", ETAG)],
        [("If-Match", '"other"')],
        [("If-Match", "W/" + ETAG)],
        [("If-Match", "*")],
        [("If-Unmodified-Since", AT)],
        [("If-Unmodified-Since", EARLIER)],
        [("If-Unmodified-Since", "garbage")],
        [("If-Modified-Since", AT), ("Range", "bytes=0-3")],
        [("Range", "bytes=0-1,4-5")],
        [("Range", "bytes=0-1")],
    ],
    ids=lambda h: ";".join(f"{n}={v}" for n, v in h) if isinstance(h, list) else str(h),
)
def test_conditional_requests(pair: Pair, where: str, headers: list[tuple[str, str]]) -> None:
    """The not-modified filter (412, 304), if_modified_since exact/before/off, etag off,
    max_ranges 1 and 0 (no ranges and no Accept-Ranges)."""
    _ask(pair, where + "file.txt", headers=headers)


@pytest.mark.parametrize(
    ("where", "headers"),
    [
        ("/cached/f.txt", [("If-Modified-Since", AT)]),
        ("/cached/f.txt", [("If-None-Match", ETAG)]),
        ("/cached/f.txt", [("If-Match", '"x"')]),
        ("/noetag/file.txt", [("Range", "bytes=0-1"), ("If-Range", ETAG)]),
        ("/noetag/file.txt", [("Range", "bytes=0-1"), ("If-Range", AT)]),
        ("/before/file.txt", [("Range", "bytes=0-1,3-4,6-7")]),
    ],
)
def test_conditional_headers(pair: Pair, where: str, headers: list[tuple[str, str]]) -> None:
    """304 and 412 with add_header and expires around; If-Range without an ETag."""
    _ask(pair, where, headers=headers)


def test_range_on_error_page(pair: Pair) -> None:
    """The range filter leaves anything but a 200 alone."""
    got = _ask(pair, "/assets/none.css", headers=[("Range", "bytes=0-3")])
    assert got.status == 404


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ("bytes=0-3", 206),
        ("bytes=5-", 206),
        ("bytes=-4", 206),
        ("bytes=-100", 206),
        ("bytes=3-3", 206),
        ("bytes= 2 - 4 ", 206),
        ("BYTES=0-0", 206),
        ("bytes=18-100", 206),
        ("bytes=100-", 416),
        ("bytes=21-21", 416),
        ("bytes=x", 416),
        ("bytes=5-2", 416),
        ("bytes=0-1,x", 416),
        ("bytes=", 200),  # shorter than 7 characters: ignored
        ("items=0-3", 200),
        ("bytes=0-30,0-30", 200),  # more than the file: ignored
        ("bytes=0-1,5-6", 206),  # multipart/byteranges
        ("bytes=0-0,2-2,-1", 206),
    ],
)
def test_range_on_file(pair: Pair, spec: str, status: int) -> None:
    got = _ask(pair, "/plain/file.txt", headers=[("Range", spec)])
    assert got.status == status


@pytest.mark.parametrize(
    "if_range",
    ['"6553f100-15"', '"other"', "Tue, 14 Nov 2023 22:13:20 GMT", "Tue, 14 Nov 2023 22:13:21 GMT",
     "garbage"],
)
def test_if_range(pair: Pair, if_range: str) -> None:
    """If-Range: the ETag or the time must be the file's, else the whole file."""
    _ask(pair, "/plain/file.txt", headers=[("Range", "bytes=1-2"), ("If-Range", if_range)])


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("HEAD", [("Range", "bytes=0-3")]),
        ("GET", [("Range", "bytes=0-3"), ("If-Modified-Since", "Tue, 14 Nov 2023 22:13:20 GMT")]),
    ],
)
def test_range_head_and_not_modified(pair: Pair, method: str, headers: list[tuple[str, str]]
                                     ) -> None:
    _ask(pair, "/plain/file.txt", method=method, headers=headers)


def test_range_416_head(pair: Pair) -> None:
    """HEAD and a range past the end: the 416 head alone. Its Content-Length is the built-in
    page's, which ends with the product token, so only that length may differ, by the token."""
    got = pair.ask("/plain/file.txt", method="HEAD", headers=[("Range", "bytes=50-")])
    assert got.status == 416 and got.nginx.response.body == b"" == got.tern.response.body
    rest = [d for d in got.diffs if d.field != "header:content-length"]
    assert not rest, rest
    n, t = int(got.header("content-length") or 0), int(got.header("content-length", "tern") or 0)
    token = got.header("server", "tern") or ""
    assert n - t == len("nginx/1.22.1") - len(token), (n, t, token)


def test_range_416_keeps_location_headers(pair: Pair) -> None:
    """416: what add_header and expires added for the 200 stays; ``always`` ones come twice."""
    got = _ask(pair, "/cached/f.txt", headers=[("Range", "bytes=99-")])
    assert got.status == 416 and got.header("content-range") == "bytes */21"
    assert got.header("x-plain") == "p" and got.header("cache-control") == "max-age=3600"


@pytest.mark.parametrize("spec", ["bytes=2-5", "bytes=0-1,5-6", "bytes=0-"])
def test_range_with_expires_and_add_header(pair: Pair, spec: str) -> None:
    got = _ask(pair, "/cached/f.txt", headers=[("Range", spec)])
    assert got.status == 206


# ---------------------------------------------------------------------------------------------
# autoindex_exact_size off and autoindex_localtime on

AUTO = r"""
events {}
http {
    access_log off;
    server {
        listen 8001 default_server;
        root html;
        location /h/ { autoindex on; autoindex_exact_size off; autoindex_localtime on; }
        location /g/ { autoindex on; autoindex_exact_size off; }
        location /l/ { autoindex on; autoindex_localtime ON; }
    }
}
"""

# sizes around every unit boundary and rounding edge of autoindex_exact_size off
SIZES = [0, 1, 9999, 10000, 10240 + 511, 10240 + 512, (1 << 20) - 1, 1 << 20,
         (1 << 20) + (1 << 19) - 1, (1 << 20) + (1 << 19), (1 << 30) - 1, 1 << 30,
         (1 << 30) + (1 << 29), 5 * (1 << 30) + 7]
TZ = "XYZ-5:30"
"""A POSIX zone string (no tz database needed): UTC+5:30, so local times differ from GMT."""


@pytest.fixture(scope="module")
def auto_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("autoindex-options")
    for sub in ("h", "g", "l"):
        d = tmp / "html" / sub
        (d / "subdir").mkdir(parents=True)
        for size in SIZES:
            with open(d / f"f{size:012d}.bin", "wb") as fh:
                fh.truncate(size)  # sparse: no disk used
        for p in d.iterdir():
            os.utime(p, (STAMP, STAMP))
    old = os.environ.get("TZ")
    os.environ["TZ"] = TZ  # both servers inherit it (nginx keeps TZ by default)
    try:
        p = Pair(tmp, AUTO)
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
    try:
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("url", ["/h/", "/g/", "/l/"])
def test_autoindex_options(auto_pair: Pair, url: str) -> None:
    """Human-readable sizes and local times: the listing equals nginx's byte for byte."""
    got = _ask(auto_pair, url)
    assert got.status == 200
    body = got.nginx.response.body.decode()
    if url == "/g/":
        assert "14-Nov-2023 22:13" in body and "      5G" in body, body
    else:
        assert "15-Nov-2023 03:43" in body, body  # 22:13 GMT + 5:30
