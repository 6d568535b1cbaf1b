"""gzip (ngx_http_gzip_filter_module): ``tern serve`` compresses exactly what Debian's nginx 1.22.1
compresses, with the same headers and the same bytes.

One configuration, nginx and ``tern serve`` side by side (:mod:`servepair`). Every case sends the
same request to both and asserts identical status, headers (Vary, Content-Encoding, ETag,
Accept-Ranges, Content-Length present or not) and body bytes: the compressed bytes themselves are
compared (Tern uses the same system zlib with nginx's parameters and gzip header), and the test
also decodes each compressed answer to check it is the original content.
"""

from __future__ import annotations

import gzip
import random
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair, compare, product_shape, render  # noqa: E402

from shadow.echo import Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

_rng = random.Random(7)
WORDS = [b"alpha", b"beta", b"gamma", b"delta", b"<p>", b"</p>", b"\n", b"nginx", b"tern"]
HTML = b"<html><body>" + b" ".join(_rng.choice(WORDS) for _ in range(3000)) + b"</body></html>\n"
CSS = b"body { color: red; }\n" * 200
SMALL = b"<p>tiny but over twenty bytes</p>\n"  # 34 bytes
BIG = b"".join(b"line %d %s\n" % (i, _rng.choice(WORDS)) for i in range(120000))  # ~1.6 MB

CONF = r"""
events {}
http {
    access_log off;
    types { text/html html; text/css css; image/png png; application/json json; }
    default_type application/octet-stream;
    upstream app { server 10.0.7.1:8001; }
    gzip on;
    gzip_vary on;
    gzip_types text/css application/json;
    server {
        listen 8080;
        server_name localhost;
        root html;
        location / { }
        location /min/ { gzip_min_length 1000; }
        location /l9/ { gzip_comp_level 9; }
        location /h1k/ { gzip_hash 1k; }
        location /h128k/ { gzip_hash 128k; gzip_comp_level 6; }
        location /w1k/ { gzip_window 1k; }
        location /hw/ { gzip_window 4k; gzip_hash 2k; gzip_comp_level 4; }
        location /off/ { gzip off; }
        location /novary/ { gzip_vary off; }
        location /v10/ { gzip_http_version 1.0; }
        location /any/ { gzip_types *; }
        location /ua/ { gzip_disable "curl/" msie6; }
        location /prox-any/ { gzip_proxied any; }
        location /prox-auth/ { gzip_proxied auth; }
        location /prox-exp/ { gzip_proxied expired; expires -1h; }
        location /prox-exp-future/ { gzip_proxied expired; expires 1h; }
        location /prox-nocache/ { gzip_proxied no-cache no-store private; }
        location /prox-nolm/ { gzip_proxied no_last_modified no_etag; }
        location /prox-nolm-only/ { gzip_proxied no_last_modified; }
        location = /text {
            default_type text/html;
            return 200 "$request_uri and some more text to pass twenty bytes";
        }
        location = /forbidden { return 403; }
        location = /boom { return 500; }
        location /custom404/ { error_page 404 /page404.html; }
        location /iffy/ { if ($arg_plain) { gzip off; } }
        location /up/ { proxy_pass http://app; }
        location /up-any/ { gzip_types *; proxy_pass http://app/up/; }
        location /up-lm/ { gzip_proxied no_last_modified; proxy_pass http://app/up/; }
    }
}
"""


