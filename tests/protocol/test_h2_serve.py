"""HTTP/2 in ``tern serve`` with real clients: curl (``--http2`` over TLS,
``--http2-prior-knowledge``), nghttp and h2load, and a raw frame client for nginx's limits and the
floods.  Each limit and flood test asserts the connection's outcome and that the server then
answers the next client.  Everything is bounded and on 127.0.0.1."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.protocol.tls_support import RawH2, free_port, h2_get, make_cert, run, tern_serve

REFUSED_STREAM = 0x7
ENHANCE_YOUR_CALM = 0xB
BIG = bytes(range(256)) * 4096  # 1 MiB


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = BIG if self.path.startswith("/big") else b"up " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        digest = hashlib.sha256(body).hexdigest().encode()
        out = b"%d %s" % (len(body), digest)
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


CONF = """
pid tern.pid;
events {{}}
http {{
    access_log off;
    upstream up {{ server 127.0.0.1:{up}; }}
    server {{
        listen 127.0.0.1:{tls} ssl http2;
        ssl_certificate localhost.crt;
        ssl_certificate_key localhost.key;
        client_max_body_size 10m;
        location / {{ return 200 "ok $server_protocol $scheme"; }}
        location /big {{ proxy_pass http://up; }}
        location /echo {{ proxy_pass http://up; }}
    }}
    server {{
        listen 127.0.0.1:{plain} http2;
        http2_max_concurrent_streams 4;
        keepalive_requests 50;
        large_client_header_buffers 2 1k;
        send_timeout 1s;
        location / {{ return 200 "ok $server_protocol $scheme"; }}
        location /big {{ proxy_pass http://up; }}
        location /echo {{ proxy_pass http://up; }}
    }}
    server {{
        listen 127.0.0.1:{idle};
        http2 on;
        keepalive_timeout 1s;
        location / {{ return 200 "idle"; }}
    }}
}}
"""


@dataclass(frozen=True)
class Ports:
    tls: int
    plain: int
    idle: int


@pytest.fixture(scope="module")
def tern(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    d = tmp_path_factory.mktemp("h2")
    make_cert(d, "localhost", kind="ec")
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    ports = Ports(free_port(), free_port(), free_port())
    conf = d / "nginx.conf"
    conf.write_text(CONF.format(up=upstream.server_address[1], tls=ports.tls, plain=ports.plain,
                                idle=ports.idle))
    try:
        with tern_serve(conf, ports.tls, ports.plain, ports.idle):
            yield ports
    finally:
        upstream.shutdown()
        upstream.server_close()


def healthy(port: int, tls: bool = False) -> None:
    """The next client is served."""
    assert h2_get(port, "/", tls=tls) == (200, b"ok HTTP/2.0 " + (b"https" if tls else b"http"))


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["curl", "-sk", "--max-time", "20", *args], timeout=30)


# ---------------------------------------------------------------------------------------------
# real clients


def test_curl_http2_over_tls(tern: Ports) -> None:
    r = curl("--http2", "-w", "|%{http_version}", f"https://localhost:{tern.tls}/")
    assert r.stdout == "ok HTTP/2.0 https|2", r.stderr


def test_curl_prior_knowledge_h2c_and_http1_on_the_same_port(tern: Ports) -> None:
    r = curl("--http2-prior-knowledge", "-w", "|%{http_version}",
             f"http://127.0.0.1:{tern.plain}/")
    assert r.stdout == "ok HTTP/2.0 http|2"
    r = curl("-w", "|%{http_version}", f"http://127.0.0.1:{tern.plain}/")
    assert r.stdout == "ok HTTP/1.1 http|1.1"


def test_streaming_both_ways_through_the_proxy(tern: Ports, tmp_path: object) -> None:
    """A 1 MiB response and a 3 MiB request body through proxy_pass over HTTP/2 (TLS), byte
    exact; the request body exceeds every window, so flow control must move it."""
    r = subprocess.run(["curl", "-sk", "--http2", "--max-time", "30",
                        f"https://localhost:{tern.tls}/big"], capture_output=True, timeout=40)
    assert r.stdout == BIG
    body = bytes(range(251)) * (3 * 1024 * 1024 // 251)
    r = subprocess.run(["curl", "-sk", "--http2", "--max-time", "30", "--data-binary", "@-",
                        f"https://localhost:{tern.tls}/echo"], input=body, capture_output=True,
                       timeout=40)
    assert r.stdout.decode() == f"{len(body)} {hashlib.sha256(body).hexdigest()}"


def test_small_client_windows_get_all_the_data(tern: Ports) -> None:
    """nghttp with 2^10-1 byte stream and connection windows: the 1 MiB response is queued and
    sent as WINDOW_UPDATEs arrive, none of it dropped."""
    r = subprocess.run(["nghttp", "-w", "10", "-W", "10", "-t", "30",
                        f"http://127.0.0.1:{tern.plain}/big"], capture_output=True, timeout=40)
    assert r.returncode == 0, r.stderr
    assert r.stdout == BIG


def test_nghttp_many_streams_on_one_connection(tern: Ports) -> None:
    paths = [f"https://localhost:{tern.tls}/x{i}" for i in range(20)]
    r = run(["nghttp", "-ns", "-t", "20", *paths], timeout=30)
    assert r.returncode == 0, r.stderr
    codes = [ln.split()[4] for ln in r.stdout.splitlines() if " /x" in ln]
    assert codes == ["200"] * 20, r.stdout


def test_h2load_all_requests_succeed(tern: Ports) -> None:
    r = run(["h2load", "-n", "400", "-c", "4", "-m", "10", f"https://localhost:{tern.tls}/"],
            timeout=60)
    assert "400 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    assert "Application protocol: h2" in r.stdout


# ---------------------------------------------------------------------------------------------
# nginx's limits


def test_max_concurrent_streams_refuses_the_excess(tern: Ports) -> None:
    """http2_max_concurrent_streams 4: a fifth stream in progress is REFUSED_STREAM, the
    connection goes on (the first four are then answered)."""
    c = RawH2(tern.plain)
    try:
        wire = b"".join(c.request(sid, "/echo", method="POST",
                                  extra=[("content-length", "2")], end=False)
                        for sid in (1, 3, 5, 7, 9))
        c.send(wire)
        seen = c.read(want={9}, until=8)
        assert seen.resets == {9: REFUSED_STREAM}
        c.send(b"".join(c.data(sid, b"hi", end=True) for sid in (1, 3, 5, 7)))
        seen = c.read(want={1, 3, 5, 7}, until=10)
        assert {sid: seen.statuses.get(sid) for sid in (1, 3, 5, 7)} == \
            {1: 200, 3: 200, 5: 200, 7: 200}
        assert seen.goaway is None and not seen.closed
    finally:
        c.close()
    healthy(tern.plain)


def test_keepalive_requests_then_goaway(tern: Ports) -> None:
    """keepalive_requests 50: the 50th stream is answered with a GOAWAY NO_ERROR naming it,
    and the connection closes."""
    c = RawH2(tern.plain)
    try:
        sids = list(range(1, 2 * 52, 2))
        for i in range(0, len(sids), 4):
            c.send(b"".join(c.request(s) for s in sids[i:i + 4]))
            c.read(want=set(sids[i:i + 4]), until=8)
        seen = c.read(until=8, quiet=3)
        assert seen.goaway == (sids[49], 0)
        assert all(seen.statuses.get(s) == 200 for s in sids[:50])
        assert seen.closed
    finally:
        c.close()
    healthy(tern.plain)


def test_header_field_over_large_client_header_buffers(tern: Ports) -> None:
    """large_client_header_buffers 2 1k: a 2 KiB header value is a GOAWAY ENHANCE_YOUR_CALM."""
    c = RawH2(tern.plain)
    try:
        c.send(c.request(1, "/", extra=[("x-big", "v" * 2048)]))
        seen = c.read(until=8)
        assert seen.goaway is not None and seen.goaway[1] == ENHANCE_YOUR_CALM
        assert 1 not in seen.statuses
    finally:
        c.close()
    healthy(tern.plain)


def test_idle_connection_gets_goaway_and_close(tern: Ports) -> None:
    """keepalive_timeout 1s with no stream in progress: GOAWAY NO_ERROR, then close."""
    c = RawH2(tern.idle)
    try:
        c.send(c.request(1))
        seen = c.read(until=10, quiet=5)
        assert seen.statuses == {1: 200}
        assert seen.goaway == (1, 0)
        assert seen.closed
    finally:
        c.close()


def test_malformed_request_is_a_stream_error(tern: Ports) -> None:
    """RFC 9113 §8.2.2: a connection-specific field resets that stream only."""
    c = RawH2(tern.plain)
    try:
        c.send(c.request(1, extra=[("connection", "keep-alive")]) + c.request(3))
        seen = c.read(want={1, 3}, until=5)
        assert seen.resets.get(1) == 0x1 and seen.statuses.get(3) == 200
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# floods


def _calm(seen_goaway: tuple[int, int] | None) -> bool:
    return seen_goaway is not None and seen_goaway[1] == ENHANCE_YOUR_CALM


def test_rapid_reset_flood(tern: Ports) -> None:
    """Streams opened and reset at once by the client (CVE-2023-44487), a few per write: past
    100 of 200, GOAWAY ENHANCE_YOUR_CALM."""
    c = RawH2(tern.tls, tls=True)
    try:
        sids = list(range(1, 2 * 400, 2))
        for i in range(0, len(sids), 10):
            wire = b""
            for sid in sids[i:i + 10]:
                wire += c.request(sid, "/echo", method="POST", end=False)
                wire += RstStreamFrame(sid, error_code=0x8).serialize()
            c.send(wire)
            time.sleep(0.002)
        seen = c.read(until=5)
        assert _calm(seen.goaway), seen.goaway
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still writing: the server stopped the flood
    finally:
        c.close()
    healthy(tern.tls, tls=True)


def test_continuation_flood(tern: Ports) -> None:
    c = RawH2(tern.plain)
    try:
        h = HeadersFrame(1, data=c.block(1))
        wire = h.serialize()
        for _ in range(200):
            wire += ContinuationFrame(1, data=b"\x40\x01a\x01b").serialize()
        c.send(wire)
        seen = c.read(until=5)
        assert seen.goaway is not None and seen.goaway[1] != 0, seen.goaway
        assert 1 not in seen.statuses
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        c.close()
    healthy(tern.plain)


def test_hpack_bomb(tern: Ports) -> None:
    """One 1000-byte field in the dynamic table, referenced 200 times (200 KiB decoded from a
    few hundred bytes): refused, connection ended."""
    c = RawH2(tern.plain)
    try:
        first = c.block(1, extra=[("x-bomb", "b" * 1000)])
        # index 62 is the newest dynamic entry: x-bomb
        block = first + b"\xbe" * 200
        f = HeadersFrame(1, data=block)
        f.flags.add("END_HEADERS")
        f.flags.add("END_STREAM")
        c.send(f.serialize())
        seen = c.read(until=5)
        assert seen.goaway is not None and seen.goaway[1] in (ENHANCE_YOUR_CALM, 0x9), seen
        assert 1 not in seen.statuses
    finally:
        c.close()
    healthy(tern.plain)


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_flood_without_reading(tern: Ports, kind: str) -> None:
    """PING or SETTINGS frames sent much faster than their ACKs are read: GOAWAY
    ENHANCE_YOUR_CALM and close (seen closed when the reset beat the GOAWAY to us); the server
    then serves others."""
    c = RawH2(tern.plain, timeout=2)
    frame = (PingFrame(0, opaque_data=b"12345678") if kind == "ping"
             else SettingsFrame(0, settings={0x4: 65535})).serialize()
    sent = 0
    try:
        deadline = time.monotonic() + 5
        while sent < 20000 and time.monotonic() < deadline:
            c.send(frame * 100)
            sent += 100
    except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
        pass
    seen = c.read(until=5)
    c.close()
    assert _calm(seen.goaway) or seen.closed, (sent, seen.goaway)
    healthy(tern.plain)


def test_empty_data_frames_flood(tern: Ports) -> None:
    c = RawH2(tern.plain)
    try:
        wire = c.request(1, "/echo", method="POST", end=False)
        wire += DataFrame(1, data=b"").serialize() * 1000
        c.send(wire)
        seen = c.read(until=5)
        assert _calm(seen.goaway), seen.goaway
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        c.close()
    healthy(tern.plain)


def test_zero_window_stall_is_reset_after_send_timeout(tern: Ports) -> None:
    """A client announcing a window of 0 and never updating it: the 1 MiB response waits,
    nothing is dropped or buffered without bound; after send_timeout (1s) the stream is reset
    and the connection still serves other streams."""
    c = RawH2(tern.plain, settings={0x4: 0})
    try:
        c.send(c.request(1, "/big"))
        seen = c.read(want={1}, until=8, quiet=6)
        assert seen.statuses.get(1) == 200
        assert seen.resets.get(1) == 0x1  # PROTOCOL_ERROR, as nginx resets a timed-out stream
        assert 1 not in seen.bodies
        c.send(SettingsFrame(0, settings={0x4: 65535}).serialize() + c.request(3))
        seen = c.read(want={3}, until=5)
        assert seen.statuses.get(3) == 200
    finally:
        c.close()
    healthy(tern.plain)


def seen_goaway(c: RawH2) -> tuple[int, int] | None:
    return c.seen.goaway


def test_graceful_stop_sends_goaway_and_finishes_streams(tmp_path: pytest.TempPathFactory
                                                         ) -> None:
    """SIGQUIT: the connection gets GOAWAY NO_ERROR naming the stream in progress, which is
    still served; then the connection closes and the process exits 0."""
    import signal

    port = free_port()
    conf = tmp_path / "nginx.conf"  # type: ignore[operator]
    conf.write_text("pid tern.pid;\nevents {}\nhttp {\n  access_log off;\n  server {\n"
                    f"    listen 127.0.0.1:{port} http2;\n"
                    "    location / { return 200 \"drained\"; }\n  }\n}\n")
    with tern_serve(conf, port) as proc:
        c = RawH2(port)
        try:
            c.send(c.request(1, "/", method="POST", extra=[("content-length", "2")],
                             end=False))
            c.read(until=1, quiet=0.3)
            proc.send_signal(signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while seen_goaway(c) is None and time.monotonic() < deadline:
                c.read(until=1, quiet=0.5)
            assert c.seen.goaway == (1, 0)
            c.send(c.data(1, b"ok", end=True))
            seen = c.read(want={1}, until=5)
            assert seen.statuses.get(1) == 200 and seen.bodies.get(1) == b"drained"
            seen = c.read(until=10, quiet=10)
            assert seen.closed
        finally:
            c.close()
        assert proc.wait(10) == 0


def test_request_body_without_content_length(tern: Ports) -> None:
    """An HTTP/2 body without content-length (DATA frames, then END_STREAM) reaches the
    upstream whole, as nginx sends it (buffered, with a Content-Length)."""
    c = RawH2(tern.plain)
    try:
        payload = b"z" * 100_000
        c.send(c.request(1, "/echo", method="POST", end=False))
        first, rest = payload[:60_000], payload[60_000:]  # the stream window is 65536
        c.send(b"".join(c.data(1, first[i:i + 15_000]) for i in range(0, len(first), 15_000)))
        # the engine consumes the body, the window reopens (WINDOW_UPDATE); the rest then fits
        c.read(until=2, quiet=1.0)
        c.send(b"".join(c.data(1, rest[i:i + 10_000], end=i + 10_000 >= len(rest))
                        for i in range(0, len(rest), 10_000)))
        seen = c.read(want={1}, until=10)
        assert seen.statuses.get(1) == 200
        assert seen.bodies.get(1) == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}" \
            .encode()
    finally:
        c.close()
