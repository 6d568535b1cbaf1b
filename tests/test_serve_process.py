"""`tern serve` as a process: start-up checks, pid file, SIGHUP reload under load, SIGQUIT drain.

Real processes, real sockets on 127.0.0.1, real signals; every wait is bounded.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shadow.echo import Behaviour, EchoServer

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "t.test"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextmanager
def serve(conf: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate.cli", "serve", str(conf), "-p", str(conf.parent), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def write_conf(tmp: Path, port: int, text: str, upstream: int | None = None) -> Path:
    conf = tmp / "nginx.conf"
    body = text.replace("PORT", str(port))
    if upstream is not None:
        body = body.replace("UPSTREAM", str(upstream))
    conf.write_text("pid tern.pid;\nevents {}\nhttp {\n" + body + "\n}\n")
    return conf


def test_unsupported_directive_stops_startup(tmp_path: Path) -> None:
    """An unsupported directive that changes responses stops start-up with file:line, exit 2."""
    port = free_port()
    conf = write_conf(tmp_path, port, "server { listen 127.0.0.1:PORT; ssi on; "
                                      "location / { return 200 ok; } }")
    with serve(conf) as proc:
        assert proc.wait(20) == 2
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert f"{conf}:4: unsupported:" in err and '"ssi"' in err
    assert "--allow-unsupported" in err
    assert "Traceback" not in err


def test_allow_unsupported_serves(tmp_path: Path) -> None:
    """--allow-unsupported starts anyway and answers."""
    port = free_port()
    conf = write_conf(tmp_path, port, "server { listen 127.0.0.1:PORT; ssi on; "
                                      "location / { return 200 ok; } }")
    with serve(conf, "--allow-unsupported"):
        wait_port(port)
        assert get(port, "/") == (200, b"ok")


def test_config_error_exits_2(tmp_path: Path) -> None:
    """A configuration error is reported as file:line and exit 2, never a traceback."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n server { listen 127.0.0.1:1; locaton / {} }\n}\n")
    with serve(conf) as proc:
        assert proc.wait(20) == 2
        err = proc.stderr.read().decode() if proc.stderr else ""
    assert f"{conf}:3: error: unknown directive \"locaton\"" in err
    assert "Traceback" not in err


def test_pid_file_and_sigquit_drain(tmp_path: Path) -> None:
    """The pid file holds the master's pid; SIGQUIT lets an in-flight slow request finish."""
    echo = EchoServer("slow", behaviours=[Behaviour(prefix="/slow", delay=1.5)])
    echo.start()
    try:
        port = free_port()
        conf = write_conf(tmp_path, port, "server { listen 127.0.0.1:PORT; location / { "
                                          "proxy_pass http://127.0.0.1:UPSTREAM; } }",
                          upstream=echo.port)
        with serve(conf) as proc:
            wait_port(port)
            pid_file = tmp_path / "tern.pid"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not pid_file.read_text().strip() \
                    if pid_file.exists() else time.monotonic() < deadline:
                time.sleep(0.05)
            pid = int(pid_file.read_text().strip())
            assert pid == proc.pid
            result: dict[str, object] = {}

            def slow() -> None:
                result["r"] = get(port, "/slow/x", timeout=10)

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.5)  # the request is in flight at the upstream
            proc.send_signal(signal.SIGQUIT)
            t.join(15)
            assert not t.is_alive()
            status, body = result["r"]  # type: ignore[misc]
            assert status == 200 and b"/slow/x" in body
            assert proc.wait(15) == 0
        assert not (tmp_path / "tern.pid").exists()
    finally:
        echo.stop()


RELOAD_A = "server { listen 127.0.0.1:PORT; location / { return 200 \"A\"; } }"
RELOAD_B = "server { listen 127.0.0.1:PORT; location / { return 200 \"B\"; } }"


def test_reload_under_load_loses_nothing(tmp_path: Path) -> None:
    """SIGHUP under continuous load: zero failed requests, the new config takes over, and a
    broken config on a second SIGHUP keeps the last good one serving."""
    port = free_port()
    conf = write_conf(tmp_path, port, RELOAD_A)
    with serve(conf, "--workers", "2") as proc:
        wait_port(port)
        stop = threading.Event()
        failures: list[str] = []
        seen: list[bytes] = []

        def load() -> None:
            # bounded: at most 4000 requests or until stopped
            for _ in range(4000):
                if stop.is_set():
                    return
                try:
                    status, body = get(port, "/", timeout=5)
                    if status != 200:
                        failures.append(f"status {status}")
                    seen.append(body)
                except OSError as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        write_conf(tmp_path, port, RELOAD_B)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not seen or seen[-1] != b"B"):
            time.sleep(0.05)
        time.sleep(0.5)
        (tmp_path / "nginx.conf").write_text("events {}\nhttp { server { listen 127.0.0.1:"
                                              f"{port}; bogus_directive; }} }}\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(30)
        assert failures == []
        assert b"A" in seen and seen[-1] == b"B"
        assert len(seen) > 50
        assert get(port, "/") == (200, b"B")
        assert proc.poll() is None