def _files() -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {}
    for d in ("", "min/", "l9/", "h1k/", "h128k/", "w1k/", "hw/", "off/", "novary/", "v10/",
              "any/", "ua/", "prox-any/",
              "prox-auth/", "prox-exp/", "prox-exp-future/", "prox-nocache/", "prox-nolm/",
              "prox-nolm-only/", "custom404/", "iffy/"):
        out[f"html/{d}index.html"] = HTML
        out[f"html/{d}small.html"] = SMALL
        out[f"html/{d}style.css"] = CSS
        out[f"html/{d}pic.png"] = HTML
        out[f"html/{d}data.json"] = CSS
        out[f"html/{d}blob.bin"] = CSS
        out[f"html/{d}empty.html"] = b""
        out[f"html/{d}tiny.html"] = b"<p>hi</p>"
    out["html/page404.html"] = HTML
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("gzip"), CONF, _files())
    try:
        p.behave(
            "10.0.7.1:8001",
            Behaviour(prefix="/up/html", body=HTML, headers=(("Content-Type", "text/html"),)),
            Behaviour(prefix="/up/charset", body=HTML,
                      headers=(("Content-Type", "text/html; charset=utf-8"),)),
            Behaviour(prefix="/up/param", body=HTML,
                      headers=(("Content-Type", "text/html; level=1"),)),
            Behaviour(prefix="/up/upper", body=HTML,
                      headers=(("Content-Type", "Text/HTML"),)),
            Behaviour(prefix="/up/big", body=BIG, headers=(("Content-Type", "text/html"),)),
            Behaviour(prefix="/up/encoded", body=HTML,
                      headers=(("Content-Type", "text/html"), ("Content-Encoding", "br"))),
            Behaviour(prefix="/up/js", body=CSS,
                      headers=(("Content-Type", "application/javascript"),)),
            Behaviour(prefix="/up/etag", body=HTML,
                      headers=(("Content-Type", "text/html"), ("ETag", '"abc"'),
                               ("Accept-Ranges", "bytes"))),
            Behaviour(prefix="/up/weak", body=HTML,
                      headers=(("Content-Type", "text/html"), ("ETag", 'W/"abc"'))),
            Behaviour(prefix="/up/bare", body=HTML,
                      headers=(("Content-Type", "text/html"), ("ETag", "abc"))),
            Behaviour(prefix="/up/lm", body=HTML,
                      headers=(("Content-Type", "text/html"),
                               ("Last-Modified", "Mon, 02 Jan 2023 00:00:00 GMT"))),
            Behaviour(prefix="/up/missing", status=404, body=HTML,
                      headers=(("Content-Type", "text/html"),)),
            Behaviour(prefix="/up/created", status=201, body=HTML,
                      headers=(("Content-Type", "text/html"),)),
        )
        yield p
    finally:
        p.close()


GZ = [("Accept-Encoding", "gzip")]


def _check(pair: Pair, url: str, *, headers: list[tuple[str, str]] | None = None,
           method: str = "GET", version: str = "1.1", expect: bool | None = None) -> None:
    out = pair.ask(url, headers=GZ if headers is None else headers, method=method,
                   version=version)
    enc = out.header("Content-Encoding")
    if enc == "gzip" and method == "GET" and out.header("Content-Encoding", "tern") == "gzip":
        # decoded, the bodies are the same once the product token of built-in pages is
        # reduced to its shape; where the decoded body has no token, the compressed bytes
        # themselves are identical (same zlib, same parameters)
        p, c = out.nginx.response, out.tern.response
        dp, dc = gzip.decompress(p.body), gzip.decompress(c.body)
        decoded = compare(replace(p, body=dp), replace(c, body=dc), out.nginx.upstream,
                          out.tern.upstream)
        assert not decoded, "nginx and tern differ (decoded):\n" + render(decoded)
        if product_shape(replace(p, body=dp)).body == dp:
            assert c.body == p.body, "compressed bytes differ"
        assert dp in (HTML, CSS, SMALL, BIG) or url in ("/text", "/forbidden") \
            or b"</html>" in dp
    else:
        out.check()
    # framing is not a difference for the differ; here whether a length is sent is
    assert (out.header("Content-Length") is None) == (
        out.header("Content-Length", "tern") is None), (url, out.tern.response.headers)
    if expect is not None:
        assert (enc == "gzip") is expect, (url, enc, out.nginx.response.headers)


