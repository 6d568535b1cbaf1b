"""HTTP/1.1 reverse-proxy throughput: nginx and Tern side by side, same upstream, same load.

Usage:
    python bench/proxy_h1.py [--rounds 5] [--duration 5] [--connections 50] [--workers 1 2]
                             [--access-log] [--unique] [--env TERN_LANE=off]

What it does, in one run:
  1. starts a backend (Debian's nginx, 2 workers, `return 200` of a 612-byte body) on 127.0.0.1;
  2. for each worker count, starts nginx and Tern as reverse proxies with the same config
     (`proxy_pass` to an upstream group with `keepalive 64`, `proxy_http_version 1.1`,
     `Connection ""`), each with that many workers;
  3. runs wrk (`-t1 -cC -dD --latency`) against each, alternating nginx/Tern for R rounds;
  4. prints per-round rps and p99, the median rps ratio Tern/nginx and the median p99 ratio;
  5. opens 1,000 idle keep-alive connections (each after one request) to each proxy with one
     worker and prints the workers' RSS growth (memory per idle connection), twice: the first
     round warms allocators, the second is the figure.

The machine this runs on may be shared: rps moves with its load, the same-run ratio less so.
bench/proxy_h1_instructions.py counts instructions per request, which load does not move.

Every load is bounded in time (wrk -d) and count; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import re
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
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BODY = "x" * 612


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def start_nginx(conf_text: str, run: Path) -> subprocess.Popen[bytes]:
    run.mkdir(parents=True, exist_ok=True)
    (run / "logs").mkdir(exist_ok=True)
    conf = run / "nginx.conf"
    conf.write_text(conf_text)
    return subprocess.Popen([NGINX, "-p", str(run), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_tern(conf_text: str, run: Path, workers: int,
               extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    run.mkdir(parents=True, exist_ok=True)
    (run / "logs").mkdir(exist_ok=True)
    conf = run / "nginx.conf"
    conf.write_text(conf_text)
    env = {**os.environ, "PYTHONPATH": str(REPO), **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "migrate.cli", "serve", str(conf), "-p",
                             str(run), "--workers", str(workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def proxy_conf(port: int, backend: int, workers: int, *, access_log: bool = False) -> str:
    log = "access_log logs/access.log combined;" if access_log else "access_log off;"
    return f"""worker_processes {workers};
events {{ worker_connections 4096; }}
http {{
    {log}
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def backend_conf(port: int) -> str:
    return f"""worker_processes 2;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{BODY}"; }}
    }}
}}
"""


_LAT = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)


UNIQUE_LUA = """
-- every request differs: its path, a query and a header value carry a counter
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/item/" .. n .. "?page=" .. (n % 97),
                    {["User-Agent"] = "bench/" .. n, ["Accept"] = "*/*"})
end
"""
_SCRIPT: list[str] = []
"""``--unique``: the path of the wrk script (empty: wrk's one repeated request)."""


def wrk(port: int, duration: int, connections: int) -> tuple[float, float]:
    script = ["-s", _SCRIPT[0]] if _SCRIPT else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *script,
         f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(_RPS.search(out).group(1))  # type: ignore[union-attr]
    m = _LAT.search(out)
    assert m is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        print(f"    wrk reported for port {port}: {errors.group(0)}")
    return rps, float(m.group(1)) * scale


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def idle_memory(port: int, master: int, count: int = 1000) -> float:
    """KiB of worker RSS per idle keep-alive connection."""
    workers = children(master)
    before = rss_kb(workers)
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            socks.append(s)
        for s in socks:
            data = b""
            while BODY.encode() not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        time.sleep(1.0)
        after = rss_kb(workers)
    finally:
        for s in socks:
            s.close()
    return (after - before) / count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--access-log", action="store_true",
                    help="both proxies log every request (combined) instead of access_log off")
    ap.add_argument("--unique", action="store_true",
                    help="every request a different path, query and User-Agent (wrk Lua "
                         "script): no cache keyed by request bytes can help")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for Tern (e.g. TERN_LANE=off to compare)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="tern-bench-"))
    if args.unique:
        (tmp / "unique.lua").write_text(UNIQUE_LUA)
        _SCRIPT.append(str(tmp / "unique.lua"))
    backend_port = free_port()
    backend = start_nginx(backend_conf(backend_port), tmp / "backend")
    procs = [backend]
    try:
        wait_port(backend_port)
        for workers in args.workers:
            nport, tport = free_port(), free_port()
            ngx = start_nginx(proxy_conf(nport, backend_port, workers,
                                         access_log=args.access_log), tmp / f"nginx{workers}")
            tern = start_tern(proxy_conf(tport, backend_port, workers,
                                         access_log=args.access_log), tmp / f"tern{workers}",
                              workers, dict(e.split("=", 1) for e in args.env))
            procs += [ngx, tern]
            wait_port(nport)
            wait_port(tport)
            wrk(nport, 1, args.connections)  # warm-up
            wrk(tport, 1, args.connections)
            n_rps: list[float] = []
            t_rps: list[float] = []
            n_p99: list[float] = []
            t_p99: list[float] = []
            print(f"== {workers} worker(s), wrk -t1 -c{args.connections} -d{args.duration}s, "
                  f"{args.rounds} rounds ==")
            for r in range(args.rounds):
                a, b = wrk(nport, args.duration, args.connections)
                c, d = wrk(tport, args.duration, args.connections)
                n_rps.append(a)
                n_p99.append(b)
                t_rps.append(c)
                t_p99.append(d)
                print(f"  round {r + 1}: nginx {a:9.0f} rps p99 {b:7.2f} ms | "
                      f"tern {c:9.0f} rps p99 {d:7.2f} ms | ratio {c / a:.2f}")
            ratio = statistics.median(t / n for t, n in zip(t_rps, n_rps, strict=True))
            p99r = statistics.median(t / n for t, n in zip(t_p99, n_p99, strict=True))
            print(f"  median rps: nginx {statistics.median(n_rps):.0f}, tern "
                  f"{statistics.median(t_rps):.0f}; median ratio tern/nginx = {ratio:.2f}")
            print(f"  median p99 ratio tern/nginx = {p99r:.2f}")
            if workers == 1:
                # a first round of 1,000 connections warms the allocators (pools, free lists,
                # socket buffers); its growth is mostly one-off, so the second round is reported
                nw, tw = idle_memory(nport, ngx.pid), idle_memory(tport, tern.pid)
                nm, tm = idle_memory(nport, ngx.pid), idle_memory(tport, tern.pid)
                print(f"  idle keep-alive memory: nginx {nm:.1f} KiB/conn, tern {tm:.1f} KiB/conn"
                      f" (1,000 connections, after a first round: nginx {nw:.1f}, tern {tw:.1f})")
            stop(ngx)
            stop(tern)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
