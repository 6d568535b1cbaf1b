"""The HTTP/2 server adapter as conversations: bytes in, events out; responses in, frames out.

Two clients drive ``H2Server`` in memory: ``Pair`` is a real h2 client
(``H2Connection(client_side=True)``) for well-behaved conversations, ``Raw`` writes frames by hand
(HPACK via ``hpack``, frames via ``hyperframe``) for malformed requests and floods.  Both can cut
the client's bytes into pieces of ``chunk`` bytes; body pieces of a stream are joined before
comparing, so a split feed and a whole feed expect the same events.  What nginx itself does with
each odd request is pinned by ``tests/compat/test_h2_vs_nginx.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    DataReceived,
    Event,
    InformationalResponseReceived,
    ResponseReceived,
    StreamEnded,
)
from h2.events import StreamReset as H2StreamReset
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.protocol.events import (
    RequestData,
    RequestEnd,
    RequestEvent,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    StreamReset,
)
from proxy.protocol.h2 import (
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    H2Limits,
    H2Server,
    LocalProtocolError,
)

CHUNKS = [None, 1, 2, 3, 7, 64]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
INTERNAL_ERROR = 0x2
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/p"), (b":authority", b"a")]


def join_data(events: list[RequestEvent]) -> list[RequestEvent]:
    """Consecutive RequestData of one stream joined (how the pieces were cut does not matter)."""
    out: list[RequestEvent] = []
    for ev in events:
        last = out[-1] if out else None
        if (
            isinstance(ev, RequestData)
            and isinstance(last, RequestData)
            and last.stream_id == ev.stream_id
        ):
            out[-1] = RequestData(stream_id=ev.stream_id, data=last.data + ev.data)
        else:
            out.append(ev)
    return out


def head(sid: int, *extra: tuple[bytes, bytes], **kw: Any) -> RequestHeaders:
    """``RequestHeaders`` of a GET / with :authority a (plus ``extra`` fields)."""
    fields: dict[str, Any] = {
        "stream_id": sid,
        "method": b"GET",
        "target": b"/",
        "http_version": "2.0",
        "raw_headers": ((b"host", b"a"), *extra),
        "host": b"a",
        "end_stream": True,
    }
    fields.update(kw)
    return RequestHeaders(**fields)


def answer(server: H2Server, sid: int, body: bytes = b"ok", status: int = 200) -> None:
    """The engine's whole response on one stream."""
    server.send(ResponseHeaders(stream_id=sid, status=status, headers=((b"content-type", b"t"),)))
    if body:
        server.send(ResponseData(stream_id=sid, data=body))
    server.send(ResponseEnd(stream_id=sid))


# ---------------------------------------------------------------------------------------------
# clients


class Client(H2Connection):
    """h2's client side, made to keep working after a GOAWAY and past our stream limit (so the
    tests can see what the server does with what follows)."""

    def __init__(self, **settings: int) -> None:
        super().__init__(H2Configuration(client_side=True, header_encoding=None))
        self.goaways: list[GoAwayFrame] = []
        self.initiate_connection()
        if settings:
            self.update_settings({SettingCodes[k]: v for k, v in settings.items()})

    @property
    def open_outbound_streams(self) -> int:
        return 0

    def _receive_goaway_frame(self, frame: Frame) -> tuple[list[Frame], list[Event]]:
        assert isinstance(frame, GoAwayFrame)
        self.goaways.append(frame)
        return [], []


class Pair:
    """An h2 client and the adapter, bytes carried between them in memory."""

    def __init__(
        self,
        limits: H2Limits | None = None,
        chunk: int | None = None,
        auto_ack: bool = True,
        **client_settings: int,
    ) -> None:
        self.server = H2Server(limits or H2Limits())
        self.client = Client(**client_settings)
        self.chunk = chunk
        self.auto_ack = auto_ack
        """The client hands received response data back to our windows at once."""
        self.events: list[RequestEvent] = []
        self.client_events: list[Event] = []
        self.body: dict[int, bytes] = {}
        self.server.initiate()
        self.exchange()

    def feed(self, data: bytes) -> None:
        server = self.server
        if self.chunk is None:
            self.events += server.receive_data(data)
        else:
            for i in range(0, len(data), self.chunk):
                self.events += server.receive_data(data[i : i + self.chunk])

    def exchange(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        for _ in range(1000):
            up = self.client.data_to_send()
            if up:
                self.feed(up)
            down = self.server.data_to_send()
            if down:
                for ev in self.client.receive_data(down):
                    self.client_events.append(ev)
                    if isinstance(ev, DataReceived) and ev.stream_id:
                        self.body[ev.stream_id] = self.body.get(ev.stream_id, b"") + (
                            ev.data or b""
                        )
                        if self.auto_ack and ev.flow_controlled_length:
                            self.client.acknowledge_received_data(
                                ev.flow_controlled_length, ev.stream_id
                            )
            if not up and not down:
                return
        raise AssertionError("the conversation does not settle")

    def request(self, sid: int, fields: list[tuple[bytes, bytes]] = GET, end: bool = True) -> None:
        self.client.send_headers(sid, fields, end_stream=end)
        self.exchange()

    def take(self) -> list[RequestEvent]:
        events, self.events = join_data(self.events), []
        return events

    def responses(self) -> dict[int, int]:
        """Status of each response head the client got."""
        return {
            ev.stream_id: int(dict(ev.headers or [])[b":status"])
            for ev in self.client_events
            if isinstance(ev, ResponseReceived) and ev.stream_id
        }

    def ended(self) -> set[int]:
        return {ev.stream_id for ev in self.client_events if isinstance(ev, StreamEnded)}

    def resets(self) -> dict[int, int]:
        return {
            ev.stream_id: int(ev.error_code)
            for ev in self.client_events
            if isinstance(ev, H2StreamReset) and ev.stream_id and ev.error_code is not None
        }


def frames_of(data: bytes) -> list[Frame]:
    out = []
    while data:
        f, length = Frame.parse_frame_header(memoryview(data[:9]))
        f.parse_body(memoryview(data[9 : 9 + length]))
        out.append(f)
        data = data[9 + length :]
    return out


class Raw:
    """A hand-written client: exact frames in, the adapter's frames out."""

    def __init__(
        self, limits: H2Limits | None = None, chunk: int | None = None, preface: bool = True
    ) -> None:
        self.server = H2Server(limits or H2Limits())
        self.enc = Encoder()
        self.chunk = chunk
        self.events: list[RequestEvent] = []
        self.frames: list[Frame] = []
        if preface:
            self.send(PREFACE, SettingsFrame(0))

    def send(self, *items: bytes | Frame, read: bool = True) -> Raw:
        data = b"".join(i if isinstance(i, bytes) else i.serialize() for i in items)
        server = self.server
        if self.chunk is None:
            self.events += server.receive_data(data)
        else:
            for i in range(0, len(data), self.chunk):
                self.events += server.receive_data(data[i : i + self.chunk])
        if read:
            self.read()
        return self

    def read(self) -> list[Frame]:
        new = frames_of(self.server.data_to_send())
        self.frames += new
        return new

    def block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        return bytes(self.enc.encode(fields, huffman=False))

    def headers(
        self,
        sid: int,
        fields: list[tuple[bytes, bytes]],
        end_stream: bool = True,
        end_headers: bool = True,
    ) -> bytes:
        """A HEADERS frame, and CONTINUATION frames when the block exceeds 16384 bytes."""
        block = self.block(fields)
        pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)] or [b""]
        first = HeadersFrame(sid, data=pieces[0])
        if end_stream:
            first.flags.add("END_STREAM")
        frames: list[Frame] = [first]
        frames += [ContinuationFrame(sid, data=p) for p in pieces[1:]]
        if end_headers:
            frames[-1].flags.add("END_HEADERS")
        return b"".join(f.serialize() for f in frames)

    def take(self) -> list[RequestEvent]:
        events, self.events = join_data(self.events), []
        return events

    def resets(self) -> dict[int, int]:
        return {f.stream_id: f.error_code for f in self.frames if isinstance(f, RstStreamFrame)}

    def goaway(self) -> tuple[int, int] | None:
        for f in self.frames:
            if isinstance(f, GoAwayFrame):
                return f.last_stream_id, f.error_code
        return None


