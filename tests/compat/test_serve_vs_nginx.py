"""``tern serve`` answers exactly like Debian's nginx 1.22.1 on the same config.

Each test class owns one configuration: nginx and ``tern serve`` run once on port-mapped copies of
it (``tern compare``'s machinery, :mod:`servepair`), in front of the same recording echo upstreams;
every case sends the same request(s) to both and asserts that the answers are identical (status,
headers as :mod:`shadow.diff` normalises them, body) and that the upstreams received identical
requests (request line, every header including ``Connection``, body and its framing).

The product token (``nginx/1.22.1`` vs ``tern/0.1.0``) is compared by shape only, in ``Server``
and in the tail of built-in error pages; ``Expires`` is compared relative to ``Date``.
"""

from __future__ import annotations

import base64
import itertools
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import RawCapture, NGINX_BIN, Pair  # noqa: E402

from shadow.echo import Action, Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]


def start(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    conf: str,
    files: dict[str, str | bytes] | None = None,
) -> Iterator[Pair]:
    pair = Pair(tmp_path_factory.mktemp(name), conf, files)
    try:
        yield pair
    finally:
        pair.close()


# =============================================================================================
# 1. servers, locations, return, rewrite, if/set/break/map, error_page, add_header, expires,
#    server_tokens, variables

ROUTING = r"""
events {}
http {
    access_log off;
    map $http_x_tier $tier {
        default            std;
        gold               G;
        ~^plat(?<lvl>\d+)$ P$lvl;
    }
    add_header X-Http http-level;

    server {
        listen 8001 default_server;
        listen 8002;
        server_name default.test;
        location / { return 200 "default name=$server_name host=$host port:$server_port\n"; }
    }
    server {
        listen 8001;
        server_name exact.test *.wild.test www.pre.*;
        location / { return 200 "names name=$server_name host=$host\n"; }
    }
    server {
        listen 8001;
        server_name ~^(?<sub>[a-z]+)\.(?<dom>rx)\.test$;
        location / { return 200 "regex sub=$sub dom=$dom name=$server_name\n"; }
    }
    server {
        listen 8002 default_server;
        server_name second.test;
        location / { return 200 "second port:$server_port\n"; }
    }
    server {
        listen 8001;
        server_name loc.test;
        add_header X-Srv srv;
        location = /exact { return 200 "exact $uri\n"; }
        location ^~ /static/ { return 200 "prefix-noregex $uri\n"; }
        location ~ \.php$ { return 200 "regex-cs $uri\n"; }
        location ~* \.jpg$ { return 200 "regex-ci $uri\n"; }
        location /nest/ {
            location /nest/inner/ { return 200 "nested $uri\n"; }
            location ~ ^/nest/.*\.txt$ { return 200 "nested-regex $uri\n"; }
            return 200 "nest-outer $uri\n";
        }
        location /hdr/ {
            add_header X-Loc loc;
            add_header X-Status $status always;
            location /hdr/inherit/ { return 200 "inherit\n"; }
            location /hdr/missing/ { return 404; }
            return 200 "hdr\n";
        }
        location / { return 200 "catch-all $uri\n"; }
    }
    server {
        listen 8001;
        server_name rw.test;
        root html;
        add_header X-Srv rw;
        rewrite ^/srv-old/(.*)$ /new/$1 last;
        location /old/ { rewrite ^/old/(.*)$ /new/$1 last; }
        location /new/ { return 200 "new uri=$uri args=$args a=$arg_a\n"; }
        location /r302/ { rewrite ^/r302/(.*)$ /target/$1 redirect; }
        location /r301/ { rewrite ^/r301/(.*)$ /target/$1?x=1 permanent; }
        location /loop { rewrite ^/loop(.*)$ /loop$1 last; }
        location /brk/ {
            rewrite ^/brk/(.*)$ /files/$1 break;
            return 500;
        }
        location /files/ { root html; }
        location /ret/ {
            location /ret/text { return 201 "created $request_method\n"; }
            location /ret/url { return 307 /elsewhere?q=$arg_q; }
            location /ret/abs { return 301 http://other.test/x; }
            location /ret/code { return 410; }
            location /ret/444 { return 444; }
        }
        location /if/ {
            set $who anon;
            if ($arg_user) { set $who $arg_user; }
            if ($http_user_agent ~* "^(curl|wget)/(\d+)") { set $who "$who-$1-$2"; }
            if ($request_method = POST) { return 405 "no post for $who\n"; }
            return 200 "who=$who\n";
        }
        location /setbrk {
            set $v one;
            break;
            set $v two;
            return 500;
        }
        location /map { return 200 "tier=$tier\n"; }
        location /exp/1h { expires 1h; return 200 "exp\n"; }
        location /exp/epoch { expires epoch; return 200 "exp\n"; }
        location /exp/max { expires max; return 200 "exp\n"; }
        location /vars {
            return 200 "host=$host uri=$uri request_uri=$request_uri args=$args a=$arg_a b=$arg_b
http_x_foo=$http_x_foo ua=$http_user_agent cookie=$cookie_sid remote=$remote_addr
scheme=$scheme name=$server_name port:$server_port method=$request_method
proto=$server_protocol is_args=$is_args\n";
        }
    }
    server {
        listen 8001;
        server_name redir.test alias.redir.test;
        root html;
        location /abs-off/ { absolute_redirect off; return 302 /x; }
        location /port-off/ { port_in_redirect off; return 302 /x; }
        location /name-in/ { server_name_in_redirect on; return 302 /x; }
        location /files { }
        location /drop-args { rewrite ^ /kept? redirect; }
        location /add-args { rewrite ^ /kept?new=1 redirect; }
        location ~ ^/cap/(?<first>[a-z]+)/(\d+)$ { return 200 "first=$first second=$2\n"; }
        location /srv-return/ { return 200 "not reached\n"; }
        if ($request_uri ~ ^/srv-return/(.*)$) { return 200 "server-level if $1\n"; }
    }
    server {
        listen 8001;
        server_name err.test;
        server_tokens off;
        error_page 404 /nf.html;
        error_page 403 =200 /ok;
        error_page 418 = @teapot;
        error_page 410 http://gone.test/page;
        location = /nf.html { return 200 "custom not found for $uri\n"; }
        location = /ok { return 200 "forbidden became ok\n"; }
        location @teapot { return 202 "teapot named\n"; }
        location /deny { return 403; }
        location /tea { return 418; }
        location /gone { return 410; }
        location /missing { return 404; }
        location /plain500 { error_page 500 /nope; return 500; }
        location / { return 404; }
    }
}
"""

ROUTING_FILES = {"html/files/a.txt": "static file a\n"}


