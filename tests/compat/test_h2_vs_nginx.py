"""The HTTP/2 adapter answers what Debian's nginx 1.22.1 answers, over h2c (prior knowledge).

Each case is a sequence of frames written by hand (HPACK without Huffman coding, fresh tables per
connection).  It goes to a real nginx on ``listen ... http2`` over a socket, and the same bytes
go to ``H2Server(H2Limits(strict=False))`` driven by a toy engine that answers like the config
(``return 200 "ok"`` for ``/``; ``/body`` reads the body first, as nginx's proxy_pass does).
Per stream the outcome is compared: the response status, or RST_STREAM with its code, or
nothing; per connection the GOAWAY (last stream id, code).

Known differences, pinned here rather than hidden: nginx offers SETTINGS_MAX_FRAME_SIZE 2^24-1
(the adapter 16384); after its keepalive_requests GOAWAY nginx ignores new streams silently (the
adapter refuses them with REFUSED_STREAM); nginx answers request trailers with GOAWAY
PROTOCOL_ERROR (the adapter drops them); and ``strict`` (the default) resets requests RFC 9113
calls malformed that nginx passes on (``tests/protocol/test_h2.py::MALFORMED``).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hpack import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from proxy.protocol.events import (
    RequestData,
    RequestEnd,
    RequestEvent,
    RequestHeaders,
    RequestRejected,
    ResponseData,
    ResponseEnd,
    ResponseHeaders,
    StreamReset,
)
from proxy.protocol.h2 import H2Limits, H2Server

try:  # the repo root on sys.path (python -m pytest)
    from tests.protocol.test_h2 import GET, MALFORMED, OK, POST, RST
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - depends on how pytest was started
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
    from support.nginx import NGINX_BIN, free_port, run_nginx  # type: ignore[no-redef, import-not-found, unused-ignore]
    from test_h2 import GET, MALFORMED, OK, POST, RST  # type: ignore[no-redef, import-not-found, unused-ignore]

pytestmark = pytest.mark.nginx

if not NGINX_BIN.exists():  # pragma: no cover - CI has it
    pytest.skip(f"{NGINX_BIN} is not installed", allow_module_level=True)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
QUIET = 0.4
"""Seconds of silence after which nginx is taken to have said all it will."""
KEEPALIVE_REQUESTS = 3
"""keepalive_requests of the second server (port ``kr``)."""

CONF = """
events {{}}
http {{
    server {{
        listen 127.0.0.1:{main} http2;
        location / {{ return 200 "ok"; }}
        location /body {{ proxy_pass http://127.0.0.1:{back}; }}
    }}
    server {{
        listen 127.0.0.1:{kr} http2;
        keepalive_requests {requests};
        location / {{ return 200 "ok"; }}
    }}
    server {{
        listen 127.0.0.1:{back};
        location / {{ return 200 "got"; }}
    }}
}}
"""


@dataclass(frozen=True)
class Ports:
    main: int
    kr: int


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    main = free_port()
    kr = free_port([main])
    back = free_port([main, kr])
    conf = CONF.format(main=main, kr=kr, back=back, requests=KEEPALIVE_REQUESTS)
    with run_nginx(conf, tmp_path_factory.mktemp("nginx-h2")):
        yield Ports(main, kr)


# ---------------------------------------------------------------------------------------------
# scripts, outcomes


class Script:
    """Frames of one connection, HPACK-encoded in order."""

    def __init__(self) -> None:
        self.enc = Encoder()
        self.parts: list[bytes] = []
        self.sids: list[int] = []

    def headers(
        self, sid: int, fields: list[tuple[bytes, bytes]], end_stream: bool = True
    ) -> Script:
        block = bytes(self.enc.encode(fields, huffman=False))
        pieces = [block[i : i + 16384] for i in range(0, len(block), 16384)] or [b""]
        frames: list[Frame] = [HeadersFrame(sid, data=pieces[0])]
        frames += [ContinuationFrame(sid, data=p) for p in pieces[1:]]
        if end_stream:
            frames[0].flags.add("END_STREAM")
        frames[-1].flags.add("END_HEADERS")
        self.sids.append(sid)
        return self.frame(*frames)

    def data(self, sid: int, data: bytes, end: bool = False) -> Script:
        f = DataFrame(sid, data=data)
        if end:
            f.flags.add("END_STREAM")
        return self.frame(f)

    def frame(self, *frames: Frame) -> Script:
        self.parts += [f.serialize() for f in frames]
        return self

    @property
    def wire(self) -> bytes:
        return PREFACE + b"".join(self.parts)


@dataclass
class Outcome:
    streams: dict[int, object] = field(default_factory=dict)
    """Stream id: response status, ``(RST, code)``, or absent (nothing came)."""
    goaway: tuple[int, int] | None = None
    settings: dict[int, int] = field(default_factory=dict, compare=False)


def frames_of(data: bytes) -> list[Frame]:
    out = []
    while len(data) >= 9:
        f, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        f.parse_body(memoryview(data[9 : 9 + length]))
        out.append(f)
        data = data[9 + length :]
    return out


def outcome_of(frames: list[Frame]) -> Outcome:
    """Statuses (decoded in order with one HPACK table), resets and the GOAWAY."""
    result = Outcome()
    decoder = Decoder()
    for f in frames:
        if isinstance(f, HeadersFrame):
            status = dict(decoder.decode(f.data, raw=True)).get(b":status")
            if status is not None and not status.startswith(b"1"):
                result.streams[f.stream_id] = int(status)
        elif isinstance(f, RstStreamFrame):
            if f.error_code or f.stream_id not in result.streams:  # NO_ERROR after a response
                result.streams[f.stream_id] = (RST, f.error_code)
        elif isinstance(f, GoAwayFrame) and result.goaway is None:
            result.goaway = (f.last_stream_id, f.error_code)
        elif isinstance(f, SettingsFrame) and "ACK" not in f.flags and not result.settings:
            result.settings = dict(f.settings)
    return result


def run_nginx_script(port: int, script: Script) -> Outcome:
    """Send the script in one write; read until every stream is answered, the connection is
    closed, or nginx has been quiet for QUIET seconds."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(script.wire)
        deadline = time.monotonic() + 10
        sock.settimeout(QUIET)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            result = outcome_of(frames_of(data))
            if result.goaway is not None and result.goaway[1]:
                break
            if script.sids and all(s in result.streams for s in script.sids):
                sock.settimeout(0.05)  # a trailing RST_STREAM NO_ERROR, if any
    return outcome_of(frames_of(data))


def run_adapter(script: Script, limits: H2Limits) -> Outcome:
    """The same bytes into the adapter, with an engine that answers like the nginx config."""
    server = H2Server(limits)
    events = server.receive_data(script.wire)
    waiting: set[int] = set()
    out = b""
    for _ in range(10):
        answer: list[tuple[int, int, bytes]] = []
        for ev in events:
            answer += engine(ev, waiting)
        for sid, status, body in answer:
            server.send(ResponseHeaders(stream_id=sid, status=status, headers=()))
            server.send(ResponseData(stream_id=sid, data=body))
            server.send(ResponseEnd(stream_id=sid))
        out += server.data_to_send()
        events = []
        if not answer:
            break
    return outcome_of(frames_of(out))


def engine(ev: RequestEvent, waiting: set[int]) -> list[tuple[int, int, bytes]]:
    """``return 200 "ok"`` at once; ``/body`` answers 200 "got" once the body is complete."""
    if isinstance(ev, RequestHeaders):
        if ev.target.startswith(b"/body") and not ev.end_stream:
            waiting.add(ev.stream_id)
            return []
        return [(ev.stream_id, 200, b"ok")]
    if isinstance(ev, RequestRejected):
        waiting.discard(ev.stream_id)
        return [(ev.stream_id, ev.status_hint, b"error page")]
    if isinstance(ev, RequestEnd) and ev.stream_id in waiting:
        waiting.discard(ev.stream_id)
        return [(ev.stream_id, 200, b"got")]
    if isinstance(ev, StreamReset):
        waiting.discard(ev.stream_id)
    assert isinstance(ev, (RequestData, RequestEnd, StreamReset))
    return []


NGINX = H2Limits(strict=False)


def both(port: int, script: Script, limits: H2Limits = NGINX) -> tuple[Outcome, Outcome]:
    return run_nginx_script(port, script), run_adapter(script, limits)


def normalise(value: object) -> object:
    """The table's words for an outcome: OK for 200, RST for RST_STREAM PROTOCOL_ERROR."""
    if value == 200:
        return OK
    if value == (RST, 1):
        return RST
    return value


# ---------------------------------------------------------------------------------------------
# the connection preface and limits


def test_settings(nginx: Ports) -> None:
    """nginx's SETTINGS and connection window; the adapter offers the same but the frame size."""
    ours, theirs = run_adapter(Script(), NGINX), run_nginx_script(nginx.main, Script())
    assert theirs.settings == {3: 128, 4: 65536, 5: 16777215}
    assert ours.settings == {3: 128, 4: 65536}


def test_129th_stream_refused(nginx: Ports) -> None:
    """130 streams held open (bodies still to come): the 129th and 130th get RST_STREAM
    REFUSED_STREAM, the connection goes on, and a GET while 128 are open is refused too."""
    script = Script()
    for i in range(130):
        script.headers(1 + 2 * i, [*POST[:2], (b":path", b"/body"), POST[3]], end_stream=False)
    script.headers(261, GET)
    theirs, ours = both(nginx.main, script)
    refused = {sid: (RST, 7) for sid in (257, 259, 261)}
    assert theirs.streams == refused and theirs.goaway is None
    assert ours.streams == refused and ours.goaway is None


def test_new_streams_per_read(nginx: Ports) -> None:
    """300 streams opened and reset in one write: nginx refuses those past 256 in one read
    (Debian's CVE-2023-44487 patch).  The adapter serves the same 256 (with its rapid-reset
    limit raised; with its defaults it ends the connection first, ``test_rapid_reset``); it has
    seen the client's RST_STREAM for the others by then, so it sends no REFUSED_STREAM."""
    script = Script()
    for i in range(300):
        script.headers(1 + 2 * i, GET).frame(RstStreamFrame(1 + 2 * i, error_code=8))
    theirs = run_nginx_script(nginx.main, script)
    refused = {1 + 2 * i: (RST, 7) for i in range(256, 300)}
    assert {s: o for s, o in theirs.streams.items() if o == (RST, 7)} == refused
    server = H2Server(H2Limits(strict=False, max_resets=(1000, 2000)))
    served = {
        e.stream_id for e in server.receive_data(script.wire) if isinstance(e, RequestHeaders)
    }
    assert served == {1 + 2 * i for i in range(256)}


def test_keepalive_requests(nginx: Ports) -> None:
    """keepalive_requests 3: the third stream comes with GOAWAY NO_ERROR naming it; the first
    three are answered.  Later streams: nginx ignores them, the adapter refuses them."""
    script = Script()
    for sid in (1, 3, 5, 7):
        script.headers(sid, GET)
    theirs, ours = both(nginx.kr, script, H2Limits(strict=False, max_requests=KEEPALIVE_REQUESTS))
    assert theirs.goaway == ours.goaway == (5, 0)
    assert theirs.streams == {1: 200, 3: 200, 5: 200}
    assert ours.streams == {1: 200, 3: 200, 5: 200, 7: (RST, 7)}


@pytest.mark.parametrize(
    ("fields", "calm"),
    [
        ([(b"x-a", b"v" * 8192)], False),
        ([(b"x-a", b"v" * 8193)], True),
        ([(b"x-" + b"n" * 8190, b"v")], False),
        ([(b"x-" + b"n" * 8191, b"v")], True),
        ([(b"x-a", b"v" * 8000)] * 4 + [(b"x-b", b"v" * 715)], False),
        ([(b"x-a", b"v" * 8000)] * 4 + [(b"x-b", b"v" * 716)], True),
    ],
    ids=["field-8192", "field-8193", "name-8192", "name-8193", "list-32768", "list-32769"],
)
def test_header_size_limits(nginx: Ports, fields: list[tuple[bytes, bytes]], calm: bool) -> None:
    """large_client_header_buffers 4 8k: over 8192 bytes in a field, or 32768 in the list, is a
    GOAWAY ENHANCE_YOUR_CALM; at the limit the request is served."""
    theirs, ours = both(nginx.main, Script().headers(1, GET + fields))
    assert theirs == ours
    assert ours.goaway == ((1, 11) if calm else None)


def test_priority_flood(nginx: Ports) -> None:
    """The 128th PRIORITY frame on a fresh connection is a GOAWAY ENHANCE_YOUR_CALM."""
    few = Script().frame(*[PriorityFrame(3 + 2 * i) for i in range(127)]).headers(1, GET)
    theirs, ours = both(nginx.main, few)
    assert theirs == ours and ours.streams == {1: 200}
    many = Script().frame(*[PriorityFrame(3 + 2 * i) for i in range(128)])
    theirs, ours = both(nginx.main, many)
    assert theirs.goaway == ours.goaway == (0, 11)


# ---------------------------------------------------------------------------------------------
# requests

EXTRA: list[tuple[str, list[tuple[bytes, bytes]], object]] = [
    ("path-control-byte", [*GET[:2], (b":path", b"/a\x01b"), GET[3]], 400),
    ("path-del", [*GET[:2], (b":path", b"/a\x7fb"), GET[3]], 400),
    ("path-tab", [*GET[:2], (b":path", b"/a\tb"), GET[3]], 400),
    ("path-utf8", [*GET[:2], (b":path", b"/caf\xc3\xa9"), GET[3]], OK),
    ("path-hash", [*GET[:2], (b":path", b"/a#b"), GET[3]], OK),
    ("host-dot", [*GET[:3], (b":authority", b".")], 400),
    ("host-port-only", [*GET[:3], (b":authority", b":80")], 400),
    ("host-trailing-dot-port", [*GET[:3], (b":authority", b"a.:80")], OK),
    ("host-open-bracket", [*GET[:3], (b":authority", b"[::1")], OK),
    ("host-dotdot", [*GET[:3], (b":authority", b"a..b")], 400),
    ("host-empty", [*GET[:3], (b":authority", b"")], 400),
    ("content-length-minus", [*GET, (b"content-length", b"-1")], 400),
    ("content-length-plus", [*GET, (b"content-length", b"+1")], 400),
    ("content-length-list", [*GET, (b"content-length", b"1,1")], 400),
    ("content-length-empty", [*GET, (b"content-length", b"")], 400),
    ("content-length-2^63", [*GET, (b"content-length", b"9223372036854775808")], 400),
    ("duplicate-authorization", [*GET, (b"authorization", b"a"), (b"authorization", b"b")], 400),
    ("cookie-crumbs", [*GET, (b"cookie", b"a=1"), (b"cookie", b"b=2")], OK),
    ("method-with-underscore", [(b":method", b"MY_M-X"), *GET[1:]], OK),
    ("method-with-digit", [(b":method", b"M1"), *GET[1:]], 400),
    ("pseudo-colon-only", [*GET, (b":", b"x")], 400),
    ("pseudo-with-underscore", [*GET, (b":pa_th", b"/")], 400),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(c[1], c[3]) for c in MALFORMED] + [(c[1], c[2]) for c in EXTRA],
    ids=[c[0] for c in MALFORMED] + [c[0] for c in EXTRA],
)
def test_request_rules(nginx: Ports, fields: list[tuple[bytes, bytes]], expected: object) -> None:
    """Each malformed-request rule of the unit tests, and a few more: nginx's outcome is the
    table's, and the adapter (``strict=False``) gives the same."""
    script = Script().headers(1, fields).headers(3, GET)
    theirs, ours = both(nginx.main, script)
    assert normalise(theirs.streams.get(1)) == expected, theirs
    assert theirs == ours


@pytest.mark.parametrize(
    ("declared", "body"),
    [(b"3", b"abc"), (b"5", b"abc"), (b"2", b"abc"), (None, b"abc")],
    ids=["exact", "shorter", "longer", "none"],
)
def test_body_length(nginx: Ports, declared: bytes | None, body: bytes) -> None:
    """A body read by nginx (proxy_pass) that does not match its Content-Length is a 400."""
    fields = [*POST[:2], (b":path", b"/body"), POST[3]]
    if declared is not None:
        fields.append((b"content-length", declared))
    script = Script().headers(1, fields, end_stream=False).data(1, body, end=True)
    theirs, ours = both(nginx.main, script)
    assert theirs == ours
    assert ours.streams[1] == (200 if declared in (None, b"3") else 400)


def test_empty_header_name(nginx: Ports) -> None:
    """A field with an empty name ends the connection: GOAWAY PROTOCOL_ERROR naming that stream,
    not the ones behind it in the same read."""
    theirs, ours = both(nginx.main, Script().headers(1, [*GET, (b"", b"v")]).headers(3, GET))
    assert theirs == ours and ours.goaway == (1, 1) and ours.streams == {}


def test_request_trailers_differ(nginx: Ports) -> None:
    """nginx 1.22 takes a second HEADERS frame on a stream for a new stream with a stale id:
    GOAWAY PROTOCOL_ERROR.  The adapter takes it for trailers and drops them."""
    fields = [*POST[:2], (b":path", b"/body"), POST[3]]
    script = Script().headers(1, fields, end_stream=False).data(1, b"abc")
    script.headers(1, [(b"x-trailer", b"1")])
    theirs, ours = both(nginx.main, script)
    assert theirs.goaway == (1, 1)
    assert ours.goaway is None and ours.streams == {1: 200}


def test_window_updates_are_no_flood_for_nginx_either(nginx: Ports) -> None:
    """A few hundred WINDOW_UPDATEs are served by both (the overhead rule needs megabytes)."""
    script = Script().frame(*[WindowUpdateFrame(0, window_increment=1) for _ in range(300)])
    script.headers(1, GET)
    theirs, ours = both(nginx.main, script)
    assert theirs == ours and ours.streams == {1: 200}
