"""HTTP/3 server side, sans-I/O, over aioquic's QUIC and H3 connections: QUIC events in, request
events out; response events in, QUIC stream data out.

aioquic's ``QuicConnection`` (datagrams in/out, ``now`` an argument) and ``H3Connection``
(frames, QPACK) do the transport; this module decides what a request is, the way nginx's
``ngx_http_v3_request.c`` (1.25) and RFC 9114 do, and turns responses into HEADERS and DATA.

Rules:

1. Events are the ones of ``events``; stream ids are the QUIC stream ids of the client's
   bidirectional streams (0, 4, 8...).  A request arrives as ``RequestHeaders``
   (``http_version`` ``"3.0"``; ``end_stream`` True when the HEADERS frame ended the stream, then
   no ``RequestEnd``), body pieces as ``RequestData``, then ``RequestEnd``.  Request trailers are
   dropped (as nginx drops them).  ``raw_headers`` are the regular fields in arrival order, lower
   case, with ``:authority`` first as a ``host`` field when the client sent no ``host``, and the
   ``cookie`` crumbs joined with ``"; "`` into one field at the end (RFC 9114 §4.2.1, as nginx).
2. Malformed requests (RFC 9114 §4.1.2) are stream errors, never connection errors: the stream
   is reset and STOP_SENDING is sent, both with H3_MESSAGE_ERROR, and the engine never sees it;
   the connection goes on.  Malformed: what aioquic's validation refuses (an upper-case or
   control byte in a name, NUL/CR/LF or surrounding white space in a value, a pseudo-header after
   a regular field, an unknown, repeated or response pseudo-header, a connection-specific field
   (connection, keep-alive, proxy-connection, transfer-encoding, upgrade), ``te`` other than
   ``trailers``, a missing ``:method`` or ``:authority``, a missing or empty ``:path``, a
   negative or non-numeric Content-Length, a Content-Length that the body does not match when
   the stream ends before the head was handed over), a missing ``:scheme``, and ``:protocol``
   (extended CONNECT is not offered).  aioquic would close the whole connection with
   H3_MESSAGE_ERROR; ``ServerH3`` takes that decision back.
3. Requests nginx answers with a status instead (``ngx_http_v3_process_request_header`` and the
   common request checks) become ``RequestRejected``: a ``:path`` not starting with ``/``, a
   ``:scheme`` other than ``http``/``https``, a ``:method`` with bytes outside ``[A-Z_-]``, an
   invalid host or a ``host`` field different from ``:authority``: 400; a repeated Content-Length
   or one nginx cannot parse (a sign, over 2^63-1: aioquic's ``int()`` accepts them): 400;
   CONNECT and TRACE: 405; a field longer than ``size`` of ``large_client_header_buffers`` or a
   list longer than ``number * size``: 494 (answered 400 "Request Header Or Cookie Too Large").
   A field name with a byte outside ``[a-z0-9-]`` (``_`` unless ``underscores_in_headers``) is
   dropped while ``ignore_invalid_headers`` is on.  Only that stream is answered; the
   connection goes on.
4. A body longer or shorter than its Content-Length is malformed (rule 2) once the head was
   handed over: the engine gets ``RequestRejected(400)`` with ``request_line`` None (it answers
   400 unless its response started) and STOP_SENDING H3_MESSAGE_ERROR asks the client to stop.
5. Limits: ``max_concurrent_streams`` is QUIC's MAX_STREAMS for bidirectional streams (nginx
   ``http3_max_concurrent_streams``, 128): a client cannot open more; aioquic raises the limit as
   streams finish.  ``stream_buffer_size`` (nginx ``http3_stream_buffer_size``, 64k) is the
   initial window of each stream.  Request flow control: ``hold(stream_id)`` freezes the stream's
   window (the client's data stops at it) until ``release(stream_id)``; the I/O layer holds a
   stream while the engine has more than a high-water mark of its body queued.  Response flow
   control is QUIC's: data waits in the stream's send buffer for the client's window;
   ``unacked(stream_id)`` says how much waits (the I/O layer makes ``drain()`` wait on it).
6. Responses: ``ResponseHeaders`` (1xx as interim heads, except 101 which HTTP/3 lacks),
   ``ResponseData``, ``ResponseEnd``.  Data is queued and framed by ``flush()`` (or with the
   end, in one DATA frame carrying FIN): pieces sent in one batch make one frame.  Names are
   lower-cased; connection-specific fields and the
   engine's empty ``Connection`` marker are dropped.  HEAD, 204 and 304 responses end on their
   HEADERS frame and their body is dropped (nginx ``header_only``).  A response that ends while
   the request body is still coming is followed by STOP_SENDING H3_NO_ERROR (RFC 9114 §4.1).
   ``StreamReset`` from the engine resets the stream with H3_INTERNAL_ERROR (H3_NO_ERROR if the
   response was complete).
7. ``goaway()`` (graceful stop, or the ``keepalive_requests``-th request) sends GOAWAY naming the
   first stream id not yet received: streams below it are served, later ones are reset with
   H3_REQUEST_REJECTED (RFC 9114 §5.2); ``idle`` says when no stream is in progress.
   A client's reset stream (RESET_STREAM or STOP_SENDING) becomes ``StreamReset`` for that
   stream; ``ConnectionTerminated`` becomes ``StreamReset`` for every stream in progress.
8. No I/O, no clocks: the caller passes aioquic's events in (``quic_event``) and sends what
   ``QuicConnection.datagrams_to_send(now)`` returns after each batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import (
    ErrorCode,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    MessageError,
    encode_frame,
)
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StopSendingReceived,
)
from aioquic.quic.events import (
    StreamReset as QuicStreamReset,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from ._rules import content_length, valid_host
from .events import (
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    StreamReset,
)

H3Output = RequestHeaders | RequestData | RequestEnd | RequestRejected | StreamReset

_CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
"""RFC 9114 §4.2: never in an HTTP/3 message."""
_NO_BODY: Final = frozenset({204, 304})
_METHOD: Final = re.compile(rb"[A-Z_-]+\Z")
_NAME_OK: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-")


@dataclass(frozen=True, slots=True, kw_only=True)
class H3Limits:
    """The request limits nginx applies to HTTP/3 (from the socket's default server)."""

    max_concurrent_streams: int = 128
    """``http3_max_concurrent_streams``: the client's bidirectional stream limit."""
    stream_buffer_size: int = 65536
    """``http3_stream_buffer_size``: initial flow-control window of a stream."""
    large_header_buffers: tuple[int, int] = (4, 8192)
    """``large_client_header_buffers`` (number, size)."""
    underscores_in_headers: bool = False
    """``underscores_in_headers``."""
    ignore_invalid_headers: bool = True
    """``ignore_invalid_headers``."""

    def __post_init__(self) -> None:
        if self.max_concurrent_streams < 1 or self.stream_buffer_size < 1:
            raise ValueError("HTTP/3 limits must be positive")


@dataclass(slots=True)
class _Malformed(H3Event):
    """A request stream that broke RFC 9114's message rules (rule 2)."""

    stream_id: int
    reason: str


class ServerH3(H3Connection):
    """aioquic's H3 connection with malformed requests as stream errors (rule 2)."""

    def _handle_request_or_push_frame(self, frame_type: int, frame_data: bytes | None,
                                      stream: H3Stream, stream_ended: bool) -> list[H3Event]:
        try:
            return super()._handle_request_or_push_frame(frame_type, frame_data, stream,
                                                         stream_ended)
        except MessageError as exc:
            if self._is_client or stream.push_id is not None:
                raise
            # the header block was decoded (QPACK state in step); later frames parse normally
            if stream.headers_recv_state is HeadersState.INITIAL:
                stream.headers_recv_state = HeadersState.AFTER_HEADERS
            return [_Malformed(stream_id=stream.stream_id, reason=exc.reason_phrase)]

    def goaway(self, stream_id: int) -> None:
        """Send GOAWAY naming ``stream_id`` (RFC 9114 §5.2) on the control stream."""
        control = self._local_control_stream_id
        if control is not None:
            self._quic.send_stream_data(
                control, encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id)))


