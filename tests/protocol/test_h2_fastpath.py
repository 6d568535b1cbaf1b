"""HTTP/2 streams on the fast path (proxy/fastpath.py), in-process so that its counters
(``fastpath.Counts``) show which road each request took: a bodyless proxied stream with a
cached upstream connection is served from callbacks; the hand-overs (204, HEAD, a read timeout,
a body) go to the general path; and with the fast path off (the A/B switch
``fastpath.ENABLED``) every answer and every request the upstream gets is the same.

Real parts: Tern's own engine and HTTP/2 stack on a loopback socket, a threaded HTTP/1.1
keep-alive upstream, curl (``--http2-prior-knowledge``) and h2load as clients.  The answers are
compared with nginx's in ``tests/compat/test_h2_fastpath_vs_nginx.py``.  Bounded waits only.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hyperframe.frame import RstStreamFrame

from migrate.serve import make_loader
from proxy import fastpath
from proxy.engine import Engine
from proxy.io import workers as W
from proxy.io.server import EngineRef
from proxy.io.upstream import UpstreamPool
from tests.protocol.tls_support import RawH2, free_port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("curl") is None or shutil.which("h2load") is None,
                       reason="curl and h2load (nghttp2-client) are needed"),
]


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, tuple(self.headers.items())))
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        elif self.path.startswith("/wait"):
            time.sleep(0.3)
        if self.path.startswith("/s204"):
            head, body = b"HTTP/1.1 204 No Content\r\nX-Up: 1\r\n\r\n", b""
        else:
            body = b"up " + self.path.encode()
            head = (b"HTTP/1.1 200 OK\r\nX-Up: 1\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
        # head and body in one write: the fast path takes an answer that arrives whole
        self.wfile.write(head + (b"" if self.command == "HEAD" else body))

    do_GET = do_HEAD = _answer

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        self._answer()


CONF = """
events {{}}
http {{
    access_log off;
    upstream up {{ server 127.0.0.1:{up}; keepalive 8; }}
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{ proxy_pass http://up; }}
        location /slow {{ proxy_read_timeout 1s; proxy_pass http://up; }}
    }}
}}
"""


class _Tern:
    """Tern's engine and listening socket on a loop in a thread of this process."""

    def __init__(self, conf: Path, prefix: Path) -> None:
        self.config = make_loader(str(conf), str(prefix), False)()
        self.prefix = str(prefix)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(20), "tern did not start"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.pool = UpstreamPool()
        engine = Engine(self.config, prefix=self.prefix, pool=self.pool)
        ref = self.ref = EngineRef(engine)
        self.servers: list[asyncio.AbstractServer] = []
        for key in W.bind_keys(self.config):
            factory, _ctx = W.protocol_factory(self.config, engine.interp.router, key, ref)
            self.servers.append(await asyncio.get_running_loop().create_server(
                factory, sock=W.open_socket(key)))

    async def _stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()
        for conn in list(self.ref.connections):
            conn.close(abort=True)
        self.pool.close_all()
        await asyncio.sleep(0.05)  # transports finish closing

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def tern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("h2fast")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.format(up=upstream.server_address[1], port=port))
    (tmp / "logs").mkdir()
    server = _Tern(conf, tmp)
    try:
        yield port
    finally:
        server.stop()
        upstream.shutdown()
        upstream.server_close()


def curl(port: int, *paths: str, method: str = "GET", data: str | None = None) -> list[str]:
    """Each answer (status line, headers without Date, body), one HTTP/2 connection each
    (curl 7.88 fails a second request on a prior-knowledge connection, nginx's too)."""
    out: list[str] = []
    for p in paths:
        args = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20", "-D", "-"]
        args += ["-I"] if method == "HEAD" else ["-X", method]
        if data is not None:
            args += ["--data-binary", data]
        args.append(f"http://127.0.0.1:{port}{p}")
        got = subprocess.run(args, capture_output=True, text=True, timeout=30,
                             check=True).stdout
        out.append("\n".join(line for line in got.splitlines()
                             if not line.lower().startswith("date:")))
    return out