def data_frame(sid: int, data: bytes, end: bool = False, pad: int | None = None) -> DataFrame:
    f = DataFrame(sid)
    f.data = data
    if end:
        f.flags.add("END_STREAM")
    if pad is not None:
        f.flags.add("PADDED")
        f.pad_length = pad
    return f


def rst_frame(sid: int, code: int = 0x8) -> RstStreamFrame:
    f = RstStreamFrame(sid)
    f.error_code = code
    return f


# ---------------------------------------------------------------------------------------------
# the connection preface


def test_preface_is_nginx_s() -> None:
    """The server speaks first as nginx does: SETTINGS MAX_CONCURRENT_STREAMS 128 and
    INITIAL_WINDOW_SIZE 65536, then a connection WINDOW_UPDATE up to 2^31-1."""
    server = H2Server()
    server.initiate()
    out = server.data_to_send()
    assert out == (
        b"\x00\x00\x0c\x04\x00\x00\x00\x00\x00"
        b"\x00\x03\x00\x00\x00\x80\x00\x04\x00\x01\x00\x00"
        b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x7f\xff\x00\x00"
    )
    settings_frame, window = frames_of(out)
    assert isinstance(settings_frame, SettingsFrame)
    assert settings_frame.settings == {3: 128, 4: 65536}
    assert isinstance(window, WindowUpdateFrame) and window.window_increment == 2147418112


def test_preface_comes_with_the_first_read() -> None:
    """An I/O layer that forgets ``initiate()`` still gets the preface, once."""
    server = H2Server()
    server.receive_data(PREFACE)
    first = server.data_to_send()
    assert frames_of(first)[0].type == SettingsFrame.type
    server.initiate()
    assert server.data_to_send() == b""


def test_bad_client_preface_is_a_protocol_error() -> None:
    """A client that does not start with the HTTP/2 preface gets GOAWAY PROTOCOL_ERROR."""
    raw = Raw(preface=False)
    raw.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert raw.goaway() == (0, PROTOCOL_ERROR)
    assert raw.server.must_close and raw.server.goaway_sent


# ---------------------------------------------------------------------------------------------
# requests


@pytest.mark.parametrize("chunk", CHUNKS)
def test_get(chunk: int | None) -> None:
    """A GET is one RequestHeaders with end_stream (no RequestEnd), and its response comes back
    whole, however the client's bytes are cut."""
    pair = Pair(chunk=chunk)
    pair.request(1, [*GET[:2], (b":path", b"/a?b=c"), GET[3], (b"user-agent", b"t")])
    assert pair.take() == [head(1, (b"user-agent", b"t"), target=b"/a?b=c")]
    answer(pair.server, 1, b"hello")
    pair.exchange()
    assert pair.responses() == {1: 200}
    assert pair.body[1] == b"hello" and pair.ended() == {1}
    assert not pair.server.must_close


@pytest.mark.parametrize("chunk", CHUNKS)
def test_post_body_in_many_frames(chunk: int | None) -> None:
    """A body sent as 40 DATA frames comes out as RequestData (pieces of one read joined) and
    RequestEnd; Content-Length is given to the engine."""
    pair = Pair(chunk=chunk)
    body = bytes(range(256)) * 20
    pair.client.send_headers(1, [*POST, (b"content-length", b"%d" % len(body))])
    for i in range(0, len(body), 128):
        pair.client.send_data(1, body[i : i + 128], end_stream=i + 128 >= len(body))
    pair.exchange()
    assert pair.take() == [
        RequestHeaders(
            stream_id=1,
            method=b"POST",
            target=b"/p",
            http_version="2.0",
            raw_headers=((b"host", b"a"), (b"content-length", b"5120")),
            host=b"a",
            content_length=5120,
        ),
        RequestData(stream_id=1, data=body),
        RequestEnd(stream_id=1),
    ]


def test_body_without_content_length_is_chunked() -> None:
    """A body without Content-Length is announced as nginx sees it: ``chunked``."""
    pair = Pair()
    pair.request(1, POST, end=False)
    assert pair.take() == [
        head(1, method=b"POST", target=b"/p", end_stream=False, chunked=True),
    ]
    pair.client.send_data(1, b"abc", end_stream=True)
    pair.exchange()
    assert pair.take() == [RequestData(stream_id=1, data=b"abc"), RequestEnd(stream_id=1)]


def test_cookies_are_joined_at_the_end_and_authority_is_host() -> None:
    """Cookie crumbs become one ``cookie`` field at the end, joined with "; "; ``:authority``
    stands as ``host`` where it came, as in nginx's ``headers_in``."""
    raw = Raw()
    raw.send(raw.headers(1, [*GET, (b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"b=2")]))
    assert raw.take() == [head(1, (b"x-b", b"2"), (b"cookie", b"a=1; b=2"))]


