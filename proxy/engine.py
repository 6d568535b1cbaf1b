"""The request engine: nginx's phases for one request, whatever protocol carried it.

Routing (server selection, rewrite, location search, access, try_files, index, error_page) is
``proxy.interp.Interpreter``; this module runs what routing decided (return, redirect, static file,
proxy_pass), then the header filter (Server, Date, add_header, expires) and the log phase.

Rules:

1. The engine never touches sockets: the I/O layer gives it an ``Exchange`` (request head, body
   reader, response sink) and an ``UpstreamPool``.
2. Errors from the upstream map to nginx's statuses: connect/read/send errors 502, timeouts 504,
   "no live upstreams" 502; ``proxy_next_upstream`` decides retries (default ``error timeout``;
   POST/LOCK/PATCH are not retried once sent unless ``non_idempotent``).
3. ``add_header`` applies to 200, 201, 204, 206, 301, 302, 303, 304, 307, 308 unless ``always``;
   the innermost level that has any ``add_header`` is the only one used (inheritance rule).
4. With ``proxy_request_buffering on`` (nginx's default) the request body is read completely
   before the upstream is contacted and sent with one Content-Length, so retries can resend it;
   with ``off`` a body still arriving streams (chunked to an HTTP/1.1 upstream when the client
   sent it chunked) and a sent request is not retried.
5. Statuses the engine makes itself while proxying (502, 504, 413) are special responses:
   ``error_page`` applies to them as to routing's own.
6. An upstream's ``X-Accel-Redirect`` (unless ``proxy_ignore_headers`` names it) is an internal
   redirect; Content-Type, Set-Cookie, Cache-Control, Expires, Content-Disposition and
   Accept-Ranges survive it. A response head larger than ``proxy_buffer_size`` is a 502.
7. ``Expect: 100-continue`` (HTTP/1.1) gets ``100 Continue`` the first time the body is read or
   discarded, except for nginx's own error pages (ngx_http_test_expect).
8. A static file's 200 passes nginx's filters in their order: not-modified (412, 304;
   ``if_modified_since``), then add_header/expires, then ranges (206, multipart/byteranges,
   416; ``max_ranges``, ``If-Range``; :mod:`proxy.ranges`). Last-Modified goes with 200, 206 and
   304 only, Accept-Ranges with a 200 the range filter left whole (an error_page file has
   neither, its ETag stays).
"""

from __future__ import annotations

import abc
import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import (
    accesslog,
    addition,
    autoindex,
    charset,
    cookies,
    gzipfilter,
    ranges,
    ratelimit,
    responses,
    subfilter,
)
from .interp import Interpreter, RequestState, RouteRequest, RouteResult
from .io import upstream_tls
from .io.resolver import ResolveError, Resolver, resolver_from_args
from .io.upstream import UpstreamConnection, UpstreamError, UpstreamPool, UpstreamResponse
from .limits import ConnZone, ReqZone
from .model import (
    NOWHERE,
    Config,
    Expires,
    HeaderValue,
    Lit,
    ProxyConf,
    ProxyPass,
    Scope,
    Upstream,
)
from .protocol.events import RequestHeaders

if TYPE_CHECKING:
    from .fastcgi import FastcgiHandler
    from .lane import Lane
from .units import parse_size, parse_time
from .upstream.balancer import Attempt, Peer, PeerGroup

VERSION = "0.1.0"

ADD_HEADER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})
CLOSE_AFTER = responses.CLOSE_CONNECTION_STATUSES | {494}
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer",
                        b"upgrade", b"proxy-connection"})
DEFAULT_HIDE = frozenset({b"date", b"server", b"x-pad", b"x-accel-expires", b"x-accel-redirect",
                          b"x-accel-limit-rate", b"x-accel-buffering", b"x-accel-charset"})
# client headers nginx's proxy module replaces or drops by default
PROXY_DROP = frozenset({"host", "connection", "content-length", "transfer-encoding", "te",
                        "keep-alive", "expect", "upgrade"})
PAGE_SIZE = 4096
"""nginx's default proxy_buffer_size (one memory page on x86-64 and arm64 Debian)."""
ACCEL_KEEP = frozenset({b"content-type", b"set-cookie", b"content-disposition",
                        b"cache-control", b"expires", b"accept-ranges"})
"""Upstream headers kept across X-Accel-Redirect (``redirect`` flag in ngx_http_upstream)."""
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
FAILURE_STATUSES = frozenset({500, 502, 503, 504})
_NO_CONTENT_DROP = frozenset({b"content-type", b"content-length", b"last-modified"})
_LOWER_NAMES: dict[bytes, str] = {}
"""Client header names as received -> lower-case str (bounded cache)."""
_LOWER_BYTES: dict[bytes, bytes] = {}
"""Upstream header names as received -> lower case (bounded cache)."""
DEFAULT_TYPES = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}
"""nginx's built-in types when no ``types`` block is configured (ngx_http_core_default_types)."""


class Exchange(abc.ABC):
    """One request/response as the I/O layer presents it to the engine."""

    head: RequestHeaders
    scheme: str = "http"
    local_addr: str = "127.0.0.1"
    local_port: int = 80
    remote_addr: str = "127.0.0.1"
    remote_port: int = 0
    connection_id: int = 0
    connection_requests: int = 1

    @abc.abstractmethod
    def body(self) -> AsyncIterator[bytes]:
        """The request body in pieces (transfer coding removed); empty when there is none."""

    @abc.abstractmethod
    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        """Send the response head; ``close`` ends keep-alive after this response."""

    @abc.abstractmethod
    def send_data(self, data: bytes) -> None:
        """Send body bytes."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until the client has taken what was sent (back-pressure)."""

    @abc.abstractmethod
    def end(self) -> None:
        """The response is complete."""

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        """A whole response: ``send_headers``, ``send_data`` (when ``body``), ``end``."""
        self.send_headers(status, headers, reason=reason, close=close)
        if body:
            self.send_data(body)
        self.end()

    @abc.abstractmethod
    def abort(self) -> None:
        """Close the connection without (further) response (``return 444``, upstream errors)."""

    def body_complete(self) -> bool:
        """True when the whole request body has already been received."""
        return False

    def send_continue(self) -> None:
        """Send an interim ``100 Continue`` (HTTP/1.1 only; a no-op elsewhere)."""
        return None

    def tunnel(self, upstream: UpstreamConnection) -> asyncio.Future[None] | None:
        """Switch to a raw byte tunnel with ``upstream`` after a 101; None if unsupported."""
        return None

    def tls_var(self, name: str) -> str | None:
        """nginx's ``$ssl_*`` variables (None: not TLS); read from ``self.conn.transport``."""
        from .io.tls import tls_variable

        return tls_variable(getattr(getattr(self, "conn", None), "transport", None), name)


_DNS_PENDING = object()
"""``_group_for``: the proxy_pass host is a name the resolver has not answered yet."""


class _Run:
    """Per-request values the log phase and variables need."""

    # a plain slotted class: a dataclass with list factories costs ~0.5 us more per request
    __slots__ = ("start", "status", "body_bytes", "upstream_addr", "upstream_status",
                 "upstream_time", "upstream_headers", "sent_headers", "proxy_host", "proxy_port",
                 "request_id", "dns", "pacer", "addition")

    def __init__(self, start: float) -> None:
        self.start = start
        self.status = 0
        self.body_bytes = 0
        self.upstream_addr: list[str] = []
        self.upstream_status: list[str] = []
        self.upstream_time: list[str] = []
        self.upstream_headers: list[tuple[bytes, bytes]] = []
        self.sent_headers: list[tuple[bytes, bytes]] = []
        self.proxy_host = ""
        self.proxy_port = ""
        self.request_id = ""
        self.dns: tuple[object, str, list[str] | None] | None = None
        """A proxy_pass name for ``resolver``: (resolver, name, its addresses once known)."""
        self.pacer: ratelimit.Pacer | None = None
        """limit_rate's pacer in front of the client (proxy/ratelimit.py); None: none."""
        self.addition: object = None
        """add_before_body/add_after_body subrequests still owed (proxy/addition.py)."""


class _ProxyPlan:
    """What every upstream attempt of one proxied request shares (``Engine._proxy_plan``)."""

    __slots__ = ("pp", "pconf", "group", "hostport", "method", "body", "stream", "chunked_up",
                 "head_bytes", "upgrade", "keepalive", "reuse", "deadline",
                 "non_idempotent_ok", "attempt")

    def __init__(self, pp: ProxyPass, pconf: _ProxyEff, group: PeerGroup, hostport: str,
                 method: str, body: bytes | None, stream: AsyncIterator[bytes] | None,
                 chunked_up: bool, head_bytes: bytes, upgrade: bool, keepalive: int,
                 reuse: bool, deadline: float | None, non_idempotent_ok: bool,
                 attempt: Attempt) -> None:
        self.pp = pp
        self.pconf = pconf
        self.group = group
        self.hostport = hostport
        self.method = method
        self.body = body
        self.stream = stream
        self.chunked_up = chunked_up
        self.head_bytes = head_bytes
        self.upgrade = upgrade
        self.keepalive = keepalive
        self.reuse = reuse
        self.deadline = deadline
        self.non_idempotent_ok = non_idempotent_ok
        self.attempt = attempt


class ProxyResume:
    """Where the fast path (proxy/fastpath.py) handed a proxied request to the general one:
    the routing result and log values so far, the plan (None: routed only), and the first
    attempt's peer (None: no live peer), start time, and its pooled connection with the request
    written (None: not taken yet), or the error writing it."""

    __slots__ = ("result", "run", "plan", "peer", "t0", "conn", "error", "read_timeout",
                 "raised")

    def __init__(self, result: RouteResult | None, run: _Run, plan: _ProxyPlan | None,
                 peer: Peer | None = None, t0: float = 0.0,
                 conn: UpstreamConnection | None = None, error: UpstreamError | None = None,
                 read_timeout: float = 0.0, raised: Exception | None = None) -> None:
        self.raised = raised
        """What routing raised (the general path handles it as its own)."""
        self.result = result
        self.run = run
        self.plan = plan
        self.peer = peer
        self.t0 = t0
        self.conn = conn
        self.error = error
        self.read_timeout = read_timeout


