"""The compiled lane: the common proxied HTTP/1.1 request, served from prepared bytes.

The fast path (``proxy.fastpath``) still builds every general-path object per request
(RouteRequest, RequestState, RouteResult, _Run, an Exchange, a _ProxyPlan).  The lane does not:
what a location does to a plain GET is compiled once per engine (so once per reload) into byte
templates, and a request that fits is parsed by a slim httptools adapter, written upstream on a
pooled keep-alive connection, and its answer is read by a lean head reader
(``proxy.protocol.h1lane``) and written back with one ``write``, then access-logged.

Rules:

1. Same answer as the general path.  Every value the lane sends or logs is computed from the
   same configuration with the same rules (``Engine._upstream_headers``, ``_relay_head``,
   ``H1Server._send_head``, ``Engine.log_values``); ``tests/compat/test_lane_vs_nginx.py``
   compares it with nginx and with Tern's own ``TERN_LANE=off`` answer.
2. Early hand-over: a request the lane is not sure of goes to the general adapter
   (``H1Server``) with the same bytes, before anything is sent anywhere.  Late hand-over: once a
   peer is chosen or the request is written upstream, the lane builds the general path's
   objects for that point (the fast path's ``ProxyResume``) and the general path continues,
   reading the upstream answer from the bytes the lane had (they are fed to its parser).
3. Compiled per (listen socket, Host, path): the route is found once by the interpreter
   (a probe, with limits not counted) and kept when routing cached it as a plain proxy
   (``Interpreter._remember``: no captures, no server rewrites, no internal redirects, a location
   without rewrite, realip, allow/deny, auth_basic, try_files or internal).  Further paths on
   a (socket, Host) whose server the Host alone chose are routed by the location search alone
   (``Lane.host_route``).  ``TERN_LANE=off`` turns the lane off.
4. What is remembered per request bytes or per path (``Lane.parsed``, the Hosts' ``paths``)
   is admitted by ``_Admission``: everything while look-ups hit, one new entry in
   ``COLD_ADMIT`` while they do not (traffic where nothing repeats).

Eligible location (checked at compile time; else every request there takes the old paths):

- ``proxy_pass http://<upstream group>`` without variables, URI mapping by prefix/exact
  location (or no URI part), the group has ``keepalive`` and no ``hash`` key,
  ``proxy_http_version 1.1``, a constant ``proxy_set_header Connection`` that is not ``close``
  (``""`` usually); no ``proxy_method``, ``proxy_set_body``; ``proxy_pass_header`` not naming
  Server or Date;
- ``proxy_set_header`` values constant or made of ``$host $http_host $remote_addr $remote_port
  $proxy_add_x_forwarded_for $scheme $proxy_host $request_uri $uri $args $is_args
  $server_name $server_port $server_addr $request_method $server_protocol $http_<name>``;
- no ``limit_req``/``limit_conn``, ``gzip on``, ``expires``, ``proxy_intercept_errors``,
  ``ssl_verify_client``, and none of ``mirror auth_request sub_filter ssi add_before_body
  add_after_body limit_rate proxy_limit_rate proxy_cache proxy_store slice`` in the chain;
  ``add_header`` only with constant values and names outside nginx's own header block;
- access logs: ``off``, or static paths without ``if=``, in formats whose variables are all in
  ``LOG_VARIABLES`` below (``combined`` is).

Eligible request (else early hand-over): the connection is idle (nothing buffered, no request
in progress or queued); the bytes read are exactly one whole head with CR LF line ends, no tab,
no leading empty lines, within ``client_header_buffer_size``; ``GET``, ``HTTP/1.1``,
origin-form target; one valid Host; every other header an ordinary one (none of
Content-Length, Transfer-Encoding, Connection, Upgrade, Expect, Authorization,
If-*, Content-Range, no name with ``_`` or other invalid bytes); not the connection's last
request (keepalive_requests, keepalive_timeout 0) nor a draining worker; a live peer.

Late hand-over: no idle pooled connection to the chosen peer (the general path connects), a
failed or stalled write, proxy_read_timeout, EOF or error from upstream, and an answer that is
not plain: not ``HTTP/1.1``, 1xx/204/304, a status in ``proxy_next_upstream``, a head of
``proxy_buffer_size`` or more, no Content-Length or more bytes than it says, Transfer-Encoding,
a Connection header other than keep-alive/close, Location, Refresh, X-Accel-Redirect,
X-Accel-Limit-Rate, X-Accel-Charset, an empty Content-Type.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from . import accesslog, cookies, gzipfilter, responses, subfilter
from .engine import (
    ADD_HEADER_STATUSES,
    DEFAULT_HIDE,
    HOP_BY_HOP,
    PROXY_DROP,
    ProxyResume,
    _proxy_pass_of,
    _ProxyEff,
    _Run,
)
from .interp import RouteResult, escape_uri
from .io.upstream import UpstreamError
from .model import HeaderValue, LocationModifier, Template, Var
from .protocol import h1 as _h1
from .protocol._rules import valid_host
from .protocol.events import RequestHeaders
from .protocol.h1lane import read_head

if TYPE_CHECKING:
    from .engine import Engine
    from .io.logs import AccessLogger
    from .io.server import HttpConnection
    from .io.upstream import UpstreamConnection
    from .upstream.balancer import Attempt, Peer, PeerGroup

ENABLED = os.environ.get("TERN_LANE", "on") != "off"
"""``TERN_LANE=off`` in the environment: no request takes the lane (to compare)."""

_TRACE_PATH = os.environ.get("TERN_LANE_TRACE")
"""For tests: a file that gets one line per lane decision (``served``, ``early <why>``,
``late <why>``, each with the request target)."""

_log = logging.getLogger("tern")

ROUTES_MAX = 4096
_MAPPING_MODIFIERS = (LocationModifier.PREFIX, LocationModifier.PREFIX_NO_REGEX,
                      LocationModifier.EXACT)
ANSWERS_MAX = 512
"""Upstream response heads remembered per location (``_compile_answer``)."""
PARSED_MAX = 1024
"""Request heads remembered per lane (``Lane.parsed``)."""
TUNE_EVERY = 1024
"""Misses between two looks at a cache's hit rate (``_Admission``)."""
COLD_ADMIT = 64
"""A cache that does not pay takes one new entry in this many (``_Admission``)."""
_WAIT_BODY_MAX = 65536
"""A body larger than this that is not whole with its head is streamed by the general path."""

# header names the lane reads (ngx_http_headers_in kinds of protocol.h1)
_K_OTHER = 0
_K_HOST = 1
_K_CONN = 4

# upstream header actions
_A_PASS = 0
_A_DROP = 1
_A_LENGTH = 2
_A_TYPE = 3
_A_CONN = 5
_A_HAND = 6

Answer = tuple[int, int, bytes, bytes, bytes, bool]
"""(status, Content-Length, bytes before the Date value, after it with keep-alive, after it
with close, the upstream closes)."""

_UNSUPPORTED_DIRECTIVES = frozenset({
    "mirror", "auth_request", "sub_filter", "ssi", "add_before_body", "add_after_body",
    "limit_rate", "limit_rate_after", "proxy_limit_rate", "proxy_cache", "proxy_store", "slice",
})
HEADER_VARIABLES = frozenset({
    "host", "http_host", "remote_addr", "remote_port", "proxy_add_x_forwarded_for", "scheme",
    "proxy_host", "request_uri", "uri", "args", "is_args", "server_name", "server_port",
    "server_addr", "request_method", "server_protocol",
})
"""Variables a lane ``proxy_set_header`` value may use (plus ``$http_<name>``)."""
_CONN_VARIABLES = frozenset({"remote_addr", "remote_port", "proxy_add_x_forwarded_for",
                             "server_port", "server_addr"})
