"""Primary latency through ``tern shadow``: mirroring off, on, and with a black-holed candidate.

Usage: ``python bench/shadow_latency.py [--seconds 5] [--connections 20] [--threads 2]``

Starts one echo primary and one echo candidate (shadow.echo, own threads), a black hole (accepts
and never answers) and, for each case, ``tern shadow`` as a subprocess (uvloop), then runs a
bounded ``wrk`` against it and prints p50/p99 latency and requests/s. Target (issue 4): p99 with
mirroring on within 10% of mirroring off.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shadow.echo import EchoServer  # noqa: E402 - after the path fix

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(port: int, seconds: float, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "--latency", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s",
         "--timeout", "5s", f"http://127.0.0.1:{port}/bench"],
        capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not (p50 and p99 and rps):
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return {"p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)), "rps": float(rps.group(1))}


def _case(name: str, primary: str, candidate: str, extra: list[str], args: argparse.Namespace,
          tmp: str) -> dict[str, float]:
    port = _free_port()
    argv = [sys.executable, "-c", "from migrate.shadow_cmd import shadow_cmd; shadow_cmd()",
            "--listen", f"127.0.0.1:{port}", "--primary", primary, "--candidate", candidate,
            "--store", os.path.join(tmp, f"{name}.db"), "--candidate-timeout", "1", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(port, time.monotonic() + 10)
        _wrk(port, 1, args.connections, args.threads)  # warm-up
        return _wrk(port, args.seconds, args.connections, args.threads)
    finally:
        proc.send_signal(2)
        try:
            _, err = proc.communicate(timeout=20)
            tail = [ln for ln in (err or "").splitlines() if "requests" in ln]
            if tail:
                print(f"  [{name}] {tail[-1].strip()}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4096)
    hole_url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    results: dict[str, dict[str, float]] = {}
    with EchoServer("primary") as p, EchoServer("candidate") as c, \
            tempfile.TemporaryDirectory() as tmp:
        purl, curl = f"http://{p.address}", f"http://{c.address}"
        results["direct primary"] = _wrk(p.port, args.seconds, args.connections, args.threads)
        results["mirroring off"] = _case("off", purl, curl, ["--no-mirror"], args, tmp)
        results["mirroring on"] = _case("on", purl, curl, [], args, tmp)
        results["black-holed candidate"] = _case("hole", purl, hole_url, [], args, tmp)
    hole.close()
    base = results["mirroring off"]["p99"]
    print(f"{'case':<24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'p99 vs off':>11}")
    for name, r in results.items():
        print(f"{name:<24} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>9.0f} "
              f"{(r['p99'] / base - 1):>+10.1%}")


if __name__ == "__main__":
    main()
