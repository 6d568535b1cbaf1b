"""What nginx writes by itself: status lines, error pages, ``Server``, ``Date``, ``Location``.

Data and small pure functions, checked byte for byte against Debian's nginx 1.22.1
(``tests/test_responses_vs_nginx.py``). No I/O; time is an argument.

Rules of this module (nginx 1.22.1, ``src/http/ngx_http_special_response.c`` and
``src/http/ngx_http_header_filter_module.c``):

1. A status line carries nginx's own reason phrase (:data:`STATUS_LINES`; 302 is "Moved
   Temporarily"). A status nginx has no text for is written as the bare code followed by one
   space: ``HTTP/1.1 299 \\r\\n`` (also 1xx, 203, 205, 207+, 305, 4xx gaps, 506, 508-999).
   An upstream's own reason phrase is passed through instead (not modelled here).
2. When nginx answers with its own page for 494, 495, 496 or 497 the status line says ``400 Bad
   Request`` while the body stays that code's page (:func:`wire_status`).
3. The error page is the status' HTML head and ``<h1>`` plus a tail that depends on
   ``server_tokens`` (``on``/``build``: ``<hr><center>nginx/1.22.1</center>``, ``off``:
   ``<hr><center>nginx</center>``). Statuses without a page (e.g. 418, 506, 599) get an empty body
   with ``Content-Length: 0`` and no ``Content-Type``. 498 reuses the 404 page.
4. The MSIE padding (six HTML comments) is appended only when ``msie_padding`` is on (the
   default) *and* the client is MSIE or Chrome by its first ``User-Agent`` header *and* the request
   is HTTP/1.0 or later *and* the status is 4xx/5xx (:func:`msie_padding_applies`). curl gets no
   padding; a Chrome user agent does.
5. Error pages are ``Content-Type: text/html``; HEAD keeps the Content-Length but sends no body;
   204 and 304 never carry a body (:func:`response_has_body`).
6. ``return 408``, ``return 444`` and ``return 499`` (a code with no text) close the connection
   without a response (:data:`NO_RESPONSE_STATUSES`); 400, 413, 414, 495-497, 500 and 501 turn
   keep-alive off (:data:`CLOSE_CONNECTION_STATUSES`).
7. A ``Location`` that starts with ``/`` is made absolute when ``absolute_redirect`` is on:
   ``http(s)://`` + host + ``:port`` (the *local* port, omitted when 80 for http / 443 for https
   or when ``port_in_redirect off``) + the location (:func:`absolute_location`).
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

NGINX_PRODUCT = "nginx"
"""Product token nginx writes in ``Server`` and error page tails."""
NGINX_VERSION = "1.22.1"
"""Version of the nginx these tables were checked against."""

ERROR_CONTENT_TYPE = b"text/html"
"""``Content-Type`` of nginx's own error and redirect pages."""

NGINX_DEFAULT_TYPE = b"text/plain"
"""nginx's compiled-in ``default_type`` (Debian's stock ``nginx.conf`` sets
``application/octet-stream``; a config without ``default_type`` gets ``text/plain``)."""

# ngx_http_status_lines[] of src/http/ngx_http_header_filter_module.c (1.22.1)
STATUS_LINES: Mapping[int, bytes] = MappingProxyType(
    {
        200: b"200 OK",
        201: b"201 Created",
        202: b"202 Accepted",
        204: b"204 No Content",
        206: b"206 Partial Content",
        301: b"301 Moved Permanently",
        302: b"302 Moved Temporarily",
        303: b"303 See Other",
        304: b"304 Not Modified",
        307: b"307 Temporary Redirect",
        308: b"308 Permanent Redirect",
        400: b"400 Bad Request",
        401: b"401 Unauthorized",
        402: b"402 Payment Required",
        403: b"403 Forbidden",
        404: b"404 Not Found",
        405: b"405 Not Allowed",
        406: b"406 Not Acceptable",
        408: b"408 Request Time-out",
        409: b"409 Conflict",
        410: b"410 Gone",
        411: b"411 Length Required",
        412: b"412 Precondition Failed",
        413: b"413 Request Entity Too Large",
        414: b"414 Request-URI Too Large",
        415: b"415 Unsupported Media Type",
        416: b"416 Requested Range Not Satisfiable",
        421: b"421 Misdirected Request",
        429: b"429 Too Many Requests",
        500: b"500 Internal Server Error",
        501: b"501 Not Implemented",
        502: b"502 Bad Gateway",
        503: b"503 Service Temporarily Unavailable",
        504: b"504 Gateway Time-out",
        505: b"505 HTTP Version Not Supported",
        507: b"507 Insufficient Storage",
    }
)
"""Status code -> ``"<code> <reason>"`` as nginx writes it after ``HTTP/1.1 ``. Codes missing here
are written as ``"<code> "`` (see :func:`status_line`)."""