class TestRouting:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        yield from start(tmp_path_factory, "routing", ROUTING, ROUTING_FILES)

    @pytest.mark.parametrize(
        ("host", "port", "expect"),
        [
            ("default.test", 8001, "default"),
            ("unknown.test", 8001, "default"),
            ("exact.test", 8001, "names"),
            ("a.b.wild.test", 8001, "names"),
            ("www.pre.org", 8001, "names"),
            ("abc.rx.test", 8001, "regex"),
            ("second.test", 8002, "second"),
            ("unknown.test", 8002, "second"),
            ("exact.test", 8002, "second"),
            ("default.test", 8002, "default"),
        ],
        ids=[
            "exact-default",
            "unknown-to-default",
            "exact",
            "wildcard-start",
            "wildcard-end",
            "regex-captures",
            "second-port",
            "second-port-default_server",
            "name-not-on-this-port",
            "name-on-its-second-listen",
        ],
    )
    def test_server_selection(self, pair: Pair, host: str, port: int, expect: str) -> None:
        out = pair.ask("/", host=host, port=port).check()
        assert out.nginx.response.body.startswith(expect.encode())

    @pytest.mark.parametrize(
        ("url", "expect"),
        [
            ("/exact", b"exact"),
            ("/exact/more", b"catch-all"),
            ("/static/x.php", b"prefix-noregex"),
            ("/a/b.php", b"regex-cs"),
            ("/a/B.JPG", b"regex-ci"),
            ("/a/B.PHP", b"catch-all"),
            ("/nest/inner/x", b"nested"),
            ("/nest/a.txt", b"nested-regex"),
            ("/nest/other", b"nest-outer"),
            ("/x/%2e%2e/static/a", b"prefix-noregex"),
            ("//static///a", b"prefix-noregex"),
        ],
        ids=[
            "exact",
            "exact-not-prefix",
            "prefix-noregex-beats-regex",
            "regex",
            "regex-ci",
            "regex-cs-miss",
            "nested-prefix",
            "nested-regex",
            "outer-return",
            "dot-segments",
            "merge-slashes",
        ],
    )
    def test_location_kinds(self, pair: Pair, url: str, expect: bytes) -> None:
        out = pair.ask(url, host="loc.test").check()
        assert out.nginx.response.body.startswith(expect)

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/hdr/x", 200),
            ("/hdr/inherit/x", 200),
            ("/hdr/missing/x", 404),
            ("/other", 200),
        ],
        ids=["location-level", "inherited-by-nested", "always-on-404", "server-level"],
    )
    def test_add_header(self, pair: Pair, url: str, status: int) -> None:
        out = pair.ask(url, host="loc.test").check()
        assert out.status == status

    def test_add_header_http_level(self, pair: Pair) -> None:
        out = pair.ask("/", host="exact.test").check()
        assert out.header("X-Http") == "http-level"

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/old/a?a=1", 200),
            ("/srv-old/b?a=2", 200),
            ("/r302/x?y=1", 302),
            ("/r301/x?y=1", 301),
            ("/loop/a", 500),
            ("/brk/a.txt", 200),
            ("/brk/none", 404),
        ],
        ids=[
            "last",
            "server-level-last",
            "redirect",
            "permanent-with-args",
            "cycle-limit-500",
            "break-static",
            "break-static-404",
        ],
    )
    def test_rewrite(self, pair: Pair, url: str, status: int) -> None:
        out = pair.ask(url, host="rw.test").check()
        assert out.status == status

    @pytest.mark.parametrize(
        ("url", "method", "status"),
        [
            ("/ret/text", "GET", 201),
            ("/ret/url?q=1", "GET", 307),
            ("/ret/abs", "GET", 301),
            ("/ret/code", "GET", 410),
            ("/ret/444", "GET", None),
            ("/ret/text", "HEAD", 201),
        ],
        ids=["text", "relative-url", "absolute-url", "code-page", "444-close", "head"],
    )
    def test_return(self, pair: Pair, url: str, method: str, status: int | None) -> None:
        out = pair.ask(url, method=method, host="rw.test").check()
        assert out.status == status

    @pytest.mark.parametrize(
        ("url", "method", "headers"),
        [
            ("/if/", "GET", ()),
            ("/if/?user=bob", "GET", (("User-Agent", "curl/8.1"),)),
            ("/if/?user=al", "POST", ()),
        ],
        ids=["no-match", "regex-captures", "method-return"],
    )
    def test_if_set(
        self, pair: Pair, url: str, method: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        pair.ask(url, method=method, host="rw.test", headers=headers).check()

    def test_break_stops_rewrite_module(self, pair: Pair) -> None:
        out = pair.ask("/setbrk", host="rw.test").check()
        assert out.status == 404

    @pytest.mark.parametrize("tier", [None, "gold", "plat7", "tin"])
    def test_map(self, pair: Pair, tier: str | None) -> None:
        headers = (("X-Tier", tier),) if tier else ()
        pair.ask("/map", host="rw.test", headers=headers).check()

    @pytest.mark.parametrize("which", ["1h", "epoch", "max"])
    def test_expires(self, pair: Pair, which: str) -> None:
        out = pair.ask(f"/exp/{which}", host="rw.test").check()
        assert out.header("Cache-Control") is not None

    @pytest.mark.parametrize(
        ("url", "host"),
        [
            ("/abs-off/", "redir.test"),
            ("/port-off/", "redir.test"),
            ("/name-in/", "alias.redir.test"),
            ("/files", "redir.test"),
            ("/drop-args?a=1", "redir.test"),
            ("/add-args?a=1", "redir.test"),
            ("/cap/abc/42", "redir.test"),
            ("/srv-return/q", "redir.test"),
            ("/abs-off/", "Redir.TEST.:8001"),
        ],
        ids=[
            "absolute_redirect-off",
            "port_in_redirect-off",
            "server_name_in_redirect",
            "directory-301",
            "rewrite-drops-args",
            "rewrite-adds-args",
            "named-captures",
            "server-level-if-return",
            "host-case-dot-port",
        ],
    )
    def test_redirect_details(self, pair: Pair, url: str, host: str) -> None:
        out = pair.ask(url, host=host).check()
        assert out.status in (200, 301, 302)

    def test_variables(self, pair: Pair) -> None:
        out = pair.ask(
            "/vars/p%61th?a=1&b=two&a=3",
            host="rw.test",
            headers=(("X-Foo", "bar"), ("User-Agent", "ua/1"), ("Cookie", "x=1; sid=s3cr3t; y=2")),
        ).check()
        assert b"sid" not in out.nginx.response.body and b"s3cr3t" in out.nginx.response.body

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/missing", 404),
            ("/deny", 200),
            ("/tea", 202),
            ("/gone", 302),
            ("/plain500", 404),
            ("/anything", 404),
        ],
        ids=[
            "uri-target",
            "equals-code",
            "named-location",
            "url-target",
            "missing-target",
            "server_tokens-off",
        ],
    )
    def test_error_page(self, pair: Pair, url: str, status: int) -> None:
        out = pair.ask(url, host="err.test").check()
        assert out.status == status


# =============================================================================================
# 2. proxy_pass URI mapping, upstream request headers, response headers, proxy_redirect,
#    keep-alive upstreams, buffering, bodies, WebSocket, pipelining, request hygiene

PROXY = r"""
events {}
http {
    access_log off;
    resolver 127.0.0.1:1 valid=1s;
    upstream app { server 10.0.1.1:8001; keepalive 4; }
    upstream plain { server 10.0.1.2:8002; }
    map $arg_to $dyn { default 10.0.1.3:8003; b 10.0.1.4:8004; }
    proxy_set_header X-Http-Level yes;

    server {
        listen 8101;
        server_name proxy.test;
        location /nouri/ { proxy_pass http://plain; }
        location /withuri/ { proxy_pass http://plain/base/; }
        location /slash/ { proxy_pass http://plain/; }
        location /noslash { proxy_pass http://plain/x; }
        location ~ ^/rx/(?<rest>.*)$ { proxy_pass http://plain; }
        location ~ ^/rxvar/(.*)$ { proxy_pass http://plain/v/$1$is_args$args; }
        location /var/ { proxy_pass http://$dyn; }
        location /varuri/ { proxy_pass http://$dyn/fixed$request_uri; }
        location /upvar/ { set $u plain; proxy_pass http://$u; }
        location /rwbreak/ {
            rewrite ^/rwbreak/(.*)$ /changed/$1 break;
            proxy_pass http://plain/ignored/;
        }
        location /rwlast/ { rewrite ^/rwlast/(.*)$ /withuri/$1 last; }
        location /lit/ { proxy_pass http://10.0.1.5:8005; }
        location /dir/ { proxy_pass http://plain; }

        location /hdr/set/ {
            proxy_set_header X-Custom "c-$arg_c";
            proxy_set_header User-Agent "";
            proxy_set_header Accept-Encoding "";
            proxy_set_header Host $host:$server_port;
            proxy_pass http://plain;
        }
        location /hdr/inherit/ { proxy_pass http://plain; }
        location /hdr/fwd/ {
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Proxy-Host $proxy_host;
            proxy_set_header X-Scheme $scheme;
            proxy_pass http://plain;
        }
        location /hdr/fwdlit/ {
            proxy_set_header X-Proxy-Host $proxy_host;
            proxy_pass http://10.0.1.5:8005;
        }
        location /hdr/hide/ {
            proxy_hide_header X-Secret;
            proxy_pass_header Server;
            proxy_pass_header X-Accel-Expires;
            proxy_pass http://plain;
        }
        location /hdr/default-hide/ { proxy_pass http://plain; }
        location /ka/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://app;
        }
        location /noka/ { proxy_pass http://app; }
        location /redir/ { proxy_pass http://plain/base/; }
        location /redirlit/ { proxy_pass http://10.0.1.5:8005/lbase/; }
        location /redir2/ {
            proxy_redirect http://plain/ /mapped/;
            proxy_redirect ~^http://other\.test/(.*)$ /o/$1;
            proxy_pass http://plain;
        }
        location /rediroff/ { proxy_redirect off; proxy_pass http://plain/base/; }
        location /nobuf/ {
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://plain;
        }
        location /nobuf10/ {
            proxy_request_buffering off;
            proxy_pass http://plain;
        }
        location /ws/ {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_pass http://10.0.1.9:8009;
        }
        location /ifhdr/ {
            add_header X-Loc loc;
            if ($arg_x) { add_header X-If if; }
            return 200 "ifhdr\n";
        }
        location /epproxy/ { error_page 404 = /nouri/from-error-page; return 404; }
        location /bufsize/ { proxy_buffer_size 8k; proxy_pass http://plain; }
        location /iff/ {
            if ($arg_alt) { proxy_pass http://10.0.1.5:8005; }
            proxy_pass http://plain;
        }
        location /echo { return 200 "direct $request_method $uri $args\n"; }
        location /accel/ { proxy_pass http://plain; }
        location /accel-ignored/ {
            proxy_ignore_headers X-Accel-Redirect X-Accel-Expires;
            proxy_pass http://plain;
        }
        location /tf/ { root html; try_files $uri $uri/ @fallback; }
        location @fallback { proxy_pass http://plain; }
        location /tf2/ { root html; try_files $uri /echo; }
        location /tf3/ { root html; try_files $uri /echo?from=tf3&$args; }
        location /epargs { error_page 404 /echo; return 404; }
        location /epargs2 { error_page 404 /echo?ep=1; return 404; }
        location @named { return 200 "named $request_method $uri $args\n"; }
    }
}
"""

PLAIN = "10.0.1.2:8002"
LIT = "10.0.1.5:8005"


