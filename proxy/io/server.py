"""Client-side connections: the asyncio seam between sockets and the HTTP/1.x adapter + engine.

Rules:

1. ``data_received`` feeds the adapter; its events drive the connection; every write goes through
   ``_flush`` (one ``transport.write`` per batch).
2. Requests on a connection are served one at a time in order (pipelined ones wait their turn);
   the engine task of a request is the only task per request.
3. Timeouts, as nginx: ``client_header_timeout`` covers the whole head (close silently),
   ``keepalive_timeout`` the idle time between requests (close silently),
   ``client_body_timeout`` each body read, ``send_timeout`` each write stall.
4. Back-pressure: the engine awaits ``drain()`` after writes; reading from the client pauses while
   a request body has more than ``BODY_HIGH_WATER`` bytes queued.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .. import fastpath
from .. import lane as _lane
from ..engine import ClientBodyInvalid, ClientBodyTimeout, Engine, Exchange, ProxyResume
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
from ..protocol.h1 import H1Limits, H1Server
from .upstream import UpstreamConnection

BODY_HIGH_WATER = 256 * 1024


class _FastPending:
    """``HttpConnection.task`` while the fast path serves the request from callbacks."""

    @staticmethod
    def done() -> bool:
        return False

    @staticmethod
    def cancel() -> bool:
        return False


_FAST = _FastPending()
_conn_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ConnSettings:
    """Per-socket settings, from the socket's default server (nginx reads them there)."""

    limits: H1Limits
    client_header_timeout: float = 60.0
    client_body_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    keepalive_requests: int = 1000
    send_timeout: float = 60.0
    scheme: str = "http"


class H1Exchange(Exchange):
    """One request on an HTTP/1.x connection."""

    def __init__(self, conn: HttpConnection, head: RequestHeaders) -> None:
        self.conn = conn
        self.head = head
        self.stream_id = head.stream_id
        self.scheme = conn.settings.scheme
        self.local_addr, self.local_port = conn.local
        self.remote_addr, self.remote_port = conn.remote
        self.connection_id = conn.id
        self.connection_requests = head.stream_id
        self._body: collections.deque[bytes] = collections.deque()
        self._body_bytes = 0
        self._body_done = head.end_stream
        self._body_error = 0
        self._body_event: asyncio.Event | None = None
        """Created when the body is first waited for (most requests have none)."""
        self.finished = False
        self.close_after = False
        self.sent_head = False

    # body --------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._body.append(data)
        self._body_bytes += len(data)
        self._wake_body()
        if self._body_bytes > BODY_HIGH_WATER:
            self.conn.pause_client()

    def feed_end(self) -> None:
        self._body_done = True
        self._wake_body()

    async def body(self) -> AsyncIterator[bytes]:
        timeout = self.conn.settings.client_body_timeout
        while True:
            if self._body:
                data = self._body.popleft()
                self._body_bytes -= len(data)
                if self._body_bytes < BODY_HIGH_WATER // 2:
                    self.conn.resume_client()
                yield data
                continue
            if self._body_done:
                if self._body_error:
                    raise ClientBodyInvalid(self._body_error)
                return
            if self.conn.closed:
                raise ConnectionError("client closed the connection")
            event = self._body_event
            if event is None:
                event = self._body_event = asyncio.Event()
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                # nginx: 408 is logged, the connection is closed
                self.conn.close()
                raise ClientBodyTimeout("client_body_timeout") from None

    def _wake_body(self) -> None:
        if self._body_event is not None:
            self._body_event.set()

    def body_complete(self) -> bool:
        return self._body_done

    def send_continue(self) -> None:
        self.conn.adapter.send_head(self.stream_id, 100, ())
        self.conn.flush()

    # response ------------------------------------------------------------------------------------

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], end_stream: bool,
              reason: bytes | None, close: bool) -> None:
        conn = self.conn
        if close or conn.engine_ref.draining or \
                conn.served + 1 >= conn.settings.keepalive_requests:
            # draining (graceful stop), or the connection's last allowed request
            # (keepalive_requests): this response says "Connection: close", as nginx's does
            self.close_after = True
            conn.adapter.close_after_response()
        self.sent_head = True
        conn.adapter.send_head(self.stream_id, status, headers, end_stream=end_stream,
                               reason=reason)

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        self._head(status, headers, end_stream, reason, close)
        if end_stream:
            self._finish()
        else:
            # written together with the first body bytes (drain/end), or at the end of this
            # loop iteration if none come: one write per response instead of one per event
            self.conn.defer_flush()
            self.conn.pump()

    def send_data(self, data: bytes) -> None:
        self.conn.adapter.send_data(self.stream_id, data)

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        # head, body and end in one write
        self._head(status, headers, False, reason, close)
        adapter = self.conn.adapter
        if body:
            adapter.send_data(self.stream_id, body)
        adapter.send_end(self.stream_id)
        self._finish()

    async def drain(self) -> None:
        self.conn.flush()
        await self.conn.drain()

    def end(self) -> None:
        self.conn.adapter.send_end(self.stream_id)
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        self.conn.flush()
        self.conn.pump()

    def abort(self) -> None:
        self.finished = True
        self.conn.close(abort=True)

    def tunnel(self, upstream: UpstreamConnection) -> asyncio.Future[None] | None:
        return self.conn.start_tunnel(upstream)


