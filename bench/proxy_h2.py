"""HTTP/2 over TLS reverse-proxy throughput: nginx and Tern side by side, same upstream.

Usage:
    python bench/proxy_h2.py [--rounds 3] [--duration 5] [--clients 10] [--streams 10] [--unique]

What it does, in one run:
  1. makes a throw-away certificate (openssl CLI) and starts a backend (Debian's nginx, 2
     workers, `return 200` of a 612-byte body) on 127.0.0.1;
  2. starts nginx and Tern, 1 worker each, as TLS + HTTP/2 reverse proxies with the same config
     (`listen ... ssl http2`, `proxy_pass` to an upstream group with `keepalive 64`,
     `proxy_http_version 1.1`, `Connection ""`);
  3. runs h2load (`-cC -mM -D duration`) against each, alternating nginx/Tern for R rounds;
  4. prints per-round rps and p99 request time, the median rps ratio Tern/nginx and the median
     p99 ratio, and the worker CPU time per request of each (user + system, from /proc: less
     sensitive to a busy machine than rps, since it does not count time spent waiting for a
     core) with their ratio nginx/Tern.

Every load is bounded in time (h2load -D) and traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_h1 import (  # noqa: E402
    backend_conf,
    children,
    free_port,
    start_nginx,
    start_tern,
    stop,
    wait_port,
)


def proxy_conf(port: int, backend: int, cert: Path, key: Path) -> str:
    return f"""worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


_RPS = re.compile(r"finished in [\d.]+\w+, ([\d.]+) req/s")
_DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (``/proc/<pid>/stat``), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


UNIQUE_URIS = 200_000
"""``--unique``: distinct paths in h2load's input file (each client walks the list in turn)."""
_URI_FILE: list[str] = []


def h2load(port: int, duration: int, clients: int, streams: int) -> tuple[float, float, int]:
    """rps and p99 request time (ms) from h2load's per-request log."""
    with tempfile.NamedTemporaryFile(prefix="h2load-", suffix=".log") as log:
        if _URI_FILE:
            text = "".join(f"https://127.0.0.1:{port}/item/{i}?page={i % 97}\n"
                           for i in range(UNIQUE_URIS))
            Path(_URI_FILE[0]).write_text(text)
            target = ["-i", _URI_FILE[0]]
        else:
            target = [f"https://127.0.0.1:{port}/"]
        out = subprocess.run(
            ["h2load", f"-c{clients}", f"-m{streams}", "-D", str(duration),
             "--log-file", log.name, *target],
            capture_output=True, text=True, timeout=duration + 60, check=True).stdout
        times = sorted(int(line.split()[2]) for line in Path(log.name).read_text().splitlines()
                       if line.count("\t") >= 2)
    m = _RPS.search(out)
    assert m is not None, out
    done = _DONE.search(out)
    if done and done.group(3) != "0":
        print(f"    h2load reported failures on port {port}: {done.group(0)}")
    p99 = times[int(len(times) * 0.99) - 1] / 1000.0 if times else float("nan")
    return float(m.group(1)), p99, len(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--unique", action="store_true",
                    help="distinct paths (h2load -i with many URIs): no cache keyed by the "
                         "request helps")
    args = ap.parse_args()
    if args.unique:
        _URI_FILE.append(tempfile.mkstemp(prefix="h2load-uris-", suffix=".txt")[1])
    for tool in ("h2load", "openssl"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="tern-bench-h2-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True, timeout=30)
    backend_port = free_port()
    backend = start_nginx(backend_conf(backend_port), tmp / "backend")
    procs = [backend]
    try:
        wait_port(backend_port)
        nport, tport = free_port(), free_port()
        ngx = start_nginx(proxy_conf(nport, backend_port, cert, key), tmp / "nginx")
        tern = start_tern(proxy_conf(tport, backend_port, cert, key), tmp / "tern", 1)
        procs += [ngx, tern]
        wait_port(nport)
        wait_port(tport)
        h2load(nport, 1, args.clients, args.streams)  # warm-up
        h2load(tport, 1, args.clients, args.streams)
        n_rps: list[float] = []
        t_rps: list[float] = []
        n_p99: list[float] = []
        t_p99: list[float] = []
        n_cpu: list[float] = []
        t_cpu: list[float] = []
        n_workers, t_workers = children(ngx.pid), children(tern.pid)
        print(f"== HTTP/2 over TLS, 1 worker each, h2load -c{args.clients} -m{args.streams} "
              f"-D {args.duration}, {args.rounds} rounds ==")
        for r in range(args.rounds):
            before = cpu_seconds(n_workers)
            a, b, na = h2load(nport, args.duration, args.clients, args.streams)
            n_cpu.append((cpu_seconds(n_workers) - before) * 1e6 / max(na, 1))
            before = cpu_seconds(t_workers)
            c, d, nc = h2load(tport, args.duration, args.clients, args.streams)
            t_cpu.append((cpu_seconds(t_workers) - before) * 1e6 / max(nc, 1))
            n_rps.append(a)
            n_p99.append(b)
            t_rps.append(c)
            t_p99.append(d)
            print(f"  round {r + 1}: nginx {a:9.0f} rps p99 {b:7.2f} ms {n_cpu[-1]:5.0f} us/req | "
                  f"tern {c:9.0f} rps p99 {d:7.2f} ms {t_cpu[-1]:5.0f} us/req | "
                  f"ratio {c / a:.2f}")
        ratio = statistics.median(t / n for t, n in zip(t_rps, n_rps, strict=True))
        p99r = statistics.median(t / n for t, n in zip(t_p99, n_p99, strict=True))
        print(f"  median rps: nginx {statistics.median(n_rps):.0f}, tern "
              f"{statistics.median(t_rps):.0f}; median ratio tern/nginx = {ratio:.2f}")
        print(f"  median p99 ratio tern/nginx = {p99r:.2f}")
        nc_med, tc_med = statistics.median(n_cpu), statistics.median(t_cpu)
        print(f"  median worker CPU per request: nginx {nc_med:.0f} us, tern {tc_med:.0f} us; "
              f"nginx/tern = {nc_med / tc_med:.2f}")
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
