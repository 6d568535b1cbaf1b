"""``tern shadow``: a front proxy that answers from the primary and mirrors to a candidate.

Invariants (DESIGN.md §6), and how this module keeps them:

1. **Primary untouched, byte for byte.** The client's request goes to the primary as the client
   sent it (method, target, version, header lines in order and case, ``Connection`` included);
   the body streams to the primary as it arrives, with the client's framing (``Content-Length``
   kept; a chunked body is re-chunked, chunk sizes and extensions are not kept), and ``Expect`` is
   dropped (the proxy has already answered ``100 Continue``). Back-pressure: while the primary's
   connection does not take bytes (its transport is over its high-water mark), or the body of a
   pipelined request waits for its turn beyond :data:`WAITING_LIMIT`, the client is not read
   (:class:`BodyStream`, ``_Front._update_reading``); and while the client does not take the
   response, the primary's connection is not read (``_Front.pause_writing``; a connection paused
   so is not timed out as idle). The primary's response bytes are written to
   the client as they arrive, unchanged: status line, headers, chunk framing and body. The client
   connection is closed after the response exactly when the primary's connection is (a
   ``Connection: close`` answer or a close-delimited body), so the framing the client sees is the
   one it was sent. :class:`proxy.protocol.h1.H1Server` parses the client side and is told about
   every response so that its keep-alive and pipelining state stays right; its own output for
   relayed responses is discarded (it is used for the answers this proxy makes itself: ``502``
   when the primary fails before sending a byte, and the rejections of malformed requests).
2. **Never delayed.** The client path never awaits the mirror, and does as little for it as it
   can: when a request is complete it only decides (skip, or reserve: ``pending``); the mirror
   job is queued once the primary's answer has been written to the client, and carries that
   answer (no future per job, no worker waiting on the primary). Workers (separate tasks, a
   separate connection pool) then send to the candidate. Diffing, noise learning and SQLite
   writes (batched, one transaction per batch) happen in another process for ``tern shadow``
   (:class:`AnalyzerProcess`, nice 19; in a thread they took the loop's GIL, which cost the
   primary's p99 most of the mirroring overhead), or on a thread (:class:`Analyzer`, tests and
   replay).
3. **Bounded, drop and count.** Jobs wait in a bounded queue (``queue_size``) for a bounded set of
   workers (``concurrency``); the request body tee keeps at most ``max_body`` bytes per request
   (past that it stops keeping and the request is ``skipped_body``) and ``max_queue_bytes`` over
   all queued jobs. Every complete request counts once as
   ``eligible`` and then exactly once as ``mirrored`` (sent to the candidate, whatever came back),
   ``dropped_*`` (queue full, byte budget, shutdown) or ``skipped_*`` (unsafe method, sampled out,
   body over the tee limit, upgrade): after :meth:`ShadowProxy.stop`,
   mirrored + dropped + skipped = eligible (:meth:`MirrorStats.balanced`).
4. **Failures contained.** The candidate has its own pool and timeouts; a dead, black-holed,
   erroring or resetting candidate is counted (``candidate_errors``) and never touches the
   primary's connections.
5. **Safe methods only** (GET, HEAD, OPTIONS, TRACE; RFC 9110 §9.2.1) unless ``mirror_unsafe``.
6. **Marked.** Every mirrored request carries ``X-Tern-Shadow: 1`` (not compared).

Noise: with a ``secondary`` (a second primary) each mirrored request also goes there; with
``learn_noise`` and no secondary, it goes to the primary a second time (marked, and only for
mirrored requests; unsafe methods are then never sent twice). See :mod:`shadow.noise`.

TLS and HTTP/2: the listener may be TLS (``listen_tls``; ALPN ``h2`` or ``http/1.1``) and, on
cleartext, take HTTP/2 with prior knowledge (``h2c``); HTTP/2 clients are served by
:mod:`shadow.h2front` (each stream goes to the primary as HTTP/1.1, and is mirrored as above).
``https://`` primaries and candidates are reached over TLS (:func:`make_upstream_tls`: verified
by default).

With ``quic``, HTTP/3 is served on UDP at the same address and port (:mod:`shadow.h3front`,
the same per-stream handling).

7. **Client timeouts** (HTTP/1.x; nginx's directives and defaults, ``ShadowOptions``): until a
   connection's first request head is whole, and for any later head from its first byte,
   ``client_header_timeout``; between a response and the next request, ``client_idle_timeout``
   (``keepalive_timeout``); between two reads of a request body the proxy wants to read,
   ``client_body_timeout``; while the client's transport is over its high-water mark and the
   bytes it has not taken (transport buffer plus kernel send queue) do not shrink,
   ``send_timeout``. A request waiting for the primary's answer is not timed by them (the
   primary's idle timeout is). On expiry the connection is closed without an answer (nginx logs
   408 and closes), and for the body and send timeouts the primary connection of the request in
   progress is closed too (a partial body never looks whole to the primary). One timer per
   connection, armed lazily (``_Front._arm``). Counted in ``MirrorStats.timeout_*``. HTTP/2
   and HTTP/3 clients get the same directives per stream and per connection, as nginx applies
   them there (:mod:`shadow.h2front` rules 6-9, :mod:`shadow.h3front` rule 5), and
   ``keepalive_requests`` (then GOAWAY).
8. **Upgrades** (WebSocket): an ``Upgrade`` request (``Connection: upgrade``) goes to the
   primary as any other and is never mirrored (``skipped_upgrade``). A ``101`` answer is relayed
   and the connection becomes a :class:`_Tunnel`: raw bytes both ways on the client's
   connection and that primary connection (taken out of the pool), with back-pressure (a side
   over its high-water mark stops the reading of the other), half-close passed on, both closed
   when both sides have ended, one is lost, or ``tunnel_idle_timeout`` passes without a byte.
   Any other answer is relayed as a normal response and the connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import multiprocessing
import os
import pickle
import queue
import random
import signal
import ssl
import struct
import termios
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

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
from proxy.protocol.h1 import H1Limits, H1Server

from .diff import CapturedResponse, diff_responses
from .noise import NoiseModel, normalise, route_key
from .rules import Rules
from .store import DiffRow, ExchangeRow, Store

__all__ = [
    "MARKER",
    "SAFE_METHODS",
    "Analyzer",
    "AnalyzerProcess",
    "Attribution",
    "Exchange",
    "Fetched",
    "MirrorStats",
    "OutRequest",
    "ShadowOptions",
    "ShadowProxy",
    "UpstreamClient",
    "parse_origin",
    "parse_upstream",
    "server_tls",
    "make_upstream_tls",
]

MARKER = (b"X-Tern-Shadow", b"1")
"""The header every mirrored request carries."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
"""RFC 9110 §9.2.1."""

_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect"})


def parse_origin(url: str) -> tuple[str, int]:
    """``http://host:port`` (or ``host:port``) -> ``(host, port)``.

    Raises:
        ValueError: not an http origin.
    """
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// origin: {url}")
    return parts.hostname, parts.port or 80


def parse_upstream(url: str) -> tuple[str, int, bool]:
    """``http://host:port`` or ``https://host:port`` (or ``host:port``) -> ``(host, port, tls)``.

    Raises:
        ValueError: neither an http nor an https origin.
    """
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// origin: {url}")
    tls = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if tls else 80), tls


def make_upstream_tls(*, verify: bool = True, cafile: str | None = None) -> ssl.SSLContext:
    """The client context for ``https://`` upstreams: the system's trust store (or ``cafile``),
    host name checked, ALPN ``http/1.1``; ``verify=False`` checks nothing (self-signed rigs).

    Raises:
        OSError, ssl.SSLError: ``cafile`` cannot be read.
    """
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def server_tls(cert: str, key: str, *, h2: bool = True) -> ssl.SSLContext:
    """The listener's context: one certificate chain, ALPN ``h2`` (unless ``h2=False``) then
    ``http/1.1``.

    Raises:
        ValueError: the files cannot be read or do not match (the message names them).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path, what in ((cert, "certificate"), (key, "key")):
        if not os.path.isfile(path):
            raise ValueError(f"cannot load TLS {what} {path}: no such file")
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} with key {key}: "
                         f"{getattr(exc, 'reason', None) or exc}") from None
    ctx.set_alpn_protocols(["h2", "http/1.1"] if h2 else ["http/1.1"])
    return ctx


# --------------------------------------------------------------------------------------------
# requests and responses


@dataclass(frozen=True, slots=True, kw_only=True)
class OutRequest:
    """A request to send upstream."""

    method: str
    target: str
    version: str = "1.1"
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """Header lines in order, framing headers (Content-Length, Transfer-Encoding) excluded."""
    body: bytes = b""
    had_length: bool = False
    """The original had a ``Content-Length`` (send one even for an empty body)."""

    def head(self, *extra: tuple[bytes, bytes]) -> bytes:
        """The request head on the wire, with ``extra`` header lines appended."""
        parts = [f"{self.method} {self.target} HTTP/{self.version}\r\n".encode("latin-1")]
        for n, v in self.headers:
            parts += (n, b": ", v, b"\r\n")
        for n, v in extra:
            parts += (n, b": ", v, b"\r\n")
        if self.body or self.had_length:
            parts.append(b"Content-Length: %d\r\n" % len(self.body))
        parts.append(b"\r\n")
        return b"".join(parts)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # pickled per mirrored request (AnalyzerProcess): a tuple, not dataclass __getstate__
        return _out_request_of, (self.method, self.target, self.version, self.headers,
                                 self.body, self.had_length)

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (name in lower case)."""
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


