"""``$status`` while the answer is being made: in a ``return`` text or redirect target (the
code, or an error_page's status), in ``add_header``, after an intercepted upstream error and an
X-Accel-Redirect, as nginx 1.22.1 gives it."""

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

UP = "10.0.47.1:8001"
CONF = r"""
events {}
http {
    access_log off;
    upstream u { server 10.0.47.1:8001; }
    server {
        listen 8949;
        add_header X-S $status always;
        location /ret { return 200 "s=$status\n"; }
        location /ret404 { return 404 "gone s=$status\n"; }
        location /redir { return 302 "/to?s=$status"; }
        location /int/ { proxy_pass http://u; proxy_intercept_errors on; error_page 404 = /ret; }
        location /int2/ { proxy_pass http://u; proxy_intercept_errors on; error_page 404 /ret; }
        location /acc/ { proxy_pass http://u; }
        location /e/ { error_page 404 = /ret; return 404; }
        location /e2/ { error_page 404 /redir; return 404; }
        location /up/ { proxy_pass http://u; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("status_var"), CONF)
    try:
        p.behave(UP, Behaviour(prefix="/int", status=404, body=b"x"),
                 Behaviour(prefix="/acc/", headers=(("X-Accel-Redirect", "/ret"),), body=b""),
                 Behaviour(prefix="/up/", status=201, body=b"made"))
        yield p
    finally:
        p.close()


@pytest.mark.parametrize("url", ["/ret", "/ret404", "/redir", "/int/a", "/int2/a", "/acc/a",
                                 "/e/a", "/e2/a", "/up/a"])
def test_status_variable(pair: Pair, url: str) -> None:
    pair.ask(url).check()


def test_not_vacuous(pair: Pair) -> None:
    out = pair.ask("/int2/a").check()
    assert out.nginx.response.body == b"s=404\n"