def test_host_header_instead_of_authority() -> None:
    """A ``host`` field alone names the host (nginx takes it; checked)."""
    raw = Raw()
    raw.send(raw.headers(1, [*GET[:3], (b"host", b"h:8080")]))
    assert raw.take() == [
        RequestHeaders(
            stream_id=1,
            method=b"GET",
            target=b"/",
            http_version="2.0",
            raw_headers=((b"host", b"h:8080"),),
            host=b"h:8080",
            end_stream=True,
        )
    ]


def test_request_trailers_are_dropped() -> None:
    """Trailers end the request (RequestEnd) and are not passed on (nginx 1.22 takes none)."""
    pair = Pair()
    pair.request(1, POST, end=False)
    pair.client.send_data(1, b"abc")
    pair.client.send_headers(1, [(b"x-trailer", b"1")], end_stream=True)
    pair.exchange()
    assert pair.take() == [
        head(1, method=b"POST", target=b"/p", end_stream=False, chunked=True),
        RequestData(stream_id=1, data=b"abc"),
        RequestEnd(stream_id=1),
    ]


def test_padding_is_acknowledged_and_not_delivered() -> None:
    """Padding counts against the windows but is no body: the adapter hands it back itself."""
    raw = Raw()
    raw.send(raw.headers(1, POST, end_stream=False), data_frame(1, b"abc", end=True, pad=200))
    assert raw.take()[1:] == [RequestData(stream_id=1, data=b"abc"), RequestEnd(stream_id=1)]
    manager = raw.server._conn._inbound_flow_control_window_manager  # h2's connection window
    assert manager._bytes_processed == 201  # the padding and its length byte
    raw.server.consumed(1, 3)
    assert manager._bytes_processed == 204


# ---------------------------------------------------------------------------------------------
# request body flow control


def test_upload_waits_for_consumed() -> None:
    """Request data counts against the client's windows until the engine says it consumed it:
    the client stops at the stream window (65536) and goes on after ``consumed``."""
    pair = Pair()
    body = b"x" * 200_000
    pair.request(1, [*POST, (b"content-length", b"200000")], end=False)
    sent = 0
    received = 0
    for _ in range(100):
        window = pair.client.local_flow_control_window(1)
        n = min(window, len(body) - sent, pair.client.max_outbound_frame_size)
        if n:
            pair.client.send_data(1, body[sent : sent + n], end_stream=sent + n == len(body))
            sent += n
        pair.exchange()
        got = sum(len(e.data) for e in pair.events if isinstance(e, RequestData))
        pair.events = [e for e in pair.events if not isinstance(e, RequestData)]
        if got:
            assert received + got <= 65536 or sent > 65536
            pair.server.consumed(1, got)
        received += got
        if received == len(body):
            break
    assert received == len(body)
    assert pair.take()[-1] == RequestEnd(stream_id=1)


def test_unconsumed_body_is_handed_back_when_the_stream_ends() -> None:
    """Body data the engine never consumed goes back to the connection window once its stream is
    over, so ignored uploads cannot starve the connection."""
    raw = Raw()
    raw.send(raw.headers(1, POST, end_stream=False), data_frame(1, b"x" * 1000, end=True))
    conn = raw.server._conn
    assert conn.inbound_flow_control_window == (1 << 31) - 1 - 1000
    answer(raw.server, 1)
    raw.read()
    assert conn._inbound_flow_control_window_manager._bytes_processed == 1000


# ---------------------------------------------------------------------------------------------
# responses and response flow control


@pytest.mark.parametrize("size", [65535, 65536, 200_000])
def test_response_larger_than_the_window(size: int) -> None:
    """A response beyond the client's window waits in the adapter (``buffered``,
    ``stalled_streams``) and goes out as WINDOW_UPDATEs arrive: nothing lost, nothing reordered."""
    pair = Pair(auto_ack=False)
    pair.request(1)
    body = bytes(i % 251 for i in range(size))
    answer(pair.server, 1, body)
    pair.exchange()
    assert len(pair.body[1]) == min(size, 65535)
    waiting = size - 65535
    assert pair.server.buffered(1) == waiting and pair.server.buffered_bytes == waiting
    assert pair.server.stalled_streams() == ([1] if waiting else [])
    while 1 not in pair.ended():
        pair.client.acknowledge_received_data(len(pair.body[1]), 1)
        pair.client.increment_flow_control_window(65535, 1)
        pair.client.increment_flow_control_window(65535)
        pair.exchange()
    assert pair.body[1] == body
    assert pair.server.buffered_bytes == 0 and pair.server.stalled_streams() == []


def test_zero_window_stall_is_visible_and_can_be_reset() -> None:
    """A client that never opens its window (INITIAL_WINDOW_SIZE 0) stalls the stream: the I/O
    layer sees it in ``stalled_streams`` and resets it (nginx's send_timeout)."""
    pair = Pair(INITIAL_WINDOW_SIZE=0)
    pair.request(1)
    answer(pair.server, 1, b"x" * 1000)
    pair.exchange()
    assert pair.body.get(1, b"") == b""
    assert pair.server.stalled_streams() == [1] and pair.server.buffered(1) == 1000
    pair.server.send(StreamReset(stream_id=1))
    pair.exchange()
    assert pair.resets() == {1: INTERNAL_ERROR}
    assert pair.server.stalled_streams() == [] and pair.server.buffered_bytes == 0


def test_settings_raising_the_window_releases_data() -> None:
    """A SETTINGS INITIAL_WINDOW_SIZE increase lets waiting data out, as a WINDOW_UPDATE does."""
    pair = Pair(auto_ack=False, INITIAL_WINDOW_SIZE=10)
    pair.request(1)
    answer(pair.server, 1, b"0123456789abcdef")
    pair.exchange()
    assert pair.body[1] == b"0123456789"
    pair.client.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 100})
    pair.exchange()
    assert pair.body[1] == b"0123456789abcdef" and pair.ended() == {1}


def test_one_batch_is_one_data_frame_with_end_stream() -> None:
    """Pieces sent in one batch are framed together, END_STREAM on the last DATA frame."""
    raw = Raw()
    raw.send(raw.headers(1, GET))
    server = raw.server
    server.send(ResponseHeaders(stream_id=1, status=200, headers=()))
    for piece in (b"ab", b"cd", b"ef"):
        server.send(ResponseData(stream_id=1, data=piece))
    server.send(ResponseEnd(stream_id=1))
    headers, data = raw.read()
    assert isinstance(headers, HeadersFrame) and isinstance(data, DataFrame)
    assert data.data == b"abcdef" and "END_STREAM" in data.flags


