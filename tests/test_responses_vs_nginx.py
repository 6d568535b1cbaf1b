"""``proxy.responses`` writes what Debian's nginx 1.22.1 writes by itself, byte for byte.

One nginx serves three servers that differ only in ``server_tokens`` (on, off, build). Every status
nginx has a page for is produced with ``return <code>;`` and, where a request can cause it, the
natural way too (400 without Host, 414 long URI, 494 huge header, 405 POST to a file, 413 body too
large). The raw bytes are read from a socket; status line, ``Content-Type``, ``Content-Length``,
``Server``, ``Date``, ``Location`` and the body are compared with the module's functions.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.responses import (
    CLOSE_CONNECTION_STATUSES,
    ERROR_CONTENT_TYPE,
    ERROR_PAGE_STATUSES,
    NGINX_DEFAULT_TYPE,
    NO_RESPONSE_STATUSES,
    STATUS_LINES,
    absolute_location,
    error_page_body,
    http_date,
    msie_padding_applies,
    reason_phrase,
    response_has_body,
    server_header,
    server_token,
    status_line,
    wire_status,
)

try:  # tests/ on sys.path (pytest's default rootdir-less import) or the repo root on it
    from support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - depends on how pytest was started
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx  # type: ignore[no-redef]

pytestmark = pytest.mark.nginx

PAGE_CODES = (
    301, 302, 303, 307, 308, 400, 401, 402, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413,
    414, 415, 416, 421, 429, 494, 495, 496, 497, 500, 501, 502, 503, 504, 505, 507,
)  # fmt: skip
"""The statuses the brief lists; all but 408 are produced with ``return``."""

SWEEP = (*range(100, 600), 600, 777, 999)
"""Every code ``return`` can give, for status lines and (empty or page) bodies."""

TOKENS = ("on", "off", "build")

CHROME = (
    b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0 Safari/537.36"
)
FIREFOX = b"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
MSIE = b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)"
OPERA_AS_MSIE = b"Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1) Opera 9.5"
SHORT_MSIE = b"x MSIE 6."


@dataclass(frozen=True)
class Raw:
    """One response as bytes: the status line (no CRLF), header fields in order, the body."""

    status_line: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])

    def header(self, name: bytes) -> bytes | None:
        """The value of the first field called ``name`` (case-insensitive), None if absent."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def fetch(port: int, request: bytes, *, head: bool = False, timeout: float = 5.0) -> Raw | None:
    """Send raw ``request`` to 127.0.0.1:``port``; read one response (None: closed, no bytes).

    The body is read up to ``Content-Length`` (nginx may keep a lingering connection open after a
    413 or 400), to EOF without one, and not at all for HEAD, 204 and 304.
    """
    deadline = time.monotonic() + timeout
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)

        def more() -> bytes:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                return sock.recv(65536)
            except ConnectionResetError:
                return b""

        while b"\r\n\r\n" not in data:
            chunk = more()
            if not chunk:
                if not data:
                    return None
                raise AssertionError(f"connection closed inside the header: {data!r}")
            data += chunk
        head_bytes, _, body = data.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        headers = tuple(
            (name, value.strip()) for name, _, value in (line.partition(b":") for line in lines[1:])
        )
        raw = Raw(status_line=lines[0], headers=headers, body=b"")
        if head or raw.status in (204, 304):
            return Raw(status_line=lines[0], headers=headers, body=body)
        length = raw.header(b"Content-Length")
        if length is not None:
            while len(body) < int(length):
                chunk = more()
                if not chunk:
                    break
                body += chunk
        else:
            while chunk := more():
                body += chunk
    return Raw(status_line=lines[0], headers=headers, body=body)


def get(path: str, host: str = "h", *, extra: bytes = b"", method: bytes = b"GET") -> bytes:
    """An HTTP/1.1 request with ``Connection: close``."""
    return (
        method + b" " + path.encode() + b" HTTP/1.1\r\nHost: " + host.encode()
        + b"\r\nConnection: close\r\n" + extra + b"\r\n"
    )  # fmt: skip


