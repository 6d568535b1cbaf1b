"""HTTP/2 server side, sans-I/O, over the h2 library: client bytes in, request events out.

Requests are judged the way Debian's nginx 1.22.1 judges them (``ngx_http_v2.c``: the state
machine, ``ngx_http_v2_validate_header``, ``ngx_http_v2_pseudo_header``,
``ngx_http_v2_construct_request_line``, ``ngx_http_process_request_header``); the rules marked
"checked" were checked against the real binary over h2c (``tests/compat/test_h2_vs_nginx.py``).

Rules:

1. Events are the ones of ``events``; stream ids are the client's.  A request arrives as
   ``RequestHeaders`` (``end_stream`` True when HEADERS carried END_STREAM; then no
   ``RequestEnd``), body pieces as ``RequestData`` (consecutive DATA frames of one stream in one
   ``receive_data`` call joined), then ``RequestEnd``.  Request trailers are dropped (nginx 1.22
   cannot take them at all: it answers a second HEADERS frame with GOAWAY PROTOCOL_ERROR,
   checked).  ``RequestHeaders.raw_headers`` are the regular fields, lower case, in arrival
   order, with ``:authority`` as a ``host`` field where it stood and the ``cookie`` crumbs joined
   with ``"; "`` into one field at the end, as nginx builds ``headers_in``.  ``chunked`` is True
   for a body without Content-Length (nginx sets ``r->headers_in.chunked`` for it).
2. nginx's answers to bad requests, each checked.  The first bad field decides, in order:
   a field name with a control byte, space, DEL, ``:`` or an upper-case letter, or a value with
   NUL, CR or LF, resets the stream with PROTOCOL_ERROR (1.22 resets; later nginx answers 400).
   A name with any other byte outside ``[a-z0-9-]`` (``_`` unless ``underscores_in_headers``) is
   dropped (``ignore_invalid_headers``).  A missing, empty, repeated or unknown pseudo-header,
   ``:status``, a ``:path`` not starting with ``/`` or holding a space or control byte, a
   ``:method`` outside ``[A-Z_-]``, a bad ``:scheme``, an invalid or repeated host (``:authority``
   and ``host`` together count as repeated), a repeated Content-Length, Transfer-Encoding or other
   unique header, an invalid Content-Length, Content-Length with Transfer-Encoding, a
   Content-Length above 0 on a HEADERS frame with END_STREAM: ``RequestRejected(400)``.  An
   unknown Transfer-Encoding: 501; TRACE and CONNECT: 405.  A body longer or shorter than its
   Content-Length: ``RequestRejected(400)`` after the ``RequestHeaders`` (the engine answers it
   unless its response already started) and the rest of the body is dropped.  A
   ``RequestRejected`` on HTTP/2 ends that stream only: the connection goes on.
3. RFC 9113 §8.2 rules nginx 1.22 does not apply (it passes these requests on, checked) are
   applied while ``H2Limits.strict`` (the default): a connection-specific field (connection,
   keep-alive, proxy-connection, transfer-encoding, upgrade), ``te`` other than ``trailers``, a
   pseudo-header after a regular field, a name byte in 0x80-0xff, a value starting or ending with
   space or tab.  They reset the stream with PROTOCOL_ERROR (a stream error, §8.1.1) and no event
   goes out.  ``strict=False`` is nginx 1.22 exactly.
4. Limits, as nginx applies them (checked): a new stream while ``max_concurrent_streams``
   streams are in progress is reset with REFUSED_STREAM (the connection goes on); so is every
   stream past ``2 * max_concurrent_streams`` new ones in one ``receive_data`` call (Debian's
   CVE-2023-44487 patch: "client sent too many streams at once").  The ``max_requests``-th stream
   (nginx ``keepalive_requests``) is served and a GOAWAY NO_ERROR naming it goes out with it;
   later streams are reset with REFUSED_STREAM (nginx ignores them silently) and the connection
   must close once the streams in progress are done.  A header field (name or value) longer than
   ``size`` of ``large_header_buffers``, or a header list longer than ``number * size`` (names
   plus values, pseudo-headers and cookie crumbs included), is a GOAWAY ENHANCE_YOUR_CALM; a
   field with an empty name is a GOAWAY PROTOCOL_ERROR.  As nginx, the field length is the
   string's length as sent (Huffman-coded or raw), read from the HPACK block; the list is
   measured decoded; both apply to every header block (refused streams and trailers too).
5. Floods, each a GOAWAY ENHANCE_YOUR_CALM (nginx sends NO_ERROR for its byte-ratio rule and
   closes silently for its frame-count one; RFC 9113 §5.4.1 names ENHANCE_YOUR_CALM for load):
   rapid reset (more than N of M streams reset by the client before their response completed,
   ``max_resets``); CONTINUATION flood (more than ``max_continuations`` CONTINUATION frames or
   more than ``2 * number * size`` bytes in one header block); HPACK bomb (the exact list size
   above, and HPACK's own bound of ``8 * number * size`` while decoding); PRIORITY flood
   (nginx's budget: ``max(max_concurrent_streams, 100)`` plus ``max_concurrent_streams`` per
   stream); PING, SETTINGS and other frames the client makes us answer (more than
   ``max_pending_control`` bytes of such answers not yet taken by ``data_to_send``); empty DATA
   frames without END_STREAM (more than ``max_empty_frames`` with no payload in between); and
   nginx's general rule (input bytes / ratio > payload bytes + slack, ``overhead_limit``).  A
   frame header announcing more than the frame size we allow is refused when the header
   arrives, not after the frame has been buffered (h2 waits for the whole frame).
6. Flow control.  Response data is queued per stream and framed in ``data_to_send()``: pieces
   sent in one batch become as few DATA frames as the window and frame size allow, and
   ``ResponseEnd`` rides on the last one.  Data beyond the window waits (never dropped) and goes
   out after the client's WINDOW_UPDATE or SETTINGS; ``buffered(stream_id)`` and
   ``buffered_bytes`` say how much waits, ``stalled_streams()`` which streams wait on a window of
   zero (the I/O layer times them out: nginx ``send_timeout``).  Request data counts against the
   client's windows until the engine calls ``consumed(stream_id, n)``; h2 then sends
   WINDOW_UPDATE once half a window is consumed.  Data the engine never sees (padding, dropped
   bodies, refused streams) and data left unconsumed when a stream ends is acknowledged by the
   adapter.  The windows nginx announces: SETTINGS MAX_CONCURRENT_STREAMS and
   INITIAL_WINDOW_SIZE (``http2_body_preread_size``, 65536) and a connection WINDOW_UPDATE to
   2^31-1 (checked); nginx also offers MAX_FRAME_SIZE 2^24-1, the adapter keeps 16384.
7. Responses: ``ResponseHeaders`` (1xx ones as interim heads), ``ResponseData``,
   ``ResponseEnd``, in that order per stream, any order across streams.  Header names are lower-
   cased; connection-specific ones are dropped; nginx's block (server, date, content-type,
   content-length, last-modified, location) comes first unless an empty ``Connection`` marker
   says where nginx's own headers end (as in ``h1``).  HEAD, 204 and 304 responses end on their
   HEADERS frame and their body is dropped, as nginx's ``header_only``.  A response that ends
   while the request body is still coming is followed by RST_STREAM NO_ERROR (nginx, checked).
   ``StreamReset`` from the engine resets the stream (NO_ERROR becomes INTERNAL_ERROR when the
   response was incomplete, as ``ngx_http_v2_close_stream``).  Response trailers are not
   supported yet (nginx 1.22 sends them only for ``add_trailer``).
8. Peer errors never raise: h2's exceptions and the adapter's limits become RST_STREAM or
   GOAWAY plus ``must_close``, and the engine gets ``StreamReset`` for every stream it was
   serving.  A client's GOAWAY is ignored as nginx ignores it (h2 would stop all sending).
   ``receive_data(b"")`` is EOF: streams in progress get ``StreamReset`` and the connection is
   done.  Engine mistakes raise ``LocalProtocolError``.
9. No I/O, no clocks.  Call ``initiate()`` first (or let the first ``receive_data`` do it),
   ``data_to_send()`` after ``receive_data`` and after each batch of ``send``; close the
   transport once ``must_close``.  ``close(0)`` drains: GOAWAY NO_ERROR naming the last stream,
   streams in progress go on, ``must_close`` once they are done; ``close(code)`` is immediate.
10. h2 parses frames, decodes and encodes HPACK and keeps the stream states and windows; its
    own header validation is off (it makes malformed requests connection errors, and costs a
    third of its per-request time).  ``_Connection`` takes three decisions back (concurrency
    and Content-Length, which h2 makes connection errors; a client's GOAWAY, after which h2
    stops sending) and checks nginx's header sizes while the HPACK block is at hand.  Response
    HEADERS and DATA frames are written by the adapter (``_write_headers``, ``_write_data``),
    which keeps h2's stream states, HPACK context and windows in step: h2's per-frame objects
    were a fifth of the cost of a request.  So are the frames a client repeats
    (``_receive_common``): a HEADERS frame opening a stream with its whole block (no padding,
    no priority) and a connection WINDOW_UPDATE are read by the adapter, from the first byte of
    a read while h2 holds no partial frame; anything else, and everything after it in that
    read, goes to h2.  A connection error in a later frame of the same read resets the requests
    of the common frames before it (nginx handles frames in order too; h2 alone would have
    raised before passing them on).  An indexed-only block seen before, with the HPACK table
    unchanged since, is not decoded or judged again.  ``send_response`` writes a whole small
    answer (HEADERS, then DATA with END_STREAM) at once; a response head that encoded without
    changing the dynamic table is reused while the table stays unchanged.
"""