@dataclass(slots=True)
class Fetched:
    """A response received from an upstream (or the failure to get one)."""

    status: int | None = None
    reason: bytes = b""
    version: str = "1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    """The body (transfer coding removed), at most the capture limit."""
    truncated: bool = False
    """The body was longer than the capture limit."""
    error: str = ""
    """"" for a complete response, else ``refused``, ``timeout``, ``reset``, ``closed``..."""
    relayed: bool = False
    """Some bytes went to ``on_data`` (the response cannot be replaced any more)."""
    keep_alive: bool = False
    elapsed_ms: float = 0.0

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _fetched_of, (self.status, self.reason, self.version, self.headers, self.body,
                             self.truncated, self.error, self.relayed, self.keep_alive,
                             self.elapsed_ms)

    def captured(self) -> CapturedResponse:
        """As :mod:`shadow.diff` wants it."""
        return CapturedResponse(status=self.status, version=self.version,
                                headers=tuple(self.headers), body=self.body, error=self.error)


def _out_request_of(method: str, target: str, version: str,
                    headers: tuple[tuple[bytes, bytes], ...], body: bytes,
                    had_length: bool) -> OutRequest:
    return OutRequest(method=method, target=target, version=version, headers=headers,
                      body=body, had_length=had_length)


def _fetched_of(*values: Any) -> Fetched:
    return Fetched(*values)


class _Pending:
    """One response being read (httptools callbacks)."""

    def __init__(self, conn: _UConn, head_only: bool, on_data: Callable[[bytes], Any] | None,
                 capture: int, sink: ResponseSink | None = None) -> None:
        self.conn = conn
        self.head_only = head_only
        self.on_data = on_data
        self.sink = sink
        self.capture = capture
        self.parser = httptools.HttpResponseParser(self)
        self.result = Fetched()
        self.body = bytearray()
        self.headbuf = b""
        self.head_done = False
        self.interim = False
        self.framed = False
        self.done = False
        self.any_byte = False
        self.active = False
        """Bytes came since the idle timer was last armed."""
        self.timer: asyncio.TimerHandle | None = None
        self.spill = bytearray()
        """After a 101: bytes that came before the tunnel took the connection over."""
        self.fut: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()

    # httptools ------------------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.result.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.result.headers.append((name, value))

    def on_headers_complete(self) -> None:
        code = self.parser.get_status_code()
        if code < 200 and code != 101:
            self.interim = True
            self.result.headers = []
            self.result.reason = b""
            return
        self.result.status = code
        self.result.version = self.parser.get_http_version()
        for n, v in self.result.headers:
            ln = n.lower()
            if ln == b"content-length" or (ln == b"transfer-encoding" and b"chunked" in v.lower()):
                self.framed = True
        self.head_done = True
        if self.sink is not None and self.sink.head(self.result):
            self.result.relayed = True

    def on_body(self, body: bytes) -> None:
        if self.sink is not None and body:
            self.sink.body(body)
        room = self.capture - len(self.body)
        if len(body) > room:
            self.result.truncated = True
            body = body[:max(room, 0)]
        self.body += body

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self._finish("", self.parser.should_keep_alive())

    # feeding --------------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.done:
            if self.result.status == 101:
                self.spill += data  # the tunnel's first bytes (fetch hands them over)
            return
        self.any_byte = self.active = True
        if self.head_only:
            self.headbuf += data
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass
            except httptools.HttpParserError:
                self._finish("bad response", False)
                return
            if self.head_done:
                end = self.headbuf.find(b"\r\n\r\n")
                end = end + 4 if end >= 0 else len(self.headbuf)
                self._relay(self.headbuf[:end])
                self._finish("", self.parser.should_keep_alive() and end == len(self.headbuf))
            return
        self._relay(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish("", False)  # a 101: what came with it went to the client (tunnel)
        except httptools.HttpParserError:
            self._finish("bad response", False)

    def _relay(self, data: bytes) -> None:
        if self.on_data is not None and data:
            self.result.relayed = True
            self.on_data(data)

    def eof(self, error: str) -> None:
        if self.done:
            return
        if self.head_done and not self.framed and not self.head_only and not error:
            self._finish("", False)  # close-delimited body (RFC 9112 §6.3 rule 8)
        elif self.head_done:
            self._finish(f"incomplete body ({error or 'closed'})", False)
        else:
            self._finish(error or "closed", False)

    def _finish(self, error: str, keep_alive: bool) -> None:
        if self.done:
            return
        self.done = True
        r = self.result
        r.error = error
        r.keep_alive = keep_alive and not error
        r.body = bytes(self.body)
        if not self.fut.done():
            self.fut.set_result(r)


class ResponseSink:
    """Takes a response parsed (the HTTP/2 front), instead of its raw bytes (``on_data``)."""

    def head(self, fetched: Fetched) -> bool:
        """The final head has come (``status``, ``reason``, ``headers`` of ``fetched``); True
        when it went to the client (the response cannot be replaced any more)."""
        raise NotImplementedError

    def body(self, data: bytes) -> None:
        """A piece of the body, transfer coding removed."""
        raise NotImplementedError


class _UConn(asyncio.Protocol):
    """One upstream connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: _Pending | None = None
        self.closed = False
        self.used = False
        self.stream: BodyStream | None = None
        """The request body being streamed on this connection, told about flow control."""
        self.tunnel: _Tunnel | None = None
        """After a 101: the tunnel this connection is one end of (it gets every callback)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_full(True)
        elif self.stream is not None:
            self.stream.set_blocked(True)

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.upstream_full(False)
        elif self.stream is not None:
            self.stream.set_blocked(False)

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_upstream(data)
            return
        p = self.pending
        if p is None:
            self.abort()  # bytes nobody asked for: the connection is unusable
            return
        p.feed(data)

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            return self.tunnel.upstream_eof()
        if self.pending is not None:
            self.pending.eof("")
        self.closed = True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.upstream_lost(exc)
            return
        if self.pending is not None:
            err = ""
            if isinstance(exc, ConnectionResetError):
                err = "reset"
            elif exc is not None:
                err = type(exc).__name__
            self.pending.eof(err)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class BodyStream:
    """A request body sent upstream as it arrives from the client (back-pressure included).

    The client side calls :meth:`feed` with body pieces (transfer coding removed) and
    :meth:`end`; :meth:`UpstreamClient.fetch` sends them with the client's framing:
    ``Content-Length`` when the client declared one, else chunked. While the upstream connection
    does not take bytes (its transport is above its high-water mark), ``on_blocked(True)`` tells
    the client side to stop reading its socket; ``on_blocked(False)`` when it drained.

    The first ``replay_limit`` bytes are kept so that a request sent on a kept-alive connection
    the upstream had closed can be sent again on a fresh one; past that it is not retried.

    Args:
        length: the declared ``Content-Length``, or None for chunked.
        on_blocked: flow-control callback (see above).
        replay_limit: bytes kept for a retry.
    """

    def __init__(self, length: int | None, on_blocked: Callable[[bool], Any] | None = None,
                 replay_limit: int = 64 << 10) -> None:
        self.length = length
        self.on_blocked = on_blocked
        self.replay_limit = replay_limit
        self.kept: list[bytes] = []
        self.kept_size = 0
        self.replayable = True
        self.waiting: list[bytes] = []
        """Pieces that came before a connection was there."""
        self.waiting_size = 0
        self.conn: _UConn | None = None
        self.ended = False
        self.detached = False
        """The upstream answered (or failed) before the body ended: the rest is dropped."""
        self.blocked = False

    def framing(self) -> bytes:
        if self.length is not None:
            return b"Content-Length: %d\r\n" % self.length
        return b"Transfer-Encoding: chunked\r\n"

    def _frame(self, data: bytes) -> bytes:
        if self.length is not None:
            return data
        return b"%x\r\n%s\r\n" % (len(data), data)

    def _trailer(self) -> bytes:
        return b"0\r\n\r\n" if self.length is None else b""

    def feed(self, data: bytes) -> None:
        """A piece of body from the client."""
        if self.detached or not data:
            return
        if self.replayable:
            if self.kept_size + len(data) <= self.replay_limit:
                self.kept.append(data)
                self.kept_size += len(data)
            else:
                self.replayable = False
                self.kept.clear()
        conn = self.conn
        if conn is None or conn.transport is None:
            self.waiting.append(data)
            self.waiting_size += len(data)
            return
        conn.transport.write(self._frame(data))

    def end(self) -> None:
        """The client's body is complete."""
        if self.ended:
            return
        self.ended = True
        conn = self.conn
        if conn is not None and conn.transport is not None and not self.detached:
            conn.transport.write(self._trailer())

    def attach(self, conn: _UConn, head: bytes, replay: bool) -> None:
        """Send the head, what is waiting (or, on a retry, what was kept), and stream on."""
        assert conn.transport is not None
        parts = [head]
        # a retry sends everything again: all of it is in ``kept`` (waiting pieces too)
        parts += [self._frame(d) for d in (self.kept if replay else self.waiting)]
        self.waiting = []
        self.waiting_size = 0
        if self.ended:
            parts.append(self._trailer())
        self.conn = conn
        conn.stream = self
        conn.transport.write(b"".join(parts))
        if self.on_blocked is not None:  # what waited is gone: the client side may read again
            self.on_blocked(self.blocked)

    def detach(self, conn: _UConn, *, final: bool) -> None:
        """The exchange on ``conn`` is over (``final``: no retry follows)."""
        conn.stream = None
        if self.conn is conn:
            self.conn = None
        if final and not self.ended:
            self.detached = True
            self.kept.clear()
            self.waiting.clear()
            self.waiting_size = 0
        self.set_blocked(False)

    def set_blocked(self, blocked: bool) -> None:
        if blocked != self.blocked:
            self.blocked = blocked
            if self.on_blocked is not None:
                self.on_blocked(blocked)


