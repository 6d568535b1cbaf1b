"""``tern shadow`` relays protocol upgrades (WebSocket) as tunnels: real sockets on 127.0.0.1,
a small asyncio upstream that completes an Upgrade handshake with 101 and echoes bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from shadow.echo import EchoServer
from shadow.mirror import ShadowOptions, server_tls
from tests.shadow_support import ProxyRunner, client, get, make_cert, read_response

UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")


class WsPeer:
    """An upstream on its own asyncio loop: ``/chat`` answers 101 (with ``hello`` in the same
    write) and then echoes every byte (with back-pressure), passes the client's EOF on once its
    echo is written; ``/bye`` answers 101, sends ``bye`` and closes; ``/refuse`` answers 400.
    Anything else: a 200. It records what each connection saw."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.heads: list[bytes] = []
        self.echoed = 0
        self.eof_seen = 0
        """Tunnels whose client side sent EOF (seen by this peer)."""
        self.closed = 0
        """Connections this peer saw end (EOF or error)."""
        self._server: asyncio.Server | None = None

    def __enter__(self) -> WsPeer:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        self.port = fut.result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                path = head.split(b" ", 2)[1]
                if path == b"/refuse":
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n"
                                 b"X-Why: no\r\n\r\nrefused")
                    await writer.drain()
                    continue  # keep-alive: the client may send another request
                if path not in (b"/chat", b"/bye"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
                    continue
                if path == b"/bye":
                    writer.write(SWITCH + b"bye")
                    await writer.drain()
                    writer.close()
                    return
                writer.write(SWITCH + b"hello")
                while True:
                    data = await reader.read(1 << 16)
                    if not data:
                        self.eof_seen += 1
                        writer.write(b"[eof]")
                        await writer.drain()
                        writer.write_eof()
                        return
                    self.echoed += len(data)
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.closed += 1
            writer.close()


@contextlib.contextmanager
def rig(**opts: float) -> Iterator[tuple[WsPeer, EchoServer, ProxyRunner]]:
    with WsPeer() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", options=ShadowOptions(**opts)) as r:
        yield p, c, r


def _upgrade(port: int, target: bytes = b"/chat") -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(UPGRADE.replace(b"/chat", target, 1))
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        assert data, buf
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert head + b"\r\n\r\n" == SWITCH
    return s, rest


def _read_exactly(s: socket.socket, n: int, have: bytes = b"") -> bytes:
    buf = bytearray(have)
    while len(buf) < n:
        data = s.recv(1 << 20)
        assert data, len(buf)
        buf += data
    return bytes(buf)


def _wait(cond: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.01)
    return False


def test_tunnel_messages_both_ways_and_not_mirrored() -> None:
    """A client upgrades and exchanges small messages and a 6 MiB one each way (the client
    writes while it reads: both directions flow at once, with back-pressure); the bytes arrive
    whole and in order; the candidate never hears of the tunnel (``skipped_upgrade``)."""
    big = hashlib.sha256(b"seed").digest() * (6 * (1 << 20) // 32)
    with rig() as (p, c, r):
        s, rest = _upgrade(r.port)
        got = _read_exactly(s, 5, rest)
        assert got == b"hello"
        for i in range(5):
            msg = b"message %d" % i
            s.sendall(msg)
            assert _read_exactly(s, len(msg)) == msg
        sender = threading.Thread(target=s.sendall, args=(big,), daemon=True)
        sender.start()
        echoed = _read_exactly(s, len(big))
        sender.join(10)
        assert hashlib.sha256(echoed).digest() == hashlib.sha256(big).digest()
        s.sendall(b"after")
        assert _read_exactly(s, 5) == b"after"
        s.close()
        assert _wait(lambda: p.closed == 1)
        # the same proxy serves ordinary requests meanwhile and after
        assert get(r.port, "/plain").endswith(b"ok")
        r.wait_mirrored(1)
        st = r.proxy.stats
        assert st.tunnels == 1 and st.skipped_upgrade == 1 and st.balanced()
        assert [x.target for x in c.records] == ["/plain"]  # nothing of the tunnel
        assert p.heads[0].startswith(b"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket")
        assert p.echoed == 5 * 9 + len(big) + 5


def test_client_sends_before_the_101_arrives() -> None:
    """Bytes the client sends right behind the upgrade request (in the same packet) reach the
    primary once the tunnel is up, in order."""
    with rig() as (p, _c, r):
        s = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        s.sendall(UPGRADE + b"early-bytes")
        want = SWITCH + b"hello" + b"early-bytes"
        assert _read_exactly(s, len(want)) == want
        s.close()


def test_half_close_passed_on() -> None:
    """The client shuts its sending side: the primary sees EOF, its last bytes still reach the
    client, then its EOF; the proxy closes both."""
    with rig() as (p, _c, r):
        s, rest = _upgrade(r.port)
        _read_exactly(s, 5, rest)
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
        assert buf == b"last words[eof]"
        s.close()
        assert _wait(lambda: p.eof_seen == 1 and p.closed == 1)
        assert _wait(lambda: not r.proxy._fronts)


def test_primary_closing_closes_the_client() -> None:
    """The primary sends its last bytes and closes: the client gets them, then EOF."""
    with rig() as (_p, _c, r):
        s, rest = _upgrade(r.port, b"/bye")
        buf = rest
        while True:
            data = s.recv(65536)
            if not data:
                break
            buf += data
        assert buf == b"bye"
        s.close()
        assert get(r.port, "/next").endswith(b"ok")


def test_client_closing_closes_the_primary() -> None:
    """The client closes its socket mid-tunnel: the primary's connection ends too."""
    with rig() as (p, _c, r):
        s, rest = _upgrade(r.port)
        _read_exactly(s, 5, rest)
        s.sendall(b"x")
        _read_exactly(s, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset
        assert _wait(lambda: p.closed == 1)
        assert _wait(lambda: not r.proxy._fronts)


def test_primary_refusing_the_upgrade_is_relayed() -> None:
    """A 400 to the upgrade request is relayed as a normal answer and the connection goes on
    as HTTP/1.1 (the next request on it is answered)."""
    with rig() as (p, c, r):
        with client(r.port) as s:
            s.sendall(UPGRADE.replace(b"/chat", b"/refuse", 1))
            out = read_response(s)
            assert out == (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\nX-Why: no\r\n\r\n"
                           b"refused")
            s.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s).endswith(b"\r\n\r\nok")
        r.wait_mirrored(1)
        st = r.proxy.stats
        assert st.tunnels == 0 and st.skipped_upgrade == 1 and st.mirrored == 1
        assert [x.target for x in c.records] == ["/after"]


def test_idle_tunnel_closed() -> None:
    """A tunnel that passes no byte for ``tunnel_idle_timeout`` is closed both ways."""
    with rig(tunnel_idle_timeout=0.5) as (p, _c, r):
        s, rest = _upgrade(r.port)
        _read_exactly(s, 5, rest)
        s.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
        s.close()
        assert _wait(lambda: p.closed == 1)
        assert r.proxy.stats.timeout_tunnel == 1


def test_tunnel_back_pressure_both_ways() -> None:
    """The client sends 32 MiB and reads none of the echo until it has stopped sending: the
    client's socket fills, the proxy stops reading the primary, the primary stops reading
    (its writes wait), the proxy's write buffer towards it fills and the proxy stops reading
    the client: the client's sends block, and the proxy holds a bounded amount meanwhile.
    Then the client reads and everything arrives."""
    total = 32 << 20
    with rig() as (p, _c, r):
        s, rest = _upgrade(r.port)
        _read_exactly(s, 5, rest)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        chunk = b"z" * (1 << 20)
        sent = [0]

        def send() -> None:
            with contextlib.suppress(OSError):
                for _ in range(total // len(chunk)):
                    s.sendall(chunk)
                    sent[0] += len(chunk)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        # nobody reads the echo: the echo peer blocks on its drain, stops reading, and the
        # client's sends block in turn; the proxy holds a bounded amount meanwhile
        last, still = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and time.monotonic() - still < 0.5:
            if sent[0] != last:
                last, still = sent[0], time.monotonic()
            time.sleep(0.02)
        stalled_at = sent[0]

        async def held() -> int:
            (front,) = r.proxy._fronts
            tun = front.tunnel
            assert tun is not None
            return tun.client.get_write_buffer_size() + tun.up.get_write_buffer_size()

        buffered = asyncio.run_coroutine_threadsafe(held(), r.loop).result(5)
        n = len(_read_exactly(s, total))
        t.join(10)
        s.close()
    # asserted once everything is read and closed (a failure leaves no stuck transport)
    assert stalled_at < total  # the client's sends were held back...
    assert buffered < 4 << 20, buffered  # ...while the proxy held a bounded amount
    assert n == total


def test_tunnel_over_tls_listener(tmp_path: Path) -> None:
    """On a TLS listener (ALPN http/1.1) the upgrade and the tunnel work the same; the client
    closing ends the primary's side."""
    crt, key = make_cert(tmp_path)
    ctx = ssl.create_default_context(cafile=crt)
    ctx.set_alpn_protocols(["http/1.1"])
    with WsPeer() as p, EchoServer("c") as c, \
            ProxyRunner(p.url, f"http://{c.address}", listen_tls=server_tls(crt, key)) as r:
        raw = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(UPGRADE)
            want = SWITCH + b"hello"
            assert _read_exactly(s, len(want)) == want
            for i in range(8):  # 2 MiB each way, in pieces (one thread per SSL socket)
                piece = bytes([65 + i]) * (256 << 10)
                s.sendall(piece)
                assert _read_exactly(s, len(piece)) == piece
        assert _wait(lambda: p.closed == 1)
        assert r.proxy.stats.tunnels == 1 and c.records == []
