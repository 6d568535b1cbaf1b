"""Process model: a master that owns the listening sockets and N worker processes.

Rules (nginx's, ngx_process_cycle.c):

1. The master binds every listening socket once and forks the workers, which inherit and share
   them; a port with a wildcard ``listen`` (``*:80``) is bound only on the wildcard address and
   the connection's local address picks the server table (as nginx does without ``bind``).
2. SIGHUP: the master loads the configuration again; if it is invalid, the old workers keep
   serving and the error is logged. If valid, new workers start on the (same or new) sockets,
   then the old ones get SIGQUIT and finish their in-flight requests.
3. SIGQUIT: graceful stop (workers stop accepting, close idle keep-alive connections, finish
   requests in progress, exit). SIGTERM / SIGINT: fast stop.
4. A worker that dies unexpectedly is replaced.
5. ``pid`` from the configuration (relative to the prefix) gets the master's pid.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model import Config, Listen
from ..protocol.h1 import H1Limits
from ..routing import Router, SocketTable
from .h2conn import H2Connection, H2Dispatch, h2_limits
from .logs import AccessLogger
from .server import ConnSettings, EngineRef, HttpConnection
from .tls import socket_tls, tls_tables, wants_h2
from .upstream import UpstreamPool

log = logging.getLogger("tern")

Loader = Callable[[], Config]
"""Loads and checks the configuration; raises ``ConfigLoadError`` when it is not usable."""


class ConfigLoadError(Exception):
    """The configuration cannot be served; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class BindKey:
    """A socket to bind."""

    host: str
    port: int


def bind_keys(config: Config) -> list[BindKey]:
    """Sockets a configuration needs (wildcards absorb specific addresses on the same port)."""
    wild: set[int] = set()
    specific: list[tuple[str, int]] = []
    for server in (config.http.servers if config.http else ()):
        listens = server.listens or (Listen(address="*", port=80, source=server.source),)
        for lst in listens:
            if lst.quic or lst.proxy_protocol or lst.address.startswith("unix:"):
                # TCP sockets only here (QUIC listeners are UDP); the PROXY protocol and unix
                # sockets are not served (tern serve refuses them unless --allow-unsupported,
                # which skips them rather than answer where clients expect otherwise)
                continue
            if lst.address in ("*", "[::]"):
                wild.add(lst.port)
            else:
                specific.append((lst.address, lst.port))
    keys = [BindKey("0.0.0.0", p) for p in sorted(wild)]
    seen = set()
    for host, port in specific:
        if port in wild or (host, port) in seen:
            continue
        seen.add((host, port))
        keys.append(BindKey(host.strip("[]"), port))
    return keys


def open_socket(key: BindKey) -> socket.socket:
    """Bind and listen (SO_REUSEADDR, backlog 511 like nginx)."""
    family = socket.AF_INET6 if ":" in key.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((key.host, key.port))
    sock.listen(511)
    sock.setblocking(False)
    return sock


def socket_table(router: Router, key: BindKey) -> SocketTable | None:
    """The server table of a TCP socket."""
    host = "*" if key.host == "0.0.0.0" else key.host
    table: SocketTable | None = router.sockets.get((host, key.port))
    if table is None:
        table = router.socket_for(key.host, key.port)
    return table


def conn_settings(config: Config, router: Router, key: BindKey) -> ConnSettings:
    """Settings for connections on one socket, read from that socket's default server."""
    table = socket_table(router, key)
    http_scope = config.http.scope if config.http else None
    server_scope = table.default.scope if table is not None and table.default else None

    def pick(getter: Callable[[object], object], default: object) -> object:
        for scope in (server_scope, http_scope):
            if scope is not None:
                v = getter(scope.limits)  # type: ignore[attr-defined]
                if v is not None:
                    return v
        return default

    large = pick(lambda li: li.large_client_header_buffers, (4, 8192))
    limits = H1Limits(
        client_header_buffer_size=pick(lambda li: li.client_header_buffer_size, 1024),  # type: ignore[arg-type]
        large_header_buffers=large,  # type: ignore[arg-type]
        underscores_in_headers=bool(pick(lambda li: li.underscores_in_headers, False)),
        ignore_invalid_headers=bool(pick(lambda li: li.ignore_invalid_headers, True)),
    )
    return ConnSettings(
        limits=limits,
        client_header_timeout=pick(lambda li: li.client_header_timeout, 60.0),  # type: ignore[arg-type]
        client_body_timeout=pick(lambda li: li.client_body_timeout, 60.0),  # type: ignore[arg-type]
        keepalive_timeout=pick(lambda li: li.keepalive_timeout, 75.0),  # type: ignore[arg-type]
        keepalive_requests=pick(lambda li: li.keepalive_requests, 1000),  # type: ignore[arg-type]
        send_timeout=pick(lambda li: li.send_timeout, 60.0),  # type: ignore[arg-type]
        scheme="https" if table is not None and is_tls(config, router, table) else "http",
    )


