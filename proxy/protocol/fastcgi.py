"""FastCGI records, sans-I/O: the client side of a FastCGI responder (FastCGI 1.0 specification).

Rules:

1. A record is an 8-byte header (version 1, type, request id, content length, padding length,
   reserved) then content and padding. nginx pads every record's content to a multiple of 8 and
   sends at most 32 KiB of content per record; :func:`encode_request` does the same.
2. A request is ``FCGI_BEGIN_REQUEST`` (role RESPONDER, flag KEEP_CONN when asked), the params as
   name-value pairs in ``FCGI_PARAMS`` records closed by an empty one, the body in
   ``FCGI_STDIN`` records closed by an empty one (:func:`stdin_records` for a streamed body).
3. Lengths of a name-value pair take one byte below 128, else four bytes with the top bit set.
4. :class:`ResponseParser` takes bytes and returns events: stdout and stderr data and the end of
   the request (``FCGI_END_REQUEST``); records for another request id are an error, unknown record
   types are skipped (the specification's ``FCGI_UNKNOWN_TYPE`` is for the application side).
5. :class:`CgiHeaderParser` reads the CGI header block at the start of stdout (``Name: value``
   lines ended by an empty line, LF or CRLF) as ngx_http_parse_header_line does; ``Status`` and
   ``Location`` decide the status (ngx_http_fastcgi_process_header): ``Status: 404 Not Found``
   gives 404 and that status line, a ``Location`` without ``Status`` gives 302, else 200.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Iterable

VERSION = 1
RESPONDER = 1
KEEP_CONN = 1
MAX_CONTENT = 32 * 1024
"""nginx puts at most 32 KiB of content in one record (ngx_http_fastcgi_create_request)."""
_HEADER = struct.Struct(">BBHHBx")


class RecordType(enum.IntEnum):
    BEGIN_REQUEST = 1
    ABORT_REQUEST = 2
    END_REQUEST = 3
    PARAMS = 4
    STDIN = 5
    STDOUT = 6
    STDERR = 7
    DATA = 8
    GET_VALUES = 9
    GET_VALUES_RESULT = 10
    UNKNOWN_TYPE = 11


class ProtocolStatus(enum.IntEnum):
    REQUEST_COMPLETE = 0
    CANT_MPX_CONN = 1
    OVERLOADED = 2
    UNKNOWN_ROLE = 3


class FastCGIError(Exception):
    """The application broke the protocol (nginx: "upstream sent ..."; the client gets 502)."""

    status_hint = 502


def record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record, content padded to a multiple of 8 (as nginx pads)."""
    if len(content) > 0xFFFF:
        raise ValueError("record content longer than 65535 bytes")
    pad = -len(content) % 8
    return _HEADER.pack(VERSION, rtype, request_id, len(content), pad) + content + b"\0" * pad


def _length(n: int) -> bytes:
    return bytes((n,)) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Name-value pairs (rule 3)."""
    return b"".join(_length(len(k)) + _length(len(v)) + k + v for k, v in pairs)


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """The inverse of :func:`encode_pairs` (for applications and tests)."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0

    def length() -> int:
        nonlocal pos
        if pos >= len(data):
            raise FastCGIError("truncated name-value pair")
        if data[pos] < 128:
            pos += 1
            return data[pos - 1]
        if pos + 4 > len(data):
            raise FastCGIError("truncated name-value pair")
        n = struct.unpack_from(">I", data, pos)[0] & 0x7FFFFFFF
        pos += 4
        return int(n)

    while pos < len(data):
        kl = length()
        vl = length()
        if pos + kl + vl > len(data):
            raise FastCGIError("truncated name-value pair")
        out.append((data[pos:pos + kl], data[pos + kl:pos + kl + vl]))
        pos += kl + vl
    return out


def _stream(rtype: int, request_id: int, data: bytes) -> bytes:
    return b"".join(record(rtype, request_id, data[i:i + MAX_CONTENT])
                    for i in range(0, len(data), MAX_CONTENT))


def begin_request(request_id: int = 1, *, keep_conn: bool = False) -> bytes:
    body = struct.pack(">HB5x", RESPONDER, KEEP_CONN if keep_conn else 0)
    return record(RecordType.BEGIN_REQUEST, request_id, body)


def params_records(pairs: Iterable[tuple[bytes, bytes]], request_id: int = 1) -> bytes:
    """The params, then the empty ``FCGI_PARAMS`` record that ends them."""
    return _stream(RecordType.PARAMS, request_id, encode_pairs(pairs)) + \
        record(RecordType.PARAMS, request_id)


