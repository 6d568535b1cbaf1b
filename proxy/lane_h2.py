"""The compiled lane for HTTP/2 streams: a bodyless GET to a lane location, from prepared parts.

``proxy.lane`` serves the common proxied HTTP/1.1 request from byte templates; this module
serves the same request arriving as an HTTP/2 stream (``proxy.io.h2conn``) with the same
compiled location (``Lane._compile_loc``: the same eligibility rules), so the stream builds
none of the engine's per-request objects (RouteRequest, RequestState, RouteResult, _Run,
_ProxyPlan) when it is served here.

Rules:

1. Same answer as the general path over HTTP/2.  The upstream request head is the lane's
   (``lane._head_bytes``: request line ``GET <uri> HTTP/1.1``, proxy_set_header lines, then the
   client's fields as the HTTP/2 adapter gives them: lower case, ``:authority`` as ``host``
   where it stood, which the default drop list removes), with ``$scheme`` the socket's scheme
   and ``$server_protocol`` ``HTTP/2.0``.  The answer is a status and a header list in
   ``Engine._relay_head``'s order (Server, Date, the upstream's fields, add_header), sent with
   ``H2Server.send_response`` (which orders and lower-cases them as for every answer); the
   access-log line is the lane's, with ``$request`` ``GET <target> HTTP/2.0``.
   ``tests/compat/test_lane_h2_vs_nginx.py`` compares it with nginx.
2. Early hand-over (``serve`` returns False, nothing done): the caller starts the fast path
   (``proxy.fastpath``), which hands over to the general path as before.  Taken only for a
   stream complete with its HEADERS, ``GET``, origin-form target, one host field, no field the
   HTTP/1 lane refuses (``_h1._name_info`` kinds: Content-Length, Expect, Authorization, If-*,
   Content-Range...), a route the lane compiled (key: listen socket, host, path) and a live peer.
3. Late hand-over: as the HTTP/1 lane (no idle pooled connection, a failed or stalled write,
   proxy_read_timeout, upstream EOF, an answer that is not plain): the general path's objects
   are built for that point and the stream's engine task continues (``ProxyResume``), reading
   the upstream answer from the bytes the lane had.
4. ``TERN_LANE=off`` or ``TERN_LANE_H2=off`` turns it off.  ``TERN_LANE_TRACE`` gets a line per
   decision, each word prefixed ``h2-`` (``h2-served``, ``h2-early <why>``, ``h2-late <why>``).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from . import lane as _lane
from . import responses
from .engine import ADD_HEADER_STATUSES, ProxyResume, _proxy_pass_of, _ProxyEff, _Run
from .interp import RouteResult, escape_uri
from .io.upstream import UpstreamError
from .model import HeaderValue, Template, Var
from .protocol import h1 as _h1
from .protocol.h1lane import read_head

if TYPE_CHECKING:
    from .io.h2conn import H2Exchange
    from .io.upstream import UpstreamConnection
    from .lane import Lane, LaneLoc
    from .upstream.balancer import Attempt, Peer

ENABLED = _lane.ENABLED and os.environ.get("TERN_LANE_H2", "on") != "off"
"""``TERN_LANE=off`` or ``TERN_LANE_H2=off``: no HTTP/2 stream takes the lane."""

_TRACE = bool(_lane._TRACE_PATH)
_log = logging.getLogger("tern")

_K_OTHER = 0
_K_HOST = 1
PARSED_MAX = 1024
ANSWERS_MAX = 512
_WAIT_BODY_MAX = 65536
_A_PASS, _A_DROP, _A_LENGTH, _A_TYPE, _A_CONN, _A_HAND = (
    _lane._A_PASS, _lane._A_DROP, _lane._A_LENGTH, _lane._A_TYPE, _lane._A_CONN, _lane._A_HAND)

H2Answer = tuple[int, int, bytes, tuple[tuple[bytes, bytes], ...], bool]
"""(status, Content-Length, the Server value, the fields after Date, the upstream closes)."""


class H2Loc:
    """What HTTP/2 adds to a compiled lane location: the answer pieces as header lists."""

    __slots__ = ("server", "add_listed", "add_other", "answers")

    def __init__(self) -> None:
        self.server = b""
        self.add_listed: tuple[tuple[bytes, bytes], ...] = ()
        self.add_other: tuple[tuple[bytes, bytes], ...] = ()
        self.answers: dict[bytes, H2Answer | str] = {}


class H2Route(_lane.LaneRoute):
    """A ``LaneRoute`` (its ``loc`` compiled for HTTP/2 variables) with its HTTP/2 answers."""

    __slots__ = ("h2",)

    def __init__(self, loc: LaneLoc, prefix: bytes | None, host_var: bytes, uri: str,
                 h2: H2Loc) -> None:
        super().__init__(loc, prefix, host_var, uri)
        self.h2 = h2


class Table:
    """The HTTP/2 lane of one engine (one ``Lane``): routes, locations, parsed requests."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.routes: dict[tuple[object, ...], H2Route | None] = {}
        self.locs: dict[tuple[object, ...], tuple[LaneLoc, H2Loc] | str] = {}
        self.parsed: dict[tuple[object, ...], Any] = {}
        self.served = 0
        self.handed: dict[str, int] = {}

    def count(self, why: str, target: bytes) -> None:
        self.handed[why] = self.handed.get(why, 0) + 1
        if _TRACE:
            self.lane.trace(f"h2-{why} {target.decode('latin-1')}")


