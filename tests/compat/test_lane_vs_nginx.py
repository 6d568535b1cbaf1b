"""The compiled lane (proxy/lane.py) answers, forwards and logs exactly like nginx 1.22.1.

Tern runs with ``TERN_LANE_TRACE``: its worker writes one line per lane decision (``served``,
or the reason it handed the request over), so every case here also proves which road it took;
a case that expects the lane fails if the lane was not taken, and each eligibility condition
has a case showing the request leaves the lane (with its reason) and is still answered like
nginx.  Every request is first sent once to Tern alone, so the upstream keep-alive pool has a
connection for the lane to take (the lane hands a request over when it has none).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Outcome, Pair  # noqa: E402

from shadow.echo import Action, Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

CONF = r"""
events {}
http {
    log_format lanevars '$remote_addr "$request" $status $body_bytes_sent "$http_referer" '
                        '"$http_user_agent" ua=$upstream_addr us=$upstream_status '
                        'ru=$request_uri u=$uri a=$args ia=$is_args h=$host m=$request_method '
                        's=$scheme p=$server_protocol sn=$server_name ph=$proxy_host '
                        'hx=$http_x_missing ru=$remote_user';
    log_format withlen '$request $status $request_length';
    access_log logs/access.log combined;
    access_log logs/vars.log lanevars;
    limit_req_zone $binary_remote_addr zone=z:1m rate=1000r/s;
    upstream app { server 10.0.4.1:8001; keepalive 8; }
    upstream nk { server 10.0.4.2:8001; }
    upstream two { server 10.0.4.3:8001; server 10.0.4.4:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 8501;
        server_name lane.test;

        location / { proxy_pass http://app; }
        location /uri/ { proxy_pass http://app/base/; }
        location = /exact { proxy_pass http://app/other; }
        location /hdrs/ {
            proxy_set_header Connection "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Host "$host:$server_port";
            proxy_set_header X-Uri "$uri|$args|$is_args|$request_uri|$http_host";
            proxy_set_header X-Const const;
            proxy_set_header X-Empty "";
            proxy_set_header X-Missing $http_x_missing;
            proxy_set_header X-Cookie $http_cookie;
            proxy_hide_header X-Hidden;
            add_header X-Added yes;
            add_header X-Always a always;
            proxy_pass http://app;
        }
        location /rr/ { proxy_pass http://two; }
        location /slow/ { proxy_read_timeout 1s; proxy_pass http://app; }
        location /nextup/ { proxy_next_upstream error timeout http_500; proxy_pass http://app; }

        # one location per condition that keeps a location out of the lane
        location /c-gzip/ { gzip on; gzip_min_length 1; gzip_types *; proxy_pass http://app; }
        location /c-limit/ { limit_req zone=z burst=100 nodelay; proxy_pass http://app; }
        location /c-expires/ { expires 1h; proxy_pass http://app; }
        location /c-addvar/ { add_header X-V $uri; proxy_pass http://app; }
        location /c-setvar/ {
            proxy_set_header Connection "";
            proxy_set_header X-Arg $arg_x;
            proxy_pass http://app;
        }
        location /c-http10/ { proxy_http_version 1.0; proxy_pass http://app; }
        location /c-noconn/ { proxy_set_header X-Foo bar; proxy_pass http://app; }
        location /c-literal/ { proxy_pass http://10.0.4.1:8001; }
        location /c-nokeep/ { proxy_pass http://nk; }
        location /c-intercept/ { proxy_intercept_errors on; proxy_pass http://app; }
        location /c-rewrite/ { rewrite ^/c-rewrite/(.*)$ /r/$1 break; proxy_pass http://app; }
        location /c-logfmt/ { access_log logs/len.log withlen; proxy_pass http://app; }
        location /c-logif/ { access_log logs/if.log combined if=$arg_x; proxy_pass http://app; }
        location /c-method/ { proxy_method POST; proxy_pass http://app; }
        location ~ ^/c-regex/(.*)$ { proxy_pass http://app; }
        location ~ ^/rx/ { proxy_pass http://app; }
        location /c-vars/ { proxy_pass http://$host:8001; }
    }
}
"""

UP = "10.0.4.1:8001"


class TestLane:
    @pytest.fixture(scope="class")
    def pair(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
        tmp = tmp_path_factory.mktemp("lane")
        pair = Pair(tmp / "run", CONF, trace=True)
        try:
            pair.behave(
                UP,
                Behaviour(prefix="/hdrs/", headers=(
                    ("X-Hidden", "h"), ("X-Kept", "k"),
                    ("Last-Modified", "Mon, 02 Nov 2026 10:00:00 GMT"),
                    ("Cache-Control", "no-cache"))),
                Behaviour(prefix="/plain/s404", status=404, body=b"nope\n"),
                Behaviour(prefix="/plain/s204", status=204, body=b""),
                Behaviour(prefix="/plain/s304", status=304, body=b""),
                Behaviour(prefix="/plain/redirect", status=302,
                          headers=(("Location", "http://app/elsewhere"),)),
                Behaviour(prefix="/plain/accel",
                          headers=(("X-Accel-Redirect", "/plain/after-accel"),)),
                Behaviour(prefix="/plain/limited", body=b"r" * 3000,
                          headers=(("X-Accel-Limit-Rate", "1024"),)),
                Behaviour(prefix="/plain/charset",
                          headers=(("Content-Type", "text/html"), ("X-Accel-Charset", "utf-8"))),
                Behaviour(prefix="/plain/big", body=b"b" * 300000),
                Behaviour(prefix="/plain/upclose", headers=(("Connection", "close"),)),
                Behaviour(prefix="/plain/emptytype", headers=(("Content-Type", ""),)),
                Behaviour(prefix="/nextup/", status=500, body=b"boom\n"),
                Behaviour(prefix="/slow/x", delay=2.0),
                Behaviour(prefix="/plain/reset", action=Action.RESET),
                Behaviour(prefix="/plain/cut", body=b"c" * 1000,
                          action=Action.CLOSE_MID_RESPONSE),
            )
            yield pair
        finally:
            pair.close()

    @staticmethod
    def trace_after(pair: Pair, mark: int, target: str) -> list[str]:
        """Trace lines written since ``mark`` for ``target`` (the reason words only)."""
        path = pair.trace
        assert path is not None
        deadline = time.monotonic() + 2
        while True:
            lines = path.read_text().splitlines()[mark:] if path.exists() else []
            found = [ln.split(" ", 1)[1][: -len(target) - 1] for ln in lines
                     if ln.endswith(" " + target)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    @staticmethod
    def mark(pair: Pair) -> int:
        path = pair.trace
        assert path is not None
        return len(path.read_text().splitlines()) if path.exists() else 0

    def ask(self, pair: Pair, url: str, warm_url: str | None = None, warm_count: int = 1,
            **kw: object) -> tuple[Outcome, list[str]]:
        """Warm Tern's pool (``warm_count`` requests), then ask both sides; the trace of the
        asked request."""
        warm = {k: v for k, v in kw.items() if k not in ("version", "parallel")}
        for _ in range(warm_count):
            pair.ask_side(pair.tern_side, warm_url or url, **warm)  # type: ignore[arg-type]
        mark = self.mark(pair)
        out = pair.ask(url, **kw)  # type: ignore[arg-type]
        return out, self.trace_after(pair, mark, url)

    # -- requests the lane serves ---------------------------------------------------------------

    @pytest.mark.parametrize(
        ("url", "headers"),
        [
            ("/plain/a?x=1&y=2", ()),
            ("/plain/q?", ()),
            ("/plain/%7Euser/../b", ()),
            ("/uri/a/b?c=d", ()),
            ("/exact", ()),
            ("/exact?z=1", ()),
            ("/hdrs/h?k=v", (("X-Forwarded-For", "192.0.2.1"), ("Cookie", "a=1"),
                             ("Cookie", "b=2"), ("X-Forwarded-For", "192.0.2.2"),
                             ("Referer", "http://r/"), ("User-Agent", "lane-test/1"))),
            ("/plain/s404", ()),
            ("/rx/y", ()),
        ],
    )
    def test_served_on_lane(self, pair: Pair, url: str, headers: tuple[tuple[str, str], ...]
                            ) -> None:
        out, trace = self.ask(pair, url, host="lane.test", headers=headers)
        out.check()
        assert trace == ["served"], trace
        assert out.nginx.upstream and out.tern.upstream
        # header order as well (the comparison above ignores it)
        names = [[k.lower() for k, _ in side.response.headers]
                 for side in (out.nginx, out.tern)]
        assert names[0] == names[1]

    def test_round_robin(self, pair: Pair) -> None:
        """Two peers: the balancer's choice is the lane's; each peer's pooled connection."""
        out, trace = self.ask(pair, "/rr/1", warm_count=2, host="lane.test")
        out.check()
        assert trace == ["served"], trace

    def test_keep_alive_client(self, pair: Pair) -> None:
        """Two requests on one connection without ``Connection: close``: both on the lane."""
        pair.ask_side(pair.tern_side, "/plain/ka0", host="lane.test")
        mark = self.mark(pair)
        req = (b"GET /plain/ka1 HTTP/1.1\r\nHost: lane.test\r\n\r\n"
               b"GET /plain/ka2 HTTP/1.1\r\nHost: lane.test\r\nConnection: close\r\n\r\n")
        out = pair.raw([req[:44], 0.2, req[44:]], expect=2, linger=1.0)
        out.check()
        assert self.trace_after(pair, mark, "/plain/ka1") == ["served"]
        assert self.trace_after(pair, mark, "/plain/ka2") == ["served"]
        assert out.tern.closed and out.nginx.closed

    def test_access_logs(self, pair: Pair) -> None:
        """The lane's log lines: the combined format and one with many variables."""
        url = "/hdrs/log?q=1"
        headers = (("Referer", "http://ref/\"x\\"), ("User-Agent", "ua \xe9"))
        out, trace = self.ask(pair, url, host="lane.test", headers=headers)
        out.check()
        assert trace == ["served"]
        # the test harness points every access_log at logs/access.log: each request writes a
        # combined line, then a lanevars line
        deadline = time.monotonic() + 3
        while True:
            lines = [[ln for ln in pair.log_lines(s) if url in ln]
                     for s in (pair.nginx_side, pair.tern_side)]
            if len(lines[0]) >= 2 and len(lines[1]) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        last = [[re.sub(r"\[[^]]+\]", "[time]", ln) for ln in side[-2:]] for side in lines]
        assert len(last[0]) == 2
        assert last[0] == last[1]

    # -- locations out of the lane --------------------------------------------------------------

    @pytest.mark.parametrize(
        "url",
        ["/c-gzip/a", "/c-limit/a", "/c-expires/a", "/c-addvar/a", "/c-setvar/a?x=1",
         "/c-http10/a", "/c-noconn/a", "/c-literal/a", "/c-nokeep/a", "/c-intercept/a",
         "/c-rewrite/a", "/c-logfmt/a", "/c-logif/a?x=1", "/c-method/a", "/c-regex/a"],
    )
    def test_location_not_eligible(self, pair: Pair, url: str) -> None:
        out, trace = self.ask(pair, url, host="lane.test")
        out.check()
        assert trace == ["early not-eligible"], trace

    def test_variable_proxy_pass_not_eligible(self, pair: Pair) -> None:
        out, trace = self.ask(pair, "/c-vars/a", host="10.0.4.1")
        out.check()
        assert trace == ["early not-eligible"], trace

    # -- requests out of the lane (at an eligible location) -----------------------------------

    @pytest.mark.parametrize(
        ("method", "headers", "body", "why"),
        [
            ("HEAD", (), b"", "early method"),
            ("POST", (), b"", "early method"),
            ("POST", (), b"data", "early bytes"),
            ("GET", (("Content-Length", "0"),), b"", "early header content-length"),
            ("GET", (("Expect", "100-continue"),), b"", "early header expect"),
            ("GET", (("Upgrade", "websocket"), ("Connection", "upgrade")), b"",
             "early parser"),
            ("GET", (("Upgrade", "websocket"),), b"", "early header upgrade"),
            ("GET", (("Authorization", "Basic eDp5"),), b"", "early header authorization"),
            ("GET", (("If-None-Match", '"x"'),), b"", "early header if-none-match"),
            ("GET", (("X_Under", "1"),), b"", "early header x_under"),
        ],
        ids=["head", "post-empty", "post-body", "content-length", "expect",
             "upgrade-connection", "upgrade", "authorization", "if-none-match", "underscore"],
    )
    def test_request_not_eligible(self, pair: Pair, method: str,
                                  headers: tuple[tuple[str, str], ...], body: bytes,
                                  why: str) -> None:
        url = f"/plain/req-{method}-{why.split()[-1]}-{len(headers)}"
        out, trace = self.ask(pair, url, method=method, host="lane.test", headers=headers,
                              body=body)
        out.check()
        assert trace == [why], trace

    def test_http10_not_eligible(self, pair: Pair) -> None:
        out, trace = self.ask(pair, "/plain/h10", host="lane.test", version="1.0")
        out.check()
        assert trace == ["early version-or-target"], trace

    def test_duplicate_host(self, pair: Pair) -> None:
        mark = self.mark(pair)
        out = pair.raw(b"GET /plain/dup HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", expect=1)
        out.check()
        assert out.tern.responses[0].status == 400
        assert self.trace_after(pair, mark, "/plain/dup") == ["early host"]

    def test_pipelined_not_eligible(self, pair: Pair) -> None:
        mark = self.mark(pair)
        req = b"GET /plain/pipe1 HTTP/1.1\r\nHost: lane.test\r\n\r\n"
        out = pair.raw(req + req.replace(b"pipe1", b"pipe2")[:-4] +
                       b"\r\nConnection: close\r\n\r\n", expect=2)
        out.check()
        assert self.trace_after(pair, mark, "/plain/pipe1") == ["early bytes"]

    # -- answers the lane hands over ------------------------------------------------------------

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("/plain/s204", "late status-or-size 204"),
            ("/plain/s304", "late status-or-size 304"),
            ("/plain/redirect", "late header Location"),
            ("/plain/accel", "late header X-Accel-Redirect"),
            # nginx paces the answer (limit_rate from the header) and sets its charset
            ("/plain/limited", "late header X-Accel-Limit-Rate"),
            ("/plain/charset", "late header X-Accel-Charset"),
            ("/plain/big", "late body-not-whole"),
            ("/plain/emptytype", "late empty-content-type"),
            ("/nextup/a", "late status-or-size 500"),
        ],
    )
    def test_answer_handed_over(self, pair: Pair, url: str, why: str) -> None:
        out, trace = self.ask(pair, url, host="lane.test")
        out.check()
        assert trace == [why], trace

    def test_read_timeout(self, pair: Pair) -> None:
        """proxy_read_timeout runs out on the lane: the general path answers 504."""
        out, trace = self.ask(pair, "/slow/x", "/slow/warm", host="lane.test", parallel=True)
        out.check()
        assert out.status == 504
        assert trace == ["late read-timeout"], trace

    @pytest.mark.parametrize(("url", "status"), [("/plain/reset", 502), ("/plain/cut", 200)])
    def test_upstream_gone(self, pair: Pair, url: str, status: int) -> None:
        """The upstream resets, or closes half-way through the body: handed over at EOF,
        answered as nginx answers (502; a cut body is cut for the client too)."""
        pair.ask("/plain/warm-gone-both", host="lane.test")  # nginx keeps a connection too
        out, trace = self.ask(pair, url, "/plain/warm-gone", host="lane.test")
        out.check()
        assert out.status == status
        assert trace == ["late upstream-eof"], trace

    def test_upstream_connection_close(self, pair: Pair) -> None:
        """``Connection: close`` from upstream: the lane answers and drops that connection;
        the next request has no pooled connection left and is handed over."""
        out, trace = self.ask(pair, "/plain/upclose", "/plain/before-close", host="lane.test")
        out.check()
        assert trace == ["served"]
        mark = self.mark(pair)
        pair.ask_side(pair.tern_side, "/plain/after-close", host="lane.test")
        assert self.trace_after(pair, mark, "/plain/after-close") == \
            ["late no-idle-connection"]

    def test_no_idle_connection_then_lane(self, pair: Pair) -> None:
        """A request with no pooled connection is handed over (the general path connects and
        pools it); the next one takes the lane."""
        pair.ask_side(pair.tern_side, "/plain/upclose", host="lane.test")
        mark = self.mark(pair)
        first = pair.ask("/plain/n1", host="lane.test").check()
        second = pair.ask("/plain/n2", host="lane.test").check()
        assert first.status == second.status == 200
        assert self.trace_after(pair, mark, "/plain/n1") == ["late no-idle-connection"]
        assert self.trace_after(pair, mark, "/plain/n2") == ["served"]


# --------------------------------------------------------------------------------------------
# reload: the lane is compiled per engine, so a SIGHUP's new configuration is what it serves

RELOAD_CONF = """pid tern.pid;
events {}
http {
    access_log off;
    upstream app { server 127.0.0.1:UP; keepalive 4; }
    server {
        listen 127.0.0.1:PORT;
        location / {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Gen GEN;
            proxy_pass http://app;
        }
    }
}
"""


def test_reload_recompiles_lane(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess

    from shadow.echo import EchoServer

    echo = EchoServer("lane-reload").start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "nginx.conf"

    def write(gen: str) -> None:
        conf.write_text(RELOAD_CONF.replace("UP", str(echo.port)).replace("PORT", str(port))
                        .replace("GEN", gen))

    def gen_of(sock: socket.socket) -> bytes:
        sock.sendall(b"GET /r HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += sock.recv(65536)
        return re.search(rb"X-Gen: (\w+)", head).group(1)  # type: ignore[union-attr]

    trace = tmp_path / "trace.txt"
    write("one")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "TERN_LANE_TRACE": str(trace)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf), "-p",
                             str(tmp_path), "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "tern did not start"
                time.sleep(0.05)
        with sock:
            assert [gen_of(sock) for _ in range(3)] == [b"one"] * 3
        write("two")
        proc.send_signal(signal.SIGHUP)
        got = b""
        deadline = time.monotonic() + 15
        while got != b"two" and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                got = gen_of(sock)
            time.sleep(0.05)
        assert got == b"two"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert [gen_of(sock) for _ in range(3)] == [b"two"] * 3
        lines = trace.read_text().splitlines()
        served = [ln.split()[0] for ln in lines if " served /r" in ln]
        # both generations of workers served requests on the lane
        assert len(set(served)) == 2, lines
    finally:
        proc.terminate()
        proc.wait(15)
        echo.stop()
