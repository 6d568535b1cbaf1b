"""The HTTP/3 client side of ``tern shadow`` (``--quic``): QUIC in, HTTP/1.1 to the primary.

Rules (those of :mod:`shadow.h2front`, per stream; only the transport differs):

1. :func:`start_quic` listens on UDP at the TCP listener's address and port with aioquic's
   server, the listener's certificate and key, ALPN ``h3``. Each QUIC connection is an
   :class:`H3Front`; :class:`proxy.protocol.h3.H3Server` (the adapter ``tern serve`` uses) turns
   its QUIC events into request events and judges them as nginx does (malformed requests reset
   their stream; rejected ones are answered with the proxy's page; the connection goes on).
2. Each stream is forwarded to the primary as HTTP/1.1 and mirrored exactly as an HTTP/2 stream
   (:class:`shadow.h2front._Stream`).
3. Flow control: a stream with more than :data:`BODY_HIGH_WATER` request body bytes not yet
   taken by the primary's connection is held (its QUIC receive window frozen: the client stops
   sending) until they are taken; a stream with more than ``STREAM_HIGH_WATER`` response bytes
   not yet acknowledged by the client has its primary connection not read.
4. Writes are coalesced: one transmit per loop iteration.
5. Client timeouts, as nginx 1.25 documents them for HTTP/3 and ``tern serve`` applies them
   (Debian's nginx 1.22 has no HTTP/3 to check against): a connection without a request in
   progress (from its start, or since its last stream) for ``client_idle_timeout``
   (``keepalive_timeout``) is closed with CONNECTION_CLOSE H3_NO_ERROR (``timeout_idle``); the
   QUIC transport's max_idle_timeout is the larger of that + 1 s and 60 s, so a client quietly
   waiting for a slow primary is not cut by QUIC. ``keepalive_requests``: the last request goes
   with a GOAWAY (later streams are rejected), the connection closes once it is done.
   ``client_body_timeout`` per stream as on HTTP/2 (``shadow.h2front`` rule 8; a held stream
   is not timed). ``send_timeout``: a stream with response bytes the client has not
   acknowledged, the same number at two looks ``send_timeout`` apart, is reset and its primary
   connection closed (``timeout_send``). Reset streams get H3_INTERNAL_ERROR (the adapter's
   code for every reset; nginx 1.25 uses H3_GENERAL_PROTOCOL_ERROR for a timed-out stream).

Not done: ``client_header_timeout`` for a request stream whose HEADERS frame never ends (aioquic
buffers it unseen; the connection's keepalive_timeout still runs, as no request is in
progress), address validation (Retry), SNI certificate choice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, ErrorCode
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent

from proxy.protocol.events import StreamReset
from proxy.protocol.h3 import H3Limits, H3Server

from .h2front import StreamFront, _Stream

if TYPE_CHECKING:
    from .mirror import ShadowProxy

__all__ = ["BODY_HIGH_WATER", "H3Front", "quic_configuration", "start_quic"]

BODY_HIGH_WATER = 64 * 1024
"""Request body bytes of a stream waiting for the primary before the stream is held."""


def quic_configuration(cert: str, key: str) -> QuicConfiguration:
    """The server's QUIC configuration.

    Raises:
        ValueError: the certificate or key cannot be loaded (the message names them).
    """
    cfg = QuicConfiguration(is_client=False, alpn_protocols=list(H3_ALPN))
    try:
        cfg.load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load TLS certificate {cert} with key {key} for QUIC: "
                         f"{exc}") from None
    return cfg


async def start_quic(proxy: ShadowProxy, host: str, port: int,
                     cfg: QuicConfiguration) -> QuicServer:
    """Serve HTTP/3 on UDP ``host:port`` for ``proxy`` (rule 1)."""

    def protocol(quic: QuicConnection, stream_handler: Any = None) -> H3Front:
        return H3Front(quic, stream_handler, proxy=proxy)

    # rule 5: QUIC's own idle timeout stays above keepalive_timeout (which closes first)
    cfg = dataclasses.replace(cfg, idle_timeout=max(proxy.options.client_idle_timeout + 1.0,
                                                    60.0))
    return await serve(host, port, configuration=cfg, create_protocol=protocol)


class H3Front(StreamFront, QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3."""

    transport = None
    """No transport of its own (the UDP socket is the server's): ``ShadowProxy.stop`` closes
    QUIC connections through the server."""

    def __init__(self, quic: QuicConnection, stream_handler: Any = None, *,
                 proxy: ShadowProxy) -> None:
        QuicConnectionProtocol.__init__(self, quic, stream_handler)
        self.proxy = proxy
        self.adapter = H3Server(quic, H3Limits(large_header_buffers=(4, 16384)))
        self.streams: dict[int, _Stream] = {}
        self.write_ok = True
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.requests = 0
        self._tx_pending = False
        self._closing = False
        self._keepalive: asyncio.TimerHandle | None = None
        """keepalive_timeout (rule 5)."""
        self._stall: asyncio.TimerHandle | None = None
        """send_timeout's look (rule 5)."""
        self._unacked: dict[int, int] = {}
        """Streams with unacknowledged response bytes at the last look, and how many."""
        proxy._fronts.add(self)
        self.idle()

    # aioquic --------------------------------------------------------------------------------

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # one transmit for the datagrams of a loop iteration (aioquic sends after each one)
        self._quic.receive_datagram(data, addr, now=self._loop.time())  # type: ignore[arg-type]
        self._process_events()
        self.schedule_transmit()
        self._resume()  # ACKs may have freed the senders

    def quic_event_received(self, event: QuicEvent) -> None:
        self._events(self.adapter.quic_event(event))
        if isinstance(event, ConnectionTerminated) and not self.closed:
            self.closed = True
            for timer in (self._keepalive, self._stall):
                if timer is not None:
                    timer.cancel()
            self._keepalive = self._stall = None
            self.proxy._fronts.discard(self)
            for s in list(self.streams.values()):
                s.cancel()

    def transmit(self) -> None:
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
            self._resume()

    # StreamFront ----------------------------------------------------------------------------

    def send(self, event: Any) -> None:
        self.adapter.send(event)
        self.schedule_transmit()

    def ack(self, sid: int, n: int) -> None:
        if sid in self.adapter.held:
            self.adapter.release(sid)
            self.schedule_transmit()

    def body_waiting(self, sid: int, n: int) -> None:
        if n > BODY_HIGH_WATER:
            self.adapter.hold(sid)

    def backlog(self, sid: int) -> int:
        return self.adapter.unacked(sid)

    # timeouts (rule 5) ----------------------------------------------------------------------

    timeout_code = ErrorCode.H3_GENERAL_PROTOCOL_ERROR
    """nginx 1.25's code; the adapter resets with H3_INTERNAL_ERROR whatever the code."""

    def busy(self) -> None:
        self.requests += 1
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self.requests >= self.proxy.options.keepalive_requests:
            self.adapter.goaway()  # the last request on this connection
            self.schedule_transmit()
        if self._stall is None and not self.closed:
            self._stall = self.loop.call_later(self.proxy.options.send_timeout,
                                               self._check_stall)

    def idle(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self.closed:
            return
        if self.adapter.going_away and self.adapter.idle:
            self.close_h3()  # keepalive_requests reached and the last request is done
            return
        self._keepalive = self.loop.call_later(self.proxy.options.client_idle_timeout,
                                           self._expired)

    def _expired(self) -> None:
        self._keepalive = None
        if not self.closed and not self.streams and self.adapter.idle:
            self.proxy.stats.timeout_idle += 1
            self.close_h3()

    def close_h3(self, _deadline: float | None = None) -> None:
        """CONNECTION_CLOSE H3_NO_ERROR once what was sent has been acknowledged, or after 2 s
        (aioquic drops stream data not yet sent when it closes)."""
        if self.closed or (self._closing and _deadline is None):
            return
        self._closing = True
        self.transmit()
        now = self.loop.time()
        deadline = now + 2.0 if _deadline is None else _deadline
        if now < deadline and any(self.adapter.unacked(sid) for sid in self._quic._streams):
            self.loop.call_later(0.01, self.close_h3, deadline)
            return
        self._quic.close(error_code=ErrorCode.H3_NO_ERROR)
        self.transmit()

    def _check_stall(self) -> None:
        self._stall = None
        if self.closed:
            return
        before, now = self._unacked, {}
        for sid, s in list(self.streams.items()):
            n = self.adapter.unacked(sid)
            if not n:
                continue
            if before.get(sid) == n:  # the client took nothing for a whole period
                self.proxy.stats.timeout_send += 1
                s.cancel()
                self.send(StreamReset(stream_id=sid, error_code=self.timeout_code))
            else:
                now[sid] = n
        self._unacked = now
        if self.streams:
            self._stall = self.loop.call_later(self.proxy.options.send_timeout,
                                               self._check_stall)
