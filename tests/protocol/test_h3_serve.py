"""HTTP/3 against `tern serve`: real processes, real UDP and TCP sockets on 127.0.0.1, certificates
made in the test, two independent HTTP/3 clients (aioquic's, in process, and ngtcp2's
``gtlsclient``), and HTTP/1.1 over TLS on the same port number as the reference: nginx 1.22 has
no HTTP/3, so Tern's HTTP/3 answers are compared with its own HTTP/1.1 answers, and what the
upstream receives with what it received for HTTP/1.1.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioquic.h3.connection import ErrorCode

from shadow.echo import Behaviour, EchoServer
from tests.protocol.h3_client import h3_connect, make_cert

REPO = Path(__file__).resolve().parents[2]
GTLSCLIENT = shutil.which("gtlsclient")
HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"date"}
"""Hop-by-hop and framing fields (HTTP/3 has none of them), and the clock."""


def free_port() -> int:
    """A port number free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


@dataclass
class Tern:
    proc: subprocess.Popen[bytes]
    port: int
    cert: Path
    echo: EchoServer
    tmp: Path


CONF = """
pid tern.pid;
events {}
http {
    access_log off;
    client_max_body_size 10m;
    upstream backend { server 127.0.0.1:ECHO; }
    server {
        listen 127.0.0.1:PORT ssl;
        listen 127.0.0.1:PORT quic reuseport;
        server_name localhost;
        ssl_certificate CERT;
        ssl_certificate_key KEY;
        EXTRA
        add_header Alt-Svc 'h3=":PORT"; ma=86400';
        error_page 404 /custom404.html;
        location = /custom404.html { internal; return 404 "custom not found\\n"; }
        location = /ret { return 200 "ret $server_protocol\\n"; }
        location = /plain { return 200 "plain text\\n"; }
        location = /redir { return 302 /elsewhere; }
        location = /teapot { return 418; }
        location = /drop { return 444; }
        location /rw/ { rewrite ^/rw/(.*)$ /proxy/$1 last; }
        location /static/ { root ROOT; }
        location /proxy/ {
            proxy_pass http://backend;
            add_header X-Added yes always;
        }
        location /raw/ { proxy_pass http://backend; }
        location = /proto {
            return 200 "$server_protocol $scheme $https $ssl_protocol $ssl_cipher\\n";
        }
    }
}
"""


@contextmanager
def tern(tmp: Path, extra: str = "", *, echo: EchoServer | None = None,
         workers: int = 1) -> Iterator[Tern]:
    """`tern serve` with the test config (``extra`` lines in the server), waiting until both
    the TCP and the UDP listeners answer."""
    cert, key = make_cert(tmp)
    own_echo = echo is None
    echo = echo or EchoServer("up", behaviours=[
        Behaviour(prefix="/proxy/fixed", headers=(("X-Up", "1"),), body=b"upstream body\n"),
        Behaviour(prefix="/proxy/slow", body=b"slow\n", delay=0.6),
        Behaviour(prefix="/proxy/big", body=b"0123456789abcdef" * 200_000)]).start()
    port = free_port()
    root = tmp / "root"
    (root / "static").mkdir(parents=True, exist_ok=True)
    (root / "static" / "f.txt").write_bytes(b"a static file\n")
    conf = tmp / "nginx.conf"
    conf.write_text(CONF.replace("PORT", str(port)).replace("ECHO", str(echo.port))
                    .replace("CERT", str(cert)).replace("KEY", str(key))
                    .replace("ROOT", str(root)).replace("EXTRA", extra))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf),
                             "-w", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        t = Tern(proc, port, cert, echo, tmp)
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            try:
                if h1(t, "GET", "/ret")[0] == 200 and asyncio.run(_ready(t)):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("tern serve did not come up")
            time.sleep(0.1)
        yield t
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        if own_echo:
            echo.stop()


async def _ready(t: Tern) -> bool:
    try:
        async with asyncio.timeout(2):
            async with h3_connect(t.port, t.cert) as c:
                return (await c.request("GET", "/ret", timeout=2)).status == 200
    except (TimeoutError, ConnectionError):
        return False


