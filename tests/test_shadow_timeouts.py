"""Client timeouts of ``tern shadow`` (nginx's keepalive_timeout, client_header_timeout,
client_body_timeout, send_timeout), on real sockets with short timeouts; outcomes asserted,
never elapsed times (every wait is bounded)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shadow.echo import EchoServer
from shadow.mirror import ShadowOptions
from tests.shadow_support import ProxyRunner, client, get, read_response

BIG = 24 << 20


class Primary:
    """A primary on threads that notices when the proxy closes its connection.

    ``/big``: a 24 MiB answer; ``/upload``: reads a Content-Length body, then 200; ``/hold``:
    the same, but reads nothing for 1.5 s first; ``/slow``: answers after 1.5 s; anything
    else: 200 ``ok``. ``cut`` lists the paths whose connection ended before the exchange was
    complete (a send failing, a body cut short)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.paths: list[str] = []
        self.cut: list[str] = []
        self.sent_big = 0
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Primary:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.thread.join(2)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf = b""
        path = "?"
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        if buf:
                            self.cut.append("head")
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                self.paths.append(path)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if path == "/hold":
                    time.sleep(1.5)  # the body waits for the primary (flow control)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        self.cut.append(path)
                        return
                    buf += data
                buf = buf[length:]
                if path == "/big":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                    piece = b"b" * (1 << 20)
                    for _ in range(BIG // len(piece)):
                        conn.sendall(piece)
                        self.sent_big += len(piece)
                    continue
                if path == "/slow":
                    time.sleep(1.5)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            self.cut.append(path)
        finally:
            conn.close()


@contextlib.contextmanager
def rig(**opts: float) -> Iterator[tuple[Primary, EchoServer, ProxyRunner]]:
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", options=ShadowOptions(**opts)) as r:
        yield p, c, r


def _wait(cond: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _closed_without_answer(s: socket.socket) -> bool:
    """The proxy closes ``s`` with nothing sent (the socket timeout bounds the wait)."""
    s.settimeout(10)
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True


def _serves(port: int) -> bool:
    return get(port, "/next").endswith(b"\r\n\r\nok")


SHORT = {"client_idle_timeout": 1.0, "client_header_timeout": 0.5,
         "client_body_timeout": 0.5, "send_timeout": 0.5}


def test_keepalive_idle_closed() -> None:
    """After its answer, a keep-alive connection that sends nothing more is closed
    (keepalive_timeout); the next client is served."""
    with rig(**SHORT) as (_p, _c, r), client(r.port) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).endswith(b"ok")
        s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")  # a second one keeps it open
        assert read_response(s).endswith(b"ok")
        assert _closed_without_answer(s)
        assert _wait(lambda: r.proxy.stats.timeout_idle == 1)
        assert _serves(r.port)


@pytest.mark.parametrize("h2c", [False, True], ids=["h1", "h1-or-h2c"])
def test_connected_and_silent_closed(h2c: bool) -> None:
    """A client that connects and sends nothing: closed (client_header_timeout, as nginx times
    out the first request), counted once; the next client is served. With ``h2c`` the
    listener waits for the first bytes to tell HTTP/2 from HTTP/1.1: the same."""
    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", options=ShadowOptions(**SHORT),
                        h2c=h2c) as r, client(r.port) as s:
        assert _closed_without_answer(s)
        assert _wait(lambda: r.proxy.stats.timeout_header == 1)
        assert r.proxy.stats.timeout_idle == 0
        assert _serves(r.port)
        assert p.paths == ["/next"]


def test_half_a_head_closed() -> None:
    """A request head that stops halfway, on a new connection and after a first request on a
    kept-alive one: closed without an answer (client_header_timeout); the primary never sees
    the half request."""
    with rig(**SHORT) as (p, _c, r):
        with client(r.port) as s:
            s.sendall(b"GET /half HTTP/1.1\r\nHost: x\r\nX-Par")
            assert _closed_without_answer(s)
        with client(r.port) as s:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).endswith(b"ok")
            s.sendall(b"GET /half2 HTT")
            assert _closed_without_answer(s)
        assert _wait(lambda: r.proxy.stats.timeout_header == 2)
        assert _serves(r.port)
        assert p.paths == ["/a", "/next"]


def test_head_trickling_in_still_times_out() -> None:
    """client_header_timeout bounds the whole head, not the gap between its bytes: a head sent
    a byte at a time, forever, is cut off."""
    with rig(**SHORT) as (p, _c, r), client(r.port) as s:
        closed = False
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                s.sendall(b"X")
                time.sleep(0.05)
        except OSError:
            closed = True
        assert closed
        assert r.proxy.stats.timeout_header == 1
        assert p.paths == []