NO_RESPONSE_STATUSES = frozenset({408, 444, 499})
"""``return <code>;`` (no text) with these codes closes the connection without sending anything
(nginx terminates the request; the access log still records the code)."""

CLOSE_CONNECTION_STATUSES = frozenset({400, 413, 414, 495, 496, 497, 500, 501})
"""Special responses after which nginx disables keep-alive (``Connection: close``)."""

_BAD_REQUEST_ALIASES = frozenset({494, 495, 496, 497})

# (status) -> (title, h1, extra line) of ngx_http_error_<status>_page; <title> is "title",
# the <h1> is "h1", an optional second <center> line follows for the 49x pages.
_PAGES: dict[int, tuple[str, str, str | None]] = {
    301: ("301 Moved Permanently", "301 Moved Permanently", None),
    302: ("302 Found", "302 Found", None),
    303: ("303 See Other", "303 See Other", None),
    307: ("307 Temporary Redirect", "307 Temporary Redirect", None),
    308: ("308 Permanent Redirect", "308 Permanent Redirect", None),
    400: ("400 Bad Request", "400 Bad Request", None),
    401: ("401 Authorization Required", "401 Authorization Required", None),
    402: ("402 Payment Required", "402 Payment Required", None),
    403: ("403 Forbidden", "403 Forbidden", None),
    404: ("404 Not Found", "404 Not Found", None),
    405: ("405 Not Allowed", "405 Not Allowed", None),
    406: ("406 Not Acceptable", "406 Not Acceptable", None),
    408: ("408 Request Time-out", "408 Request Time-out", None),
    409: ("409 Conflict", "409 Conflict", None),
    410: ("410 Gone", "410 Gone", None),
    411: ("411 Length Required", "411 Length Required", None),
    412: ("412 Precondition Failed", "412 Precondition Failed", None),
    413: ("413 Request Entity Too Large", "413 Request Entity Too Large", None),
    414: ("414 Request-URI Too Large", "414 Request-URI Too Large", None),
    415: ("415 Unsupported Media Type", "415 Unsupported Media Type", None),
    416: ("416 Requested Range Not Satisfiable", "416 Requested Range Not Satisfiable", None),
    421: ("421 Misdirected Request", "421 Misdirected Request", None),
    429: ("429 Too Many Requests", "429 Too Many Requests", None),
    494: (
        "400 Request Header Or Cookie Too Large",
        "400 Bad Request",
        "Request Header Or Cookie Too Large",
    ),
    495: ("400 The SSL certificate error", "400 Bad Request", "The SSL certificate error"),
    496: (
        "400 No required SSL certificate was sent",
        "400 Bad Request",
        "No required SSL certificate was sent",
    ),
    497: (
        "400 The plain HTTP request was sent to HTTPS port",
        "400 Bad Request",
        "The plain HTTP request was sent to HTTPS port",
    ),
    498: ("404 Not Found", "404 Not Found", None),  # "canceled": nginx reuses the 404 page
    500: ("500 Internal Server Error", "500 Internal Server Error", None),
    501: ("501 Not Implemented", "501 Not Implemented", None),
    502: ("502 Bad Gateway", "502 Bad Gateway", None),
    503: ("503 Service Temporarily Unavailable", "503 Service Temporarily Unavailable", None),
    504: ("504 Gateway Time-out", "504 Gateway Time-out", None),
    505: ("505 HTTP Version Not Supported", "505 HTTP Version Not Supported", None),
    507: ("507 Insufficient Storage", "507 Insufficient Storage", None),
}

ERROR_PAGE_STATUSES = frozenset(_PAGES)
"""Statuses nginx has a built-in page for."""

_MSIE_PADDING = b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6

SERVER_TOKENS = frozenset({"on", "off", "build"})
"""Values of ``server_tokens`` in open-source nginx."""


def _head(status: int) -> bytes:
    title, h1, extra = _PAGES[status]
    lines = [
        "<html>",
        f"<head><title>{title}</title></head>",
        "<body>",
        f"<center><h1>{h1}</h1></center>",
    ]
    if extra is not None:
        lines.append(f"<center>{extra}</center>")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


_HEADS: dict[int, bytes] = {status: _head(status) for status in _PAGES}