class TestWhatIsCompressed:
    @pytest.mark.parametrize(
        "url,expect",
        [
            ("/index.html", True),
            ("/small.html", True),
            ("/tiny.html", False),  # 9 bytes < gzip_min_length 20
            ("/empty.html", False),
            ("/style.css", True),
            ("/data.json", True),
            ("/pic.png", False),
            ("/blob.bin", False),
            ("/min/small.html", False),
            ("/min/index.html", True),
            ("/l9/index.html", True),
            ("/l9/small.html", True),  # small known length: reduced window and memory level
            ("/h1k/index.html", True),
            ("/h128k/index.html", True),
            ("/w1k/index.html", True),
            ("/w1k/small.html", True),
            ("/hw/index.html", True),
            ("/off/index.html", False),
            ("/novary/index.html", True),
            ("/novary/pic.png", False),
            ("/any/pic.png", True),
            ("/any/blob.bin", True),
            ("/text", True),
            ("/forbidden", True),
            ("/boom", False),
            ("/nothere.html", True),  # built-in 404 page
            ("/custom404/nothere", True),
            ("/iffy/index.html", True),
            ("/iffy/index.html?plain=1", False),
        ],
    )
    def test_static_and_generated(self, pair: Pair, url: str, expect: bool) -> None:
        _check(pair, url, expect=expect)

    @pytest.mark.parametrize("url", ["/index.html", "/pic.png", "/tiny.html", "/text"])
    def test_without_accept_encoding(self, pair: Pair, url: str) -> None:
        _check(pair, url, headers=[], expect=False)

    @pytest.mark.parametrize("url", ["/index.html", "/v10/index.html", "/tiny.html"])
    def test_head(self, pair: Pair, url: str) -> None:
        _check(pair, url, method="HEAD")

    @pytest.mark.parametrize("url,expect", [("/index.html", False), ("/v10/index.html", True)])
    def test_http_version(self, pair: Pair, url: str, expect: bool) -> None:
        _check(pair, url, version="1.0", expect=expect)

    def test_range_is_ignored_when_compressing(self, pair: Pair) -> None:
        _check(pair, "/index.html", headers=GZ + [("Range", "bytes=0-9")], expect=True)
        _check(pair, "/pic.png", headers=GZ + [("Range", "bytes=0-9")], expect=False)

    def test_conditional(self, pair: Pair) -> None:
        out = pair.ask("/index.html", headers=GZ).check()
        etag = out.header("ETag")
        assert etag is not None and etag.startswith('W/"')
        _check(pair, "/index.html", headers=GZ + [("If-None-Match", etag)])
        _check(pair, "/index.html", headers=GZ + [("If-None-Match", etag[2:])])


class TestAcceptEncoding:
    @pytest.mark.parametrize(
        "value",
        [
            "gzip", "GZIP", "gzip, deflate", "deflate, gzip", "deflate,gzip", "br;q=1, gzip",
            "gzip;q=0", "gzip; q=0", "gzip;q=0.0", "gzip;q=0.000", "gzip;q=0.001", "gzip;q=0.5",
            "gzip;q=1", "gzip;q=1.0", "gzip;q=1.5", "gzip;q=2", "gzip;q=0.0001", "gzip;x=1",
            "gzip ;q=0", "xgzip", "x-gzip", "gzipx", "gzip2", "identity", "*", "gzi",
            "deflate;gzip", "gzip;Q=0", "gzip;q=", "gzip,", "  gzip",
        ],
    )
    def test_values(self, pair: Pair, value: str) -> None:
        _check(pair, "/index.html", headers=[("Accept-Encoding", value)])

    def test_first_header_counts(self, pair: Pair) -> None:
        _check(pair, "/index.html",
               headers=[("Accept-Encoding", "identity"), ("Accept-Encoding", "gzip")])


class TestDisableAndProxied:
    @pytest.mark.parametrize(
        "ua",
        [
            "curl/8.0", "Wget/1.0", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
            "Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)",
            "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", "CURL/1",
        ],
    )
    def test_gzip_disable(self, pair: Pair, ua: str) -> None:
        _check(pair, "/ua/index.html", headers=GZ + [("User-Agent", ua)])

    @pytest.mark.parametrize(
        "url",
        [
            "/index.html", "/prox-any/index.html", "/prox-auth/index.html",
            "/prox-exp/index.html", "/prox-exp-future/index.html", "/prox-nocache/index.html",
            "/prox-nolm/index.html", "/prox-nolm-only/index.html", "/text",
            "/prox-nolm-only/nothere",
        ],
    )
    @pytest.mark.parametrize("auth", [False, True])
    def test_gzip_proxied(self, pair: Pair, url: str, auth: bool) -> None:
        extra = [("Authorization", "Basic eDp5")] if auth else []
        _check(pair, url, headers=GZ + [("Via", "1.1 cache")] + extra)


class TestProxied:
    @pytest.mark.parametrize(
        "url",
        [
            "/up/html", "/up/charset", "/up/param", "/up/upper", "/up/encoded", "/up/js",
            "/up-any/js", "/up/js", "/up-any/js",
            "/up/etag", "/up/weak", "/up/bare", "/up/lm", "/up/missing", "/up/created",
        ],
    )
    def test_upstream_answers(self, pair: Pair, url: str) -> None:
        _check(pair, url)

    def test_via_with_cache_headers(self, pair: Pair) -> None:
        _check(pair, "/up-lm/lm", headers=GZ + [("Via", "1.1 x")], expect=False)
        _check(pair, "/up-lm/html", headers=GZ + [("Via", "1.1 x")], expect=True)

    def test_big_streamed_body(self, pair: Pair) -> None:
        # larger than any buffer on the way: relayed and compressed as it arrives
        _check(pair, "/up/big", expect=True)

    def test_head_proxied(self, pair: Pair) -> None:
        _check(pair, "/up/html", method="HEAD")


