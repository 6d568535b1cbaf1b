"""limit_conn while requests are really in progress: nginx 1.22.1 and ``tern serve`` alike.

A slow upstream answer (the echo server waits before answering) holds one request in progress
per side; while it is held, the next request on the same key is refused with nginx's page and
status, another location without the limit is served, and once the held request has finished the
key is free again.  The refusals are compared as whole answers (status, headers, body) and as
access-log lines (``$status`` and ``$limit_conn_status``).

Each side is driven on its own (nginx first, then tern) so the hold on one side cannot overlap
the other; every wait is bounded.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair, compare, render  # noqa: E402

from migrate.compare import Capture, Side  # noqa: E402
from shadow.echo import Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

UPSTREAM = "10.0.41.1:8001"
HOLD = 1.5
"""Seconds the echo server waits before answering a ``/*/slow`` request."""

CONF = r"""
events {}
http {
    log_format lc '$request_uri $status lcs=$limit_conn_status lrs=$limit_req_status';
    access_log logs/lc.log lc;
    limit_conn_zone $binary_remote_addr zone=peraddr:1m;
    limit_conn_zone $server_name zone=perserver:1m;
    limit_req_zone $binary_remote_addr zone=r1:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=r2:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=r3:1m rate=1r/m;
    upstream u { server 10.0.41.1:8001; }
    server {
        listen 8941;
        server_name lc.test;
        location /one/ { limit_conn peraddr 1; proxy_pass http://u; }
        location /st/ { limit_conn peraddr 1; limit_conn_status 429; proxy_pass http://u; }
        location /dry/ { limit_conn peraddr 1; limit_conn_dry_run on; proxy_pass http://u; }
        location /two/ { limit_conn peraddr 2; proxy_pass http://u; }
        location /srv/ { limit_conn perserver 1; proxy_pass http://u; }
        location /free/ { proxy_pass http://u; }
        location /rq/ { limit_req zone=r1; limit_req_dry_run on; proxy_pass http://u; }
        location /rd/ { limit_req zone=r2 burst=1; limit_req_dry_run on; proxy_pass http://u; }
        location /rr/ { limit_req zone=r3; proxy_pass http://u; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("limit_conn"), CONF)
    try:
        p.behave(UPSTREAM, *(Behaviour(prefix=f"/{loc}/slow", delay=HOLD)
                             for loc in ("one", "st", "dry", "two", "srv")))
        yield p
    finally:
        p.close()


def _held(pair: Pair, side: Side, slow: list[str], probes: list[str]) -> list[Capture]:
    """Start the ``slow`` requests on ``side``, wait until the upstream has them all, send the
    ``probes`` one by one while they are held, and return the probes' captures followed by the
    slow ones'."""
    echo = pair.echo(UPSTREAM)
    before = len(echo.records)
    got: dict[int, Capture] = {}

    def run(i: int, url: str) -> None:
        got[i] = pair.ask_side(side, url, host="lc.test")

    threads = [threading.Thread(target=run, args=(i, url), daemon=True)
               for i, url in enumerate(slow)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while len(echo.records) - before < len(slow) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(echo.records) - before == len(slow), f"{side.name}: slow requests not upstream"
    probes_out = [pair.ask_side(side, url, host="lc.test") for url in probes]
    for t in threads:
        t.join(HOLD + 10)
    return probes_out + [got[i] for i in range(len(slow))]


CASES = [
    # (held requests, probes sent while they are held)
    (["/one/slow"], ["/one/x", "/free/x"]),
    (["/st/slow"], ["/st/x"]),
    (["/dry/slow"], ["/dry/x"]),
    (["/two/slow"], ["/two/x"]),
    (["/two/slow", "/two/slow"], ["/two/x"]),
    (["/srv/slow"], ["/srv/x", "/one/x"]),
]


@pytest.mark.parametrize(("slow", "probes"), CASES,
                         ids=["refused-503", "status-429", "dry-run", "under-limit", "at-limit",
                              "server-key"])
def test_limit_conn_while_held(pair: Pair, slow: list[str], probes: list[str]) -> None:
    outs = {side.name: _held(pair, side, slow, probes)
            for side in (pair.nginx_side, pair.tern_side)}
    n, t = outs["nginx"], outs["tern"]
    statuses = [c.response.status for c in n]
    assert statuses == [c.response.status for c in t]
    for i, (a, b) in enumerate(zip(n, t, strict=True)):
        diffs = compare(a.response, b.response, a.upstream, b.upstream,
                        echoed=a.echoed and b.echoed)
        assert not diffs, f"request {i}:\n{render(diffs)}"
    # after the held requests ended, the key is free again
    after = {side.name: pair.ask_side(side, probes[0], host="lc.test").response.status
             for side in (pair.nginx_side, pair.tern_side)}
    assert after["nginx"] == after["tern"] == 200


def test_statuses_are_what_nginx_documents(pair: Pair) -> None:
    """Not only equal: the refusals are refusals (a guard against both sides passing all)."""
    out = _held(pair, pair.nginx_side, ["/st/slow"], ["/st/x", "/free/x"])
    assert [c.response.status for c in out] == [429, 200, 200]
    out = _held(pair, pair.tern_side, ["/one/slow"], ["/one/x"])
    assert [c.response.status for c in out] == [503, 200]


def test_limit_conn_status_variable_in_log(pair: Pair) -> None:
    for side in (pair.nginx_side, pair.tern_side):
        _held(pair, side, ["/one/slow"], ["/one/log-refused"])
        _held(pair, side, ["/dry/slow"], ["/dry/log-dry"])
        pair.ask_side(side, "/free/log-free", host="lc.test")
    deadline = time.monotonic() + 5
    lines: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        lines = {side.name: [ln for ln in pair.log_lines(side) if "/log-" in ln]
                 for side in (pair.nginx_side, pair.tern_side)}
        if all(len(v) >= 3 for v in lines.values()):
            break
        time.sleep(0.05)
    assert lines["nginx"] == [
        "/one/log-refused 503 lcs=REJECTED lrs=-",
        "/dry/log-dry 200 lcs=REJECTED_DRY_RUN lrs=-",
        "/free/log-free 200 lcs=- lrs=-",
    ]
    assert lines["tern"] == lines["nginx"]


def test_limit_req_dry_run_and_status_variable(pair: Pair) -> None:
    """limit_req_dry_run counts but never refuses or delays; ``$limit_req_status`` says what
    would have happened (1 request a minute, so the second and third are over the rate)."""
    urls = ["/rq/a", "/rq/b", "/rd/a", "/rd/b", "/rd/c", "/rr/a", "/rr/b"]
    for side in (pair.nginx_side, pair.tern_side):
        for url in urls:
            pair.ask_side(side, url, host="lc.test")
    deadline = time.monotonic() + 5
    lines: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        lines = {side.name: [ln for ln in pair.log_lines(side) if ln.startswith("/r")]
                 for side in (pair.nginx_side, pair.tern_side)}
        if all(len(v) >= len(urls) for v in lines.values()):
            break
        time.sleep(0.05)
    assert lines["nginx"] == [
        "/rq/a 200 lcs=- lrs=PASSED",
        "/rq/b 200 lcs=- lrs=REJECTED_DRY_RUN",
        "/rd/a 200 lcs=- lrs=PASSED",
        "/rd/b 200 lcs=- lrs=DELAYED_DRY_RUN",
        "/rd/c 200 lcs=- lrs=REJECTED_DRY_RUN",
        "/rr/a 200 lcs=- lrs=PASSED",
        "/rr/b 503 lcs=- lrs=REJECTED",
    ]
    assert lines["tern"] == lines["nginx"]
