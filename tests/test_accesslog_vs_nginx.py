"""``proxy.accesslog`` writes the same access log lines as Debian's nginx 1.22.1, byte for byte.

nginx logs every request to four files: ``combined`` and one custom format under each escaping
(default, json, none). The requests carry odd bytes (quotes, backslashes, UTF-8, invalid UTF-8,
control characters, empty values) in headers, the request line, arguments and cookies. For each
request the test knows every variable's value from what it sent and received; only the clock
fields are read back from nginx's line (``$msec``, ``$request_time``) and the line is then built
by :func:`proxy.accesslog.compile_log_format`. ``$time_local``/``$time_iso8601`` are computed from
nginx's ``$msec`` (same cached clock), and ``$request_time`` is checked loosely against the wall
time the test measured.
"""

from __future__ import annotations

import base64
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.accesslog import (
    COMBINED,
    VarGetter,
    compile_log_format,
    log_status,
    msec,
    request_time,
    time_iso8601,
    time_local,
)
from proxy.model import NOWHERE, LogFormat

try:  # tests/ on sys.path (pytest's default rootdir-less import) or the repo root on it
    from support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - depends on how pytest was started
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx  # type: ignore[no-redef]

from migrate.grammars import parse_template

pytestmark = pytest.mark.nginx

CUSTOM = (
    "$msec $request_time <$time_local|$time_iso8601> $status $body_bytes_sent $bytes_sent "
    "$request_length [$remote_addr|$remote_user] \"$request\" \"$http_user_agent\" "
    "ref=$http_referer odd=$http_x_odd empty=$http_x_empty args=$args q=$arg_q c=$cookie_c "
    "tail:é\\"
)
"""The custom format: clock fields first (read back by splitting on spaces), then the rest."""

FORMATS = {
    "combined": COMBINED,
    "default": LogFormat(name="c_default", format=parse_template(CUSTOM), source=NOWHERE),
    "json": LogFormat(name="c_json", escape="json", format=parse_template(CUSTOM), source=NOWHERE),
    "none": LogFormat(name="c_none", escape="none", format=parse_template(CUSTOM), source=NOWHERE),
}

ODD = b'q"uo\\te \xc3\xa9\xe2\x82\xac\xe6\x97\xa5 \x01\x1f\x7f\ttab \xff\xfe\x80 end'
"""Quotes, backslash, UTF-8 (é € 日), control bytes, DEL, tab, invalid UTF-8."""


@dataclass
class Exchange:
    """One request as sent and what came back."""

    request_line: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    sent: bytes = b""
    received: bytes = b""
    started: float = 0.0
    finished: float = 0.0

    @property
    def status(self) -> int:
        return int(self.received.split(b" ", 2)[1])

    @property
    def body_length(self) -> int:
        return len(self.received.partition(b"\r\n\r\n")[2])

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


REQUESTS: list[tuple[bytes, list[tuple[bytes, bytes]]]] = [
    (b"GET / HTTP/1.1", [(b"User-Agent", b"curl/8.0")]),
    (b"GET /?q=1&x=%22y HTTP/1.1", [(b"User-Agent", ODD), (b"X-Odd", ODD), (b"X-Empty", b"")]),
    (b"GET /missing?q= HTTP/1.1", [(b"User-Agent", b""), (b"Referer", b"http://r/\xe2\x82\xac\"")]),
    (b'GET /p"a\\th/\xc3\xa9\xff?q=%00"\\ HTTP/1.1', [(b"Cookie", b"c=\"v\\\xc3\xa9\"; d=1")]),
    (b"GET /e? HTTP/1.0", [(b"Cookie", b"c=")]),
    (b"HEAD /missing HTTP/1.1", [(b"Authorization", b"Basic " + base64.b64encode(b'u"s\\er:pw'))]),
    (b"GET /text HTTP/1.1", [(b"X-Odd", b"\\\\\\\"\"\"")]),
    (b"GET /slow HTTP/1.1", [(b"User-Agent", b"slow")]),
]
"""(request line, headers) pairs; ``Host``/``Connection: close`` are added to HTTP/1.1 ones."""

SLOW = len(REQUESTS) - 1
"""The request whose headers follow its request line after :data:`PAUSE` seconds."""

PAUSE = 0.3


def send(
    port: int, request_line: bytes, headers: list[tuple[bytes, bytes]], *, pause: float = 0.0
) -> Exchange:
    """Send one request on a fresh connection and read until nginx closes it.

    With ``pause`` the request line goes first and the headers ``pause`` seconds later (nginx's
    request clock starts with the first bytes).
    """
    all_headers = list(headers)
    if request_line.endswith(b"HTTP/1.1"):
        all_headers = [(b"Host", b"h"), *all_headers, (b"Connection", b"close")]
    raw = request_line + b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in all_headers)
    raw += b"\r\n"
    ex = Exchange(request_line=request_line, headers=all_headers, sent=raw)
    ex.started = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if pause:
            split = len(request_line) + 2
            sock.sendall(raw[:split])
            time.sleep(pause)
            sock.sendall(raw[split:])
        else:
            sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    ex.finished = time.time()
    ex.received = data
    return ex