"""Variables whose value depends on the connection, not only on the request's bytes."""
LOG_VARIABLES = frozenset({
    "remote_addr", "remote_user", "time_local", "time_iso8601", "msec", "request", "status",
    "body_bytes_sent", "request_time", "upstream_addr", "upstream_status",
    "upstream_response_time", "request_uri", "uri", "args", "is_args", "host", "request_method",
    "scheme", "server_protocol", "server_name", "server_port", "proxy_host",
})
"""Variables a lane access-log format may use (plus ``$http_<name>``)."""


class _NotEligible(Exception):
    """Compile-time: the location (or request) is not for the lane; the message says why."""


# ---------------------------------------------------------------------------------------------
# compiled data


class LaneLoc:
    """One proxy location's compiled lane (per location chain)."""

    __slots__ = ("group", "keepalive", "max_tries", "ops", "drop", "pass_headers", "actions",
                 "hide", "next_statuses", "read_timeout", "buffer_size", "server_line",
                 "add_listed", "add_other", "logs", "hostport", "server_name", "answers",
                 "conn_vars", "single", "keep", "needs_uri", "const_ops")

    def __init__(self) -> None:
        self.group: PeerGroup
        self.keepalive = 0
        self.max_tries = 0
        self.ops: tuple[tuple[bytes, Any], ...] = ()
        """proxy_set_header lines in order: (whole line, None) or (``name: ``, value parts)."""
        self.drop: frozenset[str] = frozenset()
        self.pass_headers = True
        self.actions: dict[bytes, int] = {}
        self.hide: frozenset[bytes] = frozenset()
        self.next_statuses: frozenset[int] = frozenset()
        self.read_timeout = 60.0
        self.buffer_size = 4096
        self.server_line = b""
        self.add_listed = b""
        self.add_other = b""
        self.logs: tuple[tuple[str, bytes, Any], ...] = ()
        """Access logs: (path, head literal, steps) per ``_compile_line``."""
        self.hostport = ""
        self.server_name = ""
        self.answers: dict[bytes, Answer | str] = {}
        """Upstream head -> what the lane answers (``_compile_answer``)."""
        self.conn_vars = False
        """The upstream head uses a per-connection variable ($remote_addr...)."""
        self.needs_uri = False
        """$uri is in the upstream head or an access-log line (else a route's path is not
        read: routes without a URI part may be shared by paths, ``Lane.host_route``)."""
        self.const_ops: bytes | None = None
        """``ops`` when all are constant: their lines in one piece."""
        self.single: Peer | None = None
        """The only peer of a one-peer group (no Attempt needed: nginx's single-peer rules)."""
        self.keep: dict[bytes, bool] = {}
        """Client header name as received -> passed upstream (not in ``drop``); its names are
        those of ``_LOWER``, so it is bounded as that table is."""


class _PrefixMatcher:
    """ngx_http_core_find_location for a server whose locations are all prefix or exact, none
    nested, on a plain path's bytes: the exact match, else the longest prefix (None, with the
    router's answer left to a probe, when the path plus "/" names a proxied location: nginx's
    301).  Patterns are compared as UTF-8 bytes: a plain path is ASCII, so a pattern with other
    characters matches it neither way."""

    __slots__ = ("exact", "prefixes", "slashed")

    def __init__(self, exact: dict[bytes, Any], prefixes: list[tuple[bytes, Any]],
                 slashed: frozenset[bytes]) -> None:
        self.exact = exact
        self.prefixes = prefixes
        self.slashed = slashed
        """Proxied prefix patterns ending in "/", without that "/"."""

    @classmethod
    def of(cls, server: Any) -> _PrefixMatcher | bool:
        from .routing import _has_proxy_handler

        exact: dict[bytes, Any] = {}
        prefixes: list[tuple[bytes, Any]] = []
        slashed = set()
        for loc in server.locations:
            if loc.locations:
                return False
            pattern = loc.pattern.encode("utf-8", "surrogateescape")
            if loc.modifier is LocationModifier.EXACT:
                exact.setdefault(pattern, loc)
            elif loc.modifier in (LocationModifier.PREFIX, LocationModifier.PREFIX_NO_REGEX):
                prefixes.append((pattern, loc))
                if pattern.endswith(b"/") and _has_proxy_handler(loc):
                    slashed.add(pattern[:-1])
            elif loc.modifier is not LocationModifier.NAMED:
                return False  # regex locations: the router searches
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        return cls(exact, prefixes, frozenset(slashed))

    def find(self, path: bytes) -> Any:
        loc = self.exact.get(path)
        if loc is not None:
            return loc
        if path in self.slashed:
            return None  # maybe nginx's 301: the probe decides
        for pattern, loc in self.prefixes:
            if path.startswith(pattern):
                return loc
        return None


class LaneRoute:
    """One (socket, Host, path): its location's lane and the per-path values."""

    __slots__ = ("loc", "prefix", "host_var", "uri_b", "uri_log", "server")

    def __init__(self, loc: LaneLoc, prefix: bytes | None, host_var: bytes, uri: str | None,
                 server: Any = None, uri_b: bytes | None = None) -> None:
        self.loc = loc
        self.server = server
        """The server a probe found for this (socket, Host), when other paths may reuse it."""
        self.prefix = prefix
        """Upstream request-target before the arguments (a URI-mapping proxy_pass), or None:
        the client's target as sent."""
        self.host_var = host_var
        if uri is None:  # a plain path (``host_route``): ASCII, the same bytes either way
            assert uri_b is not None
            self.uri_b = self.uri_log = uri_b
        else:
            self.uri_b = uri.encode("latin-1", errors="replace") if uri_b is None else uri_b
            """$uri as a header value has it (latin-1, as ``state.eval`` values are sent)."""
            self.uri_log = uri.encode("utf-8", "surrogateescape")
            """$uri as the access log writes it."""


class _Host:
    """A (listen socket, Host) a probe found its server for, with no server name captures:
    further paths there are routed by the location search alone (``Lane.host_route``)."""

    __slots__ = ("server", "host_var", "matcher", "paths", "shared")

    def __init__(self, server: Any, host_var: bytes, matcher: _PrefixMatcher | bool) -> None:
        self.server = server
        self.host_var = host_var
        self.matcher = matcher
        self.shared: dict[int, LaneRoute] = {}
        """id(location) -> the route all its paths share (no URI part, $uri not read)."""
        self.paths: dict[bytes, LaneRoute | None] = {}
        """Path -> its route (None: not for the lane), at most ``ROUTES_MAX``."""


_UNPLAIN = re.compile(rb"[%#]|/[/.]")
"""What URI normalisation could change in a path (an escape, a dot segment, "//") or what
makes it more than a path; with ``isascii()``, a path without it is "plain"."""


# ---------------------------------------------------------------------------------------------
# variables (bytes in, as the general path's ``state.eval`` gives them encoded latin-1)