H2_CONF = """
events {}
http {
    access_log off;
    types { text/html html; text/css css; image/png png; }
    gzip on;
    gzip_vary on;
    gzip_types text/css;
    server {
        listen 8080 http2;
        root html;
        location = /text { default_type text/html; return 200 "h2 text long enough to gzip\\n"; }
    }
}
"""


def test_over_http2(tmp_path: Path) -> None:
    """The same filter over HTTP/2 (prior knowledge): compressed bytes, Vary, ETag, no
    Content-Length, HEAD, a client without Accept-Encoding; HTTP/2 counts as >= 1.1."""
    from migrate.compare import Comparison, RequestSpec

    for name, content in (("html/index.html", HTML), ("html/style.css", CSS),
                          ("html/pic.png", HTML)):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    (tmp_path / "nginx.conf").write_text(H2_CONF)
    comparison = Comparison(config=str(tmp_path / "nginx.conf"), prefix=str(tmp_path),
                            candidate_config=None,
                            candidate_cmd="{python} -m migrate.cli serve {config} -p {prefix}",
                            nginx=str(NGINX_BIN), timeout=10, start_timeout=20, keep=False,
                            log=lambda _: None, http2=True)
    gz = (("Accept-Encoding", "gzip, deflate"),)
    specs = [RequestSpec(target=t, host="localhost", port=8080, method=m, headers=h)
             for t in ("/index.html", "/style.css", "/pic.png", "/text", "/missing")
             for m, h in (("GET", gz), ("GET", ()), ("HEAD", gz))]
    try:
        comparison.setup()
        outcomes = comparison.run(specs, learn_noise=False)
    finally:
        comparison.close()
    assert len(outcomes) == len(specs)
    compressed = 0
    for o in outcomes:
        assert o.primary.version == "2" and o.candidate.version == "2"
        enc = dict((k.lower(), v) for k, v in o.primary.headers).get(b"content-encoding")
        if enc == b"gzip" and o.spec.method == "GET":
            compressed += 1
            plain_p, plain_c = gzip.decompress(o.primary.body), gzip.decompress(o.candidate.body)
            assert plain_p.replace(b"nginx/1.22.1", b"P") == plain_c.replace(b"tern/0.1.0", b"P")
            if b"nginx/1.22.1" not in plain_p:
                assert o.primary.body == o.candidate.body
        real = [d for d in o.differences if d.field != "body" or enc != b"gzip"]
        assert not real, (o.spec.target, o.spec.method, o.spec.headers, real)
    assert compressed == 4  # index.html, style.css, /text, the 404 page


def test_access_log(tmp_path: Path) -> None:
    """$body_bytes_sent counts the compressed body with its chunk framing (a body sent in one
    piece: one chunk, as nginx sends it), $sent_http_* see Content-Encoding and the weak ETag."""
    import time

    conf = CONF.replace(
        "access_log off;",
        'log_format g "$request_uri $status $body_bytes_sent $sent_http_content_encoding '
        '$sent_http_etag";\n    access_log logs/access.log g;')
    p = Pair(tmp_path, conf, _files())
    try:
        p.behave("10.0.7.1:8001", Behaviour(prefix="/up/etag", body=HTML, headers=(
            ("Content-Type", "text/html"), ("ETag", '"abc"'))))
        for url, head in (("/index.html", "GET"), ("/small.html", "GET"), ("/up/etag", "GET"),
                          ("/style.css", "GET"), ("/index.html", "HEAD")):
            p.ask(url, headers=GZ, method=head).check()
        p.ask("/v10/index.html", headers=GZ, version="1.0").check()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            logs = [p.log_lines(side) for side in (p.nginx_side, p.tern_side)]
            if all(len(lines) == 6 for lines in logs):
                break
            time.sleep(0.05)
        assert len(logs[0]) == 6 and logs[0] == logs[1], logs
        assert all(" gzip " in line for line in logs[0])
    finally:
        p.close()