def test_data_frames_respect_the_peer_frame_size() -> None:
    """Data is cut at the peer's SETTINGS_MAX_FRAME_SIZE (16384 unless it says more)."""
    raw = Raw()
    raw.send(raw.headers(1, GET))
    answer(raw.server, 1, b"y" * 40000)
    sizes = [len(f.data) for f in raw.read() if isinstance(f, DataFrame)]
    assert sizes == [16384, 16384, 7232]


def test_end_alone_is_an_empty_data_frame() -> None:
    """ResponseEnd after data already framed goes out as an empty DATA frame with END_STREAM."""
    raw = Raw()
    raw.send(raw.headers(1, GET))
    server = raw.server
    server.send(ResponseHeaders(stream_id=1, status=200, headers=()))
    server.send(ResponseData(stream_id=1, data=b"ab"))
    raw.read()
    server.send(ResponseEnd(stream_id=1))
    (end,) = raw.read()
    assert isinstance(end, DataFrame) and end.data == b"" and "END_STREAM" in end.flags


def test_response_header_names_order_and_connection_fields() -> None:
    """Names go out lower case, nginx's block first (server, date, content-type, content-length,
    last-modified, location), connection-specific fields dropped; after an empty Connection
    marker nothing is moved."""
    pair = Pair()
    pair.request(1)
    pair.server.send(
        ResponseHeaders(
            stream_id=1,
            status=302,
            headers=(
                (b"X-A", b"1"),
                (b"Location", b"/l"),
                (b"Content-Type", b"t"),
                (b"Server", b"nginx"),
                (b"Connection", b"keep-alive"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Connection", b""),
                (b"Last-Modified", b"x"),
                (b"Set-Cookie", b"c=1"),
            ),
            end_stream=True,
        )
    )
    pair.exchange()
    (resp,) = [e for e in pair.client_events if isinstance(e, ResponseReceived)]
    assert resp.headers == [
        (b":status", b"302"),
        (b"server", b"nginx"),
        (b"content-type", b"t"),
        (b"location", b"/l"),
        (b"x-a", b"1"),
        (b"last-modified", b"x"),
        (b"set-cookie", b"c=1"),
    ]


def test_large_response_head_uses_continuation() -> None:
    """A response head over the peer's frame size goes out as HEADERS plus CONTINUATION frames,
    END_STREAM on the HEADERS frame, END_HEADERS on the last."""
    pair = Pair()
    pair.request(1)
    big = tuple((b"x-%d" % i, bytes([97 + i % 26]) * 1000) for i in range(40))
    pair.server.send(ResponseHeaders(stream_id=1, status=200, headers=big, end_stream=True))
    pair.server.send(ResponseEnd(stream_id=1))  # late: ignored
    out = pair.server.data_to_send()
    kinds = [type(f).__name__ for f in frames_of(out)]
    assert kinds[0] == "HeadersFrame" and set(kinds[1:]) == {"ContinuationFrame"}
    resp, ended = pair.client.receive_data(out)
    assert isinstance(resp, ResponseReceived) and isinstance(ended, StreamEnded)
    assert resp.headers is not None and resp.headers[1:] == list(big)


@pytest.mark.parametrize(
    ("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)], ids=["HEAD", "204", "304"]
)
def test_header_only_responses_drop_their_body(method: bytes, status: int) -> None:
    """HEAD, 204 and 304 end on the HEADERS frame (nginx's header_only); the engine's body is
    dropped and its ResponseEnd frees the stream."""
    raw = Raw()
    raw.send(raw.headers(1, [(b":method", method), *GET[1:]]))
    answer(raw.server, 1, b"body", status=status)
    (frame,) = raw.read()
    assert isinstance(frame, HeadersFrame) and "END_STREAM" in frame.flags
    assert raw.server._active == 0 and raw.server._streams == {}


def test_interim_response() -> None:
    """A 1xx head goes out as an informational HEADERS frame before the final one."""
    pair = Pair()
    pair.request(1, [*POST, (b"expect", b"100-continue")], end=False)
    pair.server.send(ResponseHeaders(stream_id=1, status=100, headers=()))
    pair.exchange()
    assert any(isinstance(e, InformationalResponseReceived) for e in pair.client_events)


def test_early_response_resets_the_unread_body_with_no_error() -> None:
    """A response complete while the request body still comes is followed by RST_STREAM
    NO_ERROR (nginx, checked); the body's data is handed back to the connection window."""
    raw = Raw()
    raw.send(raw.headers(1, [*POST, (b"content-length", b"10")], end_stream=False))
    raw.send(data_frame(1, b"abc"))
    answer(raw.server, 1)
    raw.read()
    assert raw.resets() == {1: NO_ERROR}
    raw.send(data_frame(1, b"defghij", end=True))
    assert raw.take()[-1] == RequestData(stream_id=1, data=b"abc")


def test_client_reset_reaches_the_engine() -> None:
    """RST_STREAM from the client becomes StreamReset; the engine's late events are ignored."""
    pair = Pair()
    pair.request(1)
    pair.client.reset_stream(1, 0x8)
    pair.exchange()
    assert pair.take() == [head(1), StreamReset(stream_id=1, error_code=0x8)]
    answer(pair.server, 1)
    assert frames_of(pair.server.data_to_send()) == []


def test_client_goaway_is_ignored() -> None:
    """A client's GOAWAY does not stop the responses it is owed (nginx skips it)."""
    raw = Raw()
    raw.send(raw.headers(1, GET), GoAwayFrame(0))
    answer(raw.server, 1)
    assert [type(f).__name__ for f in raw.read()] == ["HeadersFrame", "DataFrame"]


def test_eof_resets_streams_in_progress() -> None:
    """EOF ends the connection: the engine gets StreamReset for what it was serving."""
    raw = Raw()
    raw.send(raw.headers(1, GET), raw.headers(3, GET))
    answer(raw.server, 1)
    raw.take()
    assert raw.server.receive_data(b"") == [StreamReset(stream_id=3, error_code=0)]
    assert raw.server.must_close
    assert raw.server.receive_data(raw.headers(5, GET)) == []


# ---------------------------------------------------------------------------------------------
# the engine's mistakes


def test_engine_mistakes_raise() -> None:
    """Out-of-order response events, a 101, and unknown streams are the engine's bugs."""
    raw = Raw()
    raw.send(raw.headers(1, GET), raw.headers(3, GET), raw.headers(5, GET))
    server = raw.server
    with pytest.raises(LocalProtocolError):
        server.send(ResponseData(stream_id=1, data=b"x"))
    with pytest.raises(LocalProtocolError):
        server.send(ResponseEnd(stream_id=1))
    server.send(ResponseHeaders(stream_id=1, status=200, headers=()))
    with pytest.raises(LocalProtocolError):
        server.send(ResponseHeaders(stream_id=1, status=200, headers=()))
    with pytest.raises(LocalProtocolError):
        server.send(ResponseHeaders(stream_id=3, status=101, headers=()))
    with pytest.raises(LocalProtocolError):
        server.send(ResponseHeaders(stream_id=7, status=200, headers=()))
    with pytest.raises(LocalProtocolError):
        server.send(ResponseHeaders(stream_id=2, status=200, headers=()))


# ---------------------------------------------------------------------------------------------
# limits


def test_129th_concurrent_stream_is_refused() -> None:
    """With 128 streams in progress the 129th is reset with REFUSED_STREAM and the connection
    goes on; once a stream is answered a new one is served (nginx, checked)."""
    pair = Pair()
    for i in range(129):
        pair.client.send_headers(1 + 2 * i, GET, end_stream=True)
    pair.exchange()
    events = pair.take()
    assert len(events) == 128 and events[-1] == head(255)
    assert pair.resets() == {257: REFUSED_STREAM}
    assert not pair.client.goaways and not pair.server.must_close
    answer(pair.server, 1)
    pair.request(259)
    assert pair.take() == [head(259)]
    pair.request(261)
    assert pair.resets() == {257: REFUSED_STREAM, 261: REFUSED_STREAM}


def test_new_streams_per_read_are_capped() -> None:
    """At most 2 * max_concurrent_streams new streams are taken from one read; the rest are
    refused (Debian's CVE-2023-44487 patch, checked): streams still open get REFUSED_STREAM,
    ones the client already reset are just not served."""
    raw = Raw(H2Limits(max_concurrent_streams=4, max_resets=(1000, 2000)))
    frames: list[bytes | Frame] = []
    for i in range(9):
        frames += [raw.headers(1 + 2 * i, GET), rst_frame(1 + 2 * i)]
    raw.send(*frames, raw.headers(19, GET))
    served = sorted({e.stream_id for e in raw.take() if isinstance(e, RequestHeaders)})
    assert served == [1, 3, 5, 7, 9, 11, 13, 15]
    assert raw.resets() == {19: REFUSED_STREAM} and raw.goaway() is None
    raw.send(raw.headers(21, GET))
    assert raw.take() == [head(21)]


def test_max_requests_sends_goaway() -> None:
    """The max_requests-th stream (keepalive_requests) goes out with GOAWAY NO_ERROR naming it;
    streams in progress are still answered, later ones refused; then the connection must close."""
    pair = Pair(H2Limits(max_requests=3))
    for sid in (1, 3, 5, 7):
        pair.client.send_headers(sid, GET, end_stream=True)
    pair.exchange()
    assert [e.stream_id for e in pair.take()] == [1, 3, 5]
    (goaway,) = pair.client.goaways
    assert (goaway.last_stream_id, goaway.error_code) == (5, NO_ERROR)
    assert pair.resets() == {7: REFUSED_STREAM}
    assert pair.server.goaway_sent and not pair.server.keep_alive and not pair.server.must_close
    for sid in (1, 3, 5):
        answer(pair.server, sid)
    pair.exchange()
    assert pair.responses() == {1: 200, 3: 200, 5: 200}
    assert pair.server.must_close


def test_graceful_close() -> None:
    """``close()`` sends GOAWAY NO_ERROR with the last stream id; streams in progress finish."""
    pair = Pair()
    pair.request(1)
    pair.request(3)
    pair.server.close()
    pair.exchange()
    assert [(g.last_stream_id, g.error_code) for g in pair.client.goaways] == [(3, NO_ERROR)]
    pair.request(5)
    assert pair.resets() == {5: REFUSED_STREAM}
    answer(pair.server, 1)
    assert not pair.server.must_close
    answer(pair.server, 3)
    pair.exchange()
    assert pair.responses() == {1: 200, 3: 200} and pair.server.must_close


def test_close_with_an_error() -> None:
    """``close(code)`` sends GOAWAY with the code at once; nothing more goes out."""
    raw = Raw()
    raw.send(raw.headers(1, GET))
    raw.server.close(ENHANCE_YOUR_CALM)
    raw.read()
    assert raw.goaway() == (1, ENHANCE_YOUR_CALM) and raw.server.must_close
    answer(raw.server, 1)
    assert raw.read() == []


@pytest.mark.parametrize(
    ("fields", "calm"),
    [
        ([(b"x-a", b"v" * 8192)], False),
        ([(b"x-a", b"v" * 8193)], True),
        ([(b"x-" + b"n" * 8190, b"v")], False),
        ([(b"x-" + b"n" * 8191, b"v")], True),
        ([(b"x-%d" % i, b"v" * 8000) for i in range(4)], False),
        # the list: names + values of every field, pseudo-headers included (GET's are 38 bytes)
        ([(b"x-a", b"v" * 8000)] * 4 + [(b"x-b", b"v" * 715)], False),
        ([(b"x-a", b"v" * 8000)] * 4 + [(b"x-b", b"v" * 716)], True),
    ],
    ids=[
        "field-8192",
        "field-8193",
        "name-8192",
        "name-8193",
        "list-4x8k",
        "list-32768",
        "list-32769",
    ],
)
def test_header_size_limits(fields: list[tuple[bytes, bytes]], calm: bool) -> None:
    """large_client_header_buffers 4 8k: a field over 8192 bytes or a list over 32768 is a
    GOAWAY ENHANCE_YOUR_CALM (nginx, checked at the same boundaries)."""
    raw = Raw()
    raw.send(raw.headers(1, GET + fields))
    if calm:
        assert raw.goaway() == (1, ENHANCE_YOUR_CALM) and raw.take() == []
    else:
        assert raw.goaway() is None and isinstance(raw.take()[0], RequestHeaders)


def test_a_huffman_coded_field_is_measured_as_sent() -> None:
    """nginx measures a field as sent: 10000 bytes Huffman-coded to under 8192 pass, 3000 bytes
    Huffman-coded to over 8192 do not."""
    for value, calm in ((b"0" * 10000, False), (b"\xff" * 3000, True)):
        raw = Raw()
        block = bytes(raw.enc.encode(GET + [(b"x-a", value)], huffman=True))
        raw.send(HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]))
        if calm:
            assert raw.goaway() == (1, ENHANCE_YOUR_CALM)
        else:
            assert raw.goaway() is None and raw.take() == [head(1, (b"x-a", value))]