_ProxyResume = ProxyResume


class Engine:
    """Runs requests against one loaded configuration."""

    def __init__(self, config: Config, *, prefix: str | None = None, pool: UpstreamPool,
                 product: str = "tern", version: str = VERSION) -> None:
        self.config = config
        self.interp = Interpreter(config, prefix=prefix)
        self.interp.explain = False
        self.pool = pool
        self.product = product
        self.version = version
        http = config.http
        self.upstreams: dict[str, Upstream] = {u.name: u for u in (http.upstreams if http else ())}
        self.groups: dict[str, PeerGroup] = {
            name: PeerGroup.from_model(up) for name, up in self.upstreams.items()}
        self._literal_groups: dict[tuple[str, int], PeerGroup] = {}
        self._fastcgi: FastcgiHandler | None = None
        self.req_zones = {z.name: ReqZone(z) for z in (http.limit_req_zones if http else ())}
        self.conn_zones = {z.name: ConnZone(z) for z in (http.limit_conn_zones if http else ())}
        self._resolvers: dict[tuple[object, ...], Resolver] = {}
        self.charset_known = frozenset(http.charsets if http else ())
        self.charset_maps = frozenset(http.charset_maps if http else ())
        self._charset_confs: dict[tuple[int, ...], charset.CharsetConf | None] = {}
        self.interp.preaccess_hook = self._preaccess
        self.log_sink: Callable[[Exchange, RouteResult | None, _Run], None] | None = None
        self.reject_log_sink: Callable[[object, object, int, int], None] | None = None
        self.rate_possible = ratelimit.possible(config)
        """Some request may be paced (limit_rate...): requests get a ratelimit.Pacer."""
        self.lane: Lane | None = None
        """The compiled lane (proxy/lane.py), attached by the worker; None: not used."""

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _eff(state: RequestState, getter: Callable[[Scope], object]) -> object:
        return state.effective(getter)

    def _server_tokens(self, state: RequestState | None) -> str:
        if state is None:
            http = self.config.http
            v = http.scope.limits.server_tokens if http else None
        else:
            v = state.effective(lambda s: s.limits.server_tokens)
        return v if isinstance(v, str) else "on"

    def _base_headers(self, state: RequestState | None) -> list[tuple[bytes, bytes]]:
        tokens = self._server_tokens(state)
        out = [(b"Server", responses.server_header(tokens, self.product, self.version)),
               (b"Date", responses.http_date(time.time()))]
        if state is not None and state.carried_headers:
            out.extend(h for h in state.carried_headers if h[0].lower() != b"content-type")
        return out

    # -- entry ----------------------------------------------------------------------------------

    async def handle(self, ex: Exchange, resume: ProxyResume | None = None) -> None:
        """Serve one request to completion (never raises for request or upstream errors).

        ``resume``: a proxied request the fast path routed and started (proxy/fastpath.py)."""
        result: RouteResult | None = None
        if resume is not None:
            run = resume.run
        else:
            run = _Run(start=time.time())
        try:
            if resume is not None:
                if resume.raised is not None:
                    raise resume.raised
                result = resume.result
                assert result is not None
            else:
                req = self._route_request(ex, run)
                result = self.interp.route(req)
            if self.rate_possible and ratelimit.wanted(result):  # nginx's write filter
                run.pacer = ratelimit.Pacer(ex, run.start)
            await self._respond(run.pacer or ex, result, run, resume)  # type: ignore[arg-type]
            if run.addition is not None:
                await addition.complete(run)  # add_after_body: after the handler's body
            if run.pacer is not None:
                await run.pacer.complete()  # the rest of a paced answer, then its end
        except asyncio.CancelledError:
            ex.abort()
            raise
        except ClientBodyInvalid as exc:
            if run.status == 0:
                await self._send_error(ex, result.state if result else None, exc.status, run)
            else:
                ex.abort()
        except (_ClientGone, ConnectionError) as exc:
            # nginx logs 408 for client_body_timeout, 400 for a body cut short, else 499
            run.status = run.status or getattr(exc, "status", 0) or 499
            ex.abort()
        except Exception:  # an engine bug must cost one request, not the worker
            import logging
            logging.getLogger("tern").exception("internal error")
            if run.status == 0:
                await self._send_error(ex, None, 500, run)
            else:
                ex.abort()
        finally:
            self.finish(ex, result, run)

    def finish(self, ex: Exchange, result: RouteResult | None, run: _Run) -> None:
        """The end of every request: limit_conn released, the log phase, the cycle broken."""
        state = result.state if result is not None else None
        if state is not None:
            for czone, key in state.limit_conn_held:
                czone.release(key)  # type: ignore[attr-defined]
        if self.log_sink is not None:
            self.log_sink(ex, result, run)
        if state is not None:
            # state <-> result is a reference cycle: break it so the request is freed by
            # reference counting, not by the cyclic GC (which costs ~10% of throughput)
            state.result = None  # type: ignore[assignment]

    def _preaccess(self, state: RequestState) -> int | None:
        """limit_conn then limit_req, once per request; a status to refuse with, or None."""
        if state.limits_done:
            return None
        state.limits_done = True
        conn_refs = state.effective(lambda s: s.access.limit_conn)
        for ref in conn_refs or ():  # type: ignore[attr-defined]
            czone = self.conn_zones.get(ref.zone)
            if czone is None:
                continue
            key = state.eval(czone.zone.key)
            if not key:
                continue
            state.vars["limit_conn_status"] = "PASSED"
            if not czone.acquire(key, ref.number):
                # nginx lets go of what this request already holds, then refuses or, dry run,
                # stops checking and lets the request go on uncounted
                for held_zone, held_key in state.limit_conn_held:
                    held_zone.release(held_key)  # type: ignore[attr-defined]
                state.limit_conn_held.clear()
                if state.effective(lambda s: s.access.limit_conn_dry_run):
                    state.vars["limit_conn_status"] = "REJECTED_DRY_RUN"
                    break
                state.vars["limit_conn_status"] = "REJECTED"
                status = state.effective(lambda s: s.access.limit_conn_status)
                return status if isinstance(status, int) else 503
            state.limit_conn_held.append((czone, key))
        req_refs = state.effective(lambda s: s.access.limit_req)
        now = time.monotonic()
        checked = False
        delay = 0.0
        for ref in req_refs or ():  # type: ignore[attr-defined]
            rzone = self.req_zones.get(ref.zone)
            if rzone is None:
                continue
            key = state.eval(rzone.zone.key)
            if not key:
                continue
            checked = True
            excess = rzone.check(key, ref.burst, now)
            if excess is None:
                if state.effective(lambda s: s.access.limit_req_dry_run):
                    state.vars["limit_req_status"] = "REJECTED_DRY_RUN"
                    return None
                state.vars["limit_req_status"] = "REJECTED"
                status = state.effective(lambda s: s.access.limit_req_status)
                return status if isinstance(status, int) else 503
            if not ref.nodelay and excess > ref.delay:
                delay = max(delay, (excess - ref.delay) / rzone.rate)
        if checked:
            if delay <= 0:
                state.vars["limit_req_status"] = "PASSED"
            elif state.effective(lambda s: s.access.limit_req_dry_run):
                state.vars["limit_req_status"] = "DELAYED_DRY_RUN"
            else:
                state.vars["limit_req_status"] = "DELAYED"
                state.limit_delay = max(state.limit_delay, delay)
        return None

    def log_values(self, ex: Exchange, result: RouteResult | None, run: _Run
                   ) -> tuple[object, Callable[[str], str | None]]:
        """The access_log entries in effect and a variable getter for the log phase."""
        state = result.state if result is not None else None
        http = self.config.http
        if state is not None:
            logs = state.effective(lambda s: s.logging.access_logs)
        else:
            logs = http.scope.logging.access_logs if http else None
        head = ex.head
        end = time.time()

        def get(name: str) -> str | None:
            if name == "status":
                return accesslog.log_status(run.status)
            if name == "request_time":
                return accesslog.request_time(run.start, end)
            if name == "remote_addr":
                return state.req.remote_addr if state is not None else ex.remote_addr
            if name == "remote_user":
                return state.vars.get("remote_user") if state is not None else None
            if name == "request":
                return (f"{head.method.decode('latin-1')} {head.target.decode('latin-1')} "
                        f"HTTP/{head.http_version}")
            if name == "time_local":
                return accesslog.time_local(run.start)
            if name == "time_iso8601":
                return accesslog.time_iso8601(run.start)
            if name == "msec":
                return accesslog.msec(end)
            if name.startswith("http_"):
                want = name[5:].replace("_", "-").encode()
                for k, v in head.raw_headers:
                    if k.lower() == want:
                        return v.decode("latin-1")
                return None
            if name in ("upstream_addr", "upstream_status", "upstream_response_time") and \
                    not run.upstream_addr:
                return None
            if state is not None:
                return state.lookup(name)
            value = self._var(name, run)
            return value

        return logs, get

    def rejection(self, rej: object) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for a request the adapter refused (400, 414, 494...)."""
        from .protocol.events import RequestRejected

        assert isinstance(rej, RequestRejected)
        status = rej.status_hint
        headers = self._base_headers(None)
        body = responses.error_page_body(status, self._server_tokens(None),
                                         product=self.product, version=self.version) or b""
        if body:
            headers.append((b"Content-Type", b"text/html"))
            headers.append((b"Content-Length", str(len(body)).encode()))
        return (400 if status == 494 else status), headers, body

    def log_rejection(self, conn: object, rej: object, status: int, size: int) -> None:
        """Access-log a request refused, cut short or timed out while its head was read (nginx
        logs them too); ``status`` is the logged one (400 for 494, 408 for a timeout).  A
        refusal that says nothing of a head (``request_line`` None: a body gone wrong after
        the request was handed over) is not logged here."""
        if self.reject_log_sink is not None and getattr(rej, "request_line", None) is not None:
            self.reject_log_sink(conn, rej, status, size)

    def rejection_log_values(self, conn: object, rej: object, status: int, size: int
                             ) -> tuple[object, Callable[[str], str | bytes | None]]:
        """The access_log entries and a variable getter for a request nginx refused (or that
        timed out) while its head was read: ``rej`` says what it had parsed by then.

        nginx logs it from the server it had picked so far (the socket's default one, or the
        one a valid Host chose; ngx_http_process_host switches at once) at server level; the
        method, ``$uri``, ``$args`` and ``$request_uri`` exist only once the request line was
        parsed whole, ``$request`` is whatever nginx had read of the line.
        """
        from .protocol.events import RequestRejected
        from .routing import BadRequest, normalize_host, normalize_uri

        assert isinstance(rej, RequestRejected)
        local_addr, local_port = getattr(conn, "local", ("127.0.0.1", 0))
        remote_addr, remote_port = getattr(conn, "remote", ("127.0.0.1", 0))
        scheme = getattr(getattr(conn, "settings", None), "scheme", "http")
        table = self.interp.router.socket_for(local_addr, local_port)
        server = table.default if table is not None else None
        host = rej.host.decode("latin-1") if rej.host is not None else None
        uri: str | None = None
        args: str | None = None
        request_uri: str | None = None
        if rej.target is not None:
            target = rej.target.decode("latin-1")
            if target.startswith(("http://", "https://")):  # absolute-form: the path part
                rest = target.split("://", 1)[1]
                cut = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
                target = rest[min(cut):] if cut else "/"
            path, _, query = target.partition("?")
            merge = server is None or self.interp._server_flag(server, "merge_slashes")
            try:
                uri = normalize_uri(path or "/", merge_slashes=merge is not False)
                request_uri = target
                args = query or None  # ngx_http_process_request_uri: only non-empty args
            except BadRequest:
                uri, host = "", None  # refused there, before any Host was looked at
        if host is not None and table is not None:
            try:
                server = self.interp.router.select_server(table, host).server
            except BadRequest:
                host = None
        http = self.config.http
        logs = server.scope.logging.access_logs if server is not None else None
        if logs is None and http is not None:
            logs = http.scope.logging.access_logs
        server_name = ""
        if server is not None:
            for n in server.names:
                server_name = n.value
                break
        now = time.time()
        method = rej.method.decode("latin-1") if rej.method is not None else None
        version = rej.http_version
        simple: dict[str, str | bytes | None] = {
            "status": accesslog.log_status(status),
            "body_bytes_sent": str(size),
            "request": rej.request_line,
            "request_method": method,
            "uri": uri, "document_uri": uri,
            "args": args, "query_string": args, "is_args": "?" if args else "",
            "request_uri": request_uri,
            "server_protocol": f"HTTP/{version}" if version and version != "0.9" else None,
            "remote_addr": remote_addr, "realip_remote_addr": remote_addr,
            "remote_port": str(remote_port), "server_addr": local_addr,
            "server_port": str(local_port), "scheme": scheme,
            "https": "on" if scheme == "https" else "",
            "server_name": server_name,
            "request_time": accesslog.request_time(now, now),
            "connection": str(getattr(conn, "id", 0)),
            "pid": str(os.getpid()),
        }

        def get(name: str) -> str | bytes | None:
            if name in simple:
                return simple[name]
            if name == "host":
                if host is not None:
                    try:
                        return normalize_host(host)
                    except BadRequest:
                        return ""
                return server_name
            if name.startswith("http_"):
                want = name[5:].replace("_", "-").encode()
                for k, v in rej.raw_headers:
                    if k.lower() == want:
                        return v
                return None
            if name == "msec":
                return accesslog.msec(now)
            if name == "time_local":
                return accesslog.time_local(now)
            if name == "time_iso8601":
                return accesslog.time_iso8601(now)
            return None

        return logs, get

    def _route_request(self, ex: Exchange, run: _Run) -> RouteRequest:
        head = ex.head
        headers: dict[str, str] = {}
        lower = _LOWER_NAMES
        for name, value in head.raw_headers:
            key = lower.get(name)
            if key is None:
                key = name.decode("latin-1").lower()
                if len(lower) < 4096:
                    lower[name] = key
            val = value.decode("latin-1")
            if key in headers:
                if key == "cookie":
                    headers[key] += "; " + val
                elif key == "x-forwarded-for":
                    headers[key] += ", " + val
                continue
            headers[key] = val
        target = head.target.decode("latin-1")
        host = head.host.decode("latin-1") if head.host is not None else None
        if target.startswith(("http://", "https://")):
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            host, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        remote = ex.remote_addr

        def hook(name: str) -> str | None:
            if name[:4] == "ssl_":
                return ex.tls_var(name)
            return self._var(name, run)

        req = RouteRequest(
            method=head.method.decode("latin-1"), target=target, host=host, headers=headers,
            scheme=ex.scheme, local_addr=ex.local_addr, local_port=ex.local_port,
            remote_addr=remote, remote_port=ex.remote_port,
            http_version=head.http_version, content_length=head.content_length, var_hook=hook,
            raw_headers=head.raw_headers)
        return req

    # -- variables the engine knows ----------------------------------------------------------------

    def _var(self, name: str, run: _Run) -> str | None:
        if name == "status":
            return str(run.status) if run.status else "000"
        if name == "body_bytes_sent":
            return str(run.body_bytes)
        if name == "request_time":
            return accesslog.request_time(run.start, time.time())
        if name == "upstream_addr":
            return ", ".join(run.upstream_addr) if run.upstream_addr else ""
        if name == "upstream_status":
            return ", ".join(run.upstream_status) if run.upstream_status else ""
        if name == "upstream_response_time":
            return ", ".join(run.upstream_time) if run.upstream_time else ""
        if name == "limit_rate":
            if name in self.interp.maps:
                return None  # map ... $limit_rate: the map's getter replaces nginx's
            return str(run.pacer.rate) if run.pacer is not None else "0"
        if name == "proxy_host":
            return run.proxy_host
        if name == "proxy_port":
            return run.proxy_port
        if name.startswith("upstream_http_"):
            want = name[14:].replace("_", "-").encode()
            for k, v in run.upstream_headers:
                if k.lower() == want:
                    return v.decode("latin-1")
            return None  # not found: "-" in a log line, "" in other values, as in nginx
        if name.startswith("sent_http_"):
            want = name[10:].replace("_", "-").encode()
            for k, v in run.sent_headers:
                if k.lower() == want:
                    return v.decode("latin-1")
            return None
        if name == "msec":
            return accesslog.msec(time.time())
        if name == "request_id":
            # nginx: 16 random bytes in hex, fixed for the request
            if not run.request_id:
                run.request_id = os.urandom(16).hex()
            return run.request_id
        if name == "time_local":
            return accesslog.time_local(time.time())
        if name == "time_iso8601":
            return accesslog.time_iso8601(time.time())
        return None

    # -- content ------------------------------------------------------------------------------

    async def _respond(self, ex: Exchange, result: RouteResult, run: _Run,
                       resume: ProxyResume | None = None) -> None:
        if result.state is not None and result.state.limit_delay > 0:
            await asyncio.sleep(result.state.limit_delay)
        client = ex
        for _ in range(12):  # error_page after intercepted upstream errors may loop, bounded
            kind = result.kind
            state = result.state
            if run.pacer is not None:
                run.pacer.enter(state)  # limit_rate of the level answering, set $limit_rate
            ex = gzipfilter.wrap(client, state, run, kind)  # gzip on: nginx's gzip filter
            ex = subfilter.wrap(ex, state, run)  # sub_filter: before gzip, as in nginx
            ex = addition.wrap(ex, state, run, self)  # add_*_body: before sub_filter
            if kind == "proxy":
                assert state is not None
                again = await self._proxy(ex, result, state, run, resume if resume is not None
                                          and resume.plan is not None else None)
                resume = None
                if again is None:
                    return
                result = again
                continue
            if kind == "fastcgi":
                assert state is not None
                from .fastcgi import FastcgiHandler

                if self._fastcgi is None:
                    self._fastcgi = FastcgiHandler(self)
                again = await self._fastcgi.run(ex, result, state, run)
                if again is None:
                    return
                result = again
                continue
            if kind == "auth_request":
                from . import authrequest

                result = await authrequest.run(self, client, result, run)
                continue
            if kind == "close":
                run.status = 444
                ex.abort()
                return
            if kind == "return":
                assert state is not None and result.status is not None
                await self._send_text(ex, state, result.status, result.body or "", run,
                                      result.override_status)
                return
            if kind == "autoindex":
                assert state is not None and result.file_path is not None
                await self._send_autoindex(ex, state, result.file_path, run)
                return
            if kind == "static":
                assert state is not None and result.file_path is not None
                await self._send_file(ex, state, result.file_path, run, result.override_status)
                return
            if kind == "redirect":
                assert result.status is not None and result.redirect_to is not None
                await self._send_error(ex, state, result.status, run,
                                       location=result.redirect_to, extra=result.extra_headers)
                return
            if kind in ("error", "none"):
                await self._send_error(ex, state, result.status or 404, run,
                                       extra=result.extra_headers)
                return
            # handler Tern does not implement (fastcgi_pass...): nginx would talk to a peer
            await self._send_error(ex, state, 502, run)
            return
        await self._send_error(ex, result.state, 500, run)

    def _content_type(self, state: RequestState, uri: str) -> bytes:
        for k, v in state.carried_headers:  # set before: ngx_http_set_content_type keeps it
            if k.lower() == b"content-type":
                return v
        types = state.effective(lambda s: s.static.types)
        ext = uri.rsplit("/", 1)[-1]
        ext = ext.rsplit(".", 1)[1].lower() if "." in ext else ""
        if ext:
            if types is not None:
                for mime, exts in types:  # type: ignore[attr-defined]
                    if ext in exts:
                        return mime.encode()
            elif ext in DEFAULT_TYPES:
                return DEFAULT_TYPES[ext].encode()
        dt = state.effective(lambda s: s.static.default_type)
        return (dt if isinstance(dt, str) else "text/plain").encode()

    def _charset_conf(self, state: RequestState) -> charset.CharsetConf | None:
        """The charset settings of the request's chain (cached per chain); None: none set."""
        key = state.chain_key
        try:
            return self._charset_confs[key]
        except KeyError:
            pass
        cs = state.effective(lambda s: s.static.charset)
        conf = None
        if cs is not None and cs != "off":
            types = state.effective(lambda s: s.static.charset_types)
            conf = charset.CharsetConf(
                charset=cs, source=state.effective(lambda s: s.static.source_charset),
                override=bool(state.effective(lambda s: s.static.override_charset)),
                types=frozenset(types) if types is not None else None,
                known=self.charset_known, maps=self.charset_maps)
        elif self.charset_known:  # X-Accel-Charset may still name a known charset
            conf = charset.CharsetConf(charset=None, source=None, override=False, types=None,
                                       known=self.charset_known, maps=self.charset_maps)
        if len(self._charset_confs) < 4096:
            self._charset_confs[key] = conf
        return conf

    def _finish_headers(self, state: RequestState | None, status: int,
                        headers: list[tuple[bytes, bytes]], run: _Run,
                        accel_charset: bytes | None = None
                        ) -> list[tuple[bytes, bytes]]:
        """Header filter: expires and add_header (``$status`` is the status being sent), then
        the charset filter (``accel_charset``: an upstream's X-Accel-Charset)."""
        run.status = responses.wire_status(status)
        if state is None:
            return headers
        csconf = self._charset_conf(state)
        if csconf is not None:
            charset.apply(csconf, status, headers, state.lookup, accel_charset)
        if status in ADD_HEADER_STATUSES:
            exp = state.effective(lambda s: s.expires)
            if isinstance(exp, Expires):
                _apply_expires(exp, headers)
        adds = state.effective(lambda s: s.add_headers)
        if adds:
            for h in adds:  # type: ignore[attr-defined]
                assert isinstance(h, HeaderValue)
                if not h.always and status not in ADD_HEADER_STATUSES:
                    continue
                value = state.eval(h.value)
                if value:
                    headers.append((h.name.encode("latin-1"),
                                    value.encode("latin-1", errors="replace")))
        return headers

    async def _send_text(self, ex: Exchange, state: RequestState, status: int, text: str,
                         run: _Run, override: int | None) -> None:
        body = text.encode("utf-8", errors="surrogateescape")
        status = override or status
        headers = self._base_headers(state)
        headers.append((b"Content-Type", self._content_type(state, state.uri)))
        headers.append((b"Content-Length", str(len(body)).encode()))
        headers = self._finish_headers(state, status, headers, run)
        await self._emit(ex, state, status, headers, body, run)

    async def _send_error(self, ex: Exchange, state: RequestState | None, status: int,
                          run: _Run, *, location: str | None = None,
                          extra: list[tuple[str, str]] | None = None) -> None:
        """A response nginx generates itself (special response): page, redirect or empty."""
        if status in responses.NO_RESPONSE_STATUSES:
            run.status = status
            ex.abort()
            return
        if state is not None and not state.send_response:
            state.expect_tested = True  # ngx_http_special_response_handler: no 100 Continue
        headers = self._base_headers(state)
        tokens = self._server_tokens(state)
        ua = _header(list(ex.head.raw_headers), b"user-agent")
        version = tuple(int(x) for x in ex.head.http_version.split("."))
        padding = responses.msie_padding_applies(status, ua, http_version=version)  # type: ignore[arg-type]
        body = responses.error_page_body(status, tokens, product=self.product,
                                         version=self.version, msie_padding=padding)
        if status == 204:
            pass
        elif body is not None:
            headers.append((b"Content-Type", responses.ERROR_CONTENT_TYPE))
            headers.append((b"Content-Length", str(len(body)).encode()))
        elif status < 400 and state is not None:
            headers.append((b"Content-Type", self._content_type(state, state.uri)))
            headers.append((b"Content-Length", b"0"))
        else:
            headers.append((b"Content-Length", b"0"))
        if location is not None:
            headers.append((b"Location", self._absolute(state, location).encode("latin-1")))
        for name, value in extra or ():
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
        headers = self._finish_headers(state, status, headers, run)
        close = status in CLOSE_AFTER
        await self._emit(ex, state, responses.wire_status(status), headers, body or b"", run,
                         close=close)

    def _absolute(self, state: RequestState | None, location: str) -> str:
        if state is None or not location.startswith("/"):
            return location
        absolute = state.effective(lambda s: s.limits.absolute_redirect)
        if absolute is False:
            return location
        port_in = state.effective(lambda s: s.limits.port_in_redirect)
        name_in = state.effective(lambda s: s.limits.server_name_in_redirect)
        host = state.server_name() if name_in else state.var("host")
        req = state.req
        return responses.absolute_location(location, req.scheme, host or req.local_addr,
                                           req.local_port, absolute_redirect=True,
                                           port_in_redirect=port_in is not False)

    async def _emit(self, ex: Exchange, state: RequestState | None, status: int,
                    headers: list[tuple[bytes, bytes]], body: bytes, run: _Run, *,
                    close: bool = False) -> None:
        if status != 444:
            self._expect(ex, state)  # the body is discarded: ngx_http_discard_request_body
        run.status = status
        run.sent_headers = headers
        head_only = ex.head.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        if head_only or not body:
            ex.send_headers(status, headers, end_stream=True, close=close)
        else:
            run.body_bytes = len(body)
            ex.send_response(status, headers, body, close=close)

    async def _send_autoindex(self, ex: Exchange, state: RequestState, directory: str,
                              run: _Run) -> None:
        """ngx_http_autoindex_module's listing: HTML, or json/jsonp/xml (``proxy.autoindex``)."""
        exact = "".join(_raw_args(state, "autoindex_exact_size")[:1]).lower() != "off"
        # autoindex_localtime on: the mtime shifted by the current UTC offset (nginx's gmtoff)
        local = "".join(_raw_args(state, "autoindex_localtime")[:1]).lower() == "on"
        shift = time.localtime().tm_gmtoff if local else 0
        fmt = "".join(_raw_args(state, "autoindex_format")[:1]).lower() or "html"
        callback = ""
        if fmt == "jsonp":
            try:
                callback = autoindex.callback_name(state.lookup("arg_callback"))
            except autoindex.CallbackError:
                await self._send_error(ex, state, 400, run)
                return
            if not callback:
                fmt = "json"
        try:
            names = [n for n in os.listdir(directory) if not n.startswith(".")]
        except OSError:
            await self._send_error(ex, state, 403, run)
            return
        entries = []
        for name in names:
            try:
                st = os.stat(os.path.join(directory, name))
            except OSError:
                continue
            is_dir = os.path.isdir(os.path.join(directory, name))
            entries.append((not is_dir, name.encode("utf-8", "surrogateescape"), is_dir, st))
        entries.sort(key=lambda e: (e[0], e[1]))
        if fmt in autoindex.CONTENT_TYPES:
            listed = [(raw, is_dir, st) for _, raw, is_dir, st in entries]
            body = (autoindex.xml_listing(listed) if fmt == "xml"
                    else autoindex.json_listing(listed, callback))
            content_type = autoindex.CONTENT_TYPES[fmt]
        else:
            body = self._html_listing(state, entries, exact, shift)
            content_type = b"text/html"
        headers = self._base_headers(state)
        headers.append((b"Content-Type", content_type))
        run.status = 200
        headers = self._finish_headers(state, 200, headers, run)
        run.sent_headers = headers
        if ex.head.method == b"HEAD":
            ex.send_headers(200, headers, end_stream=True)
            return
        ex.send_headers(200, headers)
        ex.send_data(body)
        run.body_bytes = len(body)
        ex.end()

    @staticmethod
    def _html_listing(state: RequestState,
                      entries: list[tuple[bool, bytes, bool, os.stat_result]], exact: bool,
                      shift: int) -> bytes:
        title = _html_escape(state.uri)
        lines = [b"<html>", b"<head><title>Index of " + title + b"</title></head>", b"<body>",
                 b"<h1>Index of " + title + b'</h1><hr><pre><a href="../">../</a>']
        for _, raw, is_dir, st in entries:
            name = raw.decode("utf-8", "surrogateescape")
            href = _uri_component(raw) + (b"/" if is_dir else b"")
            shown = name + ("/" if is_dir else "")
            if len(shown) > 50:
                shown = shown[:47] + "..>"
            pad = b" " * (51 - len(shown))
            when = time.strftime("%d-%b-%Y %H:%M",
                                 time.gmtime(int(st.st_mtime) + shift)).encode()
            if exact:
                size = (b"-" if is_dir else str(st.st_size).encode()).rjust(20)
            else:
                size = b" " + (b"      -" if is_dir else _human_size(st.st_size))
            lines.append(b'<a href="' + href + b'">' + _html_escape(shown) + b"</a>" + pad
                         + when + size)
        lines += [b"</pre><hr></body>", b"</html>", b""]
        return b"\r\n".join(lines)

    async def _send_file(self, ex: Exchange, state: RequestState, path: str, run: _Run,
                         override: int | None) -> None:
        mode = "".join(_raw_args(state, "gzip_static")[:1]).lower()
        variant = gzipfilter.static_variant(
            mode, state, path, ex.head.raw_headers, ex.head.http_version) if mode else None
        if isinstance(variant, int):
            await self._send_error(ex, state, variant, run)
            return
        gz = False
        if variant is not None:
            path, gz, vary = variant
            if vary:  # gzip_vary: on the wire only, as the gzip filter writes it
                ex = gzipfilter.with_vary(ex, subfilter.inner_of(addition.inner_of(ex)))
        try:
            fh = open(path, "rb")
        except OSError as exc:
            import errno

            code = 403 if exc.errno in (errno.EACCES, errno.EPERM) else 404
            await self._send_error(ex, state, code, run)
            return
        with fh:
            st = os.fstat(fh.fileno())
            status = override or 200
            headers = self._base_headers(state)
            headers.append((b"Content-Type", self._content_type(state, state.uri)))
            headers.append((b"Content-Length", str(st.st_size).encode()))
            if status in (200, 206, 304):  # ngx_http_header_filter drops it for others
                headers.append((b"Last-Modified", responses.http_date(st.st_mtime)))
            etag_on = state.effective(lambda s: s.static.etag)
            etag = f'"{int(st.st_mtime):x}-{st.st_size:x}"'.encode()
            if etag_on is not False:
                headers.append((b"ETag", etag))
            if gz:
                # gzip_static: the .gz file as it is; no ranges (nginx does not allow them)
                headers.append((b"Content-Encoding", b"gzip"))
            cond = 200 if status != 200 else ranges.conditional(
                state.req.headers, etag if etag_on is not False else None, int(st.st_mtime),
                "".join(_raw_args(state, "if_modified_since")[:1]).lower() or "exact")
            if cond == 412:
                await self._send_error(ex, state, 412, run)
                return
            if cond == 304:
                # ngx_http_not_modified_filter: no body, no Content-Type (nor gzip_static's
                # Content-Encoding)
                headers = [h for h in headers if h[0] not in (b"Content-Length",
                                                              b"Content-Type",
                                                              b"Content-Encoding")]
                headers = self._finish_headers(state, 304, headers, run)
                await self._emit(ex, state, 304, headers, b"", run)
                return
            filtered = len(headers)
            headers = self._finish_headers(state, status, headers, run)
            # the range filter runs after add_header/expires, on a 200 only
            max_ranges = _raw_size(state, "max_ranges", -1)
            bare = addition.inner_of(ex)
            spans = None if status != 200 or max_ranges == 0 or gz or addition.filters(
                ex, status, headers) or subfilter.filters(
                bare, status, headers) or gzipfilter.compresses(
                subfilter.inner_of(bare), status, headers) else ranges.byte_ranges(
                state.req.headers.get("range"), state.req.headers.get("if-range"),
                etag if etag_on is not False else None, int(st.st_mtime), st.st_size,
                None if max_ranges < 0 else max_ranges)
            pieces: list[tuple[bytes, int, int]] = [(b"", 0, st.st_size)]
            tail = b""
            if spans == []:
                # 416 special response: what add_header/expires added for the 200 stays
                extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in
                         headers[filtered:]] + [("Content-Range", f"bytes */{st.st_size}")]
                await self._send_error(ex, state, 416, run, extra=extra)
                return
            if spans is None:
                if status == 200 and max_ranges != 0 and not gz:
                    headers.append((b"Accept-Ranges", b"bytes"))
            elif len(spans) == 1:
                status = 206
                start, end = spans[0]
                pieces = [(b"", start, end)]
                headers = [(k, str(end - start).encode()) if k == b"Content-Length" else (k, v)
                           for k, v in headers]
                headers.append((b"Content-Range",
                                f"bytes {start}-{end - 1}/{st.st_size}".encode()))
            else:
                status = 206
                boundary = ranges.next_boundary()
                ctype = _header(headers, b"content-type") or b""
                heads, tail = ranges.multipart_parts(spans, st.st_size, ctype, boundary)
                pieces = [(h, a, b) for h, (a, b) in zip(heads, spans, strict=True)]
                length = sum(len(h) + b - a for h, a, b in pieces) + len(tail)
                mp = b"multipart/byteranges; boundary=" + boundary
                headers = [(k, mp) if k == b"Content-Type" else
                           (k, str(length).encode()) if k == b"Content-Length" else (k, v)
                           for k, v in headers]
            run.status = status
            run.sent_headers = headers
            self._expect(ex, state)
            if ex.head.method == b"HEAD" or st.st_size == 0:
                ex.send_headers(status, headers, end_stream=True)
                return
            ex.send_headers(status, headers)
            for head, start, end in pieces:
                if head:
                    ex.send_data(head)
                    run.body_bytes += len(head)
                fh.seek(start)
                left = end - start
                while left > 0:
                    chunk = fh.read(min(65536, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    ex.send_data(chunk)
                    run.body_bytes += len(chunk)
                    await ex.drain()
            if tail:
                ex.send_data(tail)
                run.body_bytes += len(tail)
            ex.end()

    # -- proxy ----------------------------------------------------------------------------------

    def _group_for(self, pp: ProxyPass, state: RequestState, run: _Run
                   ) -> tuple[PeerGroup | None, str]:
        """The peer group for a proxy_pass and the URL's host part (for $proxy_host)."""
        if pp.has_variables:
            url = state.eval(pp.url)
            rest = url.split("://", 1)[1] if "://" in url else url
            hostport = rest.split("/", 1)[0]
            name = hostport
            if name in self.groups:
                return self.groups[name], name
            host, _, port_s = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
            if not port_s.isdigit():
                host, port_s = hostport, ""
            port = int(port_s) if port_s else (443 if url.startswith("https") else 80)
            if not _is_ip(host):
                # a name: nginx asks the `resolver` (none configured: 502)
                args = state.effective(lambda s: s.resolver)
                if not args:
                    return None, hostport
                dns = run.dns
                if dns is not None and dns[1] == host and dns[2] is not None:
                    addrs = dns[2]
                else:
                    res = self._resolver_for(args, state)  # type: ignore[arg-type]
                    cached = res.cached(host)
                    if cached is None:
                        run.dns = (res, host, None)
                        return _DNS_PENDING, hostport
                    addrs = cached
                # a fresh group per request, as nginx's ngx_http_upstream_create_round_robin_peer
                return PeerGroup.implicit(host, port, resolver=lambda _h: addrs), hostport
            key = (host, port)
            grp = self._literal_groups.get(key)
            if grp is None:
                grp = self._literal_groups[key] = PeerGroup.implicit(host, port)
            return grp, hostport
        if pp.port is None and pp.host in self.groups:
            return self.groups[pp.host], pp.host
        port = pp.port or (443 if pp.scheme == "https" else 80)
        key = (pp.host, port)
        grp = self._literal_groups.get(key)
        if grp is None:
            grp = self._literal_groups[key] = PeerGroup.implicit(pp.host, port)
        hostport = pp.host if pp.port is None else f"{pp.host}:{pp.port}"
        return grp, hostport

    def _upstream_headers(self, state: RequestState, pconf: _ProxyEff, proxy_host: str,
                          body_len: int | None, *, chunked: bool = False
                          ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        overridden = pconf.overridden
        for _low, name, tpl, const in pconf.set_plan:
            if const is None:
                value = state.eval(tpl)  # type: ignore[arg-type]
                if value == "":
                    continue
                out.append((name, value.encode("latin-1", errors="replace")))
            elif const:
                out.append((name, const))
        # ngx_http_proxy_init_headers: proxy_set_header entries first, then the defaults
        # they do not override (Host, Connection, Content-Length...), then the client's
        if "host" not in overridden:
            out.append((b"Host", proxy_host.encode("latin-1")))
        if "connection" not in overridden:
            out.append((b"Connection", b"close"))
        if body_len is not None:
            out.append((b"Content-Length", str(body_len).encode()))
        elif chunked:
            out.append((b"Transfer-Encoding", b"chunked"))
        if pconf.pass_request_headers:
            lower = _LOWER_NAMES
            for name, value in state_raw_headers(state):
                low = lower.get(name)
                if low is None:
                    low = name.decode("latin-1").lower()
                    if len(lower) < 4096:
                        lower[name] = low
                if low in overridden or low in PROXY_DROP:
                    continue
                out.append((name, value))
        return out

    @staticmethod
    def _expect(ex: Exchange, state: RequestState | None) -> None:
        """ngx_http_test_expect: the first time the body is read or discarded, an HTTP/1.1
        ``Expect: 100-continue`` gets an interim ``100 Continue`` (even with no body)."""
        if state is None or state.expect_tested:
            return
        state.expect_tested = True
        head = ex.head
        if head.http_version != "1.1":
            return
        for k, v in head.raw_headers:
            if k.lower() == b"expect":
                if v.strip().lower() == b"100-continue":
                    ex.send_continue()
                return

    async def _read_body(self, ex: Exchange, state: RequestState) -> bytes | None:
        """Read the whole request body (proxy_request_buffering on), enforcing the size limit."""
        self._expect(ex, state)
        head = ex.head
        if head.end_stream:
            # $proxy_internal_body_length: a declared "Content-Length: 0" is passed on
            return b"" if head.content_length is not None else None
        limit = state.effective(lambda s: s.limits.client_max_body_size)
        limit = 1024 * 1024 if limit is None else limit
        parts: list[bytes] = []
        total = 0
        try:
            async for piece in ex.body():
                total += len(piece)
                if limit and total > limit:  # type: ignore[operator]
                    raise _BodyTooLarge()
                parts.append(piece)
        except ClientBodyInvalid:
            raise
        except ConnectionError as exc:
            raise _ClientGone.reading_body(exc) from None
        if head.content_length is None and not head.chunked and total == 0:
            return None
        return b"".join(parts)

    async def _stream_body(self, ex: Exchange, state: RequestState) -> AsyncIterator[bytes]:
        """The request body as it arrives (proxy_request_buffering off), size-limited."""
        self._expect(ex, state)
        limit = state.effective(lambda s: s.limits.client_max_body_size)
        limit = 1024 * 1024 if limit is None else limit
        total = 0
        try:
            async for piece in ex.body():
                total += len(piece)
                if limit and total > limit:  # type: ignore[operator]
                    raise _BodyTooLarge()
                yield piece
        except ClientBodyInvalid:
            raise
        except ConnectionError as exc:
            raise _ClientGone.reading_body(exc) from None

    def _proxy_error(self, result: RouteResult, status: int) -> RouteResult:
        """A status nginx makes itself while proxying (502, 504, 413): like any special
        response, error_page applies to it."""
        return self.interp.after_upstream_error(result, status)

    def _proxy_target(self, result: RouteResult, state: RequestState, run: _Run
                      ) -> tuple[ProxyPass, _ProxyEff, PeerGroup, str] | RouteResult:
        """The proxy_pass, its settings and peer group (or the error result: 502)."""
        pp = _proxy_pass_of(state)
        assert pp is not None
        pconf = _ProxyEff.of(state)
        group, hostport = self._group_for(pp, state, run)
        run.proxy_host = hostport
        run.proxy_port = hostport.rsplit(":", 1)[1] if ":" in hostport else (
            "443" if pp.scheme == "https" else "80")
        if group is _DNS_PENDING:
            return result  # a name to resolve first: the general path awaits it (_proxy)
        if group is None:
            return self._proxy_error(result, 502)
        return pp, pconf, group, hostport

    def _resolver_for(self, args: tuple[str, ...], state: RequestState) -> Resolver:
        """The worker's resolver for one ``resolver`` directive (and resolver_timeout)."""
        timeout = "".join(_raw_args(state, "resolver_timeout")[:1])
        key = (args, timeout)
        res = self._resolvers.get(key)
        if res is None:
            res = self._resolvers[key] = resolver_from_args(
                args, parse_time(timeout) if timeout else None)
        return res

    async def _resolve(self, result: RouteResult, run: _Run) -> RouteResult | None:
        """Resolve the name ``_group_for`` left pending; None when done, else the 502 result."""
        dns = run.dns
        assert dns is not None
        res, host = dns[0], dns[1]
        try:
            addrs = await res.resolve(host)  # type: ignore[attr-defined]
        except ResolveError as exc:
            import logging

            logging.getLogger("tern").error("%s", exc)
            run.dns = None
            return self._proxy_error(result, 502)
        run.dns = (res, host, addrs)
        return None

    def _body_now(self, ex: Exchange, state: RequestState, pconf: _ProxyEff) -> bytes | None:
        """The request body when no read is needed: read before, or none on the wire."""
        if state.body_read:
            body = state.request_body
        else:
            # no body: what _read_body does for it, without a coroutine
            self._expect(ex, state)
            body = b"" if ex.head.content_length is not None else None
            state.body_read, state.request_body = True, body
        if not pconf.pass_request_body:
            body = None
        return body

    async def _proxy(self, ex: Exchange, result: RouteResult, state: RequestState,
                     run: _Run, resume: _ProxyResume | None = None) -> RouteResult | None:
        if resume is not None:
            assert resume.plan is not None
            return await self._proxy_loop(ex, result, state, run, resume.plan, resume)
        target = self._proxy_target(result, state, run)
        if target is result:  # a proxy_pass name to resolve first
            failed = await self._resolve(result, run)
            if failed is not None:
                return failed
            target = self._proxy_target(result, state, run)
        if isinstance(target, RouteResult):
            return target
        pp, pconf, group, hostport = target
        method = state.method
        if pconf.method is not None:
            method = state.eval(pconf.method)
        version = pconf.http_version
        stream: AsyncIterator[bytes] | None = None
        body_len: int | None = None
        chunked_up = False
        head = ex.head
        if (not state.body_read and not pconf.request_buffering and pconf.pass_request_body
                and pconf.set_body is None and not head.end_stream and not ex.body_complete()
                and not (head.chunked and version == "1.0")):
            # proxy_request_buffering off, body still arriving: stream it (a chunked one as
            # chunked, to an HTTP/1.1 upstream only; nginx buffers it for HTTP/1.0)
            stream = self._stream_body(ex, state)
            state.body_read = True
            body = None
            chunked_up = head.chunked
            body_len = None if chunked_up else head.content_length
        else:
            try:
                if state.body_read or head.end_stream:
                    body = self._body_now(ex, state, pconf)
                else:
                    body = await self._read_body(ex, state)
                    state.body_read, state.request_body = True, body
                    if not pconf.pass_request_body:
                        body = None
            except _BodyTooLarge:
                return self._proxy_error(result, 413)
            if pconf.set_body is not None:
                body = state.eval(pconf.set_body).encode("utf-8")
            body_len = len(body) if body is not None else None
        plan = self._proxy_plan(ex, state, pp, pconf, group, hostport, method, version, body,
                                body_len, stream, chunked_up)
        return await self._proxy_loop(ex, result, state, run, plan, None)

    def _proxy_plan(self, ex: Exchange, state: RequestState, pp: ProxyPass, pconf: _ProxyEff,
                    group: PeerGroup, hostport: str, method: str, version: str,
                    body: bytes | None, body_len: int | None,
                    stream: AsyncIterator[bytes] | None, chunked_up: bool) -> _ProxyPlan:
        """Everything the upstream attempts share: the request head, keep-alive, retry rules
        and the balancer's attempt."""
        uri = self.interp.upstream_uri(state, pp) or "/"
        headers = self._upstream_headers(state, pconf, hostport, body_len, chunked=chunked_up)
        conn_close = False
        parts = [f"{method} {uri} HTTP/{version}\r\n".encode("latin-1")]
        for k, v in headers:
            parts += (k, b": ", v, b"\r\n")
            if len(k) == 10 and len(v) == 5 and k.lower() == b"connection" and \
                    v.lower() == b"close":
                conn_close = True
        parts.append(b"\r\n")
        head_bytes = b"".join(parts)
        upgrade = ex.head.upgrade is not None and version == "1.1"
        keepalive = 0
        if pp.host in self.upstreams and not pp.has_variables:
            keepalive = self.upstreams[pp.host].keepalive or 0
        reuse = keepalive > 0 and version == "1.1" and not conn_close and stream is None
        deadline = (time.monotonic() + pconf.next_upstream_timeout
                    if pconf.next_upstream_timeout else None)
        non_idempotent_ok = method in IDEMPOTENT or "non_idempotent" in pconf.next_upstream
        if stream is not None:
            non_idempotent_ok = False  # a streamed body cannot be sent again
        hash_key = None
        up = self.upstreams.get(pp.host)
        if up is not None and up.hash_key is not None:
            hash_key = state.eval(up.hash_key)
        attempt = group.begin(client_addr=state.req.remote_addr, hash_key=hash_key,
                              max_tries=pconf.next_upstream_tries)
        return _ProxyPlan(pp, pconf, group, hostport, method, body, stream, chunked_up,
                          head_bytes, upgrade, keepalive, reuse, deadline, non_idempotent_ok,
                          attempt)

    async def _proxy_loop(self, ex: Exchange, result: RouteResult, state: RequestState,
                          run: _Run, plan: _ProxyPlan, resume: _ProxyResume | None
                          ) -> RouteResult | None:
        """The upstream attempts (proxy_next_upstream), then the relay of the answer.

        ``resume``: the first attempt as ``FastProxy`` left it (peer chosen; maybe a pooled
        connection with the request written)."""
        pp, pconf, group, hostport = plan.pp, plan.pconf, plan.group, plan.hostport
        method, body, stream, chunked_up = plan.method, plan.body, plan.stream, plan.chunked_up
        head_bytes, keepalive, reuse = plan.head_bytes, plan.keepalive, plan.reuse
        deadline, non_idempotent_ok, attempt = (plan.deadline, plan.non_idempotent_ok,
                                                plan.attempt)
        upgrade = plan.upgrade
        last_error = 502
        tls = None
        if pp.scheme == "https":  # upstream TLS (proxy_ssl_*: proxy.io.upstream_tls)
            try:
                tls = upstream_tls.settings_of(state, run.proxy_host)
            except (OSError, ValueError):
                return self._proxy_error(result, 502)
        while True:
            if resume is not None:
                peer = resume.peer
            else:
                peer = attempt.next(time.monotonic())
            if peer is None:
                # "no live upstreams" (NGX_BUSY): one more $upstream_* entry, named after the
                # group, status 502
                run.upstream_addr.append(group.name or hostport)
                run.upstream_status.append("502")
                run.upstream_time.append("0.000")
                return self._proxy_error(result, 502)
            run.upstream_addr.append(peer.address)
            t0 = time.monotonic() if resume is None else resume.t0
            conn: UpstreamConnection | None = None
            sent = False
            first, resume = resume, None
            try:
                if first is not None and first.conn is not None:
                    conn = first.conn
                else:
                    conn = await self.pool.acquire(peer.host, peer.port,
                                                   connect_timeout=pconf.connect_timeout,
                                                   reuse=reuse, tls=tls)
                sent = True
                try:
                    if first is not None and first.conn is not None:
                        # the request went out on a pooled connection (FastProxy)
                        if first.error is not None:
                            raise first.error
                        resp = await conn.finish_request(send_timeout=pconf.send_timeout,
                                                         read_timeout=first.read_timeout)
                    else:
                        resp = await conn.request(head_bytes, body,
                                                  send_timeout=pconf.send_timeout,
                                                  read_timeout=pconf.read_timeout,
                                                  head_method=method == "HEAD", stream=stream,
                                                  chunked=chunked_up)
                except UpstreamError as exc:
                    if conn.reused and not conn.got_bytes and not exc.timeout and stream is None:
                        # a cached connection the server had closed: retry once, fresh
                        conn = await self.pool.acquire(peer.host, peer.port,
                                                       connect_timeout=pconf.connect_timeout,
                                                       reuse=False, tls=tls)
                        resp = await conn.request(head_bytes, body,
                                                  send_timeout=pconf.send_timeout,
                                                  read_timeout=pconf.read_timeout,
                                                  head_method=method == "HEAD")
                    else:
                        raise
            except (_ClientGone, _BodyTooLarge) as exc:
                # the client went away, or overran client_max_body_size, while its body was
                # streamed upstream
                if conn is not None:
                    conn.abort()
                attempt.success(time.monotonic())
                if isinstance(exc, _ClientGone):
                    raise
                return self._proxy_error(result, 413)
            except UpstreamError as exc:
                attempt.failure(time.monotonic())
                run.upstream_status.append("504" if exc.timeout else "502")
                run.upstream_time.append(f"{time.monotonic() - t0:.3f}")
                kind = "timeout" if exc.timeout else "error"
                last_error = 504 if exc.timeout else 502
                if (kind in pconf.next_upstream and attempt.tries_left > 0
                        and (deadline is None or time.monotonic() < deadline)
                        and (non_idempotent_ok or not sent or exc.phase == "connect")):
                    continue
                return self._proxy_error(result, last_error)
            if _head_size(resp) > pconf.buffer_size:
                # "upstream sent too big header": the head must fit in proxy_buffer_size
                conn.abort()
                attempt.failure(time.monotonic())
                run.upstream_status.append("502")
                run.upstream_time.append(f"{time.monotonic() - t0:.3f}")
                last_error = 502
                if ("invalid_header" in pconf.next_upstream and attempt.tries_left > 0
                        and (deadline is None or time.monotonic() < deadline)
                        and non_idempotent_ok):
                    continue
                return self._proxy_error(result, 502)
            status = resp.status
            run.upstream_status.append(str(status))
            run.upstream_time.append(f"{time.monotonic() - t0:.3f}")
            run.upstream_headers = resp.headers
            # ngx_http_upstream_test_next: retry on a listed status while tries remain
            if (status in pconf.next_statuses and attempt.tries_left > 1
                    and non_idempotent_ok
                    and (deadline is None or time.monotonic() < deadline)):
                conn.abort()
                if status in (403, 404):
                    attempt.success(time.monotonic())
                else:
                    attempt.failure(time.monotonic())
                continue
            accel = _header(resp.headers, b"x-accel-redirect")
            if accel is not None and not pconf.ignore_accel_redirect:
                # ngx_http_upstream_process_headers: an internal redirect; the headers marked
                # "redirect" in ngx_http_upstream_headers_in survive it
                attempt.success(time.monotonic())
                conn.abort()
                state.carried_headers = [(k, v) for k, v in resp.headers
                                         if k.lower() in ACCEL_KEEP]
                return self.interp.accel_redirect(result, accel.decode("latin-1"))
            if pconf.intercept_errors and status >= 300 and _has_error_page(state, status):
                attempt.success(time.monotonic())
                conn.abort()
                return self.interp.after_upstream_error(result, status)
            try:
                await self._relay(ex, state, result, conn, resp, pconf, pp, run, keepalive,
                                  upgrade)
            finally:
                attempt.success(time.monotonic())
            return None

    async def _relay(self, ex: Exchange, state: RequestState, result: RouteResult,
                     conn: UpstreamConnection, resp: object, pconf: _ProxyEff, pp: ProxyPass,
                     run: _Run, keepalive: int, upgrade: bool) -> None:
        assert isinstance(resp, UpstreamResponse)
        status, headers, reason, is_upgrade, no_body = self._relay_head(
            ex, state, result, resp, pconf, pp, run, upgrade)
        if is_upgrade:
            ex.send_headers(101, headers, reason=reason)
            fut = ex.tunnel(conn)
            if fut is not None:
                await fut
            return
        if no_body:
            ex.send_headers(status, headers, end_stream=True, reason=reason)
            self.pool.release(conn, keepalive)
            return
        data, complete = conn.take_buffered()
        throttle = ratelimit.upstream_throttle(state, resp.headers, pconf.buffer_size - _head_size(
            resp)) if run.pacer is not None else None  # proxy_limit_rate
        if complete and throttle is None:
            # the whole body is here already (small responses): one write for all of it
            run.body_bytes += len(data)
            self.pool.release(conn, keepalive)
            ex.send_response(status, headers, data, reason=reason)
            await ex.drain()
            return
        ex.send_headers(status, headers, reason=reason)
        try:
            if throttle is not None:
                await ratelimit.relay(throttle, ex, data, (lambda: _no_more()) if complete else (
                    lambda: conn.read_body(pconf.read_timeout)), run)
                data = b""
                complete = True
            if data:
                ex.send_data(data)
                run.body_bytes += len(data)
                await ex.drain()
            while not complete:
                data = await conn.read_body(pconf.read_timeout)
                if data is None:
                    break
                ex.send_data(data)
                run.body_bytes += len(data)
                await ex.drain()
        except UpstreamError:
            # the client already has the head: nginx closes the connection
            ex.abort()
            conn.abort()
            return
        ex.end()
        self.pool.release(conn, keepalive)

    def _relay_head(self, ex: Exchange, state: RequestState, result: RouteResult,
                    resp: UpstreamResponse, pconf: _ProxyEff, pp: ProxyPass, run: _Run,
                    upgrade: bool
                    ) -> tuple[int, list[tuple[bytes, bytes]], bytes | None, bool, bool]:
        """The response head sent for an upstream's answer: status, headers (hidden ones
        dropped, Server/Date, proxy_redirect, the header filter), reason; whether it is an
        upgrade and whether it has no body."""
        status = result.override_status or resp.status
        hide = pconf.hide_all
        headers = self._base_headers(state)
        # nginx's own headers first; upstream's Server/Date are hidden by default and when
        # passed (proxy_pass_header) they replace nginx's
        passed: list[tuple[bytes, bytes]] = []
        lower = _LOWER_BYTES
        for name, value in resp.headers:
            low = lower.get(name)
            if low is None:
                low = name.lower()
                if len(lower) < 4096:
                    lower[name] = low
            if low in HOP_BY_HOP or low in hide:
                if low in (b"server", b"date") and low in pconf.pass_:
                    pass
                else:
                    continue
            if low in (b"server", b"date"):
                headers = [h for h in headers if h[0].lower() != low]
                headers.insert(0 if low == b"server" else min(1, len(headers)), (name, value))
                continue
            if low == b"location" and value:
                # ngx_http_upstream_rewrite_location: a Location that proxy_redirect rewrote
                # becomes nginx's own (made absolute by the header filter); others pass as sent
                new = self._rewrite_redirect(state, pconf, pp, value, 0)
                if new is not None:
                    value = self._absolute(state, new.decode("latin-1")).encode("latin-1")
            elif low == b"refresh":
                at = value.lower().find(b"url=")
                if at >= 0:
                    new = self._rewrite_redirect(state, pconf, pp, value, at + 4)
                    if new is not None:
                        value = new
            elif low == b"set-cookie":
                crules = cookies.rules_of(state)
                if crules is not None:
                    value = cookies.rewrite(crules, state, value)
            if status == 204 and low in _NO_CONTENT_DROP:
                # ngx_http_header_filter: a 204 loses its type, length and Last-Modified
                continue
            if low == b"content-type" and not value.strip():
                # an empty type is no type: the header filter writes none (nor default_type)
                continue
            passed.append((name, value))
        headers.extend(passed)
        is_upgrade = resp.status == 101 and upgrade
        if is_upgrade:
            headers.append((b"Upgrade", _header(resp.headers, b"upgrade") or b"websocket"))
            headers.append((b"Connection", b"upgrade"))
        if run.pacer is not None:  # X-Accel-Limit-Rate, before add_header sees $limit_rate
            ratelimit.accel(run.pacer, state, resp.headers, "proxy")
        headers = self._finish_headers(state, status, headers, run,
                                       _accel_charset(state, resp.headers, "proxy"))
        run.status = status
        run.sent_headers = headers
        reason = resp.reason if status == resp.status else None
        no_body = ex.head.method == b"HEAD" or status in (204, 304)
        return status, headers, reason, is_upgrade, no_body

    def _rewrite_redirect(self, state: RequestState, pconf: _ProxyEff, pp: ProxyPass,
                          value: bytes, prefix: int) -> bytes | None:
        """proxy_redirect on ``value[prefix:]`` (ngx_http_proxy_rewrite_redirect): the first rule
        that applies rewrites it; None when none applies (or ``off``)."""
        text = value.decode("latin-1")
        head, rest = text[:prefix], text[prefix:]
        for rule in pconf.redirects:
            if rule.mode == "off":
                return None
            if rule.mode == "default":
                loc = state.location
                if loc is None or pp.has_variables:
                    continue
                pattern = pp.url.raw if pp.uri is not None else pp.url.raw + "/"
                replacement = loc.pattern if pp.uri is not None else "/"
                if rest.startswith(pattern):
                    return (head + replacement + rest[len(pattern):]).encode("latin-1")
                continue
            pattern = rule.pattern
            if pattern.startswith("~"):
                from .regex import compile_pcre

                ci = pattern.startswith("~*")
                rx = compile_pcre(pattern[2:] if ci else pattern[1:], ci)
                mt = rx.search(rest)
                if not mt:
                    continue
                # the whole value after the prefix is replaced; $1... are the regex's captures
                saved = state.captures
                state.captures = {**saved, **_regex_caps(mt)}
                try:
                    repl = state.eval(rule.replacement) if rule.replacement is not None else ""
                finally:
                    state.captures = saved
                return (head + repl).encode("latin-1")
            if rest.startswith(pattern):
                repl = state.eval(rule.replacement) if rule.replacement is not None else ""
                return (head + repl + rest[len(pattern):]).encode("latin-1")
        return None


class _ClientGone(Exception):
    """The client closed the connection (``status``: what the access log says, 0 = 499)."""

    def __init__(self, status: int = 0) -> None:
        super().__init__(status)
        self.status = status

    @classmethod
    def reading_body(cls, exc: ConnectionError) -> _ClientGone:
        return cls(408 if isinstance(exc, ClientBodyTimeout) else 400)


class ClientBodyTimeout(ConnectionError):
    """``client_body_timeout`` expired while the request body was read (raised by the I/O
    layer's ``Exchange.body``)."""


class ClientBodyInvalid(ConnectionError):
    """The request body broke the protocol while being read (bad chunked encoding...): nginx
    answers with ``status`` (400) and closes. Raised by the I/O layer's ``Exchange.body``."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _BodyTooLarge(Exception):
    """The request body exceeded client_max_body_size while being read."""


@dataclass(slots=True)
class _ProxyEff:
    """Proxy settings after inheritance (each directive from the innermost level setting it)."""

    set_headers: tuple[HeaderValue, ...]
    hide: frozenset[bytes]
    pass_: frozenset[bytes]
    http_version: str
    redirects: tuple[object, ...]
    connect_timeout: float
    read_timeout: float
    send_timeout: float
    next_upstream: frozenset[str]
    next_upstream_tries: int
    next_upstream_timeout: float
    intercept_errors: bool
    buffer_size: int
    ignore_accel_redirect: bool
    request_buffering: bool
    pass_request_headers: bool
    pass_request_body: bool
    method: object
    set_body: object
    hide_all: frozenset[bytes] = frozenset()
    """Upstream headers not passed: nginx's defaults and proxy_hide_header, minus
    proxy_pass_header."""
    set_plan: tuple[tuple[str, bytes, object, bytes | None], ...] = ()
    """proxy_set_header as (lower-case name, name, template, value if it has no variables);
    Content-Length entries left out (nginx makes that header itself)."""
    overridden: frozenset[str] = frozenset()
    """Lower-case names proxy_set_header sets (empty values included)."""
    next_statuses: frozenset[int] = frozenset()
    """The statuses ``proxy_next_upstream`` lists (``http_502``...)."""

    def __post_init__(self) -> None:
        self.next_statuses = frozenset(int(n[5:]) for n in self.next_upstream
                                       if n.startswith("http_") and n[5:].isdigit())
        self.hide_all = (DEFAULT_HIDE | self.hide) - self.pass_
        plan = []
        for h in self.set_headers:
            low = h.name.lower()
            if low == "content-length":
                continue
            const = None
            if all(isinstance(p, Lit) for p in h.value.parts):
                const = "".join(p.text for p in h.value.parts  # type: ignore[union-attr]
                                ).encode("latin-1", errors="replace")
            plan.append((low, h.name.encode("latin-1"), h.value, const))
        self.set_plan = tuple(plan)
        self.overridden = frozenset(h.name.lower() for h in self.set_headers)

    @classmethod
    def of(cls, state: RequestState) -> _ProxyEff:
        """The proxy settings in effect for the request's chain (computed once per chain)."""
        cache = state.interp.effective_cache
        key = (state.chain_key, "proxy")
        eff = cache.get(key)
        if eff is None:
            eff = cache[key] = cls._compute(state)
        return eff  # type: ignore[return-value]

    @classmethod
    def _compute(cls, state: RequestState) -> _ProxyEff:
        def g(getter: Callable[[ProxyConf], object], default: object) -> object:
            v = state.effective(lambda s: getter(s.proxy))
            return default if v is None else v

        redirects = g(lambda p: p.redirects, None)
        from .model import ProxyRedirect

        return cls(
            set_headers=g(lambda p: p.set_headers, ()),  # type: ignore[arg-type]
            hide=frozenset(h.lower().encode() for h in g(lambda p: p.hide_headers, ())),  # type: ignore[attr-defined]
            pass_=frozenset(h.lower().encode() for h in g(lambda p: p.pass_headers, ())),  # type: ignore[attr-defined]
            http_version=g(lambda p: p.http_version, "1.0"),  # type: ignore[arg-type]
            redirects=redirects if redirects is not None else (  # type: ignore[arg-type]
                ProxyRedirect(mode="default", source=NOWHERE),),
            connect_timeout=g(lambda p: p.connect_timeout, 60.0),  # type: ignore[arg-type]
            read_timeout=g(lambda p: p.read_timeout, 60.0),  # type: ignore[arg-type]
            send_timeout=g(lambda p: p.send_timeout, 60.0),  # type: ignore[arg-type]
            next_upstream=frozenset(g(lambda p: p.next_upstream, ("error", "timeout"))),  # type: ignore[arg-type]
            next_upstream_tries=g(lambda p: p.next_upstream_tries, 0),  # type: ignore[arg-type]
            next_upstream_timeout=g(lambda p: p.next_upstream_timeout, 0.0),  # type: ignore[arg-type]
            intercept_errors=bool(g(lambda p: p.intercept_errors, False)),
            buffer_size=_raw_size(state, "proxy_buffer_size", PAGE_SIZE),
            ignore_accel_redirect="x-accel-redirect" in (
                a.lower() for a in _raw_args(state, "proxy_ignore_headers")),
            request_buffering=bool(g(lambda p: p.request_buffering, True)),
            pass_request_headers=bool(g(lambda p: p.pass_request_headers, True)),
            pass_request_body=bool(g(lambda p: p.pass_request_body, True)),
            method=g(lambda p: p.method, None),
            set_body=g(lambda p: p.set_body, None),
        )




def _proxy_pass_of(state: RequestState) -> ProxyPass | None:
    pp = None
    for scope in state.scope_chain:
        if scope.proxy_pass is not None:
            pp = scope.proxy_pass
    return pp


def _regex_caps(mt: object) -> dict[str, str]:
    import re

    assert isinstance(mt, re.Match)
    caps = {k: v for k, v in mt.groupdict().items() if v is not None}
    caps["0"] = mt.group(0)
    for i, g in enumerate(mt.groups(), start=1):
        caps[str(i)] = g or ""
    return caps


def _head_size(resp: object) -> int:
    """Bytes of a response head as received (status line, header lines, empty line)."""
    assert isinstance(resp, UpstreamResponse)
    size = len(resp.reason) + 15  # "HTTP/1.x NNN " reason CRLF
    for k, v in resp.headers:
        size += len(k) + len(v) + 4
    return size + 2


async def _no_more() -> None:
    return None


def _raw_args(state: RequestState, name: str) -> tuple[str, ...]:
    """Arguments of a directive the model keeps as written (``proxy_buffer_size``,
    ``proxy_ignore_headers``), from the innermost level that has it."""
    for scope in reversed(state.scope_chain):
        for d in scope.other:
            if d.name == name:
                return d.args
    return ()


def _accel_charset(state: RequestState, headers: list[tuple[bytes, bytes]] | tuple[
        tuple[bytes, bytes], ...], module: str) -> bytes | None:
    """An upstream's X-Accel-Charset, unless ``proxy_ignore_headers`` (``fastcgi_...``)
    names it."""
    value = _header(list(headers), b"x-accel-charset")
    if value is None:
        return None
    if "x-accel-charset" in (a.lower() for a in _raw_args(state, module + "_ignore_headers")):
        return None
    return value


def _human_size(length: int) -> bytes:
    """autoindex_exact_size off: " %6i" bytes up to 9999, else "%6i" K, M or G, rounded half up
    (what is left over is compared with half the unit)."""
    for unit, scale in ((1 << 30, b"G"), (1 << 20, b"M")):
        if length > unit - 1:
            return b"%6d" % (length // unit + (length % unit > unit // 2 - 1)) + scale
    if length > 9999:
        return b"%6d" % (length // 1024 + (length % 1024 > 511)) + b"K"
    return b" %6d" % length


def _raw_size(state: RequestState, name: str, default: int) -> int:
    args = _raw_args(state, name)
    try:
        return parse_size(args[0]) if args else default
    except ValueError:
        return default


def _has_error_page(state: RequestState, status: int) -> bool:
    pages = state.effective(lambda s: s.error_pages)
    return bool(pages) and any(status in p.codes for p in pages)  # type: ignore[attr-defined]


_URI_COMPONENT_SAFE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*+,;=:@")


def _uri_component(raw: bytes) -> bytes:
    """Percent-encode a file name for an autoindex href (space, &, <, >, %, #, ?, non-ASCII...)."""
    return b"".join(bytes([b]) if b in _URI_COMPONENT_SAFE else b"%%%02X" % b for b in raw)


def _html_escape(text: str) -> bytes:
    # ngx_escape_html: the four characters, quote included
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").encode("utf-8", "surrogateescape"))


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def state_raw_headers(state: RequestState) -> tuple[tuple[bytes, bytes], ...]:
    """The client's header fields in order, as received."""
    return state.req.raw_headers


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _apply_expires(exp: Expires, headers: list[tuple[bytes, bytes]]) -> None:
    value = exp.value
    if value == "off":
        return
    now = time.time()
    drop = {b"expires", b"cache-control"}
    headers[:] = [h for h in headers if h[0].lower() not in drop]
    if value == "epoch":
        headers.append((b"Expires", b"Thu, 01 Jan 1970 00:00:01 GMT"))
        headers.append((b"Cache-Control", b"no-cache"))
        return
    if value == "max":
        headers.append((b"Expires", b"Thu, 31 Dec 2037 23:55:55 GMT"))
        headers.append((b"Cache-Control", b"max-age=315360000"))
        return
    modified_base = None
    if exp.modified:
        for k, v in headers:
            if k.lower() == b"last-modified":
                modified_base = v
    text = value
    if text.startswith("@"):
        # time of day: the next occurrence of that time (nginx: ngx_http_set_expires)
        secs = parse_time(text[1:])
        day = now - (now % 86400)
        expires_at = day + secs
        if expires_at <= now:
            expires_at += 86400
        max_age = int(expires_at - now)
    else:
        negative = text.startswith("-")
        secs = parse_time(text.lstrip("+-"))
        if negative:
            headers.append((b"Expires", responses.http_date(now - secs)))
            headers.append((b"Cache-Control", b"no-cache"))
            return
        base = now
        if modified_base is not None:
            from email.utils import parsedate_to_datetime

            try:
                base = parsedate_to_datetime(modified_base.decode()).timestamp()
            except (TypeError, ValueError):
                base = now
        expires_at = base + secs
        max_age = int(expires_at - now)
    headers.append((b"Expires", responses.http_date(expires_at)))
    if max_age < 0:
        headers.append((b"Cache-Control", b"no-cache"))
    else:
        headers.append((b"Cache-Control", f"max-age={max_age}".encode()))
