"""proxy.protocol.dns: queries as nginx sends them, answers read strictly (malformed messages,
compression pointer loops, CNAME chains, TTLs)."""

from __future__ import annotations

import struct

import pytest

from proxy.protocol import dns


def _header(qid: int, flags: int, an: int) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, 1, an, 0, 0)


QNAME = b"\x03app\x04test\x00"


def _question(qtype: int = dns.A) -> bytes:
    return QNAME + struct.pack("!HH", qtype, 1)


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def test_query_bytes() -> None:
    q = dns.query(0x1234, "App.Test.", dns.AAAA)
    assert q == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + \
        b"\x03App\x04Test\x00" + struct.pack("!HH", 28, 1)


def test_answer_with_pointer_and_cname_chain() -> None:
    body = _question() + _rr(b"\xc0\x0c", dns.CNAME, 300, b"\x04real\xc0\x10") + \
        _rr(b"\x04real\xc0\x10", dns.A, 60, bytes([127, 0, 0, 1])) + \
        _rr(b"\x04real\xc0\x10", dns.A, 30, bytes([127, 0, 0, 2]))
    ans = dns.parse(_header(7, 0x8180, 3) + body)
    assert (ans.qid, ans.rcode, ans.question, ans.qtype) == (7, 0, "app.test", dns.A)
    assert dns.addresses(ans, "APP.test", dns.A) == (["127.0.0.1", "127.0.0.2"], 30)
    assert dns.addresses(ans, "app.test", dns.AAAA) == ([], None)


def test_nxdomain_rcode() -> None:
    ans = dns.parse(_header(1, 0x8183, 0) + _question())
    assert ans.rcode == 3 and dns.RCODE_TEXT[3] == "Host not found"


@pytest.mark.parametrize("data", [
    b"",
    _header(1, 0x0100, 0) + _question(),  # a query, not an answer
    _header(1, 0x8180, 1) + _question() + b"\xc0\x0c",  # record cut short
    _header(1, 0x8180, 1) + _question() + _rr(b"\xc0\x0c", dns.A, 1, b"\x01\x02"),  # bad A
    _header(1, 0x8180, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1),  # pointer to itself
    _header(1, 0x8180, 0) + b"\x05ab",  # label past the end
    _header(1, 0x8180, 0) + b"\x80" + struct.pack("!HH", 1, 1),  # unknown label type
])
def test_malformed_messages_are_refused(data: bytes) -> None:
    with pytest.raises(dns.DnsError):
        dns.parse(data)


def test_cname_loop_ends() -> None:
    body = _question() + _rr(b"\xc0\x0c", dns.CNAME, 5, b"\x03app\x04test\x00")
    ans = dns.parse(_header(1, 0x8180, 1) + body)
    assert dns.addresses(ans, "app.test", dns.A) == ([], None)