class TestProxy:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        for pair in start(tmp_path_factory, "proxy", PROXY):
            lit = pair.echo(LIT)
            pair.behave(
                PLAIN,
                Behaviour(
                    prefix="/hdr/hide/",
                    headers=(
                        ("X-Secret", "s"),
                        ("Server", "backend/1.0"),
                        ("X-Pad", "p"),
                        ("X-Accel-Expires", "10"),
                        ("X-Keep", "k"),
                    ),
                ),
                Behaviour(
                    prefix="/hdr/default-hide/",
                    headers=(
                        ("X-Secret", "s"),
                        ("Server", "backend/1.0"),
                        ("X-Pad", "p"),
                        ("X-Accel-Expires", "10"),
                        ("X-Accel-Buffering", "no"),
                        ("X-Accel-Charset", "utf-8"),
                        ("X-Accel-Limit-Rate", "1000"),
                        ("Date", "Thu, 01 Jan 2015 00:00:00 GMT"),
                        ("X-Keep", "k"),
                    ),
                ),
                Behaviour(prefix="/nouri/bighdr", headers=(("X-Big", "b" * 5000),)),
                Behaviour(prefix="/nouri/okhdr", headers=(("X-Big", "b" * 3000),)),
                Behaviour(prefix="/bufsize/bighdr", headers=(("X-Big", "b" * 5000),)),
                Behaviour(
                    prefix="/accel/named",
                    headers=(
                        ("X-Accel-Redirect", "@named"),
                        ("Set-Cookie", "a=1"),
                        ("Cache-Control", "no-store"),
                        ("X-Other", "dropped"),
                    ),
                ),
                Behaviour(
                    prefix="/accel/uri",
                    headers=(
                        ("X-Accel-Redirect", "/echo?from=accel"),
                        ("Content-Type", "text/x-accel"),
                        ("Expires", "0"),
                        ("Content-Disposition", "inline"),
                        ("X-Other", "dropped"),
                    ),
                ),
                Behaviour(
                    prefix="/accel-ignored/",
                    headers=(("X-Accel-Redirect", "/echo"), ("X-Other", "kept")),
                ),
                Behaviour(
                    prefix="/accel/proxy",
                    headers=(("X-Accel-Redirect", "/nouri/target"), ("Set-Cookie", "b=2")),
                ),
                Behaviour(
                    prefix="/base/r/",
                    status=302,
                    body=b"moved",
                    headers=(
                        ("Location", "http://plain/base/r/next"),
                        ("Refresh", "5; url=http://plain/base/z"),
                    ),
                ),
                Behaviour(
                    prefix="/redir2/",
                    status=301,
                    body=b"moved",
                    headers=(("Location", "http://plain/redir2/a"),),
                ),
                Behaviour(
                    prefix="/redir2/other",
                    status=302,
                    body=b"moved",
                    headers=(("Location", "http://other.test/deep/x"),),
                ),
                Behaviour(
                    prefix="/redir2/keep",
                    status=302,
                    body=b"moved",
                    headers=(("Location", "http://third.test/k"),),
                ),
            )
            lit.set_behaviours(
                [
                    Behaviour(
                        prefix="/lbase/r",
                        status=302,
                        body=b"m",
                        headers=(("Location", f"http://{lit.address}/lbase/r/next"),),
                    )
                ]
            )
            yield pair

    @pytest.mark.parametrize(
        "url",
        [
            "/nouri/a%20b/../c?x=1&y",
            "/withuri/a/b?q=1",
            "/withuri/",
            "/slash/deep/path?z",
            "/noslash/abc",
            "/noslashy",
            "/rx/a/b?c=d",
            "/rxvar/one/two?k=v",
            "/var/p?to=a",
            "/var/p?to=b",
            "/varuri/p?x",
            "/upvar/p?x",
            "/rwbreak/a?b=1",
            "/rwlast/a?b=1",
            "/lit/p",
            "/dir",
            "/nouri/%7Euser/%41",
            "/withuri/a%2Fb%20c+d%3Fe%25f",
            "/withuri/caf%C3%A9/%7e/x%23y",
            "/slash//double//slash",
            "/nouri//double//slash",
            "/rxvar/caf%C3%A9?k=%20",
        ],
        ids=[
            "no-uri-part",
            "uri-part",
            "uri-part-exact-prefix",
            "uri-slash",
            "uri-no-slash",
            "uri-no-slash-partial",
            "regex-location",
            "regex-location-variables",
            "variables-map-ip",
            "variables-map-ip-other",
            "variables-with-uri",
            "variable-names-upstream",
            "after-rewrite-break",
            "after-rewrite-last",
            "literal-ip",
            "slashless-301",
            "encoded-unchanged",
            "uri-part-reescaped",
            "uri-part-utf8-and-hash",
            "uri-part-merged-slashes",
            "no-uri-part-slashes-kept",
            "regex-capture-decoded",
        ],
    )
    def test_uri_mapping(self, pair: Pair, url: str) -> None:
        out = pair.ask(url, host="proxy.test").check()
        assert out.status in (200, 301, 400)

    @pytest.mark.parametrize(
        ("url", "headers"),
        [
            (
                "/hdr/set/?c=7",
                (("User-Agent", "ua"), ("Accept-Encoding", "gzip"), ("X-Other", "o")),
            ),
            ("/hdr/inherit/", (("X-Other", "o"),)),
            ("/hdr/fwd/", (("X-Forwarded-For", "1.2.3.4"), ("X-Real-IP", "9.9.9.9"))),
            ("/hdr/fwd/", ()),
            ("/hdr/fwdlit/", ()),
            (
                "/nouri/",
                (
                    ("Connection", "keep-alive, X-Drop"),
                    ("X-Drop", "d"),
                    ("TE", "trailers"),
                    ("Keep-Alive", "300"),
                    ("Expect", "100-continue"),
                    ("Proxy-Connection", "x"),
                    ("Upgrade", "h2c"),
                ),
            ),
            (
                "/nouri/",
                (
                    ("X_Under", "u"),
                    ("X-Dup", "1"),
                    ("x-dup", "2"),
                    ("Cookie", "a=1"),
                    ("Cookie", "b=2"),
                    ("X-Empty", ""),
                ),
            ),
        ],
        ids=[
            "set-header-empty-and-host",
            "set-header-inherited",
            "forwarded-for-appended",
            "forwarded-for-fresh",
            "proxy-host-literal",
            "hop-by-hop",
            "underscore-duplicates-empty",
        ],
    )
    def test_upstream_headers(
        self, pair: Pair, url: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        out = pair.ask(url, host="proxy.test", headers=headers).check()
        assert len(out.nginx.upstream) == 1

    @pytest.mark.parametrize(
        "url", ["/hdr/hide/", "/hdr/default-hide/"], ids=["hide-and-pass", "hidden-by-default"]
    )
    def test_response_headers(self, pair: Pair, url: str) -> None:
        out = pair.ask(url, host="proxy.test").check()
        assert out.header("X-Keep") == "k"

    @pytest.mark.parametrize(
        "url",
        ["/accel/named?q=1", "/accel/uri?q=1", "/accel/proxy?q=1"],
        ids=["named", "uri", "to-proxy"],
    )
    def test_x_accel_redirect(self, pair: Pair, url: str) -> None:
        """An upstream's X-Accel-Redirect is an internal redirect (GET, some headers kept)."""
        out = pair.ask(url, method="POST", host="proxy.test", body=b"abc").check()
        assert out.header("X-Other") is None

    def test_x_accel_redirect_ignored(self, pair: Pair) -> None:
        out = pair.ask("/accel-ignored/x", host="proxy.test").check()
        assert out.header("X-Other") == "kept"

    @pytest.mark.parametrize(
        "url",
        [
            "/redir/r/a",
            "/redirlit/r",
            "/redir2/a",
            "/redir2/other",
            "/redir2/keep",
            "/rediroff/r/a",
        ],
        ids=["default", "default-literal", "explicit", "explicit-regex", "no-match", "off"],
    )
    def test_proxy_redirect(self, pair: Pair, url: str) -> None:
        out = pair.ask(url, host="proxy.test").check()
        assert out.status in (301, 302)

    def test_keepalive_upstream(self, pair: Pair) -> None:
        """proxy_http_version 1.1 + keepalive: the second request reuses the connection."""
        echo = pair.echo("10.0.1.1:8001")
        reused = {}
        for side in (pair.nginx_side, pair.tern_side):
            for url, key in (("/ka/", "ka"), ("/noka/", "noka")):
                before = len(echo.records)
                first = pair.ask_side(side, url + "1", host="proxy.test")
                second = pair.ask_side(side, url + "2", host="proxy.test")
                assert first.response.status == second.response.status == 200
                recs = echo.records[before:]
                assert len(recs) == 2
                reused[side.name, key] = (
                    recs[0].peer == recs[1].peer,
                    recs[0].version,
                    recs[0].header("Connection"),
                )
        assert reused[("nginx", "ka")] == reused[("tern", "ka")]
        assert reused[("nginx", "noka")] == reused[("tern", "noka")]
        assert reused[("nginx", "ka")][0] and not reused[("nginx", "noka")][0]
        pair.ask("/ka/3", host="proxy.test").check()

    @pytest.mark.parametrize(
        ("url", "te"),
        [
            ("/nouri/body", False),
            ("/nouri/chunked", True),
            ("/nobuf/chunked", True),
            ("/nobuf/cl", False),
            ("/nobuf10/chunked", True),
        ],
        ids=[
            "content-length",
            "chunked-reframed",
            "unbuffered-chunked-1.1",
            "unbuffered-length",
            "unbuffered-chunked-1.0",
        ],
    )
    def test_request_body(self, pair: Pair, url: str, te: bool) -> None:
        body = b"hello=world&x=" + b"y" * 3000
        if te:
            wire = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
                1000,
                body[:1000],
                len(body) - 1000,
                body[1000:],
            )
            headers = (("Transfer-Encoding", "chunked"),)
        else:
            wire, headers = body, ()
        out = pair.ask(url, method="POST", host="proxy.test", headers=headers, body=wire).check()
        assert out.nginx.upstream[0].body == body

    @pytest.mark.parametrize(
        "url",
        ["/tf/a?x=1", "/tf2/a?x=1", "/tf3/a?x=1", "/epargs?x=1", "/epargs2?x=1"],
        ids=[
            "try_files-named-proxy",
            "try_files-uri-args",
            "try_files-uri-with-args",
            "error_page-args",
            "error_page-own-args",
        ],
    )
    def test_internal_redirect_chain(self, pair: Pair, url: str) -> None:
        out = pair.ask(url, host="proxy.test").check()
        assert out.status in (200, 404)

    @pytest.mark.parametrize(
        "url",
        ["/nobuf/stream", "/nobuf10/stream", "/nouri/stream"],
        ids=["unbuffered-1.1", "unbuffered-1.0", "buffered"],
    )
    def test_streamed_chunked_body(self, pair: Pair, url: str) -> None:
        """A chunked body that arrives in pieces: streamed chunked upstream only when
        proxy_request_buffering is off and the upstream speaks HTTP/1.1."""
        head = (
            b"POST %s HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" % url.encode()
        )
        out = pair.raw(
            [head + b"5\r\nhello\r\n", 0.3, b"6\r\n world\r\n", 0.2, b"0\r\n\r\n"],
            methods=["POST"],
            expect=1,
        ).check()
        assert out.nginx.upstream[0].body == b"hello world"

    @pytest.mark.parametrize(
        "url", ["/nobuf/stream", "/nouri/stream"], ids=["unbuffered", "buffered"]
    )
    def test_streamed_length_body(self, pair: Pair, url: str) -> None:
        head = (
            b"POST %s HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 11\r\n"
            b"Connection: close\r\n\r\n" % url.encode()
        )
        out = pair.raw([head + b"hello", 0.3, b" world"], methods=["POST"], expect=1).check()
        assert out.nginx.upstream[0].body == b"hello world"

    @pytest.mark.parametrize(
        ("url", "method", "version"),
        [
            ("/nouri/h", "HEAD", "1.1"),
            ("/nouri/v10", "GET", "1.0"),
            ("/iff/x?alt=1", "GET", "1.1"),
            ("/iff/x", "GET", "1.1"),
            ("/nouri/del", "DELETE", "1.1"),
            ("/nouri/opt", "OPTIONS", "1.1"),
        ],
        ids=[
            "head",
            "http-1.0-client",
            "proxy_pass-in-if",
            "proxy_pass-if-false",
            "delete",
            "options",
        ],
    )
    def test_methods_and_versions(self, pair: Pair, url: str, method: str, version: str) -> None:
        out = pair.ask(url, method=method, host="proxy.test", version=version).check()
        assert out.status == 200

    @pytest.mark.parametrize(
        ("url", "method", "expect"),
        [
            ("/nouri/cont", "POST", "100-continue"),
            ("/echo", "POST", "100-continue"),
            ("/nothing-here", "POST", "100-continue"),
            ("/nouri/cont", "GET", "100-continue"),
            ("/nouri/cont", "POST", "something-else"),
        ],
        ids=["proxied", "return-discards", "error-discards", "no-body", "other-expectation"],
    )
    def test_expect_continue(self, pair: Pair, url: str, method: str, expect: str) -> None:
        length = 5 if method == "POST" else 0
        head = (
            b"%s %s HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: %d\r\n"
            b"Expect: %s\r\nConnection: close\r\n\r\n"
            % (method.encode(), url.encode(), length, expect.encode())
        )
        script = [head, 0.3, b"hello"] if length else [head]
        out = pair.raw(script, methods=[method] * 2, expect=2, linger=0.5).check()
        assert out.statuses[-1] in (200, 404, 417)

    def test_absolute_form_target(self, pair: Pair) -> None:
        script = (
            b"GET http://proxy.test/nouri/abs?q=1 HTTP/1.1\r\nHost: other.test\r\n"
            b"Connection: close\r\n\r\n"
        )
        out = pair.raw(script, methods=["GET"], expect=1).check()
        assert out.statuses == [200]

    def test_keepalive_client_proxied(self, pair: Pair) -> None:
        """Two proxied requests and a return on one client connection."""
        one = b"GET /nouri/k%d HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
        out = pair.raw(
            [
                one % 1,
                0.2,
                one % 2,
                0.2,
                b"GET /echo HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n",
            ],
            methods=["GET"] * 3,
            expect=3,
            linger=0.5,
        ).check()
        assert out.statuses == [200, 200, 200] and out.nginx.closed

        def connection(cap: RawCapture) -> list[bytes]:
            return [v for r in cap.responses for k, v in r.headers if k.lower() == b"connection"]

        # hop-by-hop headers are not diffed: check that the last answer announces the close
        assert connection(out.nginx) == [b"keep-alive", b"keep-alive", b"close"]
        assert connection(out.tern) == connection(out.nginx)

    @pytest.mark.parametrize(
        "url",
        ["/nouri/bighdr", "/nouri/okhdr", "/bufsize/bighdr"],
        ids=["over-proxy_buffer_size", "fits", "proxy_buffer_size-raised"],
    )
    def test_upstream_header_size(self, pair: Pair, url: str) -> None:
        out = pair.ask(url, host="proxy.test").check()
        assert out.status in (200, 502)

    @pytest.mark.parametrize(
        "status", [201, 204, 304, 404, 418, 299, 599], ids=lambda s: f"upstream-{s}"
    )
    def test_upstream_status_passed(self, pair: Pair, status: int) -> None:
        """Upstream statuses pass through with the upstream's reason phrase."""
        pair.behave(
            PLAIN,
            Behaviour(
                prefix=f"/nouri/st{status}",
                status=status,
                body=b"st\n",
                headers=(("X-St", str(status)),),
            ),
        )
        script = (
            b"GET /nouri/st%d HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n" % status
        )
        out = pair.raw(script, methods=["GET"], expect=1).check()
        assert out.statuses == [status]

    @pytest.mark.parametrize(
        "url",
        ["/ifhdr/?x=1", "/ifhdr/", "/epproxy/x"],
        ids=["add_header-in-if", "add_header-if-false", "error_page-equals-to-proxy"],
    )
    def test_if_headers_and_error_page_proxy(self, pair: Pair, url: str) -> None:
        pair.ask(url, host="proxy.test").check()

    def test_unbuffered_response(self, pair: Pair) -> None:
        pair.behave(
            "10.0.1.2:8002",
            Behaviour(
                prefix="/nobuf/big", body=b"z" * 300000, headers=(("Content-Type", "text/plain"),)
            ),
        )
        pair.ask("/nobuf/big", host="proxy.test").check()

    def test_pipelining(self, pair: Pair) -> None:
        one = b"GET /nouri/p%d HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
        script = (
            one % 1
            + b"GET /echo HTTP/1.1\r\nHost: proxy.test\r\n\r\n"
            + b"HEAD /nouri/p3 HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n"
        )
        out = pair.raw(script, methods=["GET", "GET", "HEAD"], expect=3).check()
        assert out.statuses == [200, 200, 200] and len(out.nginx.upstream) == 2

    @pytest.mark.parametrize(
        "extra",
        [
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"Content-Length: 5x\r\n\r\nhello",
            b"Transfer-Encoding: gzip\r\n\r\n",
            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ],
        ids=["cl-and-te", "bad-cl", "unknown-te", "two-cl"],
    )
    def test_hygiene(self, pair: Pair, extra: bytes) -> None:
        script = b"POST /nouri/h HTTP/1.1\r\nHost: proxy.test\r\n" + extra
        out = pair.raw(script, methods=["POST"], expect=1, linger=0.3).check()
        assert out.statuses[0] in (400, 501) and not out.nginx.upstream

    def test_dot_segments_above_root(self, pair: Pair) -> None:
        """A URI climbing above the root is a 400 from the default server, never proxied."""
        out = pair.raw(b"GET /../x HTTP/1.1\r\nHost: proxy.test\r\n\r\n", methods=["GET"],
                       expect=1, linger=0.3).check()
        assert out.statuses == [400] and not out.nginx.upstream

    def test_bad_chunked_body(self, pair: Pair) -> None:
        """A broken chunked body is answered 400 (and the connection closed), never proxied."""
        script = (b"POST /nouri/h HTTP/1.1\r\nHost: proxy.test\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n")
        out = pair.raw(script, methods=["POST"], expect=1, linger=0.3).check()
        assert out.statuses == [400] and not out.nginx.upstream

    def test_missing_host(self, pair: Pair) -> None:
        out = pair.raw(
            b"GET /nouri/h HTTP/1.1\r\nX-A: b\r\n\r\n", methods=["GET"], expect=1, linger=0.3
        ).check()
        assert out.statuses == [400] and not out.nginx.upstream

    def test_websocket(self, pair: Pair) -> None:
        taken = pair.take_over("10.0.1.9:8009", "tunnel")
        head = (
            b"GET /ws/chat?room=1 HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        results = {}
        for side in (pair.nginx_side, pair.tern_side):
            before = len(taken.requests)
            cap = pair._raw_one(
                side,
                [head, 0.2, b"ping-1", 0.2, b"ping-2", 0.2],
                port=None,
                methods=["GET"],
                expect=1,
                linger=0.5,
                deadline=3,
                rcvbuf=None,
                read_after=0.0,
            )
            assert len(taken.requests) == before + 1
            results[side.name] = (cap, side.normalise_request(taken.requests[before]))
        (p, p_up), (c, c_up) = results["nginx"], results["tern"]
        from servepair import compare, render

        diffs = compare(p.responses[0], c.responses[0], [p_up], [c_up])
        assert not diffs, render(diffs)
        assert p.responses[0].status == 101
        assert (p.leftover, p.closed) == (c.leftover, c.closed)
        assert p.leftover == b"echo:ping-1echo:ping-2"


# =============================================================================================
# 3. failover: refused, reset, 50x answers, timeouts, proxy_next_upstream (+ tries, timeout),
#    POST vs PUT, max_fails, proxy_intercept_errors + error_page

REFUSE = "10.0.2.1:8001"
OK1 = "10.0.2.2:8002"
BAD = "10.0.2.5:8005"
BAD2 = "10.0.2.6:8006"
BAD3 = "10.0.2.12:8012"
HOLE = "10.0.2.9:8009"
SINK = "10.0.2.11:8011"

FAILOVER = r"""
events {}
http {
    access_log off;
    client_max_body_size 20m;
    add_header X-Up $upstream_addr always;
    add_header X-Up-Status $upstream_status always;
    proxy_connect_timeout 1s;
    proxy_read_timeout 1s;
    proxy_send_timeout 1s;

    upstream u_refused  { server 10.0.2.1:8001; server 10.0.2.2:8002; }
    upstream u_refused2 { server 10.0.2.1:8001; server 10.0.2.2:8002; }
    upstream u_maxfails { server 10.0.2.1:8001 max_fails=2 fail_timeout=30s;
                          server 10.0.2.2:8002; }
    upstream u_dead     { server 10.0.2.1:8001; }
    upstream u_dead2    { server 10.0.2.1:8001; server 10.0.2.3:8003; }
    upstream u_nonidem  { server 10.0.2.5:8005 max_fails=0; server 10.0.2.2:8002 backup; }
    upstream u_404      { server 10.0.2.5:8005; server 10.0.2.2:8002 backup; }
    upstream u_bad      { server 10.0.2.5:8005 max_fails=0; server 10.0.2.2:8002 backup; }
    upstream u_bad5     { server 10.0.2.5:8005 max_fails=0; server 10.0.2.2:8002 backup; }
    upstream u_off      { server 10.0.2.5:8005 max_fails=0; server 10.0.2.2:8002 backup; }
    upstream u_all      { server 10.0.2.5:8005 max_fails=0; server 10.0.2.6:8006 max_fails=0;
                          server 10.0.2.12:8012 max_fails=0; }
    upstream u_all2     { server 10.0.2.5:8005 max_fails=0; server 10.0.2.6:8006 max_fails=0;
                          server 10.0.2.12:8012 max_fails=0; }
    upstream u_slow     { server 10.0.2.5:8005 max_fails=0; server 10.0.2.6:8006 max_fails=0; }
    upstream u_hole     { server 10.0.2.9:8009 max_fails=0; server 10.0.2.2:8002 backup; }
    upstream u_sink     { server 10.0.2.11:8011; }

    server {
        listen 8201;
        location /refused/ { proxy_pass http://u_refused; }
        location /refused2/ { proxy_pass http://u_refused2; }
        location /mf/ { proxy_pass http://u_maxfails; }
        location /dead/ { proxy_pass http://u_dead; }
        location /dead2/ { proxy_pass http://u_dead2; }
        location /deadep/ { error_page 502 504 /maint.html; proxy_pass http://u_dead; }
        location /deadep2/ { error_page 502 =503 @down; proxy_pass http://u_dead; }
        location @down { return 200 "down for $uri\n"; }
        location /slowep/ { error_page 504 = /maint.html; proxy_pass http://u_slow; }
        location /nonidem/ {
            proxy_next_upstream error timeout non_idempotent;
            proxy_pass http://u_nonidem;
        }
        location /n404/ { proxy_next_upstream error http_404; proxy_pass http://u_404; }
        location /bad/ { proxy_pass http://u_bad; }
        location /n5/ {
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_pass http://u_bad5;
        }
        location /off/ { proxy_next_upstream off; proxy_pass http://u_off; }
        location /tries/ {
            proxy_next_upstream http_502 http_503;
            proxy_next_upstream_tries 2;
            proxy_pass http://u_all;
        }
        location /notries/ {
            proxy_next_upstream http_502 http_503;
            proxy_pass http://u_all2;
        }
        location /ntimeout/ {
            proxy_next_upstream_timeout 1s;
            proxy_pass http://u_slow;
        }
        location /intercept/ {
            proxy_intercept_errors on;
            error_page 502 503 /maint.html;
            error_page 404 =200 /nf;
            proxy_pass http://u_bad;
        }
        location /nointercept/ {
            error_page 502 503 /maint.html;
            proxy_pass http://u_bad;
        }
        location = /maint.html { return 200 "maintenance for $uri\n"; }
        location = /nf { return 200 "not found page\n"; }
        location /hole/ { proxy_pass http://u_hole; }
        location /hole1/ { proxy_pass http://10.0.2.9:8009; }
        location /sink/ { proxy_pass http://u_sink; }
    }
}
"""

BAD_BEHAVIOURS = (
    Behaviour(prefix="/", status=200),
    Behaviour(prefix="/bad/reset", action=Action.RESET),
    Behaviour(prefix="/off/reset", action=Action.RESET),
    Behaviour(prefix="/nonidem/reset", action=Action.RESET),
    Behaviour(prefix="/n404/", status=404, body=b"upstream 404\n"),
    Behaviour(prefix="/bad/half", body=b"x" * 5000, action=Action.CLOSE_MID_RESPONSE),
    Behaviour(prefix="/bad/slow", delay=1.5),
    Behaviour(prefix="/ntimeout/", delay=1.5),
    Behaviour(prefix="/slowep/", delay=1.5),
    Behaviour(prefix="/bad/s502", status=502, body=b"upstream 502\n"),
    Behaviour(prefix="/n5/s502", status=502, body=b"upstream 502\n"),
    Behaviour(prefix="/n5/s503", status=503, body=b"upstream 503\n"),
    Behaviour(prefix="/n5/s504", status=504, body=b"upstream 504\n"),
    Behaviour(prefix="/n5/s500", status=500, body=b"upstream 500\n"),
    Behaviour(prefix="/tries/", status=502, body=b"tries 502\n"),
    Behaviour(prefix="/notries/", status=503, body=b"notries 503\n"),
    Behaviour(prefix="/intercept/s503", status=503, body=b"upstream 503\n"),
    Behaviour(prefix="/intercept/s404", status=404, body=b"upstream 404\n"),
    Behaviour(prefix="/intercept/s500", status=500, body=b"upstream 500\n"),
    Behaviour(prefix="/nointercept/s503", status=503, body=b"upstream 503\n"),
)


class TestFailover:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        for pair in start(tmp_path_factory, "failover", FAILOVER):
            for address in (BAD, BAD2, BAD3):
                pair.behave(address, *BAD_BEHAVIOURS)
            pair.take_over(REFUSE, "refuse")
            pair.take_over("10.0.2.3:8003", "refuse")
            pair.take_over(HOLE, "blackhole")
            pair.take_over(SINK, "sink")
            yield pair

    def test_refused_then_next(self, pair: Pair) -> None:
        out = pair.ask("/refused/a").check()
        assert out.status == 200 and out.header("X-Up") == f"{REFUSE}, {OK1}"

    def test_refused_marks_down(self, pair: Pair) -> None:
        """max_fails=1 (default): after one refusal the peer is skipped."""
        seen = [pair.ask(f"/refused2/seq{i}").check().header("X-Up") for i in range(4)]
        assert seen == [f"{REFUSE}, {OK1}", OK1, OK1, OK1]

    def test_max_fails_sequence(self, pair: Pair) -> None:
        """max_fails=2: the refusing peer is tried until it failed twice."""
        seen = []
        for i in range(6):
            out = pair.ask(f"/mf/{i}").check()
            seen.append(out.header("X-Up"))
        assert seen.count(f"{REFUSE}, {OK1}") == 2

    def test_single_peer_refused(self, pair: Pair) -> None:
        for i in range(2):
            out = pair.ask(f"/dead/{i}").check()
            assert out.status == 502

    def test_no_live_upstreams(self, pair: Pair) -> None:
        """Every peer refused: 502, then "no live upstreams" while they are marked down."""
        first = pair.ask("/dead2/a").check()
        second = pair.ask("/dead2/b").check()
        assert first.status == second.status == 502
        assert second.header("X-Up") == "u_dead2"

    @pytest.mark.parametrize(
        "url", ["/deadep/a", "/deadep2/a"], ids=["error_page-uri", "error_page-named-equals-code"]
    )
    def test_error_page_for_proxy_error(self, pair: Pair, url: str) -> None:
        """error_page applies to the 502 nginx makes itself when the peer is refused."""
        out = pair.ask(url).check()
        assert out.status in (502, 503)

    def test_error_page_for_proxy_timeout(self, pair: Pair) -> None:
        """error_page 504 = URI: the timed-out request ends as the error page's answer."""
        out = pair.ask("/slowep/a", parallel=True).check()
        assert out.status == 200 and "504" in (out.header("X-Up-Status") or "")

    def test_http_404_next(self, pair: Pair) -> None:
        """http_404 passes the request on; a 404 is not a failure (the peer stays up)."""
        for i in range(2):
            out = pair.ask(f"/n404/{i}").check()
            assert out.status == 200 and out.header("X-Up") == f"{BAD}, {OK1}"

    @pytest.mark.parametrize(
        ("url", "method", "status"),
        [
            ("/nonidem/reset", "POST", 200),
            ("/bad/reset", "GET", 200),
            ("/bad/reset", "POST", 502),
            ("/bad/reset", "PUT", 200),
            ("/bad/reset", "PATCH", 502),
            ("/off/reset", "GET", 502),
        ],
        ids=[
            "post-retried-non_idempotent",
            "get-retried",
            "post-not-retried",
            "put-retried",
            "patch-not-retried",
            "next-upstream-off",
        ],
    )
    def test_reset(self, pair: Pair, url: str, method: str, status: int) -> None:
        out = pair.ask(url, method=method, body=b"payload").check()
        assert out.status == status

    def test_close_mid_response(self, pair: Pair) -> None:
        out = pair.ask("/bad/half").check()
        assert out.status == 200 and out.nginx.response.error

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/bad/s502", 502),
            ("/n5/s502", 200),
            ("/n5/s503", 200),
            ("/n5/s504", 200),
            ("/n5/s500", 500),
        ],
        ids=[
            "502-passed-without-http_502",
            "http_502-next",
            "http_503-next",
            "http_504-next",
            "500-not-listed",
        ],
    )
    def test_status_answers(self, pair: Pair, url: str, status: int) -> None:
        out = pair.ask(url).check()
        assert out.status == status

    def test_post_on_http_503(self, pair: Pair) -> None:
        out = pair.ask("/n5/s503", method="POST", body=b"p").check()
        assert out.status == 503

    @pytest.mark.parametrize(
        "url",
        ["/tries/a", "/notries/a", "/notries/b"],
        ids=["tries-2", "unlimited", "unlimited-again"],
    )
    def test_tries(self, pair: Pair, url: str) -> None:
        out = pair.ask(url).check()
        assert out.status in (502, 503)

    def test_read_timeout_then_next(self, pair: Pair) -> None:
        out = pair.ask("/bad/slow", parallel=True).check()
        assert out.status == 200 and "504" in (out.header("X-Up-Status") or "")

    def test_next_upstream_timeout(self, pair: Pair) -> None:
        out = pair.ask("/ntimeout/a", parallel=True).check()
        assert out.status == 504

    def test_connect_timeout_then_next(self, pair: Pair) -> None:
        out = pair.ask("/hole/a", parallel=True).check()
        assert out.status == 200

    def test_connect_timeout_single(self, pair: Pair) -> None:
        out = pair.ask("/hole1/a", parallel=True).check()
        assert out.status == 504

    def test_send_timeout(self, pair: Pair) -> None:
        out = pair.ask(
            "/sink/a", method="POST", body=b"s" * (12 * 1024 * 1024), parallel=True
        ).check()
        assert out.status == 504

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/intercept/s503", 503),
            ("/intercept/s404", 200),
            ("/intercept/s500", 500),
            ("/nointercept/s503", 503),
            ("/intercept/ok", 200),
        ],
        ids=[
            "error_page-uri",
            "error_page-equals-code",
            "no-error_page-for-500",
            "not-intercepted",
            "success-untouched",
        ],
    )
    def test_intercept_errors(self, pair: Pair, url: str, status: int) -> None:
        out = pair.ask(url).check()
        assert out.status == status


