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

Not done: ``keepalive_timeout``/``keepalive_requests`` on QUIC connections (aioquic's idle
timeout of 60 s applies), address validation (Retry), SNI certificate choice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent

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
        self._tx_pending = False
        proxy._fronts.add(self)

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