def h1(t: Tern, method: str, path: str, headers: list[tuple[str, str]] | None = None,
       body: bytes | None = None, *, chunked: bool = False
       ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """HTTP/1.1 over TLS with exactly these request headers."""
    ctx = ssl.create_default_context(cafile=str(t.cert))
    conn = http.client.HTTPSConnection("127.0.0.1", t.port, context=ctx, timeout=10)
    conn._context.check_hostname = False  # type: ignore[attr-defined]
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "localhost")
        for k, v in headers or []:
            conn.putheader(k, v)
        if body is not None and not chunked:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if body is not None:
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, [(k.lower().encode(), v.encode("latin-1"))
                             for k, v in resp.getheaders()], data
    finally:
        conn.close()


def h3(t: Tern, method: str, path: str, headers: list[tuple[str, str]] | None = None,
       body: bytes | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    async def go() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        async with h3_connect(t.port, t.cert) as c:
            fields = [(k.lower().encode(), v.encode()) for k, v in headers or []]
            r = await c.request(method, path, headers=fields, body=body)
            assert r.reset is None, f"stream reset {r.reset}"
            return r.status, r.headers, r.body
    return asyncio.run(go())


def comparable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k not in HOP]


def upstream_view(rec: object) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    return (rec.method, rec.target,  # type: ignore[attr-defined]
            [(k.lower(), v) for k, v in rec.headers],  # type: ignore[attr-defined]
            rec.body)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tern]:
    with tern(tmp_path_factory.mktemp("h3"), "http3_max_concurrent_streams 2;") as t:
        yield t


CASES = [
    ("GET", "/plain", [], None),
    ("GET", "/redir", [], None),
    ("GET", "/teapot", [], None),
    ("GET", "/nothing-here", [], None),
    ("GET", "/static/f.txt", [], None),
    ("GET", "/static/missing.txt", [], None),
    ("GET", "/proxy/fixed?q=1", [("X-Client", "a"), ("Cookie", "a=1")], None),
    ("GET", "/rw/fixed", [("User-Agent", "ua/1")], None),
    ("POST", "/proxy/fixed/upload", [("Content-Type", "text/plain")], b"x" * 70_000),
    ("PUT", "/raw/put", [], b"small body"),
    ("DELETE", "/proxy/fixed/item", [("X-Reason", "test")], None),
]


