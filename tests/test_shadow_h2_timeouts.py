"""HTTP/2 client timeouts of ``tern shadow`` (nginx's client_header_timeout, client_body_timeout,
keepalive_timeout, send_timeout and keepalive_requests as nginx applies them to HTTP/2).

First the oracle: each scenario is a sequence of frames written by hand and sent at set times
over h2c (prior knowledge), once to Debian's nginx 1.22.1 and once to ``tern shadow`` with the
same settings, side by side; what comes back must be the same: HEADERS (status), RST_STREAM
(code) and GOAWAY (last stream, code) in order, and whether the server closed the connection.
The shadow proxy's counters say which timeout fired; nginx's access log says what it logged.
Then real clients: curl over TLS (ALPN h2) with an upload that stalls, nghttp past
keepalive_requests, and h2-driven sockets for what the oracle cannot show (the primary's
connection closed, a held body not timed, other streams going on).

Timeouts are short (0.6 s; keepalive 1.2 s); every wait is bounded; elapsed times are only
checked as lower bounds (nothing was cut before its timeout).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from shadow.echo import EchoServer
from shadow.mirror import ShadowOptions, server_tls
from tests.shadow_support import ProxyRunner, make_cert
from tests.support.nginx import NGINX_BIN, free_port, run_nginx
from tests.test_shadow_timeouts import Primary, _serves, _tern, _wait

HEADER, BODY, SEND, KEEPALIVE, REQUESTS = 0.6, 0.6, 0.6, 1.2, 3
OPTIONS = ShadowOptions(client_header_timeout=HEADER, client_body_timeout=BODY,
                        send_timeout=SEND, client_idle_timeout=KEEPALIVE,
                        keepalive_requests=REQUESTS, mirror_unsafe=True)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PROTOCOL_ERROR, NO_ERROR = 1, 0
EPS = 0.01
"""Timer granularity allowed in the lower bounds."""

NGINX_CONF = """
events {{}}
http {{
    client_header_timeout {header}ms;
    client_body_timeout {body}ms;
    send_timeout {send}ms;
    keepalive_timeout {keepalive}ms;
    keepalive_requests {requests};
    server {{
        listen 127.0.0.1:{port} http2;
        location / {{ return 200 "ok"; }}
        location = /big {{ alias {big}; }}
        location /upload {{ proxy_pass http://127.0.0.1:{back}; }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "got"; }}
    }}
}}
"""


# --------------------------------------------------------------------------------------------
# frames out, frames in


class Frames:
    """Frames of one connection, HPACK-encoded in order (fresh tables per connection)."""

    def __init__(self) -> None:
        self.enc = Encoder()

    def headers(self, sid: int, path: str, method: str = "GET", *, end_stream: bool = True,
                end_headers: bool = True, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
        fields = [(":method", method), (":scheme", "http"), (":authority", "x"),
                  (":path", path), *extra]
        f = HeadersFrame(sid, data=bytes(self.enc.encode(fields, huffman=False)))
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return bytes(f.serialize())

    @staticmethod
    def data(sid: int, data: bytes, end: bool = False) -> bytes:
        f = DataFrame(sid, data=data)
        if end:
            f.flags.add("END_STREAM")
        return bytes(f.serialize())

    @staticmethod
    def continuation(sid: int, end_headers: bool = False) -> bytes:
        f = ContinuationFrame(sid, data=b"")
        if end_headers:
            f.flags.add("END_HEADERS")
        return bytes(f.serialize())

    @staticmethod
    def settings(**values: int) -> bytes:
        f = SettingsFrame(0)
        f.settings = {({"initial_window_size": 4})[k]: v for k, v in values.items()}
        return bytes(f.serialize())


@dataclass
class Seen:
    """What the server sent: HEADERS, RST_STREAM, GOAWAY and the close, with their times
    (seconds since the connection was opened)."""

    events: list[tuple[object, ...]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    """When each step went out."""

    @property
    def signature(self) -> list[tuple[object, ...]]:
        return self.events

    def at(self, kind: str, sid: int | None = None) -> float:
        """The time of the first event of that kind (and stream)."""
        for ev, t in zip(self.events, self.times, strict=True):
            if ev[0] == kind and (sid is None or ev[1] == sid):
                return t
        raise AssertionError(f"no {kind} {sid} in {self.events}")


def observe(port: int, steps: list[tuple[float, bytes]], *, limit: float = 12.0,
            settings: bytes | None = None) -> Seen:
    """Open a connection, send the preface (with ``settings``) and each step at its time, and
    record the server's frames until it closes the connection (at most ``limit`` seconds)."""
    seen = Seen()
    dec = Decoder()
    buf = b""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(PREFACE + (settings or bytes(SettingsFrame(0).serialize())))
        s.settimeout(0.02)
        todo = list(steps)
        while time.monotonic() - start < limit:
            now = time.monotonic() - start
            while todo and todo[0][0] <= now:
                with contextlib.suppress(OSError):  # the server may have closed already
                    s.sendall(todo[0][1])
                seen.sent.append(now)
                todo.pop(0)
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            t = time.monotonic() - start
            if not data:
                seen.events.append(("closed",))
                seen.times.append(t)
                break
            buf += data
            while len(buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                f.parse_body(memoryview(buf[9:9 + length]))
                buf = buf[9 + length:]
                ev: tuple[object, ...] | None = None
                if isinstance(f, HeadersFrame):
                    ev = ("HEADERS", f.stream_id, dict(dec.decode(f.data)).get(":status"))
                elif isinstance(f, RstStreamFrame):
                    ev = ("RST_STREAM", f.stream_id, f.error_code)
                elif isinstance(f, GoAwayFrame):
                    ev = ("GOAWAY", f.last_stream_id, f.error_code)
                if ev is not None:
                    seen.events.append(ev)
                    seen.times.append(t)
    return seen


# --------------------------------------------------------------------------------------------
# the oracle


@dataclass(frozen=True)
class Scenario:
    steps: list[tuple[float, bytes]]
    expect: list[tuple[object, ...]]
    """What both must send (checked against nginx first: the scenario's own claim)."""
    counters: dict[str, int]
    """The shadow proxy's counters afterwards."""
    logged: list[str]
    """nginx's access log lines (status and request)."""
    settings: bytes | None = None


def _scenarios() -> dict[str, Scenario]:
    post = (("content-length", "100"),)
    f = [Frames() for _ in range(12)]
    return {
        # before the first stream: client_header_timeout, then GOAWAY NO_ERROR (nothing logged)
        "silent-after-preface": Scenario(
            [], [("GOAWAY", 0, NO_ERROR), ("closed",)], {"timeout_header": 1}, []),
        # a header block that never ends: its stream reset at client_header_timeout (408), then
        # keepalive_timeout and GOAWAY PROTOCOL_ERROR (the parser is mid-block)
        "header-block-never-ends": Scenario(
            [(0.0, f[0].headers(1, "/b", end_headers=False))],
            [("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 1, PROTOCOL_ERROR), ("closed",)],
            {"timeout_header": 1, "timeout_idle": 1}, ['408 "-"']),
        # CONTINUATION frames trickling in do not extend it
        "continuations-trickling": Scenario(
            [(0.0, f[1].headers(1, "/b", end_headers=False))]
            + [(0.2 * i, Frames.continuation(1)) for i in range(1, 6)],
            [("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 1, PROTOCOL_ERROR), ("closed",)],
            {"timeout_header": 1, "timeout_idle": 1}, ['408 "-"']),
        # after a first stream, a second one's block stops halfway
        "header-block-after-a-stream": Scenario(
            [(0.0, f[2].headers(1, "/a")), (0.3, f[2].headers(3, "/b", end_headers=False))],
            [("HEADERS", 1, "200"), ("RST_STREAM", 3, PROTOCOL_ERROR),
             ("GOAWAY", 3, PROTOCOL_ERROR), ("closed",)],
            {"timeout_header": 1, "timeout_idle": 1}, ['200 "GET /a HTTP/2.0"', '408 "-"']),
        # a request body that stops: the stream is reset (408), the connection goes on idle
        "body-stalls": Scenario(
            [(0.0, f[3].headers(1, "/upload", "POST", end_stream=False, extra=post)
              + Frames.data(1, b"x" * 10))],
            [("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 1, NO_ERROR), ("closed",)],
            {"timeout_body": 1, "timeout_idle": 1}, ['408 "POST /upload HTTP/2.0"']),
        "body-never-starts": Scenario(
            [(0.0, f[4].headers(1, "/upload", "POST", end_stream=False, extra=post))],
            [("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 1, NO_ERROR), ("closed",)],
            {"timeout_body": 1, "timeout_idle": 1}, ['408 "POST /upload HTTP/2.0"']),
        # client_body_timeout is between two reads: a body trickling in is served
        "body-trickles-in": Scenario(
            [(0.0, f[5].headers(1, "/upload", "POST", end_stream=False,
                                extra=(("content-length", "6"),)))]
            + [(0.3 * i, Frames.data(1, b"x", end=i == 6)) for i in range(1, 7)],
            [("HEADERS", 1, "200"), ("GOAWAY", 1, NO_ERROR), ("closed",)],
            {"timeout_body": 0, "timeout_idle": 1}, ['200 "POST /upload HTTP/2.0"']),
        # a stream while another stalls its body: served; the stalled one alone is reset
        "body-stalls-beside-a-stream": Scenario(
            [(0.0, f[6].headers(1, "/upload", "POST", end_stream=False, extra=post)),
             (0.1, f[6].headers(3, "/c"))],
            [("HEADERS", 3, "200"), ("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 3, NO_ERROR),
             ("closed",)],
            {"timeout_body": 1, "timeout_idle": 1},
            ['200 "GET /c HTTP/2.0"', '408 "POST /upload HTTP/2.0"']),
        # keepalive_timeout after the last stream: GOAWAY NO_ERROR naming it
        "idle-after-a-stream": Scenario(
            [(0.0, f[7].headers(1, "/a"))],
            [("HEADERS", 1, "200"), ("GOAWAY", 1, NO_ERROR), ("closed",)],
            {"timeout_idle": 1, "timeout_header": 0}, ['200 "GET /a HTTP/2.0"']),
        # a frame left unfinished while idle: keepalive_timeout, GOAWAY PROTOCOL_ERROR
        "partial-frame-while-idle": Scenario(
            [(0.0, f[8].headers(1, "/a")), (0.3, b"\x00\x00\x10")],
            [("HEADERS", 1, "200"), ("GOAWAY", 1, PROTOCOL_ERROR), ("closed",)],
            {"timeout_idle": 1}, ['200 "GET /a HTTP/2.0"']),
        # keepalive_requests: the last stream allowed comes with GOAWAY, then the close
        "keepalive-requests": Scenario(
            [(0.0, f[9].headers(1, "/1")), (0.2, f[9].headers(3, "/2")),
             (0.4, f[9].headers(5, "/3"))],
            [("HEADERS", 1, "200"), ("HEADERS", 3, "200"), ("GOAWAY", 5, NO_ERROR),
             ("HEADERS", 5, "200"), ("closed",)],
            {"timeout_idle": 0},
            ['200 "GET /1 HTTP/2.0"', '200 "GET /2 HTTP/2.0"', '200 "GET /3 HTTP/2.0"']),
        # send_timeout: an answer waiting on a window of zero; its stream is reset
        "zero-window": Scenario(
            [(0.0, f[10].headers(1, "/big"))],
            [("HEADERS", 1, "200"), ("RST_STREAM", 1, PROTOCOL_ERROR), ("GOAWAY", 1, NO_ERROR),
             ("closed",)],
            {"timeout_send": 1, "timeout_idle": 1}, ['200 "GET /big HTTP/2.0"'],
            settings=Frames.settings(initial_window_size=0)),
    }


SCENARIOS = _scenarios()


@dataclass
class Nginx:
    port: int
    log: Path


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    if not NGINX_BIN.exists():  # pragma: no cover - CI has it
        pytest.skip(f"{NGINX_BIN} is not installed")
    prefix = tmp_path_factory.mktemp("nginx-h2-timeouts")
    big = prefix / "big"
    big.write_bytes(b"b" * (1 << 20))
    port = free_port()
    back = free_port([port])
    conf = NGINX_CONF.format(port=port, back=back, big=big, header=int(HEADER * 1000),
                             body=int(BODY * 1000), send=int(SEND * 1000),
                             keepalive=int(KEEPALIVE * 1000), requests=REQUESTS)
    with run_nginx(conf, prefix) as proc:
        yield Nginx(port, proc.prefix / "logs" / "access.log")


def _log_lines(path: Path, skip: int) -> list[str]:
    """``status "request"`` of nginx's access log lines after the first ``skip`` (the
    proxied HTTP/1.0 requests to the back server left out)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines()[skip:]:
            m = re.search(r'"([^"]*)" (\d{3}) ', line)
            if m is not None and not m.group(1).endswith("HTTP/1.0"):
                out.append(f'{m.group(2)} "{m.group(1)}"')
    return out


@pytest.mark.nginx
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_h2_timeouts_as_nginx(name: str, nginx: Nginx) -> None:
    """The same frames at the same times to nginx and to tern shadow: the same HEADERS,
    RST_STREAM and GOAWAY in the same order, and the close; the timeout that fired is counted;
    no reset came before its timeout."""
    sc = SCENARIOS[name]
    before = len(nginx.log.read_text().splitlines()) if nginx.log.exists() else 0
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=OPTIONS) as r:
        got: dict[str, Seen] = {}

        def run(side: str, port: int) -> None:
            got[side] = observe(port, sc.steps, settings=sc.settings)

        threads = [threading.Thread(target=run, args=("nginx", nginx.port)),
                   threading.Thread(target=run, args=("shadow", r.port))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert _wait(lambda: r.proxy.stats.pending == 0)
        st = r.proxy.stats.as_dict()
    assert got["nginx"].signature == sc.expect, "nginx itself"
    assert got["shadow"].signature == got["nginx"].signature
    assert {k: st[k] for k in sc.counters} == sc.counters
    assert _wait(lambda: len(_log_lines(nginx.log, before)) >= len(sc.logged), 5)
    assert sorted(_log_lines(nginx.log, before)) == sorted(sc.logged)
    # lower bounds: nothing was cut before its timeout
    seen = got["shadow"]
    for ev, t in zip(seen.events, seen.times, strict=True):
        if ev[0] == "RST_STREAM":
            mine = [seen.sent[i] for i, (_, b) in enumerate(sc.steps) if _sid(b) == ev[1]]
            if name == "zero-window":
                assert t - mine[0] >= SEND - EPS
            elif "header" in name or "continuation" in name:
                assert t - mine[0] >= HEADER - EPS  # from the block's first frame
            else:
                assert t - max([0.0, *[x for x in mine if x < t]]) >= BODY - EPS
        elif ev[0] == "GOAWAY" and name != "keepalive-requests":
            last = [tt for e2, tt in zip(seen.events, seen.times, strict=True)
                    if e2[0] in ("HEADERS", "RST_STREAM") and tt <= t]
            assert t - max([0.0, *last]) >= (KEEPALIVE if last else HEADER) - EPS


def _sid(frames: bytes) -> int:
    """The stream of the first frame in ``frames``."""
    return int.from_bytes(frames[5:9], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------------------------
# real clients


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_cert(tmp_path_factory.mktemp("certs"))


def test_curl_tls_upload_that_stalls(cert: tuple[str, str]) -> None:
    """curl over TLS (ALPN h2) uploading from a pipe that stops after 1000 of 100000 bytes:
    after client_body_timeout its stream is reset with PROTOCOL_ERROR (curl reports it once
    it sends again), the
    primary's connection, which had the start of the body, is closed; the next client is
    served."""
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", options=OPTIONS,
                        listen_tls=server_tls(*cert)) as r:
        rfd, wfd = os.pipe()
        start = time.monotonic()
        proc = subprocess.Popen(
            ["curl", "-sS", "--http2", "--cacert", cert[0], "--max-time", "20", "-T", "-",
             "-H", "Content-Length: 100000", f"https://localhost:{r.port}/upload",
             "--resolve", f"localhost:{r.port}:127.0.0.1"],
            stdin=rfd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.close(rfd)
        try:
            os.write(wfd, b"u" * 1000)
            assert _wait(lambda: r.proxy.stats.timeout_body == 1)
            took = time.monotonic() - start
            # curl does not read the connection while its upload source is stalled: it sees
            # the reset when it has more to send
            os.write(wfd, b"v" * 10)
        finally:
            os.close(wfd)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 92, err  # HTTP/2 stream error
        assert b"PROTOCOL_ERROR" in err
        assert took >= BODY - EPS
        assert _wait(lambda: "/upload" in p.cut)
        st = r.proxy.stats
        assert st.timeout_body == 1 and st.primary_errors == 0
        done = subprocess.run(["curl", "-sS", "--http2", "--cacert", cert[0], "--max-time", "20",
                               f"https://localhost:{r.port}/next", "--resolve",
                               f"localhost:{r.port}:127.0.0.1"], capture_output=True,
                              timeout=30, check=False)
        assert done.stdout == b"ok", done.stderr


def test_nghttp_past_keepalive_requests() -> None:
    """nghttp sends four requests on one connection with keepalive_requests 3: three are
    answered, GOAWAY NO_ERROR names the third stream, the fourth is refused (REFUSED_STREAM,
    nothing reaches the primary), and the connection is closed."""
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=OPTIONS) as r:
        url = f"http://127.0.0.1:{r.port}"
        out = subprocess.run(["nghttp", "-nv", "-t", "20", f"{url}/1", f"{url}/2", f"{url}/3",
                              f"{url}/4"], capture_output=True, text=True, timeout=30,
                             check=False)
        log = out.stdout + out.stderr
        # nghttp's request streams are 13, 15, 17, 19 (3-11 are its priority anchors)
        assert "recv GOAWAY frame" in log and "last_stream_id=17" in log, log
        assert "error_code=NO_ERROR" in log
        assert log.count(":status: 200") == 3, log
        assert "REFUSED_STREAM" in log
        assert sorted(p.paths) == ["/1", "/2", "/3"]
        assert r.proxy.stats.timeout_idle == 0


class H2Client:
    """An h2-library client on a raw socket, reading what comes for a bounded time."""

    def __init__(self, port: int, **settings: int) -> None:
        import h2.config
        import h2.connection

        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.events: list[object] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until: object, limit: float = 10.0) -> bool:
        """Read until ``until(events)`` is true or the connection closes (bounded)."""
        deadline = time.monotonic() + limit
        self.sock.settimeout(0.05)
        while time.monotonic() < deadline:
            if until(self.events):  # type: ignore[operator]
                return True
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return bool(until(self.events))  # type: ignore[operator]
            self.events += self.conn.receive_data(data)
            self.flush()
        return False

    def close(self) -> None:
        self.sock.close()


def _reset(sid: int) -> object:
    import h2.events

    return lambda evs: any(isinstance(e, h2.events.StreamReset) and e.stream_id == sid
                           for e in evs)


def _ended(sid: int) -> object:
    import h2.events

    return lambda evs: any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid
                           for e in evs)


def test_stalled_body_resets_its_stream_only() -> None:
    """A POST whose body stops (h2 client): its stream alone is reset after
    client_body_timeout and its primary connection closed (the primary never takes the part
    as whole); a stream opened after the reset on the same connection is served."""
    import h2.events

    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=OPTIONS) as r:
        cl = H2Client(r.port)
        try:
            cl.conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                                     (":authority", "x"), (":path", "/upload"),
                                     ("content-length", "100000")])
            cl.conn.send_data(1, b"u" * 1000)
            cl.flush()
            sent = time.monotonic()
            assert cl.pump(_reset(1))
            assert time.monotonic() - sent >= BODY - EPS
            reset = next(e for e in cl.events if isinstance(e, h2.events.StreamReset))
            assert reset.error_code == PROTOCOL_ERROR
            cl.conn.send_headers(3, [(":method", "GET"), (":scheme", "http"),
                                     (":authority", "x"), (":path", "/after")],
                                 end_stream=True)
            cl.flush()
            assert cl.pump(_ended(3))
            body = b"".join(e.data for e in cl.events
                            if isinstance(e, h2.events.DataReceived) and e.stream_id == 3)
            assert body == b"ok"
        finally:
            cl.close()
        assert _wait(lambda: "/upload" in p.cut)
        st = r.proxy.stats
        assert st.timeout_body == 1 and st.timeout_idle == 0 and st.primary_errors == 0
        assert "/after" in p.paths


def test_body_held_by_the_primary_is_not_timed() -> None:
    """client_body_timeout runs only while the proxy wants body bytes: a 16 MiB upload to a
    primary that reads nothing for 1.5 s (more than twice the timeout) is held by flow control,
    then arrives whole; nothing is reset."""
    import h2.events

    size = 16 << 20
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=OPTIONS) as r:
        cl = H2Client(r.port)
        try:
            cl.conn.send_headers(1, [(":method", "POST"), (":scheme", "http"),
                                     (":authority", "x"), (":path", "/hold"),
                                     ("content-length", str(size))])
            cl.flush()
            left = size
            deadline = time.monotonic() + 60
            while left and time.monotonic() < deadline:
                window = min(cl.conn.local_flow_control_window(1), left, 16384)
                if window > 0:
                    cl.conn.send_data(1, b"h" * window, end_stream=window == left)
                    left -= window
                    cl.flush()
                    continue
                if cl.pump(lambda evs: cl.conn.local_flow_control_window(1) > 0
                           or _reset(1)(evs), 10) and _reset(1)(cl.events):  # type: ignore[operator]
                    break
            assert left == 0, "reset or stuck"
            assert cl.pump(_ended(1), 30)
            assert not _reset(1)(cl.events)  # type: ignore[operator]
            status = next(e for e in cl.events if isinstance(e, h2.events.ResponseReceived))
            assert dict(status.headers)[b":status"] == b"200"
        finally:
            cl.close()
        assert p.paths == ["/hold"] and p.cut == []
        assert r.proxy.stats.timeout_body == 0


def test_header_block_reset_then_finished() -> None:
    """A header block left open is reset after client_header_timeout; when the client finishes
    it later, that stream is reset again and never reaches the primary; the connection serves
    a new stream."""
    f = Frames()
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=OPTIONS) as r:
        seen = observe(r.port, [(0.0, f.headers(1, "/open", end_headers=False)),
                                (1.0, Frames.continuation(1, end_headers=True)),
                                (1.1, f.headers(3, "/after"))])
        assert seen.events == [("RST_STREAM", 1, PROTOCOL_ERROR),
                               ("RST_STREAM", 1, PROTOCOL_ERROR), ("HEADERS", 3, "200"),
                               ("GOAWAY", 3, NO_ERROR), ("closed",)]
        assert seen.at("RST_STREAM") >= HEADER - EPS
        assert p.paths == ["/after"]
        st = r.proxy.stats
        assert st.timeout_header == 1 and st.timeout_idle == 1
        assert _serves_h2c(r.port)


def _serves_h2c(port: int) -> bool:
    out = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20",
                          f"http://127.0.0.1:{port}/next"], capture_output=True, timeout=30,
                         check=False)
    return out.stdout == b"ok"


def test_first_stream_waits_header_timeout_then_keepalive() -> None:
    """Before its first stream a connection has client_header_timeout (counted as a header
    timeout, GOAWAY NO_ERROR); after a stream, keepalive_timeout (counted as idle): with a
    keepalive longer than the header timeout, the idle connection is not closed before the
    keepalive has elapsed."""
    opts = ShadowOptions(client_header_timeout=0.5, client_idle_timeout=1.5)
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True, options=opts) as r:
        silent = observe(r.port, [])
        assert silent.events == [("GOAWAY", 0, NO_ERROR), ("closed",)]
        assert silent.at("GOAWAY") >= 0.5 - EPS
        st = r.proxy.stats
        assert st.timeout_header == 1 and st.timeout_idle == 0
        used = observe(r.port, [(0.0, Frames().headers(1, "/a"))])
        assert used.events == [("HEADERS", 1, "200"), ("GOAWAY", 1, NO_ERROR), ("closed",)]
        assert used.at("GOAWAY") - used.at("HEADERS") >= 1.5 - EPS
        assert st.timeout_header == 1 and st.timeout_idle == 1
        assert _serves(r.port) and p.paths == ["/a", "/next"]


def test_cli_keepalive_requests_flag(tmp_path: Path) -> None:
    """``--keepalive-requests`` reaches the HTTP/2 front (nghttp: the second of three requests
    comes with the GOAWAY, the third is refused); 0 is a usage error naming the flag, no
    traceback."""
    bad = _tern("shadow", "--listen", "127.0.0.1:0", "--primary", "http://127.0.0.1:9",
                "--candidate", "http://127.0.0.1:9", "--store", str(tmp_path / "x.db"),
                "--keepalive-requests", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--keepalive-requests" in bad.stderr
    port = free_port()
    with Primary() as p, EchoServer("c") as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrate.cli", "shadow", "--listen", f"127.0.0.1:{port}",
             "--primary", p.url, "--candidate", f"http://{c.address}", "--h2c",
             "--store", str(tmp_path / "s.db"), "--keepalive-requests", "2",
             "--duration", "20"],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        try:
            assert _wait(lambda: _accepts(port), 15)
            url = f"http://127.0.0.1:{port}"
            out = subprocess.run(["nghttp", "-nv", "-t", "20", f"{url}/1", f"{url}/2",
                                  f"{url}/3"], capture_output=True, text=True, timeout=30,
                                 check=False)
        finally:
            proc.send_signal(2)
            _, err = proc.communicate(timeout=30)
    log = out.stdout + out.stderr
    assert "last_stream_id=15" in log and "REFUSED_STREAM" in log, log
    assert sorted(p.paths) == ["/1", "/2"]
    assert proc.returncode == 0, err


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False
