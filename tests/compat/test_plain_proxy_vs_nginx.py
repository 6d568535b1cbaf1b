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

from shadow.echo import Action, Behaviour  # noqa: E402

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


# --------------------------------------------------------------------------------------------
# the fast path (proxy/fastpath.py): each case warms the upstream keep-alive pool first (the
# fast path needs a cached connection), then asks for one of the answers it must hand over to
# the general path, or one it serves itself, and compares with nginx

FAST_CONF = r"""
events {}
http {
    access_log off;
    upstream one { server 10.0.3.1:8001; keepalive 8; }
    upstream two { server 10.0.3.2:8001; server 10.0.3.3:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8301;
        server_name fast.test;

        location / { proxy_pass http://one; }
        location /slots/ {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Host $host;
            proxy_hide_header X-Hidden;
            proxy_pass_header Server;
            add_header X-Added yes;
            proxy_pass http://one;
        }
        location /redirect/ { proxy_pass http://one/r/; }
        location /nextup/ { proxy_next_upstream error timeout http_503; proxy_pass http://two; }
        location /nextwarm/ { proxy_pass http://two; }
        location /intercept/ {
            proxy_intercept_errors on;
            error_page 404 = /errpage;
            proxy_pass http://one;
        }
        location = /errpage { return 200 "errpage $uri\n"; }
        location /accel/ { proxy_pass http://one; }
        location /internal/ { internal; return 200 "accel $uri\n"; }
        location /bufsize/ { proxy_buffer_size 1k; proxy_pass http://one; }
        location /slow/ { proxy_read_timeout 1s; proxy_pass http://one; }
        location /rt1/ { proxy_read_timeout 1s; proxy_pass http://one; }
        location /override/ { error_page 404 =201 @prox; return 404; }
        location /override204/ { error_page 404 =204 @prox; return 404; }
        location @prox { proxy_pass http://one; }
        location /http10/ { proxy_http_version 1.0; proxy_pass http://one; }
        location /literal/ { proxy_pass http://10.0.3.1:8001; }
    }
}
"""


