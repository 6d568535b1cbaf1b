"""HTTP/1.x server side, sans-I/O: client bytes in, request events out; responses in, bytes out.

Requests are judged the way Debian's nginx 1.22.1 judges them (``ngx_http_parse_request_line``,
``ngx_http_parse_header_line``, ``ngx_http_process_request_headers``,
``ngx_http_alloc_large_header_buffer``, ``ngx_http_parse_chunked``); every rule below was checked
against the real binary (``tests/compat/test_h1_hygiene_vs_nginx.py``).

Rules:

1. Stream ids count the requests of the connection: 1, 2, 3...  Pipelined requests are parsed
   eagerly (up to ``H1Limits.max_pipelined`` unanswered ones) and their events come out in order.
   ``max_pipelined=1`` reproduces nginx exactly: it reads request N+1 only after answering N.
2. A request nginx refuses becomes ``RequestRejected(status_hint=...)`` and nothing of it goes out
   as ``RequestHeaders``; nothing after it is parsed.  ``status_hint`` is the status nginx uses for
   its error page: 494 means nginx's "Request Header Or Cookie Too Large" page, sent with status
   400 on the wire; 0 means nginx closes the connection without answering.  A request refused
   after its headers went out (bad chunked body, body cut short by EOF) gets a ``RequestRejected``
   on its stream id too.  A refused head says what nginx had parsed of it, as nginx's access log
   shows it (``request_line``, and ``method``, ``target``, ``http_version``, ``raw_headers``,
   ``host`` once the request line was accepted); ``partial_request()`` says the same of a head
   still arriving (client_header_timeout: nginx logs a 408).
3. ``RequestHeaders.end_stream`` is True when no body follows; such a request gets no
   ``RequestEnd``.  A body arrives as ``RequestData`` pieces (transfer coding removed, pieces of one
   ``receive_data`` call joined), then ``RequestEnd``; trailers are dropped.
4. Responses are sent in stream-id order, one at a time: ``ResponseHeaders``, then ``ResponseData``
   and ``ResponseEnd`` unless the headers said ``end_stream``.  The adapter owns the framing: it
   adds ``Transfer-Encoding: chunked`` (a body, no Content-Length, an HTTP/1.1 client), closes after
   a close-delimited body (HTTP/1.0 client), writes ``Connection`` on every response, and drops the
   body of HEAD, 1xx, 204 and 304 responses.  An engine ``Connection: close`` (or
   ``close_after_response()``) turns keep-alive off; other engine ``Connection`` and
   ``Transfer-Encoding`` headers are replaced by the adapter's.
5. Headers go out in nginx's order (ngx_http_header_filter): Server, Date, Content-Type,
   Content-Length, Last-Modified, Location, Transfer-Encoding, Connection, Keep-Alive (only if
   given, only on keep-alive), then the others in the order given.  nginx puts Last-Modified and
   Location in that early block only when it made them itself (a static file, a relative redirect
   made absolute); an upstream's or an ``add_header``'s come later, in list order.  An engine that
   knows the difference puts an empty ``(b"Connection", b"")`` where nginx's own headers end:
   nothing after it is moved.
6. Upgrades (WebSocket): a request with an ``Upgrade`` header holds back the parsing of what
   follows until its response head is sent.  A 101 makes the connection a tunnel: client bytes come
   out as ``RequestData`` on that stream (EOF as ``RequestEnd``) and ``ResponseData`` is written
   raw; or the I/O layer takes the buffered bytes with ``tunnel_bytes()`` and relays by itself.
   Any other status and parsing resumes.
7. No I/O and no clocks.  The I/O layer calls ``receive_data`` with what it read (``b""`` at EOF),
   writes ``data_to_send()`` after a batch of ``send`` calls, calls ``next_events()`` after each
   response head or end (a held or paused request may be waiting), stops reading while ``paused``
   and closes the transport once ``must_close`` (nginx would close now; ``keep_alive`` is False).
8. Fast path: a head that arrives whole, with CRLF line ends and no tab or fold, is parsed by
   httptools (llhttp) and then checked by the same rules as the slow path; what llhttp refuses,
   and every head that arrives in pieces, goes through the nginx-exact line scanner of this
   module.  Both give the same answer (``tests/protocol/test_h1.py`` checks it).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, NamedTuple, assert_never

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from ._rules import MAX_OFF_T, content_length, valid_host
from .events import (
    RequestData,
    RequestEnd,
    RequestEvent,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseEvent,
    ResponseHeaders,
    StreamReset,
)

__all__ = ["REASONS", "H1Limits", "H1Server", "LocalProtocolError"]

# ---------------------------------------------------------------------------------------------
# nginx's status lines (ngx_http_header_filter_module.c: ngx_http_status_lines).  A code missing
# here goes out as "HTTP/1.1 <code> " with an empty reason (nginx keeps the space).

REASONS: Final[dict[int, bytes]] = {
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Moved Temporarily",
    303: b"See Other",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    402: b"Payment Required",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Not Allowed",
    406: b"Not Acceptable",
    408: b"Request Time-out",
    409: b"Conflict",
    410: b"Gone",
    411: b"Length Required",
    412: b"Precondition Failed",
    413: b"Request Entity Too Large",
    414: b"Request-URI Too Large",
    415: b"Unsupported Media Type",
    416: b"Requested Range Not Satisfiable",
    421: b"Misdirected Request",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Temporarily Unavailable",
    504: b"Gateway Time-out",
    505: b"HTTP Version Not Supported",
    507: b"Insufficient Storage",
}
"""Reason phrases nginx 1.22 writes for its own responses (a proxied one keeps the upstream's)."""

_STATUS_LINES: Final[dict[int, bytes]] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in REASONS.items()
}

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n"
"""What nginx writes for ``Expect: 100-continue`` (ngx_http_request_body.c)."""


def _status_line(status: int, reason: bytes | None) -> bytes:
    if reason is None:
        line = _STATUS_LINES.get(status)
        return line if line is not None else b"HTTP/1.1 %03d \r\n" % status
    if reason:
        return b"HTTP/1.1 %03d %s\r\n" % (status, reason)
    return b"HTTP/1.1 %03d\r\n" % status


# ---------------------------------------------------------------------------------------------
# limits and errors


@dataclass(frozen=True, slots=True, kw_only=True)
class H1Limits:
    """nginx's request-size directives, as one connection's adapter applies them."""

    client_header_buffer_size: int = 1024
    """nginx ``client_header_buffer_size``: the first buffer a request head is read into."""
    large_header_buffers: tuple[int, int] = (4, 8192)
    """nginx ``large_client_header_buffers number size``: no request line or header line may be
    longer than ``size`` (414 / 494) and a head that outgrows the first buffer may use ``number``
    of these, lines never split across two (494)."""
    max_body_size: int | None = None
    """nginx ``client_max_body_size`` (413); None or 0: not checked here (the engine checks it per
    location, where nginx does)."""
    underscores_in_headers: bool = False
    """nginx ``underscores_in_headers``: a name with ``_`` is valid."""
    ignore_invalid_headers: bool = True
    """nginx ``ignore_invalid_headers``: a header with an invalid name is dropped silently."""
    max_pipelined: int = 16
    """Requests handed to the engine and not yet answered before parsing stops (back-pressure,
    ``H1Server.paused``); 1 is nginx's own strictly sequential behaviour."""

    def __post_init__(self) -> None:
        number, size = self.large_header_buffers
        if self.client_header_buffer_size < 1 or number < 1 or size < 1:
            raise ValueError(f"header buffer sizes must be positive: {self!r}")
        if self.max_body_size is not None and self.max_body_size < 0:
            raise ValueError(f"max_body_size must not be negative: {self.max_body_size}")
        if self.max_pipelined < 1:
            raise ValueError(f"max_pipelined must be at least 1: {self.max_pipelined}")