from __future__ import annotations

import re
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from itertools import chain
from typing import Final, assert_never

from h2.config import H2Configuration
from h2.connection import (
    AllowedStreamIDs,
    ConnectionInputs,
    ConnectionState,
    H2Connection,
    _decode_headers,
)
from h2.events import (
    DataReceived,
    Event,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    TrailersReceived,
    WindowUpdated,
)
from h2.events import StreamReset as H2StreamReset
from h2.exceptions import DenialOfServiceError, H2Error, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from h2.stream import H2Stream, H2StreamStateMachine, StreamClosedBy, StreamInputs, StreamState
from h2.utilities import is_informational_response
from hpack import Decoder, HeaderTuple
from hpack.table import HeaderTable
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame

from ._rules import MAX_OFF_T, content_length, valid_host
from .events import (
    RequestData,
    RequestEnd,
    RequestEvent,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseEvent,
    ResponseHeaders,
    StreamReset,
)
from .h1 import LocalProtocolError

__all__ = [
    "ENHANCE_YOUR_CALM",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "H2Limits",
    "H2Server",
    "LocalProtocolError",
]

# RFC 9113 §7 error codes
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
ENHANCE_YOUR_CALM: Final = 0xB

_MAX_WINDOW: Final = (1 << 31) - 1
_DEFAULT_WINDOW: Final = 65535


# ---------------------------------------------------------------------------------------------
# limits


@dataclass(frozen=True, slots=True, kw_only=True)
class H2Limits:
    """nginx's HTTP/2 directives and the adapter's flood thresholds, for one connection."""

    max_concurrent_streams: int = 128
    """nginx ``http2_max_concurrent_streams``: streams in progress; more are REFUSED_STREAM."""
    max_requests: int = 1000
    """nginx ``keepalive_requests``: streams served on one connection before GOAWAY."""
    large_header_buffers: tuple[int, int] = (4, 8192)
    """nginx ``large_client_header_buffers number size`` (HTTP/2 uses it since 1.19.7): a field
    name or value over ``size`` bytes, or a header list over ``number * size``, is a GOAWAY
    ENHANCE_YOUR_CALM."""
    initial_window_size: int = 65536
    """nginx ``http2_body_preread_size``: SETTINGS_INITIAL_WINDOW_SIZE, each stream's request
    window."""
    underscores_in_headers: bool = False
    """nginx ``underscores_in_headers``: a name with ``_`` is valid."""
    ignore_invalid_headers: bool = True
    """nginx ``ignore_invalid_headers``: a field with an invalid name is dropped silently."""
    strict: bool = True
    """Apply RFC 9113 §8.2 where nginx 1.22 does not (rule 3); False is nginx exactly."""
    max_continuations: int = 32
    """CONTINUATION frames allowed in one header block (h2 itself stops at 63)."""
    max_pending_control: int = 16384
    """Bytes of frames the client made us send (PING and SETTINGS ACKs, RST_STREAMs,
    WINDOW_UPDATEs) not yet taken by ``data_to_send`` (about 960 PING ACKs; nghttp2 allows 1000
    frames)."""
    max_empty_frames: int = 100
    """Empty DATA frames without END_STREAM in a row, with no payload between them."""
    max_resets: tuple[int, int] = (100, 200)
    """``(n, m)``: more than ``n`` streams reset by the client before their response completed,
    within ``m`` streams opened, is a rapid-reset flood (CVE-2023-44487)."""
    overhead_limit: tuple[int, int] = (8, 1 << 20)
    """``(ratio, slack)``: nginx's "http2 flood detected" once input bytes / ratio exceed payload
    bytes (request headers and bodies) + slack."""

    def __post_init__(self) -> None:
        number, size = self.large_header_buffers
        if number < 1 or size < 1:
            raise ValueError(f"large_header_buffers must be positive: {self!r}")
        if not 1 <= self.max_concurrent_streams < _MAX_WINDOW:
            raise ValueError(f"max_concurrent_streams out of range: {self.max_concurrent_streams}")
        if self.max_requests < 1:
            raise ValueError(f"max_requests must be at least 1: {self.max_requests}")
        if not 0 <= self.initial_window_size <= _MAX_WINDOW:
            raise ValueError(f"initial_window_size out of range: {self.initial_window_size}")
        if not 0 <= self.max_continuations <= 62:
            raise ValueError(f"max_continuations must be 0-62: {self.max_continuations}")
        n, m = self.max_resets
        ratio, slack = self.overhead_limit
        if (
            self.max_pending_control < 64
            or self.max_empty_frames < 0
            or n < 0
            or m < 1
            or ratio < 1
            or slack < 0
        ):
            raise ValueError(f"flood thresholds out of range: {self!r}")


# ---------------------------------------------------------------------------------------------
# h2, with three decisions taken back (rule 10)


_H2_CONFIG: Final = H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)


def _no_content_length(headers: object) -> None:
    """Stands in for ``H2Stream._initialize_content_length``: the adapter checks it (400)."""


def _no_length_tracking(length: int, end_stream: bool) -> None:
    """Stands in for ``H2Stream._track_content_length``: the adapter checks it (400)."""