class TestFastPath:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        pair = Pair(tmp_path_factory.mktemp("fast"), FAST_CONF)
        try:
            one = "10.0.3.1:8001"
            pair.behave(
                one,
                Behaviour(prefix="/r/", status=302,
                          headers=(("Location", "http://one/r/next"),
                                   ("Refresh", "5; url=http://one/r/x"))),
                Behaviour(prefix="/slots/", headers=(("X-Hidden", "h"), ("Server", "up/1"),
                                                     ("X-Kept", "k"))),
                Behaviour(prefix="/s204", status=204, body=b""),
                Behaviour(prefix="/s304", status=304, body=b""),
                Behaviour(prefix="/intercept/", status=404, body=b"not here\n"),
                Behaviour(prefix="/accel/", headers=(("X-Accel-Redirect", "/internal/x"),)),
                Behaviour(prefix="/bufsize/", headers=(("X-Big", "b" * 2000),)),
                Behaviour(prefix="/slow/", delay=2.0),
                Behaviour(prefix="/big/", body=b"z" * (1 << 20)),
                Behaviour(prefix="/cut/", body=b"c" * 100000, action=Action.CLOSE_MID_RESPONSE),
                Behaviour(prefix="/reset/", action=Action.RESET),
                Behaviour(prefix="/s500", status=500, body=b"boom\n"),
            )
            pair.behave("10.0.3.2:8001", Behaviour(prefix="/nextup/", status=503, body=b"x\n"))
            yield pair
        finally:
            pair.close()

    @staticmethod
    def warm(pair: Pair, path: str = "/warm", times: int = 1) -> None:
        for _ in range(times):
            pair.ask(path, host="fast.test").check()

    @pytest.mark.parametrize(
        ("method", "url", "status"),
        [
            ("GET", "/plain?a=1", 200),
            ("GET", "/slots/x", 200),
            ("GET", "/redirect/a", 302),
            ("GET", "/s204", 204),
            ("GET", "/s304", 304),
            ("HEAD", "/head", 200),
            ("GET", "/s500", 500),
            ("GET", "/intercept/a", 200),
            ("GET", "/accel/a", 200),
            ("GET", "/bufsize/a", 502),
            ("GET", "/big/a", 200),
            ("GET", "/override/a", 201),
            ("GET", "/override204/a", 204),
            ("GET", "/http10/a", 200),
            ("GET", "/literal/a", 200),
            ("OPTIONS", "/plain", 200),
        ],
        ids=["plain", "header-slots", "proxy_redirect-location-refresh", "204", "304", "head",
             "500-passed", "intercepted-404", "x-accel-redirect", "head-too-big",
             "body-over-reads", "error_page-override", "error_page-override-204", "http10-upstream", "literal-address",
             "other-method"],
    )
    def test_answer(self, pair: Pair, method: str, url: str, status: int) -> None:
        self.warm(pair)
        out = pair.ask(url, method=method, host="fast.test",
                       headers=(("X-Forwarded-For", "192.0.2.1"), ("X-Client", "c")))
        out.check()
        assert out.status == status

    def test_next_upstream_status(self, pair: Pair) -> None:
        """A status listed in proxy_next_upstream goes to the next peer (both peers warm)."""
        self.warm(pair, "/nextwarm/a", 2)  # a path the 503 peer answers with 200
        for _ in range(2):  # round robin: one of them starts at the 503 peer
            out = pair.ask("/nextup/a", host="fast.test").check()
            assert out.status == 200

    def test_upstream_cuts_body(self, pair: Pair) -> None:
        self.warm(pair)
        out = pair.raw(b"GET /cut/a HTTP/1.1\r\nHost: fast.test\r\n\r\n", methods=["GET"])
        out.check()

    def test_upstream_resets(self, pair: Pair) -> None:
        self.warm(pair)
        out = pair.ask("/reset/a", host="fast.test").check()
        assert out.status == 502

    def test_read_timeout(self, pair: Pair) -> None:
        self.warm(pair)
        out = pair.ask("/slow/a", host="fast.test", parallel=True).check()
        assert out.status == 504

    def test_empty_post_and_expect(self, pair: Pair) -> None:
        """A request whose body is complete with its head: Content-Length: 0, and
        Expect: 100-continue without a body."""
        self.warm(pair)
        pair.ask("/post", method="POST", host="fast.test").check()
        out = pair.raw(b"POST /expect HTTP/1.1\r\nHost: fast.test\r\nContent-Length: 0\r\n"
                       b"Expect: 100-continue\r\n\r\n", methods=["POST"])
        out.check()

    def test_not_proxied(self, pair: Pair) -> None:
        self.warm(pair)
        out = pair.ask("/errpage", host="fast.test").check()
        assert out.status == 200

    def test_body(self, pair: Pair) -> None:
        """A request with a body (not complete with its head) takes the general path."""
        self.warm(pair)
        out = pair.ask("/post", method="POST", host="fast.test", body=b"b" * 5000).check()
        assert out.nginx.upstream[0].body == b"b" * 5000

    def test_no_keepalive_new_connection(self, pair: Pair) -> None:
        """A literal address (no keepalive) opens a new connection each time even when one to
        the same peer is cached for a group."""
        echo = pair.echo("10.0.3.1:8001")
        self.warm(pair)
        mark = len(echo.records)
        pair.ask("/literal/a", host="fast.test").check()
        before = {r.peer for r in echo.records[:mark]}
        new = echo.records[mark:]
        assert len(new) == 2
        assert not any(r.peer in before for r in new)

    def test_read_timeout_after_answer(self, pair: Pair) -> None:
        """A fast answer ends its proxy_read_timeout: a keep-alive connection idle for longer
        than it, then used again, sees nothing of the expired timer."""
        self.warm(pair)
        req = b"GET /rt1/a HTTP/1.1\r\nHost: fast.test\r\n\r\n"
        out = pair.raw([req, 1.6, req.replace(b"/a", b"/b")], methods=["GET"] * 2, expect=2,
                       linger=0.3)
        out.check()
        assert out.statuses == [200, 200]

    def test_keepalive_sequence(self, pair: Pair) -> None:
        """Several requests on one client connection, fast and handed over in turn."""
        self.warm(pair)
        req = (b"GET /a HTTP/1.1\r\nHost: fast.test\r\n\r\n"
               b"GET /s204 HTTP/1.1\r\nHost: fast.test\r\n\r\n"
               b"GET /b HTTP/1.1\r\nHost: fast.test\r\n\r\n"
               b"GET /redirect/x HTTP/1.1\r\nHost: fast.test\r\nConnection: close\r\n\r\n")
        out = pair.raw(req, methods=["GET"] * 4)
        out.check()
        assert out.statuses == [200, 204, 200, 302]