def is_tls(config: Config, router: Router, table: SocketTable) -> bool:
    """A ``listen ... ssl`` on this socket makes all of it TLS (nginx merges listen options)."""
    return any(t is table for t in tls_tables(config, router))


def h2_settings(config: Config, table: SocketTable) -> int:
    """``http2_max_concurrent_streams`` of the socket's default server (nginx: 128)."""
    scopes = [table.default.scope if table.default else None,
              config.http.scope if config.http else None]
    for scope in scopes:
        for raw in (scope.other if scope is not None else ()):
            if raw.name == "http2_max_concurrent_streams" and raw.args[0].isdigit():
                return max(1, int(raw.args[0]))
    return 128


def protocol_factory(config: Config, router: Router, key: BindKey, ref: EngineRef
                     ) -> tuple[Callable[[], asyncio.Protocol], ssl.SSLContext | None]:
    """The protocol factory and TLS context of one TCP socket: HTTP/1.x only, or HTTP/1.x and
    HTTP/2 picked by ALPN (TLS) or by the client preface (cleartext ``http2``)."""
    settings = conn_settings(config, router, key)
    table = socket_table(router, key)
    if table is None:
        return (lambda: HttpConnection(ref, settings)), None
    context: ssl.SSLContext | None = None
    http2 = False
    if settings.scheme == "https":
        tls = socket_tls(config, router, table)
        context, http2 = tls.context, tls.http2
    else:
        http2 = wants_h2(config, table)
    if not http2:
        return (lambda: HttpConnection(ref, settings)), context
    limits = h2_limits(settings, h2_settings(config, table))
    tls_on = context is not None

    def make() -> asyncio.Protocol:
        return H2Dispatch(lambda: HttpConnection(ref, settings),
                          lambda: H2Connection(ref, settings, limits), tls_on)

    return make, context


# ---------------------------------------------------------------------------------------------
# worker


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()


def worker_main(config: Config, prefix: str, sockets: dict[BindKey, socket.socket],
                setup: Callable[[object], None] | None = None) -> int:
    """Run one worker until told to stop. Returns the exit status."""
    for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(_worker(config, prefix, sockets, setup))


async def _worker(config: Config, prefix: str, sockets: dict[BindKey, socket.socket],
                  setup: Callable[[object], None] | None) -> int:
    from ..engine import Engine

    loop = asyncio.get_running_loop()
    pool = UpstreamPool()
    engine = Engine(config, prefix=prefix, pool=pool)
    logger = AccessLogger(config, prefix)

    def log_sink(ex: object, result: object, run: object) -> None:
        logs, get = engine.log_values(ex, result, run)  # type: ignore[arg-type]
        logger.write(logs, get)  # type: ignore[arg-type]

    engine.log_sink = log_sink  # type: ignore[assignment]

    def reject_log_sink(conn: object, rej: object, status: int, size: int) -> None:
        # a request refused (414, 400...) or timed out (408) while its head was read
        logs, get = engine.rejection_log_values(conn, rej, status, size)
        logger.write(logs, get)  # type: ignore[arg-type]

    engine.reject_log_sink = reject_log_sink
    from .. import lane

    engine.lane = lane.attach(engine, logger)
    if setup is not None:
        setup(engine)
    # the configuration, the engine's tables and the imported modules live as long as the
    # worker: out of the cyclic GC's sight, its full collections stop walking them
    gc.collect()
    gc.freeze()
    ref = EngineRef(engine)
    router = engine.interp.router
    servers = []
    for key, sock in sockets.items():
        factory, context = protocol_factory(config, router, key, ref)
        # nginx times the TLS handshake with client_header_timeout (post_accept_timeout)
        handshake = conn_settings(config, router, key).client_header_timeout if context else None
        servers.append(await loop.create_server(factory, sock=sock, ssl=context,
                                                ssl_handshake_timeout=handshake or None))
    # --- HTTP/3: a QUIC endpoint (own UDP socket, SO_REUSEPORT) per `listen ... quic` ----
    from .h3conn import start_quic  # proxy/io/h3conn.py; close() = stop accepting + GOAWAY

    servers.extend(await start_quic(config, ref))  # type: ignore[arg-type]
    # --- end HTTP/3 ---
    stop = loop.create_future()

    def graceful() -> None:
        if not stop.done():
            stop.set_result("graceful")

    def fast() -> None:
        if not stop.done():
            stop.set_result("fast")

    loop.add_signal_handler(signal.SIGQUIT, graceful)
    loop.add_signal_handler(signal.SIGTERM, fast)
    loop.add_signal_handler(signal.SIGINT, fast)
    mode = await stop
    for srv in servers:
        srv.close()
    if mode == "graceful":
        ref.draining = True
        deadline = time.monotonic() + 300.0
        while ref.connections and time.monotonic() < deadline:
            for conn in list(ref.connections):
                if conn.idle():
                    conn.close()
            await asyncio.sleep(0.05)
    for conn in list(ref.connections):
        conn.close(abort=True)
    pool.close_all()
    logger.close()
    return 0