class _Connection(H2Connection):
    """h2's connection, minus the connection errors nginx does not make, plus nginx's header
    size limits (rule 4), checked where the header block is still at hand."""

    def __init__(self, field_max: int, list_max: int) -> None:
        super().__init__(config=_H2_CONFIG)
        self.field_max = field_max
        self.list_max = list_max
        self.header_bytes = 0
        """Names plus values of the header lists received (payload for the overhead rule)."""

    @property
    def open_inbound_streams(self) -> int:
        """Concurrency is the adapter's call (REFUSED_STREAM), not h2's TooManyStreamsError; and
        h2's count scans every stream for every new one."""
        return 0

    def _begin_new_stream(self, stream_id: int, allowed_ids: AllowedStreamIDs) -> H2Stream:
        if stream_id & 1 and stream_id > self.highest_inbound_stream_id:
            # a client stream: h2's steps, without its debug logging
            stream = H2Stream(
                stream_id,
                config=self.config,
                inbound_window_size=self.local_settings.initial_window_size,
                outbound_window_size=self.remote_settings.initial_window_size,
            )
            stream.max_outbound_frame_size = self.max_outbound_frame_size
            self.streams[stream_id] = stream
            self.highest_inbound_stream_id = stream_id
        else:  # h2 raises
            stream = super()._begin_new_stream(stream_id, allowed_ids)
        # a Content-Length mismatch is a 400 on the stream (nginx), not h2's connection error
        stream._initialize_content_length = _no_content_length  # type: ignore[method-assign]
        stream._track_content_length = _no_length_tracking  # type: ignore[method-assign]
        return stream

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[Event]]:
        frames, events = super()._receive_headers_frame(frame)
        for ev in events:
            headers = getattr(ev, "headers", None)
            if headers is not None:
                self._check_size(frame.data, headers)
                break
        return frames, events

    def _check_size(self, block: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """ngx_http_v2_state_field_len (a string over ``size`` as sent) and
        ngx_http_v2_state_process_header (names plus values over ``number * size``), for every
        header block: refused and ignored streams and trailers too."""
        if not all(name for name, _ in headers):
            # ngx_http_v2_state_process_header, whatever came before it in the block
            raise ProtocolError("client sent zero header name length")
        total = sum(map(len, chain.from_iterable(headers)))
        self.header_bytes += total
        if total > self.list_max:
            raise DenialOfServiceError("client sent too large header")
        if len(block) > self.field_max and _longest_string(block) > self.field_max:
            raise DenialOfServiceError("client sent too large header field")

    def _receive_goaway_frame(self, frame: Frame) -> tuple[list[Frame], list[Event]]:
        # nginx skips a client's GOAWAY; h2 would move to CLOSED, drop its output and refuse to
        # send the responses still owed.
        return [], []


def _hpack_int(block: bytes, i: int, prefix: int) -> tuple[int, int]:
    """RFC 7541 §5.1: the integer at ``block[i]`` with a ``prefix``-bit prefix, and what follows."""
    mask = (1 << prefix) - 1
    value = block[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while i < len(block):
        octet = block[i]
        i += 1
        value += (octet & 0x7F) << shift
        shift += 7
        if not octet & 0x80:
            break
    return value, i


def _longest_string(block: bytes) -> int:
    """The longest string literal of a (well-formed) HPACK block, as sent: raw or Huffman-coded
    (RFC 7541 §6).  nginx measures fields this way; h2 only hands decoded ones over."""
    longest = 0
    i = 0
    n = len(block)
    while i < n:
        first = block[i]
        if first & 0x80:  # indexed field
            _, i = _hpack_int(block, i, 7)
            continue
        if first & 0x40:  # literal with incremental indexing
            index, i = _hpack_int(block, i, 6)
        elif first & 0x20:  # dynamic table size update
            _, i = _hpack_int(block, i, 5)
            continue
        else:  # literal without indexing, never indexed
            index, i = _hpack_int(block, i, 4)
        for _ in range(1 if index else 2):
            length, i = _hpack_int(block, i, 7)
            longest = max(longest, length)
            i += length
    return longest


class _Decoder(Decoder):
    """HPACK decoding with a small cache of blocks made only of one-byte indexed fields (RFC
    7541 §6.1).  Such a block leaves the dynamic table unchanged, so it decodes to the same list
    until a block with anything else (a literal, a table size update) is decoded: then the cache
    is emptied.  A client repeating its requests (a browser, h2load) sends such blocks."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[bytes, list[HeaderTuple]] = {}
        self.generation = 0
        """Counts the times the cache was emptied: a block cached under one generation decodes
        to the same list while the generation stays."""

    def decode(self, data: bytes | memoryview, raw: bool = False) -> Iterable[HeaderTuple]:
        block = bytes(data)
        if block and min(block) > 0x80 and max(block) < 0xFF and raw:
            hit = self._cache.get(block)
            if hit is not None:
                return list(hit)
            headers = list(super().decode(block, raw=True))
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[block] = headers
            return list(headers)
        if self._cache:
            self._cache.clear()
        self.generation += 1
        return super().decode(block, raw=raw)


class _Table(HeaderTable):
    """The encoder's dynamic table, counting its changes (an encoded block can be reused while
    the count stays: ``H2Server._encode``)."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    def _shrink(self) -> None:
        self.generation += 1
        super()._shrink()


class _FrameBuffer(FrameBuffer):
    """h2's frame buffer with a bound on header blocks spread over CONTINUATION frames."""

    def __init__(self, max_continuations: int, max_block: int) -> None:
        super().__init__(server=True)
        self._max_continuations = max_continuations
        self._max_block = max_block

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        held = self._headers_buffer
        if held and isinstance(f, ContinuationFrame) and f.stream_id == held[0].stream_id:
            if len(held) > self._max_continuations:
                raise DenialOfServiceError("client sent too many CONTINUATION frames")
            if sum(len(x.data) for x in held) + len(f.data) > self._max_block:
                raise DenialOfServiceError("client sent too large header block")
        return super()._update_header_buffer(f)


def _settings_frame(values: dict[int, int]) -> bytes:
    payload = b"".join(struct.pack(">HI", key, value) for key, value in values.items())
    return struct.pack(">I", len(payload))[1:] + b"\x04\x00\x00\x00\x00\x00" + payload


def _goaway_frame(last_stream_id: int, error_code: int) -> bytes:
    return b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + struct.pack(">II", last_stream_id, error_code)


_FRAME_HEAD: Final = struct.Struct(">BHBBL")
"""A frame header: length (24 bits, as 8 + 16), type, flags, stream id."""
_FRAME_HEAD_IN: Final = struct.Struct(">IBL")
"""A frame header read in one go: length << 8 | type, flags, stream id (with its reserved
bit)."""
_U32: Final = struct.Struct(">L")
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_WINDOW_UPDATE: Final = 0x8
_CONTINUATION: Final = 0x9
_END_STREAM: Final = 0x1
_END_HEADERS: Final = 0x4


def _frame_head(length: int, kind: int, flags: int, sid: int) -> bytes:
    return _FRAME_HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, sid)


def _window_update_frame(increment: int) -> bytes:
    return b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + struct.pack(">I", increment)


# ---------------------------------------------------------------------------------------------
# request fields (ngx_http_v2_validate_header, ngx_http_v2_pseudo_header, ngx_http_headers_in)

_F_REGULAR: Final = 0
_F_DROP: Final = 1
"""An invalid name nginx drops (``ignore_invalid_headers``)."""
_F_RESET: Final = 2
"""A name nginx 1.22 answers with RST_STREAM PROTOCOL_ERROR."""
_F_STRICT: Final = 3
"""A field RFC 9113 makes malformed and nginx takes (rule 3); strict mode only."""
_F_TE: Final = 4
_F_HOST: Final = 5
_F_CL: Final = 6
_F_TRANSFER: Final = 7
_F_UNIQUE: Final = 8
_F_COOKIE: Final = 9
_F_PSEUDO: Final = 10
"""Kinds from here on are pseudo-headers."""
_F_METHOD: Final = 10
_F_SCHEME: Final = 11
_F_PATH: Final = 12
_F_AUTHORITY: Final = 13
_F_PSEUDO_UNKNOWN: Final = 14

_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _F_HOST,
    b"content-length": _F_CL,
    b"transfer-encoding": _F_TRANSFER,
    b"cookie": _F_COOKIE,
    b"te": _F_TE,
    # ngx_http_process_unique_header_line: a second one is a 400 (checked)
    b"if-modified-since": _F_UNIQUE,
    b"if-unmodified-since": _F_UNIQUE,
    b"if-match": _F_UNIQUE,
    b"if-none-match": _F_UNIQUE,
    b"content-range": _F_UNIQUE,
    b"if-range": _F_UNIQUE,
    b"expect": _F_UNIQUE,
    b"authorization": _F_UNIQUE,
}
_PSEUDO: Final[dict[bytes, int]] = {
    b":method": _F_METHOD,
    b":scheme": _F_SCHEME,
    b":path": _F_PATH,
    b":authority": _F_AUTHORITY,
}
_CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
"""RFC 9113 §8.2.2."""

_NAME_OK: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")
_NAME_CACHE_MAX: Final = 4096
_NAME_CACHES: dict[tuple[bool, bool, bool], dict[bytes, int]] = {}
"""Name kinds, one table per (underscores, ignore_invalid, strict)."""


def _classify(name: bytes, underscores: bool, ignore_invalid: bool, strict: bool) -> int:
    """What a field name is to nginx (ngx_http_v2_validate_header) and, if strict, to RFC 9113."""
    if not name:  # pragma: no cover - a connection error before (_Connection._check_size)
        return _F_RESET
    pseudo = name[0] == 0x3A
    invalid = high = False
    for c in name[1:] if pseudo else name:
        if c in _NAME_OK or (c == 0x5F and underscores):
            continue
        if c <= 0x20 or c == 0x7F or c == 0x3A or 0x41 <= c <= 0x5A:
            return _F_RESET
        invalid = True
        high = high or c >= 0x80
    if pseudo:
        return _PSEUDO.get(name, _F_PSEUDO_UNKNOWN)
    if strict and (high or name in _CONNECTION_SPECIFIC):
        return _F_STRICT
    if invalid and ignore_invalid:
        return _F_DROP
    return _SPECIAL.get(name, _F_REGULAR)


_BAD_CHAR: Final = re.compile(rb"[\x00\r\n]")
"""ngx_http_v2_validate_header: NUL, CR or LF in a value (checked)."""
_BAD_CHAR_JOINED: Final = re.compile(rb"[\x00\r\n]|\x01[ \t]|[ \t]\x01")
"""Over values joined with \\x01 (and framed by it): a bad byte, or (strict) a value starting or
ending with space or tab; a hit sends the values through the exact check one by one."""
_WS: Final = frozenset(b" \t")
_METHOD: Final = re.compile(rb"[A-Z_-]+")
_SCHEME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*")
_PATH_BAD: Final = re.compile(rb"[\x00-\x20\x7f]")
"""ngx_http_parse_uri on ``:path``: origin form only, no space or control byte (checked)."""
_MAX_OFF_T: Final = MAX_OFF_T


class _Reject:
    """nginx's answer to a request: a status, or 0 for RST_STREAM PROTOCOL_ERROR."""

    __slots__ = ("status", "why")

    def __init__(self, status: int, why: str) -> None:
        self.status = status
        self.why = why


_RESET_NAME: Final = _Reject(0, "client sent invalid header name")
_RESET_VALUE: Final = _Reject(0, "client sent header with invalid value")
_RESET_STRICT: Final = _Reject(0, "client sent a field RFC 9113 makes malformed")
_RESET_ORDER: Final = _Reject(0, "client sent a pseudo-header after a regular field (RFC 9113)")


# ---------------------------------------------------------------------------------------------
# streams