class HoldableQuic(QuicConnection):
    """aioquic's connection whose streams' receive windows stay put while held (rule 5).

    aioquic raises a stream's window as data arrives, whatever the application has read;
    ``H3Server`` switches its connection to this subclass (same state, one method more) while
    a stream is held, and back when none is (the override costs a call per stream per packet).
    """

    tern_held: set[int]

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace,
                             stream: QuicStream) -> None:
        if stream.stream_id in self.tern_held:
            return
        super()._write_stream_limits(builder, space, stream)


class _Out(Enum):
    """Where a stream's response is."""

    NONE = "none"
    HEAD = "head"
    HEADER_ONLY = "header_only"
    """The head ended the stream (HEAD, 204, 304): body events are dropped."""
    DONE = "done"


@dataclass(slots=True)
class _Stream:
    sid: int
    is_head: bool
    expected: int | None
    received: int = 0
    request_done: bool = False
    out: _Out = _Out.NONE
    pending: list[bytes] = field(default_factory=list)
    """Response data not framed yet (``flush``)."""


class H3Server:
    """One QUIC connection's HTTP/3 server side (see the module rules)."""

    def __init__(self, quic: QuicConnection, limits: H3Limits) -> None:
        self.quic = quic
        self.limits = limits
        self.h3: ServerH3 | None = None
        self.streams: dict[int, _Stream] = {}
        self._pending: list[_Stream] = []
        """Streams with response data waiting for ``flush``."""
        self.held: set[int] = set()
        """Streams whose receive window is frozen (rule 5)."""
        self._plain_class = type(quic)
        # MAX_STREAMS for bidirectional streams (sent in the transport parameters; aioquic
        # raises it by one as each stream finishes)
        streams = quic._local_max_streams_bidi
        streams.value = streams.sent = limits.max_concurrent_streams
        self.next_stream = 0
        """The first client stream id not yet seen (GOAWAY names it)."""
        self.going_away = False
        self.goaway_id = 0
        """The stream id GOAWAY named: streams from there on are rejected."""
        self.terminated = False

    @property
    def idle(self) -> bool:
        """No stream in progress."""
        return not self.streams

    # -- input ---------------------------------------------------------------------------------

    def quic_event(self, event: QuicEvent) -> list[H3Output]:
        """Feed one QUIC event; return the request events it completes.

        Args:
            event: the next event from ``QuicConnection.next_event()``.
        Returns:
            Request events for the engine (rule 1), in order.
        """
        if isinstance(event, ConnectionTerminated):
            self.terminated = True
            out: list[H3Output] = [StreamReset(stream_id=sid, error_code=event.error_code)
                                   for sid in self.streams]
            self.streams.clear()
            return out
        if self.h3 is None:
            self.h3 = ServerH3(self.quic)
        h3 = self.h3
        out = []
        if isinstance(event, (QuicStreamReset, StopSendingReceived)):
            sid = event.stream_id
            if sid in self.streams:
                del self.streams[sid]
                self.release(sid)
                out.append(StreamReset(stream_id=sid, error_code=event.error_code))
        for ev in h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self._headers(ev, out)
            elif isinstance(ev, DataReceived):
                self._data(ev.stream_id, ev.data, ev.stream_ended, out)
            elif isinstance(ev, _Malformed):
                self._malformed(ev.stream_id, out)
            # other events (datagrams, WebTransport, pushes) are not offered: dropped
        return out

    def _headers(self, ev: HeadersReceived, out: list[H3Output]) -> None:
        sid = ev.stream_id
        assert self.h3 is not None
        h3s = self.h3._stream.get(sid)
        if h3s is not None and h3s.headers_recv_state is HeadersState.AFTER_TRAILERS:
            # trailers (of a request, or of a stream refused or already answered): dropped,
            # as nginx drops them
            stream = self.streams.get(sid)
            if stream is not None and ev.stream_ended:
                self._end(stream, out)
            return
        if sid in self.streams:  # pragma: no cover - aioquic allows one head per stream
            return
        if self.going_away and sid >= self.goaway_id:
            # RFC 9114 §5.2: a stream at or above the GOAWAY id is not processed
            self._stop(sid, ErrorCode.H3_REQUEST_REJECTED)
            self.quic.reset_stream(sid, ErrorCode.H3_REQUEST_REJECTED)
            return
        self.next_stream = max(self.next_stream, sid + 4)
        head = request_head(sid, ev.headers, ev.stream_ended, self.limits)
        if isinstance(head, str):
            self._refuse(sid)
            return
        if isinstance(head, RequestRejected):
            # answered on this stream; its body (if any) is not wanted
            self.streams[sid] = _Stream(sid=sid, is_head=False, expected=None,
                                        request_done=True)
            out.append(head)
            if not ev.stream_ended:
                self._stop(sid, ErrorCode.H3_NO_ERROR)
            return
        stream = _Stream(sid=sid, is_head=head.method == b"HEAD", expected=head.content_length)
        self.streams[sid] = stream
        out.append(head)
        if ev.stream_ended:
            stream.request_done = True

    def _data(self, sid: int, data: bytes, ended: bool, out: list[H3Output]) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream.request_done:
            return
        if data:
            stream.received += len(data)
            if stream.expected is not None and stream.received > stream.expected:
                self._body_error(stream, out)
                return
            out.append(RequestData(stream_id=sid, data=data))
        if ended:
            self._end(stream, out)

    def _end(self, stream: _Stream, out: list[H3Output]) -> None:
        if stream.request_done:
            return
        if stream.expected is not None and stream.received != stream.expected:
            self._body_error(stream, out)
            return
        stream.request_done = True
        self.release(stream.sid)
        out.append(RequestEnd(stream_id=stream.sid))

    def _body_error(self, stream: _Stream, out: list[H3Output]) -> None:
        """Rule 4: the engine answers 400 (if it can), then the stream is reset."""
        stream.request_done = True
        self.release(stream.sid)
        self._stop(stream.sid, ErrorCode.H3_MESSAGE_ERROR)
        out.append(RequestRejected(stream_id=stream.sid, status_hint=400,
                                   reason="body length differs from content-length"))

    def _malformed(self, sid: int, out: list[H3Output]) -> None:
        if sid in self.streams:
            # malformed after the head (trailers, content-length at the end): rule 4
            self._body_error(self.streams[sid], out)
            return
        self.next_stream = max(self.next_stream, sid + 4)
        self._refuse(sid)

    def _refuse(self, sid: int) -> None:
        self._stop(sid, ErrorCode.H3_MESSAGE_ERROR)
        self.quic.reset_stream(sid, ErrorCode.H3_MESSAGE_ERROR)

    def _stop(self, sid: int, code: int) -> None:
        """STOP_SENDING, unless the stream's receiving side is already gone."""
        qs = self.quic._streams.get(sid)
        if qs is not None and not qs.receiver.is_finished:
            self.quic.stop_stream(sid, code)

    # -- output --------------------------------------------------------------------------------

    def send(self, event: ResponseHeaders | ResponseData | ResponseEnd | StreamReset) -> None:
        """Queue a response event (rule 6); the caller then transmits.

        Raises:
            RuntimeError: an event out of order (an engine bug).
        """
        stream = self.streams.get(event.stream_id)
        if stream is None:  # reset by the client, or the connection is gone
            return
        h3 = self.h3
        assert h3 is not None
        sid = stream.sid
        if isinstance(event, ResponseHeaders):
            status = event.status
            if status < 200:
                if status != 101:  # HTTP/3 has no 101 (RFC 9114 §4.5)
                    h3.send_headers(sid, [(b":status", b"%d" % status)])
                return
            if stream.out is not _Out.NONE:
                raise RuntimeError(f"stream {sid}: second response head")
            header_only = stream.is_head or status in _NO_BODY
            end = event.end_stream or header_only
            h3.send_headers(sid, response_fields(status, event.headers), end_stream=end)
            stream.out = _Out.HEADER_ONLY if header_only and not event.end_stream else _Out.HEAD
            if event.end_stream:
                self._done(stream)
        elif isinstance(event, ResponseData):
            if stream.out is _Out.HEAD:
                if event.data:
                    if not stream.pending:
                        self._pending.append(stream)
                    stream.pending.append(event.data)
            elif stream.out is not _Out.HEADER_ONLY:
                raise RuntimeError(f"stream {sid}: data before the response head")
        elif isinstance(event, ResponseEnd):
            if stream.out is _Out.HEAD:
                # the queued pieces and the end in one DATA frame with FIN
                h3.send_data(sid, b"".join(stream.pending), end_stream=True)
                stream.pending.clear()
            elif stream.out is not _Out.HEADER_ONLY:
                raise RuntimeError(f"stream {sid}: end before the response head")
            self._done(stream)
        else:
            complete = stream.out is _Out.DONE
            stream.pending.clear()
            del self.streams[sid]
            self.release(sid)
            self.quic.reset_stream(
                sid, ErrorCode.H3_NO_ERROR if complete else ErrorCode.H3_INTERNAL_ERROR)
            if not stream.request_done:
                self._stop(sid, ErrorCode.H3_NO_ERROR)

    def flush(self) -> None:
        """Frame the response data queued since the last flush (one DATA frame per stream);
        call before taking datagrams to send."""
        h3 = self.h3
        for stream in self._pending:
            if stream.pending and stream.out is _Out.HEAD and h3 is not None:
                h3.send_data(stream.sid, b"".join(stream.pending), end_stream=False)
                stream.pending.clear()
        self._pending.clear()

    def _done(self, stream: _Stream) -> None:
        stream.out = _Out.DONE
        del self.streams[stream.sid]
        self.release(stream.sid)
        if not stream.request_done:
            # RFC 9114 §4.1: the response is complete, the rest of the request is not wanted
            self._stop(stream.sid, ErrorCode.H3_NO_ERROR)

    def goaway(self) -> None:
        """Graceful stop (rule 7): GOAWAY with the first stream id not yet received."""
        if self.going_away or self.h3 is None or self.terminated:
            return
        self.going_away = True
        self.goaway_id = self.next_stream
        self.h3.goaway(self.next_stream)

    def unacked(self, stream_id: int) -> int:
        """Response bytes queued on a stream and not yet acknowledged by the client."""
        stream = self.streams.get(stream_id)
        queued = sum(map(len, stream.pending)) if stream is not None else 0
        qs = self.quic._streams.get(stream_id)
        if qs is None:
            return queued
        return queued + len(qs.sender._buffer)

    def hold(self, stream_id: int) -> None:
        """Freeze the receive window of a stream (rule 5)."""
        if stream_id in self.streams and stream_id not in self.held:
            if not self.held:
                self.quic.__class__ = HoldableQuic
                self.quic.tern_held = self.held  # type: ignore[attr-defined]
            self.held.add(stream_id)

    def release(self, stream_id: int) -> None:
        """Let a held stream's window grow again."""
        if stream_id in self.held:
            self.held.discard(stream_id)
            if not self.held:
                self.quic.__class__ = self._plain_class