class HttpConnection(asyncio.Protocol):
    """An accepted client connection speaking HTTP/1.x."""

    def __init__(self, engine_ref: EngineRef, settings: ConnSettings) -> None:
        self.engine_ref = engine_ref
        self.settings = settings
        self.adapter = H1Server(settings.limits)
        self.id = next(_conn_ids)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.queue: collections.deque[H1Exchange | RequestRejected] = collections.deque()
        self.current: H1Exchange | None = None
        self.by_stream: dict[int, H1Exchange] = {}
        self.task: asyncio.Task[None] | None = None
        self._write_ready = asyncio.Event()
        self._write_ready.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._fast_cb: Callable[[], None] | None = None
        self._fast_at = 0.0
        self._paused = False
        self.local: tuple[str, int] = ("127.0.0.1", 0)
        self.remote: tuple[str, int] = ("127.0.0.1", 0)
        self.served = 0
        self.tunnel_peer: UpstreamConnection | None = None
        self._flush_pending = False
        self._keepalive_wait = False
        self._tunnel_done: asyncio.Future[None] | None = None
        self.lane_parser: _lane.LaneParser | None = None
        """The compiled lane's request parser (proxy/lane.py), made on first use."""
        self._lane_idle = False
        """The adapter is as ``lane_ready`` last found it (set after a lane request, cleared
        when anything else reaches the adapter)."""
        self.lane_on = settings.scheme == "http"
        """The lane serves cleartext HTTP/1.1 only (TLS variables are not in it)."""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("sockname")
        peer = transport.get_extra_info("peername")
        if isinstance(sock, tuple):
            self.local = (sock[0], sock[1])
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        self.engine_ref.connections.add(self)
        self._arm(self.settings.client_header_timeout)

    def data_received(self, data: bytes) -> None:
        if self.tunnel_peer is not None:
            t = self.tunnel_peer.transport
            if t is not None:
                t.write(data)
            return
        if self.lane_on and self.task is None and not self.queue:
            lane = self.engine_ref.engine.lane
            if lane is not None and (self._lane_idle or self.adapter.lane_ready()) and \
                    _lane.serve(lane, self, data):
                return  # (the lane's request ended the keep-alive wait: ``lane_begin``)
        self._lane_idle = False
        if self._keepalive_wait:
            # the next request has started: nginx now times its head with client_header_timeout
            self._keepalive_wait = False
            self._arm(self.settings.client_header_timeout)
        self._events(self.adapter.receive_data(data))
        self._reading_state()

    def pump(self) -> None:
        """After a response head or end: the adapter may release held or paused requests."""
        self._lane_idle = False
        if self.closed or self.tunnel_peer is not None:
            return
        self._events(self.adapter.next_events())
        self._reading_state()

    def _reading_state(self) -> None:
        if self.closed or self.transport is None:
            return
        if self.adapter.paused:
            self.pause_client()
        elif self._paused and not any(ex._body_bytes > BODY_HIGH_WATER
                                      for ex in self.by_stream.values()):
            self.resume_client()

    def eof_received(self) -> bool | None:
        self._lane_idle = False
        if self.tunnel_peer is not None:
            t = self.tunnel_peer.transport
            if t is not None and t.can_write_eof():
                t.write_eof()
            return True
        self._events(self.adapter.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._drop_timer()
        self._write_ready.set()
        self.engine_ref.connections.discard(self)
        for ex in self.by_stream.values():
            ex._wake_body()
        if self.tunnel_peer is not None:
            self.tunnel_peer.abort()
            if self._tunnel_done is not None and not self._tunnel_done.done():
                self._tunnel_done.set_result(None)
        if self.task is not None and not self.task.done() and self.current is not None \
                and self.current.sent_head:
            # the client is gone mid-response: stop the engine work
            self.task.cancel()

    def pause_writing(self) -> None:
        self._write_ready.clear()

    def resume_writing(self) -> None:
        self._write_ready.set()

    # -- events ---------------------------------------------------------------------------------

    def _events(self, events: list[object]) -> None:
        for ev in events:
            if isinstance(ev, RequestHeaders):
                self._cancel_timer()
                ex = H1Exchange(self, ev)
                self.by_stream[ev.stream_id] = ex
                self.queue.append(ex)
            elif isinstance(ev, RequestData):
                target = self.by_stream.get(ev.stream_id)
                if target is not None:
                    target.feed(ev.data)
            elif isinstance(ev, RequestEnd):
                target = self.by_stream.get(ev.stream_id)
                if target is not None:
                    target.feed_end()
            elif isinstance(ev, RequestRejected):
                self._cancel_timer()
                target = self.by_stream.get(ev.stream_id)
                if target is not None:
                    # the body went wrong after the head was handed over: the engine answers
                    # (nginx: 400) when it reads the body, then the connection closes
                    target._body_error = ev.status_hint or 400
                    target._body_done = True
                    target._wake_body()
                    continue
                self.queue.append(ev)
            elif isinstance(ev, StreamReset):
                self.close(abort=True)
                return
            else:
                raise RuntimeError(f"Unexpected event {ev!r}")
        self._next()

    def _next(self) -> None:
        if self.task is not None or self.closed or not self.queue:
            return
        item = self.queue.popleft()
        if isinstance(item, RequestRejected):
            self.task = self.loop.create_task(self._reject(item))
        else:
            self.current = item
            self.task = _FAST  # type: ignore[assignment]
            if not fastpath.start(self.engine_ref.engine, self, item):
                self.task = self.loop.create_task(self._serve(item))

    async def _serve(self, ex: H1Exchange, resume: ProxyResume | None = None) -> None:
        try:
            await self.engine_ref.engine.handle(ex, resume)
        finally:
            self.fast_done(ex)

    # -- the fast path's host (proxy/fastpath.py) ---------------------------------------------

    def resume_general(self, ex: Exchange, resume: ProxyResume) -> None:
        """The fast path hands its request over: the general path continues it in a task."""
        assert isinstance(ex, H1Exchange)
        self.task = self.loop.create_task(self._serve(ex, resume))

    def fast_done(self, ex: Exchange) -> None:
        """A request is over (what ``_serve`` does after the engine)."""
        assert isinstance(ex, H1Exchange)
        self.by_stream.pop(ex.stream_id, None)
        self.current = None
        self.task = None
        self.served += 1
        self._after_response(ex.close_after)

    def fast_drain(self, finish: Callable[[bool], None]) -> None:
        """``H1Exchange.drain`` for the fast path: ``finish(failed)`` once the response is
        written or the connection failed; a task waits only when the socket is full."""
        self.flush()
        if self.closed:
            finish(True)
        elif self._write_ready.is_set():
            finish(False)
        else:
            self.task = self.loop.create_task(self._fast_drain(finish))

    async def _fast_drain(self, finish: Callable[[bool], None]) -> None:
        try:
            await self.drain()
        except (ConnectionError, asyncio.CancelledError):
            finish(True)
        else:
            finish(False)

    # -- the compiled lane's host (proxy/lane.py) -----------------------------------------------

    def lane_begin(self, close: bool) -> int:
        """A request is on the lane: no other request starts until ``lane_done`` or a
        hand-over (``lane_exchange`` then ``resume_general``).  Its stream id from the
        adapter; ``close``: it said ``Connection: close``."""
        self._keepalive_wait = False  # (_cancel_timer)
        self._deadline = None
        self.task = _FAST  # type: ignore[assignment]
        return self.adapter.lane_begin(close)

    def lane_answer(self, sid: int, data: bytes) -> None:
        """The lane's whole response to stream ``sid``: its read timer stopped, written."""
        self._fast_cb = None  # (fast_timer_cancel)
        self.adapter.lane_end(sid)
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def lane_done(self, close: bool) -> None:
        """The lane's response is written: what ``fast_done`` does, after the drain.
        ``close``: the request said ``Connection: close``."""
        if not self._write_ready.is_set() and not self.closed:
            self.task = self.loop.create_task(self._fast_drain(self._lane_finished))
            return
        if close or self.closed or self.queue or self.engine_ref.draining:
            self._lane_finished(False)
            return
        # ``_after_response`` for the common case: nothing queued, the connection stays
        # (the lane took no request that was the connection's last: ``lane.serve``)
        self.task = None
        self.served += 1
        if not self.adapter.keep_alive:
            self.close()
            return
        self._arm(self.settings.keepalive_timeout)
        self._keepalive_wait = True
        # the adapter has seen nothing since ``lane_ready`` said yes for this request (the
        # bytes it would have seen make ``queue`` non-empty or go through ``data_received``)
        self._lane_idle = True

    def _lane_finished(self, failed: bool) -> None:
        if failed:
            self.close(abort=True)
        self.task = None
        self.served += 1
        self._after_response(False)

    def lane_exchange(self, head: RequestHeaders) -> H1Exchange:
        """The exchange of a lane request handed over to the general path."""
        self._lane_idle = False
        self.adapter.lane_stream(head.stream_id, head.keep_alive)
        ex = H1Exchange(self, head)
        self.by_stream[head.stream_id] = ex
        self.current = ex
        return ex

    async def _reject(self, rej: RequestRejected) -> None:
        try:
            if rej.status_hint == 0:
                # nginx closes without answering; a head cut short is logged as a 400
                self.engine_ref.engine.log_rejection(self, rej, 400, 0)
                self.close()
                return
            status, headers, body = self.engine_ref.engine.rejection(rej)
            self.adapter.close_after_response()
            self.adapter.send(ResponseHeaders(stream_id=rej.stream_id, status=status,
                                              headers=tuple(headers), end_stream=not body))
            if body:
                self.adapter.send(ResponseData(stream_id=rej.stream_id, data=body))
                self.adapter.send(ResponseEnd(stream_id=rej.stream_id))
            self.flush()
            self.engine_ref.engine.log_rejection(self, rej, status, len(body))
        finally:
            self.task = None
            self.close()

    def _after_response(self, close: bool) -> None:
        if self.closed:
            return
        if close or not self.adapter.keep_alive or \
                self.served >= self.settings.keepalive_requests or \
                self.settings.keepalive_timeout <= 0 or self.engine_ref.draining:
            self.close()
            return
        if self.queue:
            self._next()
        else:
            self._arm(self.settings.keepalive_timeout)
            self._keepalive_wait = True

    # -- writes ---------------------------------------------------------------------------------

    def defer_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        data = self.adapter.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
        if self.adapter.must_close and self.task is None and not self.closed:
            self.close()

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionError("client closed the connection")
        if self._write_ready.is_set():
            return
        try:
            await asyncio.wait_for(self._write_ready.wait(), self.settings.send_timeout)
        except asyncio.TimeoutError:
            self.close(abort=True)
            raise ConnectionError("send_timeout") from None
        if self.closed:
            raise ConnectionError("client closed the connection")

    def pause_client(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_client(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    # -- timers and closing -----------------------------------------------------------------------

    # One loop timer per connection, moved lazily: arming sets a deadline and only schedules
    # a timer when none is pending that would fire by then; a timer that fires early (the
    # deadline moved) re-schedules itself for the rest.  Under keep-alive load this avoids a
    # timer handle per request.  A closed connection cancels its timer for real.

    def _arm(self, seconds: float) -> None:
        self._keepalive_wait = False
        if seconds <= 0:
            self._deadline = None
            return
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        self._keepalive_wait = False
        self._deadline = None

    def _drop_timer(self) -> None:
        self._deadline = None
        if self._timer is not None and self._fast_cb is None:
            # (a fast-path request still waiting keeps the timer: its upstream read timeout
            # runs out even when the client is gone, as the general path's wait does)
            self._timer.cancel()
            self._timer = None

    def fast_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        """The fast path's proxy_read_timeout: ``callback()`` in ``seconds`` unless
        ``fast_timer_cancel`` comes first; on the connection's lazy timer, so a request does
        not create and cancel a timer handle of its own."""
        deadline = self.loop.time() + seconds
        self._fast_cb = callback
        self._fast_at = deadline
        timer = self._timer
        if timer is not None:
            if self._timer_at <= deadline:
                return
            timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def fast_timer_cancel(self) -> None:
        self._fast_cb = None

    def _on_timer(self) -> None:
        self._timer = None
        now = self.loop.time()
        cb = self._fast_cb
        if cb is not None and now >= self._fast_at:
            self._fast_cb = None
            cb()
        later = self._fast_at if self._fast_cb is not None else None
        deadline = self._deadline
        if deadline is not None and not self.closed:
            if now < deadline:
                later = deadline if later is None else min(later, deadline)
            else:
                self._deadline = None
                self._timeout()
        if later is not None and self._timer is None:
            self._timer_at = later
            self._timer = self.loop.call_at(later, self._on_timer)

    def _timeout(self) -> None:
        # header / keep-alive timeout: nginx closes without a response
        if self.task is None:
            try:
                partial = self.adapter.partial_request()
                if partial is not None:  # nginx logs 408 with the request line so far
                    self.engine_ref.engine.log_rejection(self, partial, 408, 0)
            finally:
                self.close()

    def idle(self) -> bool:
        """Between two requests of a keep-alive connection (graceful shutdown closes these).

        A fresh connection waiting for its first request is not idle: its request may be on
        the wire, and nginx serves it (bounded by client_header_timeout)."""
        return self.task is None and not self.queue and self.served > 0 and \
            not self.by_stream

    def close(self, *, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        self._drop_timer()
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.flush()
                self.transport.close()

    # -- tunnel (WebSocket) -----------------------------------------------------------------------

    def start_tunnel(self, upstream: UpstreamConnection) -> asyncio.Future[None]:
        """Relay raw bytes both ways until either side closes."""
        done: asyncio.Future[None] = self.loop.create_future()
        self.flush()
        self.tunnel_peer = upstream
        leftover = self.adapter.tunnel_bytes()
        if leftover and upstream.transport is not None:
            upstream.transport.write(leftover)
        client = self

        def on_up(data: bytes) -> None:
            if client.transport is not None and not client.closed:
                client.transport.write(data)

        def on_up_closed(_exc: Exception | None) -> None:
            client.close()
            if not done.done():
                done.set_result(None)

        upstream.become_tunnel(on_up, on_up_closed)
        self._cancel_timer()

        self._tunnel_done = done
        return done


class EngineRef:
    """What every connection of a worker shares: the current engine (swapped on reload)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connections: set[HttpConnection] = set()
        self.draining = False