def server_token(
    server_tokens: str = "on",
    product: str = NGINX_PRODUCT,
    version: str = NGINX_VERSION,
    *,
    build: str | None = None,
) -> str:
    """The product token of ``Server`` and of error page tails.

    Args:
        server_tokens: ``on``, ``off`` or ``build`` (ngx_http_core_module ``server_tokens``).
        product: ``nginx`` (or ``tern``).
        version: ``1.22.1`` (or Tern's version).
        build: the ``--build=`` name; Debian's nginx has none, so ``build`` equals ``on``.

    Returns:
        ``"nginx/1.22.1"``, ``"nginx"`` or ``"nginx/1.22.1 (name)"``.

    Raises:
        ValueError: ``server_tokens`` is not one of :data:`SERVER_TOKENS`.
    """
    if server_tokens == "off":
        return product
    if server_tokens == "on" or (server_tokens == "build" and build is None):
        return f"{product}/{version}"
    if server_tokens == "build":
        return f"{product}/{version} ({build})"
    raise ValueError(f"invalid server_tokens value: {server_tokens!r}")


def server_header(
    server_tokens: str = "on", product: str = NGINX_PRODUCT, version: str = NGINX_VERSION
) -> bytes:
    """The value of the ``Server`` header (without name or CRLF): ``b"nginx/1.22.1"``/``b"nginx"``.

    The value is the same on HTTP/1.x (``Server: <value>\\r\\n``) and HTTP/2-3 (``server``).

    Raises:
        ValueError: ``server_tokens`` is not one of :data:`SERVER_TOKENS`.
    """
    return _server_header(server_tokens, product, version)


@lru_cache(maxsize=64)
def _server_header(server_tokens: str, product: str, version: str) -> bytes:
    return server_token(server_tokens, product, version).encode("ascii")


def reason_phrase(status: int) -> str:
    """nginx's reason phrase for ``status`` (``"Moved Temporarily"`` for 302), ``""`` if none."""
    line = STATUS_LINES.get(status)
    return "" if line is None else line[4:].decode("ascii")


def wire_status(status: int) -> int:
    """The status nginx puts on the wire when it answers ``status`` with its own page.

    494 (request header too large), 495, 496 and 497 (TLS client errors) go out as 400, with
    their own page as the body; the access log's ``$status`` is 400 too. Every other status is
    sent as is.
    """
    return 400 if status in _BAD_REQUEST_ALIASES else status


@lru_cache(maxsize=1024)
def status_line(status: int, version: bytes = b"HTTP/1.1") -> bytes:
    """The whole status line, CRLF included: ``b"HTTP/1.1 302 Moved Temporarily\\r\\n"``.

    Statuses without a phrase are written as nginx does (``"%03ui "``): ``b"HTTP/1.1 299 \\r\\n"``.
    ``status`` is written as given; apply :func:`wire_status` first for nginx's own pages.
    """
    text = STATUS_LINES.get(status)
    if text is None:
        text = b"%03d " % status
    return version + b" " + text + b"\r\n"


def msie_padding_applies(
    status: int,
    user_agent: bytes | str | None,
    *,
    http_version: tuple[int, int] = (1, 1),
    msie_padding: bool = True,
) -> bool:
    """Whether nginx appends the MSIE/Chrome padding to its page for ``status``.

    nginx (``ngx_http_process_user_agent``) looks at the *first* ``User-Agent`` header, case
    sensitively: MSIE is ``"MSIE "`` with at least 3 more bytes after it and no ``"Opera"``
    anywhere; Chrome is ``"Chrome/"`` in an agent that is neither MSIE nor Opera and has no
    ``"Gecko/"`` (Firefox). The padding also needs HTTP/1.0 or later and a 4xx/49x/5xx page.

    Args:
        status: the status whose page is sent (before :func:`wire_status`).
        user_agent: the first ``User-Agent`` value, or None when absent.
        http_version: request version; HTTP/0.9 gets no padding.
        msie_padding: the ``msie_padding`` directive (default on).
    """
    if not msie_padding or user_agent is None or http_version < (1, 0):
        return False
    if status < 400 or status not in _PAGES:
        return False
    return _is_msie_or_chrome(
        user_agent.encode("utf-8", "surrogateescape") if isinstance(user_agent, str) else user_agent
    )


def _is_msie_or_chrome(ua: bytes) -> bool:
    ua = ua.split(b"\0", 1)[0]  # ngx_strstrn stops at NUL
    if b"Opera" in ua:
        return False
    at = ua.find(b"MSIE ")
    if at != -1 and at + 7 < len(ua):
        return True
    return b"Gecko/" not in ua and b"Chrome/" in ua


