"""HTTP/3: the asyncio seam between a UDP socket, aioquic's QUIC server and the HTTP/3 adapter
(``proxy.protocol.h3``) + engine.

Rules:

1. One ``QuicEndpoint`` per ``listen ... quic`` address:port in each worker; each worker binds
   its own UDP socket with SO_REUSEPORT, so the kernel keeps a client's datagrams (one 4-tuple)
   on one worker, whether or not ``reuseport`` is written (without it nginx would share one
   socket between workers; with several workers that loses QUIC connections).  The master
   test-binds the sockets and loads the certificates first (``check_quic``): errors stop the
   start (or a reload) with ``file:line``.  A TCP listener may use the same port number.
2. TLS: as on TLS listeners, SNI picks the server the way Host does (among the servers with a
   ``listen ... quic`` on this socket) and the handshake uses that server's certificate and key
   (``ssl_password_file`` too); a server without one, no SNI or an unknown name: the default
   server's; ``ssl_reject_handshake on`` in the server picked refuses the handshake.  aioquic has
   no certificate callback: its TLS context is given one (``_SniTls``, reading the ClientHello
   before aioquic does).  Certificates are checked as ``proxy.io.tls`` checks them (file:line).
   ALPN ``h3``; ``http3 off`` in the default server offers nothing else, so HTTP/3 handshakes
   fail as in nginx (the other settings of rule 3 also come from the default server).
3. QUIC settings, from the default server (else http): ``quic_retry on`` makes aioquic answer a
   first Initial with a Retry (address validation); ``http3_max_concurrent_streams`` (128) is
   the bidirectional stream limit; ``http3_stream_buffer_size`` (64k) the initial window of a
   stream and, times the stream limit, of the connection; ``keepalive_timeout`` the time a
   connection without a request in progress stays open (then it is closed with H3_NO_ERROR, as
   nginx 1.25 closes it); the QUIC transport's max_idle_timeout is the larger of
   ``keepalive_timeout`` + 1 s and 60 s (so a quiet request in progress survives);
   ``keepalive_requests`` requests per connection (then GOAWAY naming the next stream: later
   streams are rejected, in-flight requests finish, then the connection closes).
4. Each request is an ``H3Exchange`` served by the engine in its own task; ``$server_protocol`` is
   ``HTTP/3.0`` (the head's ``http_version``), ``$scheme`` ``https``.  Request bodies: the
   engine's ``body()`` reads a queue; above ``BODY_HIGH_WATER`` queued bytes the stream's window
   is frozen (the client stops sending) until the engine has read half of it
   (``client_body_timeout`` per wait).  Responses: ``drain()`` waits while more than
   ``SEND_HIGH_WATER`` bytes of the stream are unacknowledged (``send_timeout`` per wait).
   Writes are coalesced: one transmit per loop iteration.
5. Graceful stop (SIGQUIT, reload): ``close()`` stops accepting new QUIC connections (their
   Initial packets are dropped; once the socket is closed the kernel hands the port to the
   other workers) and sends GOAWAY on every connection; requests in progress finish; each
   connection is closed with H3_NO_ERROR when it has none left.  SIGTERM: every connection is
   closed at once.
6. A client's misbehaviour costs its stream or its connection, never the worker: malformed
   requests reset the stream, aioquic's protocol errors close the connection, engine errors
   are contained per request by the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aioquic import tls as quic_tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, ErrorCode
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from ..engine import ClientBodyInvalid, ClientBodyTimeout, Exchange
from ..model import Config, Scope, Server
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
from ..protocol.h3 import H3Limits, H3Server
from ..routing import BadRequest, Router
from ..units import parse_size
from .server import EngineRef
from .tls import TlsError, _context, _merged, _passwords, _path

log = logging.getLogger("tern")

BODY_HIGH_WATER = 256 * 1024
SEND_HIGH_WATER = 256 * 1024
_conn_ids = itertools.count(1 << 40)
"""Connection numbers of HTTP/3 connections (``$connection``), apart from the TCP ones."""


# ---------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True, slots=True)
class QuicSettings:
    """What one QUIC socket needs, read from its default server (else http)."""

    host: str
    """Address to bind (``0.0.0.0`` / ``::`` for wildcards)."""
    port: int
    limits: H3Limits
    certfile: str
    keyfile: str
    passwords: tuple[str | None, ...]
    http3: bool
    """``http3 on`` (default) and no ``ssl_reject_handshake``: ALPN ``h3`` is offered."""
    retry: bool
    """``quic_retry on``."""
    keepalive_timeout: float = 75.0
    keepalive_requests: int = 1000
    client_body_timeout: float = 60.0
    send_timeout: float = 60.0
    table_key: tuple[str, int] = ("", 0)
    """The router's socket table of this QUIC socket (SNI picks its servers)."""
    sni: tuple[SniCert, ...] = ()
    """The other servers of the socket that have a certificate or reject handshakes."""
    default_rejects: bool = False
    """The default server has ``ssl_reject_handshake on`` (unknown names fail)."""