def _header(r: _Ctx, low: str) -> bytes | None:
    """``$http_<low>`` as ``RequestState.lookup`` has it: first value; Cookie joined with
    ``; ``, X-Forwarded-For with ``, ``."""
    found: bytes | None = None
    names = _LOWER
    sep = b"; " if low == "cookie" else b", " if low == "x-forwarded-for" else None
    for name, value in r.headers:
        if names.get(name) == low:
            if found is None:
                found = value
                if sep is None:
                    return found
            else:
                found += sep + value
    return found


def _var_fn(name: str) -> Callable[[_Ctx], bytes | None]:
    if name == "host":
        return lambda r: r.route.host_var
    if name == "http_host":
        return lambda r: r.host
    if name == "remote_addr":
        return lambda r: r.conn.remote[0].encode("latin-1")
    if name == "remote_port":
        return lambda r: str(r.conn.remote[1]).encode() if r.conn.remote[1] else b""
    if name == "proxy_add_x_forwarded_for":
        def xff(r: _Ctx) -> bytes:
            remote = r.conn.remote[0].encode("latin-1")
            got = _header(r, "x-forwarded-for")
            return got + b", " + remote if got else remote
        return xff
    if name == "scheme":
        return lambda r: b"http"
    if name == "request_uri":
        return lambda r: r.target
    if name == "uri":
        return lambda r: r.route.uri_b
    if name == "args":
        return lambda r: r.args
    if name == "is_args":
        return lambda r: b"?" if r.args else b""
    if name == "server_port":
        return lambda r: str(r.conn.local[1]).encode()
    if name == "server_addr":
        return lambda r: r.conn.local[0].encode("latin-1")
    if name == "request_method":
        return lambda r: b"GET"
    if name == "server_protocol":
        return lambda r: b"HTTP/1.1"
    if name.startswith("http_"):
        low = name[5:].replace("_", "-")
        return lambda r: _header(r, low)
    raise _NotEligible(f"variable ${name}")


_LOWER: dict[bytes, str] = {}
"""Client header names as received -> lower-case str (what the general path compares)."""
_KINDS: dict[bytes, int] = {}
"""Client header names in ``_LOWER`` -> their kind (``protocol.h1._name_info``): one look-up
per header for a name seen before (bounded as ``_LOWER`` is)."""


# ---------------------------------------------------------------------------------------------
# the per-engine table


class _Admission:
    """Which new entries a cache keyed by what requests carry takes (``Lane.parsed``, the
    Hosts' ``paths``): all while it pays, one in ``COLD_ADMIT`` while it does not.

    A request whose head (or path) was seen before costs a look-up; a new one costs the full
    reading, and remembering it costs too: an entry kept alive, a bigger working set for the
    CPU's caches, more for the cyclic GC to walk.  With traffic where nothing repeats (every
    URL distinct), remembering is all cost: measured with ``bench/proxy_h1.py --unique``,
    ~2.5 us of CPU per request.  Every ``TUNE_EVERY`` misses the hit rate decides; while cold,
    the sampled entries are what lets repeats show up again (a head repeated often is
    admitted soon and then hits)."""

    __slots__ = ("hits", "misses", "every")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.every = 1
        """1: take every new entry; ``COLD_ADMIT``: one in that many."""

    def admit(self) -> bool:
        """A miss: should its entry be remembered?  (Callers may count the miss and skip the
        call when ``misses % every`` says no and ``TUNE_EVERY`` is not reached: ``serve``.)"""
        misses = self.misses
        if misses >= TUNE_EVERY:
            # hot: at least one look-up in 16 hits (while cold, only sampled entries can)
            self.every = 1 if self.hits * 16 >= misses + self.hits else COLD_ADMIT
            self.hits = self.misses = 0
            return True
        return misses % self.every == 0

    def miss(self) -> bool:
        """Count a miss; should its entry be remembered?"""
        self.misses += 1
        return self.admit()


