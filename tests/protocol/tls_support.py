"""Helpers for the TLS and HTTP/2 serve tests: throw-away certificates (openssl CLI), a
``tern serve`` process on a config, bounded waits, and a raw HTTP/2 client over a socket.

Everything talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hpack import Decoder, Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

REPO = Path(__file__).resolve().parents[2]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def make_cert(directory: Path, name: str, *, kind: str = "rsa") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (CN and subjectAltName) and its key."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else \
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-subj", f"/CN={name}", "-days", "2",
                    "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


@contextmanager
def tern_serve(conf: Path, *ports: int) -> Iterator[subprocess.Popen[bytes]]:
    """``tern serve conf`` until the block ends (SIGTERM, then SIGKILL after 10 s)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf), "-p",
                             str(conf.parent)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        for p in ports:
            try:
                wait_port(p)
            except AssertionError:
                proc.kill()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AssertionError(f"tern serve did not open port {p}:\n{err}") from None
        yield proc
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


def run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# a raw HTTP/2 client: frames written by hand, what comes back parsed


@dataclass
class Seen:
    """What the server sent on one connection."""

    statuses: dict[int, int] = field(default_factory=dict)
    bodies: dict[int, bytes] = field(default_factory=dict)
    resets: dict[int, int] = field(default_factory=dict)
    goaway: tuple[int, int] | None = None
    closed: bool = False
    frames: int = 0


class RawH2:
    """One HTTP/2 connection (cleartext prior knowledge, or TLS with ALPN h2)."""

    def __init__(self, port: int, *, tls: bool = False, settings: dict[int, int] | None = None,
                 timeout: float = 5.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.enc = Encoder()
        self.dec = Decoder()
        self.seen = Seen()
        self._buf = b""
        self.send(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def block(self, sid: int, path: str = "/", method: str = "GET",
              extra: list[tuple[str, str]] | None = None) -> bytes:
        fields = [(":method", method), (":scheme", "http"), (":path", path),
                  (":authority", "localhost"), *(extra or [])]
        return bytes(self.enc.encode(fields))

    def request(self, sid: int, path: str = "/", *, end: bool = True, method: str = "GET",
                extra: list[tuple[str, str]] | None = None) -> bytes:
        f = HeadersFrame(sid, data=self.block(sid, path, method, extra))
        f.flags.add("END_HEADERS")
        if end:
            f.flags.add("END_STREAM")
        return f.serialize()

    @staticmethod
    def data(sid: int, payload: bytes, end: bool = False) -> bytes:
        f = DataFrame(sid, data=payload)
        if end:
            f.flags.add("END_STREAM")
        return f.serialize()

    def read(self, *, until: float = 8.0, quiet: float = 2.0, want: set[int] | None = None
             ) -> Seen:
        """Read frames until the connection closes, a GOAWAY with an error arrives, every stream
        in ``want`` has ended, or ``quiet`` seconds pass without data (all bounded)."""
        deadline = time.monotonic() + until
        self.sock.settimeout(quiet)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError, OSError):
                self.seen.closed = True
                break
            if not chunk:
                self.seen.closed = True
                break
            self._buf += chunk
            self._parse()
            if self.seen.goaway is not None and self.seen.goaway[1]:
                break
            if want is not None and want <= self.done:
                break
        return self.seen

    @property
    def done(self) -> set[int]:
        return set(self.seen.resets) | set(self._ended)

    _ended: set[int]

    def _parse(self) -> None:
        if not hasattr(self, "_ended"):
            self._ended = set()
        data = self._buf
        while len(data) >= 9:
            f, length = Frame.parse_frame_header(memoryview(data[:9]))
            if len(data) < 9 + length:
                break
            f.parse_body(memoryview(data[9:9 + length]))
            data = data[9 + length:]
            self.seen.frames += 1
            sid = f.stream_id
            if isinstance(f, HeadersFrame):
                status = dict(self.dec.decode(f.data, raw=True)).get(b":status")
                if status is not None and not status.startswith(b"1"):
                    self.seen.statuses[sid] = int(status)
                if "END_STREAM" in f.flags:
                    self._ended.add(sid)
            elif isinstance(f, DataFrame):
                self.seen.bodies[sid] = self.seen.bodies.get(sid, b"") + bytes(f.data)
                if "END_STREAM" in f.flags:
                    self._ended.add(sid)
            elif isinstance(f, RstStreamFrame):
                self.seen.resets.setdefault(sid, f.error_code)
            elif isinstance(f, GoAwayFrame):
                if self.seen.goaway is None or f.error_code:
                    self.seen.goaway = (f.last_stream_id, f.error_code)
            elif isinstance(f, SettingsFrame) and "ACK" not in f.flags:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        self._buf = data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def h2_get(port: int, path: str = "/", *, tls: bool = False) -> tuple[int | None, bytes]:
    """One GET on a fresh connection: status and body (None: no answer)."""
    c = RawH2(port, tls=tls)
    try:
        c.send(c.request(1, path))
        seen = c.read(want={1}, quiet=5.0, until=10)
        return seen.statuses.get(1), seen.bodies.get(1, b"")
    finally:
        c.close()
