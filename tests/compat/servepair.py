"""nginx and ``tern serve`` side by side on one config, for tests: send, capture, compare.

A thin layer over ``tern compare``'s machinery (:class:`migrate.compare.Comparison`): the config is
port-mapped twice (:mod:`migrate.portmap`), every upstream address becomes one recording
:class:`shadow.echo.EchoServer` shared by both sides, nginx (``/usr/sbin/nginx``) and
``python -m migrate.cli serve`` run on their copies. What this module adds:

* :meth:`Pair.ask`: one request on a fresh connection to each side (compare's own client), the
  answers and the upstream requests of each, and their differences;
* :meth:`Pair.raw`: raw bytes on one connection (pipelining, keep-alive, malformed requests,
  stalls), every response on it parsed, whether and when the server closed;
* :meth:`Pair.take_over`: replace an echo server by a test-owned socket on the same port (a
  refusing port, a black hole that never accepts, a WebSocket-ish tunnel peer);
* comparison rules (:func:`compare`): responses as :func:`shadow.diff.diff` normalises them
  (hop-by-hop ignored, ``Date`` masked, case/order-insensitive), the product token
  (``nginx/1.22.1`` / ``tern/0.1.0``, or ``nginx`` / ``tern`` under ``server_tokens off``)
  reduced to its shape in ``Server`` and in the tail of built-in error pages, so that shape is
  compared; upstream requests with every header compared, ``Connection`` included (only the
  request tag is ignored).

Everything is bounded in time and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path

from migrate.compare import (
    DEFAULT_CANDIDATE,
    ECHOED_BODY,
    TAG_HEADER,
    Capture,
    Comparison,
    RequestSpec,
    Side,
)
from migrate.portmap import normalise_address
from shadow.diff import (
    HOP_BY_HOP,
    CapturedRequest,
    CapturedResponse,
    Difference,
    DiffOptions,
    Framing,
    diff_requests,
    diff_responses,
)
from shadow.echo import Behaviour, EchoServer, sequence_mark

NGINX_BIN = Path("/usr/sbin/nginx")

RESPONSE_OPTIONS = DiffOptions(
    ignore_headers=HOP_BY_HOP | {TAG_HEADER.lower()}, mask_headers=frozenset({"date"})
)
"""Responses: hop-by-hop ignored, Date masked; Server compared after :func:`product_shape`."""

UPSTREAM_OPTIONS = DiffOptions(
    ignore_headers=frozenset({TAG_HEADER.lower()}), mask_headers=frozenset()
)
"""Upstream requests: every header compared (Connection, Upgrade... included)."""

_TOKENS = (
    (re.compile(rb"^(?:nginx/1\.22\.1|tern/\d+\.\d+\.\d+)$"), b"PRODUCT/VERSION"),
    (re.compile(rb"^(?:nginx|tern)$"), b"PRODUCT"),
)
_PAGE_TAIL = re.compile(
    rb"<hr><center>(nginx/1\.22\.1|tern/\d+\.\d+\.\d+|nginx|tern)</center>\r\n"
    rb"</body>\r\n</html>\r\n"
)


def product_shape(r: CapturedResponse) -> CapturedResponse:
    """``r`` with the product token replaced by its shape in ``Server`` and error page tails.

    ``Content-Length`` follows the body when it described the body's length.
    """
    headers = []
    for name, value in r.headers:
        if name.lower() == b"server":
            for pattern, shape in _TOKENS:
                if pattern.match(value.strip()):
                    value = shape
                    break
        headers.append((name, value))

    def tail(m: re.Match[bytes]) -> bytes:
        token = m.group(1)
        shape = b"PRODUCT/VERSION" if b"/" in token else b"PRODUCT"
        return m.group(0).replace(token, shape)

    headers = _expires_relative(headers)
    body = _PAGE_TAIL.sub(tail, r.body)
    if len(body) != len(r.body):
        old = str(len(r.body)).encode()
        headers = [
            (n, str(len(body)).encode() if n.lower() == b"content-length" and v == old else v)
            for n, v in headers
        ]
    return replace(r, headers=tuple(headers), body=body)


def _expires_relative(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``Expires`` as seconds after ``Date`` (both sides answer in different seconds)."""
    date = next((v for n, v in headers if n.lower() == b"date"), None)
    if date is None:
        return headers
    try:
        base = parsedate_to_datetime(date.decode()).timestamp()
    except (TypeError, ValueError):
        return headers
    out = []
    for n, v in headers:
        if n.lower() == b"expires":
            with contextlib.suppress(TypeError, ValueError):
                when = parsedate_to_datetime(v.decode()).timestamp()
                if abs(when - base) < 10 * 365 * 86400:  # epoch and max stay as written
                    v = b"Date%+ds" % int(when - base)
        out.append((n, v))
    return out