class Lane:
    """The lane of one engine: compiled routes, the access logger, counters."""

    def __init__(self, engine: Engine, logger: AccessLogger | None) -> None:
        self.engine = engine
        self.logger = logger
        self.routes: dict[tuple[object, ...], LaneRoute | None] = {}
        self.locs: dict[tuple[int, ...], LaneLoc | str] = {}
        self.hosts: dict[tuple[object, bytes], _Host] = {}
        """(socket address, Host) -> its server and routes, from a probe (``host_route``)."""
        self.matchers: dict[int, _PrefixMatcher | bool] = {}
        """id(server) -> its prefix matcher, or False (the router's search is needed)."""
        self.known: dict[int, tuple[LaneLoc, bytes | None, bytes] | bool] = {}
        """id(location) -> (its compiled lane, proxy_pass URI part, pattern) once a known
        route found it with a lane, False when it has none (``host_route``); locations live
        as long as the engine, and ``locs`` entries are never replaced."""
        self.idle: dict[Peer, collections.deque[UpstreamConnection]] = {}
        """Peer -> the pool's deque of idle connections to it (``UpstreamPool.idle_of``)."""
        self.parsed: dict[tuple[object, bytes], _Parsed | None] = {}
        """(socket address, request bytes) -> the request as the lane read it; the same bytes
        on the same socket are read the same way, so they are checked once."""
        self.parsed_admission = _Admission()
        self.paths_admission = _Admission()
        """For the Hosts' ``paths`` tables (all of them)."""
        self.served = 0
        self.handed: dict[str, int] = {}
        self._trace_fd: int | None = None
        http = engine.config.http
        self.templates: dict[str, Template] = {"combined": accesslog.COMBINED.format}
        self.escapes: dict[str, str] = {"combined": "default"}
        for f in (http.log_formats if http else ()):
            self.templates[f.name] = f.format
            self.escapes[f.name] = f.escape

    # -- counters and trace ---------------------------------------------------------------

    def count(self, why: str, target: bytes) -> None:
        self.handed[why] = self.handed.get(why, 0) + 1
        if _TRACE_PATH:
            self.trace(f"{why} {target.decode('latin-1')}")

    def trace(self, line: str) -> None:
        if self._trace_fd is None:
            self._trace_fd = os.open(_TRACE_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # type: ignore[arg-type]
        os.write(self._trace_fd, f"{os.getpid()} {line}\n".encode())

    # -- compile -----------------------------------------------------------------------------

    def route_for(self, conn: HttpConnection, host: bytes, target: bytes, path: bytes,
                  headers: list[tuple[bytes, bytes]],
                  key: tuple[object, ...] | None = None) -> LaneRoute | None:
        """The compiled route of a request on a (socket, Host) without a ``_Host`` entry:
        a probe (which makes the entry when the Host alone chose the server).  ``key``: its
        ``routes`` key, (socket address, Host, path)."""
        if key is None:
            key = (conn.local, host, path)
        route = self._probe_route(conn, host, target, headers)
        if route is not None and route.server is not None:
            if len(self.hosts) >= ROUTES_MAX:
                self.hosts.clear()
            server = route.server
            matcher = self.matchers.get(id(server))
            if matcher is None:
                matcher = self.matchers[id(server)] = _PrefixMatcher.of(server)
            hs = self.hosts[(conn.local, host)] = _Host(server, route.host_var, matcher)
            hs.paths[path] = route
            return route
        if len(self.routes) >= ROUTES_MAX:
            self.routes.clear()
        self.routes[key] = route
        return route

    def host_route(self, hs: _Host, conn: HttpConnection, host: bytes, target: bytes,
                   path: bytes, headers: list[tuple[bytes, bytes]]) -> LaneRoute | None:
        """The compiled route of a new path on a known (socket, Host): the location search,
        and the location's compiled lane if it has one, give the route without routing the
        request (what ``Interpreter._route_cached`` relies on: a plain-proxy location found
        without captures, in a server without rewrites, for a path normalisation leaves as
        it is); else a probe.  Remembered in the Host's table."""
        route: LaneRoute | None = None
        location = None
        if path.isascii() and _UNPLAIN.search(path) is None:
            matcher = hs.matcher
            if matcher:
                location = matcher.find(path)  # type: ignore[union-attr]
            else:
                lm = self.engine.interp.router.find_location(hs.server, path.decode("latin-1"))
                if not lm.captures and not lm.auto_redirect:
                    location = lm.location
        if location is not None:
            known = self.known.get(id(location))
            if known is None:
                known = self._know(hs.server, location)
                if known is not None:  # (None: its lane is not compiled yet, a probe does)
                    self.known[id(location)] = known
            if known:
                loc, pp_uri, pattern = known  # type: ignore[misc]
                if pp_uri is not None:
                    # a plain path is all characters ngx_escape_uri leaves alone
                    prefix = pp_uri + (path[len(pattern):] if path.startswith(pattern)
                                       else path)
                    route = LaneRoute(loc, prefix, hs.host_var, None, hs.server, path)
                elif loc.needs_uri:
                    route = LaneRoute(loc, None, hs.host_var, None, hs.server, path)
                else:  # nothing reads the path: one route for all of them
                    route = hs.shared.get(id(location))
                    if route is None:
                        route = hs.shared[id(location)] = LaneRoute(
                            loc, None, hs.host_var, None, hs.server, b"")
        if route is None:
            route = self._probe_route(conn, host, target, headers)  # (always remembered)
        elif not self.paths_admission.miss():
            return route
        paths = hs.paths
        if len(paths) >= ROUTES_MAX:
            paths.clear()
        paths[path] = route
        return route

    def _probe_route(self, conn: HttpConnection, host: bytes, target: bytes,
                     headers: list[tuple[bytes, bytes]]) -> LaneRoute | None:
        try:
            return self._probe(conn, host, target, headers)
        except _NotEligible as exc:
            if _TRACE_PATH:
                self.trace(f"compile-no {target.decode('latin-1')}: {exc}")
        except Exception:  # a compile bug must cost the lane, not the request
            _log.exception("lane: compile failed")
        return None

    def _know(self, server: Any,
              location: Any) -> tuple[LaneLoc, bytes | None, bytes] | bool | None:
        """``known``'s entry for a location (None: not compiled yet, ask again)."""
        plain = self.engine.interp._plain_proxy(server, location)
        if not plain:
            return False
        loc = self.locs.get(plain.key)
        if loc is None:
            return None
        if not isinstance(loc, LaneLoc):
            return False
        pp_uri = plain.pp.uri
        if pp_uri is None:
            return loc, None, b""
        if location.modifier not in _MAPPING_MODIFIERS:
            return False
        try:
            return loc, pp_uri.encode("latin-1"), location.pattern.encode("utf-8",
                                                                         "surrogateescape")
        except UnicodeEncodeError:
            return False

    def _probe(self, conn: HttpConnection, host: bytes, target: bytes,
               headers: list[tuple[bytes, bytes]]) -> LaneRoute:
        from .io.server import H1Exchange

        engine = self.engine
        interp = engine.interp
        if conn.settings.scheme != "http":
            raise _NotEligible("TLS")
        head = RequestHeaders(stream_id=0, method=b"GET", target=target, http_version="1.1",
                              raw_headers=tuple(headers), host=host, end_stream=True)
        ex = H1Exchange(conn, head)
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
            raise _NotEligible(f"route: {result.kind or 'none'}, not a cached plain proxy")
        if result.override_status is not None or result.upstream_uri is None:
            raise _NotEligible("error_page override or no upstream URI")
        chain = state.chain_key
        loc = self.locs.get(chain)
        if loc is None:
            try:
                loc = self._compile_loc(state, result)
            except _NotEligible as exc:
                loc = str(exc)
            self.locs[chain] = loc
        if isinstance(loc, str):
            raise _NotEligible(loc)
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
                raise _NotEligible("proxy_pass URI not latin-1") from None
        host_var = state.var("host").encode("latin-1", errors="replace")
        # the Host's server may serve further paths from the location search alone when
        # nothing but (socket, Host) chose it (no server name captures; _remember checked
        # the rest: no server rewrites, no client certificates)
        server = state.server if not state.server_caps else None
        return LaneRoute(loc, prefix, host_var, state.uri, server)

    def _compile_loc(self, state: Any, result: RouteResult) -> LaneLoc:
        engine = self.engine
        chain = state.scope_chain
        for scope in chain:
            for d in scope.other:
                if d.name in _UNSUPPORTED_DIRECTIVES:
                    raise _NotEligible(f"directive {d.name}")
        if gzipfilter.enabled(state):
            raise _NotEligible("gzip on")
        if subfilter.conf_of(state) is not None:
            raise _NotEligible("sub_filter")
        if cookies.rules_of(state) is not None:
            raise _NotEligible("proxy_cookie_*")  # Set-Cookie rewriting
        csconf = engine._charset_conf(state)
        if csconf is not None and csconf.charset is not None:
            # the charset filter rewrites Content-Type (an upstream's X-Accel-Charset, the
            # other way in, is an X-Accel-* header: the answer is handed over)
            raise _NotEligible("charset")
        if state.effective(lambda s: s.access.limit_req) or \
                state.effective(lambda s: s.access.limit_conn):
            raise _NotEligible("limit_req/limit_conn")
        if state.effective(lambda s: s.expires) is not None:
            raise _NotEligible("expires")
        if state.carried_headers:
            raise _NotEligible("carried headers")
        pp = _proxy_pass_of(state)
        assert pp is not None
        if pp.has_variables or pp.scheme != "http" or pp.unix_socket is not None:
            raise _NotEligible("proxy_pass with variables, https or unix socket")
        if pp.port is not None or pp.host not in engine.upstreams:
            raise _NotEligible("proxy_pass to a literal address, not an upstream group")
        up = engine.upstreams[pp.host]
        if not up.keepalive:
            raise _NotEligible("upstream without keepalive")
        if up.hash_key is not None:
            raise _NotEligible("hash balancing")
        if pp.uri is not None:
            location = state.location
            if location is None or location.modifier not in (
                    LocationModifier.PREFIX, LocationModifier.PREFIX_NO_REGEX,
                    LocationModifier.EXACT):
                raise _NotEligible("URI mapping in a regex location")
        pconf = _ProxyEff.of(state)
        if pconf.http_version != "1.1":
            raise _NotEligible("proxy_http_version 1.0")
        if pconf.method is not None or pconf.set_body is not None:
            raise _NotEligible("proxy_method / proxy_set_body")
        if pconf.intercept_errors:
            raise _NotEligible("proxy_intercept_errors")
        if pconf.pass_ & {b"server", b"date"}:
            raise _NotEligible("proxy_pass_header Server/Date")
        lane = LaneLoc()
        lane.group = engine.groups[pp.host]
        if lane.group.single:
            lane.single = lane.group.primary.peers[0]
        lane.keepalive = up.keepalive
        lane.max_tries = pconf.next_upstream_tries
        hostport = pp.host
        lane.hostport = hostport
        lane.server_name = state.server_name()
        # the upstream request head (Engine._upstream_headers)
        ops: list[tuple[bytes, Any]] = []
        conn_ok = False
        for low, name, tpl, const in pconf.set_plan:
            if const is None:
                if low == "connection":
                    raise _NotEligible("Connection set from variables")
                ops.append((name + b": ", _template_fns(tpl, lane)))
            elif const:
                if low == "connection" and const.lower() == b"close":
                    raise _NotEligible("Connection: close upstream")
                ops.append((name + b": " + const + b"\r\n", None))
            if low == "connection":
                conn_ok = True
        if "connection" not in pconf.overridden or not conn_ok:
            raise _NotEligible("no proxy_set_header Connection (nginx sends close)")
        if "host" not in pconf.overridden:
            ops.append((b"Host: " + hostport.encode("latin-1") + b"\r\n", None))
        lane.ops = _merge_consts(ops)
        if not lane.ops:
            lane.const_ops = b""
        elif len(lane.ops) == 1 and lane.ops[0][1] is None:
            lane.const_ops = lane.ops[0][0]
        lane.drop = pconf.overridden | PROXY_DROP
        lane.pass_headers = pconf.pass_request_headers
        lane.hide = pconf.hide_all
        lane.next_statuses = pconf.next_statuses
        lane.read_timeout = pconf.read_timeout
        lane.buffer_size = pconf.buffer_size
        lane.actions = {}
        # the response head (Engine._relay_head, _finish_headers)
        tokens = engine._server_tokens(state)
        lane.server_line = b"Server: " + responses.server_header(
            tokens, engine.product, engine.version) + b"\r\n"
        adds = state.effective(lambda s: s.add_headers) or ()
        listed: list[bytes] = []
        other: list[bytes] = []
        for h in adds:
            assert isinstance(h, HeaderValue)
            if any(isinstance(p, Var) for p in h.value.parts):
                raise _NotEligible("add_header with variables")
            if _h1._rank(h.name.encode("latin-1")) >= 0:
                raise _NotEligible(f"add_header {h.name}")
            value = state.eval(h.value)
            if not value:
                continue
            line = h.name.encode("latin-1") + b": " + value.encode(
                "latin-1", errors="replace") + b"\r\n"
            listed.append(line)
            if h.always:
                other.append(line)
        lane.add_listed = b"".join(listed)
        lane.add_other = b"".join(other)
        lane.logs = self._compile_logs(state)
        if any(step[5] == "uri" for _, _, steps in lane.logs for step in steps):
            lane.needs_uri = True
        return lane

    def _compile_logs(self, state: Any) -> tuple[tuple[str, bytes, Any], ...]:
        logger = self.logger
        if logger is None:
            raise _NotEligible("no access logger")
        entries = state.effective(lambda s: s.logging.access_logs)
        if entries is None:
            entries = logger.default
        out: list[tuple[str, bytes, Any]] = []
        for entry in entries:
            if entry.path is None:
                break  # access_log off
            if not entry.path.is_static or entry.condition is not None:
                raise _NotEligible("access_log with variables or if=")
            if entry.format not in logger.formats:
                continue  # AccessLogger.write skips an unknown format
            tpl = self.templates.get(entry.format)
            if tpl is None:
                raise _NotEligible(f"log format {entry.format}")
            head, steps = _compile_line(tpl, self.escapes.get(entry.format, "default"))
            out.append((entry.path.raw, head, steps))
        return tuple(out)


def _template_fns(tpl: Template, lane: LaneLoc) -> tuple[Any, ...]:
    parts: list[Any] = []
    for p in tpl.parts:
        if isinstance(p, Var):
            name = p.name
            if name == "proxy_host":
                parts.append(lane.hostport.encode("latin-1"))
            elif name == "server_name":
                parts.append(lane.server_name.encode("latin-1", errors="replace"))
            elif name in HEADER_VARIABLES or name.startswith("http_"):
                if name in _CONN_VARIABLES:
                    lane.conn_vars = True
                if name == "uri":
                    lane.needs_uri = True
                parts.append(_var_fn(name))
            else:
                raise _NotEligible(f"proxy_set_header variable ${name}")
        else:
            parts.append(p.text.encode("latin-1", errors="replace"))
    return tuple(parts)


def _merge_consts(ops: list[tuple[bytes, Any]]) -> tuple[tuple[bytes, Any], ...]:
    out: list[tuple[bytes, Any]] = []
    for line, fns in ops:
        if fns is None and out and out[-1][1] is None:
            out[-1] = (out[-1][0] + line, None)
        else:
            out.append((line, fns))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# per connection: the slim request parser


class LaneParser:
    """httptools callbacks for the lane (one per client connection, reused)."""

    __slots__ = ("parser", "url", "headers", "complete")

    def __init__(self) -> None:
        self.parser = HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url = url  # (a whole head is fed at once: llhttp gives the target in one piece)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # (trailing spaces: ``serve``)

    def on_message_complete(self) -> None:
        self.complete = True


_NAME_INFO = _h1._NAME_INFO
_name_info = _h1._name_info


def _early(lane: Lane, why: str, data: bytes) -> bool:
    """Count an early hand-over (and trace it for tests); False: not taken."""
    lane.handed[why] = lane.handed.get(why, 0) + 1
    if _TRACE_PATH:
        words = data.split(b"\r\n", 1)[0].split(b" ")
        target = words[1] if len(words) > 1 else words[0]
        lane.trace(f"{why} {target.decode('latin-1')}")
    return False


def serve(lane: Lane, conn: HttpConnection, data: bytes) -> bool:
    """Serve ``data`` (one whole request head) on the lane; False: not taken, nothing done
    (the caller gives the bytes to the general adapter)."""
    settings = conn.settings
    if conn.served + 1 >= settings.keepalive_requests or settings.keepalive_timeout <= 0 \
            or conn.engine_ref.draining:
        return _early(lane, "early last-request", data)
    key = (conn.local, data)
    hit = lane.parsed.get(key, False)
    if hit is not False:
        lane.parsed_admission.hits += 1
        if hit is None:
            return _early(lane, "early not-eligible", data)
        return _Request(lane, conn, hit).start()  # type: ignore[arg-type]
    # one whole head (it ends with the first CR LF CR LF), no tab, within the buffer
    n = len(data)
    if n > settings.limits.client_header_buffer_size or data.find(b"\r\n\r\n") != n - 4 \
            or data.find(b"\t") >= 0:
        return _early(lane, "early bytes", data)
    if data[:4] != b"GET ":  # (what llhttp would read as the method: GET if it starts so)
        return _early(lane, "early method", data)
    lp = conn.lane_parser
    if lp is None:
        lp = conn.lane_parser = LaneParser()
    headers = lp.headers = []
    lp.complete = False
    try:
        lp.parser.feed_data(data)
    except (HttpParserError, HttpParserUpgrade):
        conn.lane_parser = None
        return _early(lane, "early parser", data)
    if not lp.complete:
        conn.lane_parser = None  # llhttp waits for a body this module does not read
        return _early(lane, "early body", data)
    target = lp.url
    # llhttp read a version: 1.1 if the request line is "GET <target> HTTP/1.1" (else it is
    # 1.1 in another form, or not 1.1: the general path decides)
    end = len(target) + 4
    if data[end:end + 11] != b" HTTP/1.1\r\n" or target[:1] != b"/":
        return _early(lane, "early version-or-target", data)
    if data.find(b" \r\n") >= 0:  # llhttp keeps a value's trailing spaces, nginx does not
        headers[:] = [(name, value.rstrip(b" ")) for name, value in headers]
    host: bytes | None = None
    close = False
    kinds = _KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = _NAME_INFO.get(name)
            if kind is None:
                kind = _name_info(name)
            lower = _LOWER
            if name not in lower:
                if len(lower) >= 4096:
                    return _early(lane, "early names-cache-full", data)
                lower[name] = name.decode("latin-1").lower()
            kinds[name] = kind
        if kind == _K_OTHER:
            continue
        if kind == _K_CONN:  # as protocol.h1._Head.add: the last one that says something
            low = value.lower()
            if low.find(b"close") >= 0:
                close = True
            elif low.find(b"keep-alive") >= 0:
                close = False
            continue
        if kind != _K_HOST:
            return _early(lane, "early header " + _LOWER[name], data)
        if host is not None:
            return _early(lane, "early host", data)
        host = value
    if close:
        conn.lane_parser = None  # llhttp takes no further message after this one
    if host is None:
        return _early(lane, "early host", data)
    q = target.find(b"?")
    path = target if q < 0 else target[:q]
    hs = lane.hosts.get((conn.local, host))  # (a Host a probe found is a valid one)
    if hs is not None:
        route = hs.paths.get(path, False)
        if route is False:
            route = lane.host_route(hs, conn, host, target, path, headers)
        else:
            lane.paths_admission.hits += 1
    else:
        if not valid_host(host):
            return _early(lane, "early host", data)
        rkey = (conn.local, host, path)
        route = lane.routes.get(rkey, False)
        if route is False:
            route = lane.route_for(conn, host, target, path, headers, rkey)
    if route is None:
        if lane.parsed_admission.miss():
            if len(lane.parsed) >= PARSED_MAX:
                lane.parsed.clear()
            lane.parsed[key] = None  # the same bytes again: handed over without parsing
        return _early(lane, "early not-eligible", data)
    parsed = _Parsed(route, target, q, host, headers, close)
    if not route.loc.conn_vars:
        parsed.head = _head_bytes(parsed, conn)
    adm = lane.parsed_admission
    misses = adm.misses = adm.misses + 1
    if (misses % adm.every == 0 or misses >= TUNE_EVERY) and adm.admit():
        parsed_all = lane.parsed
        if len(parsed_all) >= PARSED_MAX:
            parsed_all.clear()
        parsed_all[key] = parsed
    return _Request(lane, conn, parsed).start()


class _Parsed:
    """A request head as the lane read it (``Lane.parsed``)."""

    __slots__ = ("route", "target", "args", "host", "headers", "close", "head", "logs")

    def __init__(self, route: LaneRoute, target: bytes, q: int, host: bytes,
                 headers: list[tuple[bytes, bytes]], close: bool) -> None:
        self.route = route
        self.target = target
        self.args = target[q + 1:] if q >= 0 else b""
        self.host = host
        self.headers = headers
        self.close = close
        """The client said ``Connection: close``: the answer says so and the connection ends."""
        self.head: bytes | None = None
        """The upstream request head, when it does not depend on the connection."""
        self.logs: tuple[tuple[str, tuple[Any, ...]], ...] | None = None
        """Its access-log lines with the request's own values in (``_log_plans``)."""


class _Request:
    """One request on the lane, from its head to its log line."""

    __slots__ = ("lane", "conn", "route", "p", "target", "start_time", "sid", "attempt",
                 "peer", "t0", "up", "buf", "close", "idle")

    def __init__(self, lane: Lane, conn: HttpConnection, p: _Parsed) -> None:
        self.lane = lane
        self.conn = conn
        self.p = p
        self.route = p.route
        self.target = p.target
        self.close = p.close
        self.buf = b""
        self.up: UpstreamConnection | None = None

    def start(self) -> bool:
        lane, conn, loc = self.lane, self.conn, self.route.loc
        now = time.monotonic()  # (the wall-clock start is derived when needed: ``_wall_start``)
        peer = loc.single
        if peer is not None:
            # Attempt.next for a one-peer group, without the Attempt (made if handed over)
            if peer.down or (peer.max_conns and peer.conns >= peer.max_conns):
                return _early(lane, "early no-live-peer", b"x " + self.target)
            peer.conns += 1
            self.attempt: Attempt | None = None
        else:
            attempt = loc.group.begin(client_addr=conn.remote[0], max_tries=loc.max_tries)
            peer = attempt.next(now)
            if peer is None:
                # "no live upstreams": the general path answers it (nothing changed)
                return _early(lane, "early no-live-peer", b"x " + self.target)
            self.attempt = attempt
        self.peer = peer
        self.t0 = now
        self.sid = conn.lane_begin(self.close)
        idle = lane.idle.get(peer)
        if idle is None:
            idle = lane.idle[peer] = lane.engine.pool.idle_of(peer.host, peer.port)
        self.idle = idle
        while idle:  # UpstreamPool.take_idle
            up = idle.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                up.reused = True
                break
        else:
            self._hand_over("late no-idle-connection", None, None, 0.0)
            return True
        self.up = up
        head = self.p.head
        if head is None:
            head = _head_bytes(self.p, conn)
        # UpstreamConnection.lane_send, its checks made just above
        up.got_bytes = False
        up.received = 0
        up._lane = self.on_upstream
        up.transport.write(head)  # type: ignore[union-attr]
        if not up._writable:
            self._hand_over("late write-stalled", up, None, loc.read_timeout)
            return True
        conn.fast_timer(loc.read_timeout, self.on_timeout)
        return True

    # -- the upstream answer ----------------------------------------------------------------

    def on_timeout(self) -> None:
        self._hand_over("late read-timeout", self.up, None, 0.0)

    def on_upstream(self, data: bytes | None) -> None:
        """Bytes from upstream; None: EOF or the connection is lost."""
        if data is None:
            self.conn.fast_timer_cancel()
            self._hand_over("late upstream-eof", self.up, None, self.route.loc.read_timeout)
            return
        buf = self.buf = self.buf + data if self.buf else data
        loc = self.route.loc
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) >= loc.buffer_size:
                self._late("late head-too-big")
            return
        head_end = end + 4
        head = buf[:head_end]
        answer = loc.answers.get(head)
        if answer is None:
            answer = _compile_answer(loc, head)
        if answer.__class__ is str:
            self._late(answer)  # type: ignore[arg-type]
            return
        status, length, before_date, keep, close, up_close = answer  # type: ignore[misc]
        have = len(buf) - head_end
        if have != length:
            if have > length:
                self._late("late extra-bytes")
            elif length > _WAIT_BODY_MAX:
                self._late("late body-not-whole")  # the general path streams it
            return  # a small rest of the body is on its way
        conn = self.conn
        up = self.up
        assert up is not None
        lane = self.lane
        if up_close:
            up.lane_end()
            up.abort()
        else:
            up.lane_park(self.idle, loc.keepalive)
        lane.served += 1
        if _TRACE_PATH:
            lane.trace(f"served {self.target.decode('latin-1')}")
        # the client's response (the order of H1Server._send_head), head and body in one write
        now = time.time()
        date = _DATE
        if date[0] != int(now):
            date = _DATE[:] = [int(now), responses.http_date(now)]
        conn.lane_answer(self.sid, b"".join((before_date, date[1],  # type: ignore[arg-type]
                                             close if self.close else keep, buf[head_end:])))
        peer = self.peer
        attempt = self.attempt
        if attempt is None:
            peer.conns -= 1  # PeerGroup.success of a single-peer group
        else:
            attempt.success(time.monotonic())
        if loc.logs:
            try:
                self._log(status, length, time.monotonic() - self.t0)
            except Exception:
                _log.exception("lane: access log failed")
        conn.lane_done(self.close)

    def _late(self, why: str) -> None:
        self.conn.fast_timer_cancel()
        self._hand_over(why, self.up, None, self.route.loc.read_timeout)

    def _hand_over(self, why: str, up: UpstreamConnection | None, error: UpstreamError | None,
                   read_timeout: float) -> None:
        """The general path continues: its objects for this point (what the fast path would
        have), the upstream bytes read so far given back to the connection's parser."""
        lane, conn = self.lane, self.conn
        lane.count(why, self.target)
        if up is not None:
            up.lane_fallback(self.buf)
        engine = lane.engine
        p = self.p
        head = RequestHeaders(stream_id=self.sid, method=b"GET", target=self.target,
                              http_version="1.1", raw_headers=tuple(p.headers),
                              host=p.host, end_stream=True, keep_alive=not self.close)
        attempt = self.attempt
        if attempt is None:  # the one-peer shortcut: the Attempt ``next`` would have left
            attempt = self.route.loc.group.begin(client_addr=conn.remote[0],
                                                 max_tries=self.route.loc.max_tries)
            attempt.current = self.peer
            attempt.tried.append(self.peer)
            self.attempt = attempt
        ex = conn.lane_exchange(head)
        run = _Run(_wall_start(self, time.time()))
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
            conn.resume_general(ex, ProxyResume(None, run, None, raised=exc))
            return
        plan.attempt = attempt
        conn.resume_general(ex, ProxyResume(result, run, plan, self.peer, self.t0, up, error,
                                            read_timeout))

    # -- log phase ----------------------------------------------------------------------------

    def _log(self, status: int, body_bytes: int, up_time: float) -> None:
        logger = self.lane.logger
        assert logger is not None
        end = time.time()
        _wall_start(self, end)  # (the HTTP/2 lane's requests are logged here too)
        v = _LogValues(self, status, body_bytes, up_time, end)
        p = self.p
        plans = p.logs
        if plans is None:
            plans = p.logs = _log_plans(self, v)
        remote = None
        for path, plan in plans:
            out = []
            for piece in plan:
                cls = piece.__class__
                if cls is bytes:
                    out.append(piece)
                elif cls is int:  # the commonest values, inline
                    if piece == _L_STATUS:
                        out.append(b"%03d" % status)
                    elif piece == _L_BYTES:
                        out.append(b"%d" % body_bytes)
                    elif piece == _L_TIME_LOCAL:
                        out.append(_time_local(self.start_time))
                    else:  # _L_REMOTE_ADDR (an address: nothing to escape)
                        if remote is None:
                            remote = self.conn.remote[0].encode()
                        out.append(remote)
                else:
                    out.append(_dynamic(piece, v))
            fd = logger._fd(path)
            if fd is None:
                continue
            try:
                os.write(fd, b"".join(out))
            except OSError:
                logger.dropped += 1