# =============================================================================================
# 4. balancing: weighted round robin, least_conn, ip_hash (client address from realip), hash,
#    hash consistent, backup, down

P1, P2, P3, P4 = "10.0.3.1:8001", "10.0.3.2:8002", "10.0.3.3:8003", "10.0.3.4:8004"

BALANCING = r"""
events {}
http {
    access_log off;
    add_header X-Up $upstream_addr always;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    upstream u_rr     { server 10.0.3.1:8001 weight=3; server 10.0.3.2:8002;
                        server 10.0.3.3:8003 weight=2; }
    upstream u_lc     { least_conn; server 10.0.3.1:8001; server 10.0.3.2:8002;
                        server 10.0.3.3:8003; }
    upstream u_iph    { ip_hash; server 10.0.3.1:8001; server 10.0.3.2:8002;
                        server 10.0.3.3:8003; server 10.0.3.4:8004; }
    upstream u_iphd   { ip_hash; server 10.0.3.1:8001; server 10.0.3.2:8002 down;
                        server 10.0.3.3:8003; server 10.0.3.4:8004; }
    upstream u_hash   { hash $arg_k; server 10.0.3.1:8001; server 10.0.3.2:8002;
                        server 10.0.3.3:8003 weight=2; }
    upstream u_chash  { hash $arg_k consistent; server 10.0.3.1:8001; server 10.0.3.2:8002;
                        server 10.0.3.3:8003; server 10.0.3.4:8004; }
    upstream u_backup { server 10.0.3.1:8001 down; server 10.0.3.2:8002 backup;
                        server 10.0.3.3:8003 backup; }
    upstream u_down   { server 10.0.3.1:8001 down; server 10.0.3.2:8002; server 10.0.3.3:8003; }

    server {
        listen 8301;
        location /rr/ { proxy_pass http://u_rr; }
        location /lc/ { proxy_pass http://u_lc; }
        location /iph/ { proxy_pass http://u_iph; }
        location /iphd/ { proxy_pass http://u_iphd; }
        location /hash/ { proxy_pass http://u_hash; }
        location /chash/ { proxy_pass http://u_chash; }
        location /backup/ { proxy_pass http://u_backup; }
        location /down/ { proxy_pass http://u_down; }
        location /ip { return 200 "remote=$remote_addr realip=$realip_remote_addr\n"; }
        location /iprec { real_ip_recursive on; return 200 "remote=$remote_addr\n"; }
    }
    server {
        listen 8302;
        set_real_ip_from 127.0.0.0/8;
        set_real_ip_from 10.0.0.0/8;
        real_ip_recursive on;
        real_ip_header X-Real-IP;
        location / { return 200 "remote=$remote_addr port=$remote_port\n"; }
        location /xri/ {
            real_ip_header X-Client;
            return 200 "remote=$remote_addr\n";
        }
    }
}
"""

