"""The HTTP/1.x server adapter as conversations: bytes in, events out; responses in, bytes out.

``Conversation`` feeds bytes (``>>``), optionally cut into pieces of ``chunk`` bytes, and checks
the events in order (``<<``); body pieces of one stream are joined before comparing, so a split
feed and a whole feed expect the same events.  What nginx itself does with each odd request is
pinned by ``tests/compat/test_h1_hygiene_vs_nginx.py``.
"""

from __future__ import annotations

import dataclasses

import pytest
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
from proxy.protocol.h1 import REASONS, H1Limits, H1Server, LocalProtocolError

CHUNKS = [1, 2, 3, 7, 64]


class Conversation:
    """Client bytes in (``>>``), expected events out (``<<``), in order."""

    def __init__(self, limits: H1Limits | None = None, chunk: int | None = None) -> None:
        self.server = H1Server(limits or H1Limits())
        self.chunk = chunk
        self.pending: list[RequestEvent] = []

    def _take(self, events: list[RequestEvent]) -> None:
        for ev in events:
            last = self.pending[-1] if self.pending else None
            if (
                isinstance(ev, RequestData)
                and isinstance(last, RequestData)
                and last.stream_id == ev.stream_id
            ):
                self.pending[-1] = RequestData(stream_id=ev.stream_id, data=last.data + ev.data)
            else:
                self.pending.append(ev)

    def __rshift__(self, data: bytes) -> Conversation:
        if not data or self.chunk is None:
            self._take(self.server.receive_data(data))
        else:
            for i in range(0, len(data), self.chunk):
                self._take(self.server.receive_data(data[i : i + self.chunk]))
        return self

    def __lshift__(self, expected: RequestEvent) -> Conversation:
        assert self.pending, f"expected {expected!r}, got nothing"
        got = self.pending.pop(0)
        assert got == expected
        return self

    def resume(self) -> Conversation:
        """What ``next_events`` has after a response let parsing go on."""
        self._take(self.server.next_events())
        return self

    def nothing(self) -> None:
        assert self.pending == []

    def send(self, *events: ResponseHeaders | ResponseData | ResponseEnd) -> bytes:
        for ev in events:
            self.server.send(ev)
        return self.server.data_to_send()


def head(
    sid: int, target: bytes = b"/", *headers: tuple[bytes, bytes], **kw: object
) -> RequestHeaders:
    """``RequestHeaders`` of a GET with Host a (unless headers are given)."""
    fields: dict[str, object] = {
        "stream_id": sid,
        "method": b"GET",
        "target": target,
        "http_version": "1.1",
        "raw_headers": headers or ((b"Host", b"a"),),
        "host": b"a",
        "end_stream": True,
        "keep_alive": True,
    }
    fields.update(kw)
    return RequestHeaders(**fields)  # type: ignore[arg-type]


