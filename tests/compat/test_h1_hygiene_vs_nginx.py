"""The HTTP/1.x adapter refuses and accepts exactly what Debian's nginx 1.22.1 refuses and accepts.

Each case is a raw byte string sent to a real nginx (``return 200 "ok"`` for ``/``; ``/body`` is
proxied to a second server, so nginx reads the request body) and fed to ``H1Server``, whole and
one byte at a time.  Outcomes are compared per request on the connection:

* nginx's status line <-> ``RequestRejected.status_hint`` (494 is nginx's internal code for the
  "Request Header Or Cookie Too Large" page, sent as 400), or 200 when the adapter handed the
  request on (``RequestHeaders``, and ``RequestEnd`` when there is a body);
* nginx closing without a response <-> ``status_hint == 0``;
* nginx still waiting (no answer, connection open) <-> no decision from the adapter.

HTTP/0.9 answers carry no status line; they are recognised by their body.  URI normalisation
400s (``/../``, ``%00``, bad ``%``-escapes) come from ``proxy.routing.normalize_uri``, not from
the adapter, and are not in this table.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from proxy.accesslog import escape_default
from proxy.protocol.events import (
    RequestData,
    RequestEnd,
    RequestEvent,
    RequestHeaders,
    RequestRejected,
)
from proxy.protocol.h1 import REASONS, H1Limits, H1Server

try:  # the repo root on sys.path (python -m pytest)
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - depends on how pytest was started
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.nginx import NGINX_BIN, free_port, run_nginx  # type: ignore[no-redef, import-not-found, unused-ignore]

pytestmark = pytest.mark.nginx

if not NGINX_BIN.exists():  # pragma: no cover - CI has it
    pytest.skip(f"{NGINX_BIN} is not installed", allow_module_level=True)

NGINX_LIMITS = H1Limits(max_body_size=1024 * 1024)
"""The adapter configured as nginx's defaults (client_max_body_size 1m)."""

QUIET = 0.4
"""Seconds of silence after which nginx is taken to be waiting for more bytes."""

WAIT = -1
"""Outcome: the adapter has not decided yet (a head or body still incomplete)."""

C = b"Connection: close\r\n"
H = b"Host: a\r\n"


def get(headers: bytes = H, version: bytes = b"HTTP/1.1", target: bytes = b"/") -> bytes:
    """A GET with ``Connection: close`` (so nginx closes once it has answered)."""
    return b"GET " + target + b" " + version + b"\r\n" + headers + C + b"\r\n"


def chunked(body: bytes) -> bytes:
    """A chunked POST to the location that makes nginx read the body."""
    return b"POST /body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n" + C + b"\r\n" + body


def long_line(length: int) -> bytes:
    """A request line of exactly ``length`` bytes with its CRLF."""
    pad = length - len(b"GET / HTTP/1.1\r\n")
    return b"GET /" + b"a" * pad + b" HTTP/1.1\r\n"


def header_of(length: int) -> bytes:
    """A header line of exactly ``length`` bytes with its CRLF."""
    return b"X-Pad: " + b"b" * (length - 9) + b"\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    eof: bool = False
    """Half-close after sending (the client's EOF)."""