def compare(
    p_resp: CapturedResponse,
    c_resp: CapturedResponse,
    p_up: Sequence[CapturedRequest],
    c_up: Sequence[CapturedRequest],
    *,
    echoed: bool = False,
    prefix: str = "",
) -> list[Difference]:
    """Differences of two answers and of what their upstreams received (module rules)."""
    pr, cr = product_shape(p_resp), product_shape(c_resp)
    if echoed:
        pr, cr = _neutral(pr), _neutral(cr)
    out = [replace(d, field=prefix + d.field) for d in diff_responses(pr, cr, RESPONSE_OPTIONS)]
    out += compare_upstream(p_up, c_up, prefix=prefix)
    return out


def compare_upstream(
    p_up: Sequence[CapturedRequest], c_up: Sequence[CapturedRequest], *, prefix: str = ""
) -> list[Difference]:
    out: list[Difference] = []
    if len(p_up) != len(c_up):
        out.append(
            Difference(
                field=prefix + "upstream:count", primary=str(len(p_up)), candidate=str(len(c_up))
            )
        )
    for i, (a, b) in enumerate(zip(p_up, c_up, strict=False)):
        name = prefix + ("upstream:" if i == 0 else f"upstream[{i}]:")
        out += diff_requests(a, b, UPSTREAM_OPTIONS, prefix=name)
    return out


def _neutral(r: CapturedResponse) -> CapturedResponse:
    headers = tuple((n, v) for n, v in r.headers if n.lower() != b"content-length")
    return replace(r, headers=headers, body=ECHOED_BODY)


def render(diffs: Sequence[Difference]) -> str:
    return "\n".join(
        f"  {d.field}\n    nginx: {d.primary}\n    tern:  {d.candidate}" for d in diffs
    )


# --------------------------------------------------------------------------------------------
# outcomes


@dataclass
class Outcome:
    """One request sent to both sides."""

    nginx: Capture
    tern: Capture
    diffs: list[Difference]

    @property
    def status(self) -> int | None:
        """nginx's status (the oracle)."""
        return self.nginx.response.status

    def header(self, name: str, side: str = "nginx") -> str | None:
        resp = (self.nginx if side == "nginx" else self.tern).response
        for n, v in resp.headers:
            if n.decode("latin-1").lower() == name.lower():
                return v.decode("latin-1")
        return None

    def check(self) -> Outcome:
        assert not self.diffs, "nginx and tern differ:\n" + render(self.diffs)
        return self


@dataclass
class RawCapture:
    """What one side did on one raw connection."""

    responses: list[CapturedResponse]
    closed: bool
    """The server closed (or reset) the connection before the read ended."""
    close_after: float | None
    """Seconds from the last byte sent until the close, when it closed."""
    leftover: bytes
    """Bytes after the last complete response (a tunnel's payload, a truncated body)."""
    upstream: list[CapturedRequest]


@dataclass
class RawOutcome:
    nginx: RawCapture
    tern: RawCapture
    diffs: list[Difference]

    def check(self) -> RawOutcome:
        assert not self.diffs, "nginx and tern differ:\n" + render(self.diffs)
        return self

    @property
    def statuses(self) -> list[int | None]:
        return [r.status for r in self.nginx.responses]


# --------------------------------------------------------------------------------------------
# raw responses