class LocalProtocolError(RuntimeError):
    """The engine broke the adapter's contract (a response out of order, data before headers...).

    Peer errors never raise: they become ``RequestRejected`` events.
    """


# ---------------------------------------------------------------------------------------------
# header names (ngx_http_parse_header_line's lowcase table; ngx_http_headers_in)

_NAME_NGX: Final = re.compile(rb"[A-Za-z0-9-]+")
_NAME_NGX_US: Final = re.compile(rb"[A-Za-z0-9_-]+")

_K_OTHER: Final = 0
_K_HOST: Final = 1
_K_CL: Final = 2
_K_TE: Final = 3
_K_CONN: Final = 4
_K_UPGRADE: Final = 5
_K_UNIQUE: Final = 6
_V_UNDERSCORE: Final = 8
"""Valid only with ``underscores_in_headers on``."""
_V_BAD: Final = 16
"""Characters outside nginx's header-name set (dropped while ``ignore_invalid_headers on``)."""

_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _K_HOST,
    b"content-length": _K_CL,
    b"transfer-encoding": _K_TE,
    b"connection": _K_CONN,
    b"upgrade": _K_UPGRADE,
    # ngx_http_process_unique_header_line: a second one is a 400 (checked against 1.22.1)
    b"if-modified-since": _K_UNIQUE,
    b"if-unmodified-since": _K_UNIQUE,
    b"if-match": _K_UNIQUE,
    b"if-none-match": _K_UNIQUE,
    b"content-range": _K_UNIQUE,
    b"if-range": _K_UNIQUE,
    b"expect": _K_UNIQUE,
    b"authorization": _K_UNIQUE,
}

_NAME_INFO: dict[bytes, int] = {}
_NAME_CACHE_MAX: Final = 4096


def _name_info(name: bytes) -> int:
    """Kind and validity of a header name, cached (names repeat across requests)."""
    info = _NAME_INFO.get(name)
    if info is None:
        if _NAME_NGX.fullmatch(name):
            info = _SPECIAL.get(name.lower(), _K_OTHER)
        elif _NAME_NGX_US.fullmatch(name):
            info = _V_UNDERSCORE
        else:
            info = _V_BAD
        if len(_NAME_INFO) < _NAME_CACHE_MAX:
            _NAME_INFO[name] = info
    return info


_MAX_OFF_T: Final = MAX_OFF_T


# ---------------------------------------------------------------------------------------------
# the nginx-exact scanners (slow path): they work on a whole line or on a prefix of one, and
# report the first error nginx would see, which is what decides 400 / 505 / 414 / 494.


class _Reject(NamedTuple):
    """A refusal: what ``RequestRejected`` will say."""

    status: int
    """nginx's status (494: its "Request Header Or Cookie Too Large" page, 0: close silently)."""
    why: str
    """nginx's error-log wording."""


_RE_METHOD: Final = re.compile(rb"[A-Z_-]+")
_RE_SPACES: Final = re.compile(rb" *")
_RE_URI: Final = re.compile(rb"[^\x00-\x20\x7f]*")
_RE_SCHEME: Final = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*")
_RE_HOST: Final = re.compile(rb"[A-Za-z0-9.-]*")
_RE_IP_LITERAL: Final = re.compile(rb"[0-9A-Za-z:._~!$&'()*+,;=-]*")
_RE_DIGITS: Final = re.compile(rb"[0-9]*")
_RE_CR_LF: Final = re.compile(rb"\r*\n?")
_RE_NAME: Final = re.compile(rb"[^\x00-\x20\x7f:]*")
_RE_VALUE: Final = re.compile(rb"[^\x00\r\n]*")


def _run(pattern: re.Pattern[bytes], data: bytes, pos: int = 0) -> int:
    """End of the run of ``pattern`` (which matches the empty string) at ``pos``."""
    m = pattern.match(data, pos)
    assert m is not None
    return m.end()


_INVALID_REQUEST: Final = _Reject(400, "client sent invalid request")
_INVALID_METHOD: Final = _Reject(400, "client sent invalid method")
_INVALID_VERSION: Final = _Reject(505, "client sent invalid HTTP version")
_INVALID_HEADER: Final = _Reject(400, "client sent invalid header line")


@dataclass(slots=True)
class _RequestLine:
    method: bytes
    target: bytes
    version: int
    """nginx's ``http_version``: 1000 * major + minor (9 for HTTP/0.9)."""
    host: bytes | None
    """Host part of an absolute-form target (with its port)."""
    raw: bytes | None = None
    """The line as sent, without its CR LF (nginx's ``$request``); set by the slow path, and by
    the fast path when the head is refused."""


def _scan_request_line(line: bytes) -> _RequestLine | _Reject | None:
    """ngx_http_parse_request_line on ``line`` (leading CR/LF already skipped).

    Returns the parsed line when ``line`` ends with its LF, the rejection at the first bad byte,
    or None when ``line`` is a valid prefix so far.
    """
    n = len(line)
    m = _RE_METHOD.match(line)
    i = m.end() if m else 0
    if i == n:
        return None
    if i == 0 or line[i] != 0x20:
        return _INVALID_METHOD
    method = line[:i]
    i = _run(_RE_SPACES, line, i)
    if i == n:
        return None
    start = i
    host: bytes | None = None
    c = line[i]
    if c == 0x2F:  # "/"
        i = _run(_RE_URI, line, i + 1)
    elif 0x61 <= (c | 0x20) <= 0x7A:  # a letter: absolute-form, scheme first
        i = _run(_RE_SCHEME, line, i)
        for expected in b"://":
            if i == n:
                return None
            if line[i] != expected:
                return _INVALID_REQUEST
            i += 1
        if i == n:
            return None
        host_start = i
        if line[i] == 0x5B:  # "[" IP literal
            i = _run(_RE_IP_LITERAL, line, i + 1)
            if i == n:
                return None
            if line[i] != 0x5D:
                return _INVALID_REQUEST
            i += 1
        else:
            i = _run(_RE_HOST, line, i)
        if i == n:
            return None
        if line[i] == 0x3A:  # ":" port
            i = _run(_RE_DIGITS, line, i + 1)
            if i == n:
                return None
        host = line[host_start:i]
        c = line[i]
        if c == 0x2F or c == 0x3F:  # "/" or "?"
            i = _run(_RE_URI, line, i + 1)
        elif c != 0x20:
            return _INVALID_REQUEST
    else:
        return _INVALID_REQUEST
    target = line[start:i]
    if i == n:
        return None
    c = line[i]
    if c == 0x20:
        i = _run(_RE_SPACES, line, i)
        if i == n:
            return None
        c = line[i]
    if c == 0x0A or c == 0x0D:  # HTTP/0.9: no version
        return _line_end(line, i, _RequestLine(method, target, 9, host))
    if c != 0x48 or line[i - 1] != 0x20:  # "H" after a space
        return _INVALID_REQUEST
    avail = line[i : i + 5]
    if not b"HTTP/".startswith(avail):
        return _INVALID_REQUEST
    if len(avail) < 5:
        return None
    i += 5
    if i == n:
        return None
    c = line[i]
    if not 0x31 <= c <= 0x39:  # first major digit 1-9
        return _INVALID_REQUEST
    if c != 0x31:
        return _INVALID_VERSION
    i += 1
    if i == n:
        return None
    c = line[i]
    if 0x30 <= c <= 0x39:  # major >= 10
        return _INVALID_VERSION
    if c != 0x2E:
        return _INVALID_REQUEST
    i += 1
    j = _run(_RE_DIGITS, line, i)
    if j == i:
        return None if i == n else _INVALID_REQUEST
    digits = line[i:j].lstrip(b"0")
    if len(digits) > 3 or (digits and int(digits) > 999):
        return _INVALID_REQUEST  # nginx: "if (r->http_minor > 99)" before each further digit
    minor = int(digits) if digits else 0
    if j == n:
        return None
    i = _run(_RE_SPACES, line, j)
    if i == n:
        return None
    if line[i] != 0x0A and line[i] != 0x0D:
        return _INVALID_REQUEST
    return _line_end(line, i, _RequestLine(method, target, 1000 + minor, host))


