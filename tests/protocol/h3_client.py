"""Test helpers for HTTP/3: a self-signed certificate and an aioquic HTTP/3 client.

The client is aioquic's own QUIC + H3 connection over a real UDP socket on 127.0.0.1; it sends
header lists as given (no validation), so tests can send malformed requests too.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset


class RecordingH3(H3Connection):
    """aioquic's client H3 connection, recording the server's GOAWAY (aioquic skips it): the
    server's control stream is parsed again here (stream type, then frames)."""

    goaway: int | None = None
    _control: bytes = b""

    def handle_event(self, event: QuicEvent) -> list[H3Event]:
        if isinstance(event, StreamDataReceived) and event.stream_id % 4 == 3:
            self._control += event.data if event.stream_id == self._peer_control_stream_id \
                or (not self._control and event.data[:1] == b"\x00") else b""
            buf = Buffer(data=self._control)
            try:
                if buf.pull_uint_var() == 0:  # control stream
                    while not buf.eof():
                        ftype, size = buf.pull_uint_var(), buf.pull_uint_var()
                        payload = buf.pull_bytes(size)
                        if ftype == FrameType.GOAWAY:
                            self.goaway = Buffer(data=payload).pull_uint_var()
            except BufferReadError:
                pass  # a frame still incomplete
        return super().handle_event(event)


def make_cert(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate (EC P-256) for ``name`` and 127.0.0.1; returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    cpath, kpath = directory / f"{name}.crt", directory / f"{name}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cpath, kpath


@dataclass
class Response:
    """What came back on one request stream."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    reset: int | None = None
    """The server's RESET_STREAM error code, if it reset the stream."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H3Client(QuicConnectionProtocol):
    """An HTTP/3 client connection (aioquic)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = RecordingH3(self._quic)
        self.responses: dict[int, Response] = {}
        self.terminated: ConnectionTerminated | None = None
        self.goaway_seen = False
        self.closed_event = asyncio.Event()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
            self.closed_event.set()
            for r in self.responses.values():
                r.done.set()
        if isinstance(event, StreamReset) and event.stream_id in self.responses:
            r = self.responses[event.stream_id]
            r.reset = event.error_code
            r.done.set()
        for ev in self.h3.handle_event(event):
            r2 = self.responses.get(getattr(ev, "stream_id", -1))
            if r2 is None:
                continue
            if isinstance(ev, HeadersReceived):
                if not r2.status:
                    r2.status = int(dict(ev.headers)[b":status"])
                    r2.headers = [(k, v) for k, v in ev.headers if not k.startswith(b":")]
                if ev.stream_ended:
                    r2.done.set()
            elif isinstance(ev, DataReceived):
                r2.body += ev.data
                if ev.stream_ended:
                    r2.done.set()

    def send_request(self, method: str, path: str, *, authority: str = "localhost",
                     headers: Sequence[tuple[bytes, bytes]] = (), body: bytes | None = None,
                     raw: list[tuple[bytes, bytes]] | None = None, end: bool = True) -> int:
        """Open a stream and send a request; returns the stream id."""
        sid = self._quic.get_next_available_stream_id()
        fields = raw if raw is not None else [
            (b":method", method.encode()), (b":scheme", b"https"),
            (b":authority", authority.encode()), (b":path", path.encode()), *headers]
        self.responses[sid] = Response()
        self.h3.send_headers(sid, fields, end_stream=end and not body)
        if body:
            self.h3.send_data(sid, body, end_stream=end)
        self.transmit()
        return sid

    def send_body(self, sid: int, data: bytes, end: bool = False) -> None:
        self.h3.send_data(sid, data, end_stream=end)
        self.transmit()

    async def response(self, sid: int, timeout: float = 10.0) -> Response:
        r = self.responses[sid]
        await asyncio.wait_for(r.done.wait(), timeout)
        return r

    async def request(self, method: str, path: str, timeout: float = 10.0,
                      **kw: Any) -> Response:
        return await self.response(self.send_request(method, path, **kw), timeout)


def client_config(cafile: Path | None = None, *, server_name: str = "localhost",
                  max_streams: int | None = None) -> QuicConfiguration:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN),
                            server_name=server_name)
    if cafile is not None:
        cfg.load_verify_locations(str(cafile))
    else:
        cfg.verify_mode = ssl.CERT_NONE
    return cfg


def h3_connect(port: int, cafile: Path | None = None, **kw: Any) -> Any:
    """``async with h3_connect(port, cert) as client:`` an :class:`H3Client` to 127.0.0.1."""
    return connect("127.0.0.1", port, configuration=client_config(cafile, **kw),
                   create_protocol=H3Client, wait_connected=True)