class UpstreamClient:
    """HTTP/1.x client to one origin, with a keep-alive pool of its own.

    Args:
        host, port: the origin.
        connect_timeout: seconds to connect.
        timeout: seconds without a byte from the upstream before giving up (idle timeout).
        capture: bytes of each response body kept in :attr:`Fetched.body`.
        max_idle: idle connections kept.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0,
                 timeout: float = 60.0, capture: int = 1 << 20, max_idle: int = 256,
                 tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.capture = capture
        self.max_idle = max_idle
        self._idle: deque[_UConn] = deque()
        self._all: set[_UConn] = set()

    async def _connect(self) -> _UConn:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(_UConn, self.host, self.port, ssl=self.tls,
                                   server_hostname=self.host if self.tls else None),
            self.connect_timeout)
        self._all.add(conn)
        return conn

    async def fetch(self, req: OutRequest, *extra: tuple[bytes, bytes],
                    on_data: Callable[[bytes], Any] | None = None,
                    stream: BodyStream | None = None,
                    reader: Callable[[asyncio.Transport | None], Any] | None = None,
                    sink: ResponseSink | None = None,
                    upgrade: Callable[[_UConn, bytes], Any] | None = None) -> Fetched:
        """Send ``req`` (plus ``extra`` header lines) and read the response.

        Args:
            req: the request.
            extra: header lines appended (the shadow marker).
            on_data: called with the raw response bytes as they arrive (relay).
            stream: the body, sent as it comes (``req.body`` is then ignored).
            reader: told the upstream connection's transport once the request is on it, and
                None when the exchange is over (the caller may pause its reading meanwhile, and
                must leave it reading when told None: the connection goes back to the pool).
            sink: told the parsed head and body pieces as they arrive (HTTP/2 clients).
            upgrade: on a ``101`` (the request asked for an upgrade), given the connection and
                the bytes that followed the head and were not relayed yet, instead of closing
                it: the caller relays the tunnel from then on (and closes the connection).

        Returns:
            The response; failures are in :attr:`Fetched.error`, never raised.
        """
        start = time.perf_counter()
        if stream is None:
            data = req.head(*extra) + req.body
        else:
            plain = req.head(*extra)  # no body, no had_length: no Content-Length line
            data = plain[:-2] + stream.framing() + b"\r\n"
        head_only = req.method == "HEAD"
        for attempt in (0, 1):
            conn: _UConn | None = None
            while self._idle:
                c = self._idle.pop()
                if not c.closed and c.transport is not None and not c.transport.is_closing():
                    conn = c
                    break
                self._all.discard(c)
            reused = conn is not None
            if conn is None:
                try:
                    conn = await self._connect()
                except TimeoutError:
                    return Fetched(error="connect timeout",
                                   elapsed_ms=(time.perf_counter() - start) * 1000)
                except ssl.SSLError as exc:
                    return Fetched(error=f"tls: {exc.reason or exc}",
                                   elapsed_ms=(time.perf_counter() - start) * 1000)
                except OSError as exc:
                    err = "refused" if isinstance(exc, ConnectionRefusedError) else (
                        f"connect: {exc.strerror or exc}")
                    return Fetched(error=err, elapsed_ms=(time.perf_counter() - start) * 1000)
            pending = _Pending(conn, head_only, on_data, self.capture, sink)
            conn.pending = pending
            assert conn.transport is not None
            if stream is None:
                conn.transport.write(data)
            else:
                stream.attach(conn, data, replay=attempt > 0)
            if reader is not None:
                reader(conn.transport)
            try:
                result = await self._wait(pending)
            except BaseException:
                conn.pending = None
                if stream is not None:
                    stream.detach(conn, final=True)
                if reader is not None:
                    reader(None)
                raise
            conn.pending = None
            if reader is not None:
                reader(None)
            retry = (reused and bool(result.error) and not pending.any_byte and attempt == 0
                     and (stream is None or stream.replayable))
            if stream is not None:
                stream.detach(conn, final=not retry)
            unfinished = stream is not None and not stream.ended  # the answer came early
            if (upgrade is not None and result.status == 101 and not result.error
                    and not unfinished and conn.transport is not None
                    and not conn.transport.is_closing()):
                upgrade(conn, bytes(pending.spill))
                result.elapsed_ms = (time.perf_counter() - start) * 1000
                return result
            if (result.keep_alive and not unfinished and not conn.closed
                    and len(self._idle) < self.max_idle):
                self._idle.append(conn)
            else:
                conn.abort() if result.error or unfinished else _close(conn)
                self._all.discard(conn)
            if retry:
                continue  # a cached connection the server had closed: retry once, fresh
            result.elapsed_ms = (time.perf_counter() - start) * 1000
            return result
        raise RuntimeError("Unexpected: retry loop ended")  # pragma: no cover

    async def _wait(self, pending: _Pending) -> Fetched:
        # one timer handle per request, re-armed while bytes keep coming (an idle timeout);
        # no asyncio.wait_for (a task, futures and callbacks per call; and see stop())
        loop = asyncio.get_running_loop()
        timeout = self.timeout

        def expired() -> None:
            if pending.done:
                return
            t = pending.conn.transport
            if pending.active or (t is not None and not t.is_reading()):
                # bytes came, or reading is paused on purpose (a slow client): not idle
                pending.active = False
                pending.timer = loop.call_later(timeout, expired)
                return
            pending.eof("timeout")
            pending.conn.abort()

        pending.timer = loop.call_later(timeout, expired)
        try:
            return await pending.fut
        finally:
            if pending.timer is not None:
                pending.timer.cancel()

    def close(self) -> None:
        """Close every connection."""
        for c in list(self._all):
            c.abort()
        self._all.clear()
        self._idle.clear()


def _close(conn: _UConn) -> None:
    conn.closed = True
    if conn.transport is not None:
        conn.transport.close()


# --------------------------------------------------------------------------------------------
# analysis (a thread of its own)


@dataclass(frozen=True, slots=True, kw_only=True)
class Attribution:
    """Which server and location of the candidate's config answers a request."""

    server: str
    """``name (file:line)``."""
    location: str | None
    """The location's match, e.g. ``= /x``; None when no location matched."""
    location_source: str | None
    """``file:line`` of the location."""