@pytest.mark.parametrize(("method", "path", "headers", "body"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_h3_answers_as_h1(server: Tern, method: str, path: str,
                          headers: list[tuple[str, str]], body: bytes | None) -> None:
    """The same request over HTTP/3 and HTTP/1.1 (TLS, same port number): same status, same
    headers in the same order (hop-by-hop, framing and Date aside), same body; and the
    upstream receives the same request (names compared case-insensitively: HTTP/3's are
    lower case)."""
    server.echo.clear()
    s1, hd1, b1 = h1(server, method, path, headers, body)
    s3, hd3, b3 = h3(server, method, path, headers, body)
    assert (s3, comparable(hd3), b3) == (s1, comparable(hd1), b1)
    recs = server.echo.records
    assert len(recs) == (2 if path.startswith(("/proxy/", "/rw/", "/raw/")) else 0)
    if recs:
        assert upstream_view(recs[1]) == upstream_view(recs[0])


def test_h3_request_without_content_length_is_reframed(server: Tern) -> None:
    """An HTTP/3 body without Content-Length reaches the upstream as HTTP/1.1's chunked one
    does: buffered, with one Content-Length (proxy_request_buffering on)."""
    server.echo.clear()
    body = b"y" * 100_000
    s1, _, _ = h1(server, "POST", "/proxy/fixed/c", [], body, chunked=True)

    async def go() -> int:
        async with h3_connect(server.port, server.cert) as c:
            sid = c.send_request("POST", "/proxy/fixed/c", end=False)
            for i in range(0, len(body), 10_000):
                c.send_body(sid, body[i:i + 10_000], end=i + 10_000 >= len(body))
                await asyncio.sleep(0)
            return (await c.response(sid)).status
    assert asyncio.run(go()) == s1 == 200
    a, b = server.echo.records
    assert upstream_view(a) == upstream_view(b) and b.header("Content-Length") == "100000"


def test_server_protocol_and_tls_variables(server: Tern) -> None:
    """$server_protocol is HTTP/3.0 over QUIC and HTTP/1.1 over TCP; $scheme https, TLS 1.3,
    $ssl_cipher the suite the client negotiated (OpenSSL's name)."""
    async def go() -> tuple[bytes, str]:
        async with h3_connect(server.port, server.cert) as c:
            body = (await c.request("GET", "/proto")).body
            return body, c._quic.tls.key_schedule.cipher_suite.name  # type: ignore[union-attr]
    body, suite = asyncio.run(go())
    assert body == f"HTTP/3.0 https on TLSv1.3 TLS_{suite}\n".encode()
    assert h1(server, "GET", "/proto")[2].startswith(b"HTTP/1.1 https on TLSv1.")


def test_alt_svc_comes_from_add_header(server: Tern) -> None:
    """Alt-Svc is what add_header says, on both protocols; nothing is added on its own."""
    for fetch in (h1, h3):
        _, headers, _ = fetch(server, "GET", "/ret")
        assert dict(headers)[b"alt-svc"] == f'h3=":{server.port}"; ma=86400'.encode()
    _, headers, _ = h3(server, "GET", "/proxy/fixed")  # a location with its own add_header
    assert b"alt-svc" not in dict(headers)


def test_large_bodies_stream_both_ways(server: Tern) -> None:
    """3.2 MB from the upstream and 2 MB to it, through windows of 64k per stream."""
    server.echo.clear()
    upload = os.urandom(2_000_000)

    async def go() -> tuple[bytes, int]:
        async with h3_connect(server.port, server.cert) as c:
            big = await c.request("GET", "/proxy/big", timeout=30)
            up = await c.request("POST", "/proxy/fixed/up", body=upload, timeout=30)
            return big.body, up.status
    big, status = asyncio.run(go())
    assert len(big) == 3_200_000 and big == b"0123456789abcdef" * 200_000
    assert status == 200
    assert server.echo.records[-1].body == upload


def test_concurrent_streams_limit(server: Tern) -> None:
    """http3_max_concurrent_streams 2: the client is allowed two streams at a time, so the
    upstream never sees more than two of six requests at once; all six are answered."""
    server.echo.clear()

    async def go() -> tuple[int, list[int]]:
        async with h3_connect(server.port, server.cert) as c:
            limit = c._quic._remote_max_streams_bidi
            sids = [c.send_request("GET", f"/proxy/slow/{i}") for i in range(6)]
            return limit, [(await c.response(s, timeout=30)).status for s in sids]
    limit, statuses = asyncio.run(go())
    assert limit == 2 and statuses == [200] * 6
    starts = sorted(r.received_at for r in server.echo.records)
    assert len(starts) == 6
    # a request holds its stream for the upstream's 0.6 s delay: count overlaps of arrivals
    most = max(sum(1 for s in starts if a - 0.55 < s <= a) for a in starts)
    assert most == 2


def test_malformed_request_costs_only_its_stream(server: Tern) -> None:
    """A malformed request (connection-specific field) resets its stream with
    H3_MESSAGE_ERROR; the same connection then serves a good request."""
    async def go() -> tuple[int | None, int, bool]:
        async with h3_connect(server.port, server.cert) as c:
            bad = await c.request("GET", "/ret", headers=[(b"connection", b"close")])
            good = await c.request("GET", "/ret")
            return bad.reset, good.status, c.terminated is None
    assert asyncio.run(go()) == (ErrorCode.H3_MESSAGE_ERROR, 200, True)


def test_bad_request_answered_on_its_stream(server: Tern) -> None:
    """A request nginx answers 400 (bad Host) gets nginx's 400 page on that stream only."""
    async def go() -> tuple[int, bytes, int]:
        async with h3_connect(server.port, server.cert) as c:
            bad = await c.request("GET", "/ret", authority="bad/host")
            good = await c.request("GET", "/ret")
            return bad.status, bad.body, good.status
    status, body, after = asyncio.run(go())
    assert status == 400 and b"400 Bad Request" in body and after == 200


def test_misbehaving_clients_leave_the_worker_healthy(server: Tern) -> None:
    """Garbage datagrams, a connection closed with a protocol error, a client that vanishes
    mid-request: the next client is served."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for n in (1, 20, 1200, 1500):
            u.sendto(os.urandom(n), ("127.0.0.1", server.port))
        u.sendto(b"\xc0\x00\x00\x00\x01" + os.urandom(1195), ("127.0.0.1", server.port))

    async def protocol_error() -> None:
        async with h3_connect(server.port, server.cert) as c:
            # DATA before HEADERS on a request stream: H3_FRAME_UNEXPECTED, a connection error
            sid = c._quic.get_next_available_stream_id()
            c._quic.send_stream_data(sid, b"\x00\x03abc", end_stream=True)
            c.transmit()
            await asyncio.wait_for(c.closed_event.wait(), 10)
            assert c.terminated is not None
            assert c.terminated.error_code == ErrorCode.H3_FRAME_UNEXPECTED

    async def vanish() -> None:
        async with h3_connect(server.port, server.cert) as c:
            c.send_request("POST", "/proxy/slow/x", body=b"abc", end=False)
            await asyncio.sleep(0.1)
            c._quic._close_pending = False  # leave without CONNECTION_CLOSE
            c._transport.close()  # type: ignore[union-attr]

    asyncio.run(protocol_error())
    try:
        asyncio.run(vanish())
    except Exception:  # noqa: BLE001 - the client side of a vanished connection may complain
        pass
    assert h3(server, "GET", "/ret")[0] == 200
    assert server.proc.poll() is None


def test_idle_timeout_closes_with_no_error(tmp_path: Path) -> None:
    """keepalive_timeout: a connection without a request in progress is closed with
    H3_NO_ERROR once it expires; a new connection is served."""
    with tern(tmp_path, "keepalive_timeout 1s;") as t:
        async def go() -> int | None:
            async with h3_connect(t.port, t.cert) as c:
                assert (await c.request("GET", "/ret")).status == 200
                await asyncio.wait_for(c.closed_event.wait(), 15)
                return c.terminated.error_code if c.terminated else None
        assert asyncio.run(go()) == ErrorCode.H3_NO_ERROR
        assert h3(t, "GET", "/ret")[0] == 200


def test_graceful_shutdown_finishes_in_flight_request(tmp_path: Path) -> None:
    """SIGQUIT: GOAWAY reaches the client, the request in progress is answered in full, then
    the connection is closed with H3_NO_ERROR and the process exits."""
    with tern(tmp_path) as t:
        async def go() -> tuple[int, bytes, int | None, int | None]:
            async with h3_connect(t.port, t.cert) as c:
                sid = c.send_request("GET", "/proxy/slow/q")
                await asyncio.sleep(0.2)  # the request is at the upstream
                t.proc.send_signal(signal.SIGQUIT)
                r = await c.response(sid, timeout=15)
                await asyncio.wait_for(c.closed_event.wait(), 15)
                code = c.terminated.error_code if c.terminated else None
                return r.status, r.body, c.h3.goaway, code
        status, body, goaway, code = asyncio.run(go())
        assert (status, body) == (200, b"slow\n")
        assert goaway == 4 and code == ErrorCode.H3_NO_ERROR
        assert t.proc.wait(15) == 0


def test_quic_retry(tmp_path: Path) -> None:
    """quic_retry on: the first Initial is answered with a Retry, and the client that
    repeats it with the token is served."""
    with tern(tmp_path, "quic_retry on;") as t:
        async def go() -> tuple[int, int]:
            async with h3_connect(t.port, t.cert) as c:
                status = (await c.request("GET", "/ret")).status
                return status, c._quic._retry_count
        assert asyncio.run(go()) == (200, 1)
    plain = tmp_path / "plain"
    plain.mkdir()
    with tern(plain) as t:
        async def without() -> int:
            async with h3_connect(t.port, t.cert) as c:
                await c.request("GET", "/ret")
                return c._quic._retry_count
        assert asyncio.run(without()) == 0


def test_http3_off_refuses_handshake(tmp_path: Path) -> None:
    """http3 off: ALPN h3 is not offered, the QUIC handshake fails; HTTP/1.1 still works."""
    cert, key = make_cert(tmp_path)
    port = free_port()
    conf = tmp_path / "off.conf"
    conf.write_text(f"""events {{}}
http {{ access_log off; server {{ listen 127.0.0.1:{port} ssl; listen 127.0.0.1:{port} quic;
  http3 off; ssl_certificate {cert}; ssl_certificate_key {key};
  location / {{ return 200 "ok\\n"; }} }} }}""")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        t = Tern(proc, port, cert, EchoServer(), tmp_path)
        deadline = time.monotonic() + 20
        while True:
            try:
                if h1(t, "GET", "/")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)

        async def go() -> str:
            try:
                async with asyncio.timeout(5):
                    async with h3_connect(port, cert):
                        return "connected"
            except ConnectionError:
                return "refused"
            except TimeoutError:
                return "timeout"
        assert asyncio.run(go()) == "refused"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


# -- an independent implementation: ngtcp2's gtlsclient (nghttp3) --------------------------------


def gtls(t: Tern, path: str, *extra: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """GET (or ``-m``/``-d`` as given) with gtlsclient; status and headers from its debug
    output, the body from --download."""
    out = t.tmp / f"dl{time.monotonic_ns()}"
    out.mkdir()
    proc = subprocess.run(
        [GTLSCLIENT or "gtlsclient", "--exit-on-all-streams-close", "--no-quic-dump",
         "--no-http-dump", f"--download={out}", "--timeout=10s", *extra, "127.0.0.1",
         str(t.port), f"https://localhost:{t.port}{path}"],
        capture_output=True, timeout=30)
    text = (proc.stdout + proc.stderr).decode("latin-1")
    fields = re.findall(r"http: stream 0x0 \[([^:\]]*|:[a-z]+): ([^\]]*)\]", text)
    status = int(dict(fields).get(":status", "0"))
    files = list(out.iterdir())
    body = files[0].read_bytes() if files else b""
    return status, [(k.encode(), v.encode()) for k, v in fields if k[:1] != ":"], body


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("path", ["/plain", "/proxy/fixed?z=9", "/nothing-here", "/redir",
                                  "/static/f.txt"])
def test_gtlsclient_gets_what_h1_gets(server: Tern, path: str) -> None:
    """ngtcp2/nghttp3 as an independent HTTP/3 client: same status, headers and body as
    HTTP/1.1 for the same request (its user-agent header sent on both)."""
    s1, hd1, b1 = h1(server, "GET", path, [("user-agent", "nghttp3/ngtcp2 client")])
    s3, hd3, b3 = gtls(server, path)
    assert (s3, comparable(hd3), b3) == (s1, comparable(hd1), b1)


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
def test_gtlsclient_post_body(server: Tern) -> None:
    """gtlsclient's POST body reaches the upstream intact."""
    server.echo.clear()
    data = server.tmp / "post.bin"
    payload = os.urandom(50_000)
    data.write_bytes(payload)
    status, _, body = gtls(server, "/proxy/fixed/post", "-m", "POST", f"--data={data}")
    assert (status, body) == (200, b"upstream body\n")
    assert server.echo.records[-1].body == payload and server.echo.records[-1].method == "POST"


def test_keepalive_requests_ends_the_connection(tmp_path: Path) -> None:
    """keepalive_requests 3: the third request is served with GOAWAY naming the next stream
    (later streams would be rejected: tests/protocol/test_h3.py), then the connection closes
    with H3_NO_ERROR."""
    with tern(tmp_path, "keepalive_requests 3;") as t:
        async def go() -> tuple[list[int], int | None, int | None]:
            async with h3_connect(t.port, t.cert) as c:
                statuses = [(await c.request("GET", "/plain")).status for _ in range(3)]
                await asyncio.wait_for(c.closed_event.wait(), 10)
                code = c.terminated.error_code if c.terminated else None
                return statuses, c.h3.goaway, code
        assert asyncio.run(go()) == ([200, 200, 200], 12, ErrorCode.H3_NO_ERROR)


def test_two_workers_share_the_port(tmp_path: Path) -> None:
    """With two workers each binds its own UDP socket (SO_REUSEPORT): connections from many
    client ports all complete, whichever worker the kernel picks."""
    with tern(tmp_path, workers=2) as t:
        async def go() -> list[int]:
            async def one() -> int:
                async with h3_connect(t.port, t.cert) as c:
                    return (await c.request("GET", "/proxy/fixed")).status
            return list(await asyncio.gather(*(one() for _ in range(8))))
        assert asyncio.run(go()) == [200] * 8


def test_reload_serves_the_new_config_over_h3(tmp_path: Path) -> None:
    """SIGHUP: new workers bind their UDP sockets next to the old ones, which drain; HTTP/3
    clients get the new configuration."""
    with tern(tmp_path) as t:
        assert h3(t, "GET", "/plain")[2] == b"plain text\n"
        conf = tmp_path / "nginx.conf"
        conf.write_text(conf.read_text().replace('"plain text', '"reloaded text'))
        t.proc.send_signal(signal.SIGHUP)

        async def get() -> tuple[int, int | None, bytes, bool]:
            async with h3_connect(t.port, t.cert) as c:
                r = await c.request("GET", "/plain")
                return r.status, r.reset, r.body, c.terminated is not None
        deadline = time.monotonic() + 20
        rejected = 0
        while True:
            status, reset, body, terminated = asyncio.run(get())
            if reset is not None:
                # an old worker's GOAWAY reached a connection before its first request: the
                # request is rejected (RFC 9114 §5.2) and may be retried
                assert reset == ErrorCode.H3_REQUEST_REJECTED
                rejected += 1
            elif status == 0:
                # the kernel gave the new connection to an old worker that finished draining
                # and closed it before any answer (docs/protocols.md): retried like a rejection
                assert terminated and body == b""
                rejected += 1
            elif body == b"reloaded text\n":
                break
            else:
                assert body == b"plain text\n"
            assert time.monotonic() < deadline, "reload not seen over HTTP/3"
            time.sleep(0.2)
        assert t.proc.poll() is None and rejected < 10


@pytest.mark.parametrize("check", [[], ["-t"]], ids=["start", "dash-t"])
def test_quic_certificate_error_names_the_line(tmp_path: Path, check: list[str]) -> None:
    """A QUIC-only server whose certificate file is missing: tern serve refuses to start and
    names the ssl_certificate line."""
    port = free_port()
    conf = tmp_path / "bad.conf"
    conf.write_text(f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{port} quic;
        ssl_certificate {tmp_path}/missing.crt;
        ssl_certificate_key {tmp_path}/missing.key;
        location / {{ return 200; }}
    }}
}}
""")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", *check, str(conf)],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode != 0
    assert f"{conf}:5: error:" in proc.stderr and "missing.crt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(GTLSCLIENT is None, reason="ngtcp2-client (gtlsclient) is not installed")
@pytest.mark.parametrize("path", ["/plain", "/static/f.txt", "/proxy/fixed"])
def test_gtlsclient_head_matches_h1(server: Tern, path: str) -> None:
    """HEAD over HTTP/3 (nghttp3 accepts a Content-Length without a body on HEAD; aioquic's
    client does not): the same head as HTTP/1.1's HEAD, no body."""
    s1, hd1, b1 = h1(server, "HEAD", path, [("user-agent", "nghttp3/ngtcp2 client")])
    s3, hd3, b3 = gtls(server, path, "-m", "HEAD")
    assert (s3, comparable(hd3), b3) == (s1, comparable(hd1), b1) and b3 == b""