def stdin_records(data: bytes, request_id: int = 1, *, last: bool = False) -> bytes:
    """Body bytes as ``FCGI_STDIN`` records; ``last`` adds the empty record that ends stdin."""
    out = _stream(RecordType.STDIN, request_id, data)
    if last:
        out += record(RecordType.STDIN, request_id)
    return out


def encode_request(pairs: Iterable[tuple[bytes, bytes]], body: bytes | None, *,
                   request_id: int = 1, keep_conn: bool = False) -> bytes:
    """A whole request (rule 2); ``body`` None sends only the empty stdin record."""
    return (begin_request(request_id, keep_conn=keep_conn) + params_records(pairs, request_id)
            + stdin_records(body or b"", request_id, last=True))


# -- the application's answer -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Stdout:
    data: bytes


@dataclass(frozen=True, slots=True)
class Stderr:
    data: bytes


@dataclass(frozen=True, slots=True)
class EndRequest:
    app_status: int
    protocol_status: int


Event = Stdout | Stderr | EndRequest


class ResponseParser:
    """Bytes from the application in, events out (rule 4)."""

    def __init__(self, request_id: int = 1) -> None:
        self.request_id = request_id
        self._buf = bytearray()
        self.ended = False

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed (after FCGI_END_REQUEST: bytes that followed it)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        if self.ended:
            return []  # nginx ignores what follows FCGI_END_REQUEST on a closing connection
        self._buf += data
        out: list[Event] = []
        buf = self._buf
        while len(buf) >= 8:
            version, rtype, rid, clen, plen = _HEADER.unpack_from(buf, 0)
            if version != VERSION:
                raise FastCGIError(f"upstream sent unsupported FastCGI protocol version: {version}")
            total = 8 + clen + plen
            if len(buf) < total:
                break
            content = bytes(buf[8:8 + clen])
            del buf[:total]
            if rid != self.request_id and rtype != RecordType.UNKNOWN_TYPE:
                raise FastCGIError(f"upstream sent invalid FastCGI request id: {rid}")
            if rtype == RecordType.STDOUT:
                if content:
                    out.append(Stdout(content))
            elif rtype == RecordType.STDERR:
                if content:
                    out.append(Stderr(content))
            elif rtype == RecordType.END_REQUEST:
                if clen < 8:
                    raise FastCGIError("upstream sent short FCGI_END_REQUEST")
                app, proto = struct.unpack_from(">IB", content, 0)
                out.append(EndRequest(app, proto))
                self.ended = True
                break
            else:
                raise FastCGIError(f"upstream sent invalid FastCGI record type: {rtype}")
        return out


@dataclass(frozen=True, slots=True)
class CgiHead:
    status: int
    """The status nginx sends (rule 5)."""
    status_line: bytes
    """The status line nginx sends: the Status header's value as written, or ``302 Moved
    Temporarily`` / ``200 OK``."""
    headers: tuple[tuple[bytes, bytes], ...]
    """Every header as sent (Status included: the caller hides it)."""
    size: int
    """Bytes the header block took (empty line included)."""


class CgiHeaderParser:
    """The CGI header block at the start of stdout (rule 5)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """The most bytes the block may take (``fastcgi_buffer_size``)."""
        self._buf = bytearray()

    def feed(self, data: bytes) -> tuple[CgiHead, bytes] | None:
        """The head and the body bytes after it once the block is complete, else None."""
        self._buf += data
        buf = bytes(self._buf)
        headers: list[tuple[bytes, bytes]] = []
        pos = 0
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if len(buf) > self.limit:
                    raise FastCGIError("upstream sent too big header")
                return None
            line = buf[pos:nl]
            if line.endswith(b"\r"):
                line = line[:-1]
            pos = nl + 1
            if pos > self.limit:
                raise FastCGIError("upstream sent too big header")
            if not line:
                break
            name, colon, value = line.partition(b":")
            if not colon or not name or any(c in b" \t" for c in name):
                raise FastCGIError("upstream sent invalid header")
            headers.append((name, value.strip(b" \t")))
        status_line = b""
        status = 200
        for name, value in headers:
            if name.lower() == b"status":
                digits = value[:3]
                if len(digits) < 3 or not digits.isdigit():
                    raise FastCGIError("upstream sent invalid status")
                status, status_line = int(digits), value
                break
        else:
            if any(n.lower() == b"location" for n, _ in headers):
                status, status_line = 302, b"302 Moved Temporarily"
            else:
                status_line = b"200 OK"
        return CgiHead(status, status_line, tuple(headers), pos), buf[pos:]