@dataclass(frozen=True, slots=True)
class SniCert:
    """The certificate of one server reachable by SNI on a QUIC socket (rule 2)."""

    server: Server
    certfile: str
    keyfile: str
    passwords: tuple[str | None, ...]
    reject: bool
    """``ssl_reject_handshake on``: the handshake fails for this name."""


def _raw(scopes: list[Scope], name: str) -> str | None:
    for scope in scopes:
        for raw in scope.other:
            if raw.name == name and raw.args:
                return raw.args[0]
    return None


def _limit(scopes: list[Scope], getter: Any, default: Any) -> Any:
    for scope in scopes:
        v = getter(scope.limits)
        if v is not None:
            return v
    return default


def quic_keys(config: Config) -> list[tuple[str, int, str]]:
    """(bind host, port, model address) of every ``listen ... quic`` socket; a wildcard
    absorbs the specific addresses of its port, as for TCP."""
    wild: dict[int, str] = {}
    specific: list[tuple[str, int]] = []
    for server in (config.http.servers if config.http else ()):
        for lst in server.listens:
            if not lst.quic:
                continue
            if lst.address in ("*", "[::]"):
                wild.setdefault(lst.port, lst.address)
            else:
                specific.append((lst.address, lst.port))
    keys = [("0.0.0.0" if a == "*" else "::", p, a) for p, a in sorted(wild.items())]
    seen: set[tuple[str, int]] = set()
    for addr, port in specific:
        if port in wild or (addr, port) in seen:
            continue
        seen.add((addr, port))
        keys.append((addr.strip("[]"), port, addr))
    return keys


