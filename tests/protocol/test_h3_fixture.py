"""The tls-h2-h3 fixture (a real nginx tree) served by `tern serve` with its optional HTTP/3
include switched on, as its README says to do on nginx >= 1.25: HTTP/3 and HTTP/1.1 over TLS
give the same answers and send the same requests upstream.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from shadow.echo import EchoServer
from tests.protocol.h3_client import h3_connect
from tests.protocol.test_h3_serve import HOP, free_port

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "fixtures" / "nginx" / "tls-h2-h3"


def h1(port: int, cafile: Path, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """GET over HTTP/1.1 + TLS to 127.0.0.1 with SNI and Host app.example.com."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("app.example.com", port, context=ctx, timeout=10)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sock = ctx.wrap_socket(raw, server_hostname="app.example.com")
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "app.example.com")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, [(k.lower().encode(), v.encode()) for k, v in resp.getheaders()], \
            resp.read()
    finally:
        conn.close()


def test_fixture_with_quic_include(tmp_path: Path) -> None:
    """app.example.com over HTTP/3 (certificate checked against the fixture's) and over
    HTTP/1.1 + TLS: same status, headers (HSTS, X-Served-By, Alt-Svc) and body, and the same
    request at the upstream (Host, X-Forwarded-Proto)."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURE, tree)
    port, plain = free_port(), free_port()
    with EchoServer("app") as app, EchoServer("api") as api:
        for f in [*tree.rglob("*.conf")]:
            text = f.read_text().replace("8443", str(port)).replace("8080", str(plain))
            text = text.replace("9401", str(app.port)).replace("9402", str(api.port))
            text = text.replace("# include conf.d/quic.conf;", "include conf.d/quic.conf;")
            f.write_text(text)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve",
                                 str(tree / "nginx.conf"), "-w", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        cert = tree / "certs" / "app.example.com.crt"
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                try:
                    first = h1(port, cert, "/x?y=1")
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)

            async def go() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
                async with h3_connect(port, cert, server_name="app.example.com") as c:
                    r = await c.request("GET", "/x?y=1", authority="app.example.com")
                    return r.status, r.headers, r.body
            app.clear()
            s1, hd1, b1 = h1(port, cert, "/x?y=1")
            s3, hd3, b3 = asyncio.run(go())
            keep = lambda hs: [(k, v) for k, v in hs if k not in HOP]  # noqa: E731
            assert first[0] == s1 == s3 == 200
            assert keep(hd3) == keep(hd1) and b3 == b1
            names = dict(hd3)
            assert names[b"alt-svc"] == f'h3=":{port}"; ma=86400'.encode()
            assert names[b"x-served-by"] == b"app.example.com"
            a, b = app.records
            view = lambda r: (r.method, r.target, [(k.lower(), v) for k, v in r.headers],  # noqa: E731
                              r.body)
            assert view(a) == view(b)
            assert b.header("X-Forwarded-Proto") == "https" and b.header("Host") == \
                "app.example.com"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
