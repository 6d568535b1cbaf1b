"""proxy.protocol.dns over TCP (RFC 1035 §4.2.2): each message behind its two-byte length,
read back from a stream cut anywhere."""

from __future__ import annotations

import struct

import pytest

from proxy.protocol import dns


def _answer(qid: int, n: int) -> bytes:
    head = struct.pack("!HHHHHH", qid, 0x8180, 1, n, 0, 0)
    rr = b"\xc0\x0c" + struct.pack("!HHIH", dns.A, 1, 60, 4) + bytes([127, 0, 0, 1])
    return head + b"\x04many\x04test\x00" + struct.pack("!HH", dns.A, 1) + rr * n


def test_frame_is_length_then_message() -> None:
    q = dns.query(0x0102, "many.test", dns.A)
    assert dns.tcp_frame(q) == struct.pack("!H", len(q)) + q
    with pytest.raises(dns.DnsError):
        dns.tcp_frame(b"x" * 0x10000)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 5000])
def test_stream_split_anywhere(chunk: int) -> None:
    """Two answers (one over 512 bytes, as a truncated UDP one would have been) and an empty
    message, fed in pieces of ``chunk`` bytes, come out whole and in order."""
    first, second = _answer(1, 40), _answer(2, 1)
    wire = dns.tcp_frame(first) + dns.tcp_frame(b"") + dns.tcp_frame(second)
    stream = dns.TcpStream()
    got: list[bytes] = []
    for i in range(0, len(wire), chunk):
        got += stream.feed(wire[i:i + chunk])
    assert got == [first, b"", second]
    assert stream.pending == 0
    ans = dns.parse(got[0])
    assert ans.qid == 1 and not ans.truncated
    assert dns.addresses(ans, "many.test", dns.A) == (["127.0.0.1"] * 40, 60)


def test_incomplete_message_waits() -> None:
    stream = dns.TcpStream()
    msg = _answer(3, 2)
    assert stream.feed(dns.tcp_frame(msg)[:-1]) == []
    assert stream.pending == len(msg) + 1
    assert stream.feed(msg[-1:]) == [msg]


def test_truncated_flag_is_read() -> None:
    head = struct.pack("!HHHHHH", 9, 0x8380, 1, 0, 0, 0)
    ans = dns.parse(head + b"\x04many\x04test\x00" + struct.pack("!HH", dns.A, 1))
    assert ans.truncated and dns.addresses(ans, "many.test", dns.A) == ([], None)