CLIENTS = ["10.1.2.3", "192.168.7.9", "172.16.0.1", "8.8.8.8", "203.0.113.77", "10.1.2.200"]


class TestBalancing:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        for pair in start(tmp_path_factory, "balancing", BALANCING):
            pair.behave(P1, Behaviour(prefix="/lc/slow", delay=1.5))
            yield pair

    def sequence(
        self, pair: Pair, urls: list[str], headers: list[tuple[tuple[str, str], ...]] | None = None
    ) -> list[str | None]:
        seen = []
        for i, url in enumerate(urls):
            out = pair.ask(url, headers=headers[i] if headers else ()).check()
            seen.append(out.header("X-Up"))
        return seen

    def test_weighted_round_robin(self, pair: Pair) -> None:
        seen = self.sequence(pair, [f"/rr/{i}" for i in range(12)])
        assert seen.count(P1) == 6 and seen.count(P3) == 4

    def test_least_conn(self, pair: Pair) -> None:
        """A peer busy with a slow request is avoided while it is busy."""
        import threading

        ups = {}
        for side in (pair.nginx_side, pair.tern_side):
            slow = threading.Thread(target=pair.ask_side, args=(side, "/lc/slow"), daemon=True)
            # three quick ones (P1, P2, P3 in turn), then the slow one lands on P1
            got = []
            for i in range(3):
                cap = pair.ask_side(side, f"/lc/q{i}")
                got.append(
                    dict((k.decode().lower(), v.decode()) for k, v in cap.response.headers).get(
                        "x-up"
                    )
                )
            slow.start()
            time.sleep(0.5)
            for i in range(4):
                cap = pair.ask_side(side, f"/lc/during{i}")
                got.append(
                    dict((k.decode().lower(), v.decode()) for k, v in cap.response.headers).get(
                        "x-up"
                    )
                )
            slow.join(5)
            ups[side.name] = [side._text(u) if u else u for u in got]
        assert ups["nginx"] == ups["tern"]
        assert P1 not in ups["nginx"][3:]

    @pytest.mark.parametrize("path", ["/iph/", "/iphd/"], ids=["ip_hash", "ip_hash-down"])
    def test_ip_hash(self, pair: Pair, path: str) -> None:
        seen = self.sequence(
            pair,
            [f"{path}{i}" for i in range(len(CLIENTS))],
            [(("X-Forwarded-For", c),) for c in CLIENTS],
        )
        assert len(set(seen)) > 1

    @pytest.mark.parametrize("path", ["/hash/", "/chash/"], ids=["hash", "hash-consistent"])
    def test_hash(self, pair: Pair, path: str) -> None:
        seen = self.sequence(pair, [f"{path}x?k=key{i}" for i in range(10)])
        assert len(set(seen)) > 1

    def test_backup_when_primary_down(self, pair: Pair) -> None:
        seen = self.sequence(pair, [f"/backup/{i}" for i in range(4)])
        assert P1 not in seen

    def test_down(self, pair: Pair) -> None:
        seen = self.sequence(pair, [f"/down/{i}" for i in range(4)])
        assert P1 not in seen and len(set(seen)) == 2

    @pytest.mark.parametrize(
        "xff",
        ["1.2.3.4", "5.6.7.8, 9.9.9.9", "bogus", None],
        ids=["one", "list-takes-last", "invalid", "absent"],
    )
    def test_realip(self, pair: Pair, xff: str | None) -> None:
        headers = (("X-Forwarded-For", xff),) if xff else ()
        pair.ask("/ip", headers=headers).check()

    @pytest.mark.parametrize(
        ("url", "port", "headers"),
        [
            ("/iprec", 8301, (("X-Forwarded-For", "1.2.3.4, 127.0.0.1"),)),
            ("/", 8302, (("X-Real-IP", "1.2.3.4"),)),
            ("/", 8302, (("X-Real-IP", "9.8.7.6, 10.0.0.5"),)),
            ("/", 8302, (("X-Real-IP", "[2001:db8:0:0::1]:443"),)),
            ("/", 8302, (("X-Real-IP", "192.0.2.9:8080"),)),
            ("/xri/", 8302, (("X-Client", "4.3.2.1"), ("X-Client", "5.5.5.5"))),
        ],
        ids=[
            "location-recursive-too-late",
            "x-real-ip",
            "recursive-list",
            "ipv6-port",
            "ipv4-port",
            "custom-header-first",
        ],
    )
    def test_realip_settings(
        self, pair: Pair, url: str, port: int, headers: tuple[tuple[str, str], ...]
    ) -> None:
        pair.ask(url, port=port, headers=headers).check()


