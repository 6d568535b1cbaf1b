"""Helpers for the shadow tests: a proxy on a background loop, raw upstreams, a raw client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

from shadow.mirror import Analyzer, ShadowOptions, ShadowProxy
from shadow.store import Store


class ProxyRunner:
    """A :class:`ShadowProxy` on its own uvloop thread."""

    def __init__(self, primary: str, candidate: str, *, store_path: str | None = None,
                 secondary: str | None = None, options: ShadowOptions | None = None,
                 rules: Any = None, mirror: bool = True, attribute: Any = None,
                 **proxy_kwargs: Any) -> None:
        self.store = Store(store_path) if store_path else None
        self.analyzer = (Analyzer(self.store, rules=rules, attribute=attribute)
                         if self.store else None)
        self.proxy = ShadowProxy(primary, candidate, analyzer=self.analyzer,
                                 secondary=secondary, options=options or ShadowOptions(),
                                 mirror=mirror, **proxy_kwargs)
        if self.analyzer is not None:
            self.analyzer.counters = self.proxy.stats.as_dict
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> ProxyRunner:
        self.thread.start()
        if self.analyzer is not None:
            self.analyzer.start()
        fut = asyncio.run_coroutine_threadsafe(self.proxy.start("127.0.0.1", 0), self.loop)
        self.port = fut.result(5)[1]
        return self

    def stop(self) -> None:
        if not self.thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self.loop).result(30)
        if self.analyzer is not None:
            self.analyzer.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.store is not None:
            self.store.close()

    def wait_mirrored(self, n: int, timeout: float = 10.0) -> None:
        """Wait until ``n`` requests were mirrored and (if analysing) analysed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.proxy.stats
            done = st.mirrored >= n and st.pending == 0
            if done and (self.analyzer is None or self.analyzer._q.empty()):
                time.sleep(0.05)
                return
            time.sleep(0.01)
        raise AssertionError(f"not mirrored in time: {self.proxy.stats}")


class RawServer:
    """An upstream that answers every request with fixed bytes (or a function of the request)."""

    def __init__(self, answer: bytes | Callable[[bytes], bytes] | None, *,
                 blackhole: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.blackhole = blackhole
        self.tls = tls
        """Serve HTTPS with this context (the handshake is made on the connection's thread)."""
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self.thread.join(2)

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if not self.blackhole:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        if self.tls is not None:
            conn.settimeout(10)
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                return
            conn.settimeout(None)
            self.conns.append(conn)
        with contextlib.suppress(OSError):
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        n, _, v = line.partition(b":")
                        if n.strip().lower() == b"content-length":
                            length = int(v)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    req = head + b"\r\n\r\n" + buf[:length]
                    buf = buf[length:]
                    self.requests.append(req)
                    answer = self.answer(req) if callable(self.answer) else self.answer
                    assert answer is not None
                    conn.sendall(answer)


def read_response(sock: socket.socket, *, head_request: bool = False,
                  timeout: float = 10.0) -> bytes:
    """Read one whole HTTP/1.1 response (Content-Length, chunked or until close), raw."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return buf
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {ln.partition(b":")[0].strip().lower(): ln.partition(b":")[2].strip()
               for ln in lines[1:]}
    if head_request or status in (204, 304) or status < 200:
        return head + b"\r\n\r\n"
    if b"content-length" in headers:
        n = int(headers[b"content-length"])
        while len(rest) < n:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return head + b"\r\n\r\n" + rest
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while not rest.endswith(b"0\r\n\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return head + b"\r\n\r\n" + rest
    while True:
        data = sock.recv(65536)
        if not data:
            return head + b"\r\n\r\n" + rest
        rest += data


@contextlib.contextmanager
def client(port: int) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        yield s
    finally:
        s.close()


def get(port: int, path: str = "/", *, method: str = "GET", body: bytes = b"",
        headers: str = "") -> bytes:
    """One request on a fresh connection; the raw response."""
    with client(port) as s:
        extra = f"Content-Length: {len(body)}\r\n" if body else ""
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t.example\r\n{headers}{extra}"
                  f"Connection: close\r\n\r\n".encode() + body)
        return read_response(s, head_request=method == "HEAD")


def make_cert(directory: Path, name: str = "localhost") -> tuple[str, str]:
    """A throw-away self-signed EC certificate for ``name`` and 127.0.0.1 (openssl CLI)."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-subj", f"/CN={name}", "-days", "2", "-addext",
                    f"subjectAltName=DNS:{name},IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(crt), str(key)
