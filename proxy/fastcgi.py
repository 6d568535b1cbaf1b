"""FastCGI content handler (ngx_http_fastcgi_module): params, request, answer, for the engine.

Rules (each checked against nginx 1.22.1 in tests/compat/test_fastcgi_vs_nginx.py):

1. Params: the ``fastcgi_param`` entries of the innermost level that has any (nginx's array
   merge), in config order, each evaluated per request; ``if_not_empty`` ones with an empty value
   are left out. Then, with ``fastcgi_pass_request_headers on``, every request header in arrival
   order as ``HTTP_<NAME>`` (letters upper-cased, ``-`` as ``_``), duplicates as separate params,
   except headers a ``fastcgi_param HTTP_<NAME>`` names (even one left out by ``if_not_empty``);
   such a param written with an empty value is not sent at all (``HTTP_PROXY ""``).
2. The body is read whole first (``client_max_body_size``: 413) and sent as ``FCGI_STDIN``;
   with ``fastcgi_request_buffering off`` the params go first and the body follows as it
   arrives (no retry then). ``fastcgi_pass_request_body off`` sends an empty stdin. ``fastcgi_keep_conn on`` sets the
   KEEP_CONN flag; with an upstream ``keepalive N`` too, connections the app left open are kept
   (at most N idle per peer, ``keepalive_timeout``, ``keepalive_requests``) and reused.
3. ``$fastcgi_script_name`` / ``$fastcgi_path_info``: ``fastcgi_split_path_info``'s two captures
   on ``$uri`` when it matches, else ``$uri`` and ""; a script name ending in ``/`` gets
   ``fastcgi_index`` appended.
4. The answer: the CGI header block (``Status``, ``Location`` → 302) as
   :mod:`proxy.protocol.fastcgi` reads it; headers pass except ``Status`` and ``X-Accel-*``
   (and ``fastcgi_hide_header``, minus ``fastcgi_pass_header``); an app's ``Server`` and ``Date``
   replace nginx's; ``Location`` passes as sent. ``X-Accel-Redirect`` is an internal redirect
   unless ``fastcgi_ignore_headers`` names it.
   ``fastcgi_intercept_errors`` hands a status >= 300 that has an ``error_page`` to it.
5. Failures: connect/send/read errors 502, timeouts 504, protocol errors 502 (and stderr
   holding a ``fastcgi_catch_stderr`` string before the head is complete: an invalid header);
   ``fastcgi_next_upstream`` (default ``error timeout``) picks the next peer of an upstream group,
   not for POST/LOCK/PATCH once sent unless ``non_idempotent``. stderr goes to the error log.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .io.fastcgi import FastcgiConnection, FastcgiError
from .model import FastcgiConf, FastcgiParam, FastcgiPass, Lit, Upstream
from .protocol import fastcgi as fcgi
from .upstream.balancer import Peer, PeerGroup, UpstreamError

if TYPE_CHECKING:
    from .engine import Engine, Exchange, _Run
    from .interp import RequestState, RouteResult

log = logging.getLogger("tern")

DEFAULT_HIDE = frozenset({b"status", b"x-accel-expires", b"x-accel-redirect",
                          b"x-accel-limit-rate", b"x-accel-buffering", b"x-accel-charset"})
"""ngx_http_fastcgi_hide_headers."""
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
PAGE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class FastcgiEff:
    """FastCGI settings after inheritance (each from the innermost level setting it)."""

    params: tuple[FastcgiParam, ...]
    header_names: frozenset[str]
    """Request header names (upper case, ``_`` for ``-``) that a ``HTTP_*`` param replaces."""
    hide: frozenset[bytes]
    pass_: frozenset[bytes]
    connect_timeout: float
    read_timeout: float
    send_timeout: float
    next_upstream: frozenset[str]
    next_upstream_tries: int
    next_upstream_timeout: float
    intercept_errors: bool
    pass_request_headers: bool
    pass_request_body: bool
    keep_conn: bool
    buffer_size: int
    ignore_accel_redirect: bool
    """``fastcgi_ignore_headers X-Accel-Redirect``."""
    request_buffering: bool
    """``fastcgi_request_buffering`` (off: the body goes to the app as it arrives)."""
    catch_stderr: tuple[bytes, ...]
    """``fastcgi_catch_stderr`` strings (innermost level that has any)."""

    @classmethod
    def of(cls, state: RequestState) -> FastcgiEff:
        cache = state.interp.effective_cache
        key = (state.chain_key, "fastcgi")
        eff = cache.get(key)
        if eff is None:
            eff = cache[key] = cls._compute(state)
        assert isinstance(eff, FastcgiEff)
        return eff

    @classmethod
    def _compute(cls, state: RequestState) -> FastcgiEff:
        def g(getter: Callable[[FastcgiConf], object], default: object) -> object:
            v = state.effective(lambda s: getter(s.fastcgi))
            return default if v is None else v

        from .engine import _raw_args, _raw_size

        params: tuple[FastcgiParam, ...] = g(lambda c: c.params, ())  # type: ignore[assignment]
        hide: tuple[str, ...] = g(lambda c: c.hide_headers, ())  # type: ignore[assignment]
        pass_: tuple[str, ...] = g(lambda c: c.pass_headers, ())  # type: ignore[assignment]
        pass_set = frozenset(h.lower().encode("latin-1") for h in pass_)
        nu: tuple[str, ...] = g(lambda c: c.next_upstream, ("error", "timeout"))  # type: ignore[assignment]
        names = frozenset(p.name[5:] for p in params
                          if p.name.startswith("HTTP_") and len(p.name) > 5)
        # ngx_http_fastcgi_init_params: an HTTP_* param written with an empty value only hides
        # the request header (the httpoxy fix ``fastcgi_param HTTP_PROXY "";``), it is not sent
        params = tuple(p for p in params if not (p.name[5:] in names and p.name.startswith(
            "HTTP_") and not p.value.raw))
        return cls(
            params=params,
            header_names=names,
            hide=(DEFAULT_HIDE | frozenset(h.lower().encode("latin-1") for h in hide)) - pass_set,
            pass_=pass_set,
            connect_timeout=float(g(lambda c: c.connect_timeout, 60.0)),  # type: ignore[arg-type]
            read_timeout=float(g(lambda c: c.read_timeout, 60.0)),  # type: ignore[arg-type]
            send_timeout=float(g(lambda c: c.send_timeout, 60.0)),  # type: ignore[arg-type]
            next_upstream=frozenset(nu),
            next_upstream_tries=int(g(lambda c: c.next_upstream_tries, 0)),  # type: ignore[call-overload]
            next_upstream_timeout=float(g(lambda c: c.next_upstream_timeout, 0.0)),  # type: ignore[arg-type]
            intercept_errors=bool(g(lambda c: c.intercept_errors, False)),
            pass_request_headers=bool(g(lambda c: c.pass_request_headers, True)),
            pass_request_body=bool(g(lambda c: c.pass_request_body, True)),
            keep_conn=bool(g(lambda c: c.keep_conn, False)),
            buffer_size=_raw_size(state, "fastcgi_buffer_size", PAGE_SIZE),
            ignore_accel_redirect="x-accel-redirect" in (
                a.lower() for a in _raw_args(state, "fastcgi_ignore_headers")),
            request_buffering=_raw_args(state, "fastcgi_request_buffering") != ("off",),
            catch_stderr=_catch_stderr(state),
        )


def _catch_stderr(state: RequestState) -> tuple[bytes, ...]:
    """``fastcgi_catch_stderr`` is an array directive: every entry of the innermost level that
    has one."""
    for scope in reversed(state.scope_chain):
        found = tuple(d.args[0].encode("latin-1") for d in scope.other
                      if d.name == "fastcgi_catch_stderr" and d.args)
        if found:
            return found
    return ()


def split_path_info(state: RequestState) -> tuple[str, str]:
    """``$fastcgi_script_name`` and ``$fastcgi_path_info`` (rule 3)."""
    uri = state.uri
    script, info = uri, ""
    regex = state.effective(lambda s: s.fastcgi.split_path_info)
    if regex:
        from .regex import compile_pcre

        mt = compile_pcre(regex).search(uri)
        if mt is not None and mt.re.groups >= 2:
            script, info = mt.group(1) or "", mt.group(2) or ""
    if script.endswith("/"):
        index = state.effective(lambda s: s.fastcgi.index)
        if index is not None:
            script += state.eval(index)
    return script, info


def fastcgi_pass_of(state: RequestState) -> FastcgiPass | None:
    fp = None
    for scope in state.scope_chain:
        if scope.proxy_pass is not None:
            fp = None
        if scope.fastcgi_pass is not None:
            fp = scope.fastcgi_pass
    return fp


def _header_param(name: bytes) -> str:
    return name.decode("latin-1").upper().replace("-", "_")


def build_params(state: RequestState, eff: FastcgiEff) -> list[tuple[bytes, bytes]]:
    """The request's params (rule 1)."""
    out: list[tuple[bytes, bytes]] = []
    for p in eff.params:
        if all(isinstance(x, Lit) for x in p.value.parts):
            value = "".join(x.text for x in p.value.parts)  # type: ignore[union-attr]
        else:
            value = state.eval(p.value)
        if p.if_not_empty and not value:
            continue
        out.append((p.name.encode("latin-1"), value.encode("latin-1", errors="replace")))
    if eff.pass_request_headers:
        from .engine import state_raw_headers

        for name, value in state_raw_headers(state):
            key = _header_param(name)
            if key in eff.header_names:
                continue
            out.append((b"HTTP_" + key.encode("latin-1"), value))
    return out


