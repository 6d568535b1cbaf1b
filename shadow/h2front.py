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

6. A connection without a stream in progress (from its start, or since its last stream) for
   ``ShadowOptions.client_idle_timeout`` gets GOAWAY NO_ERROR and is closed (nginx's
   ``keepalive_timeout``).

7. nginx's ``send_timeout`` (``ShadowOptions.send_timeout``): a stream whose answer waits on a
   window of zero and has sent nothing since the last look (looks ``send_timeout`` apart: it
   expires after one to two periods) is reset (RST_STREAM INTERNAL_ERROR) and its primary
   connection closed; a client whose socket takes no byte for as long (the transport over its
   high-water mark, its buffer not shrinking) has its connection closed, and every stream's
   primary connection with it. Counted in ``timeout_send``.
"""

from __future__ import annotations

import asyncio
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

_INTERNAL_ERROR = 0x2

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
        if not head.end_stream:
            self.r.stream = BodyStream(None if head.chunked else head.content_length,
                                       self._flow)

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

    def end(self) -> None:
        r = self.r
        if r.complete:
            return
        r.complete = True
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

    def __init__(self, proxy: ShadowProxy) -> None:
        self.proxy = proxy
        self.adapter = H2Server(H2Limits(large_header_buffers=(4, 16384)))
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, _Stream] = {}
        self.write_ok = True
        self.closed = False
        self._flush_pending = False
        self._read_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        """send_timeout's look (rule 7)."""
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
        self._events(self.adapter.receive_data(data))
        self.flush()  # WINDOW_UPDATE or SETTINGS may have opened windows

    def eof_received(self) -> bool | None:
        self._events(self.adapter.receive_data(b""))
        self.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.busy()
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
        self.busy()
        timeout = self.proxy.options.client_idle_timeout
        if not self.closed and timeout > 0:
            self._timer = self.loop.call_later(timeout, self._expired)

    def busy(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if not self.streams and not self.closed:
            self.adapter.close(NO_ERROR)  # GOAWAY NO_ERROR; must_close: flush closes
            self.flush()

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

    # send_timeout (rule 7) ------------------------------------------------------------------

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
            adapter.send(StreamReset(stream_id=sid, error_code=_INTERNAL_ERROR))
        self._stalled = stalled
        self.flush()
        if adapter.buffered_bytes or not self.write_ok:
            self._arm_stall()
