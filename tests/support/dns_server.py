"""An authoritative-looking DNS server on 127.0.0.1 (UDP and TCP on the same port) for tests
of nginx's and Tern's ``resolver``: answers A/AAAA from a table, follows nothing itself (CNAMEs
are returned as records), and can be told to stay silent or to fail for some names.

Over UDP an answer longer than 512 bytes (RFC 1035 §4.2.1; the askers send no EDNS) goes out
truncated: TC set, the question only.  Over TCP (RFC 1035 §4.2.2: two length bytes before each
message, several queries per connection) the whole answer is sent, unless the name is in
``Zone.tcp_truncated`` (TC set there too, records kept) or ``Zone.tcp_silent`` (never answered
over TCP).

Written for the tests from RFC 1035's message format; it shares no code with proxy/."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Zone:
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    silent: set[str] = field(default_factory=set)
    """Names never answered (the asker times out)."""
    servfail: set[str] = field(default_factory=set)
    ttl: int = 60
    tcp_truncated: set[str] = field(default_factory=set)
    """Names whose TCP answers are truncated as well (nothing usable anywhere)."""
    tcp_silent: set[str] = field(default_factory=set)
    """Names never answered over TCP."""


UDP_LIMIT = 512


def _name(data: bytes, pos: int) -> tuple[str, int]:
    labels = []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1:pos + 1 + n].decode().lower())
        pos += 1 + n
    return ".".join(labels), pos + 1


def _encode(name: str) -> bytes:
    out = b""
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


class DnsServer:
    """Run with ``start()``/``stop()``; ``queries`` lists (name, type) as received."""

    def __init__(self, zone: Zone, *, tcp: bool = True) -> None:
        self.zone = zone
        self.tcp = tcp
        """Listen on TCP too (else TCP connections to the port are refused)."""
        self.queries: list[tuple[str, int]] = []
        self.tcp_queries: list[tuple[str, int]] = []
        """The queries that came over TCP (also in ``queries``)."""
        self.truncated: list[tuple[str, int]] = []
        """The UDP answers sent truncated."""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._transport: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()

    def answer(self, data: bytes, *, tcp: bool = False) -> bytes | None:
        qid, _flags, qd = struct.unpack_from("!HHH", data)
        name, pos = _name(data, 12)
        qtype, _qclass = struct.unpack_from("!HH", data, pos)
        question = data[12:pos + 4]
        self.queries.append((name, qtype))
        if tcp:
            self.tcp_queries.append((name, qtype))
        z = self.zone
        if name in z.silent or (tcp and name in z.tcp_silent):
            return None
        rcode = 0
        records = b""
        count = 0
        if name in z.servfail:
            rcode = 2
        else:
            owner = name
            if owner in z.cname:
                target = z.cname[owner]
                rdata = _encode(target)
                records += b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, z.ttl, len(rdata)) + rdata
                count += 1
                owner_ref = _encode(target)
                owner = target
            else:
                owner_ref = b"\xc0\x0c"
            table = z.a if qtype == 1 else z.aaaa if qtype == 28 else {}
            known = owner in z.a or owner in z.aaaa
            for addr in table.get(owner, []):
                family = socket.AF_INET if qtype == 1 else socket.AF_INET6
                rdata = socket.inet_pton(family, addr)
                records += owner_ref + struct.pack("!HHIH", qtype, 1, z.ttl, len(rdata)) + rdata
                count += 1
            if not known and name not in z.cname:
                rcode = 3
        flags = 0x8180 | rcode
        whole = struct.pack("!HHHHHH", qid, flags, qd, count, 0, 0) + question + records
        if tcp and name in z.tcp_truncated:  # records kept: TC alone must make it unusable
            return struct.pack("!HHHHHH", qid, flags | 0x0200, qd, count, 0, 0) + question + \
                records
        if not tcp and len(whole) > UDP_LIMIT:
            self.truncated.append((name, qtype))
            return struct.pack("!HHHHHH", qid, flags | 0x0200, qd, 0, 0, 0) + question
        return whole

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self._tcp_writers.add(writer)
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = self.answer(await reader.readexactly(size), tcp=True)
                if out is not None:
                    writer.write(len(out).to_bytes(2, "big") + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()

    def start(self) -> DnsServer:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = self

            class Proto(asyncio.DatagramProtocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    server._transport = transport  # type: ignore[assignment]

                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    out = server.answer(data)
                    if out is not None and server._transport is not None:
                        server._transport.sendto(out, addr)

            async def main() -> None:
                # UDP and TCP on one port: take a free UDP port whose TCP twin is free too
                for _ in range(50):
                    transport, _ = await loop.create_datagram_endpoint(
                        Proto, local_addr=("127.0.0.1", 0))
                    port = transport.get_extra_info("sockname")[1]
                    if not self.tcp:
                        self.port = port
                        break
                    try:
                        self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1",
                                                               port)
                    except OSError:
                        transport.close()
                        continue
                    self.port = port
                    break
                self._ready.set()

            loop.run_until_complete(main())
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None:
            async def shutdown() -> None:
                if self._transport is not None:
                    self._transport.close()
                if self._tcp is not None:
                    self._tcp.close()
                for writer in list(self._tcp_writers):
                    writer.close()
                for _ in range(5):  # the connections' handlers see EOF and end
                    if not self._tcp_writers:
                        break
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0)  # the transport's connection_lost runs
                await asyncio.sleep(0)

            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