def test_stream_limit_violation_closes_only_that_connection(server: Tern) -> None:
    """A client that opens more request streams than MAX_STREAMS allows (here by ignoring the
    limit of 2) gets a STREAM_LIMIT_ERROR connection close from QUIC; the next client is
    served."""
    async def go() -> int | None:
        async with h3_connect(server.port, server.cert) as c:
            c._quic._remote_max_streams_bidi = 100  # pretend the server allowed more
            for _ in range(5):
                c.send_request("GET", "/proxy/slow/limit")
            await asyncio.wait_for(c.closed_event.wait(), 10)
            return c.terminated.error_code if c.terminated else None
    assert asyncio.run(go()) == 0x4  # QUIC STREAM_LIMIT_ERROR
    assert h3(server, "GET", "/plain")[0] == 200


def test_access_log_line(tmp_path: Path) -> None:
    """The log phase runs for HTTP/3 requests: $request ends with HTTP/3.0."""
    log = tmp_path / "access.log"
    with tern(tmp_path, f"access_log {log};") as t:
        assert h3(t, "GET", "/plain?a=1")[0] == 200
        deadline = time.monotonic() + 10
        while "HTTP/3.0" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert re.search(r'"GET /plain\?a=1 HTTP/3\.0" 200 11 ', log.read_text())