def hdrs(*pairs: tuple[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(pairs)


GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
OK = ResponseHeaders(stream_id=1, status=200, headers=hdrs((b"Content-Length", b"2")))


# ---------------------------------------------------------------------------------------------
# requests


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_get(chunk: int | None) -> None:
    """A GET becomes one RequestHeaders with end_stream and no RequestEnd, however it is split."""
    conv = Conversation(chunk=chunk)
    (
        conv
        >> b"GET /a?b=c HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"
        << head(1, b"/a?b=c", (b"Host", b"a"), (b"User-Agent", b"t"))
    )
    conv.nothing()


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_content_length_body(chunk: int | None) -> None:
    """A Content-Length body comes out as data then RequestEnd."""
    conv = Conversation(chunk=chunk)
    conv >> b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    conv << head(
        1,
        b"/u",
        (b"Host", b"a"),
        (b"Content-Length", b"11"),
        method=b"POST",
        content_length=11,
        end_stream=False,
    )
    conv << RequestData(stream_id=1, data=b"hello world") << RequestEnd(stream_id=1)
    conv.nothing()


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_chunked_body_with_extensions_and_trailers(chunk: int | None) -> None:
    """Chunk extensions are skipped, trailers dropped, sizes are hex (any case, leading zeros)."""
    conv = Conversation(chunk=chunk)
    conv >> (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value;q="x y"\r\nhello\r\n000A\r\n0123456789\r\nb \r\n ab\tcdefghi\r\n'
        b"0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n"
    )
    conv << head(
        1,
        b"/",
        (b"Host", b"a"),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        chunked=True,
        end_stream=False,
    )
    conv << RequestData(stream_id=1, data=b"hello0123456789 ab\tcdefghi") << RequestEnd(stream_id=1)
    conv.nothing()


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_chunked_body_with_bare_lf(chunk: int | None) -> None:
    """nginx takes LF alone for CRLF inside a chunked body."""
    conv = Conversation(chunk=chunk)
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"
    conv << head(
        1,
        b"/",
        (b"Host", b"a"),
        (b"Transfer-Encoding", b"chunked"),
        method=b"POST",
        chunked=True,
        end_stream=False,
    )
    conv << RequestData(stream_id=1, data=b"abc") << RequestEnd(stream_id=1)


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_three_pipelined_requests(chunk: int | None) -> None:
    """Pipelined requests get stream ids 1, 2, 3, in order, from one feed."""
    conv = Conversation(chunk=chunk)
    conv >> (
        GET
        + b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        + b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    conv << head(1)
    conv << head(
        2,
        b"/p",
        (b"Host", b"a"),
        (b"Content-Length", b"3"),
        method=b"POST",
        content_length=3,
        end_stream=False,
    )
    conv << RequestData(stream_id=2, data=b"abc") << RequestEnd(stream_id=2) << head(3, b"/3")
    conv.nothing()


def test_pipelining_limit_pauses_until_a_response_ends() -> None:
    """Past max_pipelined unanswered requests parsing stops; next_events resumes it."""
    conv = Conversation(H1Limits(max_pipelined=2))
    conv >> GET * 3 << head(1) << head(2)
    conv.nothing()
    assert conv.server.paused
    conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert not conv.server.paused
    conv.resume() << head(3)
    assert conv.server.paused


def test_leading_empty_lines_are_skipped() -> None:
    """CR and LF before a request line are ignored, as nginx does (some clients send them)."""
    conv = Conversation()
    conv >> b"\r\n\n\r\n" + GET << head(1)
    conv >> b"\r\n" + GET << head(2)


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_bare_lf_and_odd_line_ends(chunk: int | None) -> None:
    """LF alone ends lines; extra CRs before the LF of a header line are allowed."""
    conv = Conversation(chunk=chunk)
    conv >> b"GET / HTTP/1.1\nHost: a\r\r\nX: y\n\n" << head(1, b"/", (b"Host", b"a"), (b"X", b"y"))


def test_header_values_trimmed_as_nginx_does() -> None:
    """Spaces around a value go; tabs stay (nginx 1.22 trims spaces only); a name alone is empty."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.1\r\nHost:   a  \r\nX-A:\t b\t \r\nX-B:\r\nX-C\r\nX-D:: e\r\n\r\n"
    conv << head(
        1,
        b"/",
        (b"Host", b"a"),
        (b"X-A", b"\t b\t"),
        (b"X-B", b""),
        (b"X-C", b""),
        (b"X-D", b": e"),
    )


def test_invalid_header_names_are_dropped() -> None:
    """Names with _ or other characters outside [A-Za-z0-9-] are dropped silently by default."""
    conv = Conversation()
    (
        conv >> b"GET / HTTP/1.1\r\nHost: a\r\nX_A: 1\r\nX.B: 2\r\nX@C: 3\r\n"
        b"X\xc3D: 4\r\nOk-1: 5\r\n\r\n"
    )
    conv << head(1, b"/", (b"Host", b"a"), (b"Ok-1", b"5"))


def test_underscores_in_headers_keeps_them() -> None:
    """underscores_in_headers on: a name with _ is valid (and never a special header)."""
    conv = Conversation(H1Limits(underscores_in_headers=True))
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nX_A: 1\r\nContent_Length: 5\r\nX.B: 2\r\n\r\n"
    conv << head(1, b"/", (b"Host", b"a"), (b"X_A", b"1"), (b"Content_Length", b"5"))


def test_ignore_invalid_headers_off_keeps_them() -> None:
    """ignore_invalid_headers off: invalid names are passed on, but never special."""
    conv = Conversation(H1Limits(ignore_invalid_headers=False))
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nX_A: 1\r\nHo@st: 2\r\n\r\n"
    conv << head(1, b"/", (b"Host", b"a"), (b"X_A", b"1"), (b"Ho@st", b"2"))


def test_http10_and_keep_alive() -> None:
    """HTTP/1.0 needs no Host and closes unless it asks for keep-alive (any substring counts)."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    conv << head(1, b"/", (b"Connection", b"Keep-Alive"), http_version="1.0", host=None)
    conv >> b"GET /2 HTTP/1.0\r\n\r\nGET /never-parsed HTTP/1.0\r\n\r\n"
    conv << head(2, b"/2", http_version="1.0", host=None, raw_headers=(), keep_alive=False)
    conv.nothing()


def test_connection_close_stops_parsing() -> None:
    """After a request with Connection: close nothing more is parsed (nginx closes after it)."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET
    conv << head(1, b"/", (b"Host", b"a"), (b"Connection", b"close"), keep_alive=False)
    conv.nothing()
    assert conv.server.keep_alive  # it is still to be answered
    conv.send(OK)
    assert not conv.server.keep_alive
    conv.send(ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert conv.server.must_close


def test_http_1_2_counts_as_1_x() -> None:
    """nginx accepts HTTP/1.2 to 1.999 as HTTP/1.x (with 1.1 rules: Host required)."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.2\r\nHost: a\r\n\r\n" << head(1, http_version="1.2")
    conv >> b"GET / HTTP/1.0001\r\nHost: a\r\n\r\n" << head(2, http_version="1.1")


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
def test_http09_request(chunk: int | None) -> None:
    """``GET /`` alone is HTTP/0.9: no headers, no keep-alive; the response is the body alone."""
    conv = Conversation(chunk=chunk)
    conv >> b"GET /x\r\nGET /y\r\n"
    conv << head(1, b"/x", http_version="0.9", raw_headers=(), host=None, keep_alive=False)
    conv.nothing()
    out = conv.send(
        ResponseHeaders(stream_id=1, status=200, headers=hdrs((b"Content-Length", b"2"))),
        ResponseData(stream_id=1, data=b"ok"),
        ResponseEnd(stream_id=1),
    )
    assert out == b"ok"
    assert conv.server.must_close


def test_absolute_form_target() -> None:
    """An absolute-form target is passed on as sent; Host stays the header's."""
    conv = Conversation()
    conv >> b"GET http://b:81/x?y HTTP/1.1\r\nHost: a\r\n\r\n" << head(1, b"http://b:81/x?y")


def test_upgrade_and_tunnel() -> None:
    """Upgrade: parsing holds until the answer; after a 101 both directions are raw bytes."""
    conv = Conversation()
    conv >> (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
        b"\x81\x05early"
    )
    conv << head(
        1,
        b"/ws",
        (b"Host", b"a"),
        (b"Connection", b"keep-alive, Upgrade"),
        (b"Upgrade", b"websocket"),
        upgrade=b"websocket",
    )
    conv.nothing()
    assert conv.server.paused
    out = conv.send(
        ResponseHeaders(
            stream_id=1,
            status=101,
            reason=b"Switching Protocols",
            headers=hdrs(
                (b"Server", b"s"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Accept", b"k")
            ),
        )
    )
    assert out == (
        b"HTTP/1.1 101 Switching Protocols\r\nServer: s\r\nConnection: upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Accept: k\r\n\r\n"
    )
    conv.resume() << RequestData(stream_id=1, data=b"\x81\x05early")
    conv >> b"GET / HTTP/1.1\r\n" << RequestData(stream_id=1, data=b"GET / HTTP/1.1\r\n")
    assert conv.send(ResponseData(stream_id=1, data=b"\x81\x02hi")) == b"\x81\x02hi"
    assert not conv.server.keep_alive
    conv >> b"" << RequestEnd(stream_id=1)
    assert conv.server.must_close


def test_upgrade_refused_lets_pipelined_requests_through() -> None:
    """A non-101 answer to an Upgrade request releases the requests queued behind it."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n" + GET
    conv << head(1, b"/", (b"Host", b"a"), (b"Upgrade", b"h2c"))
    conv.nothing()
    conv.send(OK)
    conv.resume() << head(2)


def test_tunnel_bytes_hands_over_the_buffer() -> None:
    """An I/O layer that relays the tunnel itself takes the early bytes with tunnel_bytes()."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly"
    conv.pending.clear()
    conv.send(ResponseHeaders(stream_id=1, status=101, headers=()))
    assert conv.server.tunnel_bytes() == b"early"
    conv >> b"more"
    conv.nothing()


# ---------------------------------------------------------------------------------------------
# hygiene: every refusal is one RequestRejected, nothing else of the request goes out

H = b"Host: a\r\n"

REJECTED: list[tuple[str, bytes, int]] = [
    (
        "request line over the large buffer",
        b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + H + b"\r\n",
        414,
    ),
    (
        "header line over the large buffer",
        b"GET / HTTP/1.1\r\n" + H + b"X: " + b"b" * 8200 + b"\r\n\r\n",
        494,
    ),
    (
        "headers over 4 large buffers",
        b"GET / HTTP/1.1\r\n" + H + (b"X: " + b"b" * 8000 + b"\r\n") * 5 + b"\r\n",
        494,
    ),
    ("error before the limit wins", b"get /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 400),
    (
        "Content-Length and Transfer-Encoding",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (
        "duplicate Content-Length",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        400,
    ),
    (
        "Content-Length with a sign",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\nx",
        400,
    ),
    ("Content-Length list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nx", 400),
    (
        "Content-Length not digits",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x1\r\n\r\nx",
        400,
    ),
    (
        "Content-Length over 2^63-1",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9223372036854775808\r\n\r\n",
        400,
    ),
    (
        "Transfer-Encoding gzip",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    (
        "Transfer-Encoding gzip, chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    ("chunked in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        "duplicate Transfer-Encoding",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n" * 2 + b"\r\n",
        400,
    ),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    ("missing Host in HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("duplicate Host", b"GET / HTTP/1.1\r\n" + H + b"host: b\r\n\r\n", 400),
    ("Host with /", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with ..", b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400),
    ("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("Host :80", b"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400),
    ("bad host in an absolute target", b"GET http://a..b/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/10.1", b"GET / HTTP/10.1\r\n" + H + b"\r\n", 505),
    ("HTTP/1.1000", b"GET / HTTP/1.1000\r\n" + H + b"\r\n", 400),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("lower-case method", b"get / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("NUL in the target", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00\r\n\r\n", 400),
    ("NUL in a header name", b"GET / HTTP/1.1\r\n" + H + b"X\x00: a\r\n\r\n", 400),
    ("space before the colon", b"GET / HTTP/1.1\r\n" + H + b"X : a\r\n\r\n", 400),
    ("bare CR in a value", b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    ("duplicate If-Match", b"GET / HTTP/1.1\r\n" + H + b"If-Match: a\r\nIf-Match: b\r\n\r\n", 400),
    ("TRACE", b"TRACE / HTTP/1.1\r\n" + H + b"\r\n", 405),
    ("HTTP/0.9 POST", b"POST /\r\n", 400),
]


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
@pytest.mark.parametrize(("name", "raw", "status"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected(name: str, raw: bytes, status: int, chunk: int | None) -> None:
    """A request nginx refuses is one RequestRejected with nginx's status; nothing follows."""
    conv = Conversation(chunk=chunk)
    conv >> raw + GET
    assert len(conv.pending) == 1, conv.pending
    got = conv.pending[0]
    assert isinstance(got, RequestRejected)
    assert (got.stream_id, got.status_hint) == (1, status)
    wire = 400 if status == 494 else status
    out = conv.send(ResponseHeaders(stream_id=1, status=wire, headers=(), end_stream=True))
    if raw.startswith(b"POST /\r\n"):
        assert out == b""  # HTTP/0.9: no status line, no headers
    else:
        assert b"\r\nConnection: close\r\n" in out
    assert conv.server.must_close and not conv.server.keep_alive


@pytest.mark.parametrize("chunk", [None, *CHUNKS])
@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n",
        b" 5\r\nhello\r\n",
        b"5\r\nhelloX",
        b"5\r\r\nhello",
        b"5\r\nhello\rX",
        b"0x5\r\n",
        b"7fffffffffffffff\r\n",
        b"5;ext\rX",
    ],
)
def test_bad_chunked_body(body: bytes, chunk: int | None) -> None:
    """A malformed chunked body is a 400 on the request's stream, after its headers went out."""
    conv = Conversation(chunk=chunk)
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body + GET
    assert isinstance(conv.pending[0], RequestHeaders)
    last = conv.pending[-1]
    assert isinstance(last, RequestRejected) and (last.stream_id, last.status_hint) == (1, 400)
    assert not any(isinstance(ev, RequestEnd) for ev in conv.pending)


def test_eof_inside_a_head_is_a_silent_close() -> None:
    """EOF before a head is complete: nginx closes without answering (status_hint 0)."""
    for partial in (b"G", b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r\n"):
        conv = Conversation()
        conv >> partial
        conv.nothing()
        conv >> b""
        got = conv.pending.pop()
        assert isinstance(got, RequestRejected) and got.status_hint == 0
        assert conv.server.must_close


def test_eof_between_requests_is_quiet() -> None:
    """EOF on an idle connection produces no event; the connection is to be closed."""
    conv = Conversation()
    conv >> GET << head(1)
    conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    conv >> b""
    conv.nothing()
    assert conv.server.must_close


def test_eof_inside_a_body() -> None:
    """EOF inside a body rejects the stream with 0 (nginx: "client prematurely closed")."""
    conv = Conversation()
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello"
    conv.pending[:2] = []
    (
        conv
        >> b""
        << RequestRejected(
            stream_id=1, status_hint=0, reason="client prematurely closed connection"
        )
    )


def test_eof_after_pipelined_requests_waits_for_their_answers() -> None:
    """EOF after complete requests: they are still answered, then the connection closes."""
    conv = Conversation()
    conv >> GET + GET + b"" << head(1) << head(2)
    conv >> b""
    conv.nothing()
    assert not conv.server.must_close
    conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert not conv.server.must_close
    conv.send(
        ResponseHeaders(stream_id=2, status=204, headers=(), end_stream=True),
    )
    assert conv.server.must_close


def test_max_body_size() -> None:
    """max_body_size: a larger Content-Length is a 413 up front; chunks are summed as they come."""
    limits = H1Limits(max_body_size=10)
    conv = Conversation(limits)
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.status_hint == 413
    conv = Conversation(limits)
    (
        conv
        >> b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\nab"
    )
    assert conv.pending[1] == RequestData(stream_id=1, data=b"abcdef")
    got = conv.pending[-1]
    assert isinstance(got, RequestRejected) and got.status_hint == 413


def test_small_header_buffers() -> None:
    """Buffer limits follow nginx's layout: lines never split across buffers."""
    limits = H1Limits(client_header_buffer_size=32, large_header_buffers=(2, 40))
    line = b"GET / HTTP/1.1\r\nHost: a\r\n"  # 25 bytes: fits the first buffer
    pad = b"X: " + b"b" * 33 + b"\r\n"  # 38 bytes: one per large buffer
    conv = Conversation(limits)
    conv >> line + pad * 2 + b"\r\n"  # the final CRLF fits the second large buffer
    assert isinstance(conv.pending[0], RequestHeaders)
    conv = Conversation(limits)
    conv >> line + pad * 2 + b"X: y\r\n\r\n"
    got = conv.pending[0]
    assert isinstance(got, RequestRejected) and got.status_hint == 494
    conv = Conversation(limits)
    conv >> b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n"
    got = conv.pending[0]
    assert isinstance(got, RequestRejected) and got.status_hint == 414


def test_a_too_long_line_is_refused_before_it_ends() -> None:
    """nginx refuses a request line as soon as it outgrows a large buffer, LF or not."""
    conv = Conversation()
    conv >> b"GET /" + b"a" * 8200
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.status_hint == 414


def test_a_bad_byte_is_refused_before_the_line_ends() -> None:
    """nginx answers at the first bad byte; it does not wait for the rest of the line."""
    conv = Conversation()
    conv >> b"GET /a b"
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.status_hint == 400


# ---------------------------------------------------------------------------------------------
# what a refused head says of itself (nginx's access log line; checked against nginx in
# tests/compat/test_h1_hygiene_vs_nginx.py)


def test_refused_head_carries_what_nginx_parsed() -> None:
    """Refused for a header: the request line, the headers processed (the refused one too) and
    the Host that picked the virtual server; later headers are not nginx's."""
    for chunk in (None, 1):
        conv = Conversation(chunk=chunk)
        conv >> b"GET /x?a HTTP/1.1\r\nHost: v.test\r\nX-A: 1\r\nHost: w\r\nX-B: 2\r\n\r\n"
        assert conv.pending == [
            RequestRejected(
                stream_id=1,
                status_hint=400,
                reason="client sent duplicate host header",
                request_line=b"GET /x?a HTTP/1.1",
                method=b"GET",
                target=b"/x?a",
                http_version="1.1",
                raw_headers=((b"Host", b"v.test"), (b"X-A", b"1"), (b"Host", b"w")),
                host=b"v.test",
            )
        ]


def test_refused_request_line_is_what_nginx_had_read() -> None:
    """A bad line: up to its CR or LF, no method; a too long one: up to the end of nginx's
    buffer (leading blank lines shift it); only blank lines then EOF: an empty line."""
    conv = Conversation()
    conv >> b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.method is None
    assert got.request_line == b"GET /a b HTTP/1.1"
    limits = H1Limits(client_header_buffer_size=1024, large_header_buffers=(2, 1024))
    for lead in (b"", b"\r\n\r\n"):
        conv = Conversation(limits)
        conv >> lead + b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n"
        got = conv.pending.pop()
        assert isinstance(got, RequestRejected) and got.status_hint == 414
        assert got.request_line == b"GET /" + b"a" * 1019
    conv = Conversation()
    conv >> b"\r\n" >> b""
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.status_hint == 0
    assert got.request_line == b""


def test_body_errors_say_nothing_of_a_head() -> None:
    """A body gone wrong after RequestHeaders: nginx logged (or logs) that request elsewhere."""
    conv = Conversation()
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.request_line is None


def test_partial_request() -> None:
    """At client_header_timeout nginx logs 408 with the head as far as it came; nothing when no
    byte of a request came."""
    server = H1Server()
    assert server.partial_request() is None
    server.receive_data(b"\r\n")
    got = server.partial_request()
    assert got is not None and (got.status_hint, got.request_line) == (408, b"")
    server.receive_data(b"GET /te")
    got = server.partial_request()
    assert got is not None and (got.request_line, got.method) == (b"GET /te", None)
    server.receive_data(b"xt HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: par")
    got = server.partial_request()
    assert got is not None
    assert (got.request_line, got.method, got.target, got.host) == (
        b"GET /text HTTP/1.1",
        b"GET",
        b"/text",
        b"a",
    )
    assert got.raw_headers == ((b"Host", b"a"), (b"X-A", b"1"))
    assert server.receive_data(b"t\r\n\r\n")[0] == RequestHeaders(
        stream_id=1,
        method=b"GET",
        target=b"/text",
        http_version="1.1",
        raw_headers=((b"Host", b"a"), (b"X-A", b"1"), (b"X-B", b"part")),
        host=b"a",
        end_stream=True,
    )
    assert server.partial_request() is None  # answered next, nothing of another head yet


# ---------------------------------------------------------------------------------------------
# fast path (httptools) and nginx-exact scanner agree

LINES = st.sampled_from(
    [
        b"Host: a\r\n",
        b"Host: b\r\n",
        b"host:a..b\r\n",
        b"X-A: 1\r\n",
        b"X-A:  spaced  \r\n",
        b"X_B: 2\r\n",
        b"X@C: 3\r\n",
        b"Content-Length: 3\r\n",
        b"Content-Length: x\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Connection: close\r\n",
        b"Connection: upgrade\r\n",
        b"Upgrade: websocket\r\n",
        b"If-Match: a\r\n",
        b"X: \xff\r\n",
        b"X:\x01\r\n",
        b"X : y\r\n",
        b"NoColon\r\n",
        b" folded\r\n",
        b"X: a\tb\r\n",
        b"X: \r\n",
        b"Expect: 100-continue\r\n",
        b"Cookie: a=b; c=d\r\n",
        b"X: bare-lf\n",
        b"X: cr-cr\r\r\n",
        b"X:\ttab-first\r\n",
        b"X:  \r\n",
    ]
)
REQUEST_LINES = st.sampled_from(
    [
        b"GET / HTTP/1.1\r\n",
        b"POST /x?y HTTP/1.1\r\n",
        b"HEAD / HTTP/1.0\r\n",
        b"FOO / HTTP/1.1\r\n",
        b"GET / HTTP/1.2\r\n",
        b"GET http://h/ HTTP/1.1\r\n",
        b"GET * HTTP/1.1\r\n",
        b"TRACE / HTTP/1.1\r\n",
        b"GET /a%20b HTTP/1.1\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\n",
        b"M-SEARCH / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\n",
        b"GET /  HTTP/1.1\r\n",
        b"GET  / HTTP/1.0\r\n",
        b"CONNECT a:1 HTTP/1.1\r\n",
    ]
)


@settings(max_examples=400, deadline=None)
@given(REQUEST_LINES, st.lists(LINES, max_size=6), st.binary(max_size=12))
def test_fast_and_slow_paths_agree(line: bytes, lines: list[bytes], rest: bytes) -> None:
    """A head fed whole (httptools when it can) and byte by byte (nginx scanner) gives the same."""
    raw = line + b"".join(lines) + b"\r\n" + rest
    whole = Conversation()
    whole >> raw >> b""
    split = Conversation(chunk=1)
    split >> raw >> b""
    assert _same_bytes(whole.pending) == _same_bytes(split.pending)


def _same_bytes(events: list[object]) -> list[object]:
    """Events with what depends on how the bytes arrived left out: a request line refused before
    its end is logged by nginx as far as it had read it (``request_line``)."""
    return [
        dataclasses.replace(ev, request_line=None)
        if isinstance(ev, RequestRejected) and ev.method is None
        else ev
        for ev in events
    ]


# ---------------------------------------------------------------------------------------------
# responses


def test_keep_alive_response_bytes() -> None:
    """A response with Content-Length: nginx's header order, Connection: keep-alive."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(
            stream_id=1,
            status=200,
            headers=hdrs(
                (b"X-Custom", b"1"),
                (b"Content-Length", b"2"),
                (b"Date", b"D"),
                (b"Content-Type", b"text/plain"),
                (b"Server", b"nginx/1.22.1"),
            ),
        ),
        ResponseData(stream_id=1, data=b"ok"),
        ResponseEnd(stream_id=1),
    )
    assert out == (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: D\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 2\r\nConnection: keep-alive\r\nX-Custom: 1\r\n\r\nok"
    )
    assert conv.server.keep_alive and not conv.server.must_close


def test_close_response_bytes() -> None:
    """A request with Connection: close gets Connection: close, then the connection ends."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    conv.pending.clear()
    out = conv.send(OK)
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    assert not conv.server.keep_alive
    conv.send(ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert conv.server.must_close


def test_chunked_response_bytes() -> None:
    """No Content-Length to an HTTP/1.1 client: chunked, empty pieces skipped, a 0 chunk last."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(stream_id=1, status=200, headers=hdrs((b"Content-Type", b"text/plain"))),
        ResponseData(stream_id=1, data=b"hello"),
        ResponseData(stream_id=1, data=b""),
        ResponseData(stream_id=1, data=b"0123456789abcdef!"),
        ResponseEnd(stream_id=1),
    )
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n\r\n5\r\nhello\r\n11\r\n0123456789abcdef!\r\n0\r\n\r\n"
    )


def test_http10_response_without_length_is_close_delimited() -> None:
    """No Content-Length to an HTTP/1.0 client: raw body, Connection: close, then close."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    conv.pending.clear()
    out = conv.send(
        ResponseHeaders(stream_id=1, status=200, headers=()),
        ResponseData(stream_id=1, data=b"body"),
        ResponseEnd(stream_id=1),
    )
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody"
    assert conv.server.must_close


def test_http10_keep_alive_with_length() -> None:
    """HTTP/1.0 with Connection: keep-alive and a Content-Length stays open."""
    conv = Conversation()
    conv >> b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    conv.pending.clear()
    out = conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    assert conv.server.keep_alive


def test_head_response_has_no_body() -> None:
    """HEAD: headers as for GET (Content-Length kept, no chunking), body dropped."""
    conv = Conversation()
    conv >> b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
    conv.pending.clear()
    out = conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    conv >> b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
    conv.pending.clear()
    out = conv.send(ResponseHeaders(stream_id=2, status=200, headers=()), ResponseEnd(stream_id=2))
    assert out == b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n"


@pytest.mark.parametrize(("status", "line"), [(204, b"204 No Content"), (304, b"304 Not Modified")])
def test_204_and_304_have_no_body(status: int, line: bytes) -> None:
    """204 and 304 carry no body and are never chunked."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(stream_id=1, status=status, headers=hdrs((b"ETag", b'"x"'))),
        ResponseData(stream_id=1, data=b"dropped"),
        ResponseEnd(stream_id=1),
    )
    assert out == b"HTTP/1.1 " + line + b'\r\nConnection: keep-alive\r\nETag: "x"\r\n\r\n'


def test_interim_100_continue() -> None:
    """100 Continue is written as nginx writes it, and the final response follows."""
    conv = Conversation()
    conv >> b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
    conv.pending.clear()
    out = conv.send(ResponseHeaders(stream_id=1, status=100, headers=()))
    assert out == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert (
        conv.send(OK) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    )


def test_header_order_and_owned_headers() -> None:
    """nginx's fixed block first; engine Transfer-Encoding dropped; Keep-Alive after Connection."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(
            stream_id=1,
            status=302,
            headers=hdrs(
                (b"Location", b"http://a/x"),
                (b"X-A", b"1"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Last-Modified", b"L"),
                (b"Content-Length", b"0"),
                (b"X-B", b"2"),
            ),
            end_stream=True,
        )
    )
    assert out == (
        b"HTTP/1.1 302 Moved Temporarily\r\nContent-Length: 0\r\nLast-Modified: L\r\n"
        b"Location: http://a/x\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
        b"X-A: 1\r\nX-B: 2\r\n\r\n"
    )


def test_empty_connection_header_marks_the_end_of_nginx_headers() -> None:
    """Headers after an empty Connection stay in list order (an upstream's Location, say)."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(
            stream_id=1,
            status=302,
            reason=b"Found",
            headers=hdrs(
                (b"Server", b"s"),
                (b"Content-Length", b"0"),
                (b"Connection", b""),
                (b"X-First", b"1"),
                (b"Location", b"/rel"),
                (b"Content-Type", b"t"),
            ),
            end_stream=True,
        )
    )
    assert out == (
        b"HTTP/1.1 302 Found\r\nServer: s\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
        b"X-First: 1\r\nLocation: /rel\r\nContent-Type: t\r\n\r\n"
    )


def test_engine_connection_close_forces_close() -> None:
    """An engine Connection: close (or close_after_response) ends the connection after it."""
    conv = Conversation()
    conv >> GET + GET << head(1) << head(2)
    out = conv.send(
        ResponseHeaders(
            stream_id=1,
            status=400,
            end_stream=True,
            headers=hdrs((b"Content-Length", b"0"), (b"Connection", b"close")),
        )
    )
    assert out == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert conv.server.must_close
    assert conv.send(OK) == b""  # stream 2 is never answered: nginx closed
    conv = Conversation()
    conv >> GET << head(1)
    conv.server.close_after_response()
    assert conv.send(OK).endswith(b"Connection: close\r\n\r\n")


@pytest.mark.parametrize(
    ("status", "reason", "line"),
    [
        (302, None, b"HTTP/1.1 302 Moved Temporarily\r\n"),
        (503, None, b"HTTP/1.1 503 Service Temporarily Unavailable\r\n"),
        (203, None, b"HTTP/1.1 203 \r\n"),
        (299, None, b"HTTP/1.1 299 \r\n"),
        (302, b"Found", b"HTTP/1.1 302 Found\r\n"),
        (200, b"", b"HTTP/1.1 200\r\n"),
    ],
)
def test_status_lines(status: int, reason: bytes | None, line: bytes) -> None:
    """nginx's phrases; none for codes it does not name (a space kept); an upstream's passes."""
    conv = Conversation()
    conv >> GET << head(1)
    out = conv.send(
        ResponseHeaders(stream_id=1, status=status, headers=(), reason=reason, end_stream=True)
    )
    assert out.startswith(line)


def test_reasons_table() -> None:
    """REASONS holds nginx 1.22's phrases (302 Moved Temporarily, 405 Not Allowed...)."""
    assert REASONS[302] == b"Moved Temporarily"
    assert REASONS[405] == b"Not Allowed"
    assert REASONS[414] == b"Request-URI Too Large"
    assert 203 not in REASONS and 418 not in REASONS


def test_end_stream_headers_complete_the_response() -> None:
    """ResponseHeaders(end_stream=True) is the whole response; a ResponseEnd after it is ignored."""
    conv = Conversation()
    conv >> GET + GET << head(1) << head(2)
    out = conv.send(
        ResponseHeaders(
            stream_id=1, status=200, headers=hdrs((b"Content-Length", b"0")), end_stream=True
        ),
        ResponseEnd(stream_id=1),
        ResponseHeaders(stream_id=2, status=200, headers=(), end_stream=True),
    )
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n"
    )


def test_responses_must_come_in_order() -> None:
    """Answering a later stream first, or sending data before headers, is a LocalProtocolError."""
    conv = Conversation()
    conv >> GET + GET << head(1) << head(2)
    with pytest.raises(LocalProtocolError):
        conv.send(ResponseHeaders(stream_id=2, status=200, headers=()))
    with pytest.raises(LocalProtocolError):
        conv.send(ResponseData(stream_id=1, data=b"x"))
    conv.send(OK)
    with pytest.raises(LocalProtocolError):
        conv.send(OK)


def test_pipelined_responses_are_serialised() -> None:
    """Three pipelined requests answered in order come out back to back, keep-alive each."""
    conv = Conversation()
    conv >> GET * 3 << head(1) << head(2) << head(3)
    out = b""
    for sid in (1, 2, 3):
        out += conv.send(
            ResponseHeaders(stream_id=sid, status=200, headers=hdrs((b"Content-Length", b"1"))),
            ResponseData(stream_id=sid, data=b"%d" % sid),
            ResponseEnd(stream_id=sid),
        )
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n"
    assert out == one + b"1" + one + b"2" + one + b"3"


def test_rejection_then_its_response() -> None:
    """After pipelined good requests, a rejected one is answered last, with Connection: close."""
    conv = Conversation()
    conv >> GET + b"GET / HTTP/2.0\r\n\r\n" << head(1)
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and (got.stream_id, got.status_hint) == (2, 505)
    conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert conv.server.keep_alive  # the rejected request still gets its answer
    out = conv.send(
        ResponseHeaders(
            stream_id=2, status=505, headers=hdrs((b"Content-Length", b"0")), end_stream=True
        )
    )
    assert (
        out == b"HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert conv.server.must_close


def test_silent_rejection_closes_once_earlier_answers_are_out() -> None:
    """status_hint 0 after a pipelined request: close once that request is answered."""
    conv = Conversation()
    conv >> GET + b"GET / HT" >> b"" << head(1)
    got = conv.pending.pop()
    assert isinstance(got, RequestRejected) and got.status_hint == 0
    assert not conv.server.must_close
    conv.send(OK, ResponseData(stream_id=1, data=b"ok"), ResponseEnd(stream_id=1))
    assert conv.server.must_close


def test_stream_reset_closes() -> None:
    """A response that cannot be completed (StreamReset) closes the connection."""
    conv = Conversation()
    conv >> GET << head(1)
    conv.send(
        ResponseHeaders(stream_id=1, status=200, headers=()), ResponseData(stream_id=1, data=b"x")
    )
    conv.server.send(StreamReset(stream_id=1))
    assert conv.server.must_close


def test_data_to_send_coalesces_and_drains() -> None:
    """Everything sent since the last call comes out as one bytes; then nothing."""
    conv = Conversation()
    conv >> GET << head(1)
    conv.server.send(OK)
    conv.server.send(ResponseData(stream_id=1, data=b"o"))
    conv.server.send(ResponseData(stream_id=1, data=b"k"))
    out = conv.server.data_to_send()
    assert isinstance(out, bytes) and out.endswith(b"\r\n\r\nok")
    assert conv.server.data_to_send() == b""


def test_limits_are_validated() -> None:
    """Impossible limits are refused when built."""
    with pytest.raises(ValueError):
        H1Limits(large_header_buffers=(0, 8192))
    with pytest.raises(ValueError):
        H1Limits(max_pipelined=0)
    with pytest.raises(ValueError):
        H1Limits(max_body_size=-1)