def both_roads(port: int, *paths: str, **kw: str) -> tuple[list[str], int, int]:
    """The answers with the fast path off, then on (they must be equal, and so must the
    requests the upstream saw), and how many requests the fast path served and handed over."""
    fastpath.ENABLED = False
    try:
        curl(port, "/warm")  # a cached upstream connection for the requests that follow
        _Upstream.seen.clear()
        served, handed = fastpath.Counts.served, fastpath.Counts.handed_over
        general = curl(port, *paths, **kw)
        general_seen = list(_Upstream.seen)
        assert (fastpath.Counts.served, fastpath.Counts.handed_over) == (served, handed)
    finally:
        fastpath.ENABLED = True
    curl(port, "/warm")
    _Upstream.seen.clear()
    served, handed = fastpath.Counts.served, fastpath.Counts.handed_over
    fast = curl(port, *paths, **kw)
    assert fast == general
    assert _Upstream.seen == general_seen
    return fast, fastpath.Counts.served - served, fastpath.Counts.handed_over - handed


def test_plain_streams_are_served_on_the_fast_path(tern: int) -> None:
    answers, served, handed = both_roads(tern, "/a?x=1", "/b", "/c/d")
    assert served == 3 and handed == 0
    assert answers[0].startswith("HTTP/2 200") and answers[0].endswith("up /a?x=1")
    assert "x-up: 1" in answers[1]


def test_hand_overs_take_the_general_path(tern: int) -> None:
    answers, served, handed = both_roads(tern, "/s204", "/e")
    assert (served, handed) == (1, 1)
    assert answers[0].startswith("HTTP/2 204")
    answers, served, handed = both_roads(tern, "/h", method="HEAD")
    assert (served, handed) == (0, 1)
    assert answers[0].startswith("HTTP/2 200")


def test_read_timeout_on_the_fast_timer(tern: int) -> None:
    answers, served, handed = both_roads(tern, "/slow")
    assert (served, handed) == (0, 1)
    assert answers[0].startswith("HTTP/2 504")


def test_body_is_not_a_candidate(tern: int) -> None:
    answers, served, handed = both_roads(tern, "/post", method="POST", data="hello")
    assert (served, handed) == (0, 0)
    assert answers[0].endswith("up /post")


def test_concurrent_streams(tern: int) -> None:
    """h2load: 400 requests, 4 streams at a time on each of 2 connections: all answered, and
    the fast path served most of them (a stream that finds no idle upstream connection while
    the pool's are busy is handed over)."""
    curl(tern, "/warm")
    served, handed = fastpath.Counts.served, fastpath.Counts.handed_over
    out = subprocess.run(["h2load", "-n400", "-c2", "-m4", f"http://127.0.0.1:{tern}/load"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "400 succeeded" in out, out
    assert "status codes: 400 2xx" in out, out
    served, handed = fastpath.Counts.served - served, fastpath.Counts.handed_over - handed
    assert served + handed == 400
    assert served >= 200, (served, handed)


def test_stream_reset_while_waiting_upstream(tern: int, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    """A fast stream the client resets while its upstream answer is on the way: nothing goes
    out on it, the upstream connection is kept (its answer was whole) and the connection
    goes on: the next stream is served on the fast path."""
    curl(tern, "/warm")
    c = RawH2(tern)
    try:
        served, handed = fastpath.Counts.served, fastpath.Counts.handed_over
        c.send(c.request(1, "/wait/a"))
        time.sleep(0.05)
        c.send(RstStreamFrame(1, error_code=0x8).serialize())
        time.sleep(0.5)  # the answer arrives upstream and is dropped
        c.send(c.request(3, "/after"))
        seen = c.read(want={3}, quiet=5.0, until=10)
    finally:
        c.close()
    assert 1 not in seen.statuses and seen.statuses.get(3) == 200
    assert seen.bodies[3] == b"up /after"
    assert (fastpath.Counts.served - served, fastpath.Counts.handed_over - handed) == (2, 0)
    assert curl(tern, "/next")[0].endswith("up /next")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_client_gone_while_waiting_upstream(tern: int, caplog: pytest.LogCaptureFixture
                                            ) -> None:
    """The client closes its connection while a fast stream waits: the answer is taken from
    the upstream and dropped, and the server serves the next client on the fast path."""
    curl(tern, "/warm")
    c = RawH2(tern)
    c.send(c.request(1, "/wait/b"))
    time.sleep(0.05)
    c.close()
    time.sleep(0.5)
    served = fastpath.Counts.served
    assert curl(tern, "/next")[0].endswith("up /next")
    assert fastpath.Counts.served == served + 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