# ---------------------------------------------------------------------------------------------
# malformed requests: nginx 1.22's answers, and RFC 9113's where nginx has none

RST = "rst"
OK = "ok"
MALFORMED: list[tuple[str, list[tuple[bytes, bytes]], object, object]] = [
    # (id, fields, strict outcome, nginx outcome)
    ("uppercase-name", [*GET, (b"X-Foo", b"1")], RST, RST),
    ("name-with-space", [*GET, (b"x a", b"1")], RST, RST),
    ("name-with-colon", [*GET, (b"x:a", b"1")], RST, RST),
    ("name-with-del", [*GET, (b"x\x7f", b"1")], RST, RST),
    ("value-with-nul", [*GET, (b"x-a", b"a\x00b")], RST, RST),
    ("value-with-cr", [*GET, (b"x-a", b"a\rb")], RST, RST),
    ("value-with-lf", [*GET, (b"x-a", b"a\nb")], RST, RST),
    ("uppercase-pseudo", [*GET, (b":Path", b"/")], RST, RST),
    ("connection", [*GET, (b"connection", b"keep-alive")], RST, OK),
    ("keep-alive", [*GET, (b"keep-alive", b"1")], RST, OK),
    ("proxy-connection", [*GET, (b"proxy-connection", b"x")], RST, OK),
    ("upgrade", [*GET, (b"upgrade", b"websocket")], RST, OK),
    ("transfer-encoding-chunked", [*GET, (b"transfer-encoding", b"chunked")], RST, OK),
    ("transfer-encoding-gzip", [*GET, (b"transfer-encoding", b"gzip")], RST, 501),
    ("te-gzip", [*GET, (b"te", b"gzip")], RST, OK),
    ("te-trailers", [*GET, (b"te", b"trailers")], OK, OK),
    ("pseudo-after-regular", [*GET[:2], (b"x-a", b"1"), *GET[2:]], RST, OK),
    ("name-high-byte", [*GET, (b"x-\xe9", b"1")], RST, OK),
    ("value-leading-space", [*GET, (b"x-a", b" v")], RST, OK),
    ("value-trailing-tab", [*GET, (b"x-a", b"v\t")], RST, OK),
    ("missing-method", GET[1:], 400, 400),
    ("missing-scheme", [GET[0], *GET[2:]], 400, 400),
    ("missing-path", [*GET[:2], GET[3]], 400, 400),
    ("missing-authority", GET[:3], 400, 400),
    ("duplicate-path", [*GET, (b":path", b"/x")], 400, 400),
    ("duplicate-method", [*GET, (b":method", b"GET")], 400, 400),
    ("duplicate-scheme", [*GET, (b":scheme", b"http")], 400, 400),
    ("unknown-pseudo", [*GET, (b":foo", b"1")], 400, 400),
    ("status-in-request", [*GET, (b":status", b"200")], 400, 400),
    ("empty-path", [*GET[:2], (b":path", b""), GET[3]], 400, 400),
    ("path-without-slash", [*GET[:2], (b":path", b"abc"), GET[3]], 400, 400),
    ("path-asterisk", [(b":method", b"OPTIONS"), GET[1], (b":path", b"*"), GET[3]], 400, 400),
    ("path-absolute", [*GET[:2], (b":path", b"http://x/"), GET[3]], 400, 400),
    ("path-with-space", [*GET[:2], (b":path", b"/a b"), GET[3]], 400, 400),
    ("path-with-query", [*GET[:2], (b":path", b"/?a=1"), GET[3]], OK, OK),
    ("empty-method", [(b":method", b""), *GET[1:]], 400, 400),
    ("lowercase-method", [(b":method", b"get"), *GET[1:]], 400, 400),
    ("unknown-method", [(b":method", b"FOO"), *GET[1:]], OK, OK),
    ("bad-scheme", [GET[0], (b":scheme", b"1ttp"), *GET[2:]], 400, 400),
    ("other-scheme", [GET[0], (b":scheme", b"foo"), *GET[2:]], OK, OK),
    ("authority-and-host", [*GET, (b"host", b"a")], 400, 400),
    ("bad-authority", [*GET[:3], (b":authority", b"a/b")], 400, 400),
    ("bad-host", [*GET[:3], (b"host", b"a/b")], 400, 400),
    ("duplicate-if-modified-since", [*GET, *[(b"if-modified-since", b"x")] * 2], 400, 400),
    ("content-length-with-end-stream", [*GET, (b"content-length", b"5")], 400, 400),
    ("content-length-0-with-end-stream", [*GET, (b"content-length", b"0")], OK, OK),
    ("content-length-not-a-number", [*GET, (b"content-length", b"abc")], 400, 400),
    ("content-length-twice", [*GET, *[(b"content-length", b"0")] * 2], 400, 400),
    (
        "chunked-and-length",
        [*GET, (b"transfer-encoding", b"chunked"), (b"content-length", b"0")],
        RST,
        400,
    ),
    ("trace", [(b":method", b"TRACE"), *GET[1:]], 405, 405),
    ("connect", [(b":method", b"CONNECT"), (b":authority", b"a:443")], 400, 400),
    ("underscore-dropped", [*GET, (b"x_a", b"1")], OK, OK),
    ("dot-dropped", [*GET, (b"x.a", b"1")], OK, OK),
    ("first-bad-field-decides-400", [*GET, (b":foo", b"1"), (b"X-Up", b"1")], 400, 400),
    ("first-bad-field-decides-rst", [*GET, (b"X-Up", b"1"), (b":foo", b"1")], RST, RST),
]