def error_page_body(
    status: int,
    server_tokens: str = "on",
    *,
    product: str = NGINX_PRODUCT,
    version: str = NGINX_VERSION,
    msie_padding: bool = False,
) -> bytes | None:
    """The HTML page nginx sends for ``status``, or None when nginx has none (empty body).

    Args:
        status: the status as finalized (494-497 give their own page; see :func:`wire_status`).
        server_tokens: ``on``/``build`` put ``product/version`` in the tail, ``off`` only product.
        product: product token (``"nginx"``; Tern may say ``"tern"``).
        version: version token.
        msie_padding: append the padding comments (decide with :func:`msie_padding_applies`).

    Returns:
        The exact body bytes, CRLF line ends, or None for statuses without a built-in page.

    Raises:
        ValueError: ``server_tokens`` is not one of :data:`SERVER_TOKENS`.
    """
    return _error_page_body(status, server_tokens, product, version, msie_padding)


@lru_cache(maxsize=512)
def _error_page_body(
    status: int, server_tokens: str, product: str, version: str, msie_padding: bool
) -> bytes | None:
    head = _HEADS.get(status)
    if head is None:
        return None
    token = server_token(server_tokens, product, version).encode("ascii")
    body = head + b"<hr><center>" + token + b"</center>\r\n</body>\r\n</html>\r\n"
    if msie_padding and status >= 400:
        body += _MSIE_PADDING
    return body


def response_has_body(status: int, method: bytes | str = b"GET") -> bool:
    """Whether nginx sends body bytes: never for HEAD, 204 or 304.

    (HEAD and 304 keep their ``Content-Length``; 204 drops it and ``Content-Type``. nginx does
    send a body with a 1xx status from ``return 1xx "text"``.)
    """
    if (method == "HEAD") if isinstance(method, str) else (method == b"HEAD"):
        return False
    return status not in (204, 304)


def absolute_location(
    location: str,
    scheme: str,
    host: str,
    port: int,
    *,
    absolute_redirect: bool = True,
    port_in_redirect: bool = True,
) -> str:
    """The ``Location`` value nginx sends (ngx_http_header_filter, ``absolute_redirect``).

    Only a location starting with ``/`` is changed, and only when ``absolute_redirect`` is on.

    Args:
        location: the Location as set (``return 301 /x``, a directory redirect, ...).
        scheme: ``"http"`` or ``"https"`` (nginx: whether the connection is TLS).
        host: with ``server_name_in_redirect on`` the server's first ``server_name`` (lower-cased,
            as nginx stores it); else the
            request's host (``Host`` lower-cased, port and trailing dot removed, i.e. ``$host``
            when a Host was sent); else (no Host, HTTP/1.0) the local IP address, which nginx
            writes *without* brackets for IPv6 (``http://::1:8080/x``).
        port: the local port the connection was accepted on (not the Host header's port).
        absolute_redirect: the ``absolute_redirect`` directive (default on).
        port_in_redirect: the ``port_in_redirect`` directive (default on).

    Returns:
        ``"http://host:port/x"``; the port is left out for 80 on http, 443 on https and when
        ``port_in_redirect`` is off.
    """
    if not absolute_redirect or not location.startswith("/"):
        return location
    tls = scheme == "https"
    if not port_in_redirect or port == (443 if tls else 80):
        return f"{'https' if tls else 'http'}://{host}{location}"
    return f"{'https' if tls else 'http'}://{host}:{port}{location}"


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
    b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
)  # fmt: skip
_date_cache: tuple[int, bytes] = (-1, b"")


def http_date(ts: float) -> bytes:
    """``ts`` (Unix seconds) as an RFC 9110 §5.6.7 IMF-fixdate.

    ``http_date(1796007000) == b"Mon, 30 Nov 2026 02:50:00 GMT"``.

    The same format nginx uses for ``Date``, ``Last-Modified`` and ``Expires``. The last second
    formatted is cached, as nginx caches its time strings.
    """
    global _date_cache
    sec = int(ts // 1)
    cached = _date_cache
    if cached[0] == sec:
        return cached[1]
    t = _time.gmtime(sec)
    value = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday],
        t.tm_mday,
        _MONTHS[t.tm_mon - 1],
        t.tm_year,
        t.tm_hour,
        t.tm_min,
        t.tm_sec,
    )
    _date_cache = (sec, value)
    return value
