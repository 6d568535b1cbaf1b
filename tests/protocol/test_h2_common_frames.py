"""The frames ``H2Server`` takes without h2 (``_receive_common``: a HEADERS frame opening a
stream with its whole header block, a connection WINDOW_UPDATE) and the whole-response writer
(``send_response``) leave exactly what h2's road leaves: the same events, the same bytes out,
the same h2 state for the frames that follow.

Each conversation is fed twice, whole, after the same preface: with the common road, and with
it switched off (every frame goes to h2).  A counter on h2's HEADERS handler proves which road
the frames took, so no case passes without the common road; split feeds (h2 holds part of a
frame: h2's road) are covered by ``test_h2.py``'s ``chunk`` cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hpack import Encoder
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from proxy.protocol import h2 as H
from proxy.protocol.events import ResponseData, ResponseEnd, ResponseHeaders
from proxy.protocol.h2 import H2Limits, H2Server
from tests.protocol.test_h2 import GET, POST, PREFACE, join_data

Conversation = Callable[[Encoder], list[bytes | Frame]]


@pytest.fixture
def h2_headers_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many HEADERS frames h2 itself handled."""
    calls = [0]
    original = H._Connection._receive_headers_frame

    def counted(self: H._Connection, frame: HeadersFrame) -> object:
        calls[0] += 1
        return original(self, frame)

    monkeypatch.setattr(H._Connection, "_receive_headers_frame", counted)
    yield calls


def headers(enc: Encoder, sid: int, fields: list[tuple[bytes, bytes]], end: bool = True,
            flags: tuple[str, ...] = ()) -> HeadersFrame:
    f = HeadersFrame(sid, data=bytes(enc.encode(fields)))
    f.flags.add("END_HEADERS")
    if end:
        f.flags.add("END_STREAM")
    for flag in flags:
        f.flags.add(flag)
    return f


def window(sid: int, n: int) -> bytes:
    return WindowUpdateFrame(sid, window_increment=n).serialize() if n else \
        b"\x00\x00\x04\x08\x00" + sid.to_bytes(4, "big") + b"\x00\x00\x00\x00"


def _h2_only(self: H2Server, data: bytes, events: object) -> bytes:
    return data


def run(conv: Conversation, limits: H2Limits, common: bool = True, respond: str = "events",
        body: bytes = b"hello", chunk: int | None = None) -> tuple[list[object], bytes]:
    """Events and bytes out of one server fed ``conv`` (with the common road or h2 only),
    answering every request with ``body`` (as three events, or ``send_response``); h2's
    view of the streams, windows and connection at the end follows the events."""
    server = H2Server(limits)
    if not common:
        server._receive_common = _h2_only.__get__(server)  # type: ignore[method-assign]
    events: list[object] = list(server.receive_data(PREFACE + SettingsFrame(0).serialize()))
    out = server.data_to_send()
    data = b"".join(i if isinstance(i, bytes) else i.serialize() for i in conv(Encoder()))
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        new = server.receive_data(piece)
        events += new
        for ev in new:
            if type(ev).__name__ != "RequestHeaders":
                continue
            sid = ev.stream_id  # type: ignore[attr-defined]
            hdrs = ((b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)))
            if respond == "whole":
                server.send_response(sid, 200, hdrs, body)
            else:  # what H2Exchange.send_response sent before send_response existed
                server.send(ResponseHeaders(stream_id=sid, status=200, headers=hdrs,
                                            end_stream=not body))
                if body:
                    server.send(ResponseData(stream_id=sid, data=body))
                    server.send(ResponseEnd(stream_id=sid))
        out += server.data_to_send()
    conn = server._conn
    h2_state = [
        {sid: (st.state_machine.state, st.state_machine.headers_sent,
               st.outbound_flow_control_window, st.inbound_flow_control_window)
         for sid, st in conn.streams.items()},
        dict(conn._closed_streams), conn.outbound_flow_control_window,
        conn.inbound_flow_control_window, conn.highest_inbound_stream_id,
        conn.state_machine.state,
    ]
    return join_data(events) + h2_state, out  # type: ignore[operator]


AUTH = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x"), (b":authority", b"b")]

def raw_headers(sid: int, block: bytes, end: bool = True) -> HeadersFrame:
    return HeadersFrame(sid, data=block, flags=["END_HEADERS"] + (["END_STREAM"] if end else []))