def _wall_start(r: Any, wall_now: float) -> float:
    """A lane request's start on the wall clock (for $time_local, $request_time, a
    hand-over's run): ``wall_now`` less the monotonic time since its ``t0``; kept as its
    ``start_time``."""
    start = r.start_time = wall_now - (time.monotonic() - r.t0)
    return start  # type: ignore[no-any-return]


def _dynamic(step: tuple[Any, ...], v: _LogValues) -> bytes:
    value = step[0](v)
    return step[2] if value is None else step[1](value)


def _log_plans(r: _Request, v: _LogValues) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """The request's log lines with what depends only on its bytes filled in (escaped) and
    merged with the literals; the rest (time, status, sizes, peer...) stays a step."""
    plans = []
    for path, head, steps in r.route.loc.logs:
        plan: list[Any] = [head]
        for get, esc, missing, lit, static, name in steps:
            if static:
                value = get(v)
                text = missing if value is None else esc(value)
                if plan[-1].__class__ is bytes:
                    plan[-1] += text + lit
                else:
                    plan.append(text + lit)
                continue
            code = _L_CODES.get(name)
            plan.append((get, esc, missing) if code is None else code)
            plan.append(lit)
        plans.append((path, tuple(p for p in plan if p != b"")))
    return tuple(plans)