# ---------------------------------------------------------------------------------------------
# master


class Master:
    """Owns sockets and workers; handles signals."""

    def __init__(self, load: Loader, *, prefix: str, workers: int | None,
                 setup: Callable[[object], None] | None = None) -> None:
        self.load = load
        self.prefix = prefix
        self.workers_opt = workers
        self.setup = setup
        self.sockets: dict[BindKey, socket.socket] = {}
        self.children: dict[int, int] = {}
        """pid -> generation."""
        self.generation = 0
        self.config: Config | None = None
        self.pid_path: str | None = None

    def worker_count(self, config: Config) -> int:
        if self.workers_opt is not None:
            return max(1, self.workers_opt)
        wp = config.main.worker_processes
        if wp is None:
            return 1
        if wp == "auto":
            return os.cpu_count() or 1
        return max(1, int(wp)) if wp.isdigit() else 1

    def _bind(self, config: Config) -> None:
        wanted = bind_keys(config)
        for key in wanted:
            if key not in self.sockets:
                self.sockets[key] = open_socket(key)
        for key in list(self.sockets):
            if key not in wanted:
                self.sockets.pop(key).close()
        # HTTP/3: QUIC certificates load and UDP ports bind (each worker binds its own)
        from .h3conn import check_quic

        check_quic(config)

    def _spawn(self, config: Config, count: int, *, new_generation: bool = True) -> None:
        if new_generation:
            self.generation += 1
        socks = dict(self.sockets)
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    code = worker_main(config, self.prefix, socks, self.setup)
                except BaseException:  # noqa: BLE001 - the child must never return to the master
                    log.exception("worker failed")
                finally:
                    os._exit(code)
            self.children[pid] = self.generation

    def _write_pid(self, config: Config) -> None:
        pid = config.main.pid
        if pid is None:
            return
        path = pid if os.path.isabs(pid) else os.path.join(self.prefix, pid)
        try:
            with open(path, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            self.pid_path = path
        except OSError as exc:
            log.warning('cannot write pid file "%s": %s', path, exc.strerror)

    def run(self) -> int:
        """Start and serve until stopped. Returns the exit status."""
        config = self.load()
        self._bind(config)
        self.config = config
        sigs = {signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        self._write_pid(config)
        self._spawn(config, self.worker_count(config))
        log.info("tern: serving %d socket(s) with %d worker(s)", len(self.sockets),
                 self.worker_count(config))
        try:
            return self._loop(sigs)
        finally:
            if self.pid_path:
                try:
                    os.unlink(self.pid_path)
                except OSError:
                    pass

    def _loop(self, sigs: set[signal.Signals]) -> int:
        stopping: str | None = None
        while True:
            if stopping and not self.children:
                return 0
            sig = signal.sigwait(sigs)
            if sig == signal.SIGCHLD:
                self._reap(respawn=stopping is None)
            elif sig == signal.SIGHUP and stopping is None:
                self._reload()
            elif sig == signal.SIGQUIT:
                stopping = "graceful"
                self._signal_all(signal.SIGQUIT)
                self._close_sockets()
            elif sig in (signal.SIGTERM, signal.SIGINT):
                stopping = "fast"
                self._signal_all(signal.SIGTERM)
                self._close_sockets()
            if stopping:
                self._reap(respawn=False)

    def _close_sockets(self) -> None:
        for s in self.sockets.values():
            s.close()
        self.sockets.clear()

    def _signal_all(self, sig: signal.Signals, generation: int | None = None) -> None:
        for pid, gen in list(self.children.items()):
            if generation is None or gen == generation:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def _reap(self, *, respawn: bool) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            gen = self.children.pop(pid, None)
            if gen is None:
                continue
            ok = os.waitstatus_to_exitcode(status) == 0
            if respawn and gen == self.generation and not ok and self.config is not None:
                log.error("worker %d exited unexpectedly (status %d); starting a new one", pid,
                          status)
                self._spawn(self.config, 1, new_generation=False)

    def _reload(self) -> None:
        try:
            config = self.load()
        except ConfigLoadError as exc:
            log.error("reload failed, still serving the previous configuration:\n%s", exc)
            return
        try:
            self._bind(config)
        except OSError as exc:
            log.error("reload failed: cannot bind: %s; still serving the previous "
                      "configuration", exc)
            return
        old = self.generation
        self.config = config
        self._spawn(config, self.worker_count(config))
        self._signal_all(signal.SIGQUIT, generation=old)
        log.info("tern: configuration reloaded")


def run(load: Loader, *, prefix: str, workers: int | None,
        setup: Callable[[object], None] | None = None) -> int:
    """Entry point for ``tern serve``."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s [%(levelname)s] %(process)d: %(message)s")
    return Master(load, prefix=prefix, workers=workers, setup=setup).run()