def cookie(ex: Exchange, name: bytes) -> bytes | None:
    value = ex.header(b"Cookie")
    if value is None:
        return None
    for pair in value.split(b";"):
        key, eq, val = pair.strip().partition(b"=")
        if eq and key == name:
            return val
    return None


def known_values(ex: Exchange, clock: dict[str, bytes]) -> VarGetter:
    """A getter with the value of every variable in the formats, as nginx sees it."""
    target = ex.request_line.split(b" ")[1]
    path, qmark, query = target.partition(b"?")
    args: bytes | None = query if query else None  # "/e?" has no $args (not found)
    q: bytes | None = None
    for pair in query.split(b"&") if query else []:
        key, _, val = pair.partition(b"=")
        if key == b"q":
            q = val
            break
    user: bytes | None = None
    auth = ex.header(b"Authorization")
    if auth is not None and auth.startswith(b"Basic "):
        user = base64.b64decode(auth[6:]).partition(b":")[0]
    ts = float(clock["msec"])
    head_only = ex.request_line.startswith(b"HEAD ")
    values: dict[str, bytes | str | None] = {
        "msec": msec(ts),
        "request_time": clock["request_time"],
        "time_local": time_local(ts),
        "time_iso8601": time_iso8601(ts),
        "status": log_status(ex.status),
        "body_bytes_sent": str(0 if head_only else ex.body_length),
        "bytes_sent": str(len(ex.received)),
        "request_length": str(len(ex.sent)),
        "remote_addr": "127.0.0.1",
        "remote_user": user,
        "request": ex.request_line,
        "http_user_agent": ex.header(b"User-Agent"),
        "http_referer": ex.header(b"Referer"),
        "http_x_odd": ex.header(b"X-Odd"),
        "http_x_empty": ex.header(b"X-Empty"),
        "args": args,
        "arg_q": q,
        "cookie_c": cookie(ex, b"c"),
    }
    return values.__getitem__


@dataclass(frozen=True)
class Logged:
    exchanges: list[Exchange]
    lines: dict[str, list[bytes]]
    """Format key -> nginx's lines (each with its ``\\n``), in request order."""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    if not NGINX_BIN.exists():
        pytest.skip(f"{NGINX_BIN} is not installed")
    prefix = Path(tmp_path_factory.mktemp("nginx-accesslog"))
    logs = prefix / "logs"
    port = free_port()
    quoted = CUSTOM.replace("\\", "\\\\").replace("'", "\\'")
    conf = f"""
events {{}}
http {{
    log_format c_default '{quoted}';
    log_format c_json escape=json '{quoted}';
    log_format c_none escape=none '{quoted}';
    server {{
        listen 127.0.0.1:{port};
        access_log {logs}/combined.log combined;
        access_log {logs}/default.log c_default;
        access_log {logs}/json.log c_json;
        access_log {logs}/none.log c_none;
        location / {{ return 404; }}
        location = / {{ return 200 "home"; }}
        location = /text {{ return 200 "some text"; }}
    }}
}}
"""
    with run_nginx(conf, prefix):
        exchanges = [
            send(port, line, headers, pause=PAUSE if i == SLOW else 0.0)
            for i, (line, headers) in enumerate(REQUESTS)
        ]
    lines = {
        key: (logs / f"{key}.log").read_bytes().splitlines(keepends=True) for key in FORMATS
    }
    for key, got in lines.items():
        assert len(got) == len(exchanges), f"{key}.log: {got!r}"
    return Logged(exchanges=exchanges, lines=lines)


@pytest.mark.parametrize("index", range(len(REQUESTS)))
@pytest.mark.parametrize("key", list(FORMATS))
def test_line_matches_nginx(logged: Logged, key: str, index: int) -> None:
    """Our line for the request equals nginx's, byte for byte."""
    ex = logged.exchanges[index]
    msec_field, request_time_field, _ = logged.lines["default"][index].split(b" ", 2)
    clock = {"msec": msec_field, "request_time": request_time_field}
    ours = compile_log_format(FORMATS[key])(known_values(ex, clock))
    assert ours == logged.lines[key][index]


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_request_time_is_plausible(logged: Logged, index: int) -> None:
    """nginx's $request_time is within the wall time the client measured (loose check)."""
    ex = logged.exchanges[index]
    _, request_time_field, _ = logged.lines["default"][index].split(b" ", 2)
    assert len(request_time_field.partition(b".")[2]) == 3
    low = PAUSE - 0.01 if index == SLOW else 0.0
    assert low <= float(request_time_field) <= ex.finished - ex.started + 0.002
    measured = request_time(ex.started, ex.finished)  # the client's view, nginx's format
    assert float(measured) >= float(request_time_field) - 0.002


def test_clock_fields_agree(logged: Logged) -> None:
    """$time_local and $time_iso8601 of every line are those of its own $msec (in the local zone,
    which nginx inherits through TZ) and the clock lies within the test's run."""
    for index, ex in enumerate(logged.exchanges):
        line = logged.lines["default"][index]
        msec_field, _, rest = line.split(b" ", 2)
        times = rest[rest.index(b"<") + 1 : rest.index(b">")].decode()
        ts = float(msec_field)
        assert times == f"{time_local(ts)}|{time_iso8601(ts)}"
        assert ex.started - 1 <= ts <= ex.finished + 1
