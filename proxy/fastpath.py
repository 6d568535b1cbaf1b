"""The fast path for proxied HTTP/1.x requests: no asyncio task, no coroutine, no future.

Most proxied requests under load are the same story: a request without a body, routed to a
``proxy_pass`` whose upstream group keeps connections alive, a cached connection to the chosen
peer, and a small answer that arrives whole (head and body) in one read.  The general path
(``Engine.handle``) tells that story with a task and five coroutines; this module tells it from
callbacks, using the general path's own steps (routing, ``_proxy_target``, ``_body_now``,
``_proxy_plan``, ``_relay_head``, ``Engine.finish``) so both compute the same values.

Rules:

1. The fast path does only what the general path would do, in the same order, with the same
   helpers.  Wherever the general path would wait or branch into anything but the plain story,
   the fast path hands the request over (``ProxyResume``) at that exact point, before anything
   is sent to the client; the general path continues from there as if it had done the steps
   itself.
2. Taken only for a request whose body is complete with its head (none), that is not an
   upgrade, on a connection with no request in progress.
3. Handed over: a routing result that is not a proxy, a limit_req delay, an error choosing the
   peer group, a group without keep-alive (or HTTP/1.0 upstream, ``Connection: close``), no
   live peer, no cached connection, a failed or stalled write, a response that is not whole
   after a read (streamed bodies), an upstream error, close or timeout, a head larger than
   proxy_buffer_size, a status listed in proxy_next_upstream, X-Accel-Redirect, any status
   >= 300 with proxy_intercept_errors, 101, 204, 304, HEAD, and an error_page status override.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from . import addition, gzipfilter, ratelimit, subfilter
from .engine import ProxyResume, _ProxyPlan, _Run, _head_size
from .interp import RouteResult
from .io.upstream import UpstreamConnection, UpstreamError
from .upstream.balancer import Peer

if TYPE_CHECKING:
    import asyncio

    from .engine import Engine, Exchange


class Host(Protocol):
    """What the fast path needs of the client connection (``proxy.io.server``)."""

    loop: asyncio.AbstractEventLoop
    closed: bool

    def resume_general(self, ex: Exchange, resume: ProxyResume) -> None: ...

    def fast_done(self, ex: Exchange) -> None: ...

    def fast_drain(self, finish: Callable[[bool], None]) -> None: ...

    def fast_timer(self, seconds: float, callback: Callable[[], None]) -> None: ...

    def fast_timer_cancel(self) -> None: ...


ENABLED = os.environ.get("TERN_FASTPATH", "on") != "off"
"""``TERN_FASTPATH=off`` in the environment: every request takes the general path (to compare)."""


class Counts:
    """Requests the fast path answered itself and requests it handed over, in this process
    (tests read them to prove which road a request took)."""

    served = 0
    handed_over = 0


def _hand_over(host: Host, ex: Exchange, resume: ProxyResume) -> None:
    Counts.handed_over += 1
    host.resume_general(ex, resume)


def start(engine: Engine, host: Host, ex: Exchange) -> bool:
    """Serve ``ex`` on the fast path; False when it is not a candidate at all (the caller
    starts the general path).  True: the request is served, being served, or handed over."""
    head = ex.head
    if not head.end_stream or head.upgrade is not None or not ENABLED:
        return False
    run = _Run(time.time())
    try:
        req = engine._route_request(ex, run)
        result = engine.interp.route(req)
    except Exception as exc:  # the general path's handler answers (500) and logs
        _hand_over(host, ex, ProxyResume(None, run, None, raised=exc))
        return True
    state = result.state
    if result.kind != "proxy" or state is None or state.limit_delay > 0 or \
            gzipfilter.enabled(state) or subfilter.conf_of(state) is not None or \
            addition.conf_of(state) is not None:
        # gzip on, sub_filter or add_*_body: the general path runs those body filters
        _hand_over(host, ex, ProxyResume(result, run, None))
        return True
    if ratelimit.applies(state):  # limit_rate...: the general path paces the answer
        _hand_over(host, ex, ProxyResume(result, run, None))
        return True
    target = engine._proxy_target(result, state, run)
    if isinstance(target, RouteResult):
        _hand_over(host, ex, ProxyResume(target, run, None))
        return True
    pp, pconf, group, hostport = target
    method = state.method
    if pconf.method is not None:
        method = state.eval(pconf.method)
    body = engine._body_now(ex, state, pconf)
    if pconf.set_body is not None:
        body = state.eval(pconf.set_body).encode("utf-8")
    body_len = len(body) if body is not None else None
    plan = engine._proxy_plan(ex, state, pp, pconf, group, hostport, method,
                              pconf.http_version, body, body_len, None, False)
    peer = plan.attempt.next(time.monotonic())
    t0 = time.monotonic()
    if peer is None or not plan.reuse:
        _hand_over(host, ex, ProxyResume(result, run, plan, peer, t0))
        return True
    # an https upstream's pooled connections are keyed apart: the general path takes them
    conn = engine.pool.take_idle(peer.host, peer.port) if pp.scheme != "https" else None
    if conn is None:
        _hand_over(host, ex, ProxyResume(result, run, plan, peer, t0))
        return True
    try:
        conn.send_request(plan.head_bytes, body, head_method=method == "HEAD")
    except UpstreamError as exc:
        _hand_over(host, ex, ProxyResume(result, run, plan, peer, t0, conn, exc))
        return True
    if not conn._writable:
        _hand_over(host, ex, ProxyResume(result, run, plan, peer, t0, conn, None,
                                            pconf.read_timeout))
        return True
    _Waiting(engine, host, ex, result, run, plan, peer, t0, conn)
    return True


class _Waiting:
    """A request written upstream, waiting for its response from the connection's callbacks."""

    __slots__ = ("engine", "host", "ex", "result", "run", "plan", "peer", "t0", "conn")

    def __init__(self, engine: Engine, host: Host, ex: Exchange, result: RouteResult,
                 run: _Run, plan: _ProxyPlan, peer: Peer, t0: float,
                 conn: UpstreamConnection) -> None:
        self.engine = engine
        self.host = host
        self.ex = ex
        self.result = result
        self.run = run
        self.plan = plan
        self.peer = peer
        self.t0 = t0
        self.conn = conn
        conn.watcher = self.on_upstream
        host.fast_timer(plan.pconf.read_timeout, self.on_timeout)

    def _hand_over(self, read_timeout: float) -> None:
        self.conn.watcher = None
        self.host.fast_timer_cancel()
        _hand_over(self.host, self.ex, ProxyResume(
            self.result, self.run, self.plan, self.peer, self.t0, self.conn, None,
            read_timeout))

    def on_timeout(self) -> None:
        # proxy_read_timeout passed: the general path's wait times out at once (0 s left)
        self._hand_over(0.0)

    def on_upstream(self) -> None:
        conn = self.conn
        resp = conn._response
        if resp is None and conn._error is None and not conn.closed:
            return  # the head is not complete yet
        plan = self.plan
        pconf = plan.pconf
        result = self.result
        status = resp.status if resp is not None else 0
        if (resp is None or conn._error is not None or not conn._complete
                or result.override_status is not None
                or (conn.received > pconf.buffer_size
                    and _head_size(resp) > pconf.buffer_size)
                or status in pconf.next_statuses
                or (pconf.intercept_errors and status >= 300)
                or status in (101, 204, 304) or plan.method == "HEAD"
                or self.ex.head.method == b"HEAD"
                or resp.accel or ratelimit.accel_rate(resp.headers) is not None):
            self._hand_over(pconf.read_timeout)
            return
        conn.watcher = None
        self.host.fast_timer_cancel()
        engine, ex, run = self.engine, self.ex, self.run
        state = result.state
        assert state is not None
        # what Engine._proxy_loop and _relay do for a whole plain answer
        run.upstream_addr.append(self.peer.address)
        run.upstream_status.append(str(status))
        run.upstream_time.append(f"{time.monotonic() - self.t0:.3f}")
        run.upstream_headers = resp.headers
        try:
            status, headers, reason, _upgrade, _no_body = engine._relay_head(
                ex, state, result, resp, pconf, plan.pp, run, plan.upgrade)
            data, _complete = conn.take_buffered()
            run.body_bytes += len(data)
            engine.pool.release(conn, plan.keepalive)
            ex.send_response(status, headers, data, reason=reason)
            Counts.served += 1
        except Exception as exc:  # an engine bug must cost one request, not the worker
            plan.attempt.success(time.monotonic())
            if run.status == 0:  # the general path's handler logs it and answers 500
                _hand_over(self.host, ex, ProxyResume(None, run, None, raised=exc))
                return
            logging.getLogger("tern").exception("internal error")
            ex.abort()
            self._done()
            return
        # Engine._relay: ``await ex.drain()``; a task waits only when the socket is full
        self.host.fast_drain(self._drained)

    def _drained(self, failed: bool) -> None:
        # Engine.handle: a ConnectionError from the drain aborts the client connection
        self.plan.attempt.success(time.monotonic())
        if failed:
            self.ex.abort()
        self._done()

    def _done(self) -> None:
        self.engine.finish(self.ex, self.result, self.run)
        self.host.fast_done(self.ex)
