"""DNS messages for nginx's ``resolver``: A/AAAA queries and their answers (RFC 1035, RFC 3596).

Sans-I/O: :func:`query` makes the bytes of one question, :func:`parse` reads an answer and
:func:`addresses` follows the name through CNAMEs to its addresses, as nginx's resolver does.

Rules:

1. One question per message, class IN, recursion desired (nginx's queries).
2. An answer must carry the query's id, have QR set and repeat the question (name compared
   without regard to case); anything else is :class:`DnsError` (the caller waits on, as for a
   stray datagram).
3. Names are read with compression pointers, each pointer strictly backwards and at most 64
   of them, labels of at most 63 bytes, names of at most 255: a message that breaks this is
   malformed, never a loop.
4. RCODE 3 is "Host not found" (nginx's text), other non-zero RCODEs their RFC names; an answer
   with no address for the name (after CNAMEs, at most 16) is "Host not found" too when NOERROR
   (nginx: "no data").
5. Over TCP each message is preceded by its length, two bytes in network order (RFC 1035
   §4.2.2): :func:`tcp_frame` writes one, :class:`TcpStream` cuts a received byte stream, fed in
   any pieces, back into messages.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

__all__ = ["A", "AAAA", "CNAME", "DnsError", "Answer", "Record", "query", "parse",
           "addresses", "RCODE_TEXT", "tcp_frame", "TcpStream"]

A, CNAME, AAAA = 1, 5, 28
_IN = 1
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
MAX_POINTERS = 64
MAX_CNAMES = 16

RCODE_TEXT = {1: "Format error", 2: "Server failure", 3: "Host not found",
              4: "Unimplemented", 5: "Operation refused"}
"""nginx's texts for the RCODEs (ngx_resolver_strerror)."""


class DnsError(ValueError):
    """A malformed or unrelated message."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    """Owner name, lower-case, without the final dot."""
    rtype: int
    ttl: int
    value: str
    """An address as text (A, AAAA) or a name (CNAME); "" for other types."""


@dataclass(slots=True)
class Answer:
    qid: int
    rcode: int
    truncated: bool
    question: str
    qtype: int
    records: list[Record] = field(default_factory=list)


def _encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not raw or len(raw) > 63:
            raise DnsError(f"invalid name {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise DnsError(f"name too long: {name!r}")
    return bytes(out)


def query(qid: int, name: str, qtype: int) -> bytes:
    """One question: ``name`` of ``qtype``, class IN, RD set."""
    return _HEADER.pack(qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + _encode_name(name) + \
        struct.pack("!HH", qtype, _IN)


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The name at ``pos`` and the position after it (after the first pointer, if any)."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if pos >= len(data):
            raise DnsError("name runs past the message")
        n = data[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsError("truncated pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > MAX_POINTERS or target >= pos:
                raise DnsError("compression pointer loop")
            pos = target
            continue
        if n & 0xC0:
            raise DnsError("unknown label type")
        pos += 1
        if n == 0:
            break
        if pos + n > len(data):
            raise DnsError("label runs past the message")
        total += n + 1
        if total > 255:
            raise DnsError("name too long")
        labels.append(data[pos:pos + n].decode("latin-1").lower())
        pos += n
    return ".".join(labels), (end if end >= 0 else pos)


def parse(data: bytes) -> Answer:
    """Read an answer (rule 2 is the caller's: compare ``qid`` and ``question``)."""
    if len(data) < _HEADER.size:
        raise DnsError("short message")
    qid, flags, qd, an, _ns, _ar = _HEADER.unpack_from(data)
    if not flags & 0x8000:
        raise DnsError("not a response")
    if qd != 1:
        raise DnsError("not one question")
    pos = _HEADER.size
    qname, pos = _read_name(data, pos)
    if pos + 4 > len(data):
        raise DnsError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    ans = Answer(qid=qid, rcode=flags & 0x000F, truncated=bool(flags & 0x0200),
                 question=qname, qtype=qtype)
    for _ in range(an):
        name, pos = _read_name(data, pos)
        if pos + _RR.size > len(data):
            raise DnsError("truncated record")
        rtype, rclass, ttl, rdlen = _RR.unpack_from(data, pos)
        pos += _RR.size
        if pos + rdlen > len(data):
            raise DnsError("truncated record data")
        rdata_at = pos
        pos += rdlen
        if rclass != _IN:
            continue
        if rtype == A and rdlen == 4:
            value = str(ipaddress.IPv4Address(data[rdata_at:pos]))
        elif rtype == AAAA and rdlen == 16:
            value = str(ipaddress.IPv6Address(data[rdata_at:pos]))
        elif rtype == CNAME:
            value, _ = _read_name(data, rdata_at)
        elif rtype in (A, AAAA):
            raise DnsError("bad address length")
        else:
            value = ""
        ans.records.append(Record(name=name, rtype=rtype, ttl=ttl & 0x7FFFFFFF, value=value))
    return ans


def addresses(ans: Answer, name: str, qtype: int) -> tuple[list[str], int | None]:
    """The ``qtype`` addresses of ``name`` in ``ans`` (through CNAMEs) and the smallest TTL of
    the records used (None when there is no address)."""
    want = name.rstrip(".").lower()
    ttl: int | None = None
    for _ in range(MAX_CNAMES + 1):
        found = [r for r in ans.records if r.name == want and r.rtype == qtype]
        if found:
            low = min(r.ttl for r in found)
            return [r.value for r in found], low if ttl is None else min(ttl, low)
        alias = next((r for r in ans.records if r.name == want and r.rtype == CNAME), None)
        if alias is None:
            return [], None
        ttl = alias.ttl if ttl is None else min(ttl, alias.ttl)
        want = alias.value
    return [], None


def tcp_frame(message: bytes) -> bytes:
    """``message`` as sent over TCP: its two-byte length first (rule 5)."""
    if len(message) > 0xFFFF:
        raise DnsError("message too long for TCP")
    return struct.pack("!H", len(message)) + message


class TcpStream:
    """The messages of one TCP connection's byte stream (rule 5)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes received; return the messages they complete, in order."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 2:
            size = (self._buf[0] << 8) | self._buf[1]
            if len(self._buf) < 2 + size:
                break
            out.append(bytes(self._buf[2:2 + size]))
            del self._buf[:2 + size]
        return out

    @property
    def pending(self) -> int:
        """Bytes received that do not finish a message yet."""
        return len(self._buf)