# HPACK by hand (RFC 7541): 0x82 :method GET, 0x86 :scheme http, 0x84 :path /; 0x41 a literal
# :authority added to the dynamic table at 62 (0xbe), the older entry moving to 63 (0xbf)
BLOCK_A = b"\x82\x86\x84\x41\x01a"
BLOCK_B = b"\x82\x86\x84\x41\x01b"
INDEXED = b"\x82\x86\x84\xbe"
INDEXED_63 = b"\x82\x86\x84\xbf"
NO_PATH = b"\x82\x86\xbe"

CONVERSATIONS: dict[str, tuple[Conversation, H2Limits]] = {
    "gets-and-window-updates": (lambda e: [headers(e, 1, GET), headers(e, 3, AUTH),
                                           window(0, 1000), headers(e, 5, GET),
                                           window(0, 1)], H2Limits()),
    "post-with-body": (lambda e: [headers(e, 1, POST + [(b"content-length", b"3")], end=False),
                                  DataFrame(1, data=b"abc", flags=["END_STREAM"]),
                                  headers(e, 3, GET)], H2Limits()),
    "over-concurrency": (lambda e: [headers(e, 1, POST, end=False), headers(e, 3, POST, end=False),
                                    headers(e, 5, GET), headers(e, 7, GET)],
                         H2Limits(max_concurrent_streams=2)),
    "max-requests": (lambda e: [headers(e, 1, GET), headers(e, 3, GET), headers(e, 5, GET)],
                     H2Limits(max_requests=2)),
    "bad-name-reset": (lambda e: [headers(e, 1, GET + [(b"X-Up", b"1")]), headers(e, 3, GET)],
                       H2Limits()),
    "no-path-400": (lambda e: [headers(e, 1, GET[:2] + GET[3:]), headers(e, 3, GET)],
                    H2Limits()),
    "strict-te": (lambda e: [headers(e, 1, GET + [(b"te", b"gzip")])], H2Limits()),
    "informational-status": (lambda e: [headers(e, 1, [(b":status", b"100")], end=False)],
                             H2Limits()),
    "bad-hpack": (lambda e: [HeadersFrame(1, data=b"\xff\xff\xff\xff\xff\xff",
                                          flags=["END_HEADERS", "END_STREAM"])], H2Limits()),
    "empty-block": (lambda e: [HeadersFrame(1, data=b"", flags=["END_HEADERS"])], H2Limits()),
    "list-too-large": (lambda e: [headers(e, 1, GET + [(b"x-big", b"v" * 9000)])],
                       H2Limits(large_header_buffers=(1, 8192))),
    "even-stream": (lambda e: [headers(e, 1, GET), headers(e, 2, GET)], H2Limits()),
    "stream-id-reused": (lambda e: [headers(e, 3, GET), headers(e, 1, GET)], H2Limits()),
    "window-overflow": (lambda e: [headers(e, 1, GET), window(0, (1 << 31) - 1)], H2Limits()),
    "window-zero": (lambda e: [headers(e, 1, GET), window(0, 0)], H2Limits()),
    "priority-and-reset": (lambda e: [headers(e, 1, GET, flags=("PRIORITY",)),
                                      PriorityFrame(3, depends_on=1),
                                      headers(e, 5, POST, end=False), RstStreamFrame(5),
                                      headers(e, 7, GET)], H2Limits()),
    "repeated-blocks": (lambda e: [raw_headers(1, BLOCK_A), raw_headers(3, INDEXED),
                                   raw_headers(5, INDEXED, end=False), raw_headers(7, BLOCK_B),
                                   raw_headers(9, INDEXED), raw_headers(11, INDEXED_63),
                                   raw_headers(13, NO_PATH), raw_headers(15, NO_PATH),
                                   raw_headers(17, INDEXED)], H2Limits()),
    "reserved-bit": (lambda e: [b"\x00\x00\x0e\x01\x05\x80\x00\x00\x01" + bytes(
        Encoder().encode(GET, huffman=False))[:14]], H2Limits()),
}