_current: list[Any] = [None, None]
"""The last (Lane, Table) pair (a worker has one engine at a time)."""


def table_of(lane: Lane) -> Table:
    if _current[0] is lane:
        return _current[1]  # type: ignore[no-any-return]
    table = Table(lane)
    _current[0], _current[1] = lane, table
    return table


# ---------------------------------------------------------------------------------------------
# compile


def _probe(table: Table, ex: H2Exchange, host: bytes, target: bytes) -> H2Route:
    lane = table.lane
    engine = lane.engine
    interp = engine.interp
    run = _Run(time.time())
    req = engine._route_request(ex, run)
    hook = interp.preaccess_hook
    interp.preaccess_hook = None  # limits are not counted for a probe (none in a lane)
    try:
        result = interp.route(req)
    finally:
        interp.preaccess_hook = hook
    state = result.state
    rkey = (req.local_addr, req.local_port, req.http_version, req.host,
            req.target.partition("?")[0])
    if result.kind != "proxy" or state is None or rkey not in interp._routes:
        raise _lane._NotEligible(f"route: {result.kind or 'none'}, not a cached plain proxy")
    if result.override_status is not None or result.upstream_uri is None:
        raise _lane._NotEligible("error_page override or no upstream URI")
    scheme = ex.scheme
    chain = (state.chain_key, scheme)
    got = table.locs.get(chain)
    if got is None:
        try:
            got = _compile_loc(lane, state, result, scheme)
        except _lane._NotEligible as exc:
            got = str(exc)
        table.locs[chain] = got
    if isinstance(got, str):
        raise _lane._NotEligible(got)
    loc, h2 = got
    pp = _proxy_pass_of(state)
    assert pp is not None
    prefix: bytes | None = None
    if pp.uri is not None:
        location = state.location
        assert location is not None
        uri = state.uri
        tail = uri[len(location.pattern):] if uri.startswith(location.pattern) else uri
        try:
            prefix = (pp.uri + escape_uri(tail)).encode("latin-1")
        except UnicodeEncodeError:
            raise _lane._NotEligible("proxy_pass URI not latin-1") from None
    host_var = state.var("host").encode("latin-1", errors="replace")
    return H2Route(loc, prefix, host_var, state.uri, h2)


