"""Response rate limiting (``limit_rate``, ``limit_rate_after``, ``$limit_rate``,
``X-Accel-Limit-Rate``, ``proxy_limit_rate``): nginx 1.22.1 and ``tern serve`` on one config.

Every case is downloaded from both sides at once (one thread per download) with a raw client
that notes when each piece of the body arrived.  Compared: the whole answer (status, headers,
body) and the access-log line (``$limit_rate`` as the log phase sees it, ``$body_bytes_sent``).
Pacing is checked only as the upper bound a rate limit is: at every moment ``t`` (seconds since
the request was sent) the client holds at most ``after + rate * (t + 2) + SLACK`` body bytes
(nginx counts whole seconds from the request's start and allows one second ahead: two seconds'
worth is the most it can be ahead of ``rate * t``).  The bodies are 3.5 seconds' worth beyond
``after``, so an answer sent at full speed breaks the bound; nothing asserts that anything was
fast.  Bodies of answers that are not limited are only compared.  Three cases also go over
HTTP/2 (h2c with prior knowledge, curl): same body and log line, and the bound checked on the
whole body against curl's total time.

The keep-alive upstream locations are also what the compiled lane and the fast path would take:
``TERN_LANE_TRACE`` shows the lane leaves the rate-limited ones (a control location proves it
serves this configuration), and their pacing bound shows the fast path left them too (it would
answer at full speed).  An ``X-Accel-Limit-Rate`` answer to a request the lanes take is handed
to the general path (late), which paces it: ``/kaxa/`` over HTTP/1.1 and HTTP/2.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servepair import NGINX_BIN, Pair, compare, parse_responses, render  # noqa: E402

from migrate.compare import Side  # noqa: E402
from shadow.diff import CapturedResponse  # noqa: E402
from shadow.echo import Behaviour  # noqa: E402

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
]

RATE = 8192
SIZE = RATE * 7 // 2
"""3.5 seconds' worth: at full speed it breaks the bound (two seconds' worth + SLACK)."""
AFTER = 16384
SLACK = 512
"""Room for a response head counted differently (nginx counts its head against ``after``)."""
PREREAD = 4096
"""proxy_limit_rate: body bytes that may come with the upstream's head (proxy_buffer_size)."""
RET_RATE = 1024
RET_TEXT = "".join(random.Random(7).choices("abcdefghij", k=3500))
"""A ``return`` body (a config string stays under nginx's 4k token buffer): 3.4 s' worth."""
UP = "10.0.52.1:8001"
BODY = random.Random(5).randbytes(SIZE)
KA_RATE = 2048
KA_BODY = BODY[:KA_RATE * 7 // 2]
"""Keep-alive upstream answers small enough to arrive whole, as the fast path wants them."""

CONF = r"""
events {}
http {
    log_format lr '$request_uri lr=$limit_rate st=$status b=$body_bytes_sent';
    log_format plain '$request_uri lr=- st=$status b=$body_bytes_sent';
    map $arg_r $maprate { default 0; slow 8k; }
    upstream ka { server 10.0.52.1:8001; keepalive 8; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 8952;
        listen 8953 http2;
        access_log logs/access.log lr;
        root html;
        limit_rate 8k;
        limit_rate_after 0;
        location /inh/ { }
        location /zero/ { limit_rate 0; }
        location /after/ { limit_rate_after 16k; }
        location /if/ { limit_rate 0; if ($arg_slow) { limit_rate 8k; } }
        location /set/ { limit_rate 0; set $limit_rate 8k; add_header X-LR $limit_rate; }
        location /setbad/ { set $limit_rate 8x; add_header X-LR $limit_rate; }
        location /setmap/ { limit_rate 0; set $limit_rate $maprate; }
        location /map/ { limit_rate $maprate; add_header X-LR $limit_rate; }
        location /ret/ { limit_rate 1k; return 200 "RET_TEXT"; }
        location /xa/ { limit_rate 0; add_header X-LR $limit_rate;
                        proxy_pass http://10.0.52.1:8001; }
        location /xaign/ { limit_rate 0; add_header X-LR $limit_rate;
                           proxy_ignore_headers X-Accel-Limit-Rate;
                           proxy_pass http://10.0.52.1:8001; }
        location /plr/ { limit_rate 0; proxy_limit_rate 8k; proxy_pass http://10.0.52.1:8001; }
        location /plroff/ { limit_rate 0; proxy_limit_rate 8k; proxy_buffering off;
                            proxy_pass http://10.0.52.1:8001; }
    }
    server {
        # what the compiled lane takes, but for the rate limits (its log format included)
        listen 8952;
        listen 8953 http2;
        server_name lane.test;
        access_log logs/access.log plain;
        location /kaplain/ { proxy_pass http://ka; }
        location /ka/ { limit_rate 2k; proxy_pass http://ka; }
        location /kaset/ { set $limit_rate 2k; proxy_pass http://ka; }
        location /kaxa/ { proxy_pass http://ka; }
    }
}
""".replace("RET_TEXT", RET_TEXT)

STATIC = ("inh", "zero", "after", "if", "set", "setbad", "setmap", "map")
XA_HEADERS = (("Content-Type", "application/octet-stream"), ("X-Accel-Limit-Rate", str(RATE)))
KA_XA_HEADERS = (("Content-Type", "application/octet-stream"),
                 ("X-Accel-Limit-Rate", str(KA_RATE)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("limit_rate")
    files: dict[str, str | bytes] = {f"html/{loc}/big.bin": BODY for loc in STATIC}
    files["html/after/big.bin"] = BODY + BODY[:AFTER]
    p = Pair(tmp / "run", CONF, files, trace=True)
    try:
        plain = (("Content-Type", "application/octet-stream"),)
        p.behave(UP, Behaviour(prefix="/xa/", headers=XA_HEADERS, body=BODY),
                 Behaviour(prefix="/xaign/", headers=XA_HEADERS, body=BODY),
                 Behaviour(prefix="/kaxa/", headers=KA_XA_HEADERS, body=KA_BODY),
                 Behaviour(prefix="/plroff/yes", headers=(*plain, ("X-Accel-Buffering", "yes")),
                           body=BODY),
                 Behaviour(prefix="/plr/no", headers=(*plain, ("X-Accel-Buffering", "no")),
                           body=BODY),
                 Behaviour(prefix="/ka/", headers=plain, body=KA_BODY),
                 Behaviour(prefix="/kaset/", headers=plain, body=KA_BODY),
                 Behaviour(prefix="/", headers=plain, body=BODY))
        yield p
    finally:
        p.close()


@dataclass
class Download:
    raw: bytes
    samples: list[tuple[float, int]]
    """(seconds since the request was sent, body bytes held then)."""
    error: str = ""


@dataclass
class H2Download:
    body: bytes
    status: str
    seconds: float


Fetched = dict[tuple[str, str], Download | H2Download]
"""(side name, target) -> what was downloaded; HTTP/2 downloads under ("h2 " + side name, ...)."""


def _download(port: int, target: str, headers: tuple[tuple[str, str], ...] = ()) -> Download:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    host = "lane.test" if target.startswith("/ka") else "localhost"
    req = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n"
    buf = bytearray()
    samples: list[tuple[float, int]] = []
    head_end = -1
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            t0 = time.monotonic()
            sock.sendall(req.encode())
            deadline = t0 + 20
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if head_end < 0:
                    at = buf.find(b"\r\n\r\n")
                    head_end = at + 4 if at >= 0 else -1
                if head_end >= 0:
                    samples.append((time.monotonic() - t0, len(buf) - head_end))
    except OSError as exc:
        return Download(bytes(buf), samples, str(exc))
    return Download(bytes(buf), samples)


def _fetch_all(pair: Pair, jobs: list[tuple[str, tuple[tuple[str, str], ...]]]
               ) -> dict[tuple[str, str], Download]:
    """Every job on both sides at once; keyed by (side name, target)."""
    got: dict[tuple[str, str], Download] = {}

    def run(side: Side, target: str, headers: tuple[tuple[str, str], ...]) -> None:
        got[(side.name, target)] = _download(pair.side_port(side), target, headers)

    threads = [threading.Thread(target=run, args=(side, target, headers), daemon=True)
               for target, headers in jobs for side in (pair.nginx_side, pair.tern_side)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return got


def _response(d: Download) -> CapturedResponse:
    responses, _rest = parse_responses(d.raw, ["GET"], eof=True, error=d.error)
    assert responses, f"no response: {d.raw[:200]!r} {d.error}"
    return responses[0]


def _over_bound(d: Download, rate: int, after: int) -> list[tuple[float, int, int]]:
    """Samples holding more body than ``after + rate * (t + 2) + SLACK``."""
    return [(t, n, after + int(rate * (t + 2)) + SLACK) for t, n in d.samples
            if n > after + rate * (t + 2) + SLACK]


def _log_line(pair: Pair, side: Side, target: str) -> list[str]:
    deadline = time.monotonic() + 3
    while True:
        lines = [ln for ln in pair.log_lines(side) if ln.startswith(target + " ")]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


H2_CASES: list[tuple[str, tuple[int, int]]] = [
    ("/inh/big.bin", (RATE, 0)),
    ("/xa/h2", (RATE, 0)),
    ("/ka/h2", (KA_RATE, 0)),  # neither the HTTP/2 lane nor the fast path
    ("/kaxa/h2", (KA_RATE, 0)),  # the HTTP/2 lane takes it, hands the X-Accel answer over
]

# (target, request headers, (rate, after) the answer is paced at, or None: not limited)
CASES: list[tuple[str, tuple[tuple[str, str], ...], tuple[int, int] | None]] = [
    ("/inh/big.bin", (), (RATE, 0)),  # server level inherited
    ("/zero/big.bin", (), None),  # limit_rate 0 overrides it
    ("/after/big.bin", (), (RATE, AFTER)),  # limit_rate_after in the location
    ("/if/big.bin?slow=1", (), (RATE, 0)),  # limit_rate in if in location
    ("/if/big.bin", (), None),
    ("/set/big.bin", (), (RATE, 0)),  # set $limit_rate 8k
    ("/setbad/big.bin", (), (RATE, 0)),  # a set value that is not a size: ignored
    ("/setmap/big.bin?r=slow", (), (RATE, 0)),  # set $limit_rate $map
    ("/setmap/big.bin", (), None),
    ("/map/big.bin?r=slow", (), (RATE, 0)),  # limit_rate $map
    ("/map/big.bin", (), None),
    ("/ret/x", (), (RET_RATE, 0)),  # a return body
    ("/xa/x", (), (RATE, 0)),  # X-Accel-Limit-Rate from the upstream
    ("/xaign/x", (), None),  # ... ignored by proxy_ignore_headers
    ("/plr/x", (), (RATE, PREREAD)),  # proxy_limit_rate
    ("/plroff/x", (), None),  # ... not with proxy_buffering off
    ("/plroff/yes", (), (RATE, PREREAD)),  # ... which X-Accel-Buffering: yes turns on
    ("/plr/no", (), None),  # ... and X-Accel-Buffering: no off
    ("/ka/x", (), (KA_RATE, 0)),  # keep-alive upstream: neither lane nor fast path
    ("/kaset/x", (), (KA_RATE, 0)),
    # a header the lane does not take: the fast path, which must hand it over
    ("/kaxa/x", (("Authorization", "Basic eDp5"),), (KA_RATE, 0)),
    # the lane takes it and hands the X-Accel-Limit-Rate answer over (late)
    ("/kaxa/y", (), (KA_RATE, 0)),
]


@pytest.fixture(scope="module")
def downloads(pair: Pair, tmp_path_factory: pytest.TempPathFactory) -> Fetched:
    """Every HTTP/1.1 case and every HTTP/2 case (keyed ("h2 " + side name, target)), on
    both sides, all at once."""
    # idle pooled upstream connections for the lane and the fast path to find
    warm = [threading.Thread(target=pair.ask_side, args=(pair.tern_side, f"/kaplain/w{i}"),
                             kwargs={"host": "lane.test"}, daemon=True) for i in range(4)]
    for t in warm:
        t.start()
    for t in warm:
        t.join(10)
    tmp = tmp_path_factory.mktemp("h2")
    h2: Fetched = {}

    def run(side: Side, target: str) -> None:
        d = _h2_download(tmp, pair.side_port(side, 8953), target, side.name)
        h2[("h2 " + side.name, target)] = d

    threads = [threading.Thread(target=run, args=(side, target), daemon=True)
               for target, _ in H2_CASES for side in (pair.nginx_side, pair.tern_side)]
    for t in threads:
        t.start()
    got: Fetched = dict(_fetch_all(pair, [(target, headers) for target, headers, _ in CASES]))
    for t in threads:
        t.join(30)
    got.update(h2)
    return got


@pytest.mark.parametrize(("target", "headers", "paced"), CASES, ids=[c[0] for c in CASES])
def test_limit_rate(pair: Pair, downloads: Fetched, target: str,
                    headers: tuple[tuple[str, str], ...], paced: tuple[int, int] | None) -> None:
    """Same answer and log line as nginx; when nginx paces it, neither side is ahead of the
    rate's upper bound."""
    ng, tn = downloads[("nginx", target)], downloads[("tern", target)]
    assert isinstance(ng, Download) and isinstance(tn, Download)
    p_resp, c_resp = _response(ng), _response(tn)
    diffs = compare(p_resp, c_resp, [], [])
    assert not diffs, f"{target}: nginx and tern differ:\n" + render(diffs)
    assert p_resp.status == 200 and len(p_resp.body) >= len(RET_TEXT)
    lines = {side.name: _log_line(pair, side, target)
             for side in (pair.nginx_side, pair.tern_side)}
    assert lines["nginx"] and lines["nginx"] == lines["tern"], lines
    if paced is not None:
        rate, after = paced
        for name, d in (("nginx", ng), ("tern", tn)):
            over = _over_bound(d, rate, after)
            assert not over, f"{target}: {name} ahead of the rate: (t, held, bound) {over[:3]}"




def _h2_download(tmp: Path, port: int, target: str, name: str) -> H2Download:
    """One GET over h2c with curl (prior knowledge)."""
    host = "lane.test" if target.startswith("/ka") else "localhost"
    out = tmp / f"h2-{name}-{abs(hash(target))}"
    got = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "--max-time", "20", "-o", str(out),
         "-w", "%{http_code} %{time_total}", "--resolve", f"{host}:{port}:127.0.0.1",
         f"http://{host}:{port}{target}"],
        capture_output=True, text=True, timeout=30)
    status, _, seconds = got.stdout.partition(" ")
    return H2Download(out.read_bytes() if out.exists() else b"", status, float(seconds or 0))


@pytest.mark.parametrize(("target", "paced"), H2_CASES, ids=[c[0] for c in H2_CASES])
def test_limit_rate_http2(pair: Pair, downloads: Fetched, target: str,
                          paced: tuple[int, int]) -> None:
    """HTTP/2 (h2c, prior knowledge): the same body and log line as nginx, and by the time the
    whole body is in, neither side was ahead of the rate's upper bound (curl's total time)."""
    ng, tn = downloads[("h2 nginx", target)], downloads[("h2 tern", target)]
    assert isinstance(ng, H2Download) and isinstance(tn, H2Download)
    assert ng.status == tn.status == "200" and ng.body == tn.body and len(ng.body) >= len(KA_BODY)
    lines = {side.name: _log_line(pair, side, target)
             for side in (pair.nginx_side, pair.tern_side)}
    assert lines["nginx"] and lines["nginx"] == lines["tern"], lines
    rate, after = paced
    for name, d in (("nginx", ng), ("tern", tn)):
        bound = after + rate * (d.seconds + 2) + SLACK
        assert len(d.body) <= bound, f"{target}: {name} ahead of the rate: {d}"


def _trace_lines(pair: Pair, target: str) -> list[str]:
    path = pair.trace
    assert path is not None
    return [ln for ln in (path.read_text().splitlines() if path.exists() else [])
            if target in ln]


def _trace_text(pair: Pair) -> str:
    path = pair.trace
    assert path is not None
    return path.read_text() if path.exists() else "(no trace)"


def test_lane_leaves_rate_limited_locations(pair: Pair, downloads: Fetched) -> None:
    """The lane serves the plain keep-alive location and no rate-limited one."""
    pair.ask("/kaplain/x", host="lane.test").check()
    deadline = time.monotonic() + 3
    while not any(" served " in f" {ln} " for ln in _trace_lines(pair, "/kaplain/x")) and \
            time.monotonic() < deadline:
        pair.ask("/kaplain/x", host="lane.test").check()
        time.sleep(0.05)
    assert any(" served " in f" {ln} " for ln in _trace_lines(pair, "/kaplain/x")), \
        "control: the lane did not serve /kaplain/: " + _trace_text(pair)
    for target in ("/ka/x", "/kaset/x", "/kaxa/x"):
        lines = _trace_lines(pair, target)
        assert not any(" served " in f" {ln} " for ln in lines), (target, lines)


BAD = [(name, value) for name in ("limit_rate", "limit_rate_after", "proxy_limit_rate")
       for value in ("abc", "1g", "-1", "1.5k", '""')] + [("proxy_limit_rate", "$arg_r")]


def test_bad_values(tmp_path: Path) -> None:
    """Values nginx refuses at load, and a directive twice in one level: ``tern check`` names
    each file:line and exits 2 (no traceback); nginx -t refuses each one alone."""
    def conf(items: list[tuple[str, str]], dup: bool) -> str:
        body = "".join(f"    location /{i}/ {{ {n} {v}; }}\n" for i, (n, v) in enumerate(items))
        if dup:
            body += "    location /dup/ {\n      limit_rate 1k;\n      limit_rate 2k;\n    }\n"
        return f"events {{}}\nhttp {{\n  server {{\n    listen 127.0.0.1:8999;\n{body}  }}\n}}\n"

    path = tmp_path / "nginx.conf"
    path.write_text(conf(BAD, True))
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    got = subprocess.run([sys.executable, "-m", "migrate.cli", "check", str(path)],
                         capture_output=True, text=True, env=env, timeout=60)
    out = got.stdout + got.stderr
    assert got.returncode == 2, out
    assert "Traceback" not in out
    for i, (name, _value) in enumerate(BAD):
        assert f'{path}:{5 + i}: error: "{name}" directive invalid value' in out, (i, out)
    assert f'{path}:{5 + len(BAD) + 2}: error: "limit_rate" directive is duplicate' in out, out
    one = tmp_path / "one.conf"
    for item in [*BAD, None]:
        one.write_text(conf([item], False) if item is not None else conf([], True))
        ng = subprocess.run([str(NGINX_BIN), "-t", "-p", str(tmp_path), "-c", str(one)],
                            capture_output=True, text=True, timeout=30)
        want = "invalid value" if item is not None else "is duplicate"
        assert ng.returncode != 0 and want in ng.stderr, (item, ng.stderr)


def test_limit_rate_http3(tmp_path: Path) -> None:
    """HTTP/3 (Tern alone: nginx 1.22 has no HTTP/3): a ``return`` body under limit_rate comes
    whole and not ahead of the rate's upper bound."""
    import asyncio

    from tests.protocol.h3_client import h3_connect
    from tests.protocol.test_h3_serve import tern as h3_tern

    extra = f'location = /lrret {{ limit_rate 1k; return 200 "{RET_TEXT}"; }}\n'
    with h3_tern(tmp_path, extra) as t:
        async def go() -> tuple[int, bytes, float]:
            async with h3_connect(t.port, t.cert) as c:
                t0 = time.monotonic()
                r = await c.request("GET", "/lrret", timeout=20)
                return r.status, r.body, time.monotonic() - t0

        status, body, seconds = asyncio.run(go())
    assert status == 200 and body == RET_TEXT.encode()
    assert len(body) <= RET_RATE * (seconds + 2) + SLACK, (len(body), seconds)
