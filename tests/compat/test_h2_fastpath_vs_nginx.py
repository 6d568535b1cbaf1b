"""Proxied requests over HTTP/2 (h2c, prior knowledge) answer exactly like nginx 1.22.1, on the
fast path (proxy/fastpath.py: a bodyless stream to a keep-alive group with a cached connection,
served from callbacks) and on every hand-over to the general path.

Each case warms the upstream keep-alive pool first (the fast path needs a cached connection),
then asks over HTTP/2 (``Comparison.http2``, the h2 library as client) and compares
status, headers, body and what the upstream received.  That the fast path itself was taken for
the plain cases, and not for the hand-overs, is shown in-process by
``tests/protocol/test_h2_fastpath.py`` (fastpath.Counts); these cases show the answers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair  # noqa: E402

from shadow.echo import Action, Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = r"""
events {}
http {
    access_log off;
    upstream one { server 10.0.4.1:8001; keepalive 8; }
    upstream two { server 10.0.4.2:8001; server 10.0.4.3:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8401 http2;
        server_name fast.test;

        location / { proxy_pass http://one; }
        location /slots/ {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Host $host;
            proxy_hide_header X-Hidden;
            proxy_pass_header Server;
            add_header X-Added yes;
            proxy_pass http://one;
        }
        location /redirect/ { proxy_pass http://one/r/; }
        location /nextup/ { proxy_next_upstream error timeout http_503; proxy_pass http://two; }
        location /nextwarm/ { proxy_pass http://two; }
        location /intercept/ {
            proxy_intercept_errors on;
            error_page 404 = /errpage;
            proxy_pass http://one;
        }
        location = /errpage { return 200 "errpage $uri\n"; }
        location /accel/ { proxy_pass http://one; }
        location /internal/ { internal; return 200 "accel $uri\n"; }
        location /bufsize/ { proxy_buffer_size 1k; proxy_pass http://one; }
        location /slow/ { proxy_read_timeout 1s; proxy_pass http://one; }
        location /override/ { error_page 404 =201 @prox; return 404; }
        location /override204/ { error_page 404 =204 @prox; return 404; }
        location @prox { proxy_pass http://one; }
        location /http10/ { proxy_http_version 1.0; proxy_pass http://one; }
        location /literal/ { proxy_pass http://10.0.4.1:8001; }
        location /gz/ { gzip on; gzip_min_length 1; gzip_types text/plain; proxy_pass http://one; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    # the compiled lane (proxy/lane_h2.py) would take the plain cases first: this file is
    # about the callback fast path, so Tern runs with the HTTP/2 lane off
    old = os.environ.get("TERN_LANE_H2")
    os.environ["TERN_LANE_H2"] = "off"
    try:
        pair = Pair(tmp_path_factory.mktemp("h2fast"), CONF)
    finally:
        if old is None:
            os.environ.pop("TERN_LANE_H2", None)
        else:
            os.environ["TERN_LANE_H2"] = old
    try:
        pair.behave(
            "10.0.4.1:8001",
            Behaviour(prefix="/r/", status=302,
                      headers=(("Location", "http://one/r/next"),
                               ("Refresh", "5; url=http://one/r/x"))),
            Behaviour(prefix="/slots/", headers=(("X-Hidden", "h"), ("Server", "up/1"),
                                                 ("X-Kept", "k"))),
            Behaviour(prefix="/s204", status=204, body=b""),
            Behaviour(prefix="/s304", status=304, body=b""),
            Behaviour(prefix="/intercept/", status=404, body=b"not here\n"),
            Behaviour(prefix="/accel/", headers=(("X-Accel-Redirect", "/internal/x"),)),
            Behaviour(prefix="/bufsize/", headers=(("X-Big", "b" * 2000),)),
            Behaviour(prefix="/slow/", delay=2.0),
            Behaviour(prefix="/big/", body=b"z" * (1 << 20)),
            Behaviour(prefix="/reset/", action=Action.RESET),
            Behaviour(prefix="/s500", status=500, body=b"boom\n"),
            Behaviour(prefix="/gz/", headers=(("Content-Type", "text/plain"),),
                      body=b"gzip me " * 64),
        )
        pair.behave("10.0.4.2:8001", Behaviour(prefix="/nextup/", status=503, body=b"x\n"))
        yield pair
    finally:
        pair.close()


def warm(pair: Pair, path: str = "/warm", times: int = 1) -> None:
    """Fill the keep-alive pools (each side's own; the first request of a peer opens a
    connection on the general path and leaves it cached)."""
    for _ in range(times):
        ask_h2(pair, path)


def ask_h2(pair: Pair, url: str, **kw: object) -> object:
    pair.cmp.http2 = True
    out = pair.ask(url, host="fast.test", **kw)  # type: ignore[arg-type]
    assert out.nginx.response.version == "2" and out.tern.response.version == "2", out
    return out.check()


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/plain?a=1", 200),  # served on the fast path
        ("GET", "/slots/x", 200),  # fast: header slots, hide/pass, add_header
        ("GET", "/redirect/a", 302),  # fast: proxy_redirect of Location and Refresh
        ("GET", "/s500", 500),  # fast: a status passed through
        ("OPTIONS", "/plain", 200),  # fast: another method
        ("GET", "/s204", 204),  # hand-over: 204
        ("GET", "/s304", 304),  # hand-over: 304
        ("HEAD", "/head", 200),  # hand-over: HEAD
        ("GET", "/intercept/a", 200),  # hand-over: proxy_intercept_errors
        ("GET", "/accel/a", 200),  # hand-over: X-Accel-Redirect
        ("GET", "/bufsize/a", 502),  # hand-over: head over proxy_buffer_size
        ("GET", "/big/a", 200),  # hand-over: body not whole after a read
        ("GET", "/override/a", 201),  # hand-over: error_page status override
        ("GET", "/override204/a", 204),
        ("GET", "/http10/a", 200),  # hand-over: no keep-alive upstream
        ("GET", "/literal/a", 200),  # hand-over: a literal address (no pool)
        ("GET", "/errpage", 200),  # hand-over: not a proxy
        ("GET", "/gz/a", 200),  # hand-over: gzip on
        ("GET", "/reset/a", 502),  # hand-over: upstream error
    ],
    ids=["plain", "header-slots", "proxy_redirect", "500-passed", "other-method", "204",
         "304", "head", "intercepted-404", "x-accel-redirect", "head-too-big",
         "body-over-reads", "error_page-override", "error_page-override-204",
         "http10-upstream", "literal-address", "not-proxied", "gzip", "upstream-reset"],
)
def test_answer_over_h2(pair: Pair, method: str, url: str, status: int) -> None:
    warm(pair)
    headers = (("X-Forwarded-For", "192.0.2.1"), ("Accept-Encoding", "gzip"))
    out = ask_h2(pair, url, method=method, headers=headers)
    assert out.status == status  # type: ignore[attr-defined]


def test_next_upstream_status_over_h2(pair: Pair) -> None:
    """A status listed in proxy_next_upstream goes to the next peer (both peers warm)."""
    warm(pair, "/nextwarm/a", 2)
    for _ in range(2):  # round robin: one of them starts at the 503 peer
        out = ask_h2(pair, "/nextup/a")
        assert out.status == 200  # type: ignore[attr-defined]


def test_read_timeout_over_h2(pair: Pair) -> None:
    """proxy_read_timeout runs out on the fast path's timer: handed over, 504 as nginx."""
    warm(pair)
    out = ask_h2(pair, "/slow/a", parallel=True)
    assert out.status == 504  # type: ignore[attr-defined]


def test_body_over_h2(pair: Pair) -> None:
    """A request with a body (not complete with its HEADERS) takes the general path."""
    warm(pair)
    out = ask_h2(pair, "/post", method="POST", body=b"b" * 5000)
    assert out.nginx.upstream[0].body == b"b" * 5000  # type: ignore[attr-defined]