@pytest.mark.parametrize("check", [[], ["-t"]], ids=["start", "dash-t"])
def test_quic_without_certificate_is_refused(tmp_path: Path, check: list[str]) -> None:
    """`listen ... quic` in a server with no ssl_certificate: refused at start-up, naming the
    listen line."""
    conf = tmp_path / "nocert.conf"
    conf.write_text(f"""events {{}}
http {{
    server {{
        listen 127.0.0.1:{free_port()} quic;
        location / {{ return 200; }}
    }}
}}
""")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "migrate.cli", "serve", *check, str(conf)],
                          capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f'{conf}:4: error: no "ssl_certificate" is defined for the "listen ... quic"' \
        in proc.stderr


def test_sni_picks_the_certificate(tmp_path: Path) -> None:
    """Two servers on one QUIC socket: SNI b.test gets b's certificate (verified) and
    $ssl_server_name b.test; an unknown name gets the default server's; a server with
    ssl_reject_handshake on refuses the handshake."""
    a_cert, a_key = make_cert(tmp_path, "a.test")
    b_cert, b_key = make_cert(tmp_path, "b.test")
    port = free_port()
    conf = tmp_path / "sni.conf"
    conf.write_text(f"""events {{}}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} quic;
        server_name a.test;
        ssl_certificate {a_cert}; ssl_certificate_key {a_key};
        location / {{ return 200 "a $ssl_server_name\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port} quic;
        server_name b.test;
        ssl_certificate {b_cert}; ssl_certificate_key {b_key};
        location / {{ return 200 "b $ssl_server_name\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port} quic;
        server_name r.test;
        ssl_reject_handshake on;
    }}
}}
""")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    async def fetch(name: str, cafile: Path | None) -> tuple[bytes, str]:
        async with asyncio.timeout(5):
            async with h3_connect(port, cafile, server_name=name) as c:
                r = await c.request("GET", "/", authority=name)
                peer = c._quic.tls._peer_certificate
                return r.body, peer.subject.rfc4514_string() if peer else ""

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                got = asyncio.run(fetch("b.test", b_cert))
                break
            except (OSError, TimeoutError):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
        assert got == (b"b b.test\n", "CN=b.test")
        assert asyncio.run(fetch("a.test", a_cert)) == (b"a a.test\n", "CN=a.test")
        assert asyncio.run(fetch("other.test", None)) == (b"a other.test\n", "CN=a.test")
        with pytest.raises(ConnectionError):
            asyncio.run(fetch("r.test", None))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_return_444_resets_only_the_stream(server: Tern) -> None:
    """`return 444` closes the HTTP/1.1 connection without a response; over HTTP/3 it resets
    that stream (H3_INTERNAL_ERROR) and the connection serves the next request."""
    async def go() -> tuple[int | None, int, int]:
        async with h3_connect(server.port, server.cert) as c:
            dropped = await c.request("GET", "/drop")
            after = await c.request("GET", "/plain")
            return dropped.reset, dropped.status, after.status
    assert asyncio.run(go()) == (ErrorCode.H3_INTERNAL_ERROR, 0, 200)