# --------------------------------------------------------------------------------------------
# the route cache (Interpreter._remember): a proxied request whose location only (socket,
# Host, path) chose is remembered, and the next request for the same path skips the searches.
# Each case asks the same path twice or more (the later ones hit the cache when it applies)
# and compares every answer with nginx; one case per condition that keeps a route out of it.

CACHE_CONF = r"""
events {}
http {
    access_log off;
    limit_req_zone $server_name zone=rc:1m rate=1r/m;
    upstream up { server 10.0.4.1:8001; keepalive 8; }
    upstream up2 { server 10.0.4.2:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8401;
        server_name cache.test;

        location /p/ { proxy_pass http://up; }
        location ~ ^/cap/(?<rest>.*)$ { proxy_set_header X-Rest $rest; proxy_pass http://up; }
        location /redir/ { proxy_pass http://up; }
        location /var/ { proxy_pass http://$arg_u; }
        location /lim/ { limit_req zone=rc; error_page 503 /p/from-error; proxy_pass http://up; }
        location /realip/ {
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Client;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://up;
        }
    }
    server {
        listen 8401;
        server_name rw.test;
        if ($arg_stop) { return 418; }
        location /p/ { proxy_pass http://up; }
    }
    server {
        listen 8401;
        server_name ~^(?<sub>[a-z]+)\.rx\.test$;
        location /p/ { proxy_set_header X-Sub $sub; proxy_pass http://up; }
    }
}
"""


class TestRouteCache:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        pair = Pair(tmp_path_factory.mktemp("routecache"), CACHE_CONF)
        try:
            pair.behave("10.0.4.2:8001", Behaviour(prefix="/var/", headers=(("X-Peer", "2"),)))
            yield pair
        finally:
            pair.close()

    @staticmethod
    def sent(out: object, name: bytes) -> bytes | None:
        return dict(out.nginx.upstream[0].headers).get(name)  # type: ignore[attr-defined]

    def test_same_path_other_args(self, pair: Pair) -> None:
        """A cached route still takes each request's own arguments."""
        for args in ("x=1", "x=2", ""):
            out = pair.ask(f"/p/a?{args}" if args else "/p/a", host="cache.test").check()
            assert out.status == 200
            assert out.nginx.upstream[0].target == (f"/p/a?{args}" if args else "/p/a")

    def test_location_captures(self, pair: Pair) -> None:
        """Regex captures are per request: a capturing location is not cached."""
        for _ in range(2):
            out = pair.ask("/cap/x/y", host="cache.test").check()
            assert self.sent(out, b"X-Rest") == b"x/y"

    def test_server_name_captures(self, pair: Pair) -> None:
        """A server chosen by a capturing regex name is not cached."""
        for _ in range(2):
            out = pair.ask("/p/a", host="abc.rx.test").check()
            assert self.sent(out, b"X-Sub") == b"abc"

    def test_server_rewrites(self, pair: Pair) -> None:
        """A server-level rewrite program (here an ``if`` on the arguments) runs every time."""
        first = pair.ask("/p/a", host="rw.test").check()
        second = pair.ask("/p/a?stop=1", host="rw.test").check()
        assert (first.status, second.status) == (200, 418)

    def test_slash_redirect(self, pair: Pair) -> None:
        """The trailing-slash redirect is not a proxied route: 301 each time."""
        for _ in range(2):
            assert pair.ask("/redir", host="cache.test").check().status == 301

    def test_internal_redirect(self, pair: Pair) -> None:
        """limit_req refuses, error_page sends the request to another proxy location: where it
        ended is not where its path leads."""
        statuses = [pair.ask(path, host="cache.test").check().status
                    for path in ("/lim/first", "/lim/a", "/lim/a")]
        assert statuses == [200, 503, 503]

    def test_not_plain(self, pair: Pair) -> None:
        """A proxy location that is not plain (realip here) runs its phases every time."""
        for _ in range(2):
            out = pair.ask("/realip/a", host="cache.test",
                           headers=(("X-Client", "198.51.100.7"),)).check()
            assert self.sent(out, b"X-Real-IP") == b"198.51.100.7"

    def test_proxy_pass_with_variables(self, pair: Pair) -> None:
        """The peer group of a proxy_pass with variables is chosen per request, on a route
        the cache remembers (the location itself is the same for every request)."""
        peers = []
        for group in ("up", "up2", "up"):
            out = pair.ask(f"/var/a?u={group}", host="cache.test").check()
            assert out.status == 200
            peers.append(dict(out.nginx.response.headers).get(b"X-Peer"))
        assert peers == [None, b"2", None]
