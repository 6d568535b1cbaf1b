"""Locations that only proxy, and their near misses, answer exactly like nginx 1.22.1.

Routing takes a shorter road for a location whose phases reduce to its ``proxy_pass``
(``Interpreter._plain_proxy``: no rewrite program, not internal, no realip, allow/deny,
auth_basic or try_files in its chain).  Each case here is a proxy location with exactly one of
those directives (so the general road must be taken and must do what nginx does), next to plain
proxy locations (the short road), with limits, the body-size check, the trailing-slash redirect,
regex captures and header filters that both roads share.  Every case compares status, headers,
body and what the upstream received.
"""

from __future__ import annotations

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
    limit_req_zone $server_name zone=one:1m rate=1r/m;
    upstream app { server 10.0.2.1:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8201;
        server_name plain.test;
        client_max_body_size 10;

        location /plain/ { proxy_pass http://app; }
        location /uri/ { proxy_pass http://app/base/; }
        location ~ ^/cap/(?<rest>.*)$ {
            proxy_set_header X-Rest $rest;
            proxy_pass http://app/c/$1$is_args$args;
        }
        location /hdrs/ {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Empty "";
            proxy_set_header X-Const const;
            add_header X-Added yes;
            expires 1h;
            proxy_pass http://app;
        }
        location /redir/ { proxy_pass http://app; }
        location /limited/ { limit_req zone=one; proxy_pass http://app; }

        # one directive each that the short road must not skip
        location /tf/ { try_files /nonexistent @named; proxy_pass http://app; }
        location /realip/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Client;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://app;
        }
        location /deny/ { deny all; proxy_pass http://app; }
        location /auth/ {
            auth_basic "zone";
            auth_basic_user_file htpasswd;
            proxy_pass http://app;
        }
        location /internal/ { internal; proxy_pass http://app; }
        location /rewrite/ { rewrite ^/rewrite/(.*)$ /rewritten/$1 break; proxy_pass http://app; }
        location /rewrite-last/ { rewrite ^ /plain/from-rewrite last; proxy_pass http://app; }
        location /return/ { return 418; proxy_pass http://app; }
        location @named { return 200 "named $uri\n"; }
    }
}
"""

HTPASSWD = "bob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"  # bob:secret


class TestPlainProxy:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        pair = Pair(tmp_path_factory.mktemp("plain"), CONF, {"htpasswd": HTPASSWD})
        try:
            yield pair
        finally:
            pair.close()

    @pytest.mark.parametrize(
        ("url", "status", "upstream"),
        [
            ("/plain/a?x=1", 200, True),
            ("/plain/%7Euser/../b", 200, True),
            ("/uri/a/b?c=d", 200, True),
            ("/cap/x/y?z=1", 200, True),
            ("/hdrs/h", 200, True),
            ("/redir", 301, False),
            ("/tf/a", 200, False),
            ("/deny/a", 403, False),
            ("/auth/a", 401, False),
            ("/internal/a", 404, False),
            ("/rewrite/a?q=1", 200, True),
            ("/rewrite-last/a", 200, True),
            ("/return/a", 418, False),
        ],
        ids=[
            "plain",
            "plain-normalised-uri",
            "plain-with-uri",
            "plain-regex-captures",
            "plain-set-headers-add_header-expires",
            "plain-slash-redirect",
            "try_files-before-proxy",
            "deny-before-proxy",
            "auth_basic-before-proxy",
            "internal-proxy-location",
            "rewrite-break-then-proxy",
            "rewrite-last-to-plain",
            "return-before-proxy",
        ],
    )
    def test_get(self, pair: Pair, url: str, status: int, upstream: bool) -> None:
        out = pair.ask(url, host="plain.test", headers=(("X-Forwarded-For", "192.0.2.1"),))
        out.check()
        assert out.status == status
        assert bool(out.nginx.upstream) is upstream

    def test_realip_in_location(self, pair: Pair) -> None:
        """realip set in the proxy location changes $remote_addr (upstream X-Real-IP)."""
        out = pair.ask("/realip/a", host="plain.test", headers=(("X-Client", "198.51.100.7"),))
        out.check()
        sent = dict(out.nginx.upstream[0].headers)
        assert sent[b"X-Real-IP"] == b"198.51.100.7"

    def test_auth_ok(self, pair: Pair) -> None:
        out = pair.ask("/auth/a", host="plain.test",
                       headers=(("Authorization", "Basic Ym9iOnNlY3JldA=="),))
        out.check()
        assert out.status == 200

    def test_body_over_limit(self, pair: Pair) -> None:
        """client_max_body_size is checked from Content-Length before proxying: 413."""
        out = pair.ask("/plain/post", method="POST", host="plain.test", body=b"x" * 11)
        out.check()
        assert out.status == 413

    def test_body_within_limit(self, pair: Pair) -> None:
        out = pair.ask("/plain/post", method="POST", host="plain.test", body=b"x" * 10)
        out.check()
        assert out.nginx.upstream[0].body == b"x" * 10

    def test_limit_req(self, pair: Pair) -> None:
        """limit_req still runs in a plain proxy location: 1r/m lets one request through."""
        first = pair.ask("/limited/1", host="plain.test").check()
        second = pair.ask("/limited/2", host="plain.test").check()
        assert (first.status, second.status) == (200, 503)