Attributor = Callable[[str, str | None, str], "Attribution | None"]
"""(method, host, target) -> attribution; built by the command layer from ``--config``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One request with the answers of every side, ready to be diffed."""

    source: str
    """``shadow`` or ``replay``."""
    request: OutRequest
    host: str
    primary: Fetched
    candidate: Fetched
    secondary: Fetched | None = None
    """Second primary answer (noise learning), if any."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _exchange_of, (self.source, self.request, self.host, self.primary,
                              self.candidate, self.secondary)


def _exchange_of(source: str, request: OutRequest, host: str, primary: Fetched,
                 candidate: Fetched, secondary: Fetched | None) -> Exchange:
    return Exchange(source=source, request=request, host=host, primary=primary,
                    candidate=candidate, secondary=secondary)


class Analyzer:
    """Normalises, diffs, learns noise and stores exchanges on a thread of its own.

    Args:
        store: where results go (used only by the analysis thread once started).
        rules: user ignore rules.
        noise: the noise model (seeded from the store by the caller, if wanted).
        attribute: attribution of requests to the candidate's config, or None.
        queue_size: exchanges waiting; :meth:`submit` refuses more (counted in ``dropped``).
        counters: called now and then, its values stored as the store's counters.
    """

    def __init__(self, store: Store, *, rules: Rules | None = None,
                 noise: NoiseModel | None = None, attribute: Attributor | None = None,
                 queue_size: int = 1024,
                 counters: Callable[[], dict[str, int]] | None = None) -> None:
        self.store = store
        self.rules = rules or Rules()
        self.options = self.rules.options(MARKER[0].decode())
        self.noise = noise or NoiseModel()
        self.attribute = attribute
        self.counters = counters
        self._q: queue.Queue[Exchange | None] = queue.Queue(queue_size)
        self._thread: threading.Thread | None = None
        self.analysed = 0
        self.differing = 0
        self.dropped = 0
        self.errors: list[str] = []
        self._last_flush = 0.0

    def start(self) -> Analyzer:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="shadow-analyzer", daemon=True)
        self._thread.start()
        return self

    def submit(self, ex: Exchange) -> bool:
        """Queue an exchange; False (and counted) when the queue is full."""
        try:
            self._q.put_nowait(ex)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Analyse what is queued, flush the counters and stop the thread."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None
        self._flush(force=True)

    def _run(self) -> None:
        while True:
            batch: list[Exchange] = []
            ex = self._q.get()
            while ex is not None:
                batch.append(ex)
                if len(batch) >= BATCH:
                    break
                try:
                    ex = self._q.get_nowait()
                except queue.Empty:
                    break
            self.process_batch(batch)
            if ex is None:
                return

    def process_batch(self, batch: list[Exchange]) -> None:
        """Diff and store exchanges, all in one transaction, then flush the counters when due
        (one bad exchange is counted in :attr:`errors` and does not stop the others)."""
        if batch:
            with self.store.batch():
                for ex in batch:
                    try:
                        self.process(ex)
                    except Exception as exc:  # noqa: BLE001 - contained, see the docstring
                        self.errors.append(f"{type(exc).__name__}: {exc}")
        self._flush()

    def _flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.counters is not None and (force or now - self._last_flush > 1.0):
            self._last_flush = now
            values = dict(self.counters())
            values["analysis_dropped"] = self.dropped
            self.store.set_counters(values)

    def process(self, ex: Exchange) -> int:
        """Diff one exchange and store it (on the caller's thread); returns the exchange id."""
        req = ex.request
        route = route_key(req.method, req.target)
        primary = normalise(_bounded(ex.primary), self.rules)
        candidate = normalise(_bounded(ex.candidate), self.rules, MARKER)
        learned: set[str] = set()
        if ex.secondary is not None:
            secondary = normalise(_bounded(ex.secondary), self.rules, MARKER)
            learned = self.noise.learn(route, diff_responses(primary, secondary, self.options))
        real, noisy = self.noise.split(route, diff_responses(primary, candidate, self.options))
        att = None
        if self.attribute is not None:
            try:
                att = self.attribute(req.method, ex.host or None, req.target)
            except Exception:  # noqa: BLE001 - attribution is best effort
                att = None
        rows = [DiffRow(field=d.field, primary=d.primary, candidate=d.candidate,
                        verdict="difference") for d in real]
        rows += [DiffRow(field=d.field, primary=d.primary, candidate=d.candidate,
                         verdict="noise") for d in noisy]

        def text(h: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
            return tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in h)

        row = ExchangeRow(
            source=ex.source, route=route, method=req.method, host=ex.host, target=req.target,
            request_headers=text(list(req.headers)), request_body=req.body,
            primary_status=ex.primary.status, candidate_status=ex.candidate.status,
            secondary_status=ex.secondary.status if ex.secondary else None,
            primary_error=ex.primary.error, candidate_error=ex.candidate.error,
            primary_ms=round(ex.primary.elapsed_ms, 3),
            candidate_ms=round(ex.candidate.elapsed_ms, 3),
            primary_headers=text(ex.primary.headers), candidate_headers=text(ex.candidate.headers),
            primary_body=ex.primary.body, candidate_body=ex.candidate.body,
            server=att.server if att else None, location=att.location if att else None,
            location_source=att.location_source if att else None)
        xid = self.store.add(row, rows, learned=learned,
                             compared_primaries=ex.secondary is not None)
        self.analysed += 1
        if real:
            self.differing += 1
        return xid


BATCH = 256
"""Exchanges analysed and stored per transaction at most."""


class AnalyzerProcess:
    """An :class:`Analyzer` in a child process of its own (``fork``), at a lower priority.

    Diffing (deepdiff), noise learning and SQLite writes take CPU and, on a thread, the GIL that
    the proxy's event loop needs: each time the loop wakes up for a primary's or a client's
    bytes it may wait for the analysis thread to let go of the GIL (up to the 5 ms switch
    interval), and that wait lands on the primary's latency. In a process the two share only the
    CPUs, and the scheduler, told the analysis is background work (``nice``), runs the loop
    first. The proxy's process keeps a single thread: exchanges submitted during one pass of
    the event loop are pickled together once (``loop.call_soon``) and written to a pipe without
    blocking (what the pipe does not take waits in a buffer drained by ``loop.add_writer``).

    Bounded: when that buffer holds more than ``max_backlog`` bytes the child is behind, and
    :meth:`submit` refuses (counted in :attr:`dropped`, stored as ``analysis_dropped``).

    Same surface as :class:`Analyzer` for the proxy and the command (:meth:`submit`,
    :attr:`counters`, :meth:`close`, :attr:`analysed`, :attr:`differing`, :attr:`dropped`,
    :attr:`errors`); the child's figures are known after :meth:`close`.

    Args:
        make: builds the :class:`Analyzer` in the child (it must open its own store: an SQLite
            connection must not cross a fork).
        max_backlog: bytes of pickled exchanges waiting for the child, at most.
        nice: added to the child's nice value.
        counters: the mirror counters, sent to the child (stored) at most once a second and at
            :meth:`close`.
    """

    def __init__(self, make: Callable[[], Analyzer], *, max_backlog: int = 32 << 20,
                 nice: int = 19, counters: Callable[[], dict[str, int]] | None = None) -> None:
        self.make = make
        self.max_backlog = max_backlog
        self.nice = nice
        self.counters = counters
        self.analysed = 0
        self.differing = 0
        self.dropped = 0
        self.errors: list[str] = []
        self._proc: Any = None
        self._recv: Any = None
        self._w = -1
        self._batch: list[Exchange] = []
        self._scheduled = False
        self._out = bytearray()
        self._writer: asyncio.AbstractEventLoop | None = None
        self._last = 0.0

    def start(self) -> AnalyzerProcess:
        """Fork the child (before any thread or event loop exists in this process)."""
        ctx = multiprocessing.get_context("fork")
        r, w = os.pipe()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=self._child, args=(r, w, send),
                                 name="tern-shadow-analyzer", daemon=True)
        self._proc.start()
        os.close(r)
        send.close()
        os.set_blocking(w, False)
        self._w = w
        return self

    # the proxy's side ------------------------------------------------------------------------

    def submit(self, ex: Exchange) -> bool:
        """Take an exchange (sent with the others of this loop pass); False (and counted) when
        the child is ``max_backlog`` bytes behind."""
        if len(self._out) > self.max_backlog or self._w < 0:
            self.dropped += 1
            return False
        self._batch.append(ex)
        if not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self._flush_batch)
                self._scheduled = True
            except RuntimeError:  # no loop here: send now
                self._flush_batch()
        return True

    def _counters_due(self, force: bool) -> dict[str, int] | None:
        now = time.monotonic()
        if self.counters is None or not (force or now - self._last > 1.0):
            return None
        self._last = now
        values = dict(self.counters())
        values["analysis_dropped"] = self.dropped
        return values

    def _flush_batch(self, *, force: bool = False) -> None:
        self._scheduled = False
        batch, self._batch = self._batch, []
        counters = self._counters_due(force)
        if not batch and counters is None:
            return
        data = pickle.dumps((batch, counters), protocol=pickle.HIGHEST_PROTOCOL)
        self._send(len(data).to_bytes(8, "big") + data)

    def _send(self, data: bytes) -> None:
        if not self._out:
            try:
                n = os.write(self._w, data)
            except BlockingIOError:
                n = 0
            if n == len(data):
                return
            data = data[n:]
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                loop.add_writer(self._w, self._drain)
                self._writer = loop
        self._out += data

    def _drain(self) -> None:
        try:
            n = os.write(self._w, self._out)
        except BlockingIOError:
            return
        del self._out[:n]
        if not self._out and self._writer is not None:
            self._writer.remove_writer(self._w)
            self._writer = None

    def close(self, timeout: float = 10.0) -> None:
        """Send what is left and the counters, let the child analyse it all, and stop it."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if self._writer is not None:
            with contextlib.suppress(Exception):  # its loop may be closed already
                self._writer.remove_writer(self._w)
            self._writer = None
        self._flush_batch(force=True)
        os.set_blocking(self._w, True)
        try:
            view = memoryview(self._out)
            while view:  # blocking, but a signal may still cut a write short
                view = view[os.write(self._w, view):]
            view.release()
            self._out.clear()
        except OSError as exc:
            self.errors.append(f"analysis pipe: {exc}")
        os.close(self._w)  # EOF: the child finishes
        self._w = -1
        if self._recv.poll(timeout):
            with contextlib.suppress(EOFError, OSError):
                self.analysed, self.differing, errors = self._recv.recv()
                self.errors.extend(errors)
        proc.join(timeout)
        if proc.is_alive():
            self.errors.append("analysis process did not stop; terminated")
            proc.terminate()
            proc.join(2.0)
        self._recv.close()

    # the child's side ------------------------------------------------------------------------

    def _child(self, r: int, w: int, send: Any) -> None:
        os.close(w)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (EOF), after flushing
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.nice(self.nice)
        an = self.make()
        latest: dict[str, int] = {}
        if self.counters is not None:
            an.counters = lambda: latest
        with os.fdopen(r, "rb") as pipe:
            while True:
                head = pipe.read(8)
                if len(head) < 8:
                    break  # EOF: the parent closed (or died)
                data = pipe.read(int.from_bytes(head, "big"))
                batch, counters = pickle.loads(data)
                if counters is not None:
                    an.dropped = counters.pop("analysis_dropped", an.dropped)
                    latest.clear()
                    latest.update(counters)
                    an._last_flush = 0.0  # store them with this batch
                for i in range(0, len(batch), BATCH):
                    an.process_batch(batch[i:i + BATCH])
                if not batch:
                    an._flush()
        an.close()
        an.store.close()
        send.send((an.analysed, an.differing, an.errors[-20:]))
        send.close()


def _bounded(f: Fetched) -> CapturedResponse:
    c = f.captured()
    if f.truncated:  # only a prefix was kept: compare heads, not bodies
        return CapturedResponse(status=c.status, version=c.version, headers=c.headers,
                                body=b"(body over capture limit)", error=c.error)
    return c


# --------------------------------------------------------------------------------------------
# accounting


@dataclass(slots=True)
class MirrorStats:
    """Mirror accounting (invariant 3 of the module docstring)."""

    requests: int = 0
    """Requests answered to clients (including rejections)."""
    eligible: int = 0
    mirrored: int = 0
    dropped_queue: int = 0
    dropped_bytes: int = 0
    dropped_shutdown: int = 0
    skipped_unsafe: int = 0
    skipped_sampled: int = 0
    skipped_body: int = 0
    skipped_upgrade: int = 0
    pending: int = 0
    """Queued or in flight."""
    candidate_errors: int = 0
    secondary_errors: int = 0
    primary_errors: int = 0
    tunnels: int = 0
    """Upgrade requests the primary answered with 101 (relayed as tunnels, never mirrored)."""
    timeout_idle: int = 0
    """Client connections closed by ``client_idle_timeout`` (HTTP/1.x: ``keepalive_timeout``)."""
    timeout_header: int = 0
    """... by ``client_header_timeout`` (a request head, or the first one, did not come);
    HTTP/2 counts reset streams (a header block not finished) too."""
    timeout_body: int = 0
    """... by ``client_body_timeout`` (a request body stalled); HTTP/2 and HTTP/3 count reset
    streams."""
    timeout_send: int = 0
    """... by ``send_timeout`` (the client took no response byte); HTTP/2 and HTTP/3 count
    reset streams too."""
    timeout_tunnel: int = 0
    """Tunnels closed by ``tunnel_idle_timeout``."""

    @property
    def dropped(self) -> int:
        return self.dropped_queue + self.dropped_bytes + self.dropped_shutdown

    @property
    def skipped(self) -> int:
        return (self.skipped_unsafe + self.skipped_sampled + self.skipped_body
                + self.skipped_upgrade)

    def balanced(self) -> bool:
        """mirrored + dropped + skipped (+ pending) == eligible."""
        return self.mirrored + self.dropped + self.skipped + self.pending == self.eligible

    def as_dict(self) -> dict[str, int]:
        """Every counter, plus the ``dropped`` and ``skipped`` totals."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["dropped"] = self.dropped
        out["skipped"] = self.skipped
        return out