def _line_end(line: bytes, i: int, parsed: _RequestLine) -> _RequestLine | _Reject | None:
    """Request line ends at ``line[i]``: LF, or one CR then LF."""
    if line[i] == 0x0D:
        if i + 1 == len(line):
            return None
        if line[i + 1] != 0x0A:
            return _INVALID_REQUEST
    return parsed


class _EndOfHead:
    """The empty line that ends a head."""


_END: Final = _EndOfHead()


def _scan_header_line(line: bytes) -> tuple[bytes, bytes] | _Reject | _EndOfHead | None:
    """ngx_http_parse_header_line on one line (whole, with its LF, or a prefix).

    Returns ``(name, value)`` (value trimmed of spaces as nginx trims it), ``_END`` for the empty
    line, a rejection, or None for a valid prefix.
    """
    n = len(line)
    c = line[0]
    if c == 0x0A:
        return _END
    if c == 0x0D:
        if n == 1:
            return None
        return _END if line[1] == 0x0A else _INVALID_HEADER
    k = _run(_RE_NAME, line)
    if k == 0:  # ":", space or control first
        return _INVALID_HEADER
    if k == n:
        return None
    c = line[k]
    if c == 0x3A:  # ":"
        i = _run(_RE_SPACES, line, k + 1)
        j = _run(_RE_VALUE, line, i)
        if j == n:
            return None
        if line[j] == 0:
            return _INVALID_HEADER
        value = line[i:j].rstrip(b" ")
    elif c == 0x0D or c == 0x0A:  # a name alone: empty value
        j = k
        value = b""
    else:
        return _INVALID_HEADER
    if line[j] == 0x0D:  # CR+ LF
        e = _run(_RE_CR_LF, line, j)
        if e < n:
            return _INVALID_HEADER
        if line[e - 1] != 0x0A:
            return None
    return line[:k], value


class _Buffers:
    """nginx's header buffers (ngx_http_alloc_large_header_buffer) as line lengths fill them.

    A line that does not fit in the current buffer moves whole to a new large buffer; a line longer
    than a large buffer, or one more buffer than allowed, is refused.  ``place`` answers how many
    bytes of the refused line nginx had parsed by then (they may hold an earlier error).
    """

    __slots__ = ("cap", "used", "busy", "number", "size")

    def __init__(self, limits: H1Limits, lead: int) -> None:
        self.number, self.size = limits.large_header_buffers
        self.cap = limits.client_header_buffer_size
        # leading CR/LF: nginx restarts the first buffer whenever they fill it
        self.used = lead % self.cap
        self.busy = 0

    def place(self, length: int) -> int | None:
        """A complete line of ``length`` bytes (with its LF): None when it fits, else bytes seen."""
        if self.used + length <= self.cap:
            self.used += length
            return None
        free = self.cap - self.used
        if free >= self.size or self.busy >= self.number:
            return free
        if length > self.size:
            return self.size
        self.busy += 1
        self.cap = self.size
        self.used = length
        return None

    def partial(self, length: int) -> int | None:
        """An incomplete line of ``length`` bytes so far: bytes seen if nginx already refused it."""
        if self.used + length < self.cap:
            return None
        free = self.cap - self.used
        if free >= self.size or self.busy >= self.number:
            return free
        if length >= self.size:
            return self.size
        return None


# ---------------------------------------------------------------------------------------------
# head semantics shared by both paths (ngx_http_process_request_headers and
# ngx_http_process_request_header)

_CONN_DEFAULT: Final = 0
_CONN_CLOSE: Final = 1
_CONN_KEEP_ALIVE: Final = 2


class _Head:
    """What the header lines of one request amount to, checked line by line as nginx does."""

    __slots__ = (
        "allow_us",
        "ignore_invalid",
        "headers",
        "host",
        "cl",
        "te",
        "conn",
        "conn_upgrade",
        "upgrade",
        "unique",
    )

    def __init__(self, limits: H1Limits) -> None:
        self.allow_us = limits.underscores_in_headers
        self.ignore_invalid = limits.ignore_invalid_headers
        self.headers: list[tuple[bytes, bytes]] = []
        self.host: bytes | None = None
        self.cl: bytes | None = None
        self.te: bytes | None = None
        self.conn = _CONN_DEFAULT
        self.conn_upgrade = False
        self.upgrade: bytes | None = None
        self.unique: set[bytes] | None = None

    def add(self, name: bytes, value: bytes) -> _Reject | None:
        """One header line, in arrival order; a rejection ends the request."""
        kind = _name_info(name)
        if kind >= _V_UNDERSCORE:
            if not (kind == _V_UNDERSCORE and self.allow_us) and self.ignore_invalid:
                return None  # "client sent invalid header line", dropped
            kind = _K_OTHER
        self.headers.append((name, value))
        if kind == _K_OTHER:
            return None
        if kind == _K_HOST:
            if self.host is not None:
                return _Reject(400, "client sent duplicate host header")
            if not valid_host(value):
                return _Reject(400, "client sent invalid host header")
            self.host = value
        elif kind == _K_CONN:
            lower = value.lower()
            if b"close" in lower:  # ngx_strcasestrn, so any substring counts
                self.conn = _CONN_CLOSE
            elif b"keep-alive" in lower:
                self.conn = _CONN_KEEP_ALIVE
            if b"upgrade" in lower and any(t.strip() == b"upgrade" for t in lower.split(b",")):
                self.conn_upgrade = True
        elif kind == _K_UPGRADE:
            if self.upgrade is None:
                self.upgrade = value
        elif kind == _K_CL:
            if self.cl is not None:
                return _Reject(400, "client sent duplicate header line: Content-Length")
            self.cl = value
        elif kind == _K_TE:
            if self.te is not None:
                return _Reject(400, "client sent duplicate header line: Transfer-Encoding")
            self.te = value
        else:  # _K_UNIQUE
            lower = name.lower()
            if self.unique is None:
                self.unique = {lower}
            elif lower in self.unique:
                return _Reject(400, f"client sent duplicate header line: {name.decode('latin-1')}")
            else:
                self.unique.add(lower)
        return None


# ---------------------------------------------------------------------------------------------
# the slow path: nginx's scanners fed line by line, as the bytes arrive