class _LogValues:
    """One request's values for the log phase (``Engine.log_values``)."""

    __slots__ = ("r", "status", "length", "up_time", "end")

    def __init__(self, r: _Request, status: int, length: int, up_time: float,
                 end: float) -> None:
        self.r = r
        self.status = status
        self.length = length
        self.up_time = up_time
        self.end = end


def _log_get(name: str) -> Callable[[_LogValues], bytes | None]:
    """The value of a log variable as ``Engine.log_values``' getter gives it, as bytes (str
    values encoded as ``accesslog`` encodes them)."""
    if name == "remote_addr":
        return lambda v: v.r.conn.remote[0].encode()
    if name == "remote_user":
        return lambda v: None
    if name == "time_local":
        return lambda v: _time_local(v.r.start_time)
    if name == "time_iso8601":
        return lambda v: accesslog.time_iso8601(v.r.start_time).encode()
    if name == "msec":
        return lambda v: accesslog.msec(v.end).encode()
    if name == "request":
        return lambda v: b"GET " + v.r.target + b" HTTP/1.1"
    if name == "status":
        return lambda v: b"%03d" % v.status
    if name == "body_bytes_sent":
        return lambda v: b"%d" % v.length
    if name == "request_time":
        return lambda v: accesslog.request_time(v.r.start_time, v.end).encode()
    if name == "upstream_addr":
        return lambda v: v.r.peer.address.encode()
    if name == "upstream_status":
        return lambda v: b"%d" % v.status
    if name == "upstream_response_time":
        return lambda v: b"%.3f" % v.up_time
    if name == "request_uri":
        return lambda v: v.r.target
    if name == "uri":
        return lambda v: v.r.route.uri_log
    if name == "args":
        return lambda v: None if not v.r.p.args and b"?" not in v.r.target else v.r.p.args
    if name == "is_args":
        return lambda v: b"?" if v.r.p.args else b""
    if name == "host":
        return lambda v: v.r.route.host_var
    if name == "request_method":
        return lambda v: b"GET"
    if name == "scheme":
        return lambda v: b"http"
    if name == "server_protocol":
        return lambda v: b"HTTP/1.1"
    if name == "server_name":
        return lambda v: v.r.route.loc.server_name.encode("utf-8", "surrogateescape")
    if name == "server_port":
        return lambda v: str(v.r.conn.local[1]).encode()
    if name == "proxy_host":
        return lambda v: v.r.route.loc.hostport.encode("utf-8", "surrogateescape")
    if name.startswith("http_"):
        want = name[5:].replace("_", "-")

        def header(v: _LogValues) -> bytes | None:
            for k, value in v.r.p.headers:
                if _LOWER[k] == want:
                    return value
            return None
        return header
    raise _NotEligible(f"log variable ${name}")


