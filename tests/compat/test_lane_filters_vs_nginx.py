"""Locations the compiled lane must leave to the general path because a filter changes the
answer there: sub_filter (the body) and charset (Content-Type).  Tern runs with
``TERN_LANE_TRACE``; a control location proves the lane serves this configuration otherwise."""

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

UP = "10.0.46.1:8001"
CONF = r"""
events {}
http {
    access_log off;
    upstream app { server 10.0.46.1:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 8948;
        location /plain/ { proxy_pass http://app; }
        location /cs/ { charset utf-8; proxy_pass http://app; }
        location /sf/ { sub_filter hello bye; proxy_pass http://app; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("lane_filters")
    p = Pair(tmp / "run", CONF, trace=True)
    try:
        p.behave(UP, Behaviour(prefix="/", headers=(("Content-Type", "text/html"),),
                               body=b"<p>hello world</p>"))
        yield p
    finally:
        p.close()


@pytest.mark.parametrize(("url", "served"), [("/plain/a", True), ("/cs/a", False),
                                             ("/sf/a", False)])
def test_filters_keep_requests_off_the_lane(pair: Pair, url: str, served: bool) -> None:
    pair.ask_side(pair.tern_side, url)  # a pooled upstream connection for the lane
    mark = pair.trace_mark()
    pair.ask(url).check()
    lines = pair.trace_lines(mark, url)
    assert any(" served " in f" {ln} " for ln in lines) == served, lines