class _SlowUpstream:
    """One chunked answer: a first part of incompressible bytes, then nothing until the test
    releases it, then the rest."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        import socket
        import threading

        self.first, self.rest = first, rest
        self.release = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(self.first), self.first))
            self.release.wait(10)
            conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(self.rest), self.rest))

    def close(self) -> None:
        self.release.set()
        self.sock.close()
        self.thread.join(5)


def _stream_through(port: int, upstream: _SlowUpstream) -> tuple[int, bytes]:
    """GET through the server; bytes of body received before the upstream's end was
    released, and the whole (dechunked) body."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /s HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n"
                  b"Connection: close\r\n\r\n")
        raw = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, sep, body = raw.partition(b"\r\n\r\n")
            if sep and len(body) >= 64 * 1024:
                break
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                got = s.recv(65536)
            except TimeoutError:
                break
            if not got:
                break
            raw += got
        early = len(raw.partition(b"\r\n\r\n")[2])
        upstream.release.set()
        s.settimeout(10)
        while True:
            got = s.recv(65536)
            if not got:
                break
            raw += got
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head and b"Transfer-Encoding: chunked" in head, head
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2:]
    return early, bytes(out)


STREAM_CONF = """
events {}
http {
    access_log off;
    gzip on;
    server {
        listen 127.0.0.1:PORT;
        location / { proxy_pass http://127.0.0.1:UPSTREAM; proxy_http_version 1.1; }
    }
}
"""


@pytest.mark.parametrize("server", ["nginx", "tern"])
def test_streamed_body_is_compressed_as_it_arrives(tmp_path: Path, server: str) -> None:
    """The upstream sends 256 KiB of incompressible bytes and then waits: nginx and Tern both
    pass on 64 KiB of compressed body before the rest arrives (no buffering of the whole
    body), and the whole body decodes to what the upstream sent."""
    import os

    from tests.support.nginx import free_port, run_nginx
    from tests.test_serve_process import serve, wait_port

    first, rest = os.urandom(256 * 1024), b"<p>the end</p>\n" * 100
    upstream = _SlowUpstream(first, rest)
    try:
        port = free_port()
        conf = STREAM_CONF.replace("PORT", str(port)).replace("UPSTREAM", str(upstream.port))
        if server == "nginx":
            with run_nginx(conf, tmp_path):
                early, body = _stream_through(port, upstream)
        else:
            path = tmp_path / "nginx.conf"
            path.write_text("pid tern.pid;\n" + conf)
            with serve(path):
                wait_port(port)
                early, body = _stream_through(port, upstream)
    finally:
        upstream.close()
    assert early >= 64 * 1024
    assert gzip.decompress(body) == first + rest


BAD = [
    "gzip_comp_level 0;", "gzip_comp_level 10;", "gzip_comp_level x;",
    "gzip_http_version 2.0;", "gzip_proxied any bogus;", "gzip_window 3k;", "gzip_window 64k;",
    "gzip_hash 256;", "gzip_hash 256k;", "gzip_min_length abc;",
]


@pytest.mark.parametrize("line", BAD)
def test_refused_like_nginx(tmp_path: Path, line: str) -> None:
    """Every gzip value nginx -t refuses, ``tern check`` refuses too, at the same line."""
    import re
    import subprocess

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    gzip on;\n    " + line + "\n}\n")
    ngx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                          "-g", "error_log stderr; pid nginx.pid;"],
                         capture_output=True, text=True, timeout=30)
    assert ngx.returncode != 0
    at = re.search(r"\[emerg\].* in \S+:(\d+)", ngx.stderr)
    assert at, ngx.stderr
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert tern.returncode == 2, tern.stdout + tern.stderr
    assert f"{conf}:{at.group(1)}: error" in tern.stdout, (ngx.stderr, tern.stdout)
    assert "Traceback" not in tern.stdout + tern.stderr


@pytest.mark.parametrize("line", ["gzip_comp_level 9;", "gzip_http_version 1.0;",
                                  "gzip_proxied off;", "gzip_window 512;", "gzip_hash 128k;",
                                  "gzip_min_length 1k;", "gzip_buffers 16 8k;",
                                  'gzip_disable "MSIE [1-6]\\.";'])
def test_accepted_like_nginx(tmp_path: Path, line: str) -> None:
    import subprocess

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n    gzip on;\n    " + line + "\n}\n")
    ngx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                          "-g", "error_log stderr; pid nginx.pid;"],
                         capture_output=True, text=True, timeout=30)
    assert ngx.returncode == 0, ngx.stderr
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert tern.returncode == 0, tern.stdout + tern.stderr