def _compile_line(tpl: Template, escape: str) -> tuple[bytes, tuple[Any, ...]]:
    """A log format as ``accesslog.compile_template`` compiles it: the head literal, then per
    variable (getter, escaper, what "not found" writes, the literal after it)."""
    if escape == "default":
        esc, missing = accesslog.escape_default, b"-"
    elif escape == "json":
        esc, missing = accesslog.escape_json, b""
    elif escape == "none":
        esc, missing = _same, b""
    else:
        raise _NotEligible(f"log escape={escape}")
    head = b""
    steps: list[list[Any]] = []
    for part in tpl.parts:
        if isinstance(part, Var):
            raw = part.name in accesslog.LOG_VARIABLES
            name = part.name.lower()
            steps.append([_log_get(name), _same if raw else esc, missing, b"",
                          name not in _LOG_DYNAMIC, name])
        else:
            text = part.text.encode("utf-8", "surrogateescape")
            if steps:
                steps[-1][3] += text
            else:
                head += text
    if steps:
        steps[-1][3] += b"\n"
    else:
        head += b"\n"
    return head, tuple(tuple(st) for st in steps)


_LOG_DYNAMIC = frozenset({"remote_addr", "time_local", "time_iso8601", "msec", "status",
                          "body_bytes_sent", "request_time", "upstream_addr", "upstream_status",
                          "upstream_response_time", "server_port"})