# =============================================================================================
# 5. client limits and connection handling: client_max_body_size, keepalive_requests,
#    keepalive_timeout, client_header_timeout, client_body_timeout, send_timeout,
#    large_client_header_buffers

LIMITS = r"""
events {}
http {
    log_format lim '$remote_addr "$request" $status $request_method uri=$uri '
                   'args=$args up=$upstream_addr ust=$upstream_status';
    access_log logs/access.log lim;
    client_max_body_size 100;
    keepalive_timeout 1s;
    keepalive_requests 3;
    client_body_timeout 1s;
    send_timeout 1s;
    upstream u { server 10.0.4.1:8001; }
    server {
        listen 8401;
        location / { proxy_pass http://u; }
        location /big/ { client_max_body_size 1k; proxy_pass http://u; }
        location /unlimited/ { client_max_body_size 0; proxy_pass http://u; }
        location /ep413/ { error_page 413 /too-big; proxy_pass http://u; }
        location = /too-big { return 200 "too big: $request_method $uri\n"; }
        location /text { return 200 "text\n"; }
    }
}
"""

GET_TEXT = b"GET /text HTTP/1.1\r\nHost: limits.test\r\n\r\n"


class TestLimits:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        for pair in start(tmp_path_factory, "limits", LIMITS):
            pair.behave(
                "10.0.4.1:8001",
                Behaviour(
                    prefix="/huge", body=b"h" * (8 << 20), headers=(("Content-Type", "text/plain"),)
                ),
            )
            yield pair

    @pytest.mark.parametrize(
        ("url", "size", "status"),
        [
            ("/small", 200, 413),
            ("/small", 100, 200),
            ("/big/x", 500, 200),
            ("/big/x", 1025, 413),
            ("/unlimited/x", 5000, 200),
        ],
        ids=["over-http-level", "at-limit", "location-raises", "over-location", "zero-unlimited"],
    )
    def test_client_max_body_size(self, pair: Pair, url: str, size: int, status: int) -> None:
        out = pair.ask(url, method="POST", body=b"b" * size).check()
        assert out.status == status

    def test_client_max_body_size_chunked(self, pair: Pair) -> None:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (300, b"c" * 300)
        out = pair.ask(
            "/small", method="POST", body=body, headers=(("Transfer-Encoding", "chunked"),)
        ).check()
        assert out.status == 413

    @pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
    def test_413_error_page(self, pair: Pair, chunked: bool) -> None:
        body = b"c" * 300
        if chunked:
            out = pair.ask(
                "/ep413/x",
                method="POST",
                body=b"%x\r\n%s\r\n0\r\n\r\n" % (300, body),
                headers=(("Transfer-Encoding", "chunked"),),
            ).check()
        else:
            out = pair.ask("/ep413/x", method="POST", body=body).check()
        assert out.status == 413

    def test_keepalive_requests(self, pair: Pair) -> None:
        """keepalive_requests 3: four pipelined requests, three answers, then the close."""
        out = pair.raw(
            GET_TEXT * 2 + b"GET /p HTTP/1.1\r\nHost: limits.test\r\n\r\n" + GET_TEXT,
            methods=["GET"] * 4,
            expect=4,
            linger=0.5,
        ).check()
        assert out.statuses == [200, 200, 200] and out.nginx.closed
        last = [[v for k, v in r.headers if k.lower() == b"connection"] for r in out.tern.responses]
        assert last[-1] == [b"close"]  # the third answer says so, as nginx's does
        assert last == [[v for k, v in r.headers if k.lower() == b"connection"]
                        for r in out.nginx.responses]

    def test_keepalive_timeout(self, pair: Pair) -> None:
        out = pair.raw(
            GET_TEXT, methods=["GET"], expect=1, linger=3.0, parallel=True, close_window=(0.7, 2.5)
        ).check()
        assert out.statuses == [200]

    def test_client_body_timeout(self, pair: Pair) -> None:
        script = b"POST /p HTTP/1.1\r\nHost: limits.test\r\n{tag}\r\nContent-Length: 10\r\n\r\nabc"
        out = pair.raw(
            script, methods=["POST"], deadline=3.0, parallel=True, close_window=(0.7, 2.5)
        ).check()
        assert not out.nginx.upstream

    def test_send_timeout(self, pair: Pair) -> None:
        """The client stops reading: after send_timeout the response is cut off."""
        script = b"GET /huge HTTP/1.1\r\nHost: limits.test\r\n{tag}\r\n\r\n"
        out = pair.raw(
            script,
            methods=["GET"],
            expect=1,
            rcvbuf=4096,
            read_after=2.5,
            deadline=3.0,
            parallel=True,
            compare_close=True,
        ).check()
        for cap in (out.nginx, out.tern):
            assert cap.closed and not cap.responses and cap.leftover.startswith(b"HTTP/1.1 200")

    def test_zz_access_log(self, pair: Pair) -> None:
        """Every request above, refused, timed out or cut short, logged alike (runs last)."""
        pair.ask("/text?last=1").check()
        deadline = time.monotonic() + 3
        while True:
            lines = {s.name: pair.log_lines(s) for s in (pair.nginx_side, pair.tern_side)}
            if len(lines["tern"]) >= len(lines["nginx"]) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(lines["nginx"]) >= 1
        clip = re.compile(r"a{40,}")
        assert lines["tern"] == lines["nginx"], "\n".join(
            f"{i}: {clip.sub('a...', a or '-')}\n{i}: {clip.sub('a...', b or '-')}"
            for i, (a, b) in enumerate(itertools.zip_longest(lines["nginx"], lines["tern"]))
        )


