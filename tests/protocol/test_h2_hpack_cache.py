"""The adapter's HPACK decoding cache (blocks made only of indexed fields) never serves a stale
list: the same indexed bytes mean other fields once the dynamic table has changed."""

from __future__ import annotations

from hpack import Encoder
from hyperframe.frame import HeadersFrame, SettingsFrame

from proxy.protocol.events import RequestHeaders, RequestRejected
from proxy.protocol.h2 import H2Server

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()


def _headers(sid: int, block: bytes) -> bytes:
    f = HeadersFrame(sid, data=block)
    f.flags.add("END_HEADERS")
    f.flags.add("END_STREAM")
    return f.serialize()


def _request(server: H2Server, sid: int, block: bytes) -> RequestHeaders:
    events = [e for e in server.receive_data(_headers(sid, block))
              if isinstance(e, RequestHeaders)]
    assert len(events) == 1, events
    return events[0]


def test_indexed_blocks_decode_alike_and_follow_table_changes() -> None:
    server = H2Server()
    server.receive_data(PREFACE)
    enc = Encoder()
    first = [(":method", "GET"), (":scheme", "http"), (":path", "/a"), (":authority", "x"),
             ("x-one", "1")]
    r1 = _request(server, 1, enc.encode(first))
    block = enc.encode(first)  # now all indexed
    assert min(block) > 0x80 and max(block) < 0xFF
    r3 = _request(server, 3, block)
    r5 = _request(server, 5, block)  # from the cache
    assert r1.raw_headers == r3.raw_headers == r5.raw_headers == ((b"host", b"x"),
                                                                   (b"x-one", b"1"))
    assert r5.target == b"/a"
    # a new entry shifts every dynamic index: the same bytes now name other fields
    _request(server, 7, enc.encode(first[:4] + [("x-two", "2")]))
    # (:method, :scheme, :authority, x-one, x-two: no :path any more, a 400 for nginx)
    events = server.receive_data(_headers(9, block))
    assert [type(e) for e in events] == [RequestRejected], events
    assert isinstance(events[0], RequestRejected) and events[0].status_hint == 400


def test_response_blocks_reused_only_while_the_table_is_unchanged() -> None:
    """Responses with the same header list reuse their encoded block; a new field in between
    (a table change) makes the next encoding fresh.  A client decoder, fed every block in
    order, always reads the intended fields."""
    from hpack import Decoder
    from hyperframe.frame import Frame

    from proxy.protocol.events import ResponseHeaders

    server = H2Server()
    server.receive_data(PREFACE)
    enc = Encoder()
    lists = [[(b"server", b"t"), (b"x-a", b"1")]] * 3 + [[(b"server", b"t"), (b"x-b", b"2")]] \
        + [[(b"server", b"t"), (b"x-a", b"1")]] * 2
    wire = b""
    for i, fields in enumerate(lists):
        sid = 2 * i + 1
        _request(server, sid, enc.encode([(":method", "GET"), (":scheme", "http"),
                                          (":path", "/"), (":authority", "x")]))
        server.send(ResponseHeaders(stream_id=sid, status=200, headers=tuple(fields),
                                    end_stream=True))
        wire += server.data_to_send()
    dec = Decoder()
    seen = []
    while len(wire) >= 9:
        f, length = Frame.parse_frame_header(memoryview(wire[:9]))
        f.parse_body(memoryview(wire[9:9 + length]))
        wire = wire[9 + length:]
        if isinstance(f, HeadersFrame):
            seen.append([(n, v) for n, v in dec.decode(f.data, raw=True) if n != b":status"])
    assert seen == [list(x) for x in lists]
