"""The HTTP/3 server adapter as conversations: an aioquic client and the adapter's QUIC
connection exchange datagrams in memory (time is an argument); the client sends header lists
as given, so malformed requests are sent as written.
"""

from __future__ import annotations

import datetime
import ssl
from typing import Any

import pytest
from aioquic.h3.connection import H3_ALPN, ErrorCode
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StopSendingReceived
from aioquic.quic.events import StreamReset as QuicStreamReset

from proxy.protocol.events import (
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    StreamReset,
)
from proxy.protocol.h3 import H3Limits, H3Server, request_head, response_fields
from tests.protocol.h3_client import RecordingH3

ADDR = ("127.0.0.1", 4433)


def _cert() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert, key


CERT, KEY = _cert()


class Pair:
    """A client QUIC + H3 connection and the server adapter, wired in memory."""

    def __init__(self, limits: H3Limits | None = None) -> None:
        self.now = 1.0
        ccfg = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN),
                                 server_name="localhost")
        ccfg.verify_mode = ssl.CERT_NONE
        scfg = QuicConfiguration(is_client=False, alpn_protocols=list(H3_ALPN),
                                 max_stream_data=65536)
        scfg.certificate, scfg.private_key = CERT, KEY
        self.client = QuicConnection(configuration=ccfg)
        self.client.connect(ADDR, now=self.now)
        self.quic = QuicConnection(
            configuration=scfg,
            original_destination_connection_id=self.client.original_destination_connection_id)
        self.server = H3Server(self.quic, limits or H3Limits())
        self.ch3 = RecordingH3(self.client)
        self.events: list[object] = []
        self.client_events: list[H3Event] = []
        self.resets: dict[int, int] = {}
        self.stops: dict[int, int] = {}
        self.terminated: ConnectionTerminated | None = None
        self.pump()

    def pump(self) -> list[object]:
        """Move datagrams both ways until quiet; return the adapter's new events."""
        start = len(self.events)
        for _ in range(50):
            moved = False
            for data, _addr in self.client.datagrams_to_send(now=self.now):
                moved = True
                self.quic.receive_datagram(data, ("127.0.0.1", 50000), now=self.now)
            while (ev := self.quic.next_event()) is not None:
                self.events.extend(self.server.quic_event(ev))
            self.server.flush()
            for data, _addr in self.quic.datagrams_to_send(now=self.now):
                moved = True
                self.client.receive_datagram(data, ADDR, now=self.now)
            while (cev := self.client.next_event()) is not None:
                if isinstance(cev, QuicStreamReset):
                    self.resets[cev.stream_id] = cev.error_code
                elif isinstance(cev, StopSendingReceived):
                    self.stops[cev.stream_id] = cev.error_code
                elif isinstance(cev, ConnectionTerminated):
                    self.terminated = cev
                self.client_events.extend(self.ch3.handle_event(cev))
            self.now += 0.001
            if not moved:
                break
        return self.events[start:]

    def request(self, fields: list[tuple[bytes, bytes]], body: bytes | None = None,
                end: bool = True) -> int:
        sid = self.client.get_next_available_stream_id()
        self.ch3.send_headers(sid, fields, end_stream=end and body is None)
        if body is not None:
            self.ch3.send_data(sid, body, end_stream=end)
        return sid

    def send(self, *events: object) -> None:
        for ev in events:
            self.server.send(ev)  # type: ignore[arg-type]
        self.pump()

    def response(self, sid: int) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
        head: list[tuple[bytes, bytes]] = []
        body = b""
        ended = False
        for ev in self.client_events:
            if getattr(ev, "stream_id", None) != sid:
                continue
            if isinstance(ev, HeadersReceived):
                head = ev.headers
                ended = ended or ev.stream_ended
            elif isinstance(ev, DataReceived):
                body += ev.data
                ended = ended or ev.stream_ended
        return head, body, ended