class FastcgiHandler:
    """Runs a ``fastcgi_pass`` for the engine (see rules 1-5)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._literal_groups: dict[tuple[str, int], PeerGroup] = {}
        self._idle: dict[tuple[str, int], deque[FastcgiConnection]] = {}
        """Kept connections per peer (upstream ``keepalive`` with ``fastcgi_keep_conn on``)."""

    def _take_idle(self, peer: Peer, timeout: float) -> FastcgiConnection | None:
        idle = self._idle.get((peer.host, peer.port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < timeout:
                conn.reused = True
                return conn
            conn.close()
        return None

    def _release(self, peer: Peer, conn: FastcgiConnection, up: Upstream | None) -> None:
        """Keep a finished connection (nginx's keepalive module: most recent last, the least
        recently used closed to make room), or close it."""
        keep = up.keepalive or 0 if up is not None else 0
        limit = up.keepalive_requests or 1000 if up is not None else 0
        if keep <= 0 or not conn.reusable or conn.requests >= limit:
            conn.close()
            return
        idle = self._idle.setdefault((peer.host, peer.port), deque())
        if len(idle) >= keep:
            idle.popleft().close()
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _exchange(self, peer: Peer, request: bytes, eff: FastcgiEff,
                        up: Upstream | None, stderr: Callable[[bytes], None],
                        conn_box: list[FastcgiConnection],
                        stream: AsyncIterator[bytes] | None = None
                        ) -> tuple[fcgi.CgiHead, bytes]:
        """Send the request on a kept or new connection; the answer's head. A kept connection
        that fails before any answer byte (the app closed it meanwhile) is replaced once.
        ``stream``: the body still arriving (``request`` is then the head without stdin)."""
        conn = None
        if up is not None and (up.keepalive or 0) > 0 and eff.keep_conn and stream is None:
            conn = self._take_idle(peer, up.keepalive_timeout or 60.0)
        if conn is not None:
            conn.on_stderr = stderr
            conn.start_request()
            conn_box.append(conn)
            try:
                await conn.send(request, eff.send_timeout)
                return await conn.read_head(eff.read_timeout, eff.buffer_size)
            except FastcgiError as exc:
                if conn.got_bytes or exc.timeout:
                    raise
                conn.close()
                conn_box.clear()
        conn = await FastcgiConnection.open(peer.host, peer.port,
                                            connect_timeout=eff.connect_timeout,
                                            on_stderr=stderr)
        conn.start_request()
        conn_box.append(conn)
        await conn.send(request, eff.send_timeout)
        if stream is not None:
            async for piece in stream:
                if piece:
                    await conn.send(fcgi.stdin_records(piece), eff.send_timeout)
            await conn.send(fcgi.stdin_records(b"", last=True), eff.send_timeout)
        return await conn.read_head(eff.read_timeout, eff.buffer_size)

    def _group(self, fp: FastcgiPass, state: RequestState) -> tuple[PeerGroup | None, str]:
        groups = self.engine.groups
        if fp.has_variables:
            address = state.eval(fp.address)
            if address in groups:
                return groups[address], address
            host, _, port_s = address.rpartition(":")
            if address.startswith("unix:"):
                host, port_s = address, "0"
            if not port_s.isdigit() or not host:
                return None, address
            return self._literal(host, int(port_s)), address
        if fp.unix_socket is not None:
            return self._literal(fp.host, 0), fp.host
        if fp.port is None and fp.host in groups:
            return groups[fp.host], fp.host
        if fp.port is None:
            return None, fp.host  # nginx: "no port in upstream"
        return self._literal(fp.host, fp.port), f"{fp.host}:{fp.port}"

    def _literal(self, host: str, port: int) -> PeerGroup | None:
        key = (host, port)
        grp = self._literal_groups.get(key)
        if grp is None:
            try:
                if host.startswith("unix:"):
                    grp = PeerGroup.implicit(host, port, resolver=lambda h: [h])
                else:
                    grp = PeerGroup.implicit(host, port)
            except UpstreamError:
                return None  # nginx: "host not found in upstream"
            self._literal_groups[key] = grp
        return grp

    async def run(self, ex: Exchange, result: RouteResult, state: RequestState, run: _Run
                  ) -> RouteResult | None:
        """Serve the request from the FastCGI app; a RouteResult when routing continues
        (error_page, X-Accel-Redirect), None when the answer went out."""
        from .engine import _BodyTooLarge, _ClientGone

        eng = self.engine
        fp = fastcgi_pass_of(state)
        assert fp is not None
        eff = FastcgiEff.of(state)
        group, hostport = self._group(fp, state)
        if group is None:
            return eng._proxy_error(result, 502)
        stream: AsyncIterator[bytes] | None = None
        if (not state.body_read and not eff.request_buffering and eff.pass_request_body
                and not ex.head.end_stream):
            # fastcgi_request_buffering off, body still arriving: params first, then stdin
            # as it comes ($content_length of a chunked body is then empty, as in nginx)
            stream = eng._stream_body(ex, state)
            state.body_read = True
            body = None
        else:
            try:
                if state.body_read:
                    body = state.request_body
                else:
                    body = await eng._read_body(ex, state)
                    state.body_read, state.request_body = True, body
            except _BodyTooLarge:
                return eng._proxy_error(result, 413)
        if not eff.pass_request_body:
            body = None
        params = build_params(state, eff)
        if stream is not None:
            request = (fcgi.begin_request(keep_conn=eff.keep_conn)
                       + fcgi.params_records(params))
        else:
            request = fcgi.encode_request(params, body, keep_conn=eff.keep_conn)
        method = state.method
        retry_ok = (method in IDEMPOTENT or "non_idempotent" in eff.next_upstream) and \
            stream is None
        deadline = (time.monotonic() + eff.next_upstream_timeout
                    if eff.next_upstream_timeout else None)
        next_statuses = frozenset(int(n[5:]) for n in eff.next_upstream
                                  if n.startswith("http_") and n[5:].isdigit())
        up = None
        if fp.port is None and fp.unix_socket is None and not fp.has_variables:
            up = eng.upstreams.get(fp.host)
        hash_key = None
        if up is not None and up.hash_key is not None:
            hash_key = state.eval(up.hash_key)
        attempt = group.begin(client_addr=state.req.remote_addr, hash_key=hash_key,
                              max_tries=eff.next_upstream_tries)
        uri = state.request_uri

        head_done = [False]

        def stderr(data: bytes) -> None:
            # ngx_http_fastcgi_process_header: trailing CR, LF, "." and " " are not logged
            msg = data.rstrip(b"\r\n. ")
            log.error('FastCGI sent in stderr: "%s" while reading response header from '
                      'upstream, client: %s, request: "%s %s"', msg.decode("latin-1"),
                      state.req.remote_addr, method, uri)
            if not head_done[0] and any(c in msg for c in eff.catch_stderr):
                # ngx_http_fastcgi_process_header: NGX_HTTP_UPSTREAM_INVALID_HEADER
                raise FastcgiError("read", "FastCGI stderr holds a fastcgi_catch_stderr string")

        while True:
            peer = attempt.next(time.monotonic())
            if peer is None:
                run.upstream_addr.append(group.name or hostport)
                run.upstream_status.append("502")
                run.upstream_time.append("0.000")
                return eng._proxy_error(result, 502)
            address = peer.host if peer.host.startswith("unix:") else peer.address
            run.upstream_addr.append(address)
            t0 = time.monotonic()
            box: list[FastcgiConnection] = []
            head_done[0] = False
            try:
                head, first = await self._exchange(peer, request, eff, up, stderr, box,
                                                   stream)
            except (_BodyTooLarge, _ClientGone) as exc:
                # the body, streamed to the app, overran client_max_body_size or its client
                # went away
                if box:
                    box[0].close()
                attempt.success(time.monotonic())
                if isinstance(exc, _ClientGone):
                    raise
                return eng._proxy_error(result, 413)
            except FastcgiError as exc:
                sent = bool(box)
                if box:
                    box[0].close()
                attempt.failure(time.monotonic())
                log.error("%s, client: %s, request: \"%s %s\", upstream: \"fastcgi://%s\"",
                          exc, state.req.remote_addr, method, uri, address)
                run.upstream_status.append("504" if exc.timeout else "502")
                run.upstream_time.append(f"{time.monotonic() - t0:.3f}")
                kind = "timeout" if exc.timeout else (
                    "error" if exc.phase in ("connect", "send") or "closed" in str(exc)
                    or "failed" in str(exc) else "invalid_header")
                if (kind in eff.next_upstream and attempt.tries_left > 0
                        and (deadline is None or time.monotonic() < deadline)
                        and (retry_ok or not sent or exc.phase == "connect")):
                    continue
                return eng._proxy_error(result, 504 if exc.timeout else 502)
            conn = box[0]
            head_done[0] = True
            status = head.status
            run.upstream_status.append(str(status))
            run.upstream_time.append(f"{time.monotonic() - t0:.3f}")
            run.upstream_headers = list(head.headers)
            if (status in next_statuses and attempt.tries_left > 1 and retry_ok
                    and (deadline is None or time.monotonic() < deadline)):
                conn.close()
                if status in (403, 404):
                    attempt.success(time.monotonic())
                else:
                    attempt.failure(time.monotonic())
                continue
            accel = next((v for k, v in head.headers if k.lower() == b"x-accel-redirect"), None)
            if accel is not None and not eff.ignore_accel_redirect:
                attempt.success(time.monotonic())
                conn.close()
                from .engine import ACCEL_KEEP

                state.carried_headers = [(k, v) for k, v in head.headers
                                         if k.lower() in ACCEL_KEEP]
                return eng.interp.accel_redirect(result, accel.decode("latin-1"))
            from .engine import _has_error_page

            if eff.intercept_errors and status >= 300 and _has_error_page(state, status):
                attempt.success(time.monotonic())
                conn.close()
                return eng.interp.after_upstream_error(result, status)
            complete = False
            try:
                complete = await self._relay(ex, state, result, conn, head, first, eff, run)
            finally:
                attempt.success(time.monotonic())
                if complete:
                    self._release(peer, conn, up)
                else:
                    conn.close()
            return None

    async def _relay(self, ex: Exchange, state: RequestState, result: RouteResult,
                     conn: FastcgiConnection, head: fcgi.CgiHead, first: bytes,
                     eff: FastcgiEff, run: _Run) -> bool:
        """Send the answer; True when it ended cleanly (the connection may be kept)."""
        from .engine import _accel_charset as accel_charset

        eng = self.engine
        status = result.override_status or head.status
        headers = eng._base_headers(state)
        passed: list[tuple[bytes, bytes]] = []
        for name, value in head.headers:
            low = name.lower()
            if low in eff.hide or low in HOP_BY_HOP:
                continue
            if low in (b"server", b"date"):
                headers = [h for h in headers if h[0].lower() != low]
            if low == b"content-type" and not value.strip():
                continue  # an empty type is no type, as for proxied answers
            passed.append((name, value))
        headers.extend(passed)
        headers = eng._finish_headers(state, status, headers, run,
                                      accel_charset(state, head.headers, "fastcgi"))
        run.status = status
        run.sent_headers = headers
        reason: bytes | None = None
        if status == head.status:
            reason = head.status_line[4:] if len(head.status_line) > 3 else b""
        if ex.head.method == b"HEAD" or status in (204, 304):
            ex.send_headers(status, headers, end_stream=True, reason=reason)
            try:
                async for _ in conn.body(eff.read_timeout):
                    pass  # read to FCGI_END_REQUEST so a kept connection stays in step
            except FastcgiError:
                return False
            return True
        ex.send_headers(status, headers, reason=reason)
        # nginx's $body_bytes_sent counts the chunked framing of an HTTP/1.1 answer without a
        # length: each chunk's size line and CRLF, and the last chunk
        chunked = ex.head.http_version == "1.1" and not any(
            k.lower() == b"content-length" for k, _ in headers)
        try:
            if first:
                ex.send_data(first)
                run.body_bytes += len(first) + (_chunk_overhead(len(first)) if chunked else 0)
                await ex.drain()
            async for data in conn.body(eff.read_timeout):
                ex.send_data(data)
                run.body_bytes += len(data) + (_chunk_overhead(len(data)) if chunked else 0)
                await ex.drain()
        except FastcgiError:
            ex.abort()  # the client has the head already: nginx closes the connection
            return False
        if chunked:
            run.body_bytes += 5  # "0\r\n\r\n"
        ex.end()
        return True


def _chunk_overhead(size: int) -> int:
    return len(b"%x" % size) + 4