HEADER_LIMITS = r"""
events {}
http {
    log_format lim '$remote_addr "$request" $status $request_method uri=$uri args=$args '
                   'ru=$request_uri host=$host x=$http_x_a';
    log_format other 'other: "$request" $status $request_method uri=$uri args=$args '
                     'ru=$request_uri host=$host x=$http_x_a';
    access_log logs/access.log lim;
    client_header_timeout 1s;
    large_client_header_buffers 2 1k;
    server {
        listen 8402;
        location /text { return 200 "text\n"; }
    }
    server {
        listen 8402;
        server_name other.test;
        access_log logs/other.log other;
        location /text { return 200 "other\n"; }
    }
}
"""


class TestHeaderLimits:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        yield from start(tmp_path_factory, "header-limits", HEADER_LIMITS)

    @pytest.mark.parametrize(
        "script",
        [
            b"GET /text HTTP/1.1\r\nHost: limits.test\r\n",
            b"GET /text?a=1 HTTP/1.1\r\nHost: other.test\r\nX-A: 1\r\nX-B: par",
            b"GET /te",
            b"\r\n",
            b"",
        ],
        ids=["headers", "other-server", "request-line", "blank-line", "nothing"],
    )
    def test_client_header_timeout(self, pair: Pair, script: bytes) -> None:
        """No answer, a close; nginx logs 408 with what it had (nothing when nothing came)."""
        out = pair.raw(script, deadline=3.0, parallel=True, close_window=(0.7, 2.5)).check()
        assert out.statuses == []

    def test_header_timeout_after_keepalive(self, pair: Pair) -> None:
        """On a keep-alive connection the next request's head is timed by client_header_timeout
        from its first byte, not by keepalive_timeout (75 s here)."""
        out = pair.raw(
            [b"GET /text HTTP/1.1\r\nHost: limits.test\r\n\r\n", 0.3,
             b"GET /text HTTP/1.1\r\nHost: limits.test\r\n"],
            methods=["GET"],
            expect=1,
            linger=3.0,
            deadline=3.5,
            parallel=True,
            close_window=(0.7, 2.8),
        ).check()
        assert out.statuses == [200]

    @pytest.mark.parametrize(
        ("script", "status"),
        [
            (b"GET /text HTTP/1.1\r\nHost: other.test\r\nContent-Length: x\r\n\r\n", 400),
            (b"POST /t?a=b HTTP/1.1\r\nHost: other.test\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"GET /text HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
            (b"GET /text HTTP/1.1\r\nHost: other.test\r\nHost: limits.test\r\n\r\n", 400),
            (b"GET /text HTTP/1.1 junk\r\nHost: other.test\r\n\r\n", 400),
            (b"GET /te\x01xt HTTP/1.1\r\nHost: other.test\r\n\r\n", 400),
            (b"GET /text HTTP/2.0\r\nHost: other.test\r\n\r\n", 505),
            (b"GET http://other.test/p?x=1 HTTP/1.1\r\nX-Long: " + b"b" * 1100 + b"\r\n\r\n", 400),
        ],
        ids=[
            "bad-content-length",
            "unknown-transfer-encoding",
            "no-host",
            "duplicate-host",
            "bad-request-line",
            "control-in-uri",
            "http-2.0",
            "absolute-form-header-too-long",
        ],
    )
    def test_refused_heads(self, pair: Pair, script: bytes, status: int) -> None:
        """Heads the HTTP/1 adapter refuses; logged by the server Host had picked so far."""
        out = pair.raw(script, methods=["GET"], expect=1, linger=0.3).check()
        assert out.statuses == [status]

    @pytest.mark.parametrize(
        "script",
        [
            b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: limits.test\r\n\r\n",
            b"GET /text HTTP/1.1\r\nHost: limits.test\r\nX-Long: " + b"b" * 1100 + b"\r\n\r\n",
            b"GET /text HTTP/1.1\r\nHost: limits.test\r\n"
            + b"X-Pad: "
            + b"c" * 900
            + b"\r\n"
            + b"X-Pad2: "
            + b"d" * 900
            + b"\r\n"
            + b"X-Pad3: "
            + b"e" * 900
            + b"\r\n"
            + b"X-Pad4: "
            + b"g" * 900
            + b"\r\n\r\n",
            b"GET /text HTTP/1.1\r\nHost: limits.test\r\n"
            + b"X-Pad: "
            + b"c" * 900
            + b"\r\n"
            + b"X-Pad2: "
            + b"d" * 900
            + b"\r\n"
            + b"X-Pad3: "
            + b"e" * 900
            + b"\r\n\r\n",
            b"GET /text HTTP/1.1\r\nHost: limits.test\r\nX-Fits: " + b"f" * 900 + b"\r\n\r\n",
        ],
        ids=[
            "request-line-414",
            "header-line-400",
            "too-many-buffers-400",
            "fills-both-buffers",
            "fits",
        ],
    )
    def test_large_client_header_buffers(self, pair: Pair, script: bytes) -> None:
        out = pair.raw(script, methods=["GET"], expect=1, linger=0.3).check()
        assert out.statuses[0] in (200, 400, 414)

    def test_zz_access_log(self, pair: Pair) -> None:
        """Refused and timed-out requests are logged alike, by the server nginx had picked
        (its own log format: the runner sends every access_log to one file; runs last)."""
        pair.raw(b"\r\nGET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: limits.test\r\n\r\n",
                 methods=["GET"], expect=1, linger=0.3).check()
        deadline = time.monotonic() + 3
        while True:
            lines = {s.name: pair.log_lines(s) for s in (pair.nginx_side, pair.tern_side)}
            if len(lines["tern"]) >= len(lines["nginx"]) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(lines["nginx"]) >= 1
        clip = re.compile(r"a{40,}")
        assert lines["tern"] == lines["nginx"], "\n".join(
            f"{i}: {clip.sub('a...', a or '-')}\n{i}: {clip.sub('a...', b or '-')}"
            for i, (a, b) in enumerate(itertools.zip_longest(lines["nginx"], lines["tern"]))
        )


# =============================================================================================
# 6. access: allow/deny (with realip at location level), auth_basic, satisfy, limit_req

ACCESS = r"""
events {}
http {
    access_log off;
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=two:1m rate=1r/m;
    upstream u { server 10.0.5.1:8001; }
    server {
        listen 8501;
        location /deny/ { deny 127.0.0.1; allow all; proxy_pass http://u; }
        location /allow/ { allow 127.0.0.0/8; deny all; proxy_pass http://u; }
        location /order/ { allow 127.0.0.1; deny 127.0.0.0/8; proxy_pass http://u; }
        location /rdeny/ {
            set_real_ip_from 127.0.0.0/8;
            real_ip_header X-Real-IP;
            deny 10.0.0.0/8;
            allow all;
            proxy_set_header X-Seen $remote_addr;
            proxy_pass http://u;
        }
        location /auth/ {
            auth_basic "Restricted Area";
            auth_basic_user_file htpasswd;
            proxy_set_header X-User $remote_user;
            proxy_pass http://u;
            location /auth/open/ { auth_basic off; proxy_pass http://u; }
        }
        location /any/ {
            satisfy any;
            deny all;
            auth_basic "any";
            auth_basic_user_file htpasswd;
            proxy_pass http://u;
        }
        location /lim/ { limit_req zone=one burst=2 nodelay; proxy_pass http://u; }
        location /lim429/ {
            limit_req zone=two nodelay;
            limit_req_status 429;
            proxy_pass http://u;
        }
    }
}
"""

HTPASSWD = """# users
alice:$apr1$abcdefgh$paCto.rW8wn6thJ8b0QQY.
bob:{SHA}xjbo4jj9evl+LlAPjG8PTAvtr7A=
carol:$1$xyz$GdB5wh1k3M2/GcuwmKJCB/
"""


def basic(user: str, password: str) -> tuple[tuple[str, str], ...]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (("Authorization", f"Basic {token}"),)


class TestAccess:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        yield from start(tmp_path_factory, "access", ACCESS, {"htpasswd": HTPASSWD})

    @pytest.mark.parametrize(
        ("url", "headers", "status"),
        [
            ("/deny/", (), 403),
            ("/allow/", (), 200),
            ("/order/", (), 200),
            ("/rdeny/", (("X-Real-IP", "10.9.9.9"),), 403),
            ("/rdeny/", (("X-Real-IP", "192.0.2.1"),), 200),
        ],
        ids=["deny", "allow", "first-match-wins", "realip-denied", "realip-allowed"],
    )
    def test_allow_deny(
        self, pair: Pair, url: str, headers: tuple[tuple[str, str], ...], status: int
    ) -> None:
        out = pair.ask(url, headers=headers).check()
        assert out.status == status

    @pytest.mark.parametrize(
        ("url", "headers", "status"),
        [
            ("/auth/x", (), 401),
            ("/auth/x", basic("alice", "wrong"), 401),
            ("/auth/x", basic("alice", "secret1"), 200),
            ("/auth/x", basic("bob", "secret2"), 200),
            ("/auth/x", basic("carol", "secret3"), 200),
            ("/auth/x", basic("dave", "x"), 401),
            ("/auth/x", (("Authorization", "Bearer abc"),), 401),
            ("/auth/open/x", (), 200),
            ("/any/x", (), 401),
            ("/any/x", basic("bob", "secret2"), 200),
        ],
        ids=[
            "no-credentials",
            "wrong-password",
            "apr1",
            "sha",
            "md5-crypt",
            "unknown-user",
            "other-scheme",
            "auth_basic-off",
            "satisfy-any-neither",
            "satisfy-any-auth",
        ],
    )
    def test_auth_basic(
        self, pair: Pair, url: str, headers: tuple[tuple[str, str], ...], status: int
    ) -> None:
        out = pair.ask(url, headers=headers).check()
        assert out.status == status

    def test_limit_req_burst_nodelay(self, pair: Pair) -> None:
        statuses = [pair.ask(f"/lim/{i}").check().status for i in range(5)]
        assert statuses == [200, 200, 200, 503, 503]

    def test_limit_req_status(self, pair: Pair) -> None:
        statuses = [pair.ask(f"/lim429/{i}").check().status for i in range(2)]
        assert statuses == [200, 429]


# =============================================================================================
# 7. access_log with a custom log_format: the same lines (times masked)

LOGGING = r"""
events {}
http {
    log_format test '$remote_addr - $remote_user [$time_local] "$request" $status '
                    '$body_bytes_sent "$http_referer" "$http_user_agent" host=$host '
                    'uri=$uri args=$args up=$upstream_addr ust=$upstream_status '
                    'sn=$server_name m=$request_method rt=$request_time x=$http_x_custom '
                    'c=$cookie_k a=$arg_a';
    access_log logs/access.log test;
    upstream u { server 10.0.6.1:8001; }
    server {
        listen 8601;
        server_name log.test;
        location /p/ { proxy_pass http://u; }
        location /t { return 200 "text\n"; }
        location /nc { return 204; }
        location /drop { return 444; }
        location /off { access_log off; return 200 "unlogged\n"; }
        location /r { rewrite ^/r(.*)$ /t$1 last; }
    }
}
"""


class TestAccessLog:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        yield from start(tmp_path_factory, "logging", LOGGING)

    def test_access_log_lines(self, pair: Pair) -> None:
        requests = [
            dict(url="/t?a=1", headers=(("User-Agent", "ua/1"), ("Referer", "http://r/"))),
            dict(url="/p/x?a=2&b", headers=(("X-Custom", "c1"), ("Cookie", "k=v; z=1"))),
            dict(url="/nc", method="HEAD"),
            dict(url="/drop"),
            dict(url="/off"),
            dict(url="/r/x?a=3", host="other.test"),
            dict(url="/p/post", method="POST", body=b"body"),
        ]
        for req in requests:
            pair.ask(**req).check()  # type: ignore[arg-type]
        deadline = time.monotonic() + 3
        mask = re.compile(r"\[[^\]]+\]|rt=\S+")
        while True:
            lines = {
                s.name: [mask.sub("*", ln) for ln in pair.log_lines(s)]
                for s in (pair.nginx_side, pair.tern_side)
            }
            if (
                len(lines["nginx"]) >= 6 and len(lines["tern"]) >= 6
            ) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(lines["nginx"]) == 6
        assert lines["tern"] == lines["nginx"], "\n".join(
            f"nginx: {a}\ntern:  {b}"
            for a, b in zip(lines["nginx"], lines["tern"], strict=False)
            if a != b
        )