def get(path: bytes = b"/", *extra: tuple[bytes, bytes], method: bytes = b"GET",
        authority: bytes = b"localhost") -> list[tuple[bytes, bytes]]:
    return [(b":method", method), (b":scheme", b"https"), (b":authority", authority),
            (b":path", path), *extra]


def test_request_and_response_round_trip() -> None:
    """A GET becomes RequestHeaders (HTTP/3.0, :authority as host); the response goes back
    with lower-case names and without connection-specific fields."""
    p = Pair()
    sid = p.request(get(b"/a?b=1", (b"user-agent", b"t"), (b"cookie", b"a=1"),
                        (b"cookie", b"b=2")))
    evs = p.pump()
    assert evs == [RequestHeaders(
        stream_id=sid, method=b"GET", target=b"/a?b=1", http_version="3.0",
        raw_headers=((b"host", b"localhost"), (b"user-agent", b"t"), (b"cookie", b"a=1; b=2")),
        host=b"localhost", end_stream=True)]
    p.send(ResponseHeaders(stream_id=sid, status=200,
                           headers=((b"Server", b"tern"), (b"Connection", b"keep-alive"),
                                    (b"X-A", b"1"))),
           ResponseData(stream_id=sid, data=b"hel"), ResponseData(stream_id=sid, data=b"lo"),
           ResponseEnd(stream_id=sid))
    head, body, ended = p.response(sid)
    assert head == [(b":status", b"200"), (b"server", b"tern"), (b"x-a", b"1")]
    assert (body, ended) == (b"hello", True)


def test_body_streams_and_ends() -> None:
    """Body pieces arrive as RequestData, then RequestEnd; Content-Length is carried."""
    p = Pair()
    sid = p.request(get(b"/", (b"content-length", b"6"), method=b"POST"), b"abc", end=False)
    p.pump()
    p.ch3.send_data(sid, b"def", end_stream=True)
    p.pump()
    evs = p.events
    assert isinstance(evs[0], RequestHeaders) and evs[0].content_length == 6
    assert b"".join(e.data for e in evs if isinstance(e, RequestData)) == b"abcdef"
    assert evs[-1] == RequestEnd(stream_id=sid)


@pytest.mark.parametrize("fields", [
    get(b"/", (b"connection", b"close")),
    get(b"/", (b"transfer-encoding", b"chunked")),
    get(b"/", (b"te", b"gzip")),
    get(b"/", (b"X-Upper", b"1")),
    get(b"/", (b"x-a", b" padded")),
    [(b":method", b"GET"), (b"x-a", b"1"), (b":path", b"/"), (b":scheme", b"https"),
     (b":authority", b"localhost")],
    get(b"/", (b":status", b"200")),
    get(b"/", (b":protocol", b"websocket")),
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")],
    [(b":method", b"GET"), (b":authority", b"localhost"), (b":path", b"/")],
], ids=["connection", "transfer-encoding", "te", "upper-case", "white-space", "pseudo-after",
        "status", "protocol", "no-authority", "no-path", "no-scheme"])
def test_malformed_request_is_a_stream_error(fields: list[tuple[bytes, bytes]]) -> None:
    """RFC 9114 §4.1.2: a malformed request resets its stream with H3_MESSAGE_ERROR, the engine
    never sees it, and the connection serves the next request."""
    p = Pair()
    bad = p.request(fields)
    assert p.pump() == []
    assert p.resets.get(bad) == ErrorCode.H3_MESSAGE_ERROR
    assert p.terminated is None
    good = p.request(get())
    evs = p.pump()
    assert [type(e) for e in evs] == [RequestHeaders] and evs[0].stream_id == good


