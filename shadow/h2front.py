"""The HTTP/2 client side of ``tern shadow``: streams in, HTTP/1.1 to the primary, mirrored.

Rules (the invariants of :mod:`shadow.mirror` hold per stream):

1. :func:`dispatcher` makes the listener's protocol: on TLS, ALPN ``h2`` gets an
   :class:`H2Front` and anything else the HTTP/1.x front; on cleartext with ``h2c``, the client
   preface decides (HTTP/2 with prior knowledge). It is ``proxy.io.h2conn.H2Dispatch``, reused.
2. :class:`proxy.protocol.h2.H2Server` parses the client's frames and judges its requests and
   floods exactly as for ``tern serve``; a flood or a protocol error ends that client's
   connection only (GOAWAY), its streams' upstream exchanges are aborted.
3. Each stream is forwarded to the primary on a connection of its own from the primary's pool,
   as HTTP/1.1 (as nginx's ``proxy_pass`` sends it): the request line says ``HTTP/1.1``, the
   fields go as the client sent them (lower case, ``:authority`` as ``host`` where it stood);
   a body goes with the client's ``content-length``, or chunked when it had none. The answer's
   head and body (transfer coding removed) become the stream's HEADERS and DATA as they arrive
   (connection-specific fields are dropped by the adapter); the primary failing before its head:
   ``502``; after it: the stream is reset.
4. Flow control both ways, no unbounded buffer: request body bytes are given back to the
   client's window (``consumed``) only once the primary's connection takes them; response
   bytes: while a stream has more than :data:`STREAM_HIGH_WATER` bytes waiting for its window,
   or the client's transport is over its high-water mark, that stream's primary connection is
   not read (and not timed out as idle).
5. Mirroring: a complete request is judged by ``ShadowProxy._consider`` (safe methods, sampling,
   body tee, counted) and its job queued by ``ShadowProxy._submit`` once the primary's answer
   has been handed to the adapter; a stream the client resets is not answered, its upstream
   exchange is aborted, and a request already chosen is still counted (its primary side is then
   an error, so it is not compared). mirrored + dropped + skipped = eligible holds as for
   HTTP/1.x.

Timeouts, as nginx 1.22 applies them to HTTP/2 (checked against it on h2c, see
``tests/test_shadow_h2_timeouts.py``); a timed-out stream is reset with PROTOCOL_ERROR (nginx's
``fc->timedout``), its primary connection is closed, the connection goes on:

6. Connection: until its first stream, ``client_header_timeout`` (``timeout_header``); later,
   while no stream is in progress, ``client_idle_timeout`` (nginx's ``keepalive_timeout``,
   ``timeout_idle``); then GOAWAY and close: NO_ERROR, or PROTOCOL_ERROR when the client left a
   frame or a header block unfinished (as nginx, whose parser is then mid-frame).
   ``keepalive_requests``: the adapter sends GOAWAY NO_ERROR with the last stream allowed
   (later ones are refused) and the connection closes once the streams in progress are done.
7. A header block (HEADERS, then CONTINUATION until END_HEADERS) not finished
   ``client_header_timeout`` after its first frame (CONTINUATION frames trickling in do not
   extend it): RST_STREAM PROTOCOL_ERROR for its stream, counted in ``timeout_header``; nginx
   logs 408. The adapter holds such a block inside h2's frame buffer, which is read here
   (:func:`_open_block`); if the block ends later, its stream is reset as soon as it opens.
8. ``client_body_timeout``, per stream: at most this long between two pieces of its request
   body while the proxy wants them (from the HEADERS, and again from each piece the primary's
   connection took; not while the primary holds bytes back); then the stream is reset and its
   primary connection closed, so a partial body never looks whole (``timeout_body``).
9. ``send_timeout``: a stream whose answer waits on a window of zero and has sent nothing
   since the last look (looks ``send_timeout`` apart: it expires after one to two periods) is
   reset and its primary connection closed; a client whose socket takes no byte for as long
   (the transport over its high-water mark, its buffer not shrinking) has its connection
   closed, and every stream's primary connection with it. Counted in ``timeout_send``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from proxy.io.h2conn import H2Dispatch
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
from proxy.protocol.h2 import NO_ERROR, H2Limits, H2Server

from .mirror import (
    _REJECT_BODY,
    BodyStream,
    Fetched,
    ResponseSink,
    _ClientRequest,
    _Front,
    _out_request,
    _unsent,
)

if TYPE_CHECKING:
    from .mirror import ShadowProxy

__all__ = ["H2Front", "STREAM_HIGH_WATER", "StreamFront", "dispatcher"]

_PROTOCOL_ERROR = 0x1
_RST_STREAM = struct.Struct(">IBII")
"""A whole RST_STREAM frame: length 4 and type 3, flags, stream id, error code."""
_GOAWAY = struct.Struct(">IBIII")
"""A whole GOAWAY frame: length 8 and type 7, flags, stream 0, last stream id, error code."""

STREAM_HIGH_WATER = 256 * 1024
"""Response bytes a stream may have waiting for its window before its primary is not read."""


def dispatcher(proxy: ShadowProxy) -> Callable[[], asyncio.BaseProtocol]:
    """The listener's protocol factory (rule 1)."""
    tls = proxy.listen_tls is not None

    def make() -> asyncio.BaseProtocol:
        return _Dispatch(proxy, cast(Any, lambda: _Front(proxy)),
                         cast(Any, lambda: H2Front(proxy)), tls)

    return make