def by_stream(data: bytes) -> dict[int, list[tuple[int, int, bytes]]]:
    """Frames (type, flags, payload) per stream id, in order (streams interleave freely)."""
    out: dict[int, list[tuple[int, int, bytes]]] = {}
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        sid = int.from_bytes(data[pos + 5:pos + 9], "big")
        out.setdefault(sid, []).append((data[pos + 3], data[pos + 4],
                                        data[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return out


CONNECTION_ERRORS = {"even-stream", "stream-id-reused", "window-overflow", "window-zero"}
"""A bad frame after common ones in the same read: h2 raises before any event of that read
goes out, the common road has passed the requests before it on (nginx handles frames in
order too); they are reset with the connection."""


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_common_frames_match_h2s_road(name: str, h2_headers_calls: list[int]) -> None:
    conv, limits = CONVERSATIONS[name]
    common_events, common_out = run(conv, limits, True)
    by_common = h2_headers_calls[0]
    h2_events, h2_out = run(conv, limits, False)
    assert by_stream(common_out) == by_stream(h2_out)
    if name in CONNECTION_ERRORS:
        extra = [e for e in common_events if e not in h2_events]
        assert h2_events == [e for e in common_events if e in h2_events]
        opened = [e.stream_id for e in extra if type(e).__name__ == "RequestHeaders"]
        reset = [e.stream_id for e in extra if type(e).__name__ == "StreamReset"]
        assert opened and opened == reset, extra
    else:
        assert common_events == h2_events
    first = conv(Encoder())[0]
    if isinstance(first, HeadersFrame) and "PRIORITY" not in first.flags:
        # at least the first HEADERS frame took the common road
        assert by_common < h2_headers_calls[0] - by_common


def test_plain_requests_take_the_common_road(h2_headers_calls: list[int]) -> None:
    conv, limits = CONVERSATIONS["gets-and-window-updates"]
    events, out = run(conv, limits)
    assert h2_headers_calls[0] == 0
    assert [type(e).__name__ for e in events[:-6]] == ["RequestHeaders"] * 3


@pytest.mark.parametrize("name", ["gets-and-window-updates", "max-requests", "post-with-body",
                                  "over-concurrency"])
@pytest.mark.parametrize("body", [b"hello", b"", b"x" * 20000, b"y" * 70000])
def test_send_response_writes_what_the_three_events_write(name: str, body: bytes) -> None:
    """Bodies that fit one frame and the windows, larger than a frame, larger than the
    stream window (then the rest waits for WINDOW_UPDATE exactly as with the events)."""
    conv, limits = CONVERSATIONS[name]
    whole_events, whole_out = run(conv, limits, respond="whole", body=body)
    events, out = run(conv, limits, body=body)
    assert whole_events == events
    assert by_stream(whole_out) == by_stream(out)


def test_send_response_for_head_and_no_body_statuses() -> None:
    for method, status in ((b"HEAD", 200), (b"GET", 204), (b"GET", 304)):
        outs = []
        for whole in (True, False):
            server = H2Server()
            server.receive_data(PREFACE + SettingsFrame(0).serialize())
            server.data_to_send()
            fields = [(b":method", method)] + GET[1:]
            server.receive_data(HeadersFrame(1, data=bytes(Encoder().encode(fields)),
                                             flags=["END_HEADERS", "END_STREAM"]).serialize())
            hdrs = ((b"content-length", b"4"),)
            if whole:
                server.send_response(1, status, hdrs, b"body")
            else:
                server.send(ResponseHeaders(stream_id=1, status=status, headers=hdrs))
                server.send(ResponseData(stream_id=1, data=b"body"))
                server.send(ResponseEnd(stream_id=1))
            outs.append(server.data_to_send())
        assert outs[0] == outs[1], (method, status)


def test_repeated_blocks_are_judged_once_per_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """An indexed-only block seen before is not judged again while the table is unchanged;
    a literal changes the table, and the same bytes then mean another field."""
    calls = [0]
    original = H2Server._request_headers

    def counted(self: H2Server, *args: object) -> object:
        calls[0] += 1
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(H2Server, "_request_headers", counted)
    conv, limits = CONVERSATIONS["repeated-blocks"]
    events, _ = run(conv, limits)
    hosts = [(e.stream_id, e.host) for e in events  # type: ignore[attr-defined]
             if type(e).__name__ == "RequestHeaders"]
    assert hosts == [(1, b"a"), (3, b"a"), (5, b"a"), (7, b"b"), (9, b"b"), (11, b"a"),
                     (17, b"b")]
    rejected = [e.stream_id for e in events  # type: ignore[attr-defined]
                if type(e).__name__ == "RequestRejected"]
    assert rejected == [13, 15]
    # judged: 1, 3, 5 (END_STREAM differs), 7, 9, 11, 13; 15 and 17 are repeats
    assert calls[0] == 7