@pytest.mark.parametrize(("fields", "status"), [
    (get(b"x"), 400),
    (get(b"/", method=b"get"), 400),
    (get(b"/", authority=b"a/b"), 400),
    (get(b"/", (b"host", b"other")), 400),
    (get(b"/", (b"content-length", b"+1"), method=b"POST"), 400),
    (get(b"/", method=b"TRACE"), 405),
    (get(b"/", (b"x-big", b"v" * 9000)), 494),
    (get(b"/", *[(b"x-h%d" % i, b"v" * 4000) for i in range(9)]), 494),
], ids=["relative-path", "lower-method", "bad-host", "host-differs",
        "signed-length", "trace", "long-field", "long-list"])
def test_nginx_status_refusals(fields: list[tuple[bytes, bytes]], status: int) -> None:
    """What nginx answers with a status becomes RequestRejected on that stream only."""
    p = Pair()
    sid = p.request(fields, b"a" if fields[0][1] == b"POST" else None)
    evs = p.pump()
    assert len(evs) == 1 and isinstance(evs[0], RequestRejected)
    assert (evs[0].stream_id, evs[0].status_hint) == (sid, status)
    p.send(ResponseHeaders(stream_id=sid, status=400, headers=(), end_stream=True))
    assert p.response(sid)[0][0] == (b":status", b"400")
    assert p.terminated is None


def test_invalid_names_dropped_and_underscores() -> None:
    """ignore_invalid_headers drops names outside [a-z0-9-]; underscores_in_headers keeps ``_``."""
    fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"h"),
              (b":path", b"/"), (b"x_a", b"1"), (b"x.b", b"2"), (b"x-c", b"3")]
    head = request_head(0, fields, True, H3Limits())
    assert isinstance(head, RequestHeaders)
    assert head.raw_headers == ((b"host", b"h"), (b"x-c", b"3"))
    head = request_head(0, fields, True, H3Limits(underscores_in_headers=True))
    assert isinstance(head, RequestHeaders)
    assert head.raw_headers == ((b"host", b"h"), (b"x_a", b"1"), (b"x-c", b"3"))


def test_body_longer_than_content_length() -> None:
    """A body that overruns Content-Length is RequestRejected(400) after the head."""
    p = Pair()
    sid = p.request(get(b"/", (b"content-length", b"2"), method=b"POST"), b"abcd")
    evs = p.pump()
    assert isinstance(evs[0], RequestHeaders)
    assert isinstance(evs[-1], RequestRejected) and evs[-1].status_hint == 400
    assert evs[-1].request_line is None and evs[-1].stream_id == sid


def test_trailers_dropped() -> None:
    """Request trailers are dropped; the body ends with them."""
    p = Pair()
    sid = p.request(get(b"/", method=b"POST"), b"ab", end=False)
    p.pump()
    p.ch3.send_headers(sid, [(b"x-trailer", b"1")], end_stream=True)
    evs = p.pump()
    assert evs == [RequestEnd(stream_id=sid)]


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_header_only_responses(method: bytes, status: int) -> None:
    """HEAD, 204 and 304 end on their HEADERS frame; body events are dropped."""
    p = Pair()
    sid = p.request(get(method=method))
    p.pump()
    # (no Content-Length: aioquic's client checks it against the body even for HEAD)
    p.send(ResponseHeaders(stream_id=sid, status=status, headers=((b"x-a", b"3"),)),
           ResponseData(stream_id=sid, data=b"abc"), ResponseEnd(stream_id=sid))
    head, body, ended = p.response(sid)
    assert head[0] == (b":status", str(status).encode()) and body == b"" and ended


def test_response_before_body_end_stops_sending() -> None:
    """A response completed while the body still comes is followed by STOP_SENDING
    H3_NO_ERROR (RFC 9114 §4.1)."""
    p = Pair()
    sid = p.request(get(method=b"POST"), b"abc", end=False)
    p.pump()
    p.send(ResponseHeaders(stream_id=sid, status=413, headers=(), end_stream=True))
    assert p.stops.get(sid) == ErrorCode.H3_NO_ERROR
    assert p.response(sid)[2]


