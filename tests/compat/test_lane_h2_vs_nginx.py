"""The compiled lane for HTTP/2 streams (proxy/lane_h2.py) answers, forwards and logs exactly
like nginx 1.22.1.

Requests go over HTTP/2 with prior knowledge (h2c, ``Comparison.http2``: the h2 library as
client) to nginx and Tern on the same configuration; status, headers, body and what the
upstream received are compared.  Tern runs with ``TERN_LANE_TRACE``: its worker writes one line
per lane decision (``h2-served``, or ``h2-early``/``h2-late`` and the reason), so every case
proves which road the stream took.  Each request is first sent once to Tern alone, so the
upstream keep-alive pool has a connection for the lane to take.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Outcome, Pair  # noqa: E402

from shadow.echo import Action, Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = r"""
events {}
http {
    log_format lanevars '$remote_addr "$request" $status $body_bytes_sent "$http_referer" '
                        '"$http_user_agent" ua=$upstream_addr us=$upstream_status '
                        'ru=$request_uri u=$uri a=$args ia=$is_args h=$host m=$request_method '
                        's=$scheme p=$server_protocol sn=$server_name ph=$proxy_host '
                        'hx=$http_x_missing ru=$remote_user';
    access_log logs/access.log combined;
    access_log logs/vars.log lanevars;
    limit_req_zone $binary_remote_addr zone=z:1m rate=1000r/s;
    upstream app { server 10.0.4.1:8001; keepalive 8; }
    upstream nk { server 10.0.4.2:8001; }
    upstream two { server 10.0.4.3:8001; server 10.0.4.4:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8601 http2;
        server_name lane.test;

        location / { proxy_pass http://app; }
        location /uri/ { proxy_pass http://app/base/; }
        location = /exact { proxy_pass http://app/other; }
        location /hdrs/ {
            proxy_set_header Connection "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Host "$host:$server_port";
            proxy_set_header X-Uri "$uri|$args|$is_args|$request_uri|$http_host";
            proxy_set_header X-Proto "$scheme $server_protocol $request_method";
            proxy_set_header X-Const const;
            proxy_set_header X-Empty "";
            proxy_set_header X-Missing $http_x_missing;
            proxy_set_header X-Cookie $http_cookie;
            proxy_hide_header X-Hidden;
            add_header X-Added yes;
            add_header X-Always a always;
            proxy_pass http://app;
        }
        location /rr/ { proxy_pass http://two; }
        location /slow/ { proxy_read_timeout 1s; proxy_pass http://app; }
        location /nextup/ { proxy_next_upstream error timeout http_500; proxy_pass http://app; }

        location /c-gzip/ { gzip on; gzip_min_length 1; gzip_types *; proxy_pass http://app; }
        location /c-limit/ { limit_req zone=z burst=100 nodelay; proxy_pass http://app; }
        location /c-setvar/ {
            proxy_set_header Connection "";
            proxy_set_header X-Arg $arg_x;
            proxy_pass http://app;
        }
        location /c-literal/ { proxy_pass http://10.0.4.1:8001; }
        location /c-nokeep/ { proxy_pass http://nk; }
        location /c-rewrite/ { rewrite ^/c-rewrite/(.*)$ /r/$1 break; proxy_pass http://app; }
        location /c-noproxy/ { return 200 "not proxied\n"; }
    }
}
"""

UP = "10.0.4.1:8001"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("laneh2")
    pair = Pair(tmp / "run", CONF, trace=True)
    pair.cmp.http2 = True
    try:
        pair.behave(
            UP,
            Behaviour(prefix="/hdrs/", headers=(
                ("X-Hidden", "h"), ("X-Kept", "k"),
                ("Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
                ("Cache-Control", "no-cache"))),
            Behaviour(prefix="/plain/s404", status=404, body=b"nope\n"),
            Behaviour(prefix="/plain/s204", status=204, body=b""),
            Behaviour(prefix="/plain/s304", status=304, body=b""),
            Behaviour(prefix="/plain/redirect", status=302,
                      headers=(("Location", "http://app/elsewhere"),)),
            Behaviour(prefix="/plain/accel",
                      headers=(("X-Accel-Redirect", "/plain/after-accel"),)),
            Behaviour(prefix="/plain/big", body=b"b" * 300000),
            Behaviour(prefix="/plain/upclose", headers=(("Connection", "close"),)),
            Behaviour(prefix="/plain/emptytype", headers=(("Content-Type", ""),)),
            Behaviour(prefix="/nextup/", status=500, body=b"boom\n"),
            Behaviour(prefix="/slow/x", delay=2.0),
            Behaviour(prefix="/plain/reset", action=Action.RESET),
        )
        yield pair
    finally:
        pair.close()


def mark(pair: Pair) -> int:
    path = pair.trace
    assert path is not None
    return len(path.read_text().splitlines()) if path.exists() else 0


def trace_after(pair: Pair, start: int, target: str) -> list[str]:
    """Trace lines written since ``start`` for ``target`` (the reason words only)."""
    path = pair.trace
    assert path is not None
    deadline = time.monotonic() + 2
    while True:
        lines = path.read_text().splitlines()[start:] if path.exists() else []
        found = [ln.split(" ", 1)[1][: -len(target) - 1] for ln in lines
                 if ln.endswith(" " + target) and " h2-compile-no " not in ln]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def ask(pair: Pair, url: str, warm_url: str | None = None, warm_count: int = 1,
        **kw: object) -> tuple[Outcome, list[str]]:
    """Warm Tern's pool, then ask both sides over HTTP/2; the trace of the asked request."""
    warm = {k: v for k, v in kw.items() if k != "parallel"}
    for _ in range(warm_count):
        pair.ask_side(pair.tern_side, warm_url or url, **warm)  # type: ignore[arg-type]
    start = mark(pair)
    out = pair.ask(url, **kw)  # type: ignore[arg-type]
    assert out.nginx.response.version == "2" and out.tern.response.version == "2", out
    return out, trace_after(pair, start, url)


# -- streams the lane serves --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/plain/a?x=1&y=2", ()),
        ("/plain/q?", ()),
        ("/uri/a/b?c=d", ()),
        ("/exact", ()),
        ("/exact?z=1", ()),
        ("/hdrs/h?k=v", (("X-Forwarded-For", "192.0.2.1"), ("Cookie", "a=1"),
                         ("Cookie", "b=2"), ("X-Forwarded-For", "192.0.2.2"),
                         ("Referer", "http://r/"), ("User-Agent", "lane-test/1"))),
        ("/plain/s404", ()),
    ],
)
def test_served_on_lane(pair: Pair, url: str, headers: tuple[tuple[str, str], ...]) -> None:
    out, trace = ask(pair, url, host="lane.test", headers=headers)
    out.check()
    assert trace == ["h2-served"], trace
    assert out.nginx.upstream and out.tern.upstream
    # the HTTP/2 header order as well (the comparison above ignores it); Last-Modified
    # aside: Tern's HTTP/2 adapter puts it in nginx's fixed block for every answer (general
    # path included), nginx 1.22 without a cache leaves an upstream's where it was
    names = [[k.lower() for k, _ in side.response.headers if k.lower() != b"last-modified"]
             for side in (out.nginx, out.tern)]
    assert names[0] == names[1]


def test_round_robin(pair: Pair) -> None:
    out, trace = ask(pair, "/rr/1", warm_count=2, host="lane.test")
    out.check()
    assert trace == ["h2-served"], trace


def test_access_logs(pair: Pair) -> None:
    """The lane's log lines over HTTP/2 ($request and $server_protocol say HTTP/2.0)."""
    url = "/hdrs/log?q=1"
    headers = (("Referer", "http://ref/\"x\\"), ("User-Agent", "ua \xe9"))
    out, trace = ask(pair, url, host="lane.test", headers=headers)
    out.check()
    assert trace == ["h2-served"]
    deadline = time.monotonic() + 3
    while True:
        lines = [[ln for ln in pair.log_lines(s) if url in ln]
                 for s in (pair.nginx_side, pair.tern_side)]
        if len(lines[0]) >= 2 and len(lines[1]) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    last = [[re.sub(r"\[[^]]+\]", "[time]", ln) for ln in side[-2:]] for side in lines]
    assert len(last[0]) == 2
    assert "HTTP/2.0" in last[0][1]
    assert last[0] == last[1]


# -- locations and streams out of the lane --------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/c-gzip/a", "/c-limit/a", "/c-setvar/a?x=1", "/c-literal/a", "/c-nokeep/a",
            "/c-rewrite/a", "/c-noproxy/a"])
def test_location_not_eligible(pair: Pair, url: str) -> None:
    out, trace = ask(pair, url, host="lane.test")
    out.check()
    assert trace == ["h2-early not-eligible"], trace


@pytest.mark.parametrize(
    ("method", "headers", "body", "why"),
    [
        ("HEAD", (), b"", "h2-early not-get-or-body"),
        ("POST", (), b"data", "h2-early not-get-or-body"),
        ("GET", (("Authorization", "Basic eDp5"),), b"", "h2-early header authorization"),
        ("GET", (("If-None-Match", '"x"'),), b"", "h2-early header if-none-match"),
    ],
    ids=["head", "post-body", "authorization", "if-none-match"],
)
def test_request_not_eligible(pair: Pair, method: str, headers: tuple[tuple[str, str], ...],
                              body: bytes, why: str) -> None:
    url = f"/plain/req-{method}-{why.split()[-1]}"
    out, trace = ask(pair, url, method=method, host="lane.test", headers=headers, body=body)
    out.check()
    assert trace == [why], trace


# -- answers the lane hands over --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("/plain/s204", "h2-late status-or-size 204"),
        ("/plain/s304", "h2-late status-or-size 304"),
        ("/plain/redirect", "h2-late header Location"),
        ("/plain/accel", "h2-late header X-Accel-Redirect"),
        ("/plain/big", "h2-late body-not-whole"),
        ("/plain/emptytype", "h2-late empty-content-type"),
        ("/nextup/a", "h2-late status-or-size 500"),
    ],
)
def test_answer_handed_over(pair: Pair, url: str, why: str) -> None:
    out, trace = ask(pair, url, host="lane.test")
    out.check()
    assert trace == [why], trace


def test_read_timeout(pair: Pair) -> None:
    """proxy_read_timeout runs out on the lane: the general path answers 504."""
    out, trace = ask(pair, "/slow/x", "/slow/warm", host="lane.test", parallel=True)
    out.check()
    assert out.status == 504
    assert trace == ["h2-late read-timeout"], trace


def test_upstream_reset(pair: Pair) -> None:
    pair.ask("/plain/warm-gone-both", host="lane.test")  # nginx keeps a connection too
    out, trace = ask(pair, "/plain/reset", "/plain/warm-gone", host="lane.test")
    out.check()
    assert out.status == 502
    assert trace == ["h2-late upstream-eof"], trace


def test_upstream_connection_close_then_no_idle(pair: Pair) -> None:
    """``Connection: close`` from upstream: served, that connection dropped; the next stream
    finds no pooled connection and is handed over; the one after takes the lane again."""
    out, trace = ask(pair, "/plain/upclose", "/plain/before-close", host="lane.test")
    out.check()
    assert trace == ["h2-served"]
    start = mark(pair)
    pair.ask_side(pair.tern_side, "/plain/after-close", host="lane.test")
    pair.ask_side(pair.tern_side, "/plain/after-close2", host="lane.test")
    assert trace_after(pair, start, "/plain/after-close") == ["h2-late no-idle-connection"]
    assert trace_after(pair, start, "/plain/after-close2") == ["h2-served"]
