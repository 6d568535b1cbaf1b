"""Upstream response headers with empty values, under nginx and ``tern serve``.

An upstream may send ``Content-Type:`` with nothing after the colon, or other empty headers;
the client must see what nginx makes of them (same config, same echo upstream, same answers).
"""

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

UP = "10.0.6.1:8001"

CONF = r"""
events {}
http {
    access_log off;
    server {
        listen 8406;
        location / { proxy_pass http://10.0.6.1:8001; }
        location /typed/ { default_type text/x-default; proxy_pass http://10.0.6.1:8001; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("empty-headers"), CONF)
    try:
        p.behave(
            UP,
            Behaviour(prefix="/ct-empty", headers=(("Content-Type", ""),), body=b"x\n"),
            Behaviour(prefix="/typed/ct-empty", headers=(("Content-Type", ""),), body=b"x\n"),
            Behaviour(prefix="/other-empty", headers=(("X-Empty", ""), ("Content-Type",
                                                                         "text/plain")),
                      body=b"y\n"),
            Behaviour(prefix="/ct-space", headers=(("Content-Type", " "),), body=b"z\n"))
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("path", ["/ct-empty", "/typed/ct-empty", "/other-empty", "/ct-space"])
def test_empty_upstream_header(pair: Pair, path: str) -> None:
    # twice: the second request finds a kept-alive upstream connection (Tern's fast path)
    for _ in range(2):
        pair.ask(path, port=8406).check()
