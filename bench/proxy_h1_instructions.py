"""Instructions per proxied HTTP/1.1 request in one Tern worker, counted by valgrind (callgrind).

Usage:
    python bench/proxy_h1_instructions.py [--requests 300 1300] [--connections 10] [--nginx]
                                          [--general] [--fast] [--access-log] [--unique] [--keep]

Throughput on a shared machine moves with whatever else runs; an instruction count does not.
This runs one Tern worker (bench/proxy_h1.py's configuration: proxy_pass to an upstream group with
keepalive, in front of nginx answering ``return 200``) under ``valgrind --tool=callgrind``, sends
it a fixed number of keep-alive requests from a client outside valgrind, and reads the total
instruction count.  Two runs with different request counts cancel start-up and shutdown:
``(I2 - I1) / (N2 - N1)`` is the user-space instructions per request (Python interpreter, uvloop,
httptools; the kernel is not counted).  Compare this figure before and after a change.

``tern`` is the default configuration (the compiled lane, proxy/lane.py).  ``--fast`` also
counts Tern with the lane off (``TERN_LANE=off``: the callback fast path, proxy/fastpath.py);
``--general`` with both off (``TERN_LANE=off TERN_FASTPATH=off``: every request takes the
general path).  ``--access-log`` logs every request in the ``combined`` format (nginx too)
instead of ``access_log off``.

Bounded: a fixed number of requests on loopback; each run is killed after 300 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import proxy_h1 as B  # noqa: E402

WORKER = r"""
import asyncio, os, sys
sys.path.insert(0, {repo!r})
from migrate.serve import make_loader
from proxy.io import workers as W
cfg = make_loader({conf!r}, {prefix!r}, False)()
socks = {{k: W.open_socket(k) for k in W.bind_keys(cfg)}}
loop = W._new_loop()
asyncio.set_event_loop(loop)
loop.run_until_complete(W._worker(cfg, {prefix!r}, socks, None))
# no interpreter clean-up: freeing what the caches hold at exit would be counted as per-request
# work (they hold more after more requests)
os._exit(0)
"""


def client(port: int, total: int, connections: int, unique: bool = False) -> None:
    """``total`` GETs spread over ``connections`` keep-alive connections, one at a time each;
    ``unique``: each with its own path, query and User-Agent (no two request heads alike)."""
    per = [total // connections + (1 if i < total % connections else 0)
           for i in range(connections)]
    errors: list[str] = []

    def run(n: int, c: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                for i in range(n):
                    if unique:
                        s.sendall(b"GET /item/%d/%d?page=%d HTTP/1.1\r\nHost: bench\r\n"
                                  b"User-Agent: bench/%d\r\n\r\n" % (c, i, i % 97, i))
                    else:
                        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                    data = b""
                    while B.BODY.encode() not in data:
                        chunk = s.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed")
                        data += chunk
        except OSError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=run, args=(n, c)) for c, n in enumerate(per)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise RuntimeError(f"client errors: {errors[:3]}")


def count(requests: int, connections: int, backend: int, tmp: Path, *, name: str,
          access_log: bool = False, unique: bool = False) -> int:
    nginx = name == "nginx"
    port = B.free_port()
    run = tmp / f"{name}-{requests}"
    run.mkdir()
    (run / "logs").mkdir()
    conf = run / "nginx.conf"
    conf.write_text(B.proxy_conf(port, backend, 1, access_log=access_log))
    out = run / "callgrind.out"
    if nginx:
        # one process that is the worker (no master), in the foreground
        cmd = [B.NGINX, "-p", str(run), "-c", str(conf), "-g",
               "daemon off; master_process off;"]
    else:
        script = run / "worker.py"
        script.write_text(WORKER.format(repo=str(REPO), conf=str(conf), prefix=str(run)))
        cmd = [sys.executable, str(script)]
    env = dict(os.environ)
    if name in ("tern-fast", "tern-general"):
        env["TERN_LANE"] = "off"
    if name == "tern-general":
        env["TERN_FASTPATH"] = "off"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        B.wait_port(port, timeout=120)
        client(port, requests, connections, unique)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    m = re.search(r"Collected : (\d+)", err)
    if m is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{err[-2000:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, nargs=2, default=[300, 1300])
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--nginx", action="store_true",
                    help="also count nginx (one worker process, same configuration)")
    ap.add_argument("--general", action="store_true",
                    help="also count Tern with lane and fast path off (the general path)")
    ap.add_argument("--fast", action="store_true",
                    help="also count Tern with the lane off (TERN_LANE=off: the fast path)")
    ap.add_argument("--access-log", action="store_true",
                    help="log every request (combined format) instead of access_log off")
    ap.add_argument("--keep", action="store_true",
                    help="keep the callgrind output files (callgrind_annotate reads them)")
    ap.add_argument("--unique", action="store_true",
                    help="every request with its own query string (no request head repeats, "
                         "so the lane reads each one in full)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="tern-icount-"))
    backend_port = B.free_port()
    backend = B.start_nginx(B.backend_conf(backend_port), tmp / "backend")
    try:
        B.wait_port(backend_port)
        n1, n2 = args.requests
        figures = {}
        names = (["nginx"] if args.nginx else []) + (["tern-general"] if args.general else []) \
            + (["tern-fast"] if args.fast else [])
        for name in names + ["tern"]:
            i1 = count(n1, args.connections, backend_port, tmp, name=name,
                       access_log=args.access_log, unique=args.unique)
            i2 = count(n2, args.connections, backend_port, tmp, name=name,
                       access_log=args.access_log, unique=args.unique)
            figures[name] = per = (i2 - i1) / (n2 - n1)
            print(f"{name}: {n1} requests {i1:,} instructions, {n2} requests {i2:,}")
            print(f"{name}: instructions per proxied request (user space, one worker): {per:,.0f}")
        if "nginx" in figures:
            print(f"instructions ratio tern/nginx = {figures['tern'] / figures['nginx']:.1f}")
        if "tern-general" in figures:
            print(f"instructions ratio lane/general path = "
                  f"{figures['tern'] / figures['tern-general']:.3f}")
        if "tern-fast" in figures:
            print(f"instructions ratio lane/fast path = "
                  f"{figures['tern'] / figures['tern-fast']:.3f}")
    finally:
        B.stop(backend)
        if args.keep:
            print(f"callgrind output kept under {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