def test_client_never_reads_a_large_answer() -> None:
    """A client that never reads a 24 MiB answer: after send_timeout without progress its
    connection is closed and so is the primary's (the primary's send fails); the proxy held a
    bounded part of the answer; the next client is served."""
    with rig(**SHORT) as (p, _c, r), client(r.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _wait(lambda: "/big" in p.cut)
        assert p.sent_big < BIG
        assert r.proxy.stats.timeout_send == 1
        got = 0
        s.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while data := s.recv(1 << 20):
                got += len(data)
        assert got < BIG  # cut short
        assert _serves(r.port)


def test_slow_reader_that_progresses_is_not_cut() -> None:
    """send_timeout is between two writes that make progress: a client that reads slowly
    (but reads) gets the whole answer, though it takes several times send_timeout."""
    with rig(**{**SHORT, "send_timeout": 1.0}) as (p, _c, r), client(r.port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        s.settimeout(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = s.recv(1 << 20)
            if not data:
                break
            got += len(data)
            if got > BIG:  # past the head: all of it
                break
            if got < 3 << 20:
                time.sleep(0.1)  # slow at first (several send_timeouts in all), then fast
        assert got > BIG
        assert r.proxy.stats.timeout_send == 0 and p.cut == []


def test_stalled_body_closes_client_and_primary() -> None:
    """A request body that stops arriving: after client_body_timeout the client's connection
    is closed without an answer, and the primary's connection (which had the body's start) is
    closed too, so the primary never takes the part as a whole; the next client is served."""
    with rig(**SHORT, mirror_unsafe=True) as (p, _c, r), client(r.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                  + b"u" * 1000)
        assert _closed_without_answer(s)
        assert _wait(lambda: "/upload" in p.cut)
        st = r.proxy.stats
        assert st.timeout_body == 1 and st.primary_errors == 0
        assert _serves(r.port)
        r.wait_mirrored(1)
        assert st.balanced()


def test_body_trickling_in_is_not_cut() -> None:
    """client_body_timeout is between two reads: a body sent in pieces, each within the
    timeout, arrives whole though it takes several times the timeout."""
    with rig(**{**SHORT, "client_body_timeout": 1.0}) as (p, _c, r), client(r.port) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
        for _ in range(30):
            s.sendall(b"x")
            time.sleep(0.1)
        assert read_response(s).endswith(b"ok")
        assert p.paths == ["/upload"] and p.cut == []
        assert r.proxy.stats.timeout_body == 0


def test_waiting_for_the_primary_is_not_a_client_timeout() -> None:
    """A request waiting for a slow primary (longer than every client timeout) is answered:
    client timeouts apply to the client, not to the primary's answer."""
    with rig(**SHORT) as (_p, _c, r), client(r.port) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s).endswith(b"\r\n\r\nok")
        st = r.proxy.stats
        assert st.timeout_header == st.timeout_idle == st.timeout_send == 0


def test_h2_zero_window_send_timeout() -> None:
    """An HTTP/2 client that opens no window for a 24 MiB answer: after send_timeout the stream
    is reset (PROTOCOL_ERROR, as nginx 1.22 resets a timed-out stream) and its primary
    connection closed; the connection itself stays usable for
    frames (a PING is answered)."""
    import h2.config
    import h2.connection
    import h2.events

    with Primary() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", h2c=True,
                        options=ShadowOptions(send_timeout=0.4)) as r:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        conn.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                              (":path", "/big")], end_stream=True)
        s.sendall(conn.data_to_send())
        reset = None
        pong = False
        s.settimeout(0.2)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not pong:
            try:
                data = s.recv(1 << 20)
            except TimeoutError:
                continue
            assert data
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.StreamReset):
                    reset = ev.error_code
                    conn.ping(b"12345678")
                elif isinstance(ev, h2.events.PingAckReceived):
                    pong = True
            s.sendall(conn.data_to_send())
        s.close()
        assert reset == 1 and pong  # PROTOCOL_ERROR (nginx's), then the connection answers
        assert _wait(lambda: "/big" in p.cut)
        assert r.proxy.stats.timeout_send == 1
        assert p.sent_big < BIG


def _tern(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrate.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=Path(__file__).parent.parent)


def test_cli_timeout_flags(tmp_path: Path) -> None:
    """The flags reach the proxy (an idle keep-alive client is closed after
    --keepalive-timeout); a non-positive value is a usage error, no traceback."""
    bad = _tern("shadow", "--listen", "127.0.0.1:0", "--primary", "http://127.0.0.1:9",
                "--candidate", "http://127.0.0.1:9", "--store", str(tmp_path / "x.db"),
                "--send-timeout", "0")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--send-timeout" in bad.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Primary() as p, EchoServer("c") as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrate.cli", "shadow", "--listen", f"127.0.0.1:{port}",
             "--primary", p.url, "--candidate", f"http://{c.address}",
             "--store", str(tmp_path / "s.db"), "--keepalive-timeout", "0.5",
             "--client-header-timeout", "0.5", "--client-body-timeout", "0.5",
             "--send-timeout", "0.5", "--tunnel-idle-timeout", "5", "--duration", "20"],
            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        try:
            s = None
            deadline = time.monotonic() + 15
            while s is None and time.monotonic() < deadline:
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                except OSError:
                    time.sleep(0.1)
            assert s is not None
            with s:
                s.sendall(b"GET /cli HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s).endswith(b"ok")
                assert _closed_without_answer(s)
        finally:
            proc.send_signal(2)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert p.paths == ["/cli"]
