"""Instructions per proxied HTTP/2 request in one Tern worker, counted by valgrind (callgrind).

Usage:
    python bench/proxy_h2_instructions.py [--requests 500 2500] [--clients 10] [--streams 10]
                                          [--nginx] [--general]

Throughput on a shared machine moves with whatever else runs; an instruction count does not.
This runs one Tern worker with bench/proxy_h2.py's configuration (TLS + HTTP/2, ``proxy_pass``
to an upstream group with keepalive, in front of nginx answering ``return 200``) under
``valgrind --tool=callgrind`` and sends it a fixed number of requests with h2load
(``-n N -cC -mM``) from outside valgrind, then reads the total instruction count.  Two runs
with different request counts cancel start-up, TLS handshakes and shutdown: ``(I2 - I1) / (N2 -
N1)`` is the user-space instructions per request (Python, uvloop, OpenSSL; the kernel is not
counted).  Compare this figure before and after a change (method: bench/proxy_h1_instructions.py).

``--general`` also counts Tern with its compiled lane and fast path off (``TERN_LANE=off
TERN_FASTPATH=off``), ``--nginx`` one
nginx worker process on the same configuration.  ``--gc-freeze`` is an experiment for the
worker: it calls ``gc.freeze()`` once the configuration is loaded, so the cyclic GC's full
collections stop walking the objects that live as long as the worker.

Bounded: a fixed number of requests on loopback; each run is killed after 300 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import proxy_h1 as B  # noqa: E402
from proxy_h1_instructions import WORKER  # noqa: E402
from proxy_h2 import proxy_conf  # noqa: E402

_DONE = re.compile(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded")


def load(port: int, requests: int, clients: int, streams: int) -> None:
    """``requests`` GETs over ``clients`` TLS + HTTP/2 connections, ``streams`` at a time each."""
    out = subprocess.run(
        ["h2load", f"-n{requests}", f"-c{clients}", f"-m{streams}", f"https://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    m = _DONE.search(out)
    if m is None or int(m.group(2)) != requests:
        raise RuntimeError(f"h2load did not complete {requests} requests:\n{out[-1500:]}")


def count(requests: int, args: argparse.Namespace, backend: int, tmp: Path, cert: Path,
          key: Path, *, nginx: bool, general: bool) -> int:
    port = B.free_port()
    run = tmp / f"{'nginx' if nginx else 'tern-general' if general else 'tern'}-{requests}"
    run.mkdir()
    (run / "logs").mkdir()
    conf = run / "nginx.conf"
    conf.write_text(proxy_conf(port, backend, cert, key))
    out = run / "callgrind.out"
    if nginx:
        cmd = [B.NGINX, "-p", str(run), "-c", str(conf), "-g",
               "daemon off; master_process off;"]
    else:
        script = run / "worker.py"
        worker = WORKER.format(repo=str(REPO), conf=str(conf), prefix=str(run))
        if args.gc_freeze:
            worker = worker.replace("loop = W._new_loop()",
                                    "import gc\ngc.freeze()\nloop = W._new_loop()")
            assert "gc.freeze()" in worker
        script.write_text(worker)
        cmd = [sys.executable, str(script)]
    env = dict(os.environ)
    if general:
        env["TERN_FASTPATH"] = "off"
        env["TERN_LANE"] = "off"  # the lane (proxy/lane_h2.py) would take the streams first
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        B.wait_port(port, timeout=120)
        load(port, requests, args.clients, args.streams)
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
    ap.add_argument("--requests", type=int, nargs=2, default=[500, 2500])
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--nginx", action="store_true",
                    help="also count nginx (one worker process, same configuration)")
    ap.add_argument("--general", action="store_true",
                    help="also count Tern on the general path (TERN_LANE=off TERN_FASTPATH=off)")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="the Tern worker calls gc.freeze() after loading (an experiment)")
    args = ap.parse_args()
    for tool in ("valgrind", "h2load", "openssl"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="tern-icount-h2-"))
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True, timeout=30)
    backend_port = B.free_port()
    backend = B.start_nginx(B.backend_conf(backend_port), tmp / "backend")
    try:
        B.wait_port(backend_port)
        n1, n2 = args.requests
        figures = {}
        names = (["nginx"] if args.nginx else []) + (["tern-general"] if args.general else [])
        for name in names + ["tern"]:
            kw = {"nginx": name == "nginx", "general": name == "tern-general"}
            i1 = count(n1, args, backend_port, tmp, cert, key, **kw)
            i2 = count(n2, args, backend_port, tmp, cert, key, **kw)
            figures[name] = per = (i2 - i1) / (n2 - n1)
            print(f"{name}: {n1} requests {i1:,} instructions, {n2} requests {i2:,}")
            print(f"{name}: instructions per HTTP/2 request (user space, one worker): {per:,.0f}")
        if "nginx" in figures:
            print(f"instructions ratio tern/nginx = {figures['tern'] / figures['nginx']:.1f}")
        if "tern-general" in figures:
            print(f"instructions ratio fast path/general path = "
                  f"{figures['tern'] / figures['tern-general']:.3f}")
    finally:
        B.stop(backend)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
