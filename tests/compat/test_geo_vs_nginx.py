"""geo (ngx_http_geo_module): ``tern serve`` sets geo variables exactly as Debian's nginx 1.22.1.

One configuration, nginx and ``tern serve`` side by side (:mod:`servepair`). Each geo variable is
returned in the body (``return 200 "..."``) and in a header, so every case compares the values
both servers computed for the same request: the client address (127.0.0.1), addresses taken from
a request header through ``geo $address $var``, IPv4 and IPv6, longest-prefix match, ``default``,
duplicates, ``delete``, ``include``, ``ranges`` (nested ranges, IPv6 and unparsable addresses),
``proxy`` / ``proxy_recursive`` with ``X-Forwarded-For``, and realip before geo.
"""

from __future__ import annotations

import re
import sys
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
    access_log off;
    geo $client_geo {
        default        other;
        127.0.0.0/8    loopback;
        127.0.0.1/32   me;
        10.0.0.0/8     ten;
    }
    geo $nodefault {
        10.0.0.0/8     ten;
    }
    geo $http_x_addr $hdr {
        default              dflt;
        10.0.0.0/8           ten8;
        10.1.0.0/16          ten16;
        10.1.2.0/24          ten24;
        10.1.2.3             host;
        10.1.2.77/24         masked;
        192.168.0.0/16       first;
        192.168.0.0/16       second;
        172.16.0.0/12        gone;
        delete               172.16.0.0/12;
        0.0.0.0/0            v4all;
        2001:db8::/32        doc6;
        2001:db8:1::/48      doc48;
        ::1                  lo6;
        include              geo-extra.conf;
        "255.255.255.255"    none;
    }
    geo $http_x_addr $hdr6only {
        ::/0                 six;
        10.0.0.0/8           ten;
    }
    geo $http_x_addr $rng {
        ranges;
        default              rdef;
        10.0.0.0-10.0.255.255        a;
        10.0.1.0-10.0.1.255          b;
        10.0.1.5-10.0.1.5            c;
        192.168.1.0-192.168.2.255    d;
        192.168.1.0-192.168.1.255    e;
        1.2.3.0-1.2.3.255            gone;
        delete                       1.2.3.0-1.2.3.255;
        255.255.255.0-255.255.255.254  nomatch;
    }
    geo $http_x_addr $rng2 {
        ranges;
        10.0.0.0-10.0.255.255        a;
        10.0.0.0-10.255.255.255      wide;
        10.1.0.0-10.1.0.255          c;
        10.2.255.0-10.3.0.255        d;
        10.2.255.0-10.2.255.255      e;
    }
    geo $http_x_addr $rdel {
        ranges;
        default                rdef;
        127.0.0.0-127.0.0.255  test;
        127.0.0.1-127.0.0.1    loopback;
        delete                 127.0.0.0-127.0.0.0;
        delete                 127.0.0.2-127.0.0.255;
        10.10.3.0-10.11.2.255  foo;
        10.12.3.0-10.13.2.255  foo2;
        delete                 10.10.3.0-10.11.2.255;
        delete                 10.12.3.0-10.12.255.255;
    }
    geo $prox {
        default        nope;
        proxy          127.0.0.1;
        proxy          10.9.0.0/16;
        10.0.0.0/8     ten;
        10.9.0.0/16    proxies;
        192.0.2.0/24   doc;
        127.0.0.1      direct;
    }
    geo $proxr {
        default        nope;
        proxy          127.0.0.0/8;
        proxy          10.9.0.0/16;
        proxy_recursive;
        10.0.0.0/8     ten;
        10.9.0.0/16    proxies;
        192.0.2.0/24   doc;
        127.0.0.1      direct;
    }
    map $hdr $hdr_mapped { ten24 mapped; default unmapped; }
    server {
        listen 8080;
        server_name localhost;
        add_header X-Geo "$client_geo|$nodefault|$hdr|$hdr6only|$rng|$prox|$proxr" always;
        location / {
            return 200
                "$client_geo|$nodefault|$hdr|$hdr6only|$rng|$prox|$proxr|$hdr_mapped|$rng2|$rdel\n";
        }
        location /realip/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Real-IP;
            return 200 "$client_geo|$prox|$proxr\n";
        }
        location /if/ {
            if ($hdr = ten16) { return 403; }
            return 200 "$hdr\n";
        }
    }
}
"""

FILES = {"geo-extra.conf": "10.1.2.4 fromfile;\n2001:db8:1:2::/64 doc64;\n"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("geo"), CONF, FILES)
    try:
        yield p
    finally:
        p.close()


def _ask(pair: Pair, url: str, headers: list[tuple[str, str]]) -> str:
    out = pair.ask(url, headers=headers).check()
    assert out.status == 200 or url.startswith("/if/")
    return out.nginx.response.body.decode()


ADDRS = [
    None, "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.77", "10.1.3.1", "10.2.0.1", "10.0.1.5",
    "10.0.1.6", "10.0.2.1", "10.255.0.1", "192.168.1.9", "192.168.2.9", "192.168.3.1",
    "172.16.5.5", "1.2.3.4", "8.8.8.8", "255.255.255.255", "0.0.0.0", "2001:db8::1",
    "2001:db8:1::5", "2001:db8:1:2::9", "2001:db9::1", "::1", "::ffff:10.1.2.3",
    "::ffff:192.168.1.1", "not-an-address", "", "10.1.2.3:80", "[::1]", " 10.1.2.3",
    "10.1.2.3 ", "010.001.002.003", "10.1.2", "10.0.0.9", "10.1.0.9", "10.1.1.1", "10.2.255.9",
    "10.3.0.9", "10.3.1.0", "10.1..2", "10.1.2.", "10.1.2.3.4", "127.0.0.0", "127.0.0.1",
    "127.0.0.2", "10.10.3.1", "10.11.0.1", "10.12.3.1", "10.13.0.1",
]


class TestGeo:
    @pytest.mark.parametrize("addr", ADDRS, ids=[repr(a) for a in ADDRS])
    def test_address_from_variable(self, pair: Pair, addr: str | None) -> None:
        headers = [] if addr is None else [("X-Addr", addr)]
        _ask(pair, "/", headers)

    def test_client_address(self, pair: Pair) -> None:
        body = _ask(pair, "/", [])
        assert body.startswith("me|")  # the oracle agrees with what the config says

    @pytest.mark.parametrize(
        "xff",
        [
            None, "10.1.1.1", "192.0.2.7", "10.9.1.1", "192.0.2.7, 10.9.1.1",
            "192.0.2.7, 10.9.1.1, 10.9.2.2", "10.9.1.1, 192.0.2.7", "garbage",
            "192.0.2.7, garbage", "2001:db8::5", "192.0.2.7,10.9.0.1", " 192.0.2.7 ,",
            "1.1.1.1:8080", "[2001:db8::1]:443", "127.0.0.1", "192.0.2.8, 127.0.0.1",
        ],
    )
    def test_proxy_and_forwarded_for(self, pair: Pair, xff: str | None) -> None:
        headers = [] if xff is None else [("X-Forwarded-For", xff)]
        _ask(pair, "/", headers)

    def test_forwarded_for_lines(self, pair: Pair) -> None:
        _ask(pair, "/", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "10.9.4.4")])
        _ask(pair, "/", [("X-Forwarded-For", "10.9.4.4"), ("X-Forwarded-For", "192.0.2.1")])

    @pytest.mark.parametrize("real", ["10.1.1.1", "192.0.2.9", "10.9.3.3", "bogus"])
    def test_after_realip(self, pair: Pair, real: str) -> None:
        _ask(pair, "/realip/", [("X-Real-IP", real), ("X-Forwarded-For", "192.0.2.5")])

    @pytest.mark.parametrize("addr", ["10.1.9.9", "10.1.2.3"])
    def test_in_if(self, pair: Pair, addr: str) -> None:
        _ask(pair, "/if/", [("X-Addr", addr)])


BAD = [
    "geo $g { 10.0.0.0/99 x; }",
    "geo $g { 10.0.0.300 x; }",
    "geo $g { 10.0.0.0/8 x y; }",
    "geo $g { ranges; 10.0.0.0-10.0.0.300 x; }",
    "geo $g { ranges; 10.0.0.9-10.0.0.1 x; }",
    "geo $g { ranges; 10.0.0.0-255.255.255.255 x; }",
    "geo $g {\n ranges;\n 10.0.1.0-10.0.1.255 a;\n 10.0.0.0-10.0.1.9 b;\n}",
    "geo $g { proxy nonsense; }",
    "geo g { default x; }",
    "geo $g { volatile; default x; }",  # geo has no volatile flag in nginx 1.22
]


@pytest.mark.parametrize("block", BAD)
def test_refused_like_nginx(tmp_path: Path, block: str) -> None:
    """Every geo block nginx -t refuses, ``tern check`` refuses too, at the same line."""
    import subprocess

    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n" + block + "\n}\n")
    ngx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf),
                          "-g", "error_log stderr; pid nginx.pid;"],
                         capture_output=True, text=True, timeout=30)
    assert ngx.returncode != 0
    line = re.search(r"\[emerg\].* in \S+:(\d+)", ngx.stderr)
    assert line, ngx.stderr
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert tern.returncode == 2, tern.stdout + tern.stderr
    assert f"{conf}:{line.group(1)}: error" in tern.stdout, (ngx.stderr, tern.stdout)
    assert "Traceback" not in tern.stdout + tern.stderr
