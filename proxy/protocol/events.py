"""The event vocabulary shared by every protocol adapter and the engine.

Rules:

1. Every event names its ``stream_id``; HTTP/1.x numbers the requests of a connection 1, 2, 3...
   (pipelined requests get consecutive ids; responses are sent in that order).
2. Names are nouns for messages (``RequestHeaders``) and past tense for transport facts.
3. Header names are lower-case bytes for lookups; ``raw_headers`` keeps the client's case and order
   where the protocol has them (HTTP/1.x), because nginx passes names upstream as received.
4. Adapters never raise on peer input: a malformed request becomes ``RequestRejected`` with the
   status nginx would send (``status_hint``) and the connection is then closed after the response.
5. Events are not modified once made (treat them as values).  They are not frozen dataclasses
   only because a frozen one costs ~1.5 us more to build, once per request on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, kw_only=True)
class RequestHeaders:
    """A request head has arrived."""

    stream_id: int
    method: bytes
    """Method as sent (``b"GET"``)."""
    target: bytes
    """Request target as sent (path and query; absolute-form for proxies; ``*`` for OPTIONS)."""
    http_version: str
    """``"1.0"``, ``"1.1"``, ``"2.0"`` or ``"3.0"``."""
    raw_headers: tuple[tuple[bytes, bytes], ...]
    """Header fields in arrival order, names as sent (HTTP/2 and HTTP/3: lower case)."""
    host: bytes | None = None
    """Host header or ``:authority``, as sent."""
    content_length: int | None = None
    """Declared body length, when framed by Content-Length."""
    chunked: bool = False
    """Body framed with chunked transfer coding (HTTP/1.1)."""
    end_stream: bool = False
    """True when no body follows (HTTP/2 END_STREAM on HEADERS; HTTP/1 without a body)."""
    keep_alive: bool = True
    """HTTP/1.x: whether the client allows the connection to be reused."""
    upgrade: bytes | None = None
    """HTTP/1.1 ``Upgrade`` token when ``Connection: upgrade`` was sent (WebSocket)."""


@dataclass(slots=True, kw_only=True)
class RequestData:
    """A piece of request body (transfer coding removed)."""

    stream_id: int
    data: bytes


@dataclass(slots=True, kw_only=True)
class RequestEnd:
    """The request body is complete (trailers, if any, dropped as nginx drops them)."""

    stream_id: int


@dataclass(slots=True, kw_only=True)
class RequestRejected:
    """The client sent something nginx refuses; answer ``status_hint`` and close."""

    stream_id: int
    status_hint: int
    """400, 413, 414, 431, 501, 505..."""
    reason: str
    """For the error log."""
    # What nginx had parsed of the request when it refused it (its access log line is made of
    # these).  Only an adapter that knows sets them; the defaults mean "not a refused head".
    request_line: bytes | None = None
    """nginx's ``$request``: the request line as sent (without its CR LF), or as much of it as
    nginx had read (a too-long line: up to the end of its buffer; a bad one: up to the first CR or
    LF received); ``b""`` when only blank lines came.  None: the refusal is not of a request head
    (a body went wrong after ``RequestHeaders``), and nginx logs nothing for it here."""
    method: bytes | None = None
    """The method, when the request line was parsed whole (else None: ``$request_method`` is
    not found)."""
    target: bytes | None = None
    """The request target as sent, when the request line was parsed whole."""
    http_version: str | None = None
    """``"1.0"``, ``"1.1"``... when the request line was parsed whole."""
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    """Header fields nginx had processed, in arrival order (the refused one included when it was
    refused for its value, as nginx's handlers see it first)."""
    host: bytes | None = None
    """The valid host that picked the virtual server before the refusal (absolute-form target
    or the first Host header), as sent; None: the socket's default server."""


@dataclass(slots=True, kw_only=True)
class ResponseHeaders:
    """Response status and headers to send."""

    stream_id: int
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    """Names as they should appear on the wire (HTTP/1.x keeps case)."""
    end_stream: bool = False
    """No body follows."""
    reason: bytes | None = None
    """HTTP/1.x reason phrase to write instead of the standard one (nginx passes the
    upstream's status line text through)."""


@dataclass(slots=True, kw_only=True)
class ResponseData:
    """A piece of response body to send."""

    stream_id: int
    data: bytes


@dataclass(slots=True, kw_only=True)
class ResponseEnd:
    """The response is complete."""

    stream_id: int


@dataclass(slots=True, kw_only=True)
class StreamReset:
    """The stream was aborted (by the peer, or to be aborted by us)."""

    stream_id: int
    error_code: int = 0


@dataclass(slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed the connection (or it must be closed now)."""


RequestEvent = RequestHeaders | RequestData | RequestEnd | RequestRejected | StreamReset
ResponseEvent = ResponseHeaders | ResponseData | ResponseEnd | StreamReset