# --------------------------------------------------------------------------------------------
# the proxy


@dataclass(frozen=True, slots=True, kw_only=True)
class ShadowOptions:
    """How ``tern shadow`` mirrors."""

    sample: float = 1.0
    """Share of eligible requests mirrored (0-1)."""
    mirror_unsafe: bool = False
    """Mirror POST, PUT, DELETE, PATCH... too."""
    learn_noise: bool = False
    """Without a secondary: send mirrored requests to the primary a second time."""
    queue_size: int = 256
    """Jobs waiting for a worker."""
    concurrency: int = 16
    """Workers (candidate requests in flight)."""
    max_body: int = 1 << 20
    """Request body bytes teed per request; a longer body is not mirrored (skipped_body)."""
    max_queue_bytes: int = 64 << 20
    """Request body bytes held by all waiting jobs."""
    primary_timeout: float = 60.0
    """Idle timeout towards the primary."""
    candidate_timeout: float = 5.0
    """Idle timeout towards the candidate and secondary."""
    connect_timeout: float = 2.0
    """Connect timeout towards the candidate and secondary."""
    capture: int = 1 << 20
    """Response body bytes kept for diffing."""
    drain_timeout: float = 5.0
    """On stop: seconds to let queued jobs finish before they are dropped."""
    client_idle_timeout: float = 75.0
    """Seconds a client connection without a request in progress stays open after its last
    response (nginx's ``keepalive_timeout``); HTTP/2: then GOAWAY and close; HTTP/3: also
    until the first request, then CONNECTION_CLOSE H3_NO_ERROR."""
    client_header_timeout: float = 60.0
    """Seconds for a request head to arrive whole, from its first byte (the first request of
    a connection: from the accept), nginx's ``client_header_timeout``; HTTP/2: until the first
    stream, and for each header block (HEADERS + CONTINUATION) from its first frame."""
    client_body_timeout: float = 60.0
    """Seconds between two reads of a request body (while the proxy wants to read it), nginx's
    ``client_body_timeout``; then the client (HTTP/2, HTTP/3: the stream) and the primary
    connection close."""
    send_timeout: float = 60.0
    """Seconds the client may take no response byte (its socket full, an HTTP/2 window of
    zero, HTTP/3 data not acknowledged) before its connection (HTTP/2, HTTP/3: the stream) and
    the primary's are closed, nginx's ``send_timeout``."""
    keepalive_requests: int = 1000
    """HTTP/2 and HTTP/3: requests served on one client connection; the last one goes with a
    GOAWAY and the connection closes once it is done (nginx's ``keepalive_requests``)."""
    tunnel_idle_timeout: float = 3600.0
    """Seconds an upgraded connection (WebSocket) may pass no byte either way."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample <= 1.0:
            raise ValueError(f"sample must be between 0 and 1: {self.sample}")
        for name in ("client_idle_timeout", "client_header_timeout", "client_body_timeout",
                     "send_timeout", "tunnel_idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0: {getattr(self, name)}")
        if self.keepalive_requests < 1:
            raise ValueError(f"keepalive_requests must be at least 1: {self.keepalive_requests}")
        if self.queue_size < 1 or self.concurrency < 1:
            raise ValueError("queue_size and concurrency must be at least 1")


@dataclass(slots=True)
class _Job:
    request: OutRequest
    host: str
    primary: Fetched
    size: int


class _ClientRequest:
    __slots__ = ("sid", "head", "body", "size", "complete", "reject", "tee_over", "mirror",
                 "stream", "answered")

    def __init__(self, sid: int, head: RequestHeaders | None) -> None:
        self.sid = sid
        self.head = head
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False
        self.reject: int | None = None
        self.tee_over = False
        self.mirror = False
        """Chosen for mirroring (counted in ``pending``); the job is queued once the primary
        has answered (:meth:`ShadowProxy._submit`)."""
        self.stream: BodyStream | None = None
        """The body on its way to the primary (requests with a body)."""
        self.answered: Fetched | None = None
        """The primary's answer, once it came (possibly before the body ended)."""


_REJECT_BODY = b"<html>\r\n<head><title>%d</title></head>\r\n<body></body>\r\n</html>\r\n"