def _compile_loc(lane: Lane, state: Any, result: RouteResult, scheme: str
                 ) -> tuple[LaneLoc, H2Loc]:
    """The HTTP/1 lane's compiled location (its checks), with what differs over HTTP/2: the
    variables $scheme and $server_protocol in proxy_set_header and the access log, and the
    answer's fields as a list."""
    loc = lane._compile_loc(state, result)
    pconf = _ProxyEff.of(state)
    scheme_b = scheme.encode()
    ops: list[tuple[bytes, Any]] = []
    for _low, name, tpl, const in pconf.set_plan:
        if const is None:
            ops.append((name + b": ", _template_fns(tpl, loc, scheme_b)))  # type: ignore[arg-type]
        elif const:
            ops.append((name + b": " + const + b"\r\n", None))
    if "host" not in pconf.overridden:
        ops.append((b"Host: " + loc.hostport.encode("latin-1") + b"\r\n", None))
    loc.ops = _lane._merge_consts(ops)
    logs = []
    for path, head, steps in loc.logs:
        new = []
        for step in steps:
            name = step[5]
            if name == "request":
                step = (_log_request,) + step[1:]
            elif name == "scheme":
                step = (_const(scheme_b),) + step[1:]
            elif name == "server_protocol":
                step = (_const(b"HTTP/2.0"),) + step[1:]
            new.append(step)
        logs.append((path, head, tuple(new)))
    loc.logs = tuple(logs)
    h2 = H2Loc()
    h2.server = loc.server_line[len(b"Server: "):-2]
    listed: list[tuple[bytes, bytes]] = []
    other: list[tuple[bytes, bytes]] = []
    for h in state.effective(lambda s: s.add_headers) or ():
        assert isinstance(h, HeaderValue)
        value = state.eval(h.value)
        if not value:
            continue
        pair = (h.name.encode("latin-1"), value.encode("latin-1", errors="replace"))
        listed.append(pair)
        if h.always:
            other.append(pair)
    h2.add_listed = tuple(listed)
    h2.add_other = tuple(other)
    return loc, h2


def _log_request(v: Any) -> bytes:
    return b"GET " + v.r.target + b" HTTP/2.0"  # type: ignore[no-any-return]


def _const(value: bytes) -> Any:
    return lambda v: value


def _template_fns(tpl: Template, loc: LaneLoc, scheme: bytes) -> tuple[Any, ...]:
    parts: list[Any] = []
    for p in tpl.parts:
        if isinstance(p, Var):
            name = p.name
            if name == "proxy_host":
                parts.append(loc.hostport.encode("latin-1"))
            elif name == "server_name":
                parts.append(loc.server_name.encode("latin-1", errors="replace"))
            elif name == "scheme":
                parts.append(scheme)
            elif name == "server_protocol":
                parts.append(b"HTTP/2.0")
            elif name in _lane.HEADER_VARIABLES or name.startswith("http_"):
                if name in _lane._CONN_VARIABLES:
                    loc.conn_vars = True
                parts.append(_lane._var_fn(name))
            else:
                raise _lane._NotEligible(f"proxy_set_header variable ${name}")
        else:
            parts.append(p.text.encode("latin-1", errors="replace"))
    return tuple(parts)


def _answer(loc: LaneLoc, h2: H2Loc, head: bytes) -> H2Answer | str:
    """What the lane sends over HTTP/2 for an upstream response head (``Engine._relay_head``
    then ``_finish_headers``), or why it hands the answer over; remembered per location."""
    answer = _answer_of(loc, h2, head)
    answers = h2.answers
    if len(answers) >= ANSWERS_MAX:
        answers.clear()
    answers[head] = answer
    return answer


def _answer_of(loc: LaneLoc, h2: H2Loc, head: bytes) -> H2Answer | str:
    if len(head) >= loc.buffer_size:
        return "late head-too-big"
    got = read_head(head)
    if not got:
        return "late not-plain-head"
    status, _reason, uheaders, _ = got  # type: ignore[misc]
    if status < 200 or status == 204 or status == 304 or status in loc.next_statuses:
        return f"late status-or-size {status}"
    passed: list[tuple[bytes, bytes]] = []
    length = -1
    up_close = False
    for name, value in uheaders:
        act = _lane._action(loc, name)
        if act == _A_PASS:
            passed.append((name, value))
        elif act == _A_LENGTH:
            if length >= 0 or not value.isdigit():
                return "late content-length"
            length = int(value)
            passed.append((name, value))
        elif act == _A_TYPE:
            if not value.strip():
                return "late empty-content-type"
            passed.append((name, value))
        elif act == _A_CONN:
            low = value.lower()
            if low == b"close":
                up_close = True
            elif low != b"keep-alive":
                return "late upstream-connection"
        elif act == _A_HAND:
            return f"late header {name.decode('latin-1')}"
    if length < 0:
        return "late no-content-length"
    passed += h2.add_listed if status in ADD_HEADER_STATUSES else h2.add_other
    return status, length, h2.server, tuple(passed), up_close


# ---------------------------------------------------------------------------------------------
# per stream