class _SlowHead:
    """The nginx-exact head scanner, fed incrementally; it consumes complete lines only."""

    __slots__ = ("buffers", "head", "line", "off", "reject", "done", "checked", "seen")

    def __init__(self, limits: H1Limits, lead: int) -> None:
        self.buffers = _Buffers(limits, lead)
        self.head = _Head(limits)
        self.line: _RequestLine | None = None
        self.off = 0
        """Bytes of the head consumed so far (complete lines)."""
        self.reject: _Reject | None = None
        self.done = False
        self.checked = 0
        """Length of the incomplete line when it was last scanned."""
        self.seen: bytes | None = None
        """A request line that outgrew the buffers: the part nginx had (its ``$request``)."""

    def feed(self, buf: bytes, start: int, n: int, eof: bool) -> None:
        """Scan ``buf[start + off : n]`` until the head is decided or more bytes are needed.

        An incomplete line is rescanned only when it has doubled since its last scan (or at EOF):
        a bad byte in it is still found, at most one doubling late, and a client sending a byte at
        a time costs O(n log n), not O(n^2).
        """
        buffers = self.buffers
        while True:
            ls = start + self.off
            lf = buf.find(b"\n", ls, n)
            if lf < 0:
                if ls < n:
                    self._partial(buf, ls, n, eof)
                return
            self.checked = 0
            length = lf + 1 - ls
            line = buf[ls : lf + 1]
            seen = buffers.place(length)
            if seen is not None:
                self._too_long(line[:seen])
                return
            self.off += length
            if self.line is None:
                parsed = _scan_request_line(line)
                if not isinstance(parsed, _RequestLine):
                    self.reject = parsed if parsed is not None else _INVALID_REQUEST
                    return
                self.line = parsed
                parsed.raw = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
                if parsed.version == 9 and parsed.method != b"GET":
                    self.reject = _Reject(400, "client sent invalid method in HTTP/0.9 request")
                    return
                if parsed.host is not None and not valid_host(parsed.host):
                    self.reject = _Reject(400, "client sent invalid host in request line")
                    return
                if parsed.version == 9:  # no headers follow
                    self.done = True
                    return
                continue
            header = _scan_header_line(line)
            if header is _END:
                self.done = True
                return
            if header is None or isinstance(header, _Reject):
                self.reject = header if header is not None else _INVALID_HEADER
                return
            assert not isinstance(header, _EndOfHead)
            bad = self.head.add(header[0], header[1])
            if bad is not None:
                self.reject = bad
                return

    def _partial(self, buf: bytes, start: int, n: int, eof: bool) -> None:
        """An incomplete line: refused already if it is too long or holds a bad byte."""
        seen = self.buffers.partial(n - start)
        if seen is not None:
            self._too_long(buf[start : start + seen])
            return
        if n - start < 2 * self.checked and not eof:
            return
        self.checked = n - start
        line = buf[start:n]
        scanned = _scan_request_line(line) if self.line is None else _scan_header_line(line)
        if isinstance(scanned, _Reject):
            self.reject = scanned

    def _too_long(self, seen: bytes) -> None:
        """The line outgrew the buffers; an error in the part nginx had parsed comes first."""
        if self.line is None:
            self.seen = seen
            scanned = _scan_request_line(seen) if seen else None
            too_long = _Reject(414, "client sent too long URI")
            self.reject = scanned if isinstance(scanned, _Reject) else too_long
            return
        header = _scan_header_line(seen) if seen else None
        if isinstance(header, _Reject):
            self.reject = header
        else:
            self.reject = _Reject(494, "client sent too long header line")


# ---------------------------------------------------------------------------------------------
# connection state


class _Reading(Enum):
    """What the next client bytes are."""

    HEAD = "head"
    LENGTH = "length body"
    CHUNKED = "chunked body"
    TUNNEL = "tunnel"
    DONE = "done"
    """No further request is read (after a rejection, a closing request, EOF)."""

    # members are singletons: identity hashing (C) instead of Enum's hash of the name (Python),
    # as in protocol.h2's transition tables
    __hash__ = object.__hash__


class _Input(Enum):
    """What moves the reading side on."""

    HEAD_NO_BODY = "head without body"
    HEAD_LENGTH = "head with Content-Length body"
    HEAD_CHUNKED = "head with chunked body"
    BODY_END = "body complete"
    SWITCH = "101 sent"
    STOP = "reject, close or EOF"

    __hash__ = object.__hash__


_READING: Final[dict[tuple[_Reading, _Input], _Reading]] = {
    (_Reading.HEAD, _Input.HEAD_NO_BODY): _Reading.HEAD,
    (_Reading.HEAD, _Input.HEAD_LENGTH): _Reading.LENGTH,
    (_Reading.HEAD, _Input.HEAD_CHUNKED): _Reading.CHUNKED,
    (_Reading.LENGTH, _Input.BODY_END): _Reading.HEAD,
    (_Reading.CHUNKED, _Input.BODY_END): _Reading.HEAD,
    (_Reading.HEAD, _Input.SWITCH): _Reading.TUNNEL,
    (_Reading.HEAD, _Input.STOP): _Reading.DONE,
    (_Reading.LENGTH, _Input.STOP): _Reading.DONE,
    (_Reading.CHUNKED, _Input.STOP): _Reading.DONE,
    (_Reading.TUNNEL, _Input.STOP): _Reading.DONE,
    (_Reading.DONE, _Input.STOP): _Reading.DONE,
}
"""Reading-side transitions; a pair missing here is an adapter bug (LocalProtocolError)."""

# response framing of one stream
_F_WAIT: Final = 0
"""No response head yet."""
_F_NONE: Final = 1
"""HEAD, 1xx, 204, 304: the body is dropped."""
_F_LENGTH: Final = 2
_F_CHUNKED: Final = 3
_F_RAW: Final = 4
"""Close-delimited (HTTP/1.0 client, HTTP/0.9) or tunnel."""


class _Stream:
    """One request awaiting, or getting, its response."""

    __slots__ = ("sid", "version", "is_head", "keep_alive", "upgradable", "reject", "framing")

    def __init__(
        self, sid: int, version: int, is_head: bool, keep_alive: bool, upgradable: bool
    ) -> None:
        self.sid = sid
        self.version = version
        """nginx's http_version: 9, 1000, 1001..."""
        self.is_head = is_head
        self.keep_alive = keep_alive
        """The connection may go on after this response."""
        self.upgradable = upgradable
        """The request had an Upgrade header: a 101 makes a tunnel (ngx_http_upstream)."""
        self.reject: int | None = None
        self.framing = _F_WAIT


# response header names: 0-5 nginx's fixed block, then the ones the adapter owns
_R_OTHER: Final = -1
_R_CONTENT_LENGTH: Final = 3
_R_TE: Final = 6
_R_CONNECTION: Final = 7
_R_KEEP_ALIVE: Final = 8
_RESPONSE_RANK: Final[dict[bytes, int]] = {
    b"server": 0,
    b"date": 1,
    b"content-type": 2,
    b"content-length": _R_CONTENT_LENGTH,
    b"last-modified": 4,
    b"location": 5,
    b"transfer-encoding": _R_TE,
    b"connection": _R_CONNECTION,
    b"keep-alive": _R_KEEP_ALIVE,
}
_RANK_CACHE: dict[bytes, int] = {}


def _rank(name: bytes) -> int:
    rank = _RANK_CACHE.get(name)
    if rank is None:
        rank = _RESPONSE_RANK.get(name.lower(), _R_OTHER)
        if len(_RANK_CACHE) < _NAME_CACHE_MAX:
            _RANK_CACHE[name] = rank
    return rank


def _rank_key(item: tuple[int, bytes, bytes]) -> int:
    return item[0]


_NO_BODY_STATUS: Final = frozenset({204, 304})
_VERSIONS: Final = {1000: "1.0", 1001: "1.1"}
_HEAD_END: Final = b"\r\n\r\n"
_CRLF_RUN: Final = re.compile(rb"[\r\n]*")
_HEX_RUN: Final = re.compile(rb"[0-9A-Fa-f]*")
_CHUNK_SIZE_MAX: Final = _MAX_OFF_T // 16
"""ngx_http_parse_chunked refuses a size above NGX_MAX_OFF_T_VALUE / 16 once another byte comes."""
_BAD_CHUNK: Final = _Reject(400, "client sent invalid chunked body")

# chunked-body states (ngx_http_parse_chunked)
_C_SIZE: Final = 0
"""Hex digits of a chunk size."""
_C_EXT: Final = 1
"""Chunk extension, up to CR/LF: skipped."""
_C_SIZE_LF: Final = 2
"""After the CR ending a size line."""
_C_DATA: Final = 3
_C_DATA_END: Final = 4
"""CRLF or LF after chunk data."""
_C_DATA_LF: Final = 5
_C_TRAILER: Final = 6
"""Start of a trailer line or of the final empty line."""
_C_TRAILER_LINE: Final = 7
_C_TRAILER_LF: Final = 8
_C_END_LF: Final = 9
_C_DONE: Final = 10