def request_head(stream_id: int, fields: list[tuple[bytes, bytes]], end_stream: bool,
                 limits: H3Limits) -> RequestHeaders | RequestRejected | str:
    """Judge a request head aioquic has validated (rules 1-3).

    Args:
        stream_id: the request stream.
        fields: the decoded header list, pseudo-headers first.
        end_stream: the HEADERS frame ended the stream.
        limits: the socket's limits.
    Returns:
        The request; a refusal with nginx's status; or a reason string when the request is
        malformed (rule 2: the stream is reset).
    """
    number, size = limits.large_header_buffers
    method = scheme = path = authority = None
    host: bytes | None = None
    length: int | None = None
    lengths = 0
    regular: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    total = 0
    too_large = False
    for name, value in fields:
        if len(name) > size or len(value) > size:
            too_large = True
        total += len(name) + len(value)
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":scheme":
                scheme = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            else:  # :protocol (aioquic lets it through): extended CONNECT is not offered
                return f"pseudo-header {name!r} is not supported"
            continue
        bad = any(c not in _NAME_OK and not (c == 0x5F and limits.underscores_in_headers)
                  for c in name)
        if bad and limits.ignore_invalid_headers:
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        if name == b"host":
            if host is not None:
                return _reject(stream_id, 400, "repeated host", method, path)
            host = value
        elif name == b"content-length":
            lengths += 1
            length = content_length(value)
        regular.append((name, value))
    if too_large or total > number * size:
        return _reject(stream_id, 494, "too large header", method, path)
    if method is None:  # pragma: no cover - aioquic requires it
        return "no :method"
    if scheme is None or path is None:
        return "no :scheme or :path"
    if not _METHOD.match(method):
        return _reject(stream_id, 400, "invalid :method", method, path)
    if scheme not in (b"http", b"https"):
        return _reject(stream_id, 400, "invalid :scheme", method, path)
    if path[:1] != b"/" or any(c <= 0x20 or c == 0x7F for c in path):
        return _reject(stream_id, 400, "invalid :path", method, path)
    if host is not None and authority is not None and host != authority:
        return _reject(stream_id, 400, ":authority and host differ", method, path)
    if host is None:
        host = authority
        if authority is not None:
            regular.insert(0, (b"host", authority))
    if host is None or not valid_host(host):
        return _reject(stream_id, 400, "invalid host", method, path)
    if lengths > 1 or (lengths == 1 and length is None):
        return _reject(stream_id, 400, "invalid content-length", method, path)
    if method in (b"CONNECT", b"TRACE"):
        return _reject(stream_id, 405, "method not allowed", method, path)
    if end_stream and length:
        return "content-length with no body"
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))
    return RequestHeaders(
        stream_id=stream_id, method=method, target=path, http_version="3.0",
        raw_headers=tuple(regular), host=host, content_length=length,
        chunked=length is None and not end_stream, end_stream=end_stream)


def _reject(stream_id: int, status: int, reason: str, method: bytes | None,
            path: bytes | None) -> RequestRejected:
    line = b"%s %s HTTP/3.0" % (method or b"-", path or b"-") if method and path else b""
    return RequestRejected(stream_id=stream_id, status_hint=status, reason=reason,
                           request_line=line, method=method, target=path,
                           http_version="3.0" if method and path else None)


def response_fields(status: int, headers: tuple[tuple[bytes, bytes], ...]
                    ) -> list[tuple[bytes, bytes]]:
    """``:status`` then the engine's fields, lower case, without connection-specific ones."""
    out = [(b":status", b"%d" % status)]
    for name, value in headers:
        low = name.lower()
        if low in _CONNECTION_SPECIFIC:
            continue
        out.append((low, value))
    return out