def serve(lane: Lane, ex: H2Exchange) -> bool:
    """Serve the stream ``ex`` on the lane; False: not taken, nothing done (the caller starts
    the fast path)."""
    head = ex.head
    if not ENABLED:
        return False
    table = table_of(lane)
    target = head.target
    if not head.end_stream or head.method != b"GET" or head.upgrade is not None:
        table.count("early not-get-or-body", target)
        return False
    conn = ex.conn
    key = (conn.local, target, head.raw_headers)
    hit = table.parsed.get(key, False)
    if hit is not False:
        if hit is None:
            table.count("early not-eligible", target)
            return False
        return _Request(table, ex, hit).start()
    host = head.host
    if host is None or target[:1] != b"/":
        table.count("early host-or-target", target)
        return False
    info = _h1._NAME_INFO
    lower = _lane._LOWER
    hosts = 0
    for name, value in head.raw_headers:
        kind = info.get(name)
        if kind is None:
            kind = _h1._name_info(name)
        if name not in lower:
            if len(lower) >= 4096:
                table.count("early names-cache-full", target)
                return False
            lower[name] = name.decode("latin-1").lower()
        if kind == _K_OTHER:
            continue
        if kind != _K_HOST:
            table.count("early header " + lower[name], target)
            return False
        hosts += 1
        if value != host:
            hosts += 1
    if hosts != 1:
        table.count("early host", target)
        return False
    q = target.find(b"?")
    path = target if q < 0 else target[:q]
    rkey = (conn.local, host, path)
    got = table.routes.get(rkey, False)
    route: H2Route | None
    if got is not False:
        route = got  # type: ignore[assignment]
    else:
        try:
            route = _probe(table, ex, host, target)
        except _lane._NotEligible as exc:
            if _TRACE:
                lane.trace(f"h2-compile-no {target.decode('latin-1')}: {exc}")
            route = None
        except Exception:  # a compile bug must cost the lane, not the request
            _log.exception("lane (HTTP/2): compile failed")
            route = None
        if len(table.routes) >= _lane.ROUTES_MAX:
            table.routes.clear()
        table.routes[rkey] = route
    parsed_all = table.parsed
    if len(parsed_all) >= PARSED_MAX:
        parsed_all.clear()
    if route is None:
        parsed_all[key] = None
        table.count("early not-eligible", target)
        return False
    parsed = _lane._Parsed(route, target, q, host, list(head.raw_headers), False)
    if not route.loc.conn_vars:
        parsed.head = _lane._head_bytes(parsed, conn)  # type: ignore[arg-type]
    parsed_all[key] = parsed
    return _Request(table, ex, parsed).start()


