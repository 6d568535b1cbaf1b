"""auth_request and auth_request_set against nginx 1.22.1: the subrequest each side sends to the
auth service (method, URI, headers), what the application then receives, and the answer, for
2xx/401/403/other answers, an auth service that is down, auth locations answering by themselves
(return), satisfy any/all with allow/deny and auth_basic, error_page 401, auth_request off,
POST with a body, HEAD."""

from __future__ import annotations

import base64
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

AUTH = "10.0.45.1:8001"

CONF = r"""
events {}
http {
    access_log off;
    upstream auth { server 10.0.45.1:8001; }
    upstream app { server 10.0.45.2:8001; }
    upstream down { server 127.0.0.1:1; }
    server {
        listen 8947;
        location ^~ /_auth/ {
            internal;
            proxy_pass http://auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }
        location = /_down { internal; proxy_pass http://down; }
        location = /_ret200 { return 200 "fine"; }
        location = /_ret401 { add_header WWW-Authenticate 'Bearer realm="r"' always; return 401; }
        location = /_ret204 { return 204; }

        location /ok/ {
            auth_request /_auth/ok;
            auth_request_set $user $upstream_http_x_user;
            auth_request_set $ust $upstream_status;
            proxy_set_header X-User $user;
            proxy_set_header X-Auth-Status $ust;
            proxy_pass http://app;
            location /ok/open/ { auth_request off; proxy_pass http://app; }
        }
        location /d401/ { auth_request /_auth/401; proxy_pass http://app; }
        location /d403/ { auth_request /_auth/403; proxy_pass http://app; }
        location /d302/ { auth_request /_auth/302; proxy_pass http://app; }
        location /d500/ { auth_request /_auth/500; proxy_pass http://app; }
        location /down/ { auth_request /_down; proxy_pass http://app; }
        location /ret/ { auth_request /_ret200; proxy_pass http://app; }
        location /ret401/ { auth_request /_ret401; proxy_pass http://app; }
        location /ret204/ { auth_request /_ret204; return 200 "after 204\n"; }
        location /anyallow/ {
            satisfy any; allow 127.0.0.1; deny all;
            auth_request /_auth/401; proxy_pass http://app;
        }
        location /anydeny/ {
            satisfy any; deny all;
            auth_request /_auth/ok; proxy_pass http://app;
        }
        location /anydeny401/ {
            satisfy any; deny all;
            auth_request /_auth/401; proxy_pass http://app;
        }
        location /alldeny/ { deny all; auth_request /_auth/ok; proxy_pass http://app; }
        location /basic/ {
            auth_basic "realm"; auth_basic_user_file htpasswd;
            auth_request /_auth/ok; proxy_pass http://app;
        }
        location /anybasic/ {
            satisfy any;
            auth_basic "realm"; auth_basic_user_file htpasswd;
            proxy_pass http://app;
        }
        location /anynomatch/ {
            satisfy any; allow 10.0.0.0/8;
            auth_request /_auth/401; proxy_pass http://app;
        }
        location /page/ {
            auth_request /_auth/401;
            error_page 401 = /login;
            proxy_pass http://app;
        }
        location = /login { return 200 "please log in\n"; }
        location /eb1/ { auth_basic "r"; auth_basic_user_file htpasswd; error_page 401 = /login; }
        location /eb2/ { auth_basic "r"; auth_basic_user_file htpasswd;
                         error_page 401 /login.html; root www; }
        location /eb3/ { auth_basic "r"; auth_basic_user_file htpasswd; error_page 401 = @app; }
        location /eb4/ { auth_basic "r"; auth_basic_user_file htpasswd;
                         error_page 401 = /moved/x; }
        location /moved/ { return 302 /somewhere; }
        location @app { proxy_pass http://app; }
        location = /login.html { root www; }
    }
}
"""

HTPASSWD = "alice:{SHA}" + base64.b64encode(
    __import__("hashlib").sha1(b"secret").digest()).decode() + "\n"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = Pair(tmp_path_factory.mktemp("auth_request"), CONF,
             {"htpasswd": HTPASSWD, "www/login.html": "login page\n"})
    try:
        p.behave(AUTH,
                 Behaviour(prefix="/_auth/ok", headers=(("X-User", "alice"),), body=b"ok"),
                 Behaviour(prefix="/_auth/401", status=401,
                           headers=(("WWW-Authenticate", 'Basic realm="sso"'),), body=b"no"),
                 Behaviour(prefix="/_auth/403", status=403, body=b"forbidden"),
                 Behaviour(prefix="/_auth/302", status=302,
                           headers=(("Location", "http://sso.example/login"),), body=b""),
                 Behaviour(prefix="/_auth/500", status=500, body=b"broken"))
        yield p
    finally:
        p.close()


URLS = ["/ok/a?x=1", "/ok/open/a", "/d401/a", "/d403/a", "/d302/a", "/d500/a", "/down/a",
        "/ret/a", "/ret401/a", "/ret204/a", "/anyallow/a", "/anydeny/a", "/anydeny401/a",
        "/alldeny/a", "/basic/a", "/anybasic/a", "/anynomatch/a", "/page/a",
        # WWW-Authenticate stays through error_page redirects (auth_basic too)
        "/eb1/a", "/eb2/a", "/eb3/a", "/eb4/a"]


@pytest.mark.parametrize("url", URLS)
def test_get(pair: Pair, url: str) -> None:
    pair.ask(url).check()


def test_basic_credentials_then_auth_request(pair: Pair) -> None:
    token = base64.b64encode(b"alice:secret").decode()
    pair.ask("/basic/a", headers=(("Authorization", f"Basic {token}"),)).check()
    pair.ask("/anybasic/a", headers=(("Authorization", f"Basic {token}"),)).check()


def test_post_with_body(pair: Pair) -> None:
    pair.ask("/ok/form", method="POST", body=b"a=1&b=2",
             headers=(("Content-Type", "application/x-www-form-urlencoded"),)).check()


def test_head(pair: Pair) -> None:
    pair.ask("/ok/h", method="HEAD").check()
    # a HEAD answered with an error page: its Content-Length carries the product token's
    # length, which the comparison cannot mask without a body; compare the rest
    out = pair.ask("/d401/h", method="HEAD")
    assert out.nginx.response.status == out.tern.response.status == 401
    assert out.header("www-authenticate") == out.header("www-authenticate", "tern")
    assert [d.field for d in out.diffs] == ["header:content-length"]


def test_the_subrequest_happens(pair: Pair) -> None:
    """A guard against a test that cannot fail: the auth service is asked, and decides."""
    out = pair.ask("/ok/z").check()
    assert [r.target for r in out.nginx.upstream] == ["/_auth/ok", "/ok/z"]
    assert out.status == 200
    denied = pair.ask("/d403/z").check()
    assert denied.status == 403 and len(denied.nginx.upstream) == 1