"""Log variables whose value is not a function of the request's bytes and route alone."""
_TIME_LOCAL: list[Any] = [None, b""]
_DATE: list[Any] = [None, b""]
"""The second and its Date value (``responses.http_date``), as ``_TIME_LOCAL``."""
_L_STATUS, _L_BYTES, _L_TIME_LOCAL, _L_REMOTE_ADDR = 1, 2, 3, 4
_L_CODES = {"status": _L_STATUS, "body_bytes_sent": _L_BYTES, "time_local": _L_TIME_LOCAL,
            "remote_addr": _L_REMOTE_ADDR}
"""Dynamic log values ``_Request._log`` writes inline (never escaped: digits, a time, an
address)."""


def _time_local(ts: float) -> bytes:
    """``$time_local`` as bytes, formatted once per second."""
    sec = int(ts // 1)
    if _TIME_LOCAL[0] != sec:
        _TIME_LOCAL[0] = sec
        _TIME_LOCAL[1] = accesslog.time_local(ts).encode()
    return _TIME_LOCAL[1]  # type: ignore[no-any-return]


def _same(value: bytes) -> bytes:
    return value


def _head_bytes(p: _Parsed, conn: HttpConnection) -> bytes:
    """The upstream request head (``Engine._proxy_plan`` with ``_upstream_headers``)."""
    route = p.route
    loc = route.loc
    if route.prefix is None:
        parts = [b"GET ", p.target, b" HTTP/1.1\r\n"]
    elif p.args:
        parts = [b"GET ", route.prefix, b"?", p.args, b" HTTP/1.1\r\n"]
    else:
        parts = [b"GET ", route.prefix, b" HTTP/1.1\r\n"]
    const = loc.const_ops
    if const is not None:
        parts.append(const)
    else:
        ctx: _Ctx | None = None
        for line, fns in loc.ops:
            if fns is None:
                parts.append(line)
                continue
            if ctx is None:
                ctx = _Ctx(p, conn)
            value = b"".join([f if f.__class__ is bytes else (f(ctx) or b"") for f in fns])
            if value:
                parts += (line, value, b"\r\n")
    if loc.pass_headers:
        keep = loc.keep
        for name, value in p.headers:
            passed = keep.get(name)
            if passed is None:
                passed = keep[name] = _LOWER[name] not in loc.drop
            if passed:
                parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class _Ctx:
    """What a variable of a lane header template reads."""

    __slots__ = ("route", "conn", "headers", "host", "target", "args")

    def __init__(self, p: _Parsed, conn: HttpConnection) -> None:
        self.route = p.route
        self.conn = conn
        self.headers = p.headers
        self.host = p.host
        self.target = p.target
        self.args = p.args


def _rank_key(item: tuple[int, bytes, bytes]) -> int:
    return item[0]


def _action(loc: LaneLoc, name: bytes) -> int:
    """What the lane does with an upstream header (Engine._relay_head's rules)."""
    low = name.lower()
    if low == b"connection":
        return _A_CONN
    if low in (b"transfer-encoding", b"location", b"refresh", b"x-accel-redirect",
               b"x-accel-limit-rate", b"x-accel-charset"):
        return _A_HAND  # (the general path applies them unless proxy_ignore_headers says not)
    if low in HOP_BY_HOP or low in loc.hide:
        return _A_DROP
    if low == b"content-length":
        return _A_LENGTH
    if low == b"content-type":
        return _A_TYPE
    if low in (b"server", b"date") or low in DEFAULT_HIDE:
        return _A_HAND
    return _A_PASS


def _compile_answer(loc: LaneLoc, head: bytes) -> Answer | str:
    """What the lane sends for an upstream response head (``Engine._relay_head`` then
    ``H1Server._send_head``), or why it hands the answer over; remembered per location, as
    the same head gives the same answer (the Date line is added per response)."""
    answer = _answer(loc, head)
    answers = loc.answers
    if len(answers) >= ANSWERS_MAX:
        answers.clear()
    answers[head] = answer
    return answer


def _answer(loc: LaneLoc, head: bytes) -> Answer | str:
    if len(head) >= loc.buffer_size:
        return "late head-too-big"
    got = read_head(head)
    if not got:
        return "late not-plain-head"
    status, reason, uheaders, _ = got  # type: ignore[misc]
    if status < 200 or status == 204 or status == 304 or status in loc.next_statuses:
        return f"late status-or-size {status}"
    fixed: list[tuple[int, bytes, bytes]] = []
    rest: list[bytes] = []
    length = -1
    up_close = False
    for name, value in uheaders:
        act = _action(loc, name)
        if act == _A_PASS:
            rest += (name, b": ", value, b"\r\n")
        elif act == _A_LENGTH:
            if length >= 0 or not value.isdigit():
                return "late content-length"
            length = int(value)
            fixed.append((3, name, value))
        elif act == _A_TYPE:
            if not value.strip():
                return "late empty-content-type"
            fixed.append((2, name, value))
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
    if reason:
        first = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    else:
        first = b"HTTP/1.1 %03d\r\n" % status
    fixed.sort(key=_rank_key)
    mid = b"".join(name + b": " + value + b"\r\n" for _, name, value in fixed)
    tail = b"".join(rest) + (loc.add_listed if status in ADD_HEADER_STATUSES
                             else loc.add_other) + b"\r\n"
    return (status, length, first + loc.server_line + b"Date: ",
            b"\r\n" + mid + b"Connection: keep-alive\r\n" + tail,
            b"\r\n" + mid + b"Connection: close\r\n" + tail, up_close)


def attach(engine: Engine, logger: AccessLogger | None) -> Lane | None:
    """The lane for ``engine`` (None when ``TERN_LANE=off``)."""
    return Lane(engine, logger) if ENABLED else None