class _Out(Enum):
    """The response side of a stream, as the engine drives it."""

    WAIT = "no final head yet"
    BODY = "head sent, body may follow"
    DRAIN = "head sent with END_STREAM (HEAD, 204, 304): body events are dropped"
    DONE = "response complete"

    # members are singletons: identity hashing (C) instead of Enum's hash of the name (Python),
    # which made every transition-table lookup cost ~0.5 us
    __hash__ = object.__hash__


class _Send(Enum):
    """What the engine sends."""

    INTERIM = "1xx head"
    HEAD = "final head"
    HEAD_END = "final head with end_stream"
    DATA = "data"
    END = "end"

    __hash__ = object.__hash__


_OUT: Final[dict[tuple[_Out, _Send], _Out]] = {
    (_Out.WAIT, _Send.INTERIM): _Out.WAIT,
    (_Out.WAIT, _Send.HEAD): _Out.BODY,
    (_Out.WAIT, _Send.HEAD_END): _Out.DONE,
    (_Out.BODY, _Send.DATA): _Out.BODY,
    (_Out.BODY, _Send.END): _Out.DONE,
    (_Out.DRAIN, _Send.DATA): _Out.DRAIN,
    (_Out.DRAIN, _Send.END): _Out.DONE,
}
"""Response-side transitions; a pair missing here is an engine bug (LocalProtocolError)."""

_IN_BODY: Final = 0
"""Request body may follow; its data goes to the engine."""
_IN_DONE: Final = 1
"""END_STREAM received."""
_IN_SKIP: Final = 2
"""Rejected: the rest of the request body is dropped (and acknowledged)."""


class _Stream:
    """A stream the engine knows about (RequestHeaders or RequestRejected went out)."""

    __slots__ = (
        "sid",
        "h2",
        "inp",
        "out",
        "is_head",
        "length",
        "got",
        "unacked",
        "queue",
        "queued",
        "offset",
        "end",
    )

    def __init__(self, sid: int, h2: H2Stream) -> None:
        self.sid = sid
        self.h2 = h2
        self.inp = _IN_BODY
        self.out = _Out.WAIT
        self.is_head = False
        self.length: int | None = None
        """Declared Content-Length."""
        self.got = 0
        """Request body bytes received."""
        self.unacked = 0
        """Request body bytes delivered and not yet ``consumed``."""
        self.queue: deque[bytes] | None = None
        """Response data waiting to be framed (made on first use: most answers go out whole)."""
        self.queued = 0
        self.offset = 0
        """Bytes of ``queue[0]`` already framed."""
        self.end = False
        """END_STREAM goes out after the queued data."""


_NO_BODY_STATUS: Final = frozenset({204, 304})
_STATUS_BYTES: Final[dict[int, bytes]] = {code: b"%d" % code for code in range(100, 1000)}

# response header names: nginx's fixed block first (ngx_http_v2_header_filter), then the others
_R_OTHER: Final = -1
_R_DROP: Final = 6
_RESPONSE_RANK: Final[dict[bytes, int]] = {
    b"server": 0,
    b"date": 1,
    b"content-type": 2,
    b"content-length": 3,
    b"last-modified": 4,
    b"location": 5,
    b"connection": _R_DROP,
    b"keep-alive": _R_DROP,
    b"proxy-connection": _R_DROP,
    b"transfer-encoding": _R_DROP,
    b"upgrade": _R_DROP,
}
_LOWER: dict[bytes, tuple[bytes, int]] = {}


def _lower(name: bytes) -> tuple[bytes, int]:
    entry = _LOWER.get(name)
    if entry is None:
        low = name.lower()
        entry = (low, _RESPONSE_RANK.get(low, _R_OTHER))
        if len(_LOWER) < _NAME_CACHE_MAX:
            _LOWER[name] = entry
    return entry


def _send_end_stream(machine: H2StreamStateMachine) -> None:
    """h2's SEND_END_STREAM input; from HALF_CLOSED_REMOTE (a request that has ended: the
    usual case) without its transition machinery."""
    if machine.state is StreamState.HALF_CLOSED_REMOTE:
        machine.state = StreamState.CLOSED
        machine.stream_closed_by = StreamClosedBy.SEND_END_STREAM
    else:
        machine.process_input(StreamInputs.SEND_END_STREAM)


def _rank_key(item: tuple[int, bytes, bytes]) -> int:
    return item[0]


