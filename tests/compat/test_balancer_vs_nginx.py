"""proxy.upstream.balancer against Debian's nginx: the same requests reach the same peers.

Each test starts nginx (one process, ``master_process off``) in front of small asyncio HTTP
backends on 127.0.0.1 that answer their own id, sends a bounded number of requests one after the
other, and reads ``$upstream_addr`` (every peer nginx tried, in order) from a response header. The
same requests are replayed on a :class:`PeerGroup` built from the same upstream model, with a
backend counted as failed exactly when it is stopped, and the tried lists must be equal.

Timing: nginx counts ``fail_timeout`` in whole seconds of ``ngx_time()`` (wall clock). Tests that
depend on it send each request early in a wall-clock second and give the replay that same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import sys
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from proxy.model import NOWHERE, Balancer, Template, Upstream, UpstreamServer
from proxy.model import Var as TVar
from proxy.upstream.balancer import Attempt, PeerGroup

try:  # the repo root on sys.path (python -m pytest)
    from tests.support.nginx import NGINX_BIN, free_port, run_nginx
except ImportError:  # pragma: no cover - plain `pytest`: put tests/ on the path ourselves
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from support.nginx import NGINX_BIN, free_port, run_nginx  # type: ignore[no-redef, import-not-found, unused-ignore]

pytestmark = [
    pytest.mark.nginx,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not NGINX_BIN.exists(), reason="needs /usr/sbin/nginx"),
]

UPSTREAM = "u"

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# backends


class Backends:
    """HTTP/1.0 servers on 127.0.0.1, one per id, run by an asyncio loop in a daemon thread.

    A request whose path starts with ``/slow`` is held until :meth:`release_slow`; its arrival
    is reported on :attr:`slow_arrivals` (the id of the backend that got it).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: dict[str, asyncio.base_events.Server] = {}
        self.ports: dict[str, int] = {}
        self.slow_arrivals: list[str] = []
        self.slow_arrived = threading.Condition()
        self._release = asyncio.Event()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)

    def start(self, ident: str) -> int:
        """Start (or restart on its old port) the backend ``ident``; return its port."""

        async def serve() -> asyncio.base_events.Server:
            port = self.ports.get(ident, 0)
            return await asyncio.start_server(
                lambda r, w: self._handle(ident, r, w), "127.0.0.1", port, reuse_address=True
            )

        server = self._call(serve())
        self.servers[ident] = server
        self.ports[ident] = server.sockets[0].getsockname()[1]
        return self.ports[ident]

    def stop(self, ident: str) -> None:
        """Close the listening socket of ``ident``: connections to it are refused from now on."""

        async def close(server: asyncio.base_events.Server) -> None:
            server.close()

        self._call(close(self.servers.pop(ident)))

    def release_slow(self) -> None:
        """Let every held ``/slow`` request finish."""
        self.loop.call_soon_threadsafe(self._release.set)

    def wait_slow(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until ``count`` slow requests arrived; return the backends that got them."""
        with self.slow_arrived:
            if not self.slow_arrived.wait_for(lambda: len(self.slow_arrivals) >= count, timeout):
                raise TimeoutError(f"only {len(self.slow_arrivals)} slow requests arrived")
            return list(self.slow_arrivals)

    async def _handle(
        self, ident: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            if head.split(b" ", 2)[1].startswith(b"/slow"):
                with self.slow_arrived:
                    self.slow_arrivals.append(ident)
                    self.slow_arrived.notify_all()
                await asyncio.wait_for(self._release.wait(), 20)
            body = ident.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        for ident in list(self.servers):
            self.stop(ident)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture
def backends() -> Iterator[Backends]:
    running = Backends()
    try:
        yield running
    finally:
        running.close()


# --------------------------------------------------------------------------------------------
# one upstream, written for nginx and built for Tern


@dataclass(frozen=True)
class Srv:
    """One ``server`` line: backend id plus parameters."""

    ident: str
    params: str = ""
    host: str = "127.0.0.1"
    """Host as written in the config (the consistent-hash ring is built from the text)."""


def _param(params: str, name: str, default: str) -> str:
    for word in params.split():
        if word.startswith(name + "="):
            return word.partition("=")[2].rstrip("s")
    return default


def make_upstream(
    method: Balancer, servers: Sequence[Srv], ports: dict[str, int]
) -> tuple[str, Upstream]:
    """The ``upstream`` block text for nginx and the equivalent model node."""
    directive = {
        Balancer.ROUND_ROBIN: "",
        Balancer.LEAST_CONN: "least_conn;",
        Balancer.IP_HASH: "ip_hash;",
        Balancer.HASH: "hash $arg_k;",
        Balancer.HASH_CONSISTENT: "hash $arg_k consistent;",
    }[method]
    lines = [f"upstream {UPSTREAM} {{", f"    {directive}"]
    nodes = []
    for srv in servers:
        address = f"{srv.host}:{ports[srv.ident]}"
        lines.append(f"    server {address} {srv.params};")
        words = srv.params.split()
        nodes.append(
            UpstreamServer(
                address=address,
                weight=int(_param(srv.params, "weight", "1")),
                max_fails=int(_param(srv.params, "max_fails", "1")),
                fail_timeout=float(_param(srv.params, "fail_timeout", "10")),
                backup="backup" in words,
                down="down" in words,
                source=NOWHERE,
            )
        )
    lines.append("}")
    key = None
    if method in (Balancer.HASH, Balancer.HASH_CONSISTENT):
        key = Template(raw="$arg_k", parts=(TVar(name="arg_k"),))
    model = Upstream(
        name=UPSTREAM, servers=tuple(nodes), balancer=method, hash_key=key, source=NOWHERE
    )
    return "\n".join(lines), model


def nginx_conf(upstream_text: str, port: int) -> str:
    return f"""
events {{}}
http {{
    {upstream_text}
    server {{
        listen 127.0.0.1:{port};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        location / {{
            proxy_pass http://{UPSTREAM};
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
            add_header X-Upstream "$upstream_addr" always;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Reply:
    status: int
    tried: tuple[str, ...]
    body: str


def fetch(port: int, target: str, client: str | None = None) -> Reply:
    """GET ``target`` through nginx (as ``client`` via X-Real-IP); who was tried, who answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Host": "test"}
        if client is not None:
            headers["X-Real-IP"] = client
        conn.request("GET", target, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode("latin-1")
        tried = tuple(a.strip() for a in (resp.getheader("X-Upstream") or "").split(","))
        return Reply(resp.status, tried, body)
    finally:
        conn.close()


def replay(
    group: PeerGroup,
    dead: set[str],
    now: float,
    *,
    client: str = "127.0.0.1",
    key: str | None = None,
) -> tuple[str, ...]:
    """Run one request through ``group`` as nginx would: retry while tries are left."""
    attempt = group.begin(client_addr=client, hash_key=key)
    tried: list[str] = []
    while True:
        peer = attempt.next(now)
        if peer is None:
            tried.append(group.name)  # "no live upstreams": $upstream_addr names the group
            return tuple(tried)
        tried.append(peer.address)
        if peer.address in dead:
            attempt.failure(now)
            if attempt.tries_left == 0:
                return tuple(tried)
            continue
        attempt.success(now)
        return tuple(tried)


def early_in_second() -> float:
    """Sleep until the wall clock is early in a second; return the time (nginx's ngx_time())."""
    while True:
        now = time.time()
        if 0.05 <= now % 1.0 <= 0.6:
            return now
        time.sleep(0.02)


@contextlib.contextmanager
def nginx_for(
    tmp_path: Path, backends: Backends, method: Balancer, servers: Sequence[Srv]
) -> Iterator[tuple[int, PeerGroup]]:
    """Start the backends, nginx in front of them, and build Tern's group of the same upstream."""
    for srv in servers:
        if srv.ident not in backends.ports:
            backends.start(srv.ident)
    text, model = make_upstream(method, servers, backends.ports)
    port = free_port(backends.ports.values())
    with run_nginx(nginx_conf(text, port), tmp_path / "nginx"):
        yield port, PeerGroup.from_model(model)


def addr(backends: Backends, ident: str) -> str:
    return f"127.0.0.1:{backends.ports[ident]}"


# --------------------------------------------------------------------------------------------
# tests


def test_round_robin_weights_5_1_1(tmp_path: Path, backends: Backends) -> None:
    """Smooth weighted round robin: 60 requests land on the same backends in the same order."""
    servers = [Srv("a", "weight=5"), Srv("b"), Srv("c")]
    with nginx_for(tmp_path, backends, Balancer.ROUND_ROBIN, servers) as (port, group):
        got = [fetch(port, f"/r{i}") for i in range(60)]
        want = [replay(group, set(), time.time()) for _ in range(60)]
    assert [r.tried for r in got] == want
    assert "".join(r.body for r in got[:7]) == "aabacaa"


def test_round_robin_with_down_server(tmp_path: Path, backends: Backends) -> None:
    """A ``down`` server is never chosen and does not disturb the others' order."""
    servers = [Srv("a", "weight=3"), Srv("b", "down"), Srv("c", "weight=2"), Srv("d")]
    with nginx_for(tmp_path, backends, Balancer.ROUND_ROBIN, servers) as (port, group):
        got = [fetch(port, f"/r{i}").tried for i in range(36)]
        want = [replay(group, set(), time.time()) for _ in range(36)]
    assert got == want
    assert addr(backends, "b") not in {a for t in got for a in t}


def test_least_conn_sequential(tmp_path: Path, backends: Backends) -> None:
    """With one request at a time every peer has 0 connections: least_conn is round robin."""
    servers = [Srv("a", "weight=5"), Srv("b"), Srv("c")]
    with nginx_for(tmp_path, backends, Balancer.LEAST_CONN, servers) as (port, group):
        got = [fetch(port, f"/r{i}").tried for i in range(60)]
        want = [replay(group, set(), time.time()) for _ in range(60)]
    assert got == want


def test_least_conn_avoids_busy_peers(tmp_path: Path, backends: Backends) -> None:
    """Held requests count as connections (conns * weight comparisons), ties go round robin."""
    servers = [Srv("a", "weight=2"), Srv("b"), Srv("c"), Srv("d", "weight=3")]
    with nginx_for(tmp_path, backends, Balancer.LEAST_CONN, servers) as (port, group):
        held: list[Attempt] = []
        threads: list[threading.Thread] = []
        for n in range(3):
            thread = threading.Thread(target=fetch, args=(port, f"/slow{n}"), daemon=True)
            thread.start()
            threads.append(thread)
            arrived = backends.wait_slow(n + 1)
            attempt = group.begin()
            peer = attempt.next(time.time())
            assert peer is not None
            assert peer.address == addr(backends, arrived[n])
            held.append(attempt)
        got = [fetch(port, f"/r{i}").tried for i in range(20)]
        want = [replay(group, set(), time.time()) for _ in range(20)]
        backends.release_slow()
        for thread in threads:
            thread.join(timeout=10)
        for attempt in held:
            attempt.success(time.time())
        got += [fetch(port, f"/s{i}").tried for i in range(14)]
        want += [replay(group, set(), time.time()) for _ in range(14)]
    assert got == want


def test_ip_hash_clients(tmp_path: Path, backends: Backends) -> None:
    """ip_hash by first three octets (IPv4) or 16 bytes (IPv6), rehashing past a down server."""
    servers = [Srv("a"), Srv("b", "weight=2"), Srv("c", "down"), Srv("d"), Srv("e")]
    clients = (
        ["127.0.0.1"]
        + [f"10.{i}.{(i * 37) % 256}.{i}" for i in range(20)]
        + [f"192.0.2.{i}" for i in (1, 77, 254)]
        + [f"2001:db8::{i:x}" for i in range(1, 12)]
        + [f"2001:db8:{i:x}::1" for i in range(1, 6)]
    )
    with nginx_for(tmp_path, backends, Balancer.IP_HASH, servers) as (port, group):
        got = [fetch(port, "/", client).tried for client in clients]
        got.append(fetch(port, "/").tried)  # the real 127.0.0.1, no X-Real-IP
        want = [replay(group, set(), time.time(), client=c) for c in clients]
        want.append(replay(group, set(), time.time(), client="127.0.0.1"))
    assert got == want
    assert len({t for t in got}) > 2


def test_hash_key(tmp_path: Path, backends: Backends) -> None:
    """``hash $arg_k``: crc32 with nginx's rehash loop; an empty key falls back to round robin."""
    servers = [Srv("a", "weight=2"), Srv("b"), Srv("c", "down"), Srv("d"), Srv("e", "weight=3")]
    keys = [f"key-{i}" for i in range(40)] + ["", "", "x", "", "/path?q=1"]
    with nginx_for(tmp_path, backends, Balancer.HASH, servers) as (port, group):
        got = [fetch(port, f"/?k={k}").tried for k in keys]
        want = [replay(group, set(), time.time(), key=k) for k in keys]
    assert got == want


def test_hash_consistent(tmp_path: Path, backends: Backends) -> None:
    """``hash $arg_k consistent``: ketama ring from the server text as written (here including a
    ``localhost:PORT`` line), skipping a down server to the next point."""
    servers = [
        Srv("a"),
        Srv("b", "weight=2", host="localhost"),
        Srv("c", "down"),
        Srv("d"),
        Srv("e", "weight=3"),
    ]
    keys = [f"user{i}" for i in range(40)] + ["", "z", ""]
    with nginx_for(tmp_path, backends, Balancer.HASH_CONSISTENT, servers) as (port, group):
        got = [fetch(port, f"/?k={k}").tried for k in keys]
        want = [replay(group, set(), time.time(), key=k) for k in keys]
    assert got == want
    assert len({t for t in got}) >= 3


def test_backup_takes_over_then_no_live_upstreams(tmp_path: Path, backends: Backends) -> None:
    """Backups serve once the primaries fail; with backups dead too nginx reports "no live
    upstreams" and does not reset the failure counters (nginx >= 1.11.5)."""
    servers = [
        Srv("p1", "max_fails=1 fail_timeout=60s"),
        Srv("p2", "weight=2 max_fails=1 fail_timeout=60s"),
        Srv("b1", "backup max_fails=1 fail_timeout=60s"),
        Srv("b2", "backup weight=2 max_fails=1 fail_timeout=60s"),
    ]
    got: list[tuple[str, ...]] = []
    want: list[tuple[str, ...]] = []
    dead: set[str] = set()
    with nginx_for(tmp_path, backends, Balancer.ROUND_ROBIN, servers) as (port, group):

        def step(count: int) -> None:
            for i in range(count):
                now = early_in_second()
                got.append(fetch(port, f"/x{i}").tried)
                want.append(replay(group, dead, now))

        step(6)
        for ident in ("p1", "p2"):
            dead.add(addr(backends, ident))
            backends.stop(ident)
        step(8)
        for ident in ("b1", "b2"):
            dead.add(addr(backends, ident))
            backends.stop(ident)
        step(4)
    assert got == want
    assert got[-1] == (UPSTREAM,)


def test_dead_primary_skipped_for_fail_timeout(tmp_path: Path, backends: Backends) -> None:
    """A refused peer is retried elsewhere, skipped for fail_timeout, tried once after it, and its
    effective weight is halved per failure (weight // max_fails) and recovers step by step."""
    servers = [
        Srv("a", "weight=2 max_fails=2 fail_timeout=2s"),
        Srv("b"),
        Srv("c", "weight=2"),
        Srv("d", "max_fails=1 fail_timeout=3s"),
    ]
    got: list[tuple[str, ...]] = []
    want: list[tuple[str, ...]] = []
    with nginx_for(tmp_path, backends, Balancer.ROUND_ROBIN, servers) as (port, group):
        dead = {addr(backends, "a"), addr(backends, "d")}
        backends.stop("a")
        backends.stop("d")
        deadline = time.monotonic() + 9.0
        i = 0
        while time.monotonic() < deadline:
            now = early_in_second()
            got.append(fetch(port, f"/f{i}").tried)
            want.append(replay(group, dead, now))
            i += 1
            time.sleep(0.22)
    assert got == want
    tried_dead = [t for t in got if addr(backends, "a") in t or addr(backends, "d") in t]
    assert 2 <= len(tried_dead) < len(got) - 5  # dead peers were tried, but mostly skipped
