"""proxy_cookie_domain, proxy_cookie_path and proxy_cookie_flags against nginx 1.22.1: plain and
regex rules (captures, variables, case), every Domain/Path attribute, odd spacing and empty
attributes, cookies no rule touches kept byte for byte, flags added, replaced and removed,
first matching rule, ``off``, inheritance; and the lane leaves such locations alone."""

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

UP = "10.0.48.1:8001"
COOKIES = (
    "a=1; Domain=backend.local; Path=/app/x; HttpOnly",
    "b=2; domain=.BACKEND.local; path=/app",
    "c=3; Path=/other; Secure",
    "d=4; path=/app/; domain=other.example",
    "e=5",
    "f=6; SameSite=Lax; path=/",
    "g=7;Domain=backend.local;path=/app",
    "h=8 ;  domain=backend.local ; samesite=lax ;;  httponly",
    "i=9; xdomain=backend.local; Domain=backend.local",
    "nocookie",
    "j=10; Domain=",
    "k=11; Path=/app/x; Path=/app/y",
    "l=12;Secure;SameSite=LAX",
    "m=13;path=/zzz",
)

CONF = r"""
events {}
http {
    access_log off;
    upstream app { server 10.0.48.1:8001; keepalive 4; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 8952;
        location /d/ { proxy_pass http://app; proxy_cookie_domain backend.local example.com; }
        location /dr/ {
            proxy_pass http://app;
            proxy_cookie_domain ~\.?(?<sub>[a-z]+)\.local$ $sub.example.org;
        }
        location /dv/ { proxy_pass http://app; proxy_cookie_domain backend.local $host; }
        location /p/ { proxy_pass http://app; proxy_cookie_path /app/ /; }
        location /p2/ { proxy_pass http://app; proxy_cookie_path /app /new;
                        proxy_cookie_path /other /o; }
        location /pr/ { proxy_pass http://app; proxy_cookie_path ~*^/APP(.*)$ /z$1; }
        location /prc/ { proxy_pass http://app; proxy_cookie_path ~^/APP(.*)$ /z$1; }
        location /f/ { proxy_cookie_flags ~ secure httponly samesite=strict;
                       proxy_pass http://app; }
        location /f2/ { proxy_cookie_flags a nohttponly; proxy_cookie_flags f samesite=none secure;
                        proxy_cookie_flags c nosecure; proxy_cookie_flags h nosamesite;
                        proxy_pass http://app; }
        location /f3/ { proxy_cookie_flags ~^[AB]$ secure; proxy_cookie_flags b httponly;
                        proxy_cookie_flags l secure samesite=lax; proxy_pass http://app; }
        location /all/ {
            proxy_cookie_domain backend.local example.com;
            proxy_cookie_path /app /n;
            proxy_cookie_flags ~ samesite=lax httponly secure;
            proxy_pass http://app;
            location /all/off/ { proxy_cookie_path off; proxy_pass http://app; }
            location /all/inherit/ { proxy_pass http://app; }
        }
        location /none/ { proxy_pass http://app; }
    }
}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("proxy_cookie"), CONF)
    try:
        p.behave(UP, Behaviour(prefix="/", headers=tuple(("Set-Cookie", c) for c in COOKIES),
                               body=b"ok"))
        yield p
    finally:
        p.close()


URLS = ["/d/x", "/dr/x", "/dv/x", "/p/x", "/p2/x", "/pr/x", "/prc/x", "/f/x", "/f2/x",
        "/f3/x", "/all/x", "/all/off/x", "/all/inherit/x", "/none/x"]


@pytest.mark.parametrize("url", URLS)
def test_set_cookie_rewritten_alike(pair: Pair, url: str) -> None:
    out = pair.ask(url).check()
    # exact bytes and order of every Set-Cookie (the comparison above is order-insensitive)
    sides = [[v for k, v in side.response.headers if k.lower() == b"set-cookie"]
             for side in (out.nginx, out.tern)]
    assert sides[0] == sides[1]


def test_kept_alive_requests_too(pair: Pair) -> None:
    """Repeated on warm upstream connections (where the lane would serve a plain location)."""
    for _ in range(3):
        pair.ask_side(pair.tern_side, "/all/x")
    test_set_cookie_rewritten_alike(pair, "/all/x")


def test_not_vacuous(pair: Pair) -> None:
    out = pair.ask("/d/x").check()
    cookies = [v for k, v in out.nginx.response.headers if k.lower() == b"set-cookie"]
    assert b"a=1; Domain=example.com; Path=/app/x; HttpOnly" in cookies