def _ipv6_loopback() -> bool:
    """True when ::1 can be bound (containers without IPv6 skip the IPv6 check)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = _ipv6_loopback()


@dataclass(frozen=True)
class Nginx:
    ports: dict[str, int]
    """server_tokens value -> port of the server with that setting."""
    plain: int
    """Port of a server with ``port_in_redirect off``, ``server_name_in_redirect on``."""
    relative: int
    """Port of a server with ``absolute_redirect off``."""


def _locations() -> str:
    returns = "\n".join(f"location = /r{code} {{ return {code}; }}" for code in SWEEP)
    return (
        returns
        + """
        location = /text { return 200 "text"; }
        location = /text-octet { default_type application/octet-stream; return 200 "text"; }
        location = /text-plain { default_type text/plain; return 200 "text"; }
        location = /go301 { return 301 /x; }
        location = /go302 { return 302 http://a/b; }
        location = /go307 { return 307 /y?z=1; }
        location /files/ { }
        location /upload { client_max_body_size 1; return 200 "never"; }
        """
    )


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    if not NGINX_BIN.exists():
        pytest.skip(f"{NGINX_BIN} is not installed")
    prefix = tmp_path_factory.mktemp("nginx-responses")
    root = prefix / "html"
    (root / "files").mkdir(parents=True)
    (root / "files" / "f.txt").write_text("hi\n")
    (root / "upload").write_text("x\n")
    taken: list[int] = []
    for _ in range(len(TOKENS) + 2):
        taken.append(free_port(taken))
    ports = dict(zip(TOKENS, taken, strict=False))
    plain, relative = taken[len(TOKENS) :]
    servers = [
        f"server {{ listen 127.0.0.1:{port}; server_tokens {tokens}; {_locations()} }}"
        for tokens, port in ports.items()
    ]
    if IPV6:
        servers[0] = servers[0].replace("listen", f"listen [::1]:{ports['on']}; listen", 1)
    servers.append(
        f"server {{ listen 127.0.0.1:{plain}; server_name Named.example other; "
        f"port_in_redirect off; server_name_in_redirect on; {_locations()} }}"
    )
    servers.append(
        f"server {{ listen 127.0.0.1:{relative}; absolute_redirect off; {_locations()} }}"
    )
    conf = f"events {{}}\nhttp {{\nroot {root};\n" + "\n".join(servers) + "\n}\n"
    with run_nginx(conf, Path(prefix)):
        yield Nginx(ports=ports, plain=plain, relative=relative)


def assert_page(resp: Raw | None, code: int, tokens: str, *, padding: bool = False) -> None:
    """``resp`` is nginx's own page for ``code`` as :mod:`proxy.responses` builds it."""
    assert resp is not None, f"nginx closed the connection for {code}"
    assert resp.status_line + b"\r\n" == status_line(wire_status(code))
    body = error_page_body(code, tokens, msie_padding=padding)
    assert body is not None
    assert resp.body == body
    assert resp.header(b"Content-Type") == ERROR_CONTENT_TYPE
    assert resp.header(b"Content-Length") == str(len(body)).encode()
    assert resp.header(b"Server") == server_header(tokens)


# ---------------------------------------------------------------------------------------------
# error pages


@pytest.mark.parametrize("tokens", TOKENS)
@pytest.mark.parametrize("code", [c for c in PAGE_CODES if c not in NO_RESPONSE_STATUSES])
def test_return_code_page(nginx: Nginx, code: int, tokens: str) -> None:
    """``return <code>;`` sends nginx's page for the code, its status line and text/html."""
    assert_page(fetch(nginx.ports[tokens], get(f"/r{code}")), code, tokens)


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_400_missing_host(nginx: Nginx, tokens: str) -> None:
    """An HTTP/1.1 request without Host gets the 400 page."""
    assert_page(fetch(nginx.ports[tokens], b"GET / HTTP/1.1\r\n\r\n"), 400, tokens)


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_400_garbage(nginx: Nginx, tokens: str) -> None:
    """A request line that is not HTTP gets the 400 page."""
    assert_page(fetch(nginx.ports[tokens], b"GARBAGE\r\n\r\n"), 400, tokens)


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_414(nginx: Nginx, tokens: str) -> None:
    """A request line longer than large_client_header_buffers (8k) gets 414."""
    assert_page(fetch(nginx.ports[tokens], get("/" + "a" * 9000)), 414, tokens)


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_494(nginx: Nginx, tokens: str) -> None:
    """A header line over 8k gets the 494 page under a ``400 Bad Request`` status line."""
    resp = fetch(nginx.ports[tokens], get("/", extra=b"X-Big: " + b"b" * 9000 + b"\r\n"))
    assert_page(resp, 494, tokens)
    assert resp is not None and resp.status_line == b"HTTP/1.1 400 Bad Request"


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_405(nginx: Nginx, tokens: str) -> None:
    """POST to a static file gets 405."""
    assert_page(fetch(nginx.ports[tokens], get("/files/f.txt", method=b"POST")), 405, tokens)


@pytest.mark.parametrize("tokens", TOKENS)
def test_natural_413(nginx: Nginx, tokens: str) -> None:
    """A Content-Length over client_max_body_size gets 413 before the body is read."""
    req = get("/upload", method=b"POST", extra=b"Content-Length: 100\r\n")
    assert_page(fetch(nginx.ports[tokens], req), 413, tokens)


@pytest.mark.parametrize("code", sorted(NO_RESPONSE_STATUSES))
def test_no_response_statuses(nginx: Nginx, code: int) -> None:
    """``return 408/444/499;`` closes the connection without a byte (so 408's page is unused)."""
    assert fetch(nginx.ports["on"], get(f"/r{code}")) is None


@pytest.mark.parametrize("code", SWEEP)
def test_status_line_and_body_sweep(nginx: Nginx, code: int) -> None:
    """For every code: nginx's status line (trailing space when it has no text) and the body.

    ``return <code>;`` answers with the page when nginx has one, else with an empty body.
    """
    resp = fetch(nginx.ports["on"], get(f"/r{code}"))
    if code in NO_RESPONSE_STATUSES:
        assert resp is None
        return
    assert resp is not None
    assert resp.status_line + b"\r\n" == status_line(wire_status(code))
    page = error_page_body(code, "on") if code >= 300 else None
    assert resp.body == (page or b"")
    if page is not None:
        assert resp.header(b"Content-Type") == ERROR_CONTENT_TYPE


@pytest.mark.parametrize("code", [c for c in PAGE_CODES if c not in NO_RESPONSE_STATUSES])
def test_keepalive_after_page(nginx: Nginx, code: int) -> None:
    """nginx turns keep-alive off after exactly the statuses in CLOSE_CONNECTION_STATUSES."""
    resp = fetch(nginx.ports["on"], f"GET /r{code} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
    assert resp is not None
    expected = b"close" if code in CLOSE_CONNECTION_STATUSES else b"keep-alive"
    assert resp.header(b"Connection") == expected


# ---------------------------------------------------------------------------------------------
# MSIE / Chrome padding


@pytest.mark.parametrize(
    "agent",
    [CHROME, MSIE, FIREFOX, OPERA_AS_MSIE, SHORT_MSIE, b"curl/8.0", b"Chrome/1", None],
    ids=["chrome", "msie", "firefox", "opera", "short-msie", "curl", "bare-chrome", "no-agent"],
)
@pytest.mark.parametrize("code", [302, 400, 404, 494, 498, 503])
def test_msie_padding(nginx: Nginx, code: int, agent: bytes | None) -> None:
    """The padding comments follow 4xx/5xx pages only for MSIE and Chrome user agents."""
    extra = b"" if agent is None else b"User-Agent: " + agent + b"\r\n"
    padding = msie_padding_applies(code, agent)
    assert padding == (agent in (CHROME, MSIE, b"Chrome/1") and code >= 400)
    resp = fetch(nginx.ports["on"], get(f"/r{code}", extra=extra))
    assert_page(resp, code, "on", padding=padding)


def test_msie_padding_first_agent_only(nginx: Nginx) -> None:
    """Only the first User-Agent header counts."""
    extra = b"User-Agent: curl/8\r\nUser-Agent: " + CHROME + b"\r\n"
    assert_page(fetch(nginx.ports["on"], get("/r404", extra=extra)), 404, "on", padding=False)


def test_msie_padding_http10(nginx: Nginx) -> None:
    """HTTP/1.0 requests get the padding too."""
    req = b"GET /r404 HTTP/1.0\r\nUser-Agent: " + CHROME + b"\r\n\r\n"
    assert msie_padding_applies(404, CHROME, http_version=(1, 0))
    assert_page(fetch(nginx.ports["off"], req), 404, "off", padding=True)


def test_http09_gets_bare_body_without_padding(nginx: Nginx) -> None:
    """An HTTP/0.9 request gets the page with no status line, headers or padding."""
    assert not msie_padding_applies(404, CHROME, http_version=(0, 9))
    with socket.create_connection(("127.0.0.1", nginx.ports["on"]), timeout=5) as sock:
        sock.sendall(b"GET /r404\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data == error_page_body(404, "on")


# ---------------------------------------------------------------------------------------------
# HEAD, Server, Date


@pytest.mark.parametrize("agent", [b"curl/8", CHROME])
def test_head_keeps_length_drops_body(nginx: Nginx, agent: bytes) -> None:
    """HEAD: Content-Length of the (padded) page, no body bytes."""
    req = get("/r404", method=b"HEAD", extra=b"User-Agent: " + agent + b"\r\n")
    resp = fetch(nginx.ports["on"], req, head=True)
    assert resp is not None
    assert not response_has_body(404, b"HEAD")
    assert resp.body == b""
    page = error_page_body(404, "on", msie_padding=msie_padding_applies(404, agent))
    assert page is not None
    assert resp.header(b"Content-Length") == str(len(page)).encode()


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(nginx: Nginx, code: int) -> None:
    """204 and 304 carry no body."""
    resp = fetch(nginx.ports["on"], get(f"/r{code}"))
    assert resp is not None and resp.body == b""
    assert not response_has_body(code)


@pytest.mark.parametrize("tokens", TOKENS)
def test_server_and_date(nginx: Nginx, tokens: str) -> None:
    """``Server`` follows server_tokens; ``Date`` is an IMF-fixdate of the current second."""
    before = time.time()
    resp = fetch(nginx.ports[tokens], get("/r404"))
    after = time.time()
    assert resp is not None
    assert resp.header(b"Server") == server_header(tokens)
    seconds = range(int(before) - 1, int(after) + 1)
    assert resp.header(b"Date") in {http_date(s) for s in seconds}
    assert [name for name, _ in resp.headers[:2]] == [b"Server", b"Date"]


# ---------------------------------------------------------------------------------------------
# redirects and return with text


def test_return_301_relative(nginx: Nginx) -> None:
    """``return 301 /x``: Location gets scheme, the lower-cased Host without its port, and the
    local port."""
    port = nginx.ports["on"]
    resp = fetch(port, get("/go301", host="Ab.Com:99"))
    assert resp is not None
    assert resp.header(b"Location") == absolute_location("/x", "http", "ab.com", port).encode()
    assert resp.header(b"Location") == f"http://ab.com:{port}/x".encode()
    assert_page(resp, 301, "on")


def test_return_307_relative_with_args(nginx: Nginx) -> None:
    """The query of a relative redirect is kept as written."""
    port = nginx.ports["off"]
    resp = fetch(port, get("/go307", host="h"))
    assert resp is not None
    assert resp.header(b"Location") == absolute_location("/y?z=1", "http", "h", port).encode()
    assert_page(resp, 307, "off")


def test_return_301_http10_without_host(nginx: Nginx) -> None:
    """Without a Host, the local address stands in for it."""
    port = nginx.ports["on"]
    resp = fetch(port, b"GET /go301 HTTP/1.0\r\n\r\n")
    assert resp is not None
    assert resp.header(b"Location") == absolute_location("/x", "http", "127.0.0.1", port).encode()


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback")
def test_return_301_ipv6_without_host(nginx: Nginx) -> None:
    """Without a Host on an IPv6 socket nginx writes the address without brackets."""
    port = nginx.ports["on"]
    with socket.create_connection(("::1", port), timeout=5) as sock:
        sock.sendall(b"GET /go301 HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    location = absolute_location("/x", "http", "::1", port)
    assert location == f"http://::1:{port}/x"
    assert b"\r\nLocation: " + location.encode() + b"\r\n" in data


def test_return_301_server_name_in_redirect_port_off(nginx: Nginx) -> None:
    """server_name_in_redirect on uses the first server_name, lower-cased (nginx lower-cases
    server names when it reads the config); port_in_redirect off drops the port."""
    resp = fetch(nginx.plain, get("/go301", host="whatever"))
    assert resp is not None
    expected = absolute_location(
        "/x", "http", "named.example", nginx.plain, port_in_redirect=False
    )
    assert expected == "http://named.example/x"
    assert resp.header(b"Location") == expected.encode()


def test_return_301_absolute_redirect_off(nginx: Nginx) -> None:
    """absolute_redirect off leaves the Location relative."""
    resp = fetch(nginx.relative, get("/go301"))
    assert resp is not None
    assert resp.header(b"Location") == b"/x"
    assert absolute_location("/x", "http", "h", nginx.relative, absolute_redirect=False) == "/x"


def test_return_302_absolute_url(nginx: Nginx) -> None:
    """``return 302 http://a/b`` keeps the URL; the body is the "302 Found" page under a
    "302 Moved Temporarily" status line."""
    port = nginx.ports["on"]
    resp = fetch(port, get("/go302"))
    assert resp is not None
    assert resp.header(b"Location") == b"http://a/b"
    assert absolute_location("http://a/b", "http", "h", port) == "http://a/b"
    assert resp.status_line == b"HTTP/1.1 302 Moved Temporarily"
    assert_page(resp, 302, "on")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/text", NGINX_DEFAULT_TYPE),
        ("/text-octet", b"application/octet-stream"),
        ("/text-plain", b"text/plain"),
    ],
)
def test_return_200_text(nginx: Nginx, path: str, content_type: bytes) -> None:
    """``return 200 "text"`` sends the text with default_type (nginx's own default: text/plain)."""
    resp = fetch(nginx.ports["on"], get(path))
    assert resp is not None
    assert resp.status_line + b"\r\n" == status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert resp.body == b"text"
    assert resp.header(b"Content-Type") == content_type
    assert resp.header(b"Content-Length") == b"4"


# ---------------------------------------------------------------------------------------------
# pure checks (no nginx needed; they live here beside the comparisons they back)


def test_absolute_location_default_ports() -> None:
    """The port is dropped when it is the scheme's default, kept otherwise."""
    assert absolute_location("/x", "http", "h", 80) == "http://h/x"
    assert absolute_location("/x", "https", "h", 443) == "https://h/x"
    assert absolute_location("/x", "https", "h", 80) == "https://h:80/x"
    assert absolute_location("/x", "http", "h", 443) == "http://h:443/x"
    assert absolute_location("x", "http", "h", 8080) == "x"
    assert absolute_location("", "http", "h", 8080) == ""


def test_http_date_matches_email_utils() -> None:
    """http_date agrees with the stdlib's RFC 5322 GMT date for many instants."""
    for ts in (0, 1.5, 951782400, 1796006969.793, 4102444799):
        assert http_date(ts).decode() == email.utils.formatdate(int(ts), usegmt=True)
    assert http_date(1796006969.2) is http_date(1796006969.9)  # cached per second


def test_tables() -> None:
    """Tables agree with each other."""
    assert set(PAGE_CODES) <= ERROR_PAGE_STATUSES
    assert reason_phrase(302) == "Moved Temporarily"
    assert reason_phrase(299) == ""
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    assert all(line.startswith(b"%d " % code) for code, line in STATUS_LINES.items())
    assert server_token("build") == server_token("on") == "nginx/1.22.1"
    assert server_token("build", build="x") == "nginx/1.22.1 (x)"
    assert server_header("on", "tern", "0.1.0") == b"tern/0.1.0"
    body = error_page_body(404, "on", product="tern", version="0.1.0")
    assert body is not None and b"<hr><center>tern/0.1.0</center>" in body
    assert error_page_body(418) is None
    with pytest.raises(ValueError):
        server_token("maybe")