class _Fatal(Exception):
    """The connection ends with GOAWAY ``code`` (control flow inside ``receive_data``)."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


# ---------------------------------------------------------------------------------------------
# the adapter


class H2Server:
    """HTTP/2 server side of one client connection; see the module rules."""

    def __init__(self, limits: H2Limits = H2Limits()) -> None:
        self._limits = limits
        number, size = limits.large_header_buffers
        conn = _Connection(size, number * size)
        conn.incoming_buffer = _FrameBuffer(limits.max_continuations, 2 * number * size)
        # HPACK's bound while decoding (the bomb); the exact nginx bound is checked after
        self._decoder = conn.decoder = _Decoder()
        self._table = conn.encoder.header_table = _Table()
        self._encoded: dict[tuple[tuple[bytes, bytes], ...], tuple[int, bytes]] = {}
        """Response header lists encoded without changing the table, by table generation."""
        self._heads: dict[tuple[int, tuple[tuple[bytes, bytes], ...]], tuple[int, bytes]] = {}
        """The same, by the engine's status and header list (before rule 7's order)."""
        self._judged: dict[tuple[bytes, bool], tuple[int, int, RequestHeaders | _Reject]] = {}
        """Indexed-only request blocks already judged, by decoder generation: the bytes their
        fields count (names plus values) and the judgement (rules 2-4 give the same again)."""
        conn.decoder.max_header_list_size = 8 * number * size
        # as if acknowledged already: h2 applies them to every stream from the start
        conn.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            },
        )
        self._conn = conn
        self._out = conn._data_to_send
        flags = (limits.underscores_in_headers, limits.ignore_invalid_headers, limits.strict)
        self._names = _NAME_CACHES.setdefault(flags, {})
        self._name_flags = flags
        self._strict = limits.strict
        self._initiated = False
        self._streams: dict[int, _Stream] = {}
        """Streams the engine knows whose response is not yet fully framed."""
        self._active = 0
        """Streams the engine is serving (nginx's ``h2c->processing``)."""
        self._requests = 0
        self._last_sid = 0
        """The last stream whose HEADERS the adapter has judged (a fatal GOAWAY names it)."""
        self._goaway: int | None = None
        """Last stream id of the GOAWAY NO_ERROR sent, if any."""
        self._dead = False
        self._goaway_error = False
        """A GOAWAY with an error code went out."""
        self._dirty: dict[int, _Stream] = {}
        """Streams with response data or an end to frame at the next ``data_to_send``."""
        self._blocked: dict[int, _Stream] = {}
        """Streams whose response data waits for a window."""
        self._buffered = 0
        # flood accounting (rule 5)
        self._new_streams = 0
        self._priority_budget = max(limits.max_concurrent_streams, 100)
        self._forced = 0
        self._empty = 0
        self._opened = 0
        self._resets = 0
        self._in_bytes = 0
        self._payload = 0
        # RequestData pieces of one stream in a row, joined
        self._data_sid = 0
        self._data_parts: list[bytes] = []

    # -----------------------------------------------------------------------------------------
    # public API

    def initiate(self) -> None:
        """Queue the server preface nginx sends: SETTINGS (MAX_CONCURRENT_STREAMS,
        INITIAL_WINDOW_SIZE) and a connection WINDOW_UPDATE up to 2^31-1."""
        if self._initiated:
            return
        self._initiated = True
        conn = self._conn
        conn.state_machine.process_input(ConnectionInputs.SEND_SETTINGS)
        self._out += _settings_frame(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: self._limits.max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: self._limits.initial_window_size,
            }
        )
        conn.increment_flow_control_window(_MAX_WINDOW - _DEFAULT_WINDOW)

    def receive_data(self, data: bytes) -> list[RequestEvent]:
        """Feed bytes read from the client.

        Args:
            data: what the transport read; ``b""`` when the client closed its side (EOF).

        Returns:
            The events these bytes complete, in order.  Peer errors never raise: they end a
            stream or the connection (rule 8).
        """
        events: list[RequestEvent] = []
        if self._dead:
            return events
        if not self._initiated:
            self.initiate()
        if not data:
            self._die(events, NO_ERROR, goaway=False)
            return events
        out = self._out
        before = len(out)
        self._new_streams = 0
        self._in_bytes += len(data)
        try:
            try:
                rest = self._receive_common(data, events)
                h2_events = self._conn.receive_data(rest) if rest else []
            except H2Error as exc:  # h2 has queued GOAWAY with the code, unless it failed early
                code = getattr(exc, "error_code", None)
                self._die(events, PROTOCOL_ERROR if code is None else int(code), goaway=True)
                return events
            self._dispatch(h2_events, events)
            self._flush_data(events)
            self._check_flood(before)
        except _Fatal as fatal:
            self._flush_data(events)
            self._die(events, fatal.code, goaway=True)
        return events

    def next_events(self) -> list[RequestEvent]:
        """``H1Server`` shape: HTTP/2 holds no parsed request back, so always ``[]``."""
        return []

    def send(self, event: ResponseEvent) -> None:
        """Queue a response event; its bytes come out of ``data_to_send``.

        Args:
            event: for a stream the engine got ``RequestHeaders`` or ``RequestRejected`` for.
                Events for a stream already finished or reset, and anything once the
                connection is done, are ignored.

        Raises:
            LocalProtocolError: events out of order for a stream (data before headers, a second
                final head, a 101), or a stream the client never opened.
        """
        if self._dead:
            return
        sid = event.stream_id
        stream = self._streams.get(sid)
        if stream is None:
            if sid % 2 == 0 or sid > self._conn.highest_inbound_stream_id:
                raise LocalProtocolError(f"stream {sid} was never opened by the client")
            return  # finished, reset or refused already
        try:
            if isinstance(event, StreamReset):
                # also for a finished response still waiting for a window (a stalled stream)
                if stream.out is not _Out.DONE:
                    self._engine_done(stream)
                if not stream.h2.closed:
                    # nginx (ngx_http_v2_close_stream): an incomplete response is INTERNAL_ERROR
                    self._conn.reset_stream(sid, event.error_code or INTERNAL_ERROR)
                self._drop(stream)
            elif stream.out is _Out.DONE:
                return  # the response is complete: late events are ignored
            elif isinstance(event, ResponseData):
                self._step(stream, _Send.DATA)
                data = event.data
                if data and stream.out is _Out.BODY:
                    queue = stream.queue
                    if queue is None:
                        queue = stream.queue = deque()
                    queue.append(data)
                    stream.queued += len(data)
                    self._buffered += len(data)
                    if sid not in self._blocked:
                        self._dirty[sid] = stream
            elif isinstance(event, ResponseHeaders):
                self._send_head(stream, event.status, event.headers, event.end_stream)
            elif isinstance(event, ResponseEnd):
                drain = stream.out is _Out.DRAIN
                self._step(stream, _Send.END)
                self._engine_done(stream)
                if drain:
                    self._finish(stream)
                else:
                    stream.end = True
                    if sid not in self._blocked:
                        self._dirty[sid] = stream
            else:
                assert_never(event)
        except H2Error as exc:  # pragma: no cover - the adapter keeps h2's rules
            raise LocalProtocolError(f"stream {sid}: h2 refused {event!r}: {exc}") from exc

    def send_response(
        self, stream_id: int, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """A whole final response: ``ResponseHeaders``, ``ResponseData`` (when ``body``) and
        ``ResponseEnd``, without the event objects.  A body the windows and frame size take
        whole goes out with its head at once (HEADERS, then DATA with END_STREAM); anything
        else is sent as the three events are."""
        stream = self._streams.get(stream_id)
        if (
            stream is not None
            and body
            and stream.out is _Out.WAIT
            and status >= 200
            and not stream.is_head
            and status not in _NO_BODY_STATUS
            and not self._dead
        ):
            conn = self._conn
            n = len(body)
            h2stream = stream.h2
            size = conn.max_outbound_frame_size
            if n <= size and n <= conn.outbound_flow_control_window \
                    and n <= h2stream.outbound_flow_control_window:
                block = self._head_block(status, headers)
                machine = h2stream.state_machine
                if (
                    machine.state is StreamState.HALF_CLOSED_REMOTE
                    and machine.client is False
                    and not machine.headers_sent
                    and not stream.unacked
                    and len(block) <= size
                ):
                    # the usual answer, all in place: what _write_headers, _write_data,
                    # _engine_done and _finish do for it
                    machine.headers_sent = True
                    machine.state = StreamState.CLOSED
                    machine.stream_closed_by = StreamClosedBy.SEND_END_STREAM
                    h2stream.outbound_flow_control_window -= n
                    conn.outbound_flow_control_window -= n
                    out = self._out
                    out += _frame_head(len(block), _HEADERS, _END_HEADERS, stream_id)
                    out += block
                    out += _frame_head(n, _DATA, _END_STREAM, stream_id)
                    out += body
                    stream.out = _Out.DONE
                    self._active -= 1
                    del self._streams[stream_id]
                    del conn.streams[stream_id]
                    conn._closed_streams[stream_id] = StreamClosedBy.SEND_END_STREAM
                    return
                self._step(stream, _Send.HEAD)
                self._write_headers(stream, block, False, False)
                self._engine_done(stream)
                self._write_data(stream, body, True)
                self._finish(stream)
                return
        headers = tuple(headers)
        self.send(ResponseHeaders(stream_id=stream_id, status=status, headers=headers,
                                  end_stream=not body))
        if body:
            self.send(ResponseData(stream_id=stream_id, data=body))
            self.send(ResponseEnd(stream_id=stream_id))

    def data_to_send(self) -> bytes:
        """Frame what waits, within the flow-control windows, and drain the output."""
        if not self._initiated:
            self.initiate()
        if self._dirty and not self._dead:
            try:
                self._flush()
            except H2Error as exc:  # pragma: no cover - the windows are checked before
                raise LocalProtocolError(f"h2 refused to send data: {exc}") from exc
        self._forced = 0
        out = self._out
        if not out:
            return b""
        data = bytes(out)
        out.clear()
        return data

    def consumed(self, stream_id: int, n: int) -> None:
        """The engine is done with ``n`` bytes of a stream's request body: give them back to the
        client's windows (h2 sends WINDOW_UPDATE once half a window is consumed)."""
        stream = self._streams.get(stream_id)
        if stream is None or self._dead:
            return
        n = min(n, stream.unacked)
        if n > 0:
            stream.unacked -= n
            self._ack(stream_id, n)

    def close(self, error_code: int = NO_ERROR) -> None:
        """Shut the connection down (nginx's graceful shutdown sends the GOAWAY NO_ERROR).

        Args:
            error_code: NO_ERROR drains: GOAWAY naming the last stream the client opened,
                streams in progress are still served, ``must_close`` once they are done.  Any
                other code sends GOAWAY with it and the connection is done at once.
        """
        if self._dead:
            return
        if not self._initiated:
            self.initiate()
        if error_code == NO_ERROR:
            self._send_goaway(self._conn.highest_inbound_stream_id)
        else:
            self._die([], error_code, goaway=True)

    def close_after_response(self) -> None:
        """``H1Server`` shape: on HTTP/2 a stream's response never closes the connection (nginx);
        ``close()`` drains it."""

    def buffered(self, stream_id: int) -> int:
        """Response bytes of a stream not yet framed (waiting for a window or ``data_to_send``)."""
        stream = self._streams.get(stream_id)
        return stream.queued if stream is not None else 0

    def stalled_streams(self) -> list[int]:
        """Streams whose response data waits on a flow-control window of zero (the I/O layer
        times them out and resets them: nginx ``send_timeout``)."""
        conn_window = self._conn.outbound_flow_control_window
        return [
            sid
            for sid, stream in self._blocked.items()
            if conn_window <= 0 or stream.h2.outbound_flow_control_window <= 0
        ]

    @property
    def buffered_bytes(self) -> int:
        """Response bytes of all streams not yet framed (back-pressure for the engine)."""
        return self._buffered

    @property
    def goaway_sent(self) -> bool:
        """A GOAWAY went out (drain, ``max_requests`` or an error); no new stream is served."""
        return self._goaway is not None or self._goaway_error

    @property
    def keep_alive(self) -> bool:
        """New streams are still served."""
        return self._goaway is None and not self._dead

    @property
    def paused(self) -> bool:
        """``H1Server`` shape: HTTP/2 back-pressure is per stream (flow control): always False."""
        return False

    @property
    def must_close(self) -> bool:
        """Close the transport once ``data_to_send()`` is written: after an error or EOF, or
        after a GOAWAY NO_ERROR once no stream is left."""
        return self._dead or (self._goaway is not None and not self._streams)

    # -----------------------------------------------------------------------------------------
    # request side

    def _receive_common(self, data: bytes, events: list[RequestEvent]) -> bytes:
        """Take the frames a client sends over and over itself, without h2's frame objects and
        events (rule 10): a HEADERS frame opening a stream with the whole header block (no
        padding, no priority) and a connection WINDOW_UPDATE.  They leave h2's state as h2
        would (stream state and table, highest stream id, HPACK context, windows).  Returns
        the data from the first other frame on (h2 takes it), all of it when h2 holds a part
        of a frame, a header block or the preface."""
        conn = self._conn
        buf = conn.incoming_buffer
        if buf._data or buf._preamble_len or buf._headers_buffer:
            return data
        state = conn.state_machine.state
        if state is not ConnectionState.SERVER_OPEN and state is not ConnectionState.IDLE:
            return data
        pos = 0
        n = len(data)
        max_frame = conn.max_inbound_frame_size
        try:
            while n - pos >= 9:
                head, flags, sid = _FRAME_HEAD_IN.unpack_from(data, pos)
                length = head >> 8
                kind = head & 0xFF
                end = pos + 9 + length
                if end > n or length > max_frame:
                    break
                sid &= 0x7FFFFFFF
                if kind == _HEADERS:
                    if (flags != _END_HEADERS and flags != _END_HEADERS | _END_STREAM) or not (
                        sid & 1 and sid > conn.highest_inbound_stream_id
                    ):
                        break
                    self._open_stream(sid, data[pos + 9 : end], flags & _END_STREAM == 1, events)
                elif kind == _WINDOW_UPDATE and sid == 0 and length == 4:
                    increment = _U32.unpack_from(data, pos + 9)[0] & 0x7FFFFFFF
                    window = conn.outbound_flow_control_window + increment
                    if not increment or window > _MAX_WINDOW:
                        break  # h2 answers it (a connection error)
                    conn.outbound_flow_control_window = window
                    self._on_window(0)
                else:
                    break
                pos = end
        except ProtocolError as exc:  # as h2's receive_data: GOAWAY with the code
            conn._terminate_connection(exc.error_code)
            raise
        return data[pos:] if pos else data

    def _open_stream(
        self, sid: int, block: bytes, end_stream: bool, events: list[RequestEvent]
    ) -> None:
        """A HEADERS frame opening stream ``sid``: what h2's ``_receive_headers_frame`` and
        ``H2Stream.receive_headers`` do for a request, then the adapter's judgement."""
        conn = self._conn
        decoder = self._decoder
        hit = self._judged.get((block, end_stream))
        if hit is not None and hit[0] == decoder.generation:
            # the same indexed-only block as before, the table unchanged: same fields, same
            # sizes, same judgement (rules 2-4)
            _, total, judged = hit
            h2stream = conn._begin_new_stream(sid, AllowedStreamIDs.ODD)
            machine = h2stream.state_machine
            machine.client = False
            machine.headers_received = True
            if end_stream:
                machine.state = StreamState.HALF_CLOSED_REMOTE
                machine.stream_closed_by = StreamClosedBy.RECV_END_STREAM
            else:
                machine.state = StreamState.OPEN
            conn.header_bytes += total
            if self._data_parts:
                self._flush_data(events)
            if isinstance(judged, RequestHeaders):
                judged = RequestHeaders(
                    stream_id=sid,
                    method=judged.method,
                    target=judged.target,
                    http_version="2.0",
                    raw_headers=judged.raw_headers,
                    host=judged.host,
                    content_length=judged.content_length,
                    chunked=judged.chunked,
                    end_stream=end_stream,
                )
            self._on_request(sid, [], end_stream, events, judged)
            return
        headers = list(_decode_headers(decoder, block))
        if conn.state_machine.state is ConnectionState.IDLE:
            # the first request: h2's RECV_HEADERS opens the connection (after decoding)
            conn.state_machine.process_input(ConnectionInputs.RECV_HEADERS)
        h2stream = conn._begin_new_stream(sid, AllowedStreamIDs.ODD)
        if headers and is_informational_response(headers):
            h2stream.receive_headers(headers, end_stream, None)  # h2's own error
        machine = h2stream.state_machine
        machine.client = False
        machine.headers_received = True
        if end_stream:
            machine.state = StreamState.HALF_CLOSED_REMOTE
            machine.stream_closed_by = StreamClosedBy.RECV_END_STREAM
        else:
            machine.state = StreamState.OPEN
        before = conn.header_bytes
        generation = decoder.generation
        conn._check_size(block, headers)
        self._flush_data(events)
        result = self._on_request(sid, headers, end_stream, events)
        if result is not None and block in decoder._cache and generation == decoder.generation:
            if len(self._judged) >= 64:
                self._judged.clear()
            self._judged[block, end_stream] = (generation, conn.header_bytes - before, result)

    def _dispatch(self, h2_events: list[Event], events: list[RequestEvent]) -> None:
        headers_priority: Event | None = None
        for ev in h2_events:
            t = type(ev)
            if t is DataReceived:
                assert isinstance(ev, DataReceived)
                self._on_data(ev, events)
            elif t is RequestReceived:
                assert isinstance(ev, RequestReceived)
                self._flush_data(events)
                headers_priority = ev.priority_updated
                self._on_request(ev.stream_id or 0, ev.headers or [], ev.stream_ended is not None,
                                 events)
            elif t is StreamEnded:
                assert isinstance(ev, StreamEnded)
                self._on_end(ev.stream_id, events)
            elif t is WindowUpdated:
                assert isinstance(ev, WindowUpdated)
                self._on_window(ev.stream_id or 0)
            elif t is H2StreamReset:
                assert isinstance(ev, H2StreamReset)
                self._flush_data(events)
                self._on_reset(ev, events)
            elif t is PriorityUpdated:
                if ev is not headers_priority:  # a PRIORITY frame (ngx_http_v2_state_priority)
                    self._priority_budget -= 1
                    if self._priority_budget <= 0:
                        raise _Fatal(ENHANCE_YOUR_CALM, "client sent too many PRIORITY frames")
            elif t is TrailersReceived:  # dropped (rule 1)
                assert isinstance(ev, TrailersReceived)
                headers_priority = ev.priority_updated
            elif t is RemoteSettingsChanged:
                self._on_window(0)  # INITIAL_WINDOW_SIZE or MAX_FRAME_SIZE may have grown
            # PingReceived, SettingsAcknowledged...: h2 has answered what needs an answer

    def _on_request(
        self,
        sid: int,
        headers: list[tuple[bytes, bytes]],
        end_stream: bool,
        events: list[RequestEvent],
        judged: RequestHeaders | _Reject | None = None,
    ) -> RequestHeaders | _Reject | None:
        """A stream's request: refused (limits), or judged (``judged``: already, from the same
        block) and passed on.  Returns the judgement, None when refused."""
        self._last_sid = sid
        self._empty = 0
        limits = self._limits
        if self._goaway is not None and sid > self._goaway:
            self._refuse(sid)  # nginx skips streams after its GOAWAY
            return None
        self._new_streams += 1
        if (
            self._active >= limits.max_concurrent_streams
            or self._new_streams > 2 * limits.max_concurrent_streams
        ):
            self._refuse(sid)
            return None
        self._requests += 1
        self._priority_budget += limits.max_concurrent_streams
        if judged is not None:
            result = judged
        else:
            result = self._request_headers(sid, headers, end_stream)
        h2stream = self._conn.streams[sid]
        if isinstance(result, _Reject) and result.status == 0:
            if not h2stream.closed:
                self._conn.reset_stream(sid, PROTOCOL_ERROR)
            self._prune(sid)
        else:
            stream = _Stream(sid, h2stream)
            self._streams[sid] = stream
            self._active += 1
            self._opened += 1
            if self._opened > limits.max_resets[1]:
                self._opened = 1
                self._resets = 0
            if isinstance(result, _Reject):
                stream.inp = _IN_DONE if end_stream else _IN_SKIP
                events.append(
                    RequestRejected(stream_id=sid, status_hint=result.status, reason=result.why)
                )
            else:
                stream.inp = _IN_DONE if end_stream else _IN_BODY
                stream.length = result.content_length
                stream.is_head = result.method == b"HEAD"
                events.append(result)
        if self._requests >= limits.max_requests:
            self._send_goaway(sid)  # ngx_http_v2_state_headers: keepalive_requests reached
        return result

    def _request_headers(
        self, sid: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> RequestHeaders | _Reject:
        """nginx's judgement of a request's fields, the first bad field first (rules 2, 3)."""
        names = self._names
        strict = self._strict
        joined = b"\x01".join([v for _, v in headers])
        check_values = _BAD_CHAR_JOINED.search(b"\x01" + joined + b"\x01") is not None
        method = scheme = path = host = cl = te = None
        unique: set[bytes] | None = None
        cookies: list[bytes] | None = None
        raw: list[tuple[bytes, bytes]] = []
        regular_seen = False
        for name, value in headers:
            kind = names.get(name)
            if kind is None:
                kind = _classify(name, *self._name_flags)
                if len(names) < _NAME_CACHE_MAX:
                    names[name] = kind
            if kind == _F_RESET:
                return _RESET_NAME
            if check_values and (
                _BAD_CHAR.search(value)
                or (strict and value and (value[0] in _WS or value[-1] in _WS))
            ):
                return _RESET_STRICT if strict and not _BAD_CHAR.search(value) else _RESET_VALUE
            if kind >= _F_PSEUDO:
                if strict and regular_seen:
                    return _RESET_ORDER
                if kind == _F_PATH:
                    if path is not None:
                        return _Reject(400, "client sent duplicate :path header")
                    if not value:
                        return _Reject(400, "client sent empty :path header")
                    if value[0] != 0x2F or _PATH_BAD.search(value):
                        return _Reject(400, "client sent invalid :path header")
                    path = value
                elif kind == _F_METHOD:
                    if method is not None:
                        return _Reject(400, "client sent duplicate :method header")
                    if not value:
                        return _Reject(400, "client sent empty :method header")
                    if not _METHOD.fullmatch(value):
                        return _Reject(400, "client sent invalid method")
                    method = value
                elif kind == _F_SCHEME:
                    if scheme is not None:
                        return _Reject(400, "client sent duplicate :scheme header")
                    if not value:
                        return _Reject(400, "client sent empty :scheme header")
                    if not _SCHEME.fullmatch(value):
                        return _Reject(400, "client sent invalid :scheme header")
                    scheme = value
                elif kind == _F_AUTHORITY:
                    if host is not None:
                        return _Reject(400, "client sent duplicate host header")
                    if not valid_host(value):
                        return _Reject(400, "client sent invalid host header")
                    host = value
                    raw.append((b"host", value))
                else:
                    return _Reject(400, "client sent unknown pseudo-header")
                continue
            regular_seen = True
            if kind == _F_REGULAR:
                raw.append((name, value))
            elif kind == _F_DROP:
                pass
            elif kind == _F_COOKIE:
                if cookies is None:
                    cookies = [value]
                else:
                    cookies.append(value)
            elif kind == _F_HOST:
                if host is not None:
                    return _Reject(400, "client sent duplicate host header")
                if not valid_host(value):
                    return _Reject(400, "client sent invalid host header")
                host = value
                raw.append((name, value))
            elif kind == _F_CL:
                if cl is not None:
                    return _Reject(400, "client sent duplicate header line: Content-Length")
                cl = value
                raw.append((name, value))
            elif kind == _F_STRICT:
                return _RESET_STRICT
            elif kind == _F_TE:
                if strict and value.lower() != b"trailers":
                    return _RESET_STRICT
                raw.append((name, value))
            elif kind == _F_TRANSFER:
                if te is not None:
                    return _Reject(400, "client sent duplicate header line: Transfer-Encoding")
                te = value
                raw.append((name, value))
            else:  # _F_UNIQUE
                if unique is None:
                    unique = {name}
                elif name in unique:
                    return _Reject(400, f"client sent duplicate header line: {name.decode()}")
                else:
                    unique.add(name)
                raw.append((name, value))
        # ngx_http_v2_construct_request_line
        if method is None:
            return _Reject(400, "client sent no :method header")
        if scheme is None:
            return _Reject(400, "client sent no :scheme header")
        if path is None:
            return _Reject(400, "client sent no :path header")
        if cookies is not None:
            raw.append((b"cookie", b"; ".join(cookies)))
        # ngx_http_process_request_header
        if host is None:
            return _Reject(400, 'client sent HTTP/1.1 request without "Host" header')
        length: int | None = None
        if cl is not None and (length := content_length(cl)) is None:
            return _Reject(400, 'client sent invalid "Content-Length" header')
        if te is not None:
            if te.lower() != b"chunked":
                return _Reject(501, 'client sent unknown "Transfer-Encoding"')
            if cl is not None:
                return _Reject(400, 'client sent "Content-Length" and "Transfer-Encoding" headers')
        if method == b"CONNECT" or method == b"TRACE":
            return _Reject(405, f"client sent {method.decode()} method")
        # ngx_http_v2_run_request
        if length and end_stream:
            return _Reject(400, "client prematurely closed stream")
        return RequestHeaders(
            stream_id=sid,
            method=method,
            target=path,
            http_version="2.0",
            raw_headers=tuple(raw),
            host=host,
            content_length=length,
            chunked=length is None and not end_stream,
            end_stream=end_stream,
        )

    def _on_data(self, ev: DataReceived, events: list[RequestEvent]) -> None:
        sid = ev.stream_id or 0
        data = ev.data or b""
        size = len(data)
        flow = ev.flow_controlled_length or 0
        if size:
            self._empty = 0
            self._payload += size
        elif ev.stream_ended is None:
            self._empty += 1
            if self._empty > self._limits.max_empty_frames:
                raise _Fatal(ENHANCE_YOUR_CALM, "client sent too many empty DATA frames")
        stream = self._streams.get(sid)
        if stream is None or stream.inp != _IN_BODY or stream.out is _Out.DONE:
            if flow:
                self._ack(sid, flow)  # nobody reads it
            return
        if flow > size:
            self._ack(sid, flow - size)  # padding
        if not size:
            return
        stream.got += size
        length = stream.length
        if length is not None and stream.got > length:
            self._flush_data(events)
            self._ack(sid, size)
            stream.inp = _IN_SKIP
            why = "client intended to send body data larger than declared"
            events.append(RequestRejected(stream_id=sid, status_hint=400, reason=why))
            return
        stream.unacked += size
        if self._data_sid != sid:
            self._flush_data(events)
            self._data_sid = sid
        self._data_parts.append(data)

    def _flush_data(self, events: list[RequestEvent]) -> None:
        parts = self._data_parts
        if parts:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            events.append(RequestData(stream_id=self._data_sid, data=data))
            parts.clear()
        self._data_sid = 0

    def _on_end(self, sid: int, events: list[RequestEvent]) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.inp == _IN_DONE:
            return  # refused, or END_STREAM on the HEADERS frame
        inp = stream.inp
        stream.inp = _IN_DONE
        if inp == _IN_SKIP or stream.out is _Out.DONE:
            return
        self._flush_data(events)
        length = stream.length
        if length is not None and stream.got != length:
            why = (
                f"client prematurely closed stream: only {stream.got} out of {length} bytes "
                "of request body received"
            )
            events.append(RequestRejected(stream_id=sid, status_hint=400, reason=why))
            return
        events.append(RequestEnd(stream_id=sid))

    def _on_reset(self, ev: H2StreamReset, events: list[RequestEvent]) -> None:
        sid = ev.stream_id or 0
        stream = self._streams.get(sid)
        if stream is None:
            return
        if stream.out is not _Out.DONE:
            if ev.remote_reset:
                self._resets += 1
                if self._resets > self._limits.max_resets[0]:
                    raise _Fatal(ENHANCE_YOUR_CALM, "client reset too many streams")
            code = NO_ERROR if ev.error_code is None else int(ev.error_code)
            events.append(StreamReset(stream_id=sid, error_code=code))
            self._engine_done(stream)
        self._drop(stream)

    def _refuse(self, sid: int) -> None:
        h2stream = self._conn.streams.get(sid)
        if h2stream is not None and not h2stream.closed:
            self._conn.reset_stream(sid, REFUSED_STREAM)
        self._prune(sid)

    # -----------------------------------------------------------------------------------------
    # response side

    def _step(self, stream: _Stream, what: _Send) -> None:
        nxt = _OUT.get((stream.out, what))
        if nxt is None:
            raise LocalProtocolError(
                f"stream {stream.sid}: {what.value} while the response is at {stream.out.value}"
            )
        stream.out = nxt

    def _send_head(
        self,
        stream: _Stream,
        status: int,
        headers: Iterable[tuple[bytes, bytes]],
        end_stream: bool,
    ) -> None:
        sid = stream.sid
        if status < 200:
            if status == 101:
                raise LocalProtocolError(f"stream {sid}: HTTP/2 has no 101 (RFC 9113 §8.6)")
            self._step(stream, _Send.INTERIM)
            block = self._encode([(b":status", _STATUS_BYTES[status])])
            self._write_headers(stream, block, False, True)
            return
        header_only = stream.is_head or status in _NO_BODY_STATUS
        self._step(stream, _Send.HEAD_END if end_stream else _Send.HEAD)
        if header_only and stream.out is _Out.BODY:
            stream.out = _Out.DRAIN
        self._write_headers(stream, self._head_block(status, headers), end_stream or header_only,
                            False)
        if stream.out is _Out.DONE:
            self._engine_done(stream)
            self._finish(stream)

    def _head_block(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The HPACK block of a final response head (rule 7's order and names).  A head that
        encoded without changing the dynamic table encodes to the same bytes while the table
        stays unchanged: such blocks are reused (a repeated answer, within a second's Date)."""
        key = (status, tuple(headers))
        table = self._table
        hit = self._heads.get(key)
        if hit is not None and hit[0] == table.generation and not self._sized():
            return hit[1]
        fixed: list[tuple[int, bytes, bytes]] = []
        rest: list[tuple[bytes, bytes]] = []
        listed = False
        for name, value in key[1]:
            low, rank = _lower(name)
            if rank < 0:
                rest.append((low, value))
            elif rank < _R_DROP:
                if listed:
                    rest.append((low, value))
                else:
                    fixed.append((rank, low, value))
            elif not value and low == b"connection":
                listed = True  # nginx's own headers end here
        if len(fixed) > 1:
            fixed.sort(key=_rank_key)
        fields = [(b":status", _STATUS_BYTES.get(status) or b"%d" % status)]
        fields += [(low, value) for _, low, value in fixed]
        fields += rest
        before = table.generation
        sized = self._sized()
        block = self._encode(fields)
        if table.generation == before and not sized:
            if len(self._heads) >= 64:
                self._heads.clear()
            self._heads[key] = (before, block)
        return block

    def _sized(self) -> bool:
        """A dynamic table size update is owed (the next block starts with it)."""
        return bool(self._conn.encoder.table_size_changes)

    def _write_headers(self, stream: _Stream, block: bytes, end: bool, interim: bool) -> None:
        """HEADERS (and CONTINUATION) frames written directly: h2's ``send_headers`` without its
        header validation, keeping its stream state and HPACK context in step (the block was
        encoded just before)."""
        machine = stream.h2.state_machine
        if (
            machine.state is StreamState.HALF_CLOSED_REMOTE
            and not interim
            and machine.client is False
            and not machine.headers_sent
        ):
            machine.headers_sent = True  # h2's response_sent, the state unchanged
        else:
            machine.process_input(
                StreamInputs.SEND_INFORMATIONAL_HEADERS if interim else StreamInputs.SEND_HEADERS
            )
        sid = stream.sid
        flags = _END_STREAM if end else 0
        if end:
            _send_end_stream(machine)
        size = self._conn.max_outbound_frame_size
        out = self._out
        if len(block) <= size:
            out += _frame_head(len(block), _HEADERS, flags | _END_HEADERS, sid)
            out += block
            return
        out += _frame_head(size, _HEADERS, flags, sid)
        out += block[:size]
        for i in range(size, len(block), size):
            piece = block[i : i + size]
            last = i + size >= len(block)
            out += _frame_head(len(piece), _CONTINUATION, _END_HEADERS if last else 0, sid)
            out += piece

    def _encode(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        """HPACK-encode a header list.  A list whose encoding left the dynamic table unchanged
        (all fields indexed or not indexed) encodes to the same bytes while the table stays
        unchanged: those blocks are reused (a repeated response, within a second's Date)."""
        encoder = self._conn.encoder
        table = self._table
        key = tuple(fields)
        hit = self._encoded.get(key)
        if hit is not None and hit[0] == table.generation and not encoder.table_size_changes:
            return hit[1]
        before = table.generation
        sized = bool(encoder.table_size_changes)
        block = encoder.encode(fields)
        if table.generation == before and not sized:
            if len(self._encoded) >= 64:
                self._encoded.clear()
            self._encoded[key] = (before, block)
        return block

    def _write_data(self, stream: _Stream, chunk: bytes | memoryview, end: bool) -> None:
        """A DATA frame written directly: h2's ``send_data`` without its per-frame objects,
        keeping its windows and stream state in step (the caller checked the windows)."""
        n = len(chunk)
        if n:
            stream.h2.outbound_flow_control_window -= n
            self._conn.outbound_flow_control_window -= n
        if end:
            _send_end_stream(stream.h2.state_machine)
        self._out += _frame_head(n, _DATA, _END_STREAM if end else 0, stream.sid)
        self._out += chunk

    def _engine_done(self, stream: _Stream) -> None:
        """The engine has finished with the stream: its slot is free, its body unread."""
        stream.out = _Out.DONE
        self._active -= 1
        if stream.unacked:
            self._ack(stream.sid, stream.unacked)
            stream.unacked = 0

    def _finish(self, stream: _Stream) -> None:
        """END_STREAM is out and the engine is done: the stream leaves the adapter."""
        sid = stream.sid
        if stream.inp != _IN_DONE and not stream.h2.closed:
            # ngx_http_v2_close_stream: response complete, the rest of the body is not wanted
            self._conn.reset_stream(sid, NO_ERROR)
        del self._streams[sid]
        self._prune(sid)

    def _drop(self, stream: _Stream) -> None:
        """The stream was reset: forget it and what it had queued."""
        sid = stream.sid
        self._buffered -= stream.queued
        stream.queue = None
        stream.queued = 0
        stream.end = False
        self._dirty.pop(sid, None)
        self._blocked.pop(sid, None)
        del self._streams[sid]
        self._prune(sid)

    def _on_window(self, sid: int) -> None:
        blocked = self._blocked
        if not blocked:
            return
        if sid == 0:
            self._dirty.update(blocked)
            blocked.clear()
        else:
            stream = blocked.pop(sid, None)
            if stream is not None:
                self._dirty[sid] = stream

    def _flush(self) -> None:
        """Frame queued response data within the windows (rule 6)."""
        dirty = self._dirty
        self._dirty = {}
        conn = self._conn
        for stream in dirty.values():
            self._flush_stream(conn, stream)

    def _flush_stream(self, conn: H2Connection, stream: _Stream) -> None:
        sid = stream.sid
        h2stream = stream.h2
        max_frame = conn.max_outbound_frame_size
        while stream.queued:
            window = min(conn.outbound_flow_control_window, h2stream.outbound_flow_control_window)
            if window <= 0:
                self._blocked[sid] = stream
                return
            n = min(window, max_frame, stream.queued)
            chunk = self._take(stream, n)
            stream.queued -= n
            self._buffered -= n
            if stream.end and not stream.queued:
                stream.end = False
                self._write_data(stream, chunk, True)
                self._finish(stream)
                return
            self._write_data(stream, chunk, False)
        if stream.end:
            stream.end = False
            self._write_data(stream, b"", True)
            self._finish(stream)

    @staticmethod
    def _take(stream: _Stream, n: int) -> bytes | memoryview:
        """The next ``n`` queued bytes (``n`` <= ``stream.queued``), copying only to join."""
        queue = stream.queue
        assert queue is not None  # queued > 0
        first = queue[0]
        offset = stream.offset
        avail = len(first) - offset
        if avail > n:
            stream.offset = offset + n
            return memoryview(first)[offset : offset + n]
        queue.popleft()
        stream.offset = 0
        head: bytes | memoryview = memoryview(first)[offset:] if offset else first
        if avail == n:
            return head
        parts = [head]
        need = n - avail
        while need:
            piece = queue[0]
            if len(piece) > need:
                parts.append(memoryview(piece)[:need])
                stream.offset = need
                break
            queue.popleft()
            parts.append(piece)
            need -= len(piece)
        return b"".join(parts)

    def _ack(self, sid: int, n: int) -> None:
        """Give ``n`` received bytes back to the client's windows."""
        conn = self._conn
        if sid in conn.streams:
            conn.acknowledge_received_data(n, sid)
            return
        # the stream left h2's table: only the connection window is owed
        increment = conn._inbound_flow_control_window_manager.process_bytes(n)
        if increment:
            self._out += _window_update_frame(increment)

    def _prune(self, sid: int) -> None:
        """Move a closed stream out of h2's table (h2 does it only while counting streams)."""
        conn = self._conn
        h2stream = conn.streams.get(sid)
        if h2stream is not None and h2stream.closed:
            del conn.streams[sid]
            conn._closed_streams[sid] = h2stream.closed_by

    # -----------------------------------------------------------------------------------------
    # connection

    def _send_goaway(self, last_stream_id: int) -> None:
        """GOAWAY NO_ERROR, written by hand: h2's would stop all sending (rule 9)."""
        if self._goaway is None:
            self._goaway = last_stream_id
            self._out += _goaway_frame(last_stream_id, NO_ERROR)

    def _check_flood(self, before: int) -> None:
        limits = self._limits
        self._forced += len(self._out) - before
        if self._forced > limits.max_pending_control:
            raise _Fatal(ENHANCE_YOUR_CALM, "client made us queue too many control frames")
        ratio, slack = limits.overhead_limit
        if self._in_bytes // ratio > self._payload + self._conn.header_bytes + slack:
            raise _Fatal(ENHANCE_YOUR_CALM, "http2 flood detected")
        pending = self._conn.incoming_buffer._data
        if len(pending) >= 3:  # refuse an oversized frame now, not once it is all buffered
            length = int.from_bytes(pending[:3], "big")
            if length > self._conn.max_inbound_frame_size:
                raise _Fatal(FRAME_SIZE_ERROR, f"client sent a frame of {length} bytes")

    def _die(self, events: list[RequestEvent], code: int, *, goaway: bool) -> None:
        """The connection is over: GOAWAY ``code`` (unless h2 has sent its own), streams reset."""
        if self._dead:
            return
        self._dead = True
        if goaway:
            self._goaway_error = True
            if self._conn.state_machine.state is not ConnectionState.CLOSED:
                # like nginx, name the stream being judged, not later ones h2 has parsed
                self._conn.close_connection(code, last_stream_id=self._last_sid)
        for stream in self._streams.values():
            if stream.out is not _Out.DONE:
                events.append(StreamReset(stream_id=stream.sid, error_code=code))
        self._streams.clear()
        self._dirty.clear()
        self._blocked.clear()
        self._buffered = 0
        self._active = 0