class _Request:
    """One stream on the lane, from its head to its log line (the attribute names are the
    HTTP/1 lane's ``_Request``'s: its log phase reads them)."""

    __slots__ = ("table", "lane", "ex", "conn", "route", "p", "target", "start_time", "attempt",
                 "peer", "t0", "up", "buf")

    def __init__(self, table: Table, ex: H2Exchange, p: Any) -> None:
        self.table = table
        self.lane = table.lane
        self.ex = ex
        self.conn = ex.conn
        self.p = p
        self.route: H2Route = p.route
        self.target: bytes = p.target
        self.buf = b""
        self.up: UpstreamConnection | None = None

    def start(self) -> bool:
        table, ex, loc = self.table, self.ex, self.route.loc
        self.start_time = time.time()
        now = time.monotonic()
        peer = loc.single
        if peer is not None:
            if peer.down or (peer.max_conns and peer.conns >= peer.max_conns):
                table.count("early no-live-peer", self.target)
                return False
            peer.conns += 1
            self.attempt: Attempt | None = None
        else:
            attempt = loc.group.begin(client_addr=self.conn.remote[0], max_tries=loc.max_tries)
            peer = attempt.next(now)
            if peer is None:
                table.count("early no-live-peer", self.target)
                return False
            self.attempt = attempt
        self.peer: Peer = peer
        self.t0 = now
        up = self.lane.engine.pool.take_idle(peer.host, peer.port)
        if up is None:
            self._hand_over("late no-idle-connection", None, None, 0.0)
            return True
        self.up = up
        head = self.p.head
        if head is None:
            head = _lane._head_bytes(self.p, self.conn)  # type: ignore[arg-type]
        if not up.lane_send(head, self.on_upstream):
            self._hand_over("late send-failed", up,
                            UpstreamError("send", "connection closed"), 0.0)
            return True
        if not up._writable:
            self._hand_over("late write-stalled", up, None, loc.read_timeout)
            return True
        ex.fast_timer(loc.read_timeout, self.on_timeout)
        return True

    # -- the upstream answer ----------------------------------------------------------------

    def on_timeout(self) -> None:
        self._hand_over("late read-timeout", self.up, None, 0.0)

    def on_upstream(self, data: bytes | None) -> None:
        """Bytes from upstream; None: EOF or the connection is lost."""
        if data is None:
            self.ex.fast_timer_cancel()
            self._hand_over("late upstream-eof", self.up, None, self.route.loc.read_timeout)
            return
        buf = self.buf = self.buf + data if self.buf else data
        route = self.route
        loc = route.loc
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) >= loc.buffer_size:
                self._late("late head-too-big")
            return
        head_end = end + 4
        head = buf[:head_end]
        h2 = route.h2
        answer = h2.answers.get(head)
        if answer is None:
            answer = _answer(loc, h2, head)
        if isinstance(answer, str):
            self._late(answer)
            return
        status, length, server, fields, up_close = answer
        have = len(buf) - head_end
        if have != length:
            if have > length:
                self._late("late extra-bytes")
            elif length > _WAIT_BODY_MAX:
                self._late("late body-not-whole")  # the general path streams it
            return  # a small rest of the body is on its way
        ex = self.ex
        ex.fast_timer_cancel()
        up = self.up
        assert up is not None
        table = self.table
        lane = self.lane
        up_time = time.monotonic() - self.t0
        if up_close:
            up.lane_end()
            up.abort()
        else:
            lane.engine.pool.lane_release(up, loc.keepalive)
        table.served += 1
        if _TRACE:
            lane.trace(f"h2-served {self.target.decode('latin-1')}")
        headers = [(b"Server", server), (b"Date", responses.http_date(time.time()))]
        headers += fields
        ex.send_response(status, headers, buf[head_end:])
        peer = self.peer
        attempt = self.attempt
        if attempt is None:
            peer.conns -= 1  # PeerGroup.success of a single-peer group
        else:
            attempt.success(time.monotonic())
        if loc.logs:
            try:
                _lane._Request._log(self, status, length, up_time)  # type: ignore[arg-type]
            except Exception:
                _log.exception("lane (HTTP/2): access log failed")
        ex.fast_drain(self._drained)

    def _drained(self, failed: bool) -> None:
        if failed:
            self.ex.abort()
        self.ex.fast_done(self.ex)

    def _late(self, why: str) -> None:
        self.ex.fast_timer_cancel()
        self._hand_over(why, self.up, None, self.route.loc.read_timeout)

    def _hand_over(self, why: str, up: UpstreamConnection | None, error: UpstreamError | None,
                   read_timeout: float) -> None:
        """The general path continues in the stream's task: its objects for this point (what
        the fast path would have), the upstream bytes read so far given back to the upstream
        connection's parser."""
        self.table.count(why, self.target)
        if up is not None:
            up.lane_fallback(self.buf)
        ex = self.ex
        engine = self.lane.engine
        attempt = self.attempt
        if attempt is None:  # the one-peer shortcut: the Attempt ``next`` would have left
            loc = self.route.loc
            attempt = loc.group.begin(client_addr=self.conn.remote[0], max_tries=loc.max_tries)
            attempt.current = self.peer
            attempt.tried.append(self.peer)
            self.attempt = attempt
        run = _Run(self.start_time)
        try:
            req = engine._route_request(ex, run)
            result = engine.interp.route(req)
            state = result.state
            assert state is not None and result.kind == "proxy"
            target = engine._proxy_target(result, state, run)
            assert not isinstance(target, RouteResult)
            pp, pconf, group, hostport = target
            body = engine._body_now(ex, state, pconf)
            plan = engine._proxy_plan(ex, state, pp, pconf, group, hostport, "GET",
                                      pconf.http_version, body, None, None, False)
        except Exception as exc:  # the general path's handler answers (500) and logs
            attempt.success(time.monotonic())
            if up is not None:
                up.abort()
            ex.resume_general(ex, ProxyResume(None, run, None, raised=exc))
            return
        plan.attempt = attempt
        ex.resume_general(ex, ProxyResume(result, run, plan, self.peer, self.t0, up, error,
                                          read_timeout))