class _Front(asyncio.Protocol):
    """One client connection."""

    def __init__(self, proxy: ShadowProxy) -> None:
        self.proxy = proxy
        self.h1 = H1Server(H1Limits(large_header_buffers=(4, 16384)))
        self.transport: asyncio.Transport | None = None
        self.requests: deque[_ClientRequest] = deque()
        self.cur: _ClientRequest | None = None
        self.task: asyncio.Task[None] | None = None
        self.reading_paused = False
        self.upstream_blocked = False
        """The primary does not take the body bytes as fast as they come."""
        self.client_blocked = False
        """The client does not take the response bytes as fast as they come."""
        self.upstream: asyncio.Transport | None = None
        """The primary connection answering now (its reading is paused while client_blocked)."""
        self.upstream_paused = False
        self.tunnel: _Tunnel | None = None
        """After a 101: the tunnel (every callback goes there)."""
        self._upgraded: tuple[_UConn, bytes] | None = None
        # client timeouts (rule 7 of the module docstring): one timer, re-armed lazily
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._read_at = self._head_at = self._idle_at = self._send_at = self.loop.time()
        self._send_mark = 0
        self._served = False
        self._partial = False
        """Bytes of a request head are buffered (no request in progress)."""
        self.timed_out = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.proxy._fronts.add(self)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.proxy._fronts.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.tunnel is not None:
            self.tunnel.client_lost(exc)
            return
        self.resume_writing()  # nobody reads now: let the primary's answer run out
        self._unanswered()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        now = self.loop.time()
        if self.task is None and not self.requests and not self._partial:
            self._head_at = now  # the first byte of a request head
        self._read_at = now
        self._events(self.h1.receive_data(data))

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            return self.tunnel.client_eof()
        self._events(self.h1.receive_data(b""))
        return True

    def _events(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, RequestHeaders):
                r = _ClientRequest(ev.stream_id, ev)
                self.requests.append(r)
                self.cur = r
                if ev.end_stream:
                    self._complete(r)
                else:
                    r.stream = BodyStream(None if ev.chunked else ev.content_length,
                                          self._upstream_flow)
                    if self._expects_continue(ev):
                        self.h1.send(ResponseHeaders(stream_id=ev.stream_id, status=100,
                                                     headers=()))
                        self._write(self.h1.data_to_send())
            elif isinstance(ev, RequestData):
                r2 = self.cur
                if r2 is not None:
                    r2.size += len(ev.data)
                    if r2.size <= self.proxy.options.max_body:  # the mirror's tee, bounded
                        r2.body.append(ev.data)
                    elif not r2.tee_over:
                        r2.tee_over = True
                        r2.body.clear()
                    if r2.stream is not None:
                        r2.stream.feed(ev.data)
            elif isinstance(ev, RequestEnd):
                if self.cur is not None and not self.cur.complete:
                    self._complete(self.cur)
            elif isinstance(ev, RequestRejected):
                cur = self.cur
                if cur is not None and cur.sid == ev.stream_id:
                    cur.reject = ev.status_hint
                    cur.complete = True
                    st = cur.stream
                    if st is not None:  # a broken body: the primary must not take it as whole
                        st.detached = True
                        if st.conn is not None:
                            st.conn.abort()
                else:
                    rej = _ClientRequest(ev.stream_id, None)
                    rej.reject = ev.status_hint
                    rej.complete = True
                    self.requests.append(rej)
            elif isinstance(ev, StreamReset):
                pass
            else:
                raise RuntimeError(f"Unexpected event {ev!r}")
        self._update_reading()
        if self.task is None and self.requests and _ready(self.requests[0]):
            self.task = asyncio.ensure_future(self._serve())
        if self.task is None and not self.requests:
            self._partial = self.h1.partial_request() is not None
        self._arm()

    # client timeouts --------------------------------------------------------------------------

    def _deadline(self) -> tuple[str, float] | None:
        """The timeout that applies now and when it expires (None: none; the primary's idle
        timeout covers a request waiting for its answer)."""
        o = self.proxy.options
        if self.tunnel is not None:
            return None
        if self.client_blocked:
            return "send", self._send_at + o.send_timeout
        cur = self.cur
        if cur is not None and not cur.complete and cur.stream is not None:
            if self.reading_paused:
                return None  # not read on purpose (back-pressure): not the client's fault
            return "body", self._read_at + o.client_body_timeout
        if self.task is not None or self.requests:
            return None
        if self._partial or not self._served:
            return "header", self._head_at + o.client_header_timeout
        return "idle", self._idle_at + o.client_idle_timeout

    def _arm(self) -> None:
        """Have the timer fire no later than the deadline that applies now (it re-checks when
        it fires: a later deadline only re-arms it then, so the hot path rarely touches it)."""
        d = self._deadline()
        if d is None or self.transport is None:
            return
        when = d[1]
        if self._timer is not None:
            if self._due <= when:
                return
            self._timer.cancel()
        self._due = when
        self._timer = self.loop.call_at(when, self._expired)

    def _expired(self) -> None:
        self._timer = None
        t = self.transport
        d = self._deadline()
        if d is None or t is None or t.is_closing():
            return
        kind, when = d
        now = self.loop.time()
        if kind == "send":
            size = _unsent(t)
            if size < self._send_mark:  # the client took some bytes: progress
                self._send_mark = size
                self._send_at = now
                when = now + self.proxy.options.send_timeout
        if now < when:
            self._arm()
            return
        st = self.proxy.stats
        if kind == "send":
            st.timeout_send += 1
        elif kind == "body":
            st.timeout_body += 1
        elif kind == "header":
            st.timeout_header += 1
        else:
            st.timeout_idle += 1
        # nginx closes without an answer (a 408 is only logged); the primary's connection of
        # the request in progress is closed too (a partial body must not look whole to it)
        self.timed_out = True
        up = self.upstream
        cur = self.cur
        if cur is not None and cur.stream is not None and cur.stream.conn is not None:
            cur.stream.detached = True
            cur.stream.conn.abort()
        if up is not None and kind in ("send", "body"):
            up.abort()
        t.abort()

    # response direction: a slow client pauses the primary's connection ---------------------

    def pause_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_full(True)
            return
        self.client_blocked = True
        if self.transport is not None:
            self._send_at = self.loop.time()
            self._send_mark = _unsent(self.transport)
            self._arm()
        t = self.upstream
        if t is not None and not self.upstream_paused:
            self.upstream_paused = True
            t.pause_reading()

    def resume_writing(self) -> None:
        if self.tunnel is not None:
            self.tunnel.client_full(False)
            return
        self.client_blocked = False
        t = self.upstream
        if t is not None and self.upstream_paused:
            self.upstream_paused = False
            t.resume_reading()

    def _reader(self, t: asyncio.Transport | None) -> None:
        if t is None:
            if self.upstream is not None and self.upstream_paused:
                self.upstream.resume_reading()  # it goes back to the pool reading
            self.upstream, self.upstream_paused = None, False
            return
        self.upstream = t
        if self.client_blocked:
            self.upstream_paused = True
            t.pause_reading()

    def _upstream_flow(self, blocked: bool) -> None:
        self.upstream_blocked = blocked
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the client only while the adapter wants bytes, the primary takes the body as
        fast as it comes, and a body not streaming yet (a pipelined request) stays small."""
        t = self.transport
        if t is None or self.tunnel is not None:
            return
        cur = self.cur
        want_pause = (self.h1.paused or self.upstream_blocked or (
            cur is not None and cur.stream is not None and cur.stream.conn is None
            and not cur.stream.detached and cur.stream.waiting_size > WAITING_LIMIT))
        if want_pause and not self.reading_paused:
            self.reading_paused = True
            t.pause_reading()
        elif not want_pause and self.reading_paused:
            self.reading_paused = False
            self._read_at = self.loop.time()  # the body timeout counts from now
            t.resume_reading()
            self._arm()

    @staticmethod
    def _expects_continue(ev: RequestHeaders) -> bool:
        return any(n.lower() == b"expect" and v.strip().lower() == b"100-continue"
                   for n, v in ev.raw_headers)

    def _complete(self, r: _ClientRequest) -> None:
        r.complete = True
        assert r.head is not None
        if r.stream is not None:
            r.stream.end()
        self.proxy._consider(r)
        if r.mirror and r.answered is not None:  # the primary answered before the body ended
            self.proxy._submit(r, None, r.answered)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def _serve(self) -> None:
        try:
            while self.requests and _ready(self.requests[0]):
                r = self.requests.popleft()
                await self._answer(r)
                if (self.tunnel is not None or self.h1.must_close or self.transport is None
                        or self.transport.is_closing()):
                    break
                self._events(self.h1.next_events())
            if self.h1.must_close and self.transport is not None and self.tunnel is None:
                self.transport.close()
        finally:
            self.task = None
        if self.tunnel is not None:
            return
        if self.requests and _ready(self.requests[0]) and not self.h1.must_close:
            self.task = asyncio.ensure_future(self._serve())
        elif not self.requests:  # idle: keepalive_timeout, or a head that has begun
            self._served = True
            self._idle_at = self._head_at = self.loop.time()
            self._partial = self.h1.partial_request() is not None
            self._arm()

    async def _answer(self, r: _ClientRequest) -> None:
        proxy = self.proxy
        proxy.stats.requests += 1
        if r.reject is not None or r.head is None:
            if r.mirror:
                proxy._submit(r, None, Fetched(error="rejected"))
            self._reject(r)
            return
        out = _out_request(r, with_body=r.stream is None)
        fetched = await proxy.primary.fetch(
            out, on_data=self._write, stream=r.stream, reader=self._reader,
            upgrade=self._take_tunnel if r.head.upgrade is not None else None)
        r.answered = fetched
        if r.mirror:  # the response is written: only now does the mirror cost anything
            proxy._submit(r, out if r.stream is None else None, fetched)
        if self._upgraded is not None:
            self._start_tunnel(r)
            return
        if self.timed_out:  # closed by a client timeout (counted there), not the primary
            return
        if r.reject is not None and not fetched.relayed:  # the body broke meanwhile
            self._reject(r)
            return
        if fetched.error and not fetched.relayed:
            proxy.stats.primary_errors += 1
            body = _REJECT_BODY % 502
            self.h1.send(ResponseHeaders(stream_id=r.sid, status=502, headers=(
                (b"Content-Type", b"text/html"), (b"Content-Length", b"%d" % len(body)))))
            self.h1.send(ResponseData(stream_id=r.sid, data=body))
            self.h1.send(ResponseEnd(stream_id=r.sid))
            self._write(self.h1.data_to_send())
            return
        if fetched.error:  # cut short after bytes went out: the client sees the same cut
            proxy.stats.primary_errors += 1
            if self.transport is not None:
                self.transport.abort()
            return
        # tell the adapter what was sent; its own bytes for it are not written
        if not fetched.keep_alive:
            self.h1.close_after_response()
        headers = [(n, v) for n, v in fetched.headers if n.lower() != b"connection"]
        if not fetched.keep_alive:
            headers.append((b"Connection", b"close"))
        self.h1.send(ResponseHeaders(stream_id=r.sid, status=fetched.status or 502,
                                     headers=tuple(headers), reason=fetched.reason))
        self.h1.send(ResponseEnd(stream_id=r.sid))
        self.h1.data_to_send()

    def _take_tunnel(self, conn: _UConn, spill: bytes) -> None:
        self._upgraded = (conn, spill)

    def _start_tunnel(self, r: _ClientRequest) -> None:
        """The primary answered 101 (its head, and what came with it, went to the client): the
        connection is a tunnel from now on (rule 8)."""
        assert self._upgraded is not None
        conn, spill = self._upgraded
        self._upgraded = None
        t = self.transport
        if t is None or t.is_closing():
            conn.abort()
            self.proxy.primary._all.discard(conn)
            return
        self.proxy.stats.tunnels += 1
        # the adapter learns of the 101 (its bytes are not written) and hands over what the
        # client sent past the upgrade request; it reads nothing more
        self.h1.send(ResponseHeaders(stream_id=r.sid, status=101, headers=()))
        self.h1.data_to_send()
        early = self.h1.tunnel_bytes()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.tunnel = _Tunnel(self, t, conn)
        if self.reading_paused:  # held while the upgrade's answer was awaited
            self.reading_paused = False
            t.resume_reading()
        self.tunnel.start(spill, early, self.client_blocked)

    def _reject(self, r: _ClientRequest) -> None:
        """Answer a request the adapter refused (nginx's page for its status)."""
        status = r.reject or 0
        if status == 0:
            self.h1.send(StreamReset(stream_id=r.sid))
            if self.transport is not None:
                self.transport.close()
            return
        wire = 400 if status == 494 else status
        body = _REJECT_BODY % wire
        self.h1.close_after_response()
        self.h1.send(ResponseHeaders(stream_id=r.sid, status=wire, headers=(
            (b"Content-Type", b"text/html"), (b"Content-Length", b"%d" % len(body)))))
        self.h1.send(ResponseData(stream_id=r.sid, data=body))
        self.h1.send(ResponseEnd(stream_id=r.sid))
        self._write(self.h1.data_to_send())

    def _unanswered(self) -> None:
        """The connection is gone: requests chosen for mirroring that will not be answered are
        still mirrored (the primary's side is then an error, so they are not compared)."""
        for r in self.requests:
            if r.mirror:
                self.proxy._submit(r, None, Fetched(error="client gone"))
        self.requests.clear()


class _Tunnel:
    """An upgraded connection (a 101): raw bytes both ways between the client and the primary
    connection that answered (rule 8 of the module docstring).

    Back-pressure: while one side's transport is over its high-water mark, the other side is
    not read. Half-close: an EOF from one side is passed on (``write_eof``; a side that cannot
    half-close, TLS, is closed once its bytes are written); both EOFs, a side lost, or
    ``tunnel_idle_timeout`` without a byte either way close both.
    """

    def __init__(self, front: _Front, client: asyncio.Transport, conn: _UConn) -> None:
        self.front = front
        self.client = client
        self.conn = conn
        assert conn.transport is not None
        self.up: asyncio.Transport = conn.transport
        self.eof_from_client = False
        self.eof_from_up = False
        self.ended = False
        self.loop = front.loop
        self.last = self.loop.time()
        self.timer: asyncio.TimerHandle | None = None
        conn.tunnel = self

    def start(self, spill: bytes, early: bytes, client_full: bool) -> None:
        """``spill``: the primary's bytes not relayed yet; ``early``: the client's bytes read
        past the upgrade request."""
        if spill:
            self.client.write(spill)
        if early:
            self.up.write(early)
        if client_full:  # the client has not taken the 101 yet: the primary waits
            self.client_full(True)
        if self.conn.closed:  # the primary closed (or was lost) before the hand-over
            if self.up.is_closing():
                self.upstream_lost(None)
                return
            self.upstream_eof()
        self.arm()

    # bytes ------------------------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        self.last = self.loop.time()
        if not self.up.is_closing():
            self.up.write(data)

    def from_upstream(self, data: bytes) -> None:
        self.last = self.loop.time()
        if not self.client.is_closing():
            self.client.write(data)

    def upstream_full(self, full: bool) -> None:
        if self.ended or self.client.is_closing():
            return
        if full:
            self.client.pause_reading()
        else:
            self.client.resume_reading()

    def client_full(self, full: bool) -> None:
        if self.ended or self.up.is_closing():
            return
        if full:
            self.up.pause_reading()
        else:
            self.up.resume_reading()

    # ends -------------------------------------------------------------------------------------

    def client_eof(self) -> bool:
        self.eof_from_client = True
        self._pass_eof(self.up)
        if self.eof_from_up:
            self.close()
        return True

    def upstream_eof(self) -> bool:
        self.eof_from_up = True
        self._pass_eof(self.client)
        if self.eof_from_client:
            self.close()
        return True

    @staticmethod
    def _pass_eof(t: asyncio.Transport) -> None:
        if t.is_closing():
            return
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()  # TLS cannot half-close: close once written

    def client_lost(self, exc: Exception | None) -> None:
        self._lost(self.up, exc)

    def upstream_lost(self, exc: Exception | None) -> None:
        self._lost(self.client, exc)

    def _lost(self, other: asyncio.Transport, exc: Exception | None) -> None:
        if exc is not None:
            other.abort()
        else:
            other.close()
        self.close()

    def close(self, abort: bool = False) -> None:
        """Close both sides (what is buffered is still written, unless ``abort``)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for t in (self.client, self.up):
            if abort:
                t.abort()
            elif not t.is_closing():
                t.close()
        if not self.ended:
            self.ended = True
            self.conn.closed = True
            self.front.proxy.primary._all.discard(self.conn)

    # idle timeout -----------------------------------------------------------------------------

    def arm(self) -> None:
        self.timer = self.loop.call_at(self.last + self.front.proxy.options.tunnel_idle_timeout,
                                       self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.ended:
            return
        if self.loop.time() < self.last + self.front.proxy.options.tunnel_idle_timeout:
            self.arm()
            return
        self.front.proxy.stats.timeout_tunnel += 1
        self.close(abort=True)


def _unsent(t: asyncio.Transport) -> int:
    """Bytes written to ``t`` the peer has not taken yet: the transport's buffer plus the
    kernel's send queue (``SIOCOUTQ``; the kernel takes a few MiB before the transport's
    buffer moves, so the buffer alone does not show a slow reader's progress)."""
    size = t.get_write_buffer_size()
    sock = t.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            size += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                   b"\0\0\0\0"))[0]
    return size


