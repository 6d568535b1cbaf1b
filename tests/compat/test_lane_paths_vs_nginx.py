"""The lane routes new paths on a known (socket, Host) by the location search alone
(``Lane._known_route``): exact, longest prefix, ``^~``, the 301 for a missing slash, URI
mapping, paths that normalisation would change, servers with regex or nested locations (the
router's search) — each answered like nginx 1.22.1, and served by the lane where it should be."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = r"""
events {}
http {
    access_log off;
    upstream app { server 10.0.49.1:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 8953;
        location / { proxy_pass http://app; }
        location /api/ { proxy_pass http://app/v2/; }
        location /api/old/ { return 410; }
        location = /exact { proxy_pass http://app/e; }
        location ^~ /static/ { proxy_pass http://app; }
        location /slash/ { proxy_pass http://app; }
    }
    server {
        listen 8954;
        location / { proxy_pass http://app; }
        location ~ \.php$ { return 403; }
        location /nest/ { location /nest/in/ { proxy_pass http://app; } proxy_pass http://app; }
    }
}
"""

PATHS_A = ["/first", "/a/b", "/api/x/y", "/api/old/z", "/exact", "/exact/more", "/static/s.css",
           "/slash", "/slash/ok", "/api", "/a.b/c", "/dot/./x", "/pct%20x", "/dbl//x",
           "/.hidden", "/api/x?q=1"]
PATHS_B = ["/first", "/x/y", "/p.php", "/nest/a", "/nest/in/b", "/nest"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("lane_paths")
    p = Pair(tmp / "run", CONF, trace=True)
    try:
        yield p
    finally:
        p.close()


def _lines(pair: Pair) -> list[str]:
    path = pair.trace
    assert path is not None
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(("port", "paths"), [(8953, PATHS_A), (8954, PATHS_B)])
def test_new_paths_answer_like_nginx(pair: Pair, port: int, paths: list[str]) -> None:
    for path in paths:
        pair.ask(path, port=port).check()


def test_known_host_new_paths_ride_the_lane(pair: Pair) -> None:
    """After one probe on the Host, plain new paths are served by the lane (not probed)."""
    pair.ask_side(pair.tern_side, "/warm", port=8953)
    pair.ask_side(pair.tern_side, "/warm2", port=8953)
    mark = len(_lines(pair))
    for i in range(5):
        out = pair.ask(f"/n{i}/item{i}.html", port=8953).check()
        assert out.status == 200
    time.sleep(0.2)
    lines = _lines(pair)[mark:]
    served = [ln for ln in lines if " served " in f" {ln} "]
    assert len(served) >= 4, lines
    assert not any("compile-no" in ln for ln in lines), lines
