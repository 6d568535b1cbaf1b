"""HTTP/2 over TLS (ALPN h2, curl --http2) through the compiled lane (proxy/lane_h2.py): the
same answers, upstream requests and access-log lines as Debian's nginx 1.22.1 on the same
configuration, with ``$scheme`` ``https`` and ``$server_protocol`` ``HTTP/2.0`` in the upstream
head and the log.

One curl run per side asks several URLs on one TLS connection (the first one leaves a pooled
upstream connection, the others take the lane); Tern's ``TERN_LANE_TRACE`` shows which road each
stream took.  The echo upstream answers with a JSON description of what it received, so the
bodies compare the upstream requests.  Certificates are made here (openssl CLI); 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shadow.echo import EchoServer
from tests.protocol.tls_support import REPO, make_cert
from tests.support.nginx import NGINX_BIN, free_port, run_nginx

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason=f"{NGINX_BIN} is not installed"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

CONF = """events {{}}
http {{
    log_format h2 '$scheme $server_protocol "$request" $status $body_bytes_sent $host '
                  '$request_uri $args "$http_user_agent" $upstream_status';
    upstream app {{ server 127.0.0.1:{echo}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name lane.test;
        access_log logs/lane.log h2;
        ssl_certificate {d}/lane.test.crt;
        ssl_certificate_key {d}/lane.test.key;
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Proto "$scheme $server_protocol $host";
            proxy_set_header X-Fwd $proxy_add_x_forwarded_for;
            add_header X-Added yes;
            proxy_pass http://app;
        }}
    }}
}}
"""

URLS = ["/warm", "/a?x=1", "/b/c", "/d?q=%20z"]


def _curl(port: int, out: Path) -> list[bytes]:
    """Every URL on one connection; each answer (head and body) in its own file."""
    cmd = ["curl", "-sk", "--http2", "--resolve", f"lane.test:{port}:127.0.0.1", "-i",
           "-A", "lane-h2-tls/1", "-H", "X-Forwarded-For: 192.0.2.9"]
    files = []
    for i, url in enumerate(URLS):
        f = out / f"answer{i}"
        files.append(f)
        cmd += ["-o", str(f), f"https://lane.test:{port}{url}"]
    subprocess.run(cmd, check=True, timeout=30, capture_output=True)
    return [f.read_bytes() for f in files]


def _normal(answer: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(status line, header lines without date and the product, body)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept = [ln for ln in lines[1:] if not ln.lower().startswith((b"date:", b"server:"))]
    return lines[0], kept, body


def _wait_lines(path: Path, n: int) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def _start_tern(prefix: Path, conf_text: str, port: int, trace: Path) -> subprocess.Popen[bytes]:
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERN_LANE_TRACE": str(trace)}
    proc = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf), "-p",
                             str(prefix), "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(15)
                raise AssertionError("tern did not start") from None
            time.sleep(0.05)


def _decisions(trace: Path) -> dict[str, list[str]]:
    """Lane decisions per request target, from the trace file."""
    out: dict[str, list[str]] = {}
    for line in trace.read_text().splitlines():
        _pid, why_target = line.split(" ", 1)
        why, _, target = why_target.rpartition(" ")
        if not why.startswith("h2-compile-no"):
            out.setdefault(target, []).append(why)
    return out


def test_lane_over_tls_matches_nginx(tmp_path: Path) -> None:
    make_cert(tmp_path, "lane.test")
    with EchoServer("lane-h2-tls") as echo:
        ports = {"nginx": free_port(), "tern": free_port()}
        answers: dict[str, list[bytes]] = {}
        # nginx
        nprefix = tmp_path / "nginx"
        nprefix.mkdir()
        with run_nginx(CONF.format(echo=echo.port, port=ports["nginx"], d=tmp_path), nprefix):
            answers["nginx"] = _curl(ports["nginx"], nprefix)
            nginx_log = _wait_lines(nprefix / "logs" / "lane.log", len(URLS))
        # tern
        tprefix = tmp_path / "tern"
        trace = tmp_path / "trace.txt"
        proc = _start_tern(tprefix, CONF.format(echo=echo.port, port=ports["tern"], d=tmp_path),
                           ports["tern"], trace)
        try:
            answers["tern"] = _curl(ports["tern"], tprefix)
            tern_log = _wait_lines(tprefix / "logs" / "lane.log", len(URLS))
        finally:
            proc.terminate()
            proc.wait(15)
    for url, a, b in zip(URLS, answers["nginx"], answers["tern"], strict=True):
        assert _normal(a) == _normal(b), url
        assert a.startswith(b"HTTP/2 200"), a[:200]
        # the upstream got the HTTP/2 values of $scheme and $server_protocol
        assert b'"X-Proto","https HTTP/2.0 lane.test"' in b, b
    assert nginx_log == tern_log
    assert all(" HTTP/2.0 " in ln and ln.startswith("https ") for ln in tern_log)
    decisions = _decisions(trace)
    assert decisions["/warm"] == ["h2-late no-idle-connection"], decisions
    for url in URLS[1:]:
        assert decisions[url] == ["h2-served"], decisions


def test_many_streams_at_once(tmp_path: Path) -> None:
    """40 streams multiplexed on one TLS connection (curl --parallel): each answer is its own
    request's (the echo body names the target the upstream got), whether the lane served it or
    handed it over for want of an idle upstream connection."""
    import json

    make_cert(tmp_path, "lane.test")
    urls = [f"/m/{i}?k={i}" for i in range(40)]
    with EchoServer("lane-h2-many") as echo:
        port = free_port()
        trace = tmp_path / "trace.txt"
        proc = _start_tern(tmp_path / "tern", CONF.format(echo=echo.port, port=port,
                                                          d=tmp_path), port, trace)
        try:
            base = ["curl", "-sk", "--http2", "--resolve", f"lane.test:{port}:127.0.0.1"]
            subprocess.run([*base, "-o", "/dev/null", f"https://lane.test:{port}/warm"],
                           check=True, timeout=30, capture_output=True)
            cmd = [*base, "-Z", "--parallel-max", "40", "-w", "%{http_version}\\n"]
            files = []
            for i, url in enumerate(urls):
                files.append(tmp_path / f"m{i}")
                cmd += ["-o", str(files[-1]), f"https://lane.test:{port}{url}"]
            done = subprocess.run(cmd, check=True, timeout=60, capture_output=True, text=True)
        finally:
            proc.terminate()
            proc.wait(15)
    assert done.stdout.split() == ["2"] * len(urls)
    for url, f in zip(urls, files, strict=True):
        assert json.loads(f.read_bytes())["target"] == url
    decisions = _decisions(trace)
    ways = [decisions[url] for url in urls]
    assert all(w in (["h2-served"], ["h2-late no-idle-connection"]) for w in ways), ways
    assert ways.count(["h2-served"]) >= 1, ways
