"""``resolver`` over TCP: a name with so many A records that its UDP answer (over 512 bytes)
comes back truncated (TC set, no records) is asked again over TCP by nginx 1.22.1 and by Tern,
through the same DNS server (tests/support/dns_server.py serves TCP on the UDP port), and both
reach the upstream.  Also: TCP answers truncated as well, and a server silent over TCP, end in
resolver_timeout on both sides, as does a server that refuses TCP; a CNAME to such a name;
ipv6=off."""

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

MANY = ["127.0.0.1"] * 40
"""40 A records: 12 + 15 + 40 * 16 = 667 bytes, over UDP's 512."""


def _conf(dns_port: int, echo_port: int, udp_only_port: int) -> str:
    return f"""
events {{}}
http {{
    access_log off;
    server {{
        listen 8954;
        resolver 127.0.0.1:{dns_port} valid=300s;
        resolver_timeout 1s;
        location /h/ {{ proxy_pass http://$arg_h:{echo_port}; }}
        location /udponly/ {{
            resolver 127.0.0.1:{udp_only_port} valid=300s;
            proxy_pass http://$arg_h:{echo_port};
        }}
        location /v6off/ {{
            resolver 127.0.0.1:{dns_port} ipv6=off valid=300s;
            proxy_pass http://$arg_h:{echo_port};
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, DnsServer]]:
    names = ("many.test", "many2.test", "nginx-only.test", "tern-only.test", "v4.test",
             "trunc.test", "silent.test")
    zone = Zone(a={n: MANY for n in names}, cname={"alias.test": "many.test"},
                tcp_truncated={"trunc.test"}, tcp_silent={"silent.test"})
    dns = DnsServer(zone).start()
    udp_only = DnsServer(Zone(a={"many.test": MANY, "few.test": ["127.0.0.1"]}),
                         tcp=False).start()
    echo = EchoServer("named-upstream").start()
    pair = Pair(tmp_path_factory.mktemp("resolver_tcp"),
                _conf(dns.port, echo.port, udp_only.port))
    for side in (pair.nginx_side, pair.tern_side):
        side.echoes["named-upstream"] = echo
    try:
        yield pair, dns
    finally:
        pair.close()
        echo.stop()
        dns.stop()
        udp_only.stop()


@pytest.mark.parametrize("url", ["/h/p?h=many.test", "/h/p?h=alias.test",
                                 "/v6off/p?h=v4.test", "/h/p?h=trunc.test",
                                 "/h/p?h=silent.test", "/udponly/p?h=many.test",
                                 "/udponly/p?h=few.test"])
def test_truncated_answers_alike(env: tuple[Pair, DnsServer], url: str) -> None:
    pair, _ = env
    pair.ask(url, parallel=True).check()


@pytest.mark.parametrize("side_name", ["nginx", "tern"])
def test_each_side_asks_over_tcp_and_reaches_the_upstream(env: tuple[Pair, DnsServer],
                                                          side_name: str) -> None:
    """A guard against a test that cannot fail: the UDP answer was truncated, the same
    question came again over TCP, and the request got through."""
    pair, dns = env
    side = pair.nginx_side if side_name == "nginx" else pair.tern_side
    name = f"{side_name}-only.test"
    got = pair.ask_side(side, f"/h/q?h={name}")
    assert got.response.status == 200 and got.upstream
    assert (name, 1) in dns.truncated
    assert (name, 1) in dns.tcp_queries


def test_all_truncated_is_not_resolved(env: tuple[Pair, DnsServer]) -> None:
    pair, dns = env
    out = pair.ask("/h/p?h=trunc.test", parallel=True).check()
    assert out.status == 502 and not out.nginx.upstream
    assert ("trunc.test", 1) in dns.tcp_queries
    assert pair.ask("/udponly/p?h=many.test", parallel=True).check().status == 502
    assert pair.ask("/udponly/p?h=few.test", parallel=True).check().status == 200