CASES: tuple[Case, ...] = (
    # request line
    Case("plain GET", get()),
    Case("HTTP/1.0 without Host", get(b"", b"HTTP/1.0")),
    Case("HTTP/2.0 on the request line", get(H, b"HTTP/2.0")),
    Case("HTTP/3.1", get(H, b"HTTP/3.1")),
    Case("HTTP/1.2 is 1.x", get(H, b"HTTP/1.2")),
    Case("HTTP/1.999", get(H, b"HTTP/1.999")),
    Case("HTTP/1.1000", get(H, b"HTTP/1.1000")),
    Case("HTTP/1000.0 (major 10+)", get(H, b"HTTP/1000.0")),
    Case("HTTP/01.1", get(H, b"HTTP/01.1")),
    Case("HTTP/0.9 spelled out", get(H, b"HTTP/0.9")),
    Case("HTTP/1.", get(H, b"HTTP/1.")),
    Case("lower-case http/1.1", get(H, b"http/1.1")),
    Case("version then junk", get(H, b"HTTP/1.1x")),
    Case("trailing space after version", get(H, b"HTTP/1.1 ")),
    Case("garbage line", b"hello\r\n\r\n"),
    Case("method alone", b"GET\r\n\r\n"),
    Case("lower-case method", b"get / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("unknown method", b"FOO / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("method with _ and -", b"MY_M-X / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("method with a digit", b"M1 / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("TRACE", b"TRACE / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("CONNECT authority-form", b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("CONNECT origin-form", b"CONNECT / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    Case("absolute-form", get(H, target=b"http://b:81/x?y")),
    Case("absolute-form, no path", get(H, target=b"http://b")),
    Case("absolute-form, IPv6", get(H, target=b"http://[::1]:8/x")),
    Case("absolute-form, _ in host", get(H, target=b"http://a_b/")),
    Case("absolute-form, .. in host", get(H, target=b"http://b..c/")),
    Case("absolute-form, userinfo", get(H, target=b"http://u@b/")),
    Case("absolute-form, empty host", get(H, target=b"http:///x")),
    Case("absolute-form without Host header", get(b"", target=b"http://b/x")),
    Case("target not starting with /", get(H, target=b"a/b")),
    Case("space inside the target", get(H, target=b"/a b")),
    Case("control byte in the target", get(H, target=b"/a\x01b")),
    Case("NUL in the target", get(H, target=b"/a\x00b")),
    Case("DEL in the target", get(H, target=b"/a\x7fb")),
    Case("tab in the target", get(H, target=b"/a\tb")),
    Case("UTF-8 in the target", get(H, target=b"/caf\xc3\xa9")),
    Case("# in the target", get(H, target=b"/a#b")),
    Case("two spaces before the target", b"GET  / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("tab as separator", b"GET\t/ HTTP/1.1\r\nHost: a\r\n" + C + b"\r\n"),
    Case("leading CRLFs", b"\r\n\r\n" + get()),
    Case("40000 leading CRLFs", b"\r\n" * 20000 + get()),
    Case("leading space", b" " + get()),
    Case("bare LF line ends", b"GET / HTTP/1.1\nHost: a\nConnection: close\n\n"),
    Case("CR CR LF after the request line", b"GET / HTTP/1.1\r\r\nHost: a\r\n" + C + b"\r\n"),
    Case("bare CR in the request line", b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
    Case("HTTP/0.9 GET", b"GET /\r\n"),
    Case("HTTP/0.9 GET with a space", b"GET / \r\n"),
    Case("HTTP/0.9 POST", b"POST /\r\n"),
    Case("HTTP/0.9, CR CR LF", b"GET /\r\r\n"),
    # Host
    Case("missing Host (1.1)", get(b"")),
    Case("duplicate Host", get(b"Host: a\r\nHost: a\r\n")),
    Case("duplicate Host, other case", get(b"Host: a\r\nhOST: b\r\n")),
    Case("duplicate Host (1.0)", get(b"Host: a\r\nHost: b\r\n", b"HTTP/1.0")),
    Case("empty Host", get(b"Host:\r\n")),
    Case("empty Host (1.0)", get(b"Host: \r\n", b"HTTP/1.0")),
    Case("Host with /", get(b"Host: a/b\r\n")),
    Case("Host with ..", get(b"Host: a..b\r\n")),
    Case("Host with a space", get(b"Host: a b\r\n")),
    Case("Host with a control byte", get(b"Host: a\x01b\r\n")),
    Case("Host .", get(b"Host: .\r\n")),
    Case("Host :80", get(b"Host: :80\r\n")),
    Case("Host with trailing dot and port", get(b"Host: a.:80\r\n")),
    Case("Host [::1", get(b"Host: [::1\r\n")),
    Case("Host with backslash, _ and UTF-8", get(b"Host: a\\_\xc3\xa9\r\n")),
    # Content-Length / Transfer-Encoding
    Case("Content-Length -1", get(b"Host: a\r\nContent-Length: -1\r\n")),
    Case("Content-Length +1", get(b"Host: a\r\nContent-Length: +1\r\n") + b"x"),
    Case("Content-Length list", get(b"Host: a\r\nContent-Length: 1,1\r\n") + b"x"),
    Case("Content-Length abc", get(b"Host: a\r\nContent-Length: abc\r\n")),
    Case("Content-Length empty", get(b"Host: a\r\nContent-Length:\r\n")),
    Case("Content-Length with spaces around", get(b"Host: a\r\nContent-Length:  1  \r\n") + b"x"),
    Case("Content-Length 1 1", get(b"Host: a\r\nContent-Length: 1 1\r\n") + b"x"),
    Case("Content-Length 001", get(b"Host: a\r\nContent-Length: 001\r\n") + b"x"),
    Case("Content-Length 2^63", get(b"Host: a\r\nContent-Length: 9223372036854775808\r\n")),
    Case(
        "Content-Length 2^63-1 (over 1m)",
        get(b"Host: a\r\nContent-Length: 9223372036854775807\r\n"),
    ),
    Case("duplicate Content-Length", get(b"Host: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n")),
    Case(
        "Content-Length and chunked",
        get(H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"),
    ),
    Case(
        "chunked and Content-Length",
        get(H + b"Transfer-Encoding: chunked\r\nContent-Length: 1\r\n"),
    ),
    Case("Transfer-Encoding gzip", get(H + b"Transfer-Encoding: gzip\r\n")),
    Case("Transfer-Encoding gzip, chunked", get(H + b"Transfer-Encoding: gzip, chunked\r\n")),
    Case("Transfer-Encoding identity", get(H + b"Transfer-Encoding: identity\r\n")),
    Case("Transfer-Encoding empty", get(H + b"Transfer-Encoding:\r\n")),
    Case("Transfer-Encoding Chunked", get(H + b"Transfer-Encoding: Chunked\r\n") + b"0\r\n\r\n"),
    Case("duplicate Transfer-Encoding", get(H + b"Transfer-Encoding: chunked\r\n" * 2)),
    Case("chunked in HTTP/1.0", get(b"Transfer-Encoding: chunked\r\n", b"HTTP/1.0") + b"0\r\n\r\n"),
    Case("gzip in HTTP/1.0", get(b"Transfer-Encoding: gzip\r\n", b"HTTP/1.0")),
    Case("no Host, Transfer-Encoding gzip", get(b"Transfer-Encoding: gzip\r\n")),
    Case(
        "TRACE with a bad Content-Length",
        get(H + b"Content-Length: x\r\n").replace(b"GET", b"TRACE"),
    ),
    Case("duplicate If-None-Match", get(H + b"If-None-Match: a\r\nIf-None-Match: b\r\n")),
    Case("duplicate Authorization", get(H + b"Authorization: a\r\nAuthorization: b\r\n")),
    Case("duplicate Expect", get(H + b"Expect: a\r\nExpect: b\r\n")),
    Case("duplicate Cookie is fine", get(H + b"Cookie: a\r\nCookie: b\r\n")),
    # header lines
    Case("obs-fold with a space", get(H + b"X-A: b\r\n c\r\n")),
    Case("obs-fold with a tab", get(H + b"X-A: b\r\n\tc\r\n")),
    Case("space before the colon", get(H + b"X-A : b\r\n")),
    Case("Host with a space before the colon", get(b"Host : a\r\n", b"HTTP/1.0")),
    Case("underscore in a name", get(H + b"X_A: b\r\n")),
    Case("@ in a name", get(H + b"X@A: b\r\n")),
    Case(". in a name", get(H + b"X.A: b\r\n")),
    Case("UTF-8 in a name", get(H + b"X\xc3A: b\r\n")),
    Case("control byte in a name", get(H + b"X\x01A: b\r\n")),
    Case("DEL in a name", get(H + b"X\x7fA: b\r\n")),
    Case("NUL in a name", get(H + b"X\x00A: b\r\n")),
    Case("name without colon", get(H + b"XA\r\n")),
    Case("name and value without colon", get(H + b"XA b\r\n")),
    Case("empty name", get(H + b": b\r\n")),
    Case("colon alone", get(H + b":\r\n")),
    Case("NUL in a value", get(H + b"X-A: b\x00c\r\n")),
    Case("control byte and DEL in a value", get(H + b"X-A: b\x01c\x7f\r\n")),
    Case("bare CR in a value", get(H + b"X-A: b\rc\r\n")),
    Case("tabs around a value", get(H + b"X-A:\tb\t\r\n")),
    Case("high bytes in a value", get(H + b"X-A: \xff\r\n")),
    Case("CR CR LF after a header", get(b"Host: a\r\r\n")),
    Case("CR CR LF ending the head", b"GET / HTTP/1.1\r\nHost: a\r\n" + C + b"\r\r\n"),
    Case("mixed CRLF and LF", b"GET / HTTP/1.1\r\nHost: a\nConnection: close\r\n\n"),
    Case("300-byte header name", get(H + b"X" * 300 + b": v\r\n")),
    Case("Connection: keep-alive then close", get(H + b"Connection: keep-alive\r\n")),
    # sizes (client_header_buffer_size 1k, large_client_header_buffers 4 8k)
    Case("request line of 8192 bytes", long_line(8192) + H + C + b"\r\n"),
    Case("request line of 8193 bytes", long_line(8193) + H + C + b"\r\n"),
    Case("request line of 20000 bytes", long_line(20000) + H + C + b"\r\n"),
    Case("lower-case method, long line", b"g" + long_line(9000)[1:] + H + C + b"\r\n"),
    Case(
        "control byte past 8k, long line",
        long_line(9000)[:8500] + b"\x01" + b"a" * 600 + b" HTTP/1.1\r\n" + H + b"\r\n",
    ),
    Case("header line of 8192 bytes", get(H + header_of(8192))),
    Case("header line of 8193 bytes", get(H + header_of(8193))),
    Case("NUL early in a too long header", get(H + b"X-A: \x00" + b"b" * 9000 + b"\r\n")),
    Case("duplicate Host before a too long header", get(H + H + header_of(9000))),
    Case("4 x 8k buffers: fits", get(H + header_of(8000) * 4)),
    Case("4 x 8k buffers: one line too many", get(H + header_of(8000) * 5)),
    Case("many small headers, 30k", get(H + header_of(100) * 300)),
    Case("many small headers, 40k", get(H + header_of(100) * 400)),
    Case(
        "long line, 1k first buffer nearly full",
        long_line(1000) + header_of(8192) + H + C + b"\r\n",
    ),
    # bodies (read by nginx through /body)
    Case("chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, extensions", chunked(b'5;a=b;c="d e"\x01\r\nhello\r\n0;x\r\n\r\n')),
    Case("chunked, space/tab after size", chunked(b"5 \r\nhello\r\n5\t\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, space before size", chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, upper-case hex and zeros", chunked(b"0000A\r\n0123456789\r\n000\r\n\r\n")),
    Case("chunked, 0x prefix", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, bad size", chunked(b"zz\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, empty size line", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, LF only", chunked(b"5\nhello\n0\n\n")),
    Case("chunked, CR CR LF after size", chunked(b"5\r\r\nhello\r\n0\r\n\r\n")),
    Case("chunked, no CRLF after data", chunked(b"5\r\nhelloX\r\n0\r\n\r\n")),
    Case("chunked, bare CR after data", chunked(b"5\r\nhello\rX0\r\n\r\n")),
    Case("chunked, trailers", chunked(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\x01 odd\r\n\r\n")),
    Case("chunked, size 2^63-1", chunked(b"7fffffffffffffff\r\nhello")),
    Case("chunked, size 2^59-1, then more", chunked(b"7ffffffffffffff\r\nhello")),
    Case("chunked, 2 MB chunk (over 1m)", chunked(b"200000\r\nhello")),
    Case(
        "Content-Length body",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n" + C + b"\r\nhello",
    ),
    Case(
        "Content-Length 2 MB (over 1m)",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n" + C + b"\r\n",
    ),
    Case("body still coming", b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nhello"),
    # EOF
    Case("EOF in the request line", b"GET / HT", eof=True),
    Case("EOF in the headers", b"GET / HTTP/1.1\r\nHost: a\r\n", eof=True),
    Case("EOF after CRLF only", b"\r\n", eof=True),
    Case(
        "EOF in a Content-Length body",
        b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello",
        eof=True,
    ),
    Case("EOF in a chunk", chunked(b"5\r\nhel"), eof=True),
    Case("head still coming", b"GET / HTTP/1.1\r\nHost: a\r\n"),
    # pipelining
    Case(
        "three pipelined", get()[: -len(C) - 2] + b"\r\n" + get()[: -len(C) - 2] + b"\r\n" + get()
    ),
    Case("pipelined, then a bad one", b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/2.0\r\n\r\n"),
    Case("pipelined after Connection: close", get() + get()),
    Case("pipelined after HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n" + get()),
    Case(
        "pipelined POST then GET",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + get(),
    ),
)


# ---------------------------------------------------------------------------------------------
# nginx side

CONF = """
events {{}}
http {{
    log_format refused '$status $request_method "$request"';
    server {{
        listen 127.0.0.1:{port};
        access_log logs/refused.log refused;
        location / {{ return 200 "ok"; }}
        location /body {{ proxy_pass http://127.0.0.1:{upstream}/; }}
        {reasons}
    }}
    server {{
        listen 127.0.0.1:{upstream};
        location / {{ return 200 "ok"; }}
    }}
}}
"""

REASON_CODES = (
    200,
    201,
    202,
    203,
    204,
    206,
    300,
    301,
    302,
    303,
    307,
    308,
    400,
    401,
    402,
    403,
    404,
    405,
    406,
    408,
    409,
    410,
    411,
    412,
    413,
    414,
    415,
    416,
    418,
    421,
    422,
    426,
    429,
    500,
    501,
    502,
    503,
    504,
    505,
    506,
    507,
    508,
    599,
)


@dataclass(frozen=True)
class Nginx:
    port: int
    log: Path
    """The first server's access log: ``$status $request_method "$request"``."""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx with the two servers of :data:`CONF`."""
    port = free_port()
    upstream = free_port([port])
    reasons = "\n".join(f'location = /status/{c} {{ return {c} "x"; }}' for c in REASON_CODES)
    conf = CONF.format(port=port, upstream=upstream, reasons=reasons)
    prefix = tmp_path_factory.mktemp("h1-hygiene")
    with run_nginx(conf, prefix):
        yield Nginx(port, prefix / "logs" / "refused.log")


def exchange(port: int, raw: bytes, eof: bool) -> tuple[bytes, bool]:
    """Send ``raw``; return what nginx wrote and whether it closed (False: it went quiet)."""
    chunks: list[bytes] = []
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(raw)
            if eof:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # nginx answered and closed before reading everything
        sock.settimeout(QUIET)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            chunks.append(data)
    return b"".join(chunks), closed


_TITLE = re.compile(rb"<title>(\d{3}) ")
_LENGTH = re.compile(rb"\r\nContent-Length: (\d+)\r\n")


@dataclass(frozen=True)
class Answer:
    """What nginx did on one connection."""

    statuses: list[int]
    """Status of each response, in order."""
    closed: bool
    """nginx closed the connection (or announced it with ``Connection: close``)."""


def nginx_outcome(out: bytes, closed: bool) -> Answer:
    """Split nginx's output into responses (each framed by its Content-Length)."""
    if out and not out.startswith(b"HTTP/"):  # HTTP/0.9: the body alone
        title = _TITLE.search(out)
        return Answer([int(title.group(1)) if title else 200], True)
    statuses: list[int] = []
    pos = 0
    last_close = False
    while pos < len(out):
        assert out.startswith(b"HTTP/1.1 ", pos), out[pos:]
        end = out.index(b"\r\n\r\n", pos) + 4
        head = out[pos:end]
        statuses.append(int(head[9:12]))
        length = _LENGTH.search(head)
        pos = end + (int(length.group(1)) if length else 0)
        last_close = b"\r\nConnection: close\r\n" in head
    # after "Connection: close" nginx may linger, reading, before it closes
    return Answer(statuses, closed or last_close)


def adapter_outcome(events: list[RequestEvent]) -> list[int]:
    """Per request: its rejection status (494 -> 400), 200 once handed on whole, else WAIT."""
    per: dict[int, int] = {}
    for ev in events:
        if isinstance(ev, RequestHeaders):
            per[ev.stream_id] = 200 if ev.end_stream else WAIT
        elif isinstance(ev, RequestEnd):
            per[ev.stream_id] = 200
        elif isinstance(ev, RequestRejected):
            per[ev.stream_id] = 400 if ev.status_hint == 494 else ev.status_hint
        else:
            assert isinstance(ev, RequestData)
    return [per[sid] for sid in sorted(per)]


def run_adapter(raw: bytes, eof: bool, step: int | None = None) -> list[RequestEvent]:
    server = H1Server(NGINX_LIMITS)
    events: list[RequestEvent] = []
    if step is None:
        events += server.receive_data(raw)
    else:
        for i in range(0, len(raw), step):
            events += server.receive_data(raw[i : i + step])
    if eof:
        events += server.receive_data(b"")
    return events


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_outcome_matches_nginx(nginx: Nginx, case: Case) -> None:
    """The adapter's verdict on each request equals nginx's answer on the wire; a refused head
    says what nginx logs of it."""
    logged = log_size(nginx)
    out, closed = exchange(nginx.port, case.raw, case.eof)
    answer = nginx_outcome(out, closed)
    events = run_adapter(case.raw, case.eof)
    refused = [e for e in events if isinstance(e, RequestRejected) and e.request_line is not None]
    if refused:  # nginx logs every request before it too
        count = len(refused) + sum(isinstance(e, RequestHeaders) for e in events)
        assert last_log_line(nginx, logged, count) == log_line(refused[-1])
    got = adapter_outcome(events)
    answered, rest = got[: len(answer.statuses)], got[len(answer.statuses) :]
    assert answered == answer.statuses, f"nginx answered {out[:300]!r}"
    if answer.closed:  # requests nginx closed on without answering: silent closes
        assert all(outcome == 0 for outcome in rest), (got, out[:300])
    else:  # nginx is waiting for the rest of a request
        assert rest in ([], [WAIT]), (got, out[:300])


def log_size(nginx: Nginx) -> int:
    try:
        return nginx.log.stat().st_size
    except FileNotFoundError:
        return 0


def last_log_line(nginx: Nginx, since: int, count: int) -> str:
    """The last of ``count`` lines nginx logged after offset ``since`` (it logs a refused head
    once it has closed, after a lingering close: wait for them)."""
    deadline = time.monotonic() + 3
    lines: list[str] = []
    while len(lines) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        with contextlib.suppress(FileNotFoundError), open(nginx.log, "rb") as fh:
            fh.seek(since)
            lines = fh.read().decode("latin-1").splitlines()
    return lines[-1] if lines else ""


def log_line(rej: RequestRejected) -> str:
    """nginx's line for a refused head, from what the adapter says nginx had parsed."""
    status = {0: 400, 494: 400}.get(rej.status_hint, rej.status_hint)
    method = rej.method.decode("latin-1") if rej.method is not None else "-"
    assert rej.request_line is not None
    request = escape_default(rej.request_line).decode("latin-1")
    return f'{status} {method} "{request}"'


@pytest.mark.parametrize("case", [c for c in CASES if len(c.raw) < 2000], ids=lambda c: c.name)
def test_outcome_does_not_depend_on_segmentation(case: Case) -> None:
    """Fed one byte at a time, the adapter produces the same events as fed whole (body pieces
    joined; a request line refused before its end is logged as far as it had come, by nginx
    too, so its ``request_line`` is left out)."""
    assert unsegmented(run_adapter(case.raw, case.eof, 1)) == unsegmented(
        run_adapter(case.raw, case.eof)
    )


def unsegmented(events: list[RequestEvent]) -> list[RequestEvent]:
    """``merged``, without what depends on how the bytes arrived."""
    return [
        replace(ev, request_line=None)
        if isinstance(ev, RequestRejected) and ev.method is None
        else ev
        for ev in merged(events)
    ]


def merged(events: list[RequestEvent]) -> list[RequestEvent]:
    """Consecutive body pieces of a stream joined into one."""
    out: list[RequestEvent] = []
    for ev in events:
        last = out[-1] if out else None
        if isinstance(ev, RequestData) and isinstance(last, RequestData):
            out[-1] = RequestData(stream_id=ev.stream_id, data=last.data + ev.data)
        else:
            out.append(ev)
    return out


def test_table_covers_enough(nginx: Nginx) -> None:
    """The table keeps at least 25 odd requests, accepted and refused ones."""
    assert len(CASES) >= 25
    refused = [
        c
        for c in CASES
        if any(s not in (200, WAIT) for s in adapter_outcome(run_adapter(c.raw, c.eof)))
    ]
    assert len(refused) >= 25 and len(CASES) - len(refused) >= 25


def test_reason_phrases_match_nginx(nginx: Nginx) -> None:
    """``REASONS`` holds nginx's phrase for every status it names and none for the others."""
    for code in REASON_CODES:
        out, _ = exchange(nginx.port, b"GET /status/%d HTTP/1.0\r\n\r\n" % code, False)
        line = out.split(b"\r\n", 1)[0]
        reason = REASONS.get(code)
        assert line == (b"HTTP/1.1 %d %s" % (code, reason) if reason else b"HTTP/1.1 %d " % code)
