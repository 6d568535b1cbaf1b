"""HTTP/3 reverse-proxy throughput of Tern, with Tern's HTTP/1.1 (TLS) on the same config as the
reference.

Usage:
    python bench/proxy_h3.py [--rounds 3] [--duration 5] [--connections 2] [--streams 8]

What it does, in one run:
  1. starts a backend (Debian's nginx, `return 200` of a 612-byte body) on 127.0.0.1;
  2. starts `tern serve` with 1 worker: `listen P ssl; listen P quic reuseport;`, proxy_pass to
     the backend (upstream keepalive 64, HTTP/1.1), a certificate made for the run;
  3. HTTP/3 load: h2load 1.52 (Debian) has no HTTP/3, so a load client in its own process
     (aioquic's QUIC + H3, uvloop) keeps ``--connections`` x ``--streams`` requests in flight
     (fixed concurrency) for ``--duration`` seconds (and at most 10^6 requests);
  4. HTTP/1.1 load on the same port number over TCP+TLS: wrk -t1 -c<same concurrency>;
  5. per round: rps and p99 of both, Tern's worker CPU time per request (from /proc: it does not
     depend on how busy the machine is), the HTTP/3 client's CPU share (near 1.0: the client,
     not Tern, was the limit); then the medians and the HTTP/3 / HTTP/1.1 rps ratio.

Every load is bounded in time and count; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BODY = "x" * 612
MAX_REQUESTS = 1_000_000


def free_port() -> int:
    """A port free for TCP and UDP on 127.0.0.1."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def tern_conf(port: int, backend: int, cert: Path, key: Path) -> str:
    return f"""worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        listen 127.0.0.1:{port} quic reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        http3_max_concurrent_streams 128;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def backend_conf(port: int) -> str:
    return f"""worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{BODY}"; }}
    }}
}}
"""


# -- the HTTP/3 load client (run in its own process) --------------------------------------------


async def _h3_load(port: int, connections: int, streams: int, duration: float) -> dict[str, float]:
    from aioquic.asyncio.client import connect

    from tests.protocol.h3_client import H3Client, client_config

    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + duration

    async def one_stream(c: H3Client) -> None:
        nonlocal errors
        while time.monotonic() < end and len(latencies) < MAX_REQUESTS:
            t0 = time.monotonic()
            sid = c.send_request("GET", "/")
            r = await c.response(sid, timeout=10)
            del c.responses[sid]
            if r.status == 200 and len(r.body) == len(BODY):
                latencies.append(time.monotonic() - t0)
            else:
                errors += 1

    async def one_connection() -> None:
        async with connect("127.0.0.1", port, configuration=client_config(None),
                           create_protocol=H3Client) as c:
            await asyncio.gather(*(one_stream(c) for _ in range(streams)))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    wall = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / wall,
            "p99_ms": p99, "client_cpu": cpu / wall}


def h3_load(port: int, connections: int, streams: int, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", str(port), str(connections), str(streams),
         str(duration)], capture_output=True, text=True, timeout=duration + 60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


_LAT = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)


def wrk(port: int, duration: int, connections: int) -> tuple[float, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
         f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(_RPS.search(out).group(1))  # type: ignore[union-attr]
    m = _LAT.search(out)
    assert m is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, float(m.group(1)) * scale


def worker_cpu(master: int) -> float:
    """CPU seconds (user + system) used so far by the master's worker processes."""
    total = 0.0
    try:
        kids = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in kids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--client", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover
            pass
        port, conns, streams, duration = args.client
        print(json.dumps(asyncio.run(_h3_load(int(port), int(conns), int(streams),
                                              float(duration)))))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    from tests.protocol.h3_client import make_cert

    tmp = Path(tempfile.mkdtemp(prefix="tern-bench-h3-"))
    cert, key = make_cert(tmp)
    bport, tport = free_port(), free_port()
    (tmp / "backend" / "logs").mkdir(parents=True)
    (tmp / "backend" / "nginx.conf").write_text(backend_conf(bport))
    backend = subprocess.Popen([NGINX, "-p", str(tmp / "backend"), "-c",
                                str(tmp / "backend" / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp / "tern").mkdir()
    (tmp / "tern" / "nginx.conf").write_text(tern_conf(tport, bport, cert, key))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    tern = subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve",
                             str(tmp / "tern" / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    conc = args.connections * args.streams
    try:
        wait_port(bport)
        wait_port(tport)
        time.sleep(0.5)
        h3_load(tport, args.connections, args.streams, 1)  # warm-up
        wrk(tport, 1, conc)
        print(f"== tern serve, 1 worker; HTTP/3: aioquic client, {args.connections} "
              f"connection(s) x {args.streams} streams; HTTP/1.1+TLS: wrk -t1 -c{conc}; "
              f"{args.duration}s x {args.rounds} rounds ==")
        h3r: list[float] = []
        h3p: list[float] = []
        h1r: list[float] = []
        h1p: list[float] = []
        h3c: list[float] = []
        h1c: list[float] = []
        for r in range(args.rounds):
            c0 = worker_cpu(tern.pid)
            res = h3_load(tport, args.connections, args.streams, args.duration)
            c1 = worker_cpu(tern.pid)
            a, b = wrk(tport, args.duration, conc)
            c2 = worker_cpu(tern.pid)
            h3r.append(res["rps"])
            h3p.append(res["p99_ms"])
            h1r.append(a)
            h1p.append(b)
            h3c.append((c1 - c0) / max(res["requests"], 1) * 1e6)
            h1c.append((c2 - c1) / max(a * args.duration, 1) * 1e6)
            print(f"  round {r + 1}: h3 {res['rps']:7.0f} rps p99 {res['p99_ms']:7.2f} ms "
                  f"worker {h3c[-1]:4.0f} us/req (errors {res['errors']:.0f}, client cpu "
                  f"{res['client_cpu']:.2f}) | h1 {a:7.0f} rps p99 {b:7.2f} ms worker "
                  f"{h1c[-1]:4.0f} us/req | ratio h3/h1 {res['rps'] / a:.2f}")
        print(f"  median: h3 {statistics.median(h3r):.0f} rps p99 {statistics.median(h3p):.2f} "
              f"ms; h1 {statistics.median(h1r):.0f} rps p99 {statistics.median(h1p):.2f} ms; "
              f"ratio h3/h1 = "
              f"{statistics.median(x / y for x, y in zip(h3r, h1r, strict=True)):.2f}")
        print(f"  median Tern worker CPU per request: h3 {statistics.median(h3c):.0f} us, "
              f"h1 {statistics.median(h1c):.0f} us (load-independent: the machine is shared)")
    finally:
        stop(tern)
        stop(backend)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
