"""``resolver`` at run time: proxy_pass with variables naming hosts, resolved by nginx 1.22.1
and by Tern through the same DNS server (tests/support/dns_server.py) to the same upstream:
names, CNAMEs, names that do not exist, a failing server, a silent one (resolver_timeout),
``valid=`` caching, no resolver at all, ``ipv6=off``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servepair import NGINX_BIN, Pair  # noqa: E402
from support.dns_server import DnsServer, Zone  # noqa: E402

from shadow.echo import EchoServer  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]


def _conf(dns_port: int, echo_port: int) -> str:
    return f"""
events {{}}
http {{
    access_log off;
    server {{
        listen 8950;
        resolver 127.0.0.1:{dns_port} valid=300s;
        resolver_timeout 1s;
        location /v/ {{ set $b "http://app.test:{echo_port}"; proxy_pass $b; }}
        location /h/ {{ proxy_pass http://$arg_h:{echo_port}; }}
        location /c/ {{ proxy_pass http://alias.test:{echo_port}$request_uri; }}
        location /v6off/ {{
            resolver 127.0.0.1:{dns_port} ipv6=off valid=300s;
            proxy_pass http://$arg_h:{echo_port};
        }}
        location /ip/ {{ proxy_pass http://127.0.0.1:{echo_port}$uri; }}
    }}
    server {{
        listen 8951;
        location / {{ proxy_pass http://$arg_h:{echo_port}; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, DnsServer]]:
    zone = Zone(a={"app.test": ["127.0.0.1"], "real.test": ["127.0.0.1"],
                   "v4only.test": ["127.0.0.1"]},
                aaaa={"real.test": []}, cname={"alias.test": "real.test"},
                silent={"slow.test"}, servfail={"broken.test"})
    dns = DnsServer(zone).start()
    echo = EchoServer("named-upstream").start()
    pair = Pair(tmp_path_factory.mktemp("resolver"), _conf(dns.port, echo.port))
    for side in (pair.nginx_side, pair.tern_side):
        side.echoes["named-upstream"] = echo
    try:
        yield pair, dns
    finally:
        pair.close()
        echo.stop()
        dns.stop()


URLS = ["/v/a?x=1", "/h/p?h=app.test", "/h/p?h=APP.test", "/c/x", "/h/p?h=missing.test",
        "/h/p?h=broken.test", "/h/p?h=slow.test", "/v6off/p?h=v4only.test", "/ip/z"]


@pytest.mark.parametrize("url", URLS)
def test_resolved_alike(env: tuple[Pair, DnsServer], url: str) -> None:
    pair, _ = env
    pair.ask(url, parallel=True).check()


def test_no_resolver_is_502(env: tuple[Pair, DnsServer]) -> None:
    pair, _ = env
    out = pair.ask("/p?h=app.test", port=8951).check()
    assert out.status == 502


def test_answers_are_cached(env: tuple[Pair, DnsServer]) -> None:
    """valid=300s: the second request for a name asks the DNS server nothing (each side)."""
    pair, dns = env
    pair.ask_side(pair.tern_side, "/h/p?h=real.test")
    before = len(dns.queries)
    out = pair.ask_side(pair.tern_side, "/h/q?h=real.test")
    assert out.response.status == 200
    assert len(dns.queries) == before


def test_not_vacuous(env: tuple[Pair, DnsServer]) -> None:
    pair, dns = env
    before = len(dns.queries)
    out = pair.ask("/h/p?h=v4only.test", parallel=True).check()
    assert out.status == 200 and out.nginx.upstream and out.tern.upstream
    assert len(dns.queries) > before
    assert pair.ask("/h/p?h=missing.test", parallel=True).check().status == 502
