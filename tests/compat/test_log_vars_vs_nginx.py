"""Access log lines for header variables that may be absent, under nginx and ``tern serve``.

nginx writes ``-`` for a variable that is *not found* (``$sent_http_x`` for a header the answer
does not carry, ``$upstream_http_x`` without that upstream header or without an upstream at all,
``$http_x`` for a request header that was not sent) and the empty string for a variable that is
found but empty. Same config, same requests, the log lines must be identical.
"""

from __future__ import annotations

import itertools
import sys
import time
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
    log_format vars '"$request" $status ct=$sent_http_content_type '
                    'xs=$sent_http_x_set xm=$sent_http_x_missing '
                    'ue=$upstream_http_x_echo_id um=$upstream_http_x_missing '
                    'ua=$upstream_addr us=$upstream_status hm=$http_x_missing he=$http_x_empty';
    access_log logs/access.log vars;
    upstream u { server 10.0.5.1:8001; }
    server {
        listen 8405;
        location /text { add_header X-Set "yes"; return 200 "text\n"; }
        location /empty { add_header X-Set ""; return 204; }
        location /proxy/ { proxy_pass http://u; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("log-vars"), CONF)
    try:
        yield p
    finally:
        p.close()


def test_absent_and_empty_header_variables_log_alike(pair: Pair) -> None:
    for url, headers in [("/text", []), ("/empty", []), ("/proxy/a", []),
                         ("/proxy/b", [("X-Empty", "")]), ("/nowhere", [("X-Empty", "")])]:
        pair.ask(url, port=8405, headers=headers).check()
    deadline = time.monotonic() + 5
    while True:
        lines = {s.name: pair.log_lines(s) for s in (pair.nginx_side, pair.tern_side)}
        if len(lines["tern"]) >= 5 and len(lines["nginx"]) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines["nginx"]) == 5
    assert lines["tern"] == lines["nginx"], "\n".join(
        f"{i}: {a}\n{i}: {b}" for i, (a, b) in
        enumerate(itertools.zip_longest(lines["nginx"], lines["tern"])))