def parse_responses(
    raw: bytes, methods: Sequence[str], *, eof: bool, error: str = ""
) -> tuple[list[CapturedResponse], bytes]:
    """Parse consecutive complete responses; the rest is returned as leftover bytes.

    ``methods[i]`` is the method of the i-th request (HEAD answers have no body); a 101 ends the
    parse (what follows is tunnel payload). A close-delimited body ends at EOF.
    """
    out: list[CapturedResponse] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            break
        head_req = len(out) < len(methods) and methods[len(out)] == "HEAD"
        head = raw[pos:end]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            break
        status = int(parts[1])
        # the reason phrase is compared too, as a pseudo header
        headers = [(b":reason", parts[2] if len(parts) > 2 else b"(none)")]
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            headers.append((n, v.strip()))
        lower = {n.lower(): v for n, v in headers}
        start = end + 4
        if status == 101 or head_req or status in (204, 304) or status < 200:
            out.append(
                CapturedResponse(
                    status=status, version=parts[0][5:].decode(), headers=tuple(headers)
                )
            )
            pos = start
            if status == 101:
                break
            continue
        if b"chunked" in lower.get(b"transfer-encoding", b"").lower():
            body, used = _dechunk(raw, start)
            if used is None:
                break
            out.append(
                CapturedResponse(
                    status=status, version=parts[0][5:].decode(), headers=tuple(headers), body=body
                )
            )
            pos = used
            continue
        if b"content-length" in lower:
            length = int(lower[b"content-length"])
            if len(raw) - start < length:
                break
            out.append(
                CapturedResponse(
                    status=status,
                    version=parts[0][5:].decode(),
                    headers=tuple(headers),
                    body=raw[start : start + length],
                )
            )
            pos = start + length
            continue
        if not eof:
            break
        out.append(
            CapturedResponse(
                status=status,
                version=parts[0][5:].decode(),
                headers=tuple(headers),
                body=raw[start:],
                error="" if error in ("", "closed") else error,
            )
        )
        pos = len(raw)
    return out, raw[pos:]


