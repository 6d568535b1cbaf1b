"""HTTP/2 client connections: the asyncio seam between a socket and ``protocol.h2`` + engine.

Rules:

1. ``data_received`` feeds ``H2Server``; each request starts on the compiled lane
   (``proxy/lane_h2.py``: a bodyless GET to a location the lane compiled), else on the fast path
   (``proxy/fastpath.py``: no task while a bodyless proxied request is served from callbacks,
   the stream's ``H2Exchange`` is its host) or in one engine task per stream, which is also
   where the fast path hands a request over; every write goes through ``flush`` (one
   ``transport.write`` per batch, deferred to the end of the loop iteration while streams are
   producing).
2. Request bodies: pieces wait in the exchange until the engine takes them; only then are they
   given back to the client's windows (``H2Server.consumed``), so a slow upstream holds the
   client by flow control, never by an unbounded buffer.
3. Response bodies: ``drain()`` waits while the stream has more than ``STREAM_HIGH_WATER``
   bytes waiting for a window, or while the transport's write buffer is above its high mark
   (and reading stops meanwhile: a client that does not read cannot make us queue more
   answers).  A stream stalled on a window of zero for ``send_timeout`` is reset.
4. Timeouts, as nginx 1.19.7+: ``client_header_timeout`` until the first stream,
   ``keepalive_timeout`` while no stream is in progress (then GOAWAY NO_ERROR and close).
5. ``abort()`` (``return 444``, upstream errors after the head) resets that stream only; a
   ``RequestRejected`` is answered on its stream; the connection goes on.
6. ``H2Dispatch`` picks HTTP/1.1 or HTTP/2 for a new connection: by ALPN on TLS, by the client
   preface on cleartext ``http2`` sockets (prior knowledge, h2c), and hands the transport over.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable

from .. import fastpath, lane_h2
from ..engine import ClientBodyInvalid, ClientBodyTimeout, Exchange, ProxyResume
from ..protocol.events import (
    RequestData,
    RequestEnd,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    StreamReset,
)
from ..protocol.h2 import NO_ERROR, H2Limits, H2Server
from .server import ConnSettings, EngineRef, HttpConnection, _conn_ids
from .tls import tls_variable

__all__ = ["H2Connection", "H2Exchange", "H2Dispatch", "h2_limits"]

STREAM_HIGH_WATER = 256 * 1024
"""Response bytes a stream may have waiting for its window before ``drain()`` waits."""
_PROTOCOL_ERROR = 0x1
_INTERNAL_ERROR = 0x2
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_limits(settings: ConnSettings, max_concurrent_streams: int = 128) -> H2Limits:
    """The adapter's limits from the socket's settings (nginx reads them from the default
    server)."""
    li = settings.limits
    return H2Limits(
        max_concurrent_streams=max_concurrent_streams,
        max_requests=max(1, settings.keepalive_requests),
        large_header_buffers=li.large_header_buffers,
        underscores_in_headers=li.underscores_in_headers,
        ignore_invalid_headers=li.ignore_invalid_headers,
    )


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class H2Exchange(Exchange):
    """One request on an HTTP/2 connection (one stream), and the fast path's host for it
    (``fastpath.Host``: an HTTP/2 connection serves many requests at once, each has its own
    hand-over, drain and read timer)."""

    def __init__(self, conn: H2Connection, head: RequestHeaders) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.head = head
        self.stream_id = head.stream_id
        self.scheme = conn.settings.scheme
        self.local_addr, self.local_port = conn.local
        self.remote_addr, self.remote_port = conn.remote
        self.connection_id = conn.id
        self.connection_requests = conn.requests
        self._body: collections.deque[bytes] | None = None
        """Request body pieces the engine has not taken (made on the first one)."""
        self._body_done = head.end_stream
        self._body_error = 0
        self._waiter: asyncio.Future[None] | None = None
        self.reset = False
        self.finished = False
        self.task: asyncio.Task[None] | None = None
        self._fast_cb: Callable[[], None] | None = None
        self._fast_at = 0.0

    @property
    def closed(self) -> bool:
        return self.conn.closed

    # the fast path's host (proxy/fastpath.py) -----------------------------------------------

    def resume_general(self, ex: Exchange, resume: ProxyResume) -> None:
        """The fast path hands its request over: the general path continues it in a task."""
        self.conn.start_task(self, resume)

    def fast_done(self, ex: Exchange) -> None:
        """The fast path is done with the request (what the task's end does)."""
        self.conn.stream_done(self)

    def fast_drain(self, finish: Callable[[bool], None]) -> None:
        """``drain`` for the fast path: ``finish(failed)`` at once unless the stream or the
        transport is over its high mark; then a task waits."""
        conn = self.conn
        if self.reset or conn.closed:
            finish(True)
        elif conn.write_ok and conn.adapter.buffered(self.stream_id) <= STREAM_HIGH_WATER:
            conn.defer_flush()
            finish(False)
        else:
            self.task = conn.loop.create_task(self._fast_drain(finish))

    async def _fast_drain(self, finish: Callable[[bool], None]) -> None:
        try:
            await self.drain()
        except (ConnectionError, asyncio.CancelledError):
            finish(True)
        else:
            finish(False)

    def fast_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        """proxy_read_timeout of a fast request: ``callback()`` in ``seconds`` unless
        ``fast_timer_cancel`` comes first (on the connection's shared timer)."""
        self._fast_cb = callback
        self.conn.fast_timer(self, seconds)

    def fast_timer_cancel(self) -> None:
        if self._fast_cb is not None:
            self._fast_cb = None
            self.conn.fast_waiting.pop(self, None)

    # body ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        body = self._body
        if body is None:
            body = self._body = collections.deque()
        body.append(data)
        self.wake()

    def feed_end(self) -> None:
        self._body_done = True
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def body(self) -> AsyncIterator[bytes]:
        conn = self.conn
        timeout = conn.settings.client_body_timeout
        while True:
            if self._body:
                data = self._body.popleft()
                conn.adapter.consumed(self.stream_id, len(data))
                conn.defer_flush()
                yield data
                continue
            if self._body_done:
                if self._body_error:
                    raise ClientBodyInvalid(self._body_error)
                return
            if self.reset or conn.closed:
                raise ConnectionError("client reset the stream")
            waiter = self._waiter = conn.loop.create_future()
            timer = conn.loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                self.abort(timed_out=True)
                raise ClientBodyTimeout("client_body_timeout") from None
            finally:
                timer.cancel()
                self._waiter = None

    def body_complete(self) -> bool:
        return self._body_done

    # response ------------------------------------------------------------------------------

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        if self.reset:
            return
        self.conn.adapter.send(ResponseHeaders(stream_id=self.stream_id, status=status,
                                               headers=tuple(headers), end_stream=end_stream))
        if end_stream:
            self.finished = True
        self.conn.defer_flush()

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        if self.reset:
            return
        self.conn.adapter.send_response(self.stream_id, status, headers, body)
        self.finished = True
        self.conn.defer_flush()

    def send_data(self, data: bytes) -> None:
        if not self.reset:
            self.conn.adapter.send(ResponseData(stream_id=self.stream_id, data=data))

    async def drain(self) -> None:
        conn = self.conn
        if conn.write_ok and conn.adapter.buffered(self.stream_id) <= STREAM_HIGH_WATER \
                and not self.reset and not conn.closed:
            # written with whatever else this loop iteration produces (one TLS record)
            conn.defer_flush()
            return
        conn.flush()
        while True:
            if self.reset or conn.closed:
                raise ConnectionError("client reset the stream")
            if conn.write_ok and conn.adapter.buffered(self.stream_id) <= STREAM_HIGH_WATER:
                return
            fut = conn.loop.create_future()
            conn.waiters.append((self.stream_id, fut))
            try:
                await asyncio.wait_for(fut, conn.settings.send_timeout)
            except TimeoutError:
                self.abort(timed_out=True)
                raise ConnectionError("send_timeout") from None

    def end(self) -> None:
        if self.reset:
            return
        self.finished = True
        self.conn.adapter.send(ResponseEnd(stream_id=self.stream_id))
        self.conn.defer_flush()

    def abort(self, *, timed_out: bool = False) -> None:
        """Reset the stream: PROTOCOL_ERROR when its request timed out (send_timeout,
        client_body_timeout), else INTERNAL_ERROR, as ngx_http_v2_close_stream chooses."""
        if not self.reset:
            self.reset = True
            self.conn.adapter.send(StreamReset(
                stream_id=self.stream_id,
                error_code=_PROTOCOL_ERROR if timed_out else _INTERNAL_ERROR))
            self.conn.defer_flush()

    def tls_var(self, name: str) -> str | None:
        return tls_variable(self.conn.transport, name)

    def done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            import logging

            logging.getLogger("tern").error("HTTP/2 stream task failed",
                                            exc_info=task.exception())
        self.conn.stream_done(self)


class H2Connection(asyncio.Protocol):
    """An accepted client connection speaking HTTP/2."""

    def __init__(self, engine_ref: EngineRef, settings: ConnSettings,
                 limits: H2Limits | None = None) -> None:
        self.engine_ref = engine_ref
        self.settings = settings
        self.adapter = H2Server(limits or h2_limits(settings))
        self.id = next(_conn_ids)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.streams: dict[int, H2Exchange] = {}
        self.requests = 0
        self.write_ok = True
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._flush_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._stalled: dict[int, int] = {}
        """Streams waiting on a zero window at the last look, with the bytes they had queued."""
        self._read_paused = False
        self.fast_waiting: dict[H2Exchange, None] = {}
        """Fast-path streams waiting for their upstream, each with its read deadline."""
        self._fast_handle: asyncio.TimerHandle | None = None
        self._fast_handle_at = 0.0
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self.remote: tuple[str, int] = ("127.0.0.1", 0)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        if isinstance(sock, tuple):
            self.local = (sock[0], sock[1])
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        self.engine_ref.connections.add(self)  # type: ignore[arg-type]
        self.adapter.initiate()
        self.flush()
        self._arm(self.settings.client_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._events(self.adapter.receive_data(data))
        self.flush()

    def eof_received(self) -> bool | None:
        self._events(self.adapter.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self._stall is not None:
            self._stall.cancel()
        self.engine_ref.connections.discard(self)  # type: ignore[arg-type]
        for ex in self.streams.values():
            ex.reset = True
            ex.wake()
            if ex.task is not None and not ex.task.done() and not ex.finished:
                ex.task.cancel()
        self._wake_all()

    def pause_writing(self) -> None:
        # the client does not read: stop reading its frames too (PING/SETTINGS floods,
        # zero-window stalls cannot make us queue more)
        self.write_ok = False
        if not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_ok = True
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()
        self._wake()

    # -- events -------------------------------------------------------------------------------

    def _events(self, events: list[object]) -> None:
        for ev in events:
            if isinstance(ev, RequestHeaders):
                self._cancel_timer()
                self.requests += 1
                ex = H2Exchange(self, ev)
                self.streams[ev.stream_id] = ex
                engine = self.engine_ref.engine
                lane = engine.lane
                if lane is not None and lane_h2.serve(lane, ex):
                    continue
                if not fastpath.start(engine, ex, ex):
                    self.start_task(ex, None)
            elif isinstance(ev, RequestData):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.feed(ev.data)
                else:
                    self.adapter.consumed(ev.stream_id, len(ev.data))
            elif isinstance(ev, RequestEnd):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.feed_end()
            elif isinstance(ev, RequestRejected):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target._body_error = ev.status_hint or 400
                    target._body_done = True
                    target.wake()
                    continue
                self._cancel_timer()
                self._reject(ev)
            elif isinstance(ev, StreamReset):
                target = self.streams.get(ev.stream_id)
                if target is not None:
                    target.reset = True
                    target.wake()
                    if target.task is not None and not target.task.done() \
                            and not target.finished:
                        target.task.cancel()
            else:
                raise RuntimeError(f"Unexpected event {ev!r}")
        self._wake()

    def start_task(self, ex: H2Exchange, resume: ProxyResume | None) -> None:
        """The general path for a stream: one engine task (from the start, or from where the
        fast path handed over)."""
        task = ex.task = self.loop.create_task(self.engine_ref.engine.handle(ex, resume))
        task.add_done_callback(ex.done)

    def fast_timer(self, ex: H2Exchange, seconds: float) -> None:
        """Arm ``ex``'s read deadline; one loop timer serves all the connection's fast streams
        (it survives the client: a request waiting upstream keeps its timeout)."""
        deadline = self.loop.time() + seconds
        ex._fast_at = deadline
        self.fast_waiting[ex] = None
        handle = self._fast_handle
        if handle is not None:
            if self._fast_handle_at <= deadline:
                return
            handle.cancel()
        self._fast_handle_at = deadline
        self._fast_handle = self.loop.call_at(deadline, self._on_fast_timer)

    def _on_fast_timer(self) -> None:
        self._fast_handle = None
        now = self.loop.time()
        waiting = self.fast_waiting
        for ex in [ex for ex in waiting if ex._fast_at <= now]:
            del waiting[ex]
            callback = ex._fast_cb
            ex._fast_cb = None
            if callback is not None:
                callback()
        if waiting and self._fast_handle is None:
            later = min(ex._fast_at for ex in waiting)
            self._fast_handle_at = later
            self._fast_handle = self.loop.call_at(later, self._on_fast_timer)

    def stream_done(self, ex: H2Exchange) -> None:
        """The engine is done with a stream (its task ended, normally, cancelled or failed, or
        the fast path finished)."""
        self.streams.pop(ex.stream_id, None)
        if not ex.finished and not ex.reset:
            ex.abort()
        self.defer_flush()
        if not self.streams and not self.closed:
            self._arm(self.settings.keepalive_timeout)

    def _reject(self, rej: RequestRejected) -> None:
        engine = self.engine_ref.engine
        status, headers, body = engine.rejection(rej)
        sid = rej.stream_id
        self.adapter.send(ResponseHeaders(stream_id=sid, status=status,
                                          headers=tuple(headers), end_stream=not body))
        if body:
            self.adapter.send(ResponseData(stream_id=sid, data=body))
            self.adapter.send(ResponseEnd(stream_id=sid))
        engine.log_rejection(self, rej, status, len(body))
        self.defer_flush()

    # -- writes -------------------------------------------------------------------------------

    def defer_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if self.closed:
            return
        adapter = self.adapter
        data = adapter.data_to_send()
        transport = self.transport
        if data and transport is not None:
            transport.write(data)
        if adapter.must_close:
            self.close()
            return
        if adapter.buffered_bytes and self._stall is None:
            self._stall = self.loop.call_later(self.settings.send_timeout, self._check_stall)
        if self.waiters:
            self._wake()

    def _wake(self) -> None:
        if not self.waiters or not self.write_ok:
            return
        adapter = self.adapter
        keep = []
        for sid, fut in self.waiters:
            if fut.done():
                continue
            if adapter.buffered(sid) <= STREAM_HIGH_WATER:
                fut.set_result(None)
            else:
                keep.append((sid, fut))
        self.waiters = keep

    def _wake_all(self) -> None:
        for _sid, fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters = []

    def _check_stall(self) -> None:
        """nginx ``send_timeout`` for streams waiting on a window of zero (rule 3)."""
        self._stall = None
        if self.closed:
            return
        adapter = self.adapter
        stalled = {sid: adapter.buffered(sid) for sid in adapter.stalled_streams()}
        for sid, waiting in list(stalled.items()):
            if self._stalled.get(sid) != waiting:
                continue  # stalled now, but it sent something since the last look
            del stalled[sid]
            ex = self.streams.get(sid)
            if ex is not None:
                ex.abort(timed_out=True)
                if ex.task is not None and not ex.task.done():
                    ex.task.cancel()
            else:
                adapter.send(StreamReset(stream_id=sid, error_code=_PROTOCOL_ERROR))
        self._stalled = stalled
        self.flush()
        if self.adapter.buffered_bytes and self._stall is None and not self.closed:
            self._stall = self.loop.call_later(self.settings.send_timeout, self._check_stall)

    # -- timers and closing -------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._cancel_timer()
        if seconds > 0:
            self._timer = self.loop.call_later(seconds, self._timeout)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timeout(self) -> None:
        self._timer = None
        if not self.streams:
            self.adapter.close(NO_ERROR)
            self.close()

    def idle(self) -> bool:
        """No stream in progress.  While draining (graceful stop), a GOAWAY goes out now so
        that the client opens no new stream."""
        if self.engine_ref.draining and not self.adapter.goaway_sent and not self.closed:
            self.adapter.close(NO_ERROR)
            self.flush()
        return not self.streams

    def close(self, *, abort: bool = False) -> None:
        if self.closed:
            return
        if not abort:
            self.adapter.close(NO_ERROR)
            data = self.adapter.data_to_send()
            if data and self.transport is not None:
                self.transport.write(data)
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class H2Dispatch(asyncio.Protocol):
    """The first protocol of a connection on an ``http2`` socket: picks HTTP/1.1 or HTTP/2
    (rule 6) and hands the transport to it."""

    def __init__(self, make_h1: Callable[[], HttpConnection],
                 make_h2: Callable[[], H2Connection], tls: bool) -> None:
        self.make_h1 = make_h1
        self.make_h2 = make_h2
        self.tls = tls
        self.transport: asyncio.BaseTransport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.tls:
            sslobj = transport.get_extra_info("ssl_object")
            alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
            self._switch(self.make_h2() if alpn == "h2" else self.make_h1())

    def _switch(self, proto: asyncio.Protocol) -> None:
        transport = self.transport
        assert transport is not None
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if self.buffer:
            data, self.buffer = self.buffer, b""
            proto.data_received(data)

    def data_received(self, data: bytes) -> None:
        # cleartext: HTTP/2 with prior knowledge starts with the client preface
        self.buffer += data
        n = min(len(self.buffer), len(_PREFACE))
        if self.buffer[:n] != _PREFACE[:n]:
            self._switch(self.make_h1())
        elif n == len(_PREFACE):
            self._switch(self.make_h2())

    def eof_received(self) -> bool | None:
        if self.buffer:
            self._switch(self.make_h1())
            proto = self.transport.get_protocol() if self.transport is not None else None
            if proto is not None and proto is not self:
                return proto.eof_received()  # type: ignore[attr-defined, no-any-return]
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