def quic_settings(config: Config, router: Router) -> list[QuicSettings]:
    """Settings of every QUIC socket (rules 2-3).

    Raises:
        TlsError: a certificate or key problem (``file:line: error: ...``).
    """
    out = []
    http_scope = config.http.scope if config.http else None
    for host, port, addr in quic_keys(config):
        table = router.sockets.get(("quic:" + addr, port)) or \
            router.socket_for(host, port, quic=True)
        server: Server | None = table.default if table is not None else None
        if server is None:
            continue
        scopes = [server.scope] + ([http_scope] if http_scope is not None else [])
        tls = _merged(config, server)
        if not tls.certificates and not tls.reject_handshake:
            where = next((lst.source for lst in server.listens if lst.quic), server.source)
            raise TlsError('no "ssl_certificate" is defined for the "listen ... quic" directive',
                           where)
        ctx = _context(config, server, tuple(H3_ALPN), default=True)  # file:line errors
        cert = (tls.certificates or ())[0] if ctx is not None else None
        sni = []
        for other in (table.servers if table is not None else []):
            if other is server:
                continue
            otls = _merged(config, other)
            if otls.reject_handshake:
                sni.append(SniCert(server=other, certfile="", keyfile="", passwords=(),
                                   reject=True))
            elif otls.certificates:
                _context(config, other, tuple(H3_ALPN), default=False)  # file:line errors
                oc = otls.certificates[0]
                sni.append(SniCert(
                    server=other, certfile=_path(config, oc.certificate.raw),
                    keyfile=_path(config, oc.key.raw) if oc.key else "",
                    passwords=tuple(_passwords(config, otls, oc.source)), reject=False))
        if cert is None:  # the default server rejects handshakes: a name may still be served
            usable = next((c for c in sni if not c.reject), None)
        else:
            usable = None
        http3 = True
        for scope in scopes:
            if scope.http3 is not None:
                http3 = scope.http3
                break
        else:
            raw = _raw(scopes, "http3")
            http3 = raw != "off"
        streams = _raw(scopes, "http3_max_concurrent_streams")
        buffer = _raw(scopes, "http3_stream_buffer_size")
        large = _limit(scopes, lambda li: li.large_client_header_buffers, (4, 8192))
        limits = H3Limits(
            max_concurrent_streams=int(streams) if streams and streams.isdigit() else 128,
            stream_buffer_size=parse_size(buffer) if buffer else 65536,
            large_header_buffers=large,
            underscores_in_headers=bool(_limit(scopes, lambda li: li.underscores_in_headers,
                                               False)),
            ignore_invalid_headers=bool(_limit(scopes, lambda li: li.ignore_invalid_headers,
                                               True)))
        out.append(QuicSettings(
            host=host, port=port, limits=limits,
            certfile=_path(config, cert.certificate.raw) if cert else
            (usable.certfile if usable else ""),
            keyfile=(_path(config, cert.key.raw) if cert.key else "") if cert else
            (usable.keyfile if usable else ""),
            passwords=tuple(_passwords(config, tls, cert.source)) if cert else
            (usable.passwords if usable else (None,)),
            http3=http3 and (cert is not None or usable is not None),
            table_key=(table.address, table.port) if table is not None else ("", 0),
            sni=tuple(sni),
            default_rejects=cert is None,
            retry=_raw(scopes, "quic_retry") == "on",
            keepalive_timeout=_limit(scopes, lambda li: li.keepalive_timeout, 75.0),
            keepalive_requests=_limit(scopes, lambda li: li.keepalive_requests, 1000),
            client_body_timeout=_limit(scopes, lambda li: li.client_body_timeout, 60.0),
            send_timeout=_limit(scopes, lambda li: li.send_timeout, 60.0)))
    return out