def _rejected(
    sid: int,
    bad: _Reject,
    line: _RequestLine | None,
    h: _Head | None,
    raw: bytes,
    count: int | None = None,
) -> RequestRejected:
    """The ``RequestRejected`` of a refused head, with what nginx had of it for its access log.

    ``line`` is the parsed request line (None: not parsed whole, ``raw`` is what nginx had of
    it); ``h`` the header lines processed, of which the first ``count`` (all when None) count.
    nginx sets the method, URI and version only once the request line is parsed whole and
    accepted (ngx_http_process_request_line); a Host switches the virtual server as soon as it
    is processed (ngx_http_process_host), a host in the request line first of all.
    """
    if line is None or (line.version == 9 and line.method != b"GET"):
        # an HTTP/0.9 line with another method is refused by the parser itself
        had = line.raw if line is not None and line.raw is not None else raw
        return RequestRejected(
            stream_id=sid, status_hint=bad.status, reason=bad.why, request_line=had
        )
    version = line.version
    http_version = "0.9" if version == 9 else _VERSIONS.get(version) or f"1.{version - 1000}"
    request_line = line.raw
    if request_line is None:  # not reached: both paths set it before refusing
        request_line = b"%s %s HTTP/%s" % (line.method, line.target, http_version.encode())
    host: bytes | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if line.host is not None:
        host = line.host if valid_host(line.host) else None
    elif h is not None:
        host = h.host
    if h is not None:
        headers = tuple(h.headers if count is None else h.headers[:count])
    return RequestRejected(
        stream_id=sid,
        status_hint=bad.status,
        reason=bad.why,
        request_line=request_line,
        method=line.method,
        target=line.target,
        http_version=http_version,
        raw_headers=headers,
        host=host,
    )