def test_client_reset_reaches_the_engine() -> None:
    """A client's RESET_STREAM becomes StreamReset for that stream; the connection goes on."""
    p = Pair()
    sid = p.request(get(method=b"POST"), b"abc", end=False)
    p.pump()
    p.client.reset_stream(sid, ErrorCode.H3_REQUEST_CANCELLED)
    evs = p.pump()
    assert StreamReset(stream_id=sid, error_code=ErrorCode.H3_REQUEST_CANCELLED) in evs
    p.send(ResponseHeaders(stream_id=sid, status=200, headers=(), end_stream=True))  # ignored
    assert p.terminated is None


def test_engine_reset_is_internal_error() -> None:
    """StreamReset from the engine mid-response resets with H3_INTERNAL_ERROR."""
    p = Pair()
    sid = p.request(get())
    p.pump()
    p.send(ResponseHeaders(stream_id=sid, status=200, headers=()), StreamReset(stream_id=sid))
    assert p.resets.get(sid) == ErrorCode.H3_INTERNAL_ERROR


def test_hold_freezes_the_stream_window() -> None:
    """While a stream is held the client cannot send past the window; released, it can."""
    p = Pair(H3Limits(stream_buffer_size=65536))
    sid = p.request(get(method=b"POST"), b"", end=False)
    p.pump()
    p.server.hold(sid)
    p.ch3.send_data(sid, b"x" * 300_000, end_stream=True)
    for _ in range(20):
        p.pump()
        p.now += 0.2  # loss timers
    got = sum(len(e.data) for e in p.events if isinstance(e, RequestData))
    assert 0 < got < 140_000  # a couple of windows at most, never the whole body
    p.server.release(sid)
    for _ in range(40):
        p.pump()
        p.now += 0.2
        if p.events and isinstance(p.events[-1], RequestEnd):
            break
    got = sum(len(e.data) for e in p.events if isinstance(e, RequestData))
    assert got == 300_000 and p.events[-1] == RequestEnd(stream_id=sid)


def test_stream_limit_is_max_streams() -> None:
    """http3_max_concurrent_streams is the client's bidirectional stream limit."""
    p = Pair(H3Limits(max_concurrent_streams=3))
    assert p.client._remote_max_streams_bidi == 3


def test_goaway_names_the_next_stream() -> None:
    """goaway() sends GOAWAY with the first stream id not yet received; a later stream is
    rejected with H3_REQUEST_REJECTED."""
    p = Pair()
    p.request(get())
    p.request(get())
    p.pump()
    assert p.ch3.goaway is None
    p.server.goaway()
    p.pump()
    assert p.ch3.goaway == 8 and p.terminated is None
    late = p.request(get())
    assert p.pump() == [] and p.resets.get(late) == ErrorCode.H3_REQUEST_REJECTED


def test_response_fields() -> None:
    """Names are lower-cased; connection-specific fields go."""
    assert response_fields(301, ((b"Location", b"/x"), (b"Transfer-Encoding", b"chunked"),
                                 (b"Keep-Alive", b"t"), (b"Connection", b""))) == [
        (b":status", b"301"), (b"location", b"/x")]


def test_response_pieces_make_one_frame() -> None:
    """Response data sent in one batch is framed once: one DATA frame, FIN with the end."""
    p = Pair()
    sid = p.request(get())
    p.pump()
    p.server.send(ResponseHeaders(stream_id=sid, status=200, headers=()))
    for piece in (b"a", b"bc", b"def"):
        p.server.send(ResponseData(stream_id=sid, data=piece))
    assert p.server.unacked(sid) >= 6  # queued pieces count as unsent
    p.server.flush()
    p.server.send(ResponseData(stream_id=sid, data=b"g"))
    p.server.send(ResponseEnd(stream_id=sid))
    p.pump()
    datas = [e for e in p.client_events if isinstance(e, DataReceived) and e.stream_id == sid]
    assert b"".join(e.data for e in datas) == b"abcdefg" and datas[-1].stream_ended
    assert [e.data for e in datas if e.data] == [b"abcdef", b"g"]
