"""nginx's ``resolver`` at run time: names in a ``proxy_pass`` with variables, asked over UDP,
and over TCP when the UDP answer is truncated.

Rules (ngx_resolver.c as it behaves):

1. ``resolver ADDRESS ... [valid=TIME] [ipv6=on|off]``: the servers are asked in turn (one per
   query, round robin); an address may be a name, looked up once with the system resolver.
   Port 53 unless given.
2. A name is asked for A and, with ``ipv6=on`` (the default), AAAA at the same time; the
   addresses are the IPv4 ones then the IPv6 ones, rotated by a random offset (nginx's
   ``ngx_resolver_export(..., rotate)``).
3. A query is sent again every ``RESEND`` seconds until an answer comes or
   ``resolver_timeout`` (30 s by default) passes: then "timed out".
4. Answers are cached for ``valid=`` if given, else their smallest TTL; errors ("Host not
   found", server failures) are not cached.  Requests for a name being resolved wait for the
   same query.
5. A datagram that is not the answer (other id, other question, malformed) is ignored.
6. An answer with the TC bit (truncated) is not used: the same query (same id) is sent again
   over TCP to the server that answered, framed as RFC 1035 §4.2.2 says, and that answer is
   used (ngx_resolver_process_a: ``trunc`` -> ngx_resolver_send_tcp_query).  A TCP answer that
   is truncated too, or not the answer, is ignored; a connection that fails or closes is tried
   again every ``RESEND`` seconds, all within ``resolver_timeout``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import time
from collections.abc import Sequence

from proxy.protocol import dns
from proxy.units import parse_time

__all__ = ["Resolver", "ResolveError", "resolver_from_args", "RESEND"]

RESEND = 5.0
"""Seconds between resends of an unanswered query (nginx: resend_timeout, 5 s)."""
DEFAULT_TIMEOUT = 30.0
CACHE_MAX = 4096


class ResolveError(Exception):
    """A name that did not resolve: nginx's message, e.g. ``x could not be resolved (3: Host
    not found)``."""


class _Query(asyncio.DatagramProtocol):
    def __init__(self, qid: int, name: str, qtype: int) -> None:
        self.qid = qid
        self.name = name
        self.qtype = qtype
        self.done: asyncio.Future[dns.Answer] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            ans = dns.parse(data)
        except dns.DnsError:
            return
        if ans.qid != self.qid or ans.question != self.name or ans.qtype != self.qtype:
            return
        if not self.done.done():
            self.done.set_result(ans)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: keep waiting
        return None


class Resolver:
    """One ``resolver`` directive's servers and cache (per worker)."""

    def __init__(self, servers: Sequence[tuple[str, int]], *, valid: float | None = None,
                 ipv6: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.servers = list(servers)
        self.valid = valid
        self.ipv6 = ipv6
        self.timeout = timeout
        self._next = 0
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._pending: dict[str, asyncio.Future[list[str]]] = {}
        self.queries = 0
        self.tcp_queries = 0
        """Queries sent again over TCP (rule 6)."""

    def cached(self, name: str) -> list[str] | None:
        """The addresses of ``name`` if the cache has them, fresh; else None."""
        got = self._cache.get(name.lower())
        if got is None or got[0] <= time.monotonic():
            return None
        return _rotate(got[1])

    async def resolve(self, name: str) -> list[str]:
        """All addresses of ``name`` (rule 2), from the cache or the servers."""
        key = name.lower().rstrip(".")
        hit = self.cached(key)
        if hit is not None:
            return hit
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return _rotate(list(await asyncio.shield(pending)))

    async def _lookup(self, name: str) -> list[str]:
        kinds = [dns.A, dns.AAAA] if self.ipv6 else [dns.A]
        results = await asyncio.gather(*(self._ask(name, k) for k in kinds),
                                       return_exceptions=True)
        addrs: list[str] = []
        ttls: list[int] = []
        errors: list[BaseException] = []
        for res in results:
            if isinstance(res, BaseException):
                errors.append(res)
                continue
            got, ttl = res
            addrs += got
            if ttl is not None:
                ttls.append(ttl)
        if not addrs:
            if errors:
                raise errors[0] if isinstance(errors[0], ResolveError) else ResolveError(
                    f"{name} could not be resolved ({errors[0]})")
            raise ResolveError(f"{name} could not be resolved (3: Host not found)")
        keep = self.valid if self.valid is not None else float(min(ttls) if ttls else 0)
        if keep > 0:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[name] = (time.monotonic() + keep, addrs)
        return addrs

    async def _ask(self, name: str, qtype: int) -> tuple[list[str], int | None]:
        if not self.servers:
            raise ResolveError(f"no resolver defined to resolve {name}")
        host, port = self.servers[self._next % len(self.servers)]
        self._next += 1
        loop = asyncio.get_running_loop()
        if not _is_ip(host):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            host = str(infos[0][4][0])
        qid = int.from_bytes(os.urandom(2), "big")
        proto = _Query(qid, name, qtype)
        transport, _ = await loop.create_datagram_endpoint(lambda: proto,
                                                           remote_addr=(host, port))
        self.queries += 1
        try:
            data = dns.query(qid, name, qtype)
            deadline = loop.time() + self.timeout
            while True:
                transport.sendto(data)
                wait = min(RESEND, deadline - loop.time())
                if wait <= 0:
                    raise ResolveError(f"{name} could not be resolved (110: Operation timed out)")
                try:
                    ans = await asyncio.wait_for(asyncio.shield(proto.done), wait)
                    break
                except TimeoutError:
                    continue
        finally:
            transport.close()
        if ans.truncated:
            ans = await self._ask_tcp(host, port, data, ans, deadline)
        if ans.rcode:
            text = dns.RCODE_TEXT.get(ans.rcode, "Unknown error")
            raise ResolveError(f"{name} could not be resolved ({ans.rcode}: {text})")
        return dns.addresses(ans, name, qtype)


    async def _ask_tcp(self, host: str, port: int, data: bytes, udp: dns.Answer,
                       deadline: float) -> dns.Answer:
        """Rule 6: ``data`` again over TCP until an untruncated answer or the deadline."""
        loop = asyncio.get_running_loop()
        while True:
            wait = min(RESEND, deadline - loop.time())
            if wait <= 0:
                raise ResolveError(f"{udp.question} could not be resolved "
                                   "(110: Operation timed out)")
            slot_end = loop.time() + wait
            self.tcp_queries += 1
            try:
                return await asyncio.wait_for(self._tcp_once(host, port, data, udp), wait)
            except TimeoutError:
                continue
            except OSError:
                # refused, reset or closed: nginx asks again when the resend timer fires
                await asyncio.sleep(max(0.0, slot_end - loop.time()))

    @staticmethod
    async def _tcp_once(host: str, port: int, data: bytes, udp: dns.Answer) -> dns.Answer:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(dns.tcp_frame(data))
            await writer.drain()
            stream = dns.TcpStream()
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionResetError("the DNS server closed the connection")
                for message in stream.feed(chunk):
                    try:
                        ans = dns.parse(message)
                    except dns.DnsError:
                        continue
                    if ans.qid != udp.qid or ans.question != udp.question or \
                            ans.qtype != udp.qtype or ans.truncated:
                        continue
                    return ans
        finally:
            writer.close()


def _rotate(addrs: list[str]) -> list[str]:
    if len(addrs) < 2:
        return list(addrs)
    at = random.randrange(len(addrs))
    return addrs[at:] + addrs[:at]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolver_from_args(args: Sequence[str], timeout: float | None) -> Resolver:
    """A :class:`Resolver` from the ``resolver`` directive's arguments (checked at load)."""
    servers: list[tuple[str, int]] = []
    valid: float | None = None
    ipv6 = True
    for a in args:
        if a.startswith("valid="):
            valid = parse_time(a[6:])
        elif a.startswith("ipv6="):
            ipv6 = a[5:] == "on"
        elif a.startswith("status_zone="):
            continue
        else:
            servers.append(_server(a))
    return Resolver(servers, valid=valid, ipv6=ipv6,
                    timeout=DEFAULT_TIMEOUT if timeout is None else timeout)


def _server(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53