def _dechunk(raw: bytes, pos: int) -> tuple[bytes, int | None]:
    out = bytearray()
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return b"", None
        size = int(raw[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = raw.find(b"\r\n", pos)
            while end >= 0 and end != pos:  # trailers
                pos = end + 2
                end = raw.find(b"\r\n", pos)
            if end < 0:
                return b"", None
            return bytes(out), end + 2
        if len(raw) < pos + size + 2:
            return b"", None
        out += raw[pos : pos + size]
        pos += size + 2


# --------------------------------------------------------------------------------------------
# the pair


_tags = itertools.count(1)

Step = bytes | float
"""A raw script step: bytes to send, or seconds to wait."""


class Pair:
    """nginx and tern on one config (``conf`` is written to ``tmp/nginx.conf``)."""

    def __init__(
        self,
        tmp: Path,
        conf: str,
        files: dict[str, str | bytes] | None = None,
        *,
        timeout: float = 5.0,
        trace: bool = False,
    ) -> None:
        """``trace``: Tern writes its compiled lanes' decisions to ``tmp/lane-trace.txt``
        (``TERN_LANE_TRACE``; read with ``trace_mark`` and ``trace_lines``)."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.trace: Path | None = tmp / "lane-trace.txt" if trace else None
        for name, content in (files or {}).items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                path.write_bytes(content)
        config = tmp / "nginx.conf"
        config.write_text(conf)
        self.messages: list[str] = []
        self.cmp = Comparison(
            config=str(config),
            prefix=str(tmp),
            candidate_config=None,
            candidate_cmd=DEFAULT_CANDIDATE,
            nginx=str(NGINX_BIN),
            timeout=timeout,
            start_timeout=20.0,
            keep=False,
            log=self.messages.append,
        )
        old = os.environ.get("TERN_LANE_TRACE")
        if self.trace is not None:
            os.environ["TERN_LANE_TRACE"] = str(self.trace)  # read when Tern starts
        try:
            self.cmp.setup()
        except BaseException:
            self.cmp.close()
            raise
        finally:
            if self.trace is not None:
                if old is None:
                    os.environ.pop("TERN_LANE_TRACE", None)
                else:
                    os.environ["TERN_LANE_TRACE"] = old
        self.nginx_side, self.tern_side = self.cmp.sides
        self._behaviours: dict[str, dict[str, Behaviour]] = {}
        self.owned: list[Callable[[], None]] = []

    def trace_mark(self) -> int:
        """The number of lane-trace lines written so far (for ``trace_lines``)."""
        assert self.trace is not None, "Pair(..., trace=True)"
        return len(self.trace.read_text().splitlines()) if self.trace.exists() else 0

    def trace_lines(self, mark: int, text: str) -> list[str]:
        """Lane-trace lines written after ``mark`` that contain ``text``, waiting up to 2 s
        for the first (Tern writes them as it serves)."""
        assert self.trace is not None, "Pair(..., trace=True)"
        deadline = time.monotonic() + 2
        while True:
            lines = self.trace.read_text().splitlines()[mark:] if self.trace.exists() else []
            found = [ln for ln in lines if text in ln]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def close(self) -> None:
        for stop in self.owned:
            with contextlib.suppress(Exception):
                stop()
        self.cmp.close()

    # upstreams --------------------------------------------------------------------------------

    def echo(self, address: str) -> EchoServer:
        """The echo server standing in for an original upstream address (``10.0.0.1:8001``)."""
        return self.cmp.echoes[normalise_address(address)]

    def behave(self, address: str, *behaviours: Behaviour) -> None:
        """Add answers to the echo server of ``address`` (a behaviour for the same prefix
        replaces the earlier one)."""
        table = self._behaviours.setdefault(address, {})
        for b in behaviours:
            table[b.prefix] = b
        self.echo(address).set_behaviours(table.values())

    def take_over(self, address: str, kind: str) -> TakenOver:
        """Stop the echo server of ``address`` and put a test-owned socket on its port.

        ``kind``: ``refuse`` (nothing listens), ``blackhole`` (listens, never accepts, backlog
        full: connects time out), ``sink`` (accepts, never reads), ``tunnel`` (answers an
        upgrade with 101, then echoes raw bytes).
        """
        echo = self.echo(address)
        port = echo.port
        echo.stop()
        taken = TakenOver(address, port, kind)
        taken.start()
        self.owned.append(taken.stop)
        return taken

    def side_port(self, side: Side, port: int | None = None) -> int:
        spec = RequestSpec(port=port)
        listen = self.cmp.listen_for(spec)
        got = side.port_for(listen)
        assert got is not None
        return got

    # requests ---------------------------------------------------------------------------------

    def ask(
        self,
        url: str = "/",
        *,
        method: str = "GET",
        host: str | None = "localhost",
        port: int | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "1.1",
        parallel: bool = False,
    ) -> Outcome:
        """One request on a new connection to each side (nginx first).

        ``parallel``: both sides at once (slow cases); upstream records are then told apart
        by the request tag alone, which differs per side.
        """
        spec = RequestSpec(
            method=method,
            target=url,
            host=host,
            port=port,
            headers=tuple(headers),
            body=body,
            version=version,
        )
        listen = self.cmp.listen_for(spec)
        spec = replace(spec, scheme="http")
        tag = f"t{next(_tags)}"
        if parallel:
            got: dict[str, Capture] = {}

            def run(side: Side) -> None:
                got[side.name] = self.cmp.exchange(side, listen, spec, f"{tag}-{side.name}")

            threads = [
                threading.Thread(target=run, args=(side,), daemon=True)
                for side in (self.nginx_side, self.tern_side)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(self.cmp.timeout + 5)
            p, c = got["nginx"], got["tern"]
        else:
            p = self.cmp.exchange(self.nginx_side, listen, spec, tag)
            c = self.cmp.exchange(self.tern_side, listen, spec, tag)
        return Outcome(
            p,
            c,
            compare(p.response, c.response, p.upstream, c.upstream, echoed=p.echoed and c.echoed),
        )

    def ask_side(
        self,
        side: Side,
        url: str = "/",
        *,
        method: str = "GET",
        host: str | None = "localhost",
        port: int | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Capture:
        """One request to one side only (for sequences whose state is compared afterwards)."""
        spec = RequestSpec(
            method=method,
            target=url,
            host=host,
            port=port,
            headers=tuple(headers),
            body=body,
            scheme="http",
        )
        return self.cmp.exchange(side, self.cmp.listen_for(spec), spec, f"t{next(_tags)}")

    def raw(
        self,
        script: Sequence[Step] | bytes,
        *,
        port: int | None = None,
        methods: Sequence[str] = (),
        expect: int | None = None,
        linger: float = 0.0,
        deadline: float = 5.0,
        rcvbuf: int | None = None,
        read_after: float = 0.0,
        compare_close: bool = True,
        close_window: tuple[float, float] | None = None,
        parallel: bool = False,
    ) -> RawOutcome:
        """Send ``script`` on one connection to each side; parse what comes back.

        Reading stops when the server closes, when ``expect`` responses are complete and
        ``linger`` more seconds passed without a close, or after ``deadline`` seconds.
        ``read_after`` delays the first read (a client that does not read). With
        ``close_window=(lo, hi)``, each side must have closed between lo and hi seconds after
        the last byte sent (a timeout), and the close times are not compared otherwise.
        ``b"{tag}"`` in the script becomes a request tag header line; with ``parallel`` both
        sides run at once and upstream records are told apart by that tag only.
        """
        steps = [script] if isinstance(script, bytes) else list(script)
        tag = f"t{next(_tags)}"
        results: dict[str, RawCapture] = {}

        def run(side: Side) -> None:
            own = tag + "-" + side.name if parallel else tag
            side_steps = [
                s.replace(b"{tag}", f"{TAG_HEADER}: {own}".encode()) if isinstance(s, bytes) else s
                for s in steps
            ]
            results[side.name] = self._raw_one(
                side,
                side_steps,
                port=port,
                methods=methods,
                expect=expect,
                linger=linger,
                deadline=deadline,
                rcvbuf=rcvbuf,
                read_after=read_after,
                tag=own if parallel else None,
            )

        if parallel:
            threads = [
                threading.Thread(target=run, args=(side,), daemon=True)
                for side in (self.nginx_side, self.tern_side)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(deadline + read_after + 30)
        else:
            for side in (self.nginx_side, self.tern_side):
                run(side)
        p, c = results["nginx"], results["tern"]
        diffs: list[Difference] = []
        if len(p.responses) != len(c.responses):
            diffs.append(
                Difference(
                    field="responses",
                    primary=str([r.status for r in p.responses]),
                    candidate=str([r.status for r in c.responses]),
                )
            )
        for i, (a, b) in enumerate(zip(p.responses, c.responses, strict=False)):
            diffs += compare(a, b, [], [], prefix=f"#{i}:")
        diffs += compare_upstream(p.upstream, c.upstream)
        if compare_close and p.closed != c.closed:
            diffs.append(Difference(field="closed", primary=str(p.closed), candidate=str(c.closed)))
        if close_window is not None:
            lo, hi = close_window
            for name, cap in (("nginx", p), ("tern", c)):
                ok = cap.close_after is not None and lo <= cap.close_after <= hi
                if not ok:
                    diffs.append(
                        Difference(
                            field=f"close time ({name})",
                            primary=f"within {lo}-{hi}s",
                            candidate=str(cap.close_after),
                        )
                    )
        return RawOutcome(p, c, diffs)

    def _raw_one(
        self,
        side: Side,
        steps: list[Step],
        *,
        port: int | None,
        methods: Sequence[str],
        expect: int | None,
        linger: float,
        deadline: float,
        rcvbuf: int | None,
        read_after: float,
        tag: str | None = None,
    ) -> RawCapture:
        mark = sequence_mark()
        target = self.side_port(side, port)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(deadline)
        raw = bytearray()
        closed = False
        error = ""
        sent_at = time.monotonic()
        close_after = None
        try:
            sock.connect(("127.0.0.1", target))
            for step in steps:
                if isinstance(step, float | int):
                    time.sleep(step)
                    continue
                with contextlib.suppress(OSError):
                    sock.sendall(step)
                sent_at = time.monotonic()
            if read_after:
                time.sleep(read_after)
            end = time.monotonic() + deadline
            quiet_until: float | None = None
            while True:
                now = time.monotonic()
                if expect is not None and quiet_until is None:
                    done, _ = parse_responses(bytes(raw), methods, eof=False)
                    if len(done) >= expect:
                        quiet_until = now + linger
                limit = min(end, quiet_until) if quiet_until is not None else end
                if now >= limit:
                    break
                sock.settimeout(max(0.01, limit - now))
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    closed, error = True, "reset"
                    break
                if not data:
                    closed, error = True, "closed"
                    break
                raw += data
            if closed:
                close_after = round(time.monotonic() - sent_at, 3)
        finally:
            sock.close()
        responses, leftover = parse_responses(bytes(raw), methods, eof=closed, error=error)
        responses = [side.normalise_response(r) for r in responses]
        records = [
            r
            for e in self.cmp.echoes.values()
            for r in e.records_since(mark)
            if tag is None or r.header(TAG_HEADER) == tag
        ]
        records.sort(key=lambda r: r.seq)
        upstream = [side.normalise_request(r.captured()) for r in records]
        return RawCapture(responses, closed, close_after, leftover, upstream)

    # files ------------------------------------------------------------------------------------

    def log_lines(self, side: Side, name: str = "access.log") -> list[str]:
        path = os.path.join(side.run_dir, "logs", name)
        try:
            with open(path, encoding="latin-1") as fh:
                return [side._text(line) for line in fh.read().splitlines()]
        except FileNotFoundError:
            return []


# --------------------------------------------------------------------------------------------
# test-owned upstream sockets


@dataclass
class TakenOver:
    """A socket on a stopped echo server's port (see :meth:`Pair.take_over`)."""

    address: str
    port: int
    kind: str
    requests: list[CapturedRequest] = field(default_factory=list)
    tunnel_bytes: bytearray = field(default_factory=bytearray)
    _socks: list[socket.socket] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        if self.kind == "refuse":
            return
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.kind == "sink":
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lsock.bind(("127.0.0.1", self.port))
        self._socks.append(lsock)
        if self.kind == "blackhole":
            lsock.listen(0)
            # fill the accept queue: further SYNs are dropped, connects time out
            for _ in range(2):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", self.port))
                self._socks.append(filler)
            time.sleep(0.05)
            return
        lsock.listen(16)
        lsock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, args=(lsock,), daemon=True)
        self._thread.start()

    def _serve(self, lsock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._socks.append(conn)
            if self.kind == "tunnel":
                threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()
            # sink: keep it open, never read

    def _tunnel(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf = bytearray()
        deadline = time.monotonic() + 10
        try:
            while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                buf += data
            head, _, rest = bytes(buf).partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target, version = lines[0].split(b" ", 2)
            headers = tuple((n, v.strip()) for n, _, v in (ln.partition(b":") for ln in lines[1:]))
            self.requests.append(
                CapturedRequest(
                    method=method.decode(),
                    target=target.decode("latin-1"),
                    version=version.decode()[5:],
                    headers=headers,
                    framing=Framing.NONE,
                    upstream=self.address,
                )
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nX-Tunnel: yes\r\n\r\n"
            )
            if rest:
                self.tunnel_bytes += rest
                conn.sendall(b"echo:" + rest)
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                self.tunnel_bytes += data
                conn.sendall(b"echo:" + data)
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()
        self._socks.clear()


__all__ = [
    "Behaviour",
    "TakenOver",
    "compare_upstream",
    "render",
    "NGINX_BIN",
    "Outcome",
    "Pair",
    "RawOutcome",
    "compare",
    "parse_responses",
    "product_shape",
]