class H1Server:
    """HTTP/1.0 and 1.1 server side of one client connection; see the module rules."""

    def __init__(self, limits: H1Limits = H1Limits()) -> None:
        self._limits = limits
        self._buf = b""
        self._reading = _Reading.HEAD
        self._next_sid = 1
        self._answered = 0
        """Highest stream id whose response is complete (or that needs none)."""
        self._cur: _Stream | None = None
        """The stream whose request was read last (its body may still be arriving)."""
        self._remaining = 0
        """LENGTH: body bytes still to come; CHUNKED: bytes left in the current chunk."""
        self._cstate = _C_SIZE
        self._csize = 0
        self._cdigit = False
        self._ctotal = 0
        self._queue: deque[_Stream] = deque()
        """Streams handed to the engine whose response is not finished, oldest first."""
        self._hold: _Stream | None = None
        """A request with Upgrade whose response head decides what the next bytes are."""
        self._tunnel_after: _Stream | None = None
        """101 sent while this stream's body is still being read: tunnel once it ends."""
        self._lead = 0
        """CR/LF bytes skipped before the current request line (they shift nginx's buffer)."""
        self._slow: _SlowHead | None = None
        self._eof = False
        self._must_close = False
        self._out: list[bytes] = []
        # fast path (httptools): one parser, reused while requests have no body
        self._parser: HttpRequestParser | None = None
        self._p_url = b""
        self._p_head = _Head(limits)
        self._p_keep = self._p_head.headers.append
        self._p_bad: _Reject | None = None
        self._p_bad_at = 0
        """Headers processed when ``_p_bad`` was found (later ones are not nginx's)."""
        self._p_complete = False
        self._p_done = False

    # -----------------------------------------------------------------------------------------
    # public API

    def receive_data(self, data: bytes) -> list[RequestEvent]:
        """Feed bytes read from the client.

        Args:
            data: what the transport read; ``b""`` when the client closed its side (EOF).

        Returns:
            The events these bytes complete, in order (possibly several requests' worth).
        """
        if data:
            if self._reading is not _Reading.DONE:
                self._buf = self._buf + data if self._buf else data
        else:
            self._eof = True
        return self.next_events()

    def next_events(self) -> list[RequestEvent]:
        """Parse what is buffered; call it after ``send`` let a held or paused request through.

        Returns:
            The events now available (``[]`` when there are none).
        """
        events: list[RequestEvent] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        while True:
            reading = self._reading
            if reading is _Reading.HEAD:
                if self._hold is not None or len(self._queue) >= self._limits.max_pipelined:
                    break
                if pos == n and self._slow is None:
                    if self._eof:
                        if self._lead:  # only CR/LF so far: nginx closes without answering
                            early = _Reject(0, "client closed early")
                            self._reject_head(events, self._new_stream(), early, None, None, b"")
                        else:
                            self._stop()
                    break
                pos = self._head(buf, pos, n, events)
                if self._slow is not None:
                    break  # an incomplete head: wait for more bytes
            elif reading is _Reading.LENGTH:
                cur = self._cur
                assert cur is not None
                take = min(self._remaining, n - pos)
                if take:
                    events.append(RequestData(stream_id=cur.sid, data=buf[pos : pos + take]))
                    pos += take
                    self._remaining -= take
                if self._remaining == 0:
                    self._body_end(events, cur)
                elif self._eof:
                    self._reject(events, cur, 0, "client prematurely closed connection")
                else:
                    break
            elif reading is _Reading.CHUNKED:
                pos = self._chunked(buf, pos, n, events)
                if self._reading is _Reading.CHUNKED:
                    if not self._eof:
                        break
                    cur = self._cur
                    assert cur is not None
                    self._reject(events, cur, 0, "client prematurely closed connection")
            elif reading is _Reading.TUNNEL:
                cur = self._cur
                assert cur is not None
                if pos < n:
                    events.append(RequestData(stream_id=cur.sid, data=buf[pos:n]))
                    pos = n
                if self._eof:
                    events.append(RequestEnd(stream_id=cur.sid))
                    self._goto(_Input.STOP)
                    self._must_close = True
                break
            else:  # DONE: nginx reads and discards (lingering close)
                pos = n
                break
        self._buf = buf[pos:] if pos < n and self._reading is not _Reading.DONE else b""
        self._update_close()
        return events

    def send(self, event: ResponseEvent) -> None:
        """Queue a response event; its bytes come out of ``data_to_send``.

        Args:
            event: for the oldest unanswered stream.  Events for a stream already answered, and
                anything once ``must_close`` is set, are ignored.

        Raises:
            LocalProtocolError: the event is for a later stream than the one being answered, or
                out of order (data before headers, headers twice).
        """
        if self._must_close:
            return
        if isinstance(event, ResponseData):
            self.send_data(event.stream_id, event.data)
        elif isinstance(event, ResponseHeaders):
            self.send_head(event.stream_id, event.status, event.headers,
                           end_stream=event.end_stream, reason=event.reason)
        elif isinstance(event, ResponseEnd):
            self.send_end(event.stream_id)
        elif isinstance(event, StreamReset):
            # the response cannot be completed: nginx closes the connection
            if self._current(event.stream_id) is not None:
                self._must_close = True
                self._stop()
        else:
            assert_never(event)

    # The same as ``send`` with ResponseHeaders, ResponseData and ResponseEnd, without making the
    # event objects (the HTTP/1.x I/O layer calls these on its hot path).

    def send_head(
        self,
        stream_id: int,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        *,
        end_stream: bool = False,
        reason: bytes | None = None,
    ) -> None:
        """``send(ResponseHeaders(...))``."""
        if self._must_close:
            return
        stream = self._current(stream_id)
        if stream is not None:
            self._send_head(stream, status, headers, end_stream, reason)

    def send_data(self, stream_id: int, data: bytes) -> None:
        """``send(ResponseData(...))``."""
        if self._must_close:
            return
        stream = self._current(stream_id)
        if stream is None:
            return
        framing = stream.framing
        if framing == _F_CHUNKED:
            if data:
                self._out += (b"%x\r\n" % len(data), data, b"\r\n")
        elif framing == _F_LENGTH or framing == _F_RAW:
            if data:
                self._out.append(data)
        elif framing == _F_WAIT:
            raise LocalProtocolError(f"stream {stream.sid}: data before response headers")

    def send_end(self, stream_id: int) -> None:
        """``send(ResponseEnd(...))``."""
        if self._must_close:
            return
        stream = self._current(stream_id)
        if stream is None:
            return
        if stream.framing == _F_WAIT:
            raise LocalProtocolError(f"stream {stream.sid}: end before response headers")
        self._finish(stream)

    def data_to_send(self) -> bytes:
        """Drain the output: everything queued by ``send`` since the last call, as one bytes."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def close_after_response(self) -> None:
        """The response being sent (or about to be) is the connection's last (nginx's
        ``r->keepalive = 0``: error pages 400, 413, 414, 500, 501...)."""
        queue = self._queue
        if queue:
            queue[0].keep_alive = False
            self._no_more_after(queue[0])
        else:
            self._stop()

    def tunnel_bytes(self) -> bytes:
        """After a 101: the client bytes already received past the upgraded request.

        For an I/O layer that relays the tunnel itself: the adapter reads nothing more.
        """
        data = self._buf
        self._buf = b""
        self._stop()
        return data

    @property
    def keep_alive(self) -> bool:
        """May the connection be used after the response in progress (or just finished)."""
        if self._must_close:
            return False
        queue = self._queue
        if queue and queue[0].framing != _F_WAIT:
            return queue[0].keep_alive and (len(queue) > 1 or self._reading is not _Reading.DONE)
        return bool(queue) or self._reading is not _Reading.DONE

    @property
    def must_close(self) -> bool:
        """nginx would close now: close the transport once ``data_to_send()`` is written."""
        return self._must_close

    @property
    def paused(self) -> bool:
        """Parsing waits for responses (the pipelining limit, or an Upgrade request's answer).

        The I/O layer should stop reading from the socket meanwhile and call ``next_events``
        after sending a response head or end.
        """
        return self._reading is _Reading.HEAD and (
            self._hold is not None or len(self._queue) >= self._limits.max_pipelined
        )

    # -----------------------------------------------------------------------------------------
    # the compiled lane (proxy/lane.py): a request parsed and answered outside the adapter

    def lane_ready(self) -> bool:
        """Nothing buffered, no request in progress: the next bytes start a new head."""
        return (not self._buf and not self._queue and self._reading is _Reading.HEAD
                and self._slow is None and not self._lead and self._hold is None
                and not self._eof and not self._must_close)

    def lane_begin(self, close: bool) -> int:
        """Take the next stream id for a request the lane reads itself; ``close``: it said
        ``Connection: close``, nothing after it is read (as ``_request_done``)."""
        sid = self._next_sid
        self._next_sid = sid + 1
        if close:
            self._stop()
        return sid

    def lane_end(self, sid: int) -> None:
        """The lane answered stream ``sid`` (its response went out without the adapter)."""
        if sid > self._answered:
            self._answered = sid

    def lane_stream(self, sid: int, keep_alive: bool) -> None:
        """A lane request handed to the general path: the adapter answers stream ``sid``
        (an HTTP/1.1 GET without body), before any request parsed after it."""
        self._queue.appendleft(_Stream(sid, 1001, False, keep_alive, False))

    # -----------------------------------------------------------------------------------------
    # request side

    def _goto(self, inp: _Input) -> None:
        nxt = _READING.get((self._reading, inp))
        if nxt is None:
            was = self._reading
            self._reading = _Reading.DONE
            raise LocalProtocolError(f"Unexpected {inp.value} while reading {was.value}")
        self._reading = nxt

    def _new_stream(
        self,
        version: int = 1000,
        is_head: bool = False,
        keep_alive: bool = False,
        upgradable: bool = False,
    ) -> _Stream:
        stream = _Stream(self._next_sid, version, is_head, keep_alive, upgradable)
        self._next_sid += 1
        self._queue.append(stream)
        return stream

    def _stop(self) -> None:
        """No further request is read."""
        if self._reading is not _Reading.DONE:
            self._goto(_Input.STOP)
        self._slow = None
        self._lead = 0
        self._hold = None

    def _reject(self, events: list[RequestEvent], stream: _Stream, status: int, why: str) -> None:
        stream.reject = status
        stream.keep_alive = False
        events.append(RequestRejected(stream_id=stream.sid, status_hint=status, reason=why))
        self._stop()

    def _reject_head(
        self,
        events: list[RequestEvent],
        stream: _Stream,
        bad: _Reject,
        line: _RequestLine | None,
        h: _Head | None,
        raw: bytes = b"",
        count: int | None = None,
    ) -> None:
        """``_reject`` for a refused head, with what nginx had parsed of it (see ``_rejected``)."""
        stream.reject = bad.status
        stream.keep_alive = False
        events.append(_rejected(stream.sid, bad, line, h, raw, count))
        self._stop()

    def _unparsed_line(self, buf: bytes, pos: int, n: int, seen: bytes | None = None) -> bytes:
        """nginx's ``$request`` for a request line it refused or had not finished reading: from
        the request's start to the first CR or LF received (ngx_http_variable_request_line),
        within the buffer nginx had refused it in; ``seen``: the part of a line too long for
        the buffers (414, or an error in that part)."""
        if seen is not None:
            raw = seen
        else:
            end = n
            for stop in (b"\r", b"\n"):
                i = buf.find(stop, pos, end)
                if i >= 0:
                    end = i
            raw = buf[pos:end]
        cap = self._limits.client_header_buffer_size
        free = cap - self._lead % cap
        if len(raw) > free and isinstance(_scan_request_line(raw[:free]), _Reject):
            raw = raw[:free]  # refused in the first buffer, before a large one was taken
        return raw

    def partial_request(
        self, status: int = 408, why: str = "client timed out"
    ) -> RequestRejected | None:
        """The request head being read, as nginx logs it when the connection ends now
        (``client_header_timeout``: 408, the request line as far as it came).

        Returns:
            A ``RequestRejected`` (not queued: the adapter's state is unchanged), or None when no
            byte of a request has arrived (nginx logs nothing then).
        """
        if self._reading is not _Reading.HEAD:
            return None
        buf = self._buf
        slow = self._slow
        if slow is None and not buf and not self._lead:
            return None
        bad = _Reject(status, why)
        if slow is not None and slow.line is not None:
            return _rejected(self._next_sid, bad, slow.line, slow.head, b"")
        pos = _run(_CRLF_RUN, buf) if slow is None else 0
        raw = self._unparsed_line(buf, pos, len(buf))
        return _rejected(self._next_sid, bad, None, None, raw)

    def _head(self, buf: bytes, pos: int, n: int, events: list[RequestEvent]) -> int:
        """Parse one request head starting at ``pos``; return the position after what was used."""
        slow = self._slow
        if slow is None:
            c = buf[pos]
            if c == 0x0D or c == 0x0A:  # nginx skips CR/LF before a request line
                end = _run(_CRLF_RUN, buf, pos)
                self._lead += end - pos
                if end == n:
                    return end
                pos = end
            end = buf.find(_HEAD_END, pos)
            if end >= 0 and self._fast(buf, pos, end + 4, events):
                return end + 4
            slow = self._slow = _SlowHead(self._limits, self._lead)
        # the scanner keeps its place (``slow.off``) relative to ``pos``, where the head starts
        slow.feed(buf, pos, n, self._eof)
        if slow.reject is not None:
            self._slow = None
            line = slow.line
            version = 9 if line is not None and line.version == 9 else 1000
            raw = b"" if line is not None else self._unparsed_line(buf, pos, n, slow.seen)
            stream = self._new_stream(version=version)
            self._reject_head(events, stream, slow.reject, line, slow.head, raw)
            return n
        if not slow.done:
            if self._eof:
                self._slow = None
                cut = _Reject(0, "client prematurely closed connection")
                raw = self._unparsed_line(buf, pos, n) if slow.line is None else b""
                self._reject_head(events, self._new_stream(), cut, slow.line, slow.head, raw)
                return n
            return pos  # keep the head's bytes: the scanner resumes at ``slow.off``
        self._slow = None
        assert slow.line is not None
        self._emit(events, slow.line, slow.head)
        return pos + slow.off

    def _fast(self, buf: bytes, pos: int, end: int, events: list[RequestEvent]) -> bool:
        """httptools on a whole CRLF head; False sends it to the nginx-exact scanner instead.

        llhttp (strict) refuses bare LF, obs-fold, control bytes in a target or a value and
        unknown methods or versions; those heads go to the scanner.  A tab is the one thing llhttp
        takes differently (it skips tabs before a value, nginx keeps them), so it goes there too.
        """
        head = buf[pos:end]
        if head.find(b"\t") >= 0:
            return False
        limits = self._limits
        small = limits.client_header_buffer_size
        if self._lead % small + len(head) > small:
            buffers = _Buffers(limits, self._lead)
            for line in head.split(b"\n")[:-1]:
                if buffers.place(len(line) + 1) is not None:
                    return False
        parser = self._parser
        if parser is None:
            parser = self._parser = HttpRequestParser(self)
        h = self._p_head = _Head(limits)
        self._p_keep = h.headers.append
        self._p_bad = None
        self._p_complete = self._p_done = False
        try:
            parser.feed_data(head)
        except HttpParserUpgrade:
            self._parser = None
        except HttpParserError:
            self._parser = None
            return False
        if not self._p_complete:
            self._parser = None  # llhttp waits for a body this class reads itself
            if not self._p_done:
                return False
        version = parser.get_http_version()
        if version == "1.1":
            ver = 1001
        elif version == "1.0":
            ver = 1000
        else:
            self._parser = None
            return False
        url = self._p_url
        if url[:1] != b"/":  # origin-form only here
            self._parser = None
            return False
        if self._p_bad is not None:
            self._parser = None
            line = _RequestLine(parser.get_method(), url, ver, None, head[: head.find(b"\r\n")])
            stream = self._new_stream(version=ver)
            self._reject_head(events, stream, self._p_bad, line, h, count=self._p_bad_at)
            return True
        self._emit(events, _RequestLine(parser.get_method(), url, ver, None), h, head)
        return True

    # httptools callbacks (fast path)
    def on_message_begin(self) -> None:
        self._p_url = b""

    def on_url(self, url: bytes) -> None:
        self._p_url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if value[-1:] == b" ":  # llhttp keeps trailing spaces, nginx does not
            value = value.rstrip(b" ")
        if _NAME_INFO.get(name) == _K_OTHER:  # the common case, inline
            self._p_keep((name, value))
        elif self._p_bad is None:  # the first refusal wins, as in nginx
            self._p_bad = self._p_head.add(name, value)
            if self._p_bad is not None:  # nginx processed no header after it
                self._p_bad_at = len(self._p_head.headers)

    def on_headers_complete(self) -> None:
        self._p_done = True

    def on_message_complete(self) -> None:
        self._p_complete = True

    def _emit(
        self, events: list[RequestEvent], line: _RequestLine, h: _Head, head: bytes = b""
    ) -> None:
        """Checks made once the head is complete (ngx_http_process_request_header), then events.

        ``head``: the fast path's whole head (its request line is nginx's ``$request``).
        """
        self._lead = 0
        version = line.version
        method = line.method
        if version == 9:  # HTTP/0.9: no headers, GET only (checked by the scanner)
            stream = self._new_stream(version=9)
            events.append(
                RequestHeaders(
                    stream_id=stream.sid,
                    method=method,
                    target=line.target,
                    http_version="0.9",
                    raw_headers=(),
                    end_stream=True,
                    keep_alive=False,
                )
            )
            self._stop()
            return
        if h.conn == _CONN_DEFAULT:
            keep_alive = version > 1000
        else:
            keep_alive = h.conn == _CONN_KEEP_ALIVE
        stream = self._new_stream(version, method == b"HEAD", keep_alive, h.upgrade is not None)
        bad: _Reject | None = None
        length: int | None = None
        chunked = False
        if h.host is None and version > 1000:
            bad = _Reject(400, 'client sent HTTP/1.1 request without "Host" header')
        elif h.cl is not None and (length := content_length(h.cl)) is None:
            bad = _Reject(400, 'client sent invalid "Content-Length" header')
        elif h.te is not None:
            if version < 1001:
                bad = _Reject(400, 'client sent HTTP/1.0 request with "Transfer-Encoding" header')
            elif h.te.lower() != b"chunked":
                bad = _Reject(501, 'client sent unknown "Transfer-Encoding"')
            elif h.cl is not None:
                bad = _Reject(400, 'client sent "Content-Length" and "Transfer-Encoding" headers')
            else:
                chunked = True
        if bad is None:
            if method == b"TRACE" or method == b"CONNECT":
                bad = _Reject(405, f"client sent {method.decode()} method")
            elif length and self._limits.max_body_size and length > self._limits.max_body_size:
                bad = _Reject(413, f"client intended to send too large body: {length} bytes")
        if bad is not None:
            if line.raw is None:
                line.raw = head[: head.find(b"\r\n")]
            self._reject_head(events, stream, bad, line, h)
            return
        events.append(
            RequestHeaders(
                stream_id=stream.sid,
                method=method,
                target=line.target,
                http_version=_VERSIONS.get(version) or f"1.{version - 1000}",
                raw_headers=tuple(h.headers),
                host=h.host,
                content_length=length,
                chunked=chunked,
                end_stream=not chunked and not length,
                keep_alive=keep_alive,
                upgrade=h.upgrade if h.conn_upgrade else None,
            )
        )
        self._cur = stream
        if chunked:
            self._goto(_Input.HEAD_CHUNKED)
            self._cstate = _C_SIZE
            self._csize = self._ctotal = 0
            self._cdigit = False
        elif length:
            self._goto(_Input.HEAD_LENGTH)
            self._remaining = length
        else:  # (HEAD, HEAD_NO_BODY) -> HEAD: no table lookup on the hot path
            self._request_done(stream)

    def _body_end(self, events: list[RequestEvent], stream: _Stream) -> None:
        events.append(RequestEnd(stream_id=stream.sid))
        self._goto(_Input.BODY_END)
        self._request_done(stream)

    def _request_done(self, stream: _Stream) -> None:
        """The request is read: decide what the next bytes are."""
        if self._tunnel_after is stream:
            self._tunnel_after = None
            self._goto(_Input.SWITCH)
        elif stream.upgradable and stream.framing == _F_WAIT:
            self._hold = stream  # a 101 would make the rest tunnel bytes
        elif not stream.keep_alive:
            self._stop()  # nginx answers, then closes: what follows is never parsed

    def _chunked(self, buf: bytes, pos: int, n: int, events: list[RequestEvent]) -> int:
        """ngx_http_parse_chunked over ``buf[pos:n]``; returns the position reached."""
        cur = self._cur
        assert cur is not None
        pieces: list[bytes] = []
        state = self._cstate
        bad: _Reject | None = None
        while pos < n:
            if state == _C_DATA:
                take = min(self._remaining, n - pos)
                pieces.append(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                state = _C_DATA_END
            elif state == _C_SIZE:
                end = _run(_HEX_RUN, buf, pos)
                if end > pos:
                    self._cdigit = True
                    size = self._csize
                    for d in buf[pos:end] if size else buf[pos:end].lstrip(b"0"):
                        if size > _CHUNK_SIZE_MAX:  # checked before every further byte
                            bad = _BAD_CHUNK
                            break
                        size = size * 16 + (d - 48 if d < 58 else (d | 0x20) - 87)
                    self._csize = size
                    pos = end
                    if bad is not None or pos == n:
                        break
                if not self._cdigit or self._csize > _CHUNK_SIZE_MAX:
                    bad = _BAD_CHUNK
                    break
                c = buf[pos]
                pos += 1
                if c == 0x0A:
                    state, bad = self._chunk_start()
                elif c == 0x0D:
                    state = _C_SIZE_LF
                elif c == 0x3B or c == 0x20 or c == 0x09:  # ";", space, tab: an extension
                    state = _C_EXT
                else:
                    bad = _BAD_CHUNK
                if bad is not None:
                    break
            elif state == _C_EXT or state == _C_TRAILER_LINE:  # skip to CR or LF
                cr = buf.find(b"\r", pos, n)
                lf = buf.find(b"\n", pos, n)
                if lf >= 0 and (cr < 0 or lf < cr):
                    pos = lf + 1
                    if state == _C_TRAILER_LINE:
                        state = _C_TRAILER
                    else:
                        state, bad = self._chunk_start()
                        if bad is not None:
                            break
                elif cr >= 0:
                    pos = cr + 1
                    state = _C_TRAILER_LF if state == _C_TRAILER_LINE else _C_SIZE_LF
                else:
                    pos = n
            elif state == _C_DATA_END or state == _C_DATA_LF:
                c = buf[pos]
                pos += 1
                if c == 0x0A:
                    state = _C_SIZE
                    self._csize = 0
                    self._cdigit = False
                elif c == 0x0D and state == _C_DATA_END:
                    state = _C_DATA_LF
                else:
                    bad = _BAD_CHUNK
                    break
            elif state == _C_TRAILER:
                c = buf[pos]
                pos += 1
                if c == 0x0A:
                    state = _C_DONE
                    break
                state = _C_END_LF if c == 0x0D else _C_TRAILER_LINE
            else:  # _C_SIZE_LF, _C_TRAILER_LF, _C_END_LF: the CR must be followed by LF
                if buf[pos] != 0x0A:
                    bad = _BAD_CHUNK
                    break
                pos += 1
                if state == _C_SIZE_LF:
                    state, bad = self._chunk_start()
                    if bad is not None:
                        break
                elif state == _C_TRAILER_LF:
                    state = _C_TRAILER
                else:
                    state = _C_DONE
                    break
        self._cstate = state
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            events.append(RequestData(stream_id=cur.sid, data=data))
        if bad is not None:
            self._reject(events, cur, *bad)
            return n
        if state == _C_DONE:
            self._body_end(events, cur)
        return pos

    def _chunk_start(self) -> tuple[int, _Reject | None]:
        """A chunk-size line ended: the state it leads to (data, or trailers for size 0)."""
        size = self._csize
        if size == 0:
            return _C_TRAILER, None
        limit = self._limits.max_body_size
        if limit and self._ctotal + size > limit:
            return _C_DATA, _Reject(413, "client intended to send too large chunked body")
        self._ctotal += size
        self._remaining = size
        return _C_DATA, None

    # -----------------------------------------------------------------------------------------
    # response side

    def _current(self, sid: int) -> _Stream | None:
        """The stream being answered, if ``sid`` is it; None if ``sid`` was answered already."""
        queue = self._queue
        if queue and queue[0].sid == sid:
            return queue[0]
        if sid <= self._answered:
            return None
        front = queue[0].sid if queue else None
        raise LocalProtocolError(f"response for stream {sid} while answering stream {front}")

    def _send_head(
        self,
        stream: _Stream,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        end_stream: bool,
        reason: bytes | None,
    ) -> None:
        if stream.framing != _F_WAIT:
            raise LocalProtocolError(f"stream {stream.sid}: response headers sent twice")
        out = self._out
        if stream.version == 9:  # HTTP/0.9: the body alone, then close
            stream.framing = _F_RAW
            stream.keep_alive = False
            self._release(stream)
            if end_stream:
                self._finish(stream)
            return
        if status < 200 and status != 101:  # interim (100 Continue): the request goes on
            parts = [
                _CONTINUE
                if status == 100 and reason is None
                else _status_line(status, reason)
            ]
            for name, value in headers:
                parts += (name, b": ", value, b"\r\n")
            parts.append(b"\r\n")
            out.append(b"".join(parts))
            return
        tunnel = status == 101 and stream.upgradable
        fixed: list[tuple[int, bytes, bytes]] = []
        rest: list[tuple[bytes, bytes]] = []
        listed = False  # an empty Connection header was seen: nothing after it is moved
        keep_alive_hdr: tuple[bytes, bytes] | None = None
        close = not stream.keep_alive
        has_length = False
        for item in headers:
            rank = _rank(item[0])
            if rank < 0:
                rest.append(item)
            elif rank < _R_TE:
                if rank == _R_CONTENT_LENGTH:
                    has_length = True
                if listed:
                    rest.append(item)
                else:
                    fixed.append((rank, item[0], item[1]))
            elif rank == _R_CONNECTION:
                if not item[1]:
                    listed = True
                elif item[1].lower() == b"close":
                    close = True
            elif rank == _R_KEEP_ALIVE:
                keep_alive_hdr = item
            # an engine Transfer-Encoding is dropped: the adapter frames the body
        if tunnel:
            framing = _F_RAW
        elif status < 200 or status in _NO_BODY_STATUS or stream.is_head:
            framing = _F_NONE
        elif has_length:
            framing = _F_LENGTH
        elif stream.version >= 1001:
            framing = _F_CHUNKED
        else:
            framing = _F_RAW
            close = True  # the end of the body is the end of the connection
        if status == 101:
            connection = b"upgrade"
            close = True  # after a tunnel, or a 101 without Upgrade, nothing more is read
        else:
            connection = b"close" if close else b"keep-alive"
        parts = [_status_line(status, reason)]
        if len(fixed) > 1:
            fixed.sort(key=_rank_key)
        for _, name, value in fixed:
            parts += (name, b": ", value, b"\r\n")
        if framing == _F_CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        parts += (b"Connection: ", connection, b"\r\n")
        if keep_alive_hdr is not None and not close:
            parts += (keep_alive_hdr[0], b": ", keep_alive_hdr[1], b"\r\n")
        for name, value in rest:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        out.append(b"".join(parts))
        stream.framing = framing
        if close:
            stream.keep_alive = False
        if tunnel:
            self._switch(stream)
        else:
            self._release(stream)
        if end_stream:
            self._finish(stream)

    def _release(self, stream: _Stream) -> None:
        """A final response head went out: the reading side may go on."""
        if self._hold is stream:
            self._hold = None
        if not stream.keep_alive:
            self._no_more_after(stream)

    def _no_more_after(self, stream: _Stream) -> None:
        """nginx closes after this stream's response: no later request is parsed."""
        if self._reading is _Reading.DONE:
            return
        if self._cur is not stream or self._reading is _Reading.HEAD:
            self._stop()
        # else its body is still arriving: ``_request_done`` stops once it is read

    def _switch(self, stream: _Stream) -> None:
        """101 on an Upgrade request: the connection becomes a tunnel once its body is read."""
        if self._hold is stream:
            self._hold = None
        if self._cur is not stream or self._reading is _Reading.DONE:
            return
        if self._reading is _Reading.HEAD:
            self._goto(_Input.SWITCH)
        else:
            self._tunnel_after = stream

    def _finish(self, stream: _Stream) -> None:
        """The response is complete."""
        if stream.framing == _F_CHUNKED:
            self._out.append(b"0\r\n\r\n")
        self._queue.popleft()
        self._answered = stream.sid
        if self._reading is _Reading.TUNNEL or not stream.keep_alive:
            self._must_close = True  # the tunnel's upstream side closed, or nginx closes now
            self._stop()
        self._update_close()

    def _update_close(self) -> None:
        queue = self._queue
        if queue and queue[0].reject == 0 and queue[0].framing == _F_WAIT:
            self._answered = queue[-1].sid
            queue.clear()  # nginx closes without answering
            self._must_close = True
        elif not queue and self._reading is _Reading.DONE:
            self._must_close = True