def _ready(r: _ClientRequest) -> bool:
    """Can be answered now: complete, or its body can stream to the primary."""
    return r.complete or (r.stream is not None and r.reject is None)


WAITING_LIMIT = 256 << 10
"""Body bytes of a request not streaming yet (behind another) read before pausing."""


def _out_request(r: _ClientRequest, *, with_body: bool = True) -> OutRequest:
    head = r.head
    assert head is not None
    # an HTTP/2 or HTTP/3 stream goes upstream as HTTP/1.1 (as nginx's proxy_pass sends it)
    version = head.http_version if head.http_version[0] == "1" else "1.1"
    had_length = False
    headers = []
    for n, v in head.raw_headers:
        ln = n.lower()
        if ln in _FRAMING:
            had_length = had_length or ln == b"content-length"
            continue
        headers.append((n, v))
    if not with_body:
        return OutRequest(method=head.method.decode("latin-1"),
                          target=head.target.decode("latin-1"), version=version,
                          headers=tuple(headers))
    body = b"".join(r.body) if r.body else b""
    return OutRequest(method=head.method.decode("latin-1"),
                      target=head.target.decode("latin-1"), version=version,
                      headers=tuple(headers), body=body, had_length=had_length or bool(body))


class ShadowProxy:
    """The shadow front proxy (see the module docstring).

    Args:
        primary: origin URL of the primary (answers clients).
        candidate: origin URL of the candidate (mirrored to).
        analyzer: where exchanges go; None mirrors without diffing (benchmarks).
        secondary: origin URL of a second primary for noise learning.
        options: limits and switches.
        listen_tls: the listener's TLS context (:func:`server_tls`; ALPN picks HTTP/2 or 1.1).
        h2c: on a cleartext listener, take HTTP/2 with prior knowledge too (by its preface).
        quic: a QUIC configuration (``h3front.quic_configuration``): serve HTTP/3 on UDP at the
            listener's address and port too.
        upstream_tls: the client context for ``https://`` upstreams (default
            :func:`make_upstream_tls`: verified).
    """

    def __init__(self, primary: str, candidate: str, *,
                 analyzer: Analyzer | AnalyzerProcess | None = None,
                 secondary: str | None = None, options: ShadowOptions = ShadowOptions(),
                 mirror: bool = True, listen_tls: ssl.SSLContext | None = None,
                 h2c: bool = False, upstream_tls: ssl.SSLContext | None = None,
                 quic: Any = None) -> None:
        self.options = options
        self.listen_tls = listen_tls
        self.h2c = h2c
        self.quic = quic
        self._quic_server: Any = None
        origins = [parse_upstream(primary), parse_upstream(candidate)]
        if secondary is not None:
            origins.append(parse_upstream(secondary))
        if upstream_tls is None and any(tls for _, _, tls in origins):
            upstream_tls = make_upstream_tls()

        def client(origin: tuple[str, int, bool], timeout: float,
                   connect_timeout: float) -> UpstreamClient:
            host, port, tls = origin
            return UpstreamClient(host, port, timeout=timeout, connect_timeout=connect_timeout,
                                  capture=options.capture, tls=upstream_tls if tls else None)

        self.primary = client(origins[0], options.primary_timeout, 5.0)
        self.candidate = client(origins[1], options.candidate_timeout, options.connect_timeout)
        self.secondary: UpstreamClient | None = None
        if secondary is not None:
            self.secondary = client(origins[2], options.candidate_timeout,
                                    options.connect_timeout)
        elif options.learn_noise:
            self.secondary = client(origins[0], options.candidate_timeout,
                                    options.connect_timeout)
        self.analyzer = analyzer
        self.mirror = mirror
        self.stats = MirrorStats()
        self._queue: asyncio.Queue[_Job] | None = None
        self._queued_bytes = 0
        self._workers: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._fronts: set[Any] = set()
        """Client connections (:class:`_Front`, and ``h2front.H2Front``)."""
        self._rand = random.Random()
        self._closed = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address."""
        self._queue = asyncio.Queue(self.options.queue_size)
        self._workers = [asyncio.ensure_future(self._worker())
                         for _ in range(self.options.concurrency)]
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.BaseProtocol] = lambda: _Front(self)  # noqa: E731
        if self.listen_tls is not None or self.h2c:
            from .h2front import dispatcher
            factory = dispatcher(self)
        self._server = await loop.create_server(factory, host, port, ssl=self.listen_tls,
                                                reuse_address=True, backlog=1024)
        name = self._server.sockets[0].getsockname()
        if self.quic is not None:
            from .h3front import start_quic
            self._quic_server = await start_quic(self, str(name[0]), int(name[1]), self.quic)
        return str(name[0]), int(name[1])

    async def stop(self) -> None:
        """Stop listening, let queued jobs finish (``drain_timeout``), drop the rest."""
        if self._server is not None:
            self._server.close()
        for f in list(self._fronts):
            if f.transport is not None:
                f.transport.close()
            elif hasattr(f, "close"):  # a QUIC connection (its socket is the server's)
                f.close()
        if self._quic_server is not None:
            self._quic_server.close()
        deadline = time.monotonic() + self.options.drain_timeout
        while self.stats.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for w in self._workers:
            w.cancel()
        if self._workers:
            # Python 3.11's asyncio.wait_for returns the result instead of raising when the
            # cancellation arrives as its inner future completes (CPython gh-86296): a worker
            # that awaited one went back to the queue with its cancellation lost and slept
            # there forever. The workers await no wait_for any more and re-check
            # Task.cancelling(); the wait stays bounded all the same.
            await asyncio.wait(self._workers, timeout=2.0)
        self._closed = True
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()
                self.stats.pending -= 1
                self.stats.dropped_shutdown += 1
        # in flight when cancelled, or chosen and still waiting for the primary's answer
        self.stats.dropped_shutdown += self.stats.pending
        self.stats.pending = 0
        for c in (self.primary, self.candidate, self.secondary):
            if c is not None:
                c.close()

    # mirroring ------------------------------------------------------------------------------

    def _consider(self, r: _ClientRequest) -> None:
        """A request is complete: mirror it, skip it or drop it (and count which)."""
        st = self.stats
        if not self.mirror:
            return
        st.eligible += 1
        head = r.head
        assert head is not None
        method = head.method.decode("latin-1").upper()
        if method not in SAFE_METHODS and not self.options.mirror_unsafe:
            st.skipped_unsafe += 1
            return
        if head.upgrade is not None:
            st.skipped_upgrade += 1
            return
        if r.size > self.options.max_body:
            st.skipped_body += 1
            return
        if self.options.sample < 1.0 and self._rand.random() >= self.options.sample:
            st.skipped_sampled += 1
            return
        if self._closed:
            st.dropped_shutdown += 1
            return
        r.mirror = True  # queued by _submit once the primary has answered
        st.pending += 1

    def _submit(self, r: _ClientRequest, out: OutRequest | None, primary: Fetched) -> None:
        """The primary has answered ``r`` (chosen by :meth:`_consider`): queue its mirror job,
        or drop it (queue full, byte budget). Nothing waits on the client's path: the job
        carries the primary's answer, so a worker never waits for the primary."""
        r.mirror = False
        st = self.stats
        if self._closed:  # stop() has counted every pending request as dropped_shutdown
            return
        q = self._queue
        if q is None or q.full():
            st.pending -= 1
            st.dropped_queue += 1
            return
        if self._queued_bytes + r.size > self.options.max_queue_bytes:
            st.pending -= 1
            st.dropped_bytes += 1
            return
        head = r.head
        assert head is not None
        job = _Job(request=out if out is not None else _out_request(r),
                   host=(head.host or b"").decode("latin-1"), primary=primary, size=r.size)
        self._queued_bytes += r.size
        q.put_nowait(job)

    async def _worker(self) -> None:
        assert self._queue is not None
        task = asyncio.current_task()
        while True:
            job = await self._queue.get()
            self._queued_bytes -= job.size
            try:
                await self._mirror(job)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - invariant 4: contained
                self.stats.candidate_errors += 1
                self.stats.pending -= 1
                self.stats.mirrored += 1
            if task is not None and task.cancelling():
                # a cancellation some awaited helper swallowed (see stop()): honour it rather
                # than park on the queue again, where nothing would ever wake this worker
                raise asyncio.CancelledError

    async def _mirror(self, job: _Job) -> None:
        if self.secondary is None:
            candidate = await self.candidate.fetch(job.request, MARKER)
            secondary = None
        else:
            sec = asyncio.ensure_future(self.secondary.fetch(job.request, MARKER))
            try:
                candidate = await self.candidate.fetch(job.request, MARKER)
                secondary = await sec
            except asyncio.CancelledError:
                sec.cancel()
                raise
        if self._closed:  # counted by stop() already
            return
        self.stats.pending -= 1
        self.stats.mirrored += 1
        if candidate.error:
            self.stats.candidate_errors += 1
        if secondary is not None and secondary.error:
            self.stats.secondary_errors += 1
            secondary = None
        if job.primary.error or self.analyzer is None:
            return
        self.analyzer.submit(Exchange(source="shadow", request=job.request, host=job.host,
                                      primary=job.primary, candidate=candidate,
                                      secondary=secondary))
