"""HTTP/1.x client connections to upstream servers, with a keep-alive pool.

This module is one of the two places that touch sockets (the other is ``proxy.io.server``).

Rules:

1. One ``UpstreamConnection`` carries one request at a time; a response read to its end on a
   connection that both sides keep alive goes back to the pool of its peer, up to the group's
   ``keepalive`` count (nginx caches per worker; so does Tern).
2. A pooled connection that the server closed is detected when it is taken (transport closing)
   or when the first write fails before any byte of the response: then the request is retried
   once on a fresh connection, as nginx does for cached connections.
3. Errors carry where they happened (``UpstreamError.phase``: connect, send, read) and whether
   anything of the response reached us, so ``proxy_next_upstream`` can decide.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httptools

from .upstream_tls import UpstreamTls, connect_tls


class UpstreamError(Exception):
    """A failure talking to an upstream peer."""

    def __init__(self, phase: str, message: str, *, timeout: bool = False,
                 response_started: bool = False) -> None:
        super().__init__(message)
        self.phase = phase
        """``connect``, ``send`` or ``read``."""
        self.timeout = timeout
        """True for a timeout (504 family), else an error (502 family)."""
        self.response_started = response_started
        """True when some of the response was already received."""


@dataclass(slots=True)
class UpstreamResponse:
    """A response head from upstream; the body follows through ``UpstreamConnection.read_body``."""

    status: int
    reason: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    chunked: bool
    content_length: int | None
    upgrade: bool = False
    accel: bool = False
    """An X-Accel-Redirect header is present."""


class _Parser:
    """httptools callbacks for one response."""

    __slots__ = ("conn", "headers", "reason", "status", "_name", "complete", "head_done")

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        self.headers: list[tuple[bytes, bytes]] = []
        self.reason = b""
        self.status = 0
        self._name = b""
        self.complete = False
        self.head_done = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.conn._on_head()

    def on_body(self, body: bytes) -> None:
        self.conn._on_body(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.conn._on_complete()


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a peer."""

    def __init__(self, key: tuple[object, ...]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._loop = asyncio.get_running_loop()
        self._body: collections.deque[bytes] = collections.deque()
        self._complete = False
        self._error: UpstreamError | None = None
        self._parser_cb: _Parser | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._response: UpstreamResponse | None = None
        self._paused = False
        self._writable = True
        self._waiter: asyncio.Future[bool] | None = None
        self._head_method = False
        self.got_bytes = False
        self._tunnel: tuple[Callable[[bytes], None], Callable[[Exception | None], None]] | None = None
        self.received = 0
        """Bytes received since the last request was written (a bound on its head's size)."""
        self._lane: Callable[[bytes | None], None] | None = None
        """The compiled lane reading this response itself (proxy/lane.py): bytes, None at
        EOF or loss."""
        self.watcher: Callable[[], None] | None = None
        """Called after each batch of received bytes is parsed, at EOF and when the connection
        is lost (the fast path waits for its response this way, without a future)."""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self.received += len(data)
        lane = self._lane
        if lane is not None:
            lane(data)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel[0](data)
            return
        if self._parser is None:
            # bytes with no request outstanding: the server is misbehaving; drop the connection
            self._fail(UpstreamError("read", "unexpected data from upstream"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # bytes after the 101 head belong to the tunnel
            offset = exc.args[0] if exc.args else len(data)
            if isinstance(offset, int) and offset < len(data):
                self._body.append(data[offset:])
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError("read", f"upstream sent invalid response: {exc}",
                                     response_started=True))
        if self.watcher is not None:
            self.watcher()

    def eof_received(self) -> bool | None:
        if self._tunnel is not None:
            return None
        lane = self._lane
        if lane is not None:
            lane(None)  # the lane hands over (``lane_fallback``) before EOF is processed
        self._on_eof()
        if self.watcher is not None:
            self.watcher()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._tunnel is not None:
            self._tunnel[1](exc)
            return
        lane = self._lane
        if lane is not None:
            lane(None)
        self._on_eof()
        self._wake()
        if self.watcher is not None:
            self.watcher()

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._wake()

    # -- parser events --------------------------------------------------------------------------

    def _on_head(self) -> None:
        cb = self._parser_cb
        p = self._parser
        assert cb is not None and p is not None
        status = p.get_status_code()
        if 100 <= status < 200 and status != 101:
            # interim response: nginx ignores 1xx from upstream (except 101); keep reading
            cb.headers = []
            cb.reason = b""
            cb.head_done = False
            self._parser = httptools.HttpResponseParser(cb)
            return
        chunked = False
        accel = False
        length: int | None = None
        for name, value in cb.headers:
            ln = name.lower()
            if ln == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif ln == b"content-length" and value.strip().isdigit():
                length = int(value)
            elif ln == b"x-accel-redirect":
                accel = True
        resp = UpstreamResponse(
            status=status, reason=cb.reason.strip(), version=p.get_http_version(),
            headers=cb.headers, keep_alive=p.should_keep_alive(), chunked=chunked,
            content_length=length, upgrade=status == 101, accel=accel)
        self._response = resp
        if self._head_method or status in (204, 304) or status == 101:
            # no body follows; httptools does not know the request was HEAD
            if status != 101:
                self._complete = True
        self._wake()

    def _on_body(self, body: bytes) -> None:
        self._body.append(body)
        if len(self._body) > 16 and not self._paused and self.transport is not None:
            self._paused = True  # back-pressure: the client is slower than the upstream
            self.transport.pause_reading()
        self._wake()

    def _on_complete(self) -> None:
        self._complete = True
        self._wake()

    def _on_eof(self) -> None:
        if self._response is not None and not self._complete:
            resp = self._response
            if not resp.chunked and resp.content_length is None and not resp.upgrade:
                # close-delimited body: EOF ends it
                self._complete = True
                resp.keep_alive = False
                self._wake()
                return
        if not self._complete:
            started = self._response is not None
            self._fail(UpstreamError("read", "upstream prematurely closed connection",
                                     response_started=started))
        self.closed = True
        self._wake()

    def _fail(self, err: UpstreamError) -> None:
        if self._error is None:
            self._error = err
        self._wake()
        if self.transport is not None:
            self.transport.abort()
        self.closed = True

    # -- API ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(True)

    async def _wait(self, timeout: float) -> bool:
        """Wait for the next parser or transport event; False on timeout.

        One future and one timer handle per wait (``asyncio.wait_for`` would wrap a task)."""
        fut = self._loop.create_future()
        self._waiter = fut
        handle = self._loop.call_later(timeout, _expire, fut)
        try:
            return bool(await fut)
        finally:
            handle.cancel()
            self._waiter = None

    async def request(self, head: bytes, body: bytes | None, *, send_timeout: float,
                      read_timeout: float, head_method: bool,
                      stream: AsyncIterator[bytes] | None = None,
                      chunked: bool = False) -> UpstreamResponse:
        """Send a request and wait for the response head.

        ``stream`` (proxy_request_buffering off): more body pieces, sent as they come after
        ``head`` and ``body``; each one a chunk when ``chunked`` (the last chunk ends them).

        Raises:
            UpstreamError: send or read failed, or timed out.
            Whatever ``stream`` raises (the client went away) propagates.
        """
        self.send_request(head, body, head_method=head_method)
        if stream is None:
            return await self.finish_request(send_timeout=send_timeout,
                                             read_timeout=read_timeout)
        transport = self.transport
        assert transport is not None
        if not self._writable:
            await self._drain(send_timeout)
        async for piece in stream:
            if self.closed or self._response is not None:
                break  # the upstream answered or gave up: that decides
            if piece:
                transport.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                if not self._writable:
                    await self._drain(send_timeout)
        else:
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        return await self._response_head(read_timeout)

    def send_request(self, head: bytes, body: bytes | None, *, head_method: bool) -> None:
        """Write a request (the first part of ``request``, no await).

        Raises:
            UpstreamError: the connection is closed.
        """
        transport = self.transport
        assert transport is not None
        self._head_method = head_method
        self._complete = False
        self._response = None
        self._error = None
        self._body.clear()
        self.got_bytes = False
        self.received = 0
        self._parser_cb = _Parser(self)
        self._parser = httptools.HttpResponseParser(self._parser_cb)
        if self.closed or transport.is_closing():
            raise UpstreamError("send", "connection closed")
        transport.write(head + body if body else head)

    # -- the compiled lane (proxy/lane.py) ------------------------------------------------------

    def lane_send(self, head: bytes, on_data: Callable[[bytes | None], None]) -> bool:
        """Write a GET head for the lane, which reads the answer itself (``on_data``);
        False when the connection is closed (nothing written)."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        self.got_bytes = False
        self.received = 0
        self._lane = on_data
        transport.write(head)
        return True

    def lane_fallback(self, received: bytes) -> None:
        """The lane hands over: the connection continues as after ``send_request`` for a GET,
        its parser given the bytes the lane had received."""
        self._lane = None
        self._head_method = False
        self._complete = False
        self._response = None
        self._error = None
        self._body.clear()
        self._parser_cb = _Parser(self)
        self._parser = httptools.HttpResponseParser(self._parser_cb)
        if received:
            self._feed(received)

    def lane_end(self) -> None:
        """The lane read its whole answer."""
        self._lane = None

    def lane_park(self, idle: collections.deque[UpstreamConnection], keepalive: int) -> None:
        """The lane read its whole answer and the connection stays: back to ``idle`` (the
        pool's deque for its peer: ``UpstreamPool.idle_of``), as ``UpstreamPool.release``."""
        self._lane = None
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            self.abort()
            return
        if len(idle) >= keepalive:
            idle.popleft().abort()  # nginx closes the least recently used one
        self._parser = None
        idle.append(self)

    async def finish_request(self, *, send_timeout: float, read_timeout: float
                             ) -> UpstreamResponse:
        """After ``send_request``: wait for the write to drain, then for the response head."""
        if not self._writable:
            await self._drain(send_timeout)
        return await self._response_head(read_timeout)

    async def _response_head(self, read_timeout: float) -> UpstreamResponse:
        while self._response is None:
            if self._error is not None:
                raise self._error
            if self.closed:
                raise UpstreamError("read", "upstream prematurely closed connection")
            if not await self._wait(read_timeout):
                self.abort()
                raise UpstreamError("read", "upstream timed out (reading response header)",
                                    timeout=True)
        return self._response

    async def _drain(self, send_timeout: float) -> None:
        while not self._writable and not self.closed:
            if not await self._wait(send_timeout):
                self.abort()
                raise UpstreamError("send", "upstream timed out (send)", timeout=True)
        if self.closed and self._error is not None:
            raise self._error

    async def send_more(self, data: bytes, send_timeout: float) -> None:
        """Stream more request body bytes (proxy_request_buffering off)."""
        assert self.transport is not None
        if self.closed:
            raise UpstreamError("send", "connection closed")
        self.transport.write(data)
        if not self._writable:
            await self._drain(send_timeout)

    def take_buffered(self) -> tuple[bytes, bool]:
        """Body bytes already received and whether the body is complete (no await needed)."""
        if self._error is not None:
            return b"", False
        if not self._body:
            return b"", self._complete
        data = b"".join(self._body) if len(self._body) > 1 else self._body[0]
        self._body.clear()
        self._resume()
        return data, self._complete

    def _resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    async def read_body(self, read_timeout: float) -> bytes | None:
        """Next piece of the response body, or None at its end.

        Raises:
            UpstreamError: the connection failed or timed out mid-body.
        """
        while True:
            if self._body:
                data = self._body.popleft()
                if len(self._body) < 4:
                    self._resume()
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            if self.closed:
                raise UpstreamError("read", "upstream prematurely closed connection",
                                    response_started=True)
            if not await self._wait(read_timeout):
                self.abort()
                raise UpstreamError("read", "upstream timed out (reading body)", timeout=True,
                                    response_started=True)

    @property
    def reusable(self) -> bool:
        """The last response completed and both sides keep the connection."""
        r = self._response
        return (r is not None and self._complete and r.keep_alive and not self.closed
                and self._error is None and self.transport is not None
                and not self.transport.is_closing())

    def abort(self) -> None:
        """Drop the connection."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def become_tunnel(self, on_data: Callable[[bytes], None],
                      on_closed: Callable[[Exception | None], None]) -> None:
        """After a 101: every byte from upstream goes to ``on_data`` raw; close calls
        ``on_closed``. Bytes already parsed past the response head are delivered first."""
        self._tunnel = (on_data, on_closed)
        self._parser = None
        while self._body:
            on_data(self._body.popleft())


@dataclass(slots=True)
class _Idle:
    conns: collections.deque[UpstreamConnection] = field(default_factory=collections.deque)


class UpstreamPool:
    """Keep-alive connections per peer address, bounded per upstream group."""

    def __init__(self) -> None:
        self._idle: dict[tuple[object, ...], _Idle] = {}

    def take_idle(self, host: str, port: int) -> UpstreamConnection | None:
        """A cached connection to ``host:port`` if one is open (``acquire``'s first step)."""
        idle = self._idle.get((host, port))
        while idle is not None and idle.conns:
            conn = idle.conns.pop()
            if not conn.closed and conn.transport is not None \
                    and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    async def acquire(self, host: str, port: int, *, connect_timeout: float,
                      reuse: bool, tls: UpstreamTls | None = None) -> UpstreamConnection:
        """A connection to ``host:port``: a cached one when ``reuse``, else a new one; with
        ``tls``, a TLS one (pooled apart from plain ones: see ``proxy.io.upstream_tls``).

        Raises:
            UpstreamError: connect failed or timed out.
        """
        key: tuple[object, ...] = (host, port) if tls is None else (host, port, tls.pool_key)
        if reuse:
            idle = self._idle.get(key)
            while idle is not None and idle.conns:
                conn = idle.conns.pop()
                if not conn.closed and conn.transport is not None \
                        and not conn.transport.is_closing():
                    conn.reused = True
                    return conn
        if tls is not None:
            return await connect_tls(key, host.strip("[]"), port, tls, connect_timeout)
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(key), host.strip("[]"), port),
                connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamError("connect", "upstream timed out (connect)", timeout=True) from None
        except OSError as exc:
            raise UpstreamError("connect", f"connect() failed ({exc.strerror or exc})") from None
        return proto

    def release(self, conn: UpstreamConnection, keepalive: int) -> None:
        """Return a finished connection: pooled when reusable and there is room, else closed."""
        if keepalive > 0 and conn.reusable:
            idle = self._idle.setdefault(conn.key, _Idle())
            if len(idle.conns) < keepalive:
                conn._parser = None
                idle.conns.append(conn)
                return
            # nginx closes the least recently used one to make room
            old = idle.conns.popleft()
            old.abort()
            conn._parser = None
            idle.conns.append(conn)
            return
        conn.abort()

    def idle_of(self, host: str, port: int) -> collections.deque[UpstreamConnection]:
        """The idle connections to ``host:port`` (plain ones), for the lane to keep: the
        table's entries are never removed, so the deque stays the pool's."""
        idle = self._idle.get((host, port))
        if idle is None:
            idle = self._idle[(host, port)] = _Idle()
        return idle.conns

    def lane_release(self, conn: UpstreamConnection, keepalive: int) -> None:
        """``release`` for a connection whose answer the lane read whole (keep-alive both
        ways, checked by the lane)."""
        conn.lane_park(self.idle_of(*conn.key), keepalive)  # type: ignore[arg-type]

    def close_all(self) -> None:
        """Close every cached connection (shutdown, reload)."""
        for idle in self._idle.values():
            while idle.conns:
                idle.conns.pop().abort()