def outcome(raw: Raw, sid: int) -> object:
    """What became of a request: RST, its RequestRejected status, or OK."""
    events = raw.take()
    if sid in raw.resets():
        assert raw.resets()[sid] == PROTOCOL_ERROR and events == []
        return RST
    (ev,) = events
    if isinstance(ev, RequestRejected):
        return ev.status_hint
    assert isinstance(ev, RequestHeaders)
    return OK


@pytest.mark.parametrize(
    ("fields", "strict", "nginx"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_requests(
    fields: list[tuple[bytes, bytes]], strict: object, nginx: object
) -> None:
    """Each rule: RST_STREAM PROTOCOL_ERROR, RequestRejected with nginx's status, or accepted;
    with ``strict`` (RFC 9113 §8.2) and as nginx 1.22 (``strict=False``, checked).  Either way
    the connection goes on."""
    for mode, expected in ((True, strict), (False, nginx)):
        raw = Raw(H2Limits(strict=mode))
        raw.send(raw.headers(1, fields))
        assert outcome(raw, 1) == expected, f"strict={mode}"
        raw.send(raw.headers(3, GET))
        assert raw.take() == [head(3)] and raw.goaway() is None


def test_dropped_fields_do_not_reach_the_engine() -> None:
    """Invalid names nginx ignores are dropped; with underscores_in_headers ``_`` is kept and with
    ignore_invalid_headers off all are kept."""
    fields = [*GET, (b"x_a", b"1"), (b"x.b", b"2")]
    for limits, kept in (
        (H2Limits(), ()),
        (H2Limits(underscores_in_headers=True), ((b"x_a", b"1"),)),
        (H2Limits(ignore_invalid_headers=False), ((b"x_a", b"1"), (b"x.b", b"2"))),
    ):
        raw = Raw(limits)
        raw.send(raw.headers(1, fields))
        assert raw.take() == [head(1, *kept)]


def test_empty_name_is_a_connection_error() -> None:
    """A field with an empty name: GOAWAY PROTOCOL_ERROR (nginx "zero header name length")."""
    raw = Raw()
    raw.send(raw.headers(1, [*GET, (b"", b"v")]))
    assert raw.goaway() == (1, PROTOCOL_ERROR)


@pytest.mark.parametrize("chunk", [None, 1, 5])
@pytest.mark.parametrize(("body", "why"), [(b"abcdef", "larger"), (b"abc", "prematurely")])
def test_content_length_mismatch(chunk: int | None, body: bytes, why: str) -> None:
    """A body longer or shorter than its Content-Length: RequestRejected(400) after the headers
    (nginx answers 400, checked), and the rest of the body is dropped."""
    raw = Raw(chunk=chunk)
    raw.send(raw.headers(1, [*POST, (b"content-length", b"4")], end_stream=False))
    raw.send(*(data_frame(1, body[i : i + 1], end=i == len(body) - 1) for i in range(len(body))))
    events = raw.take()
    assert events[0] == head(
        1,
        (b"content-length", b"4"),
        method=b"POST",
        target=b"/p",
        end_stream=False,
        content_length=4,
    )
    rejected = events[-1]
    assert isinstance(rejected, RequestRejected) and rejected.status_hint == 400
    assert why in rejected.reason
    assert not any(isinstance(e, RequestEnd) for e in events)
    assert b"".join(e.data for e in events if isinstance(e, RequestData)) == body[:4]
    answer(raw.server, 1, status=400)
    assert raw.goaway() is None


# ---------------------------------------------------------------------------------------------
# floods


def test_rapid_reset() -> None:
    """Streams opened and reset at once (CVE-2023-44487): more than 100 of 200 is a GOAWAY
    ENHANCE_YOUR_CALM, and the engine gets StreamReset for each stream it had."""
    raw = Raw()
    for i in range(100):
        raw.send(raw.headers(1 + 2 * i, GET), rst_frame(1 + 2 * i))
    assert raw.goaway() is None
    assert len(raw.take()) == 200  # RequestHeaders, StreamReset
    raw.send(raw.headers(201, GET), raw.headers(203, GET), rst_frame(201))
    assert raw.goaway() == (203, ENHANCE_YOUR_CALM)
    assert raw.take() == [
        head(201),
        head(203),
        StreamReset(stream_id=201, error_code=ENHANCE_YOUR_CALM),
        StreamReset(stream_id=203, error_code=ENHANCE_YOUR_CALM),
    ]
    assert raw.server.must_close


def test_resets_of_answered_streams_do_not_count() -> None:
    """A client resetting streams after their response completed is no flood."""
    raw = Raw()
    for i in range(150):
        sid = 1 + 2 * i
        raw.send(raw.headers(sid, POST, end_stream=False))
        answer(raw.server, sid)
        raw.send(rst_frame(sid, NO_ERROR))
    assert raw.goaway() is None


def test_continuation_flood() -> None:
    """A header block spread over more than 32 CONTINUATION frames (empty ones too) is a GOAWAY
    ENHANCE_YOUR_CALM; 32 are fine."""
    for count, calm in ((32, False), (33, True)):
        raw = Raw()
        block = raw.block(GET)
        frames: list[Frame] = [HeadersFrame(1, data=block, flags=["END_STREAM"])]
        frames += [ContinuationFrame(1) for _ in range(count - 1)]
        frames.append(ContinuationFrame(1, flags=["END_HEADERS"]))
        raw.send(*frames)
        assert raw.goaway() == ((0, ENHANCE_YOUR_CALM) if calm else None)


def test_continuation_block_size() -> None:
    """A header block of more than 2 * 32768 bytes is refused while it is still arriving."""
    raw = Raw()
    frames: list[Frame] = [HeadersFrame(1, data=b"\x00" * 16384)]
    frames += [ContinuationFrame(1, data=b"\x00" * 16384) for _ in range(4)]
    raw.send(*frames)
    assert raw.goaway() == (0, ENHANCE_YOUR_CALM)


@pytest.mark.parametrize("refs", [10, 100])
def test_hpack_bomb(refs: int) -> None:
    """A 4000-byte field put in the HPACK table once and referenced many times: over nginx's list
    limit it is a GOAWAY ENHANCE_YOUR_CALM, and HPACK stops decoding well before memory suffers."""
    raw = Raw()
    block = raw.block([*GET, (b"x-bomb", b"b" * 4000)])
    index = bytes([0x80 | 62])  # the dynamic table's newest entry
    raw.send(HeadersFrame(1, data=block + index * refs, flags=["END_STREAM", "END_HEADERS"]))
    assert raw.goaway() == ((1, ENHANCE_YOUR_CALM) if refs == 10 else (0, ENHANCE_YOUR_CALM))
    assert raw.take() == []


def test_ping_flood() -> None:
    """PINGs whose ACKs pile up unread (more than 16384 bytes of them) are a GOAWAY
    ENHANCE_YOUR_CALM; the same PINGs read as they come are answered."""
    raw = Raw()
    for _ in range(3):
        raw.send(*[PingFrame(0) for _ in range(900)])
    assert raw.goaway() is None and sum(isinstance(f, PingFrame) for f in raw.frames) == 2700
    raw.send(*[PingFrame(0) for _ in range(500)], read=False)
    raw.send(*[PingFrame(0) for _ in range(500)])
    assert raw.goaway() == (0, ENHANCE_YOUR_CALM)


def test_settings_flood() -> None:
    """SETTINGS frames whose ACKs pile up are a GOAWAY ENHANCE_YOUR_CALM."""
    raw = Raw()
    raw.send(*[SettingsFrame(0) for _ in range(1800)])
    assert raw.goaway() is None
    raw.send(*[SettingsFrame(0, settings={4: 65535}) for _ in range(2000)])
    assert raw.goaway() == (0, ENHANCE_YOUR_CALM)


def test_empty_data_flood() -> None:
    """More than 100 empty DATA frames without END_STREAM and no payload between them: GOAWAY
    ENHANCE_YOUR_CALM; payload between them resets the count."""
    raw = Raw()
    raw.send(raw.headers(1, POST, end_stream=False))
    raw.send(*[data_frame(1, b"") for _ in range(100)], data_frame(1, b"x"))
    raw.send(*[data_frame(1, b"") for _ in range(100)])
    assert raw.goaway() is None
    raw.send(data_frame(1, b""))
    assert raw.goaway() == (1, ENHANCE_YOUR_CALM)
    assert raw.take()[-1] == StreamReset(stream_id=1, error_code=ENHANCE_YOUR_CALM)


def test_priority_flood() -> None:
    """nginx's PRIORITY budget (max(128, 100), plus 128 per stream): the 128th PRIORITY frame on
    a fresh connection is a GOAWAY ENHANCE_YOUR_CALM (checked)."""
    raw = Raw()
    raw.send(*[PriorityFrame(3 + 2 * i) for i in range(127)])
    assert raw.goaway() is None
    raw.send(raw.headers(1, GET))
    raw.send(*[PriorityFrame(1001 + 2 * i) for i in range(128)])
    assert raw.goaway() is None
    raw.send(PriorityFrame(5001))
    assert raw.goaway() == (1, ENHANCE_YOUR_CALM)


def test_overhead_flood() -> None:
    """nginx's general rule: input bytes / 8 beyond payload + slack is a flood (here with a small
    slack; WINDOW_UPDATEs need no answer, so only this rule sees them)."""
    raw = Raw(H2Limits(overhead_limit=(8, 100)))
    raw.send(raw.headers(1, POST, end_stream=False), data_frame(1, b"x" * 500))
    # about 580 bytes in, 527 of payload: WINDOW_UPDATEs (13 bytes) may add up to ~4500 more
    for _ in range(3):
        raw.send(*[WindowUpdateFrame(0, window_increment=1) for _ in range(100)])
    assert raw.goaway() is None
    raw.send(*[WindowUpdateFrame(0, window_increment=1) for _ in range(100)])
    assert raw.goaway() == (1, ENHANCE_YOUR_CALM)


def test_oversized_frame_is_refused_on_its_header() -> None:
    """A frame header announcing more than SETTINGS_MAX_FRAME_SIZE is a GOAWAY FRAME_SIZE_ERROR
    at once: the adapter does not buffer the frame first."""
    raw = Raw()
    raw.send(b"\x10\x00\x00\x00\x00\x00\x00\x00\x01")  # DATA, 1 MiB, stream 1
    assert raw.goaway() == (0, FRAME_SIZE_ERROR)


def test_flow_control_violation() -> None:
    """More DATA than the stream's window is h2's FLOW_CONTROL_ERROR (a connection error)."""
    raw = Raw()
    raw.send(raw.headers(1, POST, end_stream=False))
    raw.send(*[data_frame(1, b"x" * 16384) for _ in range(5)])
    assert raw.goaway() == (1, FLOW_CONTROL_ERROR)
    assert raw.take()[-1] == StreamReset(stream_id=1, error_code=FLOW_CONTROL_ERROR)


# ---------------------------------------------------------------------------------------------
# peers cannot crash the adapter


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_after_preface_never_raises(data: bytes) -> None:
    """Random bytes after the preface end in events or a GOAWAY, never an exception."""
    server = H2Server()
    server.receive_data(PREFACE + SettingsFrame(0).serialize())
    server.receive_data(data)
    server.data_to_send()


FRAME_MAKERS = st.sampled_from(
    [
        lambda raw, sid: raw.headers(sid, GET),
        lambda raw, sid: raw.headers(sid, POST, end_stream=False),
        lambda raw, sid: data_frame(sid, b"abc"),
        lambda raw, sid: data_frame(sid, b"", end=True),
        lambda raw, sid: rst_frame(sid),
        lambda raw, sid: PriorityFrame(sid, depends_on=sid + 2),
        lambda raw, sid: WindowUpdateFrame(sid, window_increment=100),
        lambda raw, sid: PingFrame(0),
        lambda raw, sid: SettingsFrame(0, settings={4: sid}),
        lambda raw, sid: ContinuationFrame(sid, flags=["END_HEADERS"]),
        lambda raw, sid: raw.headers(sid, [(b"x-t", b"1")]),
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(FRAME_MAKERS, st.integers(0, 4), st.integers(0, 3)), max_size=25),
    st.sampled_from([None, 1, 7]),
)
def test_frame_soup_never_raises(script: list[tuple[Any, int, int]], chunk: int | None) -> None:
    """Valid frames in any order, cut anywhere, with the engine answering, resetting or consuming
    as it goes, never raise, and the stream counts stay sane."""
    raw = Raw(chunk=chunk)
    known: set[int] = set()
    for make, n, action in script:
        raw.send(make(raw, 1 + 2 * n))
        for ev in raw.take():
            if isinstance(ev, (RequestHeaders, RequestRejected)):
                known.add(ev.stream_id)
            elif isinstance(ev, RequestData) and action == 3:
                raw.server.consumed(ev.stream_id, len(ev.data))
        for sid in sorted(known):
            if action == 1:
                answer(raw.server, sid)
            elif action == 2:
                raw.server.send(StreamReset(stream_id=sid))
        raw.read()
        assert 0 <= raw.server._active <= len(raw.server._streams) or raw.server.must_close
