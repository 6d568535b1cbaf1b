"""Primary latency through ``tern shadow``: mirroring off, on, and with a black-holed candidate.

Usage: ``python bench/shadow_latency.py [--seconds 5] [--rounds 3] [--connections 10]
[--delay-ms 10] [--threads 2]``

Starts an echo primary and an echo candidate (:mod:`shadow.echo`; same server id, so they answer
alike unless ``--differing``, which makes every exchange a difference), each in a process of
its own (in one process the candidate's work would take the primary's GIL and the primary would look
slower for a reason that has nothing to do with the shadow proxy), a black hole (accepts and never
answers) and three ``tern shadow`` processes (uvloop): ``--no-mirror``, mirroring to the echo
candidate, mirroring to the black hole. Then, ``--rounds`` times, a bounded ``wrk`` against each
of them in turn (the order rotates every round), and prints per case the median over the rounds
of p50, p99 and requests/s, p50 and p99 relative to mirroring off (ratios of the medians; then
per round, the ratio to the mirroring-off run of the same round, and the median of those), and
the CPU time the ``tern shadow`` process itself used per request (its analysis child process,
niced, is not counted: it is background work off the primary's path).

Load: each wrk connection waits ``--delay-ms`` between its requests (wrk's ``delay()``), so the
load is paced, well below saturation, and latency measures the path of a request rather than the
queueing of a saturated machine (``--delay-ms 0``: closed loop, as fast as possible). The machine
is usually shared: only ratios of medians mean something, single figures do not.

Target (issue 4): p99 with mirroring on within 10% of mirroring off.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

_ECHO = ("import sys; from shadow.echo import EchoServer; "
         "e = EchoServer(sys.argv[1], port=int(sys.argv[2])).start(); sys.stdin.read()")


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


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(port: int, seconds: float, args: argparse.Namespace, script: str,
         pid: int | None = None) -> dict[str, float]:
    argv = ["wrk", "--latency", f"-t{args.threads}", f"-c{args.connections}",
            f"-d{max(1, int(seconds))}s", "--timeout", "5s"]
    if args.delay_ms > 0:
        argv += ["-s", script]
    cpu = _cpu(pid)
    out = subprocess.run([*argv, f"http://127.0.0.1:{port}/bench"], capture_output=True,
                         text=True, timeout=seconds + 30, check=True).stdout
    cpu = _cpu(pid) - cpu
    p50 = re.search(r"^ +50% +(\S+)\s*$", out, re.M)
    p99 = re.search(r"^ +99% +(\S+)\s*$", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not (p50 and p99 and rps and total):
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return {"p50": _ms(p50.group(1)), "p99": _ms(p99.group(1)), "rps": float(rps.group(1)),
            "cpu_us": cpu * 1e6 / max(1, int(total.group(1)))}


@contextmanager
def _process(argv: list[str], port: int, name: str, nice: int = 0
             ) -> Iterator[subprocess.Popen[str]]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)
    try:
        _wait_port(port, time.monotonic() + 15)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(2)
        try:
            _, err = proc.communicate(timeout=20)
            tail = [ln for ln in (err or "").splitlines() if "requests" in ln]
            if tail:
                print(f"  [{name}] {tail[-1].strip()}")
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _echo(name: str) -> tuple[list[str], int]:
    port = _free_port()
    return [sys.executable, "-c", _ECHO, name, str(port)], port


def _shadow(name: str, primary: str, candidate: str, extra: list[str], tmp: str
            ) -> tuple[list[str], int]:
    port = _free_port()
    return ([sys.executable, "-c", "from migrate.shadow_cmd import shadow_cmd; shadow_cmd()",
             "--listen", f"127.0.0.1:{port}", "--primary", primary, "--candidate", candidate,
             "--store", os.path.join(tmp, f"{name}.db"), "--candidate-timeout", "1", *extra],
            port)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5, help="wrk duration per case and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--delay-ms", type=int, default=10,
                    help="pause of each connection between requests (0: closed loop)")
    ap.add_argument("--candidate-nice", type=int, default=0,
                    help="run the echo candidate at this nice value (its CPU stands for "
                         "another machine's; 0: competes with the proxy as an equal)")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds of rest before each case (the previous case's analysis and "
                         "candidate finish their work)")
    ap.add_argument("--differing", action="store_true",
                    help="echo servers with different ids: every exchange differs (the worst "
                         "case for the analysis); by default they answer alike, as a candidate "
                         "mostly does")
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.seconds > 120 or args.rounds > 20:
        ap.error("--rounds must be 1-20 and --seconds 1-120")
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(4096)
    hole_url = f"http://127.0.0.1:{hole.getsockname()[1]}"
    names = ["mirroring off", "mirroring on", "black-holed candidate"]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in ["direct primary", *names]}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        script = os.path.join(tmp, "pace.lua")
        with open(script, "w") as f:
            f.write(f"function delay()\n  return {args.delay_ms}\nend\n")
        pargv, pport = _echo("primary" if args.differing else "app")
        cargv, cport = _echo("candidate" if args.differing else "app")
        stack.enter_context(_process(pargv, pport, "primary"))
        stack.enter_context(_process(cargv, cport, "candidate", args.candidate_nice))
        purl, curl = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{cport}"
        ports = {"direct primary": pport}
        pids: dict[str, int | None] = {"direct primary": None}
        for name, cand, extra in (("mirroring off", curl, ["--no-mirror"]),
                                  ("mirroring on", curl, []),
                                  ("black-holed candidate", hole_url, [])):
            argv, port = _shadow(name.split()[-1], purl, cand, extra, tmp)
            pids[name] = stack.enter_context(_process(argv, port, name)).pid
            ports[name] = port
        for port in ports.values():  # warm-up
            _wrk(port, 1, args, script)
        order = list(runs)
        for rnd in range(args.rounds):
            for name in order[rnd % len(order):] + order[:rnd % len(order)]:
                time.sleep(args.settle)  # let the previous case's background work finish
                runs[name].append(_wrk(ports[name], args.seconds, args, script, pids[name]))
            print(f"  round {rnd + 1}: " + ", ".join(
                f"{n} p99 {runs[n][-1]['p99']:.2f}" for n in order), file=sys.stderr)
    hole.close()
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "rps", "cpu_us")}
           for n, rs in runs.items()}
    base = med["mirroring off"]
    pacing = f"{args.delay_ms} ms between requests" if args.delay_ms else "closed loop"
    print(f"wrk -c{args.connections} -t{args.threads}, {pacing}, {args.seconds:g}s x "
          f"{args.rounds} rounds; medians")
    print(f"{'case':<24} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'p50 vs off':>11} "
          f"{'p99 vs off':>11} {'proxy CPU us/req':>17}")
    for name, r in med.items():
        cpu = f"{r['cpu_us']:>17.0f}" if name != "direct primary" else f"{'-':>17}"
        print(f"{name:<24} {r['p50']:>8.2f} {r['p99']:>8.2f} {r['rps']:>9.0f} "
              f"{(r['p50'] / base['p50'] - 1):>+10.1%} {(r['p99'] / base['p99'] - 1):>+10.1%}"
              f" {cpu}")
    for case in ("mirroring on", "black-holed candidate"):
        for q in ("p50", "p99"):
            per_round = [x[q] / off[q] - 1
                         for x, off in zip(runs[case], runs["mirroring off"], strict=True)]
            print(f"{case} vs off, {q} per round: "
                  + ", ".join(f"{x:+.1%}" for x in per_round)
                  + f"; median of the rounds' ratios {statistics.median(per_round):+.1%}")


if __name__ == "__main__":
    main()