class _Dispatch(H2Dispatch):
    """:class:`H2Dispatch` with ``client_header_timeout`` while it waits for the first bytes
    of a cleartext connection (a client that connects and sends nothing is closed)."""

    def __init__(self, proxy: ShadowProxy, make_h1: Any, make_h2: Any, tls: bool) -> None:
        super().__init__(make_h1, make_h2, tls)
        self.proxy = proxy
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if cast(Any, transport).get_protocol() is self:  # not decided yet (cleartext)
            self._timer = asyncio.get_running_loop().call_later(
                self.proxy.options.client_header_timeout, self._expired)
            # ``stop`` closes it too while it waits (else its socket outlives the proxy)
            self.proxy._fronts.add(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._decided()

    def eof_received(self) -> bool | None:
        self._decided()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._decided()
        super().connection_lost(exc)

    def _decided(self) -> None:
        if self._timer is not None:
            t = self.transport
            if t is None or t.is_closing() or cast(Any, t).get_protocol() is not self:
                self._timer.cancel()
                self._timer = None
                self.proxy._fronts.discard(self)

    def _expired(self) -> None:
        self._timer = None
        t = self.transport
        if t is not None and not t.is_closing() and cast(Any, t).get_protocol() is self:
            self.proxy.stats.timeout_header += 1
            cast(Any, t).abort()


class _Stream(ResponseSink):
    """One client stream: its request, its primary exchange and its flow control."""

    def __init__(self, front: StreamFront, head: RequestHeaders) -> None:
        self.front = front
        self.sid = head.stream_id
        self.r = _ClientRequest(head.stream_id, head)
        self.is_head = head.method == b"HEAD"
        self.unacked = 0
        """Body bytes received but not yet given back to the client's window."""
        self.upstream: asyncio.Transport | None = None
        self.up_paused = False
        self.reset = False
        self.task: asyncio.Task[None] | None = None
        self.read_at = 0.0
        """When the proxy last took body bytes or began to want them (rule 8)."""
        self.body_timer: asyncio.TimerHandle | None = None
        if not head.end_stream:
            self.r.stream = BodyStream(None if head.chunked else head.content_length,
                                       self._flow)
            self._body_clock()

    # request body ---------------------------------------------------------------------------

    def data(self, data: bytes) -> None:
        r = self.r
        r.size += len(data)
        if r.size <= self.front.proxy.options.max_body:  # the mirror's tee, bounded
            r.body.append(data)
        elif not r.tee_over:
            r.tee_over = True
            r.body.clear()
        st = r.stream
        if st is None:
            self.front.ack(self.sid, len(data))
            return
        st.feed(data)
        self.unacked += len(data)
        self._flow(st.blocked)
        if self.unacked:
            self.front.body_waiting(self.sid, self.unacked)

    def _flow(self, blocked: bool) -> None:
        """Give bytes back to the client's window while the primary takes them (rule 4)."""
        st = self.r.stream
        if self.unacked and st is not None and (
                st.detached or (st.conn is not None and not blocked)):
            n, self.unacked = self.unacked, 0
            self.front.ack(self.sid, n)
            if not self.r.complete:
                self._body_clock()

    def _body_clock(self) -> None:
        """The proxy wants more body from now on: ``client_body_timeout`` runs (rule 8). One
        timer per stream, re-armed lazily when it fires."""
        front = self.front
        self.read_at = front.loop.time()
        if self.body_timer is None:
            self.body_timer = front.loop.call_at(
                self.read_at + front.proxy.options.client_body_timeout, self._body_check)

    def _body_check(self) -> None:
        self.body_timer = None
        front = self.front
        if self.reset or self.r.complete or front.streams.get(self.sid) is not self:
            return
        if self.unacked:
            return  # the primary holds bytes back: not timed; the clock restarts in _flow
        due = self.read_at + front.proxy.options.client_body_timeout
        if front.loop.time() < due:
            self.body_timer = front.loop.call_at(due, self._body_check)
            return
        front.proxy.stats.timeout_body += 1
        self.cancel()  # the primary's connection is closed: the part never looks whole
        front.send(StreamReset(stream_id=self.sid, error_code=front.timeout_code))

    def end(self) -> None:
        r = self.r
        if r.complete:
            return
        r.complete = True
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        if r.stream is not None:
            r.stream.end()
        proxy = self.front.proxy
        proxy._consider(r)
        if r.mirror and r.answered is not None:  # the primary answered before the body ended
            proxy._submit(r, None, r.answered)

    def rejected(self, status: int) -> None:
        """The body broke (a length mismatch): the primary must not take it as whole."""
        r = self.r
        r.reject = status
        r.complete = True
        st = r.stream
        if st is not None:
            st.detached = True
            if st.conn is not None:
                st.conn.abort()
        self._flow(False)

    def cancel(self) -> None:
        """The client reset the stream, or the connection is gone: abort the primary's side."""
        if self.reset:
            return
        self.reset = True
        st = self.r.stream
        if st is not None and not st.ended:
            st.detached = True
        if self.upstream is not None:
            self.upstream.abort()

    # response (ResponseSink) ----------------------------------------------------------------

    def head(self, fetched: Fetched) -> bool:
        status = fetched.status or 502
        if self.reset or status < 200:  # no 101 tunnels on HTTP/2: the stream gets a 502
            return False
        self.front.send(ResponseHeaders(stream_id=self.sid, status=status,
                                        headers=tuple(fetched.headers)))
        return True

    def body(self, data: bytes) -> None:
        if self.reset or self.is_head:
            return
        front = self.front
        front.send(ResponseData(stream_id=self.sid, data=data))
        if not self.up_paused and self.upstream is not None and (
                not front.write_ok or front.backlog(self.sid) > STREAM_HIGH_WATER):
            self.up_paused = True
            self.upstream.pause_reading()

    def maybe_resume(self) -> None:
        front = self.front
        if self.up_paused and self.upstream is not None and front.write_ok and (
                self.reset or front.backlog(self.sid) <= STREAM_HIGH_WATER):
            self.up_paused = False
            self.upstream.resume_reading()

    def _reader(self, t: asyncio.Transport | None) -> None:
        if t is None:
            if self.upstream is not None and self.up_paused:
                self.upstream.resume_reading()  # it goes back to the pool reading
            self.upstream, self.up_paused = None, False
            return
        self.upstream = t
        if self.reset:
            t.abort()

    # the exchange ---------------------------------------------------------------------------

    async def run(self) -> None:
        front = self.front
        proxy = front.proxy
        r = self.r
        proxy.stats.requests += 1
        try:
            out = _out_request(r, with_body=r.stream is None)
            fetched = await proxy.primary.fetch(out, stream=r.stream, reader=self._reader,
                                                sink=self)
            r.answered = fetched
            if r.mirror:  # the answer is with the adapter: only now does the mirror cost
                proxy._submit(r, out if r.stream is None else None, fetched)
            if self.reset:
                return
            if r.reject is not None and not fetched.relayed:
                front.page(self.sid, r.reject)
            elif fetched.error and not fetched.relayed:
                proxy.stats.primary_errors += 1
                front.page(self.sid, 502)
            elif fetched.error:  # cut short after the head: the client sees a reset stream
                proxy.stats.primary_errors += 1
                front.send(StreamReset(stream_id=self.sid))
            elif not fetched.relayed:  # a 101: HTTP/2 has no upgrade
                proxy.stats.primary_errors += 1
                front.page(self.sid, 502)
            else:
                front.send(ResponseEnd(stream_id=self.sid))
        except Exception:  # noqa: BLE001 - contained: that stream is reset, the rest goes on
            proxy.stats.primary_errors += 1
            if not self.reset:
                front.send(StreamReset(stream_id=self.sid))
        finally:
            if self.body_timer is not None:
                self.body_timer.cancel()
                self.body_timer = None
            if r.mirror:  # chosen, but the primary's answer never came
                proxy._submit(r, None, Fetched(error="client gone"))
            front.streams.pop(self.sid, None)
            if not front.streams:
                front.idle()


class StreamFront:
    """What :class:`_Stream` needs of its connection, and the request events' dispatch (shared
    by the HTTP/2 and the HTTP/3 fronts)."""

    proxy: ShadowProxy
    streams: dict[int, _Stream]
    write_ok: bool
    loop: asyncio.AbstractEventLoop
    timeout_code: int
    """The code a stream reset by a client timeout gets."""

    def send(self, event: Any) -> None:
        """Queue a response event and have it written soon."""
        raise NotImplementedError

    def ack(self, sid: int, n: int) -> None:
        """``n`` request body bytes of a stream are taken: let the client send more."""
        raise NotImplementedError

    def body_waiting(self, sid: int, n: int) -> None:
        """``n`` request body bytes of a stream wait for the primary."""

    def backlog(self, sid: int) -> int:
        """Response bytes of a stream not yet taken by the client."""
        raise NotImplementedError

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RequestHeaders):
                self.busy()
                s = _Stream(self, ev)
                self.streams[ev.stream_id] = s
                if ev.end_stream:
                    s.end()
                s.task = self.loop.create_task(s.run())
            elif isinstance(ev, RequestData):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.data(ev.data)
                else:
                    self.ack(ev.stream_id, len(ev.data))
            elif isinstance(ev, RequestEnd):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.end()
            elif isinstance(ev, RequestRejected):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.rejected(ev.status_hint or 400)
                else:
                    self.proxy.stats.requests += 1
                    self.page(ev.stream_id, ev.status_hint or 400)
            elif isinstance(ev, StreamReset):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.cancel()
            else:
                raise RuntimeError(f"Unexpected event {ev!r}")

    def page(self, sid: int, status: int) -> None:
        """Answer a stream with the proxy's own page for ``status``."""
        wire = 400 if status == 494 else status
        body = _REJECT_BODY % wire
        self.send(ResponseHeaders(stream_id=sid, status=wire, headers=(
            (b"content-type", b"text/html"), (b"content-length", b"%d" % len(body)))))
        self.send(ResponseData(stream_id=sid, data=body))
        self.send(ResponseEnd(stream_id=sid))

    def idle(self) -> None:
        """No stream in progress any more."""

    def busy(self) -> None:
        """A stream has started."""

    def _resume(self) -> None:
        if self.write_ok:
            for s in self.streams.values():
                if s.up_paused:
                    s.maybe_resume()


