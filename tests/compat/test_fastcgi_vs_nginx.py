"""``tern serve``'s FastCGI proxying (fastcgi_pass) answers exactly like Debian's nginx 1.22.1.

nginx and ``tern serve`` run on port-mapped copies of one config (:mod:`servepair`); the FastCGI
address is served by one recording FastCGI app (:mod:`tests.support.fcgi_echo`) shared by both.
Each case asserts that the client got identical answers (status, reason, headers as
:mod:`shadow.diff` normalises them, body) and that the app received identical requests: the same
params in the same order (ports masked), the same stdin, the same BEGIN_REQUEST flags.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Outcome, Pair  # noqa: E402

from tests.support.fcgi_echo import Answer, FcgiEcho, FcgiRequest  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "nginx" / "php-app"


def take_over(pair: Pair, address: str, answers: dict[str, Answer]) -> FcgiEcho:
    """Put a FastCGI app on the port of the echo server standing in for ``address``."""
    echo = pair.echo(address)
    port = echo.port
    echo.stop()
    app = FcgiEcho(port=port, answers=answers).start()
    pair.owned.append(app.stop)
    return app


def side_requests(pair: Pair, app: FcgiEcho, mark: int) -> tuple[list[FcgiRequest],
                                                                   list[FcgiRequest]]:
    """The app's requests since ``mark``, split by the side that sent them (SERVER_PORT, else
    order: nginx is asked first)."""
    got = app.since(mark)
    nport = str(pair.side_port(pair.nginx_side))
    tport = str(pair.side_port(pair.tern_side))
    if all(r.param("SERVER_PORT") in (nport, tport) for r in got):
        return ([r for r in got if r.param("SERVER_PORT") == nport],
                [r for r in got if r.param("SERVER_PORT") == tport])
    half = len(got) // 2
    return got[:half], got[half:]


def same_app_requests(pair: Pair, app: FcgiEcho, mark: int, *, expect: int = 1
                      ) -> list[FcgiRequest]:
    n, t = side_requests(pair, app, mark)
    assert len(n) == expect, f"nginx sent {len(n)} FastCGI requests"
    assert [r.comparable() for r in t] == [r.comparable() for r in n], (
        "params differ:\nnginx: " + repr([r.comparable() for r in n])
        + "\ntern:  " + repr([r.comparable() for r in t]))
    assert [r.stdin for r in t] == [r.stdin for r in n]
    assert [r.keep_conn for r in t] == [r.keep_conn for r in n]
    return n


# =============================================================================================
# 1. the php-app fixture as written

class TestPhpAppFixture:
    @pytest.fixture(scope="class")
    def env(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, FcgiEcho]]:
        tmp = tmp_path_factory.mktemp("php-app")
        files: dict[str, str | bytes] = {}
        for path in FIXTURE.rglob("*"):
            rel = path.relative_to(FIXTURE)
            if path.is_file() and rel.parts[0] != "logs" and rel.name != "nginx.conf":
                files[str(rel)] = path.read_bytes()
        (tmp / "logs").mkdir(parents=True, exist_ok=True)
        pair = Pair(tmp, (FIXTURE / "nginx.conf").read_text(), files)
        try:
            app = take_over(pair, "127.0.0.1:9009", {
                "/legacy/status.php": Answer(
                    stdout=b"Status: 404 Not Found\r\nContent-Type: text/html\r\n"
                           b"X-Powered-By: PHP/5.6\r\n\r\n<p>gone</p>"),
                "/legacy/go.php": Answer(stdout=b"Location: /legacy/index.php\r\n\r\n"),
            })
            yield pair, app
        finally:
            pair.close()
            shutil.rmtree(tmp, ignore_errors=True)

    @pytest.mark.parametrize("url", [
        "/legacy/index.php", "/legacy/a/b.php?x=1&y=2", "/legacy/status.php",
        "/legacy/go.php", "/legacy/x.php?a=%20b", "/legacy/%61.php",
    ])
    def test_legacy_php(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        pair, app = env
        mark = app.mark()
        pair.ask(url, host="blog.example.com",
                 headers=(("X-Dup", "1"), ("X-Dup", "2"), ("Cookie", "a=b"))).check()
        same_app_requests(pair, app, mark)

    def test_legacy_post(self, env: tuple[Pair, FcgiEcho]) -> None:
        pair, app = env
        mark = app.mark()
        pair.ask("/legacy/form.php", method="POST", host="blog.example.com",
                 headers=(("Content-Type", "application/x-www-form-urlencoded"),),
                 body=b"a=1&b=" + b"x" * 70000).check()
        (req,) = same_app_requests(pair, app, mark)
        assert req.param("CONTENT_LENGTH") == "70006"

    def test_legacy_not_php_is_static(self, env: tuple[Pair, FcgiEcho]) -> None:
        pair, app = env
        mark = app.mark()
        pair.ask("/legacy/readme.txt", host="blog.example.com").check()
        assert app.since(mark) == []


# =============================================================================================
# 2. the module's directives

FCGI = "10.0.3.1:9000"
DOWN = "10.0.3.2:9000"
SLOW = "10.0.3.3:9000"
BUSY = "10.0.3.4:9000"

CONF = r"""
events {}
http {
    access_log off;
    log_format up '$status $upstream_status $upstream_addr $body_bytes_sent "$request"';
    upstream kept {
        server 10.0.3.1:9000;
        keepalive 2;
    }
    upstream retry {
        server 10.0.3.4:9000;
        server 10.0.3.1:9000;
    }
    upstream retrypost {
        server 10.0.3.4:9000;
        server 10.0.3.1:9000;
    }
    upstream noretry {
        server 10.0.3.4:9000;
        server 10.0.3.1:9000;
    }
    upstream pool {
        server 10.0.3.2:9000;
        server 10.0.3.1:9000;
    }
    server {
        listen 8001;
        listen 8003 http2;
        root html;
        fastcgi_param SERVER_LEVEL s;
        fastcgi_param HTTP_PROXY "";

        location /srvparams/ {
            fastcgi_pass 10.0.3.1:9000;
        }

        location / {
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param PATH_INFO $fastcgi_path_info;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param EMPTY $arg_nope;
            fastcgi_param NONEMPTY $arg_x if_not_empty;
            fastcgi_param HTTP_X_OVER "from config";
            fastcgi_param HTTP_X_SKIP $arg_skip if_not_empty;
            fastcgi_index index.php;
            fastcgi_pass 10.0.3.1:9000;

            location /split/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SCRIPT_NAME $fastcgi_script_name;
                fastcgi_param PATH_INFO $fastcgi_path_info;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_split_path_info ^(.+?\.php)(/.*)$;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /inherit/ {
                fastcgi_pass 10.0.3.1:9000;
            }
            location /noheaders/ {
                fastcgi_pass_request_headers off;
                fastcgi_pass_request_body off;
                fastcgi_keep_conn on;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /hide/ {
                fastcgi_hide_header X-Secret;
                fastcgi_pass_header X-Accel-Expires;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /intercept/ {
                fastcgi_intercept_errors on;
                error_page 404 = /caught;
                error_page 500 /caught500;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /down/ {
                fastcgi_pass 10.0.3.2:9000;
            }
            location /pool/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_pass pool;
            }
            location /slow/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_read_timeout 1s;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /unix/ {
                set $app "unix:UNIXPATH";
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_param SCRIPT_NAME $fastcgi_script_name;
                fastcgi_pass $app;
            }
            location /logged/ {
                access_log logs/access.log up;
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_pass pool;
            }
            location /debian/ {
                include /etc/nginx/fastcgi.conf;
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /noaccel/ {
                fastcgi_ignore_headers X-Accel-Redirect;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /keep/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_keep_conn on;
                fastcgi_pass kept;
            }
            location /nokeep/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_pass kept;
            }
            location /retry/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_param REQUEST_METHOD $request_method;
                fastcgi_next_upstream error timeout http_503;
                fastcgi_pass retry;
            }
            location /retrypost/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_param REQUEST_METHOD $request_method;
                fastcgi_next_upstream error timeout http_503;
                fastcgi_pass retrypost;
            }
            location /noretry/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_pass noretry;
            }
            location /iffy/ {
                fastcgi_param REQUEST_URI $request_uri;
                fastcgi_param SERVER_PORT $server_port;
                fastcgi_param WHERE location;
                if ($arg_to = app) {
                    fastcgi_pass 10.0.3.1:9000;
                }
            }
            location /unbuf/ {
                fastcgi_request_buffering off;
                fastcgi_pass 10.0.3.1:9000;
            }
            location /catch/ {
                fastcgi_catch_stderr "PHP Fatal";
                fastcgi_catch_stderr "Segfault";
                fastcgi_pass 10.0.3.1:9000;
            }
            location /blackhole/ {
                fastcgi_connect_timeout 1s;
                fastcgi_pass 10.0.3.3:9000;
            }
        }
        location ~ ^/php/.+\.php(/|$) {
            include snippets/fastcgi-php.conf;
            fastcgi_param LATE_PATH_INFO $fastcgi_path_info;
            fastcgi_pass 10.0.3.1:9000;
        }
        location /pxy/ {
            proxy_pass http://10.0.3.9:8000;
            location /pxy/nested/ { }
        }
        location /fcg/ {
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_pass 10.0.3.1:9000;
            location /fcg/nested/ { }
        }
        location = /caught { return 200 "caught $uri\n"; }
        location = /caught500 { return 200 "caught500\n"; }
    }
}
"""

ANSWERS = {
    "/status/404": Answer(stdout=b"Status: 404 Nope\r\nContent-Type: text/plain\r\n\r\nnope"),
    "/status/201": Answer(stdout=b"Status: 201\r\nContent-Type: text/plain\r\n\r\nmade"),
    "/status/bad": Answer(stdout=b"Status: abc\r\n\r\nx"),
    "/loc/rel": Answer(stdout=b"Location: /elsewhere?a=1\r\n\r\n"),
    "/loc/abs": Answer(stdout=b"Location: http://example.com/x\r\n\r\n"),
    "/loc/301": Answer(stdout=b"Status: 301 Moved\r\nLocation: /x\r\n\r\n"),
    "/hdr/server": Answer(stdout=b"Server: app/1\r\nDate: Thu, 01 Jan 2015 00:00:00 GMT\r\n"
                                 b"Content-Type: text/plain\r\n\r\nok"),
    "/hdr/lf": Answer(stdout=b"X-B: 2\nContent-Type: a/b\n\nbody-after-lf", pieces=3),
    "/hdr/length": Answer(stdout=b"Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nfive!"),
    "/hdr/stream": Answer(stdout=b"Content-Type: text/plain\r\n\r\n" + b"0123456789" * 3000,
                          pieces=5),
    "/hdr/stderr": Answer(stdout=b"Content-Type: text/plain\r\n\r\nwith stderr",
                          stderr=b"PHP Notice: something\n"),
    "/hdr/accel": Answer(stdout=b"X-Accel-Redirect: /caught\r\nContent-Type: a/b\r\n\r\n"),
    "/hide/": Answer(stdout=b"X-Secret: s\r\nX-Accel-Expires: 10\r\nX-Accel-Buffering: no\r\n"
                            b"X-Keep: k\r\nContent-Type: text/plain\r\n\r\nhidden"),
    "/intercept/404": Answer(stdout=b"Status: 404 Not Found\r\n\r\napp 404"),
    "/intercept/500": Answer(stdout=b"Status: 500 Oops\r\n\r\napp 500"),
    "/intercept/403": Answer(stdout=b"Status: 403 Forbidden\r\n\r\napp 403"),
    "/noaccel/": Answer(stdout=b"X-Accel-Redirect: /caught\r\nContent-Type: a/b\r\n\r\nstays"),
    "/keep/closing": Answer(close=True),
    "/catch/fatal": Answer(stdout=b"Content-Type: text/plain\r\n\r\npartial",
                           stderr=b"PHP Fatal error: oops"),
    "/catch/late": Answer(stdout=b"Content-Type: text/plain\r\n\r\nhead first",
                          stderr=b"PHP Fatal error: after the head", stderr_last=True),
    "/catch/notice": Answer(stdout=b"Content-Type: text/plain\r\n\r\nfine",
                            stderr=b"PHP Notice: meh"),
    "/hdr/hangup": Answer(hang_up=True),
    "/hdr/big": Answer(stdout=b"X-Big: " + b"b" * 5000 + b"\r\n\r\nbody"),
    "/hdr/nothing": Answer(stdout=b"", stderr=b"PHP Fatal error: x"),
    "/hdr/nobody": Answer(stdout=b"Content-Type: text/plain\r\n"),
    "/hdr/emptytype": Answer(stdout=b"Content-Type: \r\nX-A: 1\r\n\r\nuntyped"),
    "/hdr/notype": Answer(stdout=b"X-A: 1\r\n\r\nno type at all"),
    "/slow/": Answer(delay=2.5),
}


class TestDirectives:
    unix_app: FcgiEcho
    busy_app: FcgiEcho
    @pytest.fixture(scope="class")
    def env(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, FcgiEcho]]:
        tmp = tmp_path_factory.mktemp("fcgi")
        sock = str(tmp / "app.sock")
        # a variable address is not port-mapped: both sides talk to this unix socket
        unix_app = FcgiEcho(unix=sock, answers=ANSWERS).start()
        files: dict[str, str | bytes] = {"html/static.txt": "static\n",
                                         "html/php/x.php": "<?php\n"}
        # Debian's files as shipped (the snippet includes fastcgi.conf relative to the prefix)
        for name in ("fastcgi.conf", "snippets/fastcgi-php.conf"):
            shipped = Path("/etc/nginx") / name
            files[name] = shipped.read_bytes() if shipped.exists() else b""
        pair = Pair(tmp, CONF.replace("UNIXPATH", sock), files)
        pair.owned.append(unix_app.stop)
        type(self).unix_app = unix_app
        try:
            app = take_over(pair, FCGI, ANSWERS)
            busy = take_over(pair, BUSY, {"": Answer(
                stdout=b"Status: 503 Busy\r\nContent-Type: text/plain\r\n\r\nbusy")})
            type(self).busy_app = busy
            pair.take_over(DOWN, "refuse")
            pair.take_over(SLOW, "blackhole")
            yield pair, app
        finally:
            pair.close()

    def ask(self, env: tuple[Pair, FcgiEcho], url: str, *, expect: int = 1, **kw: object
            ) -> tuple[Outcome, list[FcgiRequest]]:
        pair, app = env
        mark = app.mark()
        out = pair.ask(url, **kw).check()  # type: ignore[arg-type]
        return out, same_app_requests(pair, app, mark, expect=expect)

    @pytest.mark.parametrize("url", [
        "/", "/a/b.php?x=1", "/dir/", "/a.php/info", "/?skip=1", "/%7Euser/x.php?a=%20",
        "/split/x.php/path/info", "/split/x.php", "/split/dir/", "/split/a.php/b.php/c",
        "/inherit/x.php", "/noheaders/x", "/hdr/server", "/hdr/lf", "/hdr/length",
        "/hdr/stream", "/hdr/stderr", "/status/404", "/status/201", "/loc/rel", "/loc/abs",
        "/loc/301", "/hide/x", "/srvparams/x.php", "/hdr/emptytype", "/hdr/notype",
        "/?" + "long=" + "a" * 300,
    ])
    def test_get(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        self.ask(env, url, headers=(("X-Dup", "1"), ("X-Dup", "2"), ("X-Over", "client"),
                                    ("X-Skip", "client"), ("Accept-Language", "en"),
                                    ("Proxy", "http://evil.example")))

    def test_stderr_is_logged(self, env: tuple[Pair, FcgiEcho]) -> None:
        """FCGI_STDERR text is logged at level error by both (nginx: error_log; tern: its log
        stream, which tern serve writes to stderr)."""
        pair, _ = env
        self.ask(env, "/hdr/stderr")
        want = 'FastCGI sent in stderr: "PHP Notice: something"'
        deadline = time.monotonic() + 5
        while True:
            logs = {side.name: "".join(p.read_text(errors="replace")
                                       for p in Path(side.run_dir).rglob("*.log"))
                    for side in (pair.nginx_side, pair.tern_side)}
            if all(want in text for text in logs.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert want in logs["nginx"]
        assert want in logs["tern"]

    @pytest.mark.parametrize("url", ["/unix/x.php?a=1", "/unix/dir/", "/unix/status/404"])
    def test_unix_socket_via_variable(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        pair, _ = env
        app = type(self).unix_app
        mark = app.mark()
        pair.ask(url).check()
        same_app_requests(pair, app, mark)

    def test_access_log(self, env: tuple[Pair, FcgiEcho]) -> None:
        """$status, $upstream_status, $upstream_addr (the refusing peer included when it is
        tried) and $body_bytes_sent."""
        pair, app = env
        for url in ("/logged/a", "/logged/status/404", "/logged/b?x=1"):
            self.ask(env, url)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            n = pair.log_lines(pair.nginx_side)
            t = pair.log_lines(pair.tern_side)
            if len(n) >= 3 and len(t) >= 3:
                break
            time.sleep(0.05)
        assert len(n) == 3
        assert t == n

    @pytest.mark.skipif(not Path("/etc/nginx/fastcgi.conf").exists(),
                        reason="Debian's /etc/nginx/fastcgi.conf is not installed")
    @pytest.mark.parametrize("url", ["/debian/index.php?q=1", "/debian/"])
    def test_debian_fastcgi_conf(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        """Debian's fastcgi.conf as shipped (SCRIPT_FILENAME, HTTPS if_not_empty,
        REDIRECT_STATUS...)."""
        _, (req,) = self.ask(env, url, method="POST", body=b"x=1")
        assert req.param("GATEWAY_INTERFACE") == "CGI/1.1"
        assert req.param("SERVER_SOFTWARE") == "nginx/1.22.1"

    @pytest.mark.skipif(not Path("/etc/nginx/snippets/fastcgi-php.conf").exists(),
                        reason="Debian's snippets/fastcgi-php.conf is not installed")
    @pytest.mark.parametrize("url", ["/php/x.php/extra/path?q=1", "/php/x.php",
                                     "/php/missing.php/a"])
    def test_debian_php_snippet(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        """Debian's snippets/fastcgi-php.conf: split_path_info, try_files
        $fastcgi_script_name (which changes $uri, so $fastcgi_path_info is empty after it),
        set $path_info before it."""
        self.ask(env, url, expect=0 if "missing" in url else 1)

    @pytest.mark.parametrize("prefix, kept", [("/keep/", True), ("/nokeep/", False)])
    def test_connection_reuse(self, env: tuple[Pair, FcgiEcho], prefix: str, kept: bool
                              ) -> None:
        """upstream keepalive + fastcgi_keep_conn on: one connection carries the requests;
        without fastcgi_keep_conn each request has its own."""
        pair, app = env
        mark = app.mark()
        for i in range(3):
            self.ask(env, f"{prefix}{i}")
        self.ask(env, f"{prefix}head", method="HEAD")
        n, t = side_requests(pair, app, mark)
        assert len(n) == len(t) == 4
        conns_n = len({r.conn_id for r in n})
        conns_t = len({r.conn_id for r in t})
        assert conns_n == (1 if kept else 4)
        assert conns_t == conns_n

    def test_kept_connection_closed_by_app(self, env: tuple[Pair, FcgiEcho]) -> None:
        """The app closes a kept connection after answering: the next request goes out on a
        new one, the client sees nothing of it."""
        pair, app = env
        mark = app.mark()
        for pause in (0.2, 0.0):
            self.ask(env, "/keep/closing")
            time.sleep(pause)
            self.ask(env, "/keep/after")
        n, t = side_requests(pair, app, mark)
        # closing: A (closed by the app); after: B (kept); closing: B again (closed); after: C
        assert [r.conn_id for r in n].count(n[1].conn_id) == 2
        assert len({r.conn_id for r in n}) == len({r.conn_id for r in t}) == 3

    @pytest.mark.parametrize("prefix, method", [("/retry/", "GET"), ("/retrypost/", "POST"),
                                                ("/noretry/", "GET")])
    def test_next_upstream_status(self, env: tuple[Pair, FcgiEcho], prefix: str,
                                  method: str) -> None:
        """fastcgi_next_upstream http_503: a 503 from the first peer is retried on the next
        (not for POST); without it the 503 goes to the client. Both ask the same peers in the
        same order (each location has its own upstream block: peer health is per block)."""
        pair, app = env
        busy = type(self).busy_app
        statuses, busy_asked = [], 0
        for i in range(3):
            marks = (app.mark(), busy.mark())
            statuses.append(pair.ask(f"{prefix}{i}", method=method).check().status)
            n_ok, t_ok = side_requests(pair, app, marks[0])
            n_busy, t_busy = side_requests(pair, busy, marks[1])
            assert (len(n_ok), len(n_busy)) == (len(t_ok), len(t_busy))
            busy_asked += len(n_busy)
        assert busy_asked > 0
        if prefix == "/retry/":
            assert statuses == [200, 200, 200]
        else:
            assert 503 in statuses

    @pytest.mark.parametrize("url, expect", [("/iffy/a?to=app", 1), ("/iffy/b", 0)])
    def test_fastcgi_pass_in_if(self, env: tuple[Pair, FcgiEcho], url: str, expect: int
                                ) -> None:
        """fastcgi_pass inside if-in-location: passed when the condition holds (with the
        location's params), the location's own content (static, 404 here) otherwise."""
        self.ask(env, url, expect=expect)

    @pytest.mark.parametrize("url, status, to_app", [
        ("/pxy/x", 200, 0), ("/pxy/nested/x", 404, 0), ("/fcg/x", 200, 1),
        ("/fcg/nested/x", 404, 0)])
    def test_nested_location_has_no_handler(self, env: tuple[Pair, FcgiEcho], url: str,
                                            status: int, to_app: int) -> None:
        """A nested location does not inherit its parent's proxy_pass / fastcgi_pass: it
        serves static files (nginx's clcf->handler is per location)."""
        out, _ = self.ask(env, url, expect=to_app)
        assert out.status == status

    def test_http2_client(self, env: tuple[Pair, FcgiEcho]) -> None:
        """An HTTP/2 client (curl, h2c prior knowledge): the same params (cookies joined with
        "; ", the Host from :authority), the same stdin and the same answer."""
        import subprocess

        pair, app = env
        got = {}
        for side in (pair.nginx_side, pair.tern_side):
            port = pair.side_port(side, 8003)
            mark = app.mark()
            proc = subprocess.run(
                ["curl", "-s", "-i", "--http2-prior-knowledge", "--max-time", "10",
                 "-H", "X-Dup: 1", "-H", "X-Dup: 2", "-H", "Cookie: a=1", "-H", "Cookie: b=2",
                 "--data-binary", "hello", f"http://127.0.0.1:{port}/split/x.php/p?q=1"],
                capture_output=True, timeout=20)
            (req,) = app.since(mark)
            params = [(k, v.replace(str(port).encode(), b"PORT")) for k, v in req.comparable()]
            head, _, body = proc.stdout.partition(b"\r\n\r\n")
            got[side.name] = (head.split(b"\r\n")[0], params, req.stdin,
                              body.replace(str(port).encode(), b"PORT"))
        assert got["nginx"][0] == b"HTTP/2 200 "
        assert (b"HTTP_COOKIE", b"a=1; b=2") in got["nginx"][1]
        assert got["tern"] == got["nginx"]

    @pytest.mark.parametrize("url, status", [("/catch/fatal", 502), ("/catch/notice", 200),
                                             ("/catch/late", 200)])
    def test_catch_stderr(self, env: tuple[Pair, FcgiEcho], url: str, status: int) -> None:
        out, _ = self.ask(env, url)
        assert out.status == status

    def test_head(self, env: tuple[Pair, FcgiEcho]) -> None:
        self.ask(env, "/hdr/length", method="HEAD")

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    @pytest.mark.parametrize("url", ["/post/x.php", "/noheaders/post", "/unbuf/post"])
    def test_post(self, env: tuple[Pair, FcgiEcho], url: str, chunked: bool) -> None:
        body = b"hello=world&x=" + b"y" * 40000
        if chunked:
            wire = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (
                1000, body[:1000], len(body) - 1000, body[1000:])
            headers: tuple[tuple[str, str], ...] = (("Transfer-Encoding", "chunked"),)
        else:
            wire, headers = body, ()
        headers += (("Content-Type", "application/x-www-form-urlencoded"),)
        _, (req,) = self.ask(env, url, method="POST", headers=headers, body=wire)
        assert req.stdin == (b"" if url.startswith("/noheaders") else body)
        if url.startswith("/unbuf/"):
            # unbuffered: the length of a chunked body is not known when the params go out
            assert req.param("CONTENT_LENGTH") == ("" if chunked else str(len(body)))

    def test_empty_post(self, env: tuple[Pair, FcgiEcho]) -> None:
        _, (req,) = self.ask(env, "/post/empty", method="POST")
        assert req.param("CONTENT_LENGTH") == "0"

    def test_invalid_status_is_502(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/status/bad")
        assert out.status == 502

    def test_x_accel_redirect(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/hdr/accel")
        assert out.nginx.response.body.startswith(b"caught")

    def test_x_accel_redirect_ignored(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/noaccel/x")
        assert out.nginx.response.body == b"stays"

    @pytest.mark.parametrize("url", ["/intercept/404", "/intercept/500", "/intercept/403"])
    def test_intercept_errors(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        self.ask(env, url)

    def test_app_down_is_502(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/down/x", expect=0)
        assert out.status == 502

    @pytest.mark.parametrize("url", ["/hdr/big", "/hdr/nothing", "/hdr/nobody"])
    def test_bad_answers(self, env: tuple[Pair, FcgiEcho], url: str) -> None:
        """A head over fastcgi_buffer_size, an empty stdout, a head never ended."""
        out, _ = self.ask(env, url)
        assert out.status == 502

    def test_hang_up_is_502(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/hdr/hangup")
        assert out.status == 502

    def test_next_upstream_in_group(self, env: tuple[Pair, FcgiEcho]) -> None:
        # the first peer refuses: both go on to the second, whatever the round-robin start
        for _ in range(2):
            out, _ = self.ask(env, "/pool/x")
            assert out.status == 200

    def test_read_timeout_is_504(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/slow/x")
        assert out.status == 504

    @pytest.mark.parametrize("url, line", [
        ("/status/404", b"HTTP/1.1 404 Nope"),
        ("/status/201", b"HTTP/1.1 201"),
        ("/loc/rel", b"HTTP/1.1 302 Moved Temporarily"),
        ("/loc/301", b"HTTP/1.1 301 Moved"),
        ("/hdr/length", b"HTTP/1.1 200 OK"),
    ])
    def test_status_line(self, env: tuple[Pair, FcgiEcho], url: str, line: bytes) -> None:
        """The reason phrase is the Status header's text as sent (not compared by ask())."""
        pair, _ = env
        assert status_line(pair, "nginx", url) == line
        assert status_line(pair, "tern", url) == line

    def test_connect_timeout_is_504(self, env: tuple[Pair, FcgiEcho]) -> None:
        out, _ = self.ask(env, "/blackhole/x", expect=0)
        assert out.status == 504


def status_line(pair: Pair, side_name: str, url: str) -> bytes:
    import socket

    side = pair.nginx_side if side_name == "nginx" else pair.tern_side
    with socket.create_connection(("127.0.0.1", pair.side_port(side)), timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                  % url.encode())
        data = b""
        while b"\r\n" not in data:
            got = s.recv(4096)
            if not got:
                break
            data += got
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("directive, message", [
    ("fastcgi_split_path_info ^(.+)$;", 'pattern "^(.+)$" must have 2 captures'),
    ("fastcgi_param A b c;", 'invalid parameter "c"'),
    ("fastcgi_pass 127.0.0.1:YOURPORT;", 'invalid port in upstream "127.0.0.1:YOURPORT"'),
])
def test_config_errors_like_nginx(tmp_path: Path, directive: str, message: str) -> None:
    """nginx -t and tern check refuse the same FastCGI mistakes, naming the file and line."""
    import subprocess

    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server {\n    listen 18999;\n    location / {\n"
                    f"      {directive}\n      fastcgi_pass 127.0.0.1:9000;\n    }}\n  }}\n}}\n"
                    .replace("}}", "}"))
    ngx = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    assert ngx.returncode != 0 and message in ngx.stderr and "nginx.conf:6" in ngx.stderr
    tern = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert tern.returncode == 2
    assert f"{conf}:6: error: {message}" in tern.stdout + tern.stderr
    assert "Traceback" not in tern.stdout + tern.stderr