def open_udp_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound with SO_REUSEPORT (rule 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def quic_problems(config: Config) -> list[str]:
    """Certificate and key problems of the QUIC sockets (``file:line: error: ...``), no binding.

    ``tern serve -t`` reports these as ``nginx -t`` would; :func:`check_quic` also binds.
    """
    try:
        for st in quic_settings(config, Router(config)):
            _configuration(st)
    except (TlsError, OSError) as exc:
        return [str(exc)]
    return []


def check_quic(config: Config) -> None:
    """Load the QUIC certificates and test-bind the UDP ports (the master, before forking).

    Raises:
        OSError: with ``file:line: error: ...`` for a TLS problem, or the bind error.
    """
    try:
        plans = quic_settings(config, Router(config))
        for st in plans:
            _configuration(st)
    except TlsError as exc:
        raise OSError(str(exc)) from None
    for st in plans:
        open_udp_socket(st.host, st.port).close()


def _load(certfile: str, keyfile: str, passwords: tuple[str | None, ...]) -> _Cert:
    """Certificate, chain and key as aioquic's TLS wants them."""
    cfg = QuicConfiguration(is_client=False)
    last: BaseException | None = None
    for pw in passwords:
        try:
            cfg.load_cert_chain(certfile, keyfile or None, password=pw)
            return cfg.certificate, cfg.certificate_chain, cfg.private_key
        except (OSError, ValueError, TypeError) as exc:
            last = exc
    raise OSError(f'cannot load certificate "{certfile}" for QUIC: {last}')


def _configuration(st: QuicSettings) -> QuicConfiguration:
    limits = st.limits
    cfg = QuicConfiguration(
        is_client=False,
        alpn_protocols=list(H3_ALPN) if st.http3 else ["tern-http3-off"],
        # the transport's idle timeout stays above keepalive_timeout so that the keep-alive
        # close (H3_NO_ERROR, rule 3) comes first; a request in progress may be quiet longer
        idle_timeout=max(st.keepalive_timeout + 1.0, 60.0),
        max_stream_data=limits.stream_buffer_size,
        max_data=limits.stream_buffer_size * limits.max_concurrent_streams)
    if st.certfile:
        cfg.certificate, cfg.certificate_chain, cfg.private_key = \
            _load(st.certfile, st.keyfile, st.passwords)
    for sc in st.sni:
        if not sc.reject:
            _load(sc.certfile, sc.keyfile, sc.passwords)  # fails now rather than per handshake
    return cfg


_Cert = tuple[Any, list[Any], Any]
"""(certificate, chain, private key) as aioquic's TLS context holds them."""


class _SniTls(quic_tls.Context):
    """aioquic's server TLS context, picking the certificate by the ClientHello's SNI as
    nginx does (rule 2): ``tern_pick(name)`` returns the certificate, or None to refuse."""

    tern_pick: Callable[[str | None], _Cert | None]
    tern_server_name: str | None = None

    def _server_handle_hello(self, input_buf: Buffer, initial_buf: Buffer,
                             handshake_buf: Buffer) -> None:
        start = input_buf.tell()
        hello = quic_tls.pull_client_hello(input_buf)
        input_buf.seek(start)
        self.tern_server_name = hello.server_name
        cert = self.tern_pick(hello.server_name)
        if cert is None:  # ssl_reject_handshake on
            raise quic_tls.AlertHandshakeFailure("handshake rejected")
        self.certificate, self.certificate_chain, self.certificate_private_key = cert
        super()._server_handle_hello(input_buf, initial_buf, handshake_buf)


class _SniQuic(QuicConnection):
    """aioquic's connection whose server TLS context is a ``_SniTls`` (one override, called
    once per connection)."""

    tern_pick: Callable[[str | None], _Cert | None]

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self._is_client:
            self.tls.__class__ = _SniTls
            self.tls.tern_pick = self.tern_pick  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# one request


class H3Exchange(Exchange):
    """One request stream of an HTTP/3 connection."""

    def __init__(self, conn: H3Protocol, head: RequestHeaders) -> None:
        self.conn = conn
        self.head = head
        self.stream_id = head.stream_id
        self.scheme = "https"
        self.local_addr, self.local_port = conn.local
        self.remote_addr, self.remote_port = conn.remote
        self.connection_id = conn.id
        self.connection_requests = conn.requests
        self._body: deque[bytes] = deque()
        self._body_bytes = 0
        self._body_done = head.end_stream
        self._body_error = 0
        self._event = asyncio.Event()
        self._writable = asyncio.Event()
        self.reset = False
        self.task: asyncio.Task[None] | None = None
        self.sent_head = False

    # body ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._body.append(data)
        self._body_bytes += len(data)
        self._event.set()
        if self._body_bytes > BODY_HIGH_WATER:
            self.conn.adapter.hold(self.stream_id)

    def feed_end(self) -> None:
        self._body_done = True
        self._event.set()

    async def body(self) -> AsyncIterator[bytes]:
        timeout = self.conn.settings.client_body_timeout
        adapter = self.conn.adapter
        while True:
            if self._body:
                data = self._body.popleft()
                self._body_bytes -= len(data)
                if self.stream_id in adapter.held and self._body_bytes < BODY_HIGH_WATER // 2:
                    adapter.release(self.stream_id)
                    self.conn.schedule_transmit()
                yield data
                continue
            if self._body_done:
                if self._body_error:
                    raise ClientBodyInvalid(self._body_error)
                return
            if self.reset or self.conn.closed:
                raise ConnectionError("client reset the stream")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                raise ClientBodyTimeout("client_body_timeout") from None

    def body_complete(self) -> bool:
        return self._body_done

    # response --------------------------------------------------------------------------------

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        self.sent_head = True
        self.conn.adapter.send(ResponseHeaders(stream_id=self.stream_id, status=status,
                                               headers=tuple(headers), end_stream=end_stream))
        self.conn.schedule_transmit()

    def send_data(self, data: bytes) -> None:
        self.conn.adapter.send(ResponseData(stream_id=self.stream_id, data=data))
        self.conn.schedule_transmit()

    async def drain(self) -> None:
        conn = self.conn
        conn.transmit()
        while True:
            if self.reset or conn.closed:
                raise ConnectionError("client reset the stream")
            if conn.adapter.unacked(self.stream_id) <= SEND_HIGH_WATER:
                return
            self._writable.clear()
            try:
                await asyncio.wait_for(self._writable.wait(), conn.settings.send_timeout)
            except TimeoutError:
                self.abort()
                raise ConnectionError("send_timeout") from None

    def end(self) -> None:
        self.conn.adapter.send(ResponseEnd(stream_id=self.stream_id))
        self.conn.schedule_transmit()

    def abort(self) -> None:
        """Reset this stream (``return 444``, upstream errors): the connection goes on."""
        self.conn.adapter.send(StreamReset(stream_id=self.stream_id))
        self.conn.schedule_transmit()

    def tls_var(self, name: str) -> str | None:
        """``$ssl_*`` of a QUIC connection (always TLS 1.3)."""
        tls = self.conn._quic.tls
        if name == "ssl_protocol":
            return "TLSv1.3"
        if name == "ssl_cipher":  # OpenSSL's name of a TLS 1.3 suite, as nginx reports it
            suite = getattr(tls, "key_schedule", None)
            cs = getattr(suite, "cipher_suite", None)
            return f"TLS_{cs.name}" if cs is not None else None
        if name == "ssl_server_name":
            return getattr(tls, "tern_server_name", None)
        if name == "ssl_alpn_protocol":
            return tls.alpn_negotiated
        if name.startswith("ssl_client_"):  # no client certificate is asked for over QUIC
            return "NONE" if name == "ssl_client_verify" else ""
        return None


# ---------------------------------------------------------------------------------------------
# one connection


class H3Protocol(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3 (created by aioquic's ``QuicServer``)."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *,
                 endpoint: QuicEndpoint) -> None:
        super().__init__(quic)
        self.endpoint = endpoint
        self.settings = endpoint.settings
        quic.__class__ = _SniQuic  # before the first datagram: the TLS context picks by SNI
        quic.tern_pick = endpoint.pick  # type: ignore[attr-defined]
        self.adapter = H3Server(quic, self.settings.limits)
        self.id = next(_conn_ids)
        self.engine_ref = endpoint.ref
        self.exchanges: dict[int, H3Exchange] = {}
        self.requests = 0
        self.closed = False
        self.local: tuple[str, int] = endpoint.local
        self.remote: tuple[str, int] = ("", 0)
        self._tx_pending = False
        self._closing = False
        self._idle: asyncio.TimerHandle | None = None
        endpoint.ref.connections.add(self)  # type: ignore[arg-type]
        self._arm_idle()

    # -- datagrams and events --------------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if not self.remote[0]:
            self.remote = (addr[0], addr[1])
        # aioquic's protocol transmits after every datagram; datagrams read in one loop
        # iteration share one transmit here (a third of the cost of a request was transmits)
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.schedule_transmit()
        for ex in self.exchanges.values():  # ACKs and window updates may free the senders
            ex._writable.set()

    def quic_event_received(self, event: QuicEvent) -> None:
        for ev in self.adapter.quic_event(event):
            if isinstance(ev, RequestHeaders):
                self._request(ev)
            elif isinstance(ev, RequestData):
                ex = self.exchanges.get(ev.stream_id)
                if ex is not None:
                    ex.feed(ev.data)
            elif isinstance(ev, RequestEnd):
                ex = self.exchanges.get(ev.stream_id)
                if ex is not None:
                    ex.feed_end()
            elif isinstance(ev, RequestRejected):
                ex = self.exchanges.get(ev.stream_id)
                if ex is not None:
                    ex._body_error = ev.status_hint
                    ex.feed_end()
                else:
                    self.requests += 1
                    task = self._loop.create_task(self._reject(ev))
                    self.endpoint.tasks.add(task)
                    task.add_done_callback(self.endpoint.tasks.discard)
            elif isinstance(ev, StreamReset):
                ex = self.exchanges.pop(ev.stream_id, None)
                if ex is not None:
                    ex.reset = True
                    ex._event.set()
                    ex._writable.set()
                    if ex.sent_head and ex.task is not None and not ex.task.done():
                        ex.task.cancel()
            else:
                raise RuntimeError(f"Unexpected event {ev!r}")
        if isinstance(event, ConnectionTerminated):
            self._terminated()

    def _request(self, head: RequestHeaders) -> None:
        self.requests += 1
        self._cancel_idle()
        ex = H3Exchange(self, head)
        self.exchanges[head.stream_id] = ex
        ex.task = self._loop.create_task(self._serve(ex))
        if self.requests >= self.settings.keepalive_requests:
            self.adapter.goaway()  # the last request nginx allows on this connection
            self.schedule_transmit()

    async def _serve(self, ex: H3Exchange) -> None:
        try:
            await self.engine_ref.engine.handle(ex)
        finally:
            if self.exchanges.get(ex.stream_id) is ex:
                del self.exchanges[ex.stream_id]
            self.schedule_transmit()
            self._after_request()

    async def _reject(self, rej: RequestRejected) -> None:
        engine = self.engine_ref.engine
        status, headers, body = engine.rejection(rej)
        self.adapter.send(ResponseHeaders(stream_id=rej.stream_id, status=status,
                                          headers=tuple(headers), end_stream=not body))
        if body:
            self.adapter.send(ResponseData(stream_id=rej.stream_id, data=body))
            self.adapter.send(ResponseEnd(stream_id=rej.stream_id))
        self.schedule_transmit()
        engine.log_rejection(self, rej, status, len(body))
        self._after_request()

    def _after_request(self) -> None:
        if self.closed or self.exchanges or not self.adapter.idle:
            return
        if self.adapter.going_away and (self.engine_ref.draining or
                                        self.requests >= self.settings.keepalive_requests):
            self.close_h3()
            return
        self._arm_idle()

    # -- writes ----------------------------------------------------------------------------------

    def transmit(self) -> None:
        """Frame the queued response data, then send what QUIC has (aioquic's transmit)."""
        self.adapter.flush()
        super().transmit()

    def schedule_transmit(self) -> None:
        if not self._tx_pending and not self.closed:
            self._tx_pending = True
            self._loop.call_soon(self._transmit_soon)

    def _transmit_soon(self) -> None:
        self._tx_pending = False
        if not self.closed:
            self.transmit()

    # -- timers and closing ------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        self._cancel_idle()
        timeout = self.settings.keepalive_timeout
        if timeout > 0 and not self.closed:
            self._idle = self._loop.call_later(timeout, self._idle_expired)

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.exchanges and self.adapter.idle:
            self.close_h3()

    def idle(self) -> bool:
        """No request in progress (graceful stop closes these)."""
        return not self.exchanges and self.adapter.idle

    def goaway(self) -> None:
        """Graceful stop: GOAWAY now; closed once the requests in progress are done."""
        self.adapter.goaway()
        self.schedule_transmit()

    def close_h3(self, _deadline: float | None = None) -> None:
        """CONNECTION_CLOSE with H3_NO_ERROR, once what was sent (the last responses, GOAWAY)
        has been acknowledged, or after 2 s (aioquic drops unsent stream data on close)."""
        if self.closed:
            return
        self.transmit()
        now = self._loop.time()
        deadline = now + 2.0 if _deadline is None else _deadline
        if now < deadline and any(len(s.sender._buffer) or not s.sender.buffer_is_empty
                                  for s in self._quic._streams.values()):
            self._loop.call_later(0.01, self.close_h3, deadline)
            return
        self._quic.close(error_code=ErrorCode.H3_NO_ERROR)
        self.transmit()

    def close(self, error_code: int = ErrorCode.H3_NO_ERROR, reason_phrase: str = "",
              *, abort: bool = False) -> None:
        """The worker's graceful loop calls this for idle connections (closed once what was
        sent is acknowledged: ``close_h3``); fast stop passes ``abort`` (closed now)."""
        if self.closed:
            return
        if not abort and error_code == ErrorCode.H3_NO_ERROR:
            if not self._closing:
                self._closing = True
                self.close_h3()
            return
        self._quic.close(error_code=error_code, reason_phrase=reason_phrase)
        self.transmit()

    def _terminated(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_idle()
        self.engine_ref.connections.discard(self)  # type: ignore[arg-type]
        for ex in self.exchanges.values():
            ex.reset = True
            ex._event.set()
            ex._writable.set()
            if ex.sent_head and ex.task is not None and not ex.task.done():
                ex.task.cancel()


# ---------------------------------------------------------------------------------------------
# the UDP socket


class _Server(QuicServer):
    """aioquic's QUIC server, refusing new connections once the endpoint is closing."""

    accepting = True

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if not self.accepting:
            try:
                header = pull_quic_header(Buffer(data=data),  # type: ignore[arg-type]
                                          host_cid_length=self._configuration.connection_id_length)
            except ValueError:
                return
            if header.destination_cid not in self._protocols and \
                    header.packet_type == QuicPacketType.INITIAL:
                return
        super().datagram_received(data, addr)


class QuicEndpoint:
    """One UDP socket serving HTTP/3 in a worker."""

    def __init__(self, ref: EngineRef, settings: QuicSettings, sock: socket.socket) -> None:
        self.ref = ref
        self.settings = settings
        self.sock = sock
        name = sock.getsockname()
        self.local: tuple[str, int] = (name[0], name[1])
        self.server: _Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.pick: Callable[[str | None], _Cert | None] = lambda name: None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = _configuration(self.settings)
        self.pick = self._picker(cfg)

        def protocol(quic: QuicConnection, stream_handler: Any = None) -> H3Protocol:
            return H3Protocol(quic, stream_handler, endpoint=self)

        server = _Server(configuration=cfg, create_protocol=protocol,
                         retry=self.settings.retry)
        await loop.create_datagram_endpoint(lambda: server, sock=self.sock)
        self.server = server

    def _picker(self, cfg: QuicConfiguration) -> Callable[[str | None], _Cert | None]:
        """SNI -> certificate (rule 2): the server the name selects, as Host does; its
        certificate, the default server's when it has none, None when it rejects."""
        st = self.settings
        default: _Cert | None = None if st.default_rejects else \
            (cfg.certificate, cfg.certificate_chain, cfg.private_key)
        by_server: dict[int, _Cert | None] = {}
        for sc in st.sni:
            by_server[id(sc.server)] = None if sc.reject else \
                _load(sc.certfile, sc.keyfile, sc.passwords)
        router = self.ref.engine.interp.router
        table = router.sockets.get(st.table_key)

        def pick(name: str | None) -> _Cert | None:
            if not name or table is None or not by_server:
                return default
            try:
                server = router.select_server(table, name).server
            except BadRequest:
                return default
            return by_server.get(id(server), default)

        return pick

    @property
    def port(self) -> int:
        return self.local[1]

    def connections(self) -> list[H3Protocol]:
        if self.server is None:
            return []
        return list({id(p): p for p in self.server._protocols.values()  # type: ignore[misc]
                     if isinstance(p, H3Protocol)}.values())

    def close(self) -> None:
        """Stop accepting and send GOAWAY everywhere (rule 5); connections finish."""
        if self.server is not None:
            self.server.accepting = False
        for conn in self.connections():
            conn.goaway()
            if conn.idle():
                conn.close_h3()

    def shutdown(self) -> None:
        """Close every connection and the socket now."""
        for conn in self.connections():
            conn.close(abort=True)
        if self.server is not None and self.server._transport is not None:
            self.server._transport.close()


async def start_quic(config: Config, ref: EngineRef) -> list[QuicEndpoint]:
    """A QUIC endpoint per ``listen ... quic`` socket, in this worker (rule 1)."""
    out = []
    for st in quic_settings(config, ref.engine.interp.router):
        ep = QuicEndpoint(ref, st, open_udp_socket(st.host, st.port))
        await ep.start()
        out.append(ep)
    return out