class H2Front(StreamFront, asyncio.Protocol):
    """One client connection speaking HTTP/2."""

    timeout_code = _PROTOCOL_ERROR

    def __init__(self, proxy: ShadowProxy) -> None:
        self.proxy = proxy
        self.adapter = H2Server(H2Limits(large_header_buffers=(4, 16384),
                                         max_requests=proxy.options.keepalive_requests))
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, _Stream] = {}
        self.write_ok = True
        self.closed = False
        self._flush_pending = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._started = False
        """A stream (or a header block) has begun: the connection's timer is keepalive's."""
        self._block: int | None = None
        """The stream of a header block begun and not finished (rule 7)."""
        self._block_at = 0.0
        self._block_timer: asyncio.TimerHandle | None = None
        self._dead: set[int] = set()
        """Streams reset by rule 7 before they opened."""
        self._stall: asyncio.TimerHandle | None = None
        """send_timeout's look (rule 9)."""
        self._stalled: dict[int, int] = {}
        """Streams waiting on a zero window at the last look, and their bytes waiting then."""
        self._write_mark: int | None = None
        """The transport's buffered bytes at the last look while it was over its high mark."""

    # asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.proxy._fronts.add(self)
        self.adapter.initiate()
        self.flush()
        self.idle()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        events = self.adapter.receive_data(data)
        if self._dead and events:
            events = self._undead(events)
        self._events(events)
        if _open_block(self.adapter) != self._block:
            self._watch_block()
        self.flush()  # WINDOW_UPDATE or SETTINGS may have opened windows

    def eof_received(self) -> bool | None:
        self._events(self.adapter.receive_data(b""))
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.busy()
        if self._block_timer is not None:
            self._block_timer.cancel()
            self._block_timer = None
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.proxy._fronts.discard(self)
        for s in list(self.streams.values()):
            s.cancel()

    def pause_writing(self) -> None:
        # the client does not read: stop reading its frames too (a PING or SETTINGS flood
        # cannot make us queue more), and stop reading the primaries (rule 4)
        self.write_ok = False
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._arm_stall()

    def resume_writing(self) -> None:
        self.write_ok = True
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()
        self._resume()

    # StreamFront ----------------------------------------------------------------------------

    def send(self, event: Any) -> None:
        self.adapter.send(event)
        self.defer_flush()

    def ack(self, sid: int, n: int) -> None:
        self.adapter.consumed(sid, n)
        self.defer_flush()

    def backlog(self, sid: int) -> int:
        return self.adapter.buffered(sid)

    def idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        o = self.proxy.options
        if not self.closed and (self._block is None or self._block in self._dead):
            # rule 6: client_header_timeout until the first stream, then keepalive_timeout
            self._timer = self.loop.call_later(
                o.client_idle_timeout if self._started else o.client_header_timeout,
                self._expired)

    def busy(self) -> None:
        self._started = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.streams and not self.closed:
            if self._started:
                self.proxy.stats.timeout_idle += 1
            else:
                self.proxy.stats.timeout_header += 1
            if not _partial_input(self.adapter):
                self.adapter.close(NO_ERROR)  # GOAWAY NO_ERROR; must_close: flush closes
                self.flush()
                return
            # GOAWAY PROTOCOL_ERROR naming the last stream begun, a header block's included
            # (nginx's h2c->last_sid; the adapter knows only the streams it has opened)
            self.flush()
            t = self.transport
            if not self.closed and t is not None:
                last = max(_highest_stream(self.adapter), *self._dead, self._block or 0)
                t.write(_GOAWAY.pack((8 << 8) | 0x7, 0, 0, last, _PROTOCOL_ERROR))
                self.closed = True
                t.close()

    # header blocks (rule 7) -------------------------------------------------------------------

    def _watch_block(self) -> None:
        sid = self._block = _open_block(self.adapter)
        if sid is None:
            if not self.streams:  # the block was refused or answered at once
                self.idle()
            return
        if sid in self._dead:
            return
        self.busy()
        self._block_at = self.loop.time()
        if self._block_timer is None:
            self._block_timer = self.loop.call_at(
                self._block_at + self.proxy.options.client_header_timeout, self._block_check)

    def _block_check(self) -> None:
        self._block_timer = None
        sid = self._block
        t = self.transport
        if sid is None or sid in self._dead or self.closed or t is None:
            return
        due = self._block_at + self.proxy.options.client_header_timeout
        if self.loop.time() < due:
            self._block_timer = self.loop.call_at(due, self._block_check)
            return
        self.proxy.stats.timeout_header += 1
        self._dead.add(sid)
        self.flush()  # what the adapter has goes first
        if not self.closed:
            # the adapter knows no such stream yet: the frame is written here
            t.write(_RST_STREAM.pack((4 << 8) | 0x3, 0, sid, _PROTOCOL_ERROR))
            self._block = None
            if not self.streams:
                self.idle()  # keepalive_timeout: the block may still end, or the GOAWAY comes

    def _undead(self, events: list[Any]) -> list[Any]:
        """A header block reset by rule 7 ended after all: its stream is reset now."""
        keep = []
        dead = self._dead
        for ev in events:
            sid = getattr(ev, "stream_id", None)
            if sid not in dead:
                keep.append(ev)
            elif isinstance(ev, (RequestHeaders, RequestRejected)):
                self.adapter.send(StreamReset(stream_id=sid, error_code=_PROTOCOL_ERROR))
        return keep

    # writes ---------------------------------------------------------------------------------

    def defer_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if self.closed:
            return
        data = self.adapter.data_to_send()
        t = self.transport
        if data and t is not None:
            t.write(data)
        self._resume()  # what waited for a window may have gone out now
        if self.adapter.must_close and t is not None:
            self.closed = True
            t.close()
            for s in list(self.streams.values()):
                s.cancel()
            return
        if self._stall is None and (self.adapter.buffered_bytes or not self.write_ok):
            self._arm_stall()

    # send_timeout (rule 9) ------------------------------------------------------------------

    def _arm_stall(self) -> None:
        if self._stall is None and not self.closed:
            self._stall = self.loop.call_later(self.proxy.options.send_timeout,
                                               self._check_stall)

    def _check_stall(self) -> None:
        self._stall = None
        t = self.transport
        if self.closed or t is None:
            return
        st = self.proxy.stats
        if not self.write_ok:
            size = _unsent(t)
            if self._write_mark is not None and size >= self._write_mark:
                st.timeout_send += 1  # the client took nothing for a whole period
                self.closed = True
                for s in list(self.streams.values()):
                    s.cancel()
                t.abort()
                return
            self._write_mark = size
        else:
            self._write_mark = None
        adapter = self.adapter
        stalled = {sid: adapter.buffered(sid) for sid in adapter.stalled_streams()}
        for sid, waiting in list(stalled.items()):
            if self._stalled.get(sid) != waiting:
                continue  # stalled now, but it sent something since the last look
            del stalled[sid]
            st.timeout_send += 1
            s = self.streams.get(sid)
            if s is not None:
                s.cancel()  # its primary connection is closed; its task ends the stream
            adapter.send(StreamReset(stream_id=sid, error_code=_PROTOCOL_ERROR))
        self._stalled = stalled
        self.flush()
        if adapter.buffered_bytes or not self.write_ok:
            self._arm_stall()


def _open_block(adapter: H2Server) -> int | None:
    """The stream of a header block the client began and has not finished (rule 7): h2's frame
    buffer holds its HEADERS and CONTINUATION frames until END_HEADERS (the adapter has no
    public view of it)."""
    held = adapter._conn.incoming_buffer._headers_buffer
    return held[0].stream_id if held else None


def _partial_input(adapter: H2Server) -> bool:
    """The client left a frame, a header block or the preface unfinished (rule 6)."""
    buf = adapter._conn.incoming_buffer
    return bool(buf._data or buf._headers_buffer or 0 < buf._preamble_len < 24)


def _highest_stream(adapter: H2Server) -> int:
    """The highest stream id the client has opened."""
    return adapter._conn.highest_inbound_stream_id
