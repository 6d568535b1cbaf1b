"""Reference interpreter of nginx's request routing phases, for explaining and testing.

It walks the model directly (no compilation), so it is slow and exact; ``tern route`` uses it and
the run-time engine is checked against it. It stops where a response would need a peer
(``proxy_pass``) and reports that instead.

Rules (nginx's phases, ngx_http_core_module + ngx_http_rewrite_module):

1. Server rewrite phase runs the server's rewrite program, on the first pass and after every
   internal redirect (try_files fallback, index, error_page).
2. Find location; an external request that lands in an ``internal`` location gets 404.
3. Location rewrite phase runs the location's program: ``rewrite`` (flags last/break/redirect/
   permanent; without a flag processing continues and a changed URI triggers a new location search
   at the end of the phase), ``return``, ``set``, ``break``, ``if`` (a true ``if`` runs its own
   program and its scope becomes the request's configuration; processing then continues after it).
4. Each URI change (rewrite ... last, changed URI at the end of the rewrite phase, an internal
   redirect) costs one of 10 allowed changes; the 11th is a 500.
5. ``try_files`` (precontent) tests candidates on disk under root/alias; the fallback is a URI
   (internal redirect), a named location, or ``=code``.
6. Content: ``proxy_pass`` stops the walk; otherwise the static module: a URI ending in ``/`` goes
   to ``index`` (internal redirect to the first existing index file; 404 when the directory is
   missing, 403 when it exists), else the file (200), a directory (301) or 404.
7. ``error_page`` applies to statuses nginx generates itself (``return`` without a body, static
   errors), once unless ``recursive_error_pages on``; a URI target is an internal redirect
   (method becomes GET), ``@name`` a named location, a URL a 302.
8. Internal redirects to a URI (try_files fallback, error_page, X-Accel-Redirect) take the
   target's arguments, none when it has no ``?``; ``index`` keeps the request's.
9. realip runs at post-read with the server's settings and again at preaccess with the
   location's, until it has changed the address once (``$realip_remote_addr`` keeps the
   connection's).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote_plus

from . import client_cert, geo, securelink
from .access import (
    CompiledRule,
    UserFileError,
    check_basic,
    check_rules,
    compile_networks,
    compile_rules,
    forwarded_addr,
)
from .model import (
    Break,
    Condition,
    CondOp,
    Config,
    If,
    Location,
    LocationModifier,
    Map,
    MapKeyKind,
    ProxyPass,
    Return,
    Rewrite,
    RewriteFlag,
    Scope,
    Server,
    SetVar,
    Template,
    Var,
)
from .regex import compile_pcre
from .routing import BadRequest, Router, find_named, normalize_host, normalize_uri

MAX_URI_CHANGES = 10
DEFAULT_MAX_BODY = 1024 * 1024
"""nginx's default client_max_body_size (1m)."""


@dataclass(slots=True)
class Step:
    """One thing that happened while routing."""

    kind: str
    """``server``, ``location``, ``rewrite``, ``return``, ``if``, ``try_files``, ``index``,
    ``error_page``, ``proxy``, ``static``, ``internal``..."""
    detail: str
    uri: str = ""
    location: Location | None = None


@dataclass(slots=True)
class RouteRequest:
    """What a client sends, as far as routing cares."""

    method: str = "GET"
    target: str = "/"
    """Request target: path and query, still encoded."""
    host: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case header names."""
    scheme: str = "http"
    local_addr: str = "127.0.0.1"
    local_port: int = 80
    remote_addr: str = "127.0.0.1"
    remote_port: int = 0
    http_version: str = "1.1"
    raw_headers: tuple[tuple[bytes, bytes], ...] = ()
    """The client's header fields as received (passed upstream)."""
    content_length: int | None = None
    """Declared request body size (checked against client_max_body_size)."""
    var_hook: Callable[[str], str | None] | None = None
    """Variables the caller provides (``$status``, ``$upstream_addr``...); None = not known."""
    auth_outcomes: list[AuthOutcome] = field(default_factory=list)
    """Answers of the auth_request subrequests made so far, in the order the walk meets them
    (the engine routes again with one more each time; see ``_NeedAuth``)."""
    subrequest: bool = False
    """An auth_request subrequest: internal, GET, no access phase, no limits."""
    prior: RequestState | None = None
    """The walk this one repeats (after a subrequest): limits counted there stay counted."""


@dataclass(slots=True)
class RouteResult:
    """Outcome of routing one request."""

    server: Server | None = None
    server_reason: str = ""
    first_location: Location | None = None
    first_reason: str = ""
    location: Location | None = None
    """The location that answers (after internal redirects)."""
    location_reason: str = ""
    status: int | None = None
    """Status decided without a peer, or None when the request is proxied."""
    redirect_to: str | None = None
    """Location header of a redirect decided by the config."""
    body: str | None = None
    """Body of ``return code text``."""
    proxy_url: str | None = None
    """``proxy_pass`` URL (as written) when the request is proxied."""
    upstream_uri: str | None = None
    """Request target sent upstream (nginx's proxy_pass URI mapping), when static."""
    uri: str = ""
    """Final ``$uri``."""
    steps: list[Step] = field(default_factory=list)
    redirects: list[dict[str, object]] = field(default_factory=list)
    """Internal redirects followed: kind, uri, from/to locations."""
    unknown_variables: set[str] = field(default_factory=set)
    kind: str = ""
    """How the response is made: ``return``, ``redirect``, ``proxy``, ``static``, ``autoindex``,
    ``error`` (a status nginx generates), ``close`` (444), ``handler`` (unsupported handler),
    ``none`` (nothing listens)."""
    file_path: str | None = None
    """For ``static``: the file to send."""
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    """Headers the routing decided (``WWW-Authenticate``)."""
    override_status: int | None = None
    """``error_page ... =code`` (or the original status) that replaces a proxied answer's."""
    state: RequestState | None = None
    auth: _NeedAuth | None = None
    """kind ``auth_request``: the subrequest to make before routing again."""
    """The request's state after routing (variables, scopes), for the content phase."""


class _Finish(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


@dataclass(slots=True)
class AuthOutcome:
    """What an auth_request subrequest answered (``Engine._auth_request``)."""

    status: int
    www_authenticate: str | None = None
    """The subrequest's WWW-Authenticate, copied to a 401."""
    variables: dict[str, str] = field(default_factory=dict)
    """auth_request_set results."""


class _NeedAuth(Exception):
    """The walk reached an auth_request whose answer is not known yet: the engine makes the
    subrequest and routes the request again (nginx suspends the access phase instead; a walk
    has no side effects the second time: limits are carried over, see ``RouteRequest.prior``).
    """

    def __init__(self, uri: str, sets: tuple[object, ...], ctx: RequestState) -> None:
        self.uri = uri
        self.sets = sets
        self.ctx = ctx


class _PlainProxy(NamedTuple):
    """A location whose phases reduce to its proxy_pass: no rewrite program, not internal, no
    realip, allow/deny, auth_basic or try_files in its chain (limits still run)."""

    chain: list[Scope]
    key: tuple[int, ...]
    pp: ProxyPass


ROUTE_CACHE_LIMIT = 4096


class _CachedRoute(NamedTuple):
    """Where requests for one (socket, Host, path) land (``Interpreter._remember``)."""

    server: Server
    server_reason: str
    uri: str
    location: Location
    location_reason: str
    plain: _PlainProxy


class RequestState:
    """Mutable state of one request walk."""

    def __init__(self, interp: Interpreter, req: RouteRequest, server: Server,
                 server_caps: dict[str, str], result: RouteResult) -> None:
        self.interp = interp
        self.req = req
        self.server = server
        self.result = result
        path, _, args = req.target.partition("?")
        self.request_uri = req.target
        self.raw_path = path
        self.args = args
        self.uri = ""
        if server_caps:
            self.captures: dict[str, str] = dict(server_caps)
            self.server_caps = dict(server_caps)
            self.vars: dict[str, str] = {k: v for k, v in server_caps.items()
                                         if not k.isdigit()}
        else:
            self.captures, self.server_caps, self.vars = {}, {}, {}
        self.method = req.method
        self.internal = False
        self.error_page_used = False
        self.uri_changes = MAX_URI_CHANGES + 1
        self.location: Location | None = None
        self._chain: list[Scope] = []
        self._chain_key: tuple[int, ...] | None = None
        self.uri_changed_ever = False
        """True once rewrite, try_files or an internal redirect changed $uri."""
        self.rewrite_break = False
        """True after ``rewrite ... break`` changed the URI in this location."""
        self.limits_done = False
        """limit_req / limit_conn run once per request, not again after internal redirects."""
        self.limit_conn_held: list[tuple[object, str]] = []
        """(zone, key) counted by limit_conn, released when the request ends."""
        self.limit_delay = 0.0
        """Seconds limit_req asks this request to wait."""
        self.main: RequestState | None = None
        """The main request of a subrequest ($request_method is the main one's)."""
        self.auth_index = 0
        """auth_request points met so far in this walk (``RouteRequest.auth_outcomes``)."""
        prior = req.prior
        if prior is not None:
            self.limits_done = prior.limits_done
            self.limit_conn_held = prior.limit_conn_held
            self.limit_delay = prior.limit_delay
            for name in ("limit_conn_status", "limit_req_status"):
                if name in prior.vars:
                    self.vars[name] = prior.vars[name]
        if req.subrequest:
            self.limits_done = True
        self.original_remote_addr = req.remote_addr
        """The connection's address ($realip_remote_addr) whatever realip made of it."""
        self.realip_done = False
        self.send_response = False
        """The answer comes from ``ngx_http_send_response`` (``return``), not an error page."""
        self.expect_tested = False
        """``Expect: 100-continue`` was looked at (ngx_http_test_expect runs once)."""
        self.body_read = False
        """The request body was read (it is kept for internal redirects to another proxy)."""
        self.request_body: bytes | None = None
        self.carried_headers: list[tuple[bytes, bytes]] = []
        """Upstream headers kept across an ``X-Accel-Redirect`` (Content-Type, Set-Cookie...)."""
        self.secure_link_values: dict[str, object] | None = None
        """$secure_link / $secure_link_expires once computed (``proxy.securelink``)."""
        self.secure_link_expires: str | None = None
        """What computing $secure_link found after its comma (cleared by internal redirects)."""

    # -- variables ------------------------------------------------------------------------------

    def var(self, name: str) -> str:
        """A variable's value; "" when it is not found (as in a complex value)."""
        value = self.lookup(name)
        return "" if value is None else value

    def lookup(self, name: str) -> str | None:
        """A variable's value, or None when nginx would call it "not found" (the access log
        writes ``-`` for those): absent arguments, cookies and headers, empty ``$args``..."""
        if name.isdigit():
            return self.captures.get(name, "")
        if name in self.vars:
            return self.vars[name]
        if name in self.captures:
            return self.captures[name]
        req = self.req
        if req.var_hook is not None:
            hooked = req.var_hook(name)
            if hooked is not None:
                return hooked
        simple = {
            "uri": self.uri, "document_uri": self.uri, "request_uri": self.request_uri,
            "args": self.args, "query_string": self.args, "is_args": "?" if self.args else "",
            "scheme": req.scheme,
            "request_method": self.method if self.main is None else self.main.method,
            "server_port": str(req.local_port), "server_addr": req.local_addr,
            "remote_addr": req.remote_addr, "binary_remote_addr": req.remote_addr,
            "server_protocol": f"HTTP/{req.http_version}",
            "remote_port": str(req.remote_port) if req.remote_port else "",
            "realip_remote_addr": self.original_remote_addr,
            "https": "on" if req.scheme == "https" else "",
            "hostname": "localhost", "nginx_version": "1.22.1",
        }
        if name in simple:
            if name in ("args", "query_string") and not self.args and \
                    (self.uri_changed_ever or "?" not in self.request_uri):
                return None
            return simple[name]
        if name == "host":
            if req.host:
                try:
                    return normalize_host(req.host)
                except BadRequest:
                    return ""
            return self.server_name()
        if name == "server_name":
            return self.server_name()
        if name == "proxy_add_x_forwarded_for":
            xff = req.headers.get("x-forwarded-for")
            return f"{xff}, {req.remote_addr}" if xff else req.remote_addr
        if name == "request":
            return f"{req.method} {self.request_uri} HTTP/{req.http_version}"
        if name == "document_root":
            return self.document_root()
        if name in ("fastcgi_script_name", "fastcgi_path_info"):
            from .fastcgi import split_path_info

            return split_path_info(self)[0 if name == "fastcgi_script_name" else 1]
        if name == "content_length":
            # ngx_http_variable_content_length: the header, else a read chunked body's size
            value = req.headers.get("content-length")
            if value is None and self.body_read and self.request_body is not None:
                return str(len(self.request_body))
            return value
        if name == "content_type":
            return req.headers.get("content-type")
        if name in ("request_filename", "realpath_root"):
            return self.filename(self.uri) if name == "request_filename" else self.document_root()
        if name.startswith("http_"):
            key = name[5:].replace("_", "-")
            if key == "host" and req.host is not None:
                return req.host
            return req.headers.get(key)
        if name.startswith("arg_"):
            want = name[4:].lower()
            for pair in self.args.split("&"):
                k, _, v = pair.partition("=")
                if k.lower() == want:
                    return v
            return None
        if name.startswith("cookie_"):
            want = name[7:].lower()
            for part in req.headers.get("cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k.lower() == want:
                    return v
            return None
        if name in securelink.VARIABLES:
            return securelink.value(self, name)
        mp = self.interp.maps.get(name)
        if mp is not None:
            return self.eval_map(mp)
        gv = self.interp.geos.get(name)
        if gv is not None:  # geo: proxy/geo.py
            return geo.lookup(gv, req.remote_addr, self.var(gv.address_var) if gv.address_var
                              else None, [v.decode("latin-1") for k, v in req.raw_headers
                                          if k.lower() == b"x-forwarded-for"])
        self.result.unknown_variables.add(name)
        return None

    def server_name(self) -> str:
        for n in self.server.names:
            return n.value
        return ""

    def eval(self, tpl: Template) -> str:
        return "".join(p.text if not isinstance(p, Var) else self.var(p.name)  # type: ignore[union-attr]
                       for p in tpl.parts)

    def eval_map(self, mp: Map) -> str:
        key = self.eval(mp.source_value)
        lookup = key.lower() if mp.hostnames else key
        for e in mp.entries:
            if e.kind is MapKeyKind.EXACT and (e.key.lower() if mp.hostnames else e.key) == lookup:
                return self.eval(e.value)
        if mp.hostnames:
            for e in mp.entries:
                k = e.key.lower()
                if e.kind is MapKeyKind.WILDCARD_START:
                    suffix = k[1:] if k.startswith("*.") else k
                    if lookup.endswith(suffix) or (k.startswith(".") and lookup == k[1:]):
                        return self.eval(e.value)
                elif e.kind is MapKeyKind.WILDCARD_END and lookup.startswith(k[:-1]):
                    return self.eval(e.value)
        for e in mp.entries:
            if e.kind in (MapKeyKind.REGEX, MapKeyKind.REGEX_CI):
                mt = compile_pcre(e.key, e.kind is MapKeyKind.REGEX_CI).search(key)
                if mt:
                    saved = self.captures
                    self.captures = {**saved, **_caps(mt)}
                    try:
                        return self.eval(e.value)
                    finally:
                        self.captures = saved
        return self.eval(mp.default) if mp.default is not None else ""

    # -- paths ----------------------------------------------------------------------------------

    @property
    def scope_chain(self) -> list[Scope]:
        """The levels whose configuration applies now, outermost first (http, server,
        locations, true ifs). Always replaced, never mutated in place."""
        return self._chain

    @scope_chain.setter
    def scope_chain(self, chain: list[Scope]) -> None:
        self._chain = chain
        self._chain_key = None

    @property
    def chain_key(self) -> tuple[int, ...]:
        """Identity of the current chain (scopes live as long as the model): a cache key for
        anything computed from the chain alone."""
        key = self._chain_key
        if key is None:
            key = self._chain_key = tuple(map(id, self._chain))
        return key

    def effective(self, getter):  # type: ignore[no-untyped-def]
        """The innermost value ``getter(scope)`` that is set (nginx's merge of one directive).

        Results depend only on the chain, so getters without captured variables are cached per
        chain: the hot path does this walk once per configuration, not per request."""
        if getter.__closure__ is None:
            key = (self.chain_key, getter.__code__)
            cache = self.interp.effective_cache
            try:
                return cache[key]
            except KeyError:
                pass
            value = self._walk(getter)
            cache[key] = value
            return value
        return self._walk(getter)

    def _walk(self, getter):  # type: ignore[no-untyped-def]
        for scope in reversed(self._chain):
            v = getter(scope)
            if v is not None:
                return v
        return None

    def document_root(self) -> str:
        root = self.effective(lambda s: s.static.root)
        if root is None:
            path = "html"
        else:
            path = self.eval(root.path)
            if root.alias:
                return path
        return path if os.path.isabs(path) else os.path.join(self.interp.prefix, path)

    def filename(self, uri: str) -> str:
        root = self.effective(lambda s: s.static.root)
        if root is not None and root.alias and self.location is not None:
            path = self.eval(root.path)
            if not os.path.isabs(path):
                path = os.path.join(self.interp.prefix, path)
            if self.location.modifier in (LocationModifier.REGEX, LocationModifier.REGEX_CI):
                return path
            return path + uri[len(self.location.pattern):]
        return self.document_root().rstrip("/") + uri


def _carry_extra_headers(ctx: RequestState) -> None:
    """Headers the access phase set (WWW-Authenticate) stay in nginx's headers_out across an
    error_page internal redirect: whatever answers in the end sends them."""
    extra = ctx.result.extra_headers
    if extra:
        ctx.carried_headers = [*ctx.carried_headers,
                               *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra)]
        ctx.result.extra_headers = []


def _raw_arg(ctx: RequestState, name: str) -> str:
    """The first argument of a directive kept as written, lower-cased, from the innermost
    level that has it ("" when none does)."""
    for scope in reversed(ctx.scope_chain):
        for d in scope.other:
            if d.name == name:
                return d.args[0].lower() if d.args else ""
    return ""


def _try_file(path: str, test_dir: bool) -> bool:
    """One try_files candidate: it opens (as nginx opens it: read-only, non-blocking) and is a
    directory exactly when the candidate ended with "/" (nginx 1.22: of.is_dir != test_dir)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return False
    try:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return is_dir == test_dir


def _caps(mt: re.Match[str]) -> dict[str, str]:
    caps = {k: v for k, v in mt.groupdict().items() if v is not None}
    caps["0"] = mt.group(0)
    for i, g in enumerate(mt.groups(), start=1):
        caps[str(i)] = g or ""
    return caps


class Interpreter:
    """Routes requests through a model, phase by phase."""

    def __init__(self, config: Config, *, prefix: str | None = None) -> None:
        self.config = config
        self.router = Router(config)
        self.prefix = prefix or config.prefix
        self.maps = {mp.variable: mp for mp in (config.http.maps if config.http else ())}
        self.geos = geo.compile_all(config)
        self.explain = True
        """Record ``Step``s in results (``tern route``); the engine turns it off: the steps
        are never read while serving, and building them costs on every request."""
        self.effective_cache: dict[tuple[object, ...], object] = {}
        """(chain identity, getter code) -> merged value; see ``RequestState.effective``."""
        self._base_chains: dict[int, list[Scope]] = {}
        self._loc_chains: dict[int, list[Scope]] = {}
        self._plain: dict[int, _PlainProxy | None] = {}
        """id(location) -> its plan when it only proxies (``_plain_proxy``), else None."""
        self.preaccess_hook: Callable[[RequestState], int | None] | None = None
        """Set by the engine: limit_req / limit_conn; returns a status to refuse with."""
        self._rules_cache: dict[int, tuple[object, tuple[CompiledRule, ...]]] = {}
        self._trust_cache: dict[int, tuple[object, tuple[CompiledRule, ...]]] = {}
        self._realip_cache: dict[tuple[int, ...], tuple[object, object, bool]] = {}
        """chain identity -> merged realip settings; see ``_realip``."""
        self._routes: dict[tuple[object, ...], _CachedRoute] = {}
        """(socket, Host, path) -> where a plain-proxy request lands; see ``_route_cached``."""

    def route(self, req: RouteRequest) -> RouteResult:
        """Route one request. Never raises for bad input: a 400 is a result."""
        key = (req.local_addr, req.local_port, req.http_version, req.host,
               req.target.partition("?")[0])
        hit = self._routes.get(key)
        if hit is not None:
            return self._route_cached(req, hit)
        result = self._route(req)
        if result.kind == "proxy" and not self.explain:
            self._remember(key, result)
        return result

    def _remember(self, key: tuple[object, ...], result: RouteResult) -> None:
        """Cache where a proxied request landed when nothing but (socket, Host, path) chose
        it: a plain-proxy location (``_plain_proxy``) found by a search without regex captures
        (server name or location), no server-level rewrite program, no internal redirect."""
        ctx = result.state
        server, loc = result.server, result.location
        if ctx is None or server is None or loc is None or ctx.internal or ctx.captures \
                or server.scope.rewrites or client_cert.settings(self.config, server):
            return
        plain = self._plain.get(id(loc))
        if not plain:
            return
        if len(self._routes) >= ROUTE_CACHE_LIMIT:
            self._routes.clear()
        self._routes[key] = _CachedRoute(server, result.server_reason, ctx.uri, loc,
                                         result.location_reason, plain)

    def _route_cached(self, req: RouteRequest, hit: _CachedRoute) -> RouteResult:
        """``_route`` for a request ``_remember`` knows: the same steps, minus the searches
        whose answers are cached (server, URI normalization, location) and the ones that do
        nothing there (server rewrites, realip)."""
        result = RouteResult()
        server = hit.server
        result.server, result.server_reason = server, hit.server_reason
        ctx = RequestState(self, req, server, {}, result)
        ctx.uri = hit.uri
        loc = hit.location
        result.first_location, result.first_reason = loc, hit.location_reason
        result.location, result.location_reason = loc, hit.location_reason
        ctx.location = loc
        try:
            self._run_plain_proxy(ctx, loc, hit.plain)
        except _Finish as fin:
            self._finish(ctx, fin.status)
        except _Done:
            pass
        result.uri = ctx.uri
        result.state = ctx
        if not result.kind:
            result.kind = "error" if result.status is not None else "none"
        return result

    def _route(self, req: RouteRequest) -> RouteResult:
        result = RouteResult()
        table = self.router.socket_for(req.local_addr, req.local_port,
                                       quic=req.http_version == "3.0")  # HTTP/3: UDP socket
        if table is None:
            result.steps.append(Step("listen", f"nothing listens on {req.local_addr}:"
                                               f"{req.local_port}"))
            return result
        try:
            sm = self.router.select_server(table, req.host)
        except BadRequest as exc:
            result.status = 400
            result.kind = "error"
            result.steps.append(Step("server", str(exc)))
            # nginx answers from the default server
            assert table.default is not None
            result.server = table.default
            result.server_reason = "invalid Host: default server answers 400"
            return result
        result.server, result.server_reason = sm.server, sm.reason
        ctx = RequestState(self, req, sm.server, sm.captures, result)
        # realip, post-read phase: with the server's configuration
        self._realip(ctx, self._base_chain(ctx))
        # merge_slashes is read from the socket's default server: the URI is parsed before
        # the Host header picks a virtual server (seen on nginx 1.22.1)
        assert table.default is not None
        merge = self._server_flag(table.default, "merge_slashes")
        try:
            ctx.uri = normalize_uri(ctx.raw_path, merge_slashes=merge is not False)
        except BadRequest as exc:
            # the request line is rejected while parsing, before Host is looked at: the
            # socket's default server answers
            assert table.default is not None
            result.server = table.default
            result.server_reason = "invalid request: default server answers 400"
            result.status = 400
            result.kind = "error"
            result.steps.append(Step("uri", str(exc)))
            return result
        try:
            self._run(ctx, first=True)
        except _Finish as fin:
            self._finish(ctx, fin.status)
        except _Done:
            pass
        except _NeedAuth as need:
            result.kind = "auth_request"
            result.auth = need
        result.uri = ctx.uri
        result.state = ctx
        if not result.kind:
            result.kind = "error" if result.status is not None else "none"
        return result

    def subrequest(self, req: RouteRequest, parent: RequestState) -> RouteResult:
        """Route an auth_request subrequest (``req``: GET of the auth URI, ``subrequest``
        set): internal, in the parent's server, from the server rewrites on; $request_uri
        stays the parent's."""
        result = RouteResult()
        result.server, result.server_reason = parent.server, "the parent request's server"
        ctx = RequestState(self, req, parent.server, {}, result)
        ctx.request_uri = parent.request_uri
        ctx.main = parent
        ctx.internal = True
        ctx.uri_changed_ever = True  # no valid unparsed URI: proxy_pass sends $uri$is_args$args
        try:
            ctx.uri = normalize_uri(ctx.raw_path, merge_slashes=True)
            self._run(ctx, first=False)
        except BadRequest:
            result.status = 500
            result.kind = "error"
        except _Finish as fin:
            self._finish(ctx, fin.status)
        except _Done:
            pass
        result.uri = ctx.uri
        result.state = ctx
        if not result.kind:
            result.kind = "error" if result.status is not None else "none"
        return result

    def after_upstream_error(self, result: RouteResult, status: int) -> RouteResult:
        """``proxy_intercept_errors``: apply error_page to a status the upstream sent.

        Returns:
            ``result`` updated: kind ``error`` with the status when no error_page applies,
            or whatever the error page's target produced.
        """
        ctx = result.state
        assert ctx is not None
        result.kind = ""
        result.proxy_url = None
        result.status = None
        try:
            self._finish(ctx, status)
        except _Done:
            pass
        except _NeedAuth:
            self._auth_after_upstream(ctx)
        if not result.kind:
            result.kind = "error"
        result.uri = ctx.uri
        return result

    @staticmethod
    def _auth_after_upstream(ctx: RequestState) -> None:
        """An auth_request met after an upstream answered (an error page or X-Accel-Redirect
        into a location with auth_request): not supported, answered 500 (docs/differences.md,
        ``auth-request-after-upstream``)."""
        ctx.result.steps.append(Step("access", "auth_request after an upstream answer is not "
                                               "supported: 500", ctx.uri, ctx.location))
        ctx.result.status = 500
        ctx.result.kind = "error"

    def accel_redirect(self, result: RouteResult, target: str) -> RouteResult:
        """An upstream's ``X-Accel-Redirect``: internal redirect to a URI (the method becomes
        GET unless HEAD; arguments come from the target only) or to a named location."""
        ctx = result.state
        assert ctx is not None
        result.kind = ""
        result.proxy_url = None
        result.status = None
        try:
            if target.startswith("@"):
                loc = find_named(ctx.server, target[1:])
                if loc is None:
                    raise _Finish(500)
                self._internal_redirect(ctx, "x-accel-redirect", target, named=loc)
            else:
                path = target.partition("?")[0]
                if not path.startswith("/") or any(seg == ".." for seg in path.split("/")):
                    raise _Finish(404)  # ngx_http_parse_unsafe_uri
                if ctx.method != "HEAD":
                    ctx.method = "GET"
                self._internal_redirect(ctx, "x-accel-redirect", target)
        except _Finish as fin:
            try:
                self._finish(ctx, fin.status)
            except _NeedAuth:
                self._auth_after_upstream(ctx)
        except _Done:
            pass
        except _NeedAuth:
            self._auth_after_upstream(ctx)
        if not result.kind:
            result.kind = "error" if result.status is not None else "none"
        result.uri = ctx.uri
        return result

    def _server_flag(self, server: Server, name: str) -> bool | None:
        v = getattr(server.scope.limits, name)
        if v is None and self.config.http is not None:
            v = getattr(self.config.http.scope.limits, name)
        return v  # type: ignore[no-any-return]

    # -- phases ---------------------------------------------------------------------------------

    def _base_chain(self, ctx: RequestState) -> list[Scope]:
        chain = self._base_chains.get(id(ctx.server))
        if chain is None:
            chain = []
            if self.config.http is not None:
                chain.append(self.config.http.scope)
            chain.append(ctx.server.scope)
            self._base_chains[id(ctx.server)] = chain
        return list(chain)

    def _run(self, ctx: RequestState, *, first: bool) -> None:
        """Server rewrite, then location search and the rest."""
        ctx.scope_chain = self._base_chain(ctx)
        ctx.location = None
        if first and ctx.req.var_hook is not None:
            # ssl_verify_client: 495/496 before the server rewrites (proxy.client_cert)
            refused = client_cert.status(self.config, ctx.server, ctx.req.var_hook)
            if refused is not None:
                raise _Finish(refused)
        self._program(ctx, ctx.server.scope.rewrites, server_level=True)
        self._find_and_run(ctx, first=first)

    def _find_and_run(self, ctx: RequestState, *, first: bool,
                      named: Location | None = None) -> None:
        while True:
            if named is not None:
                loc, reason = named, f'named location "@{named.pattern}"'
                caps: dict[str, str] = {}
                named = None
                auto = False
            else:
                lm = self.router.find_location(ctx.server, ctx.uri)
                loc, reason, caps, auto = lm.location, lm.reason, lm.captures, lm.auto_redirect
            result = ctx.result
            if result.first_location is None and result.location is None:
                result.first_location, result.first_reason = loc, reason
            result.location, result.location_reason = loc, reason
            ctx.location = loc
            ctx.captures = {**ctx.server_caps, **caps}
            if caps:
                ctx.vars.update({k: v for k, v in caps.items() if not k.isdigit()})
            plain = self._plain_proxy(ctx.server, loc) if loc is not None else None
            if plain is not None and not auto:
                self._run_plain_proxy(ctx, loc, plain)  # raises _Done or _Finish
            ctx.scope_chain = self._base_chain(ctx) + self._loc_scopes(ctx.server, loc)
            if self.explain:
                ctx.result.steps.append(Step("location", reason, ctx.uri, loc))
            if loc is None:
                # no location: nginx runs the remaining phases with the server's configuration
                # (access, try_files, then the static handler)
                self._access(ctx)
                self._precontent(ctx)
                return
            if loc.scope.static.internal and not ctx.internal:
                ctx.result.steps.append(Step("internal", "location is internal: 404", ctx.uri,
                                             loc))
                raise _Finish(404)
            # ngx_http_core_find_config_phase: the declared body size is checked here
            length = ctx.req.content_length
            if length is not None:
                limit = ctx.effective(lambda s: s.limits.client_max_body_size)
                limit = DEFAULT_MAX_BODY if limit is None else limit
                if limit and length > limit:
                    ctx.result.steps.append(Step("limit", f"body {length} > {limit}: 413",
                                                 ctx.uri, loc))
                    ctx.expect_tested = True  # no 100 Continue for a body refused unread
                    # the body is discarded: an error_page target is not checked again
                    ctx.req.content_length = None
                    raise _Finish(413)
            if auto:
                args = f"?{ctx.args}" if ctx.args else ""
                ctx.result.redirect_to = ctx.uri + "/" + args
                raise _Finish(301)
            outcome = self._program(ctx, loc.scope.rewrites, server_level=False)
            if outcome == "changed":
                self._uri_changed(ctx)
                continue
            self._access(ctx)
            self._precontent(ctx)
            return

    def _plain_proxy(self, server: Server, loc: Location) -> _PlainProxy | None:
        """The location's plan when its phases reduce to proxy_pass (see ``_PlainProxy``)."""
        plan = self._plain.get(id(loc), False)
        if plan is False:
            plan = self._plain[id(loc)] = self._plan_plain(server, loc)
        return plan  # type: ignore[return-value]

    def _plan_plain(self, server: Server, loc: Location) -> _PlainProxy | None:
        if self.explain or loc.scope.static.internal or loc.scope.rewrites:
            return None
        base = self._base_chains.get(id(server))
        if base is None:
            base = [self.config.http.scope] if self.config.http is not None else []
            base.append(server.scope)
            self._base_chains[id(server)] = base
        chain = list(base) + self._loc_scopes(server, loc)

        def eff(getter: Callable[[Scope], object]) -> object:
            for scope in reversed(chain):
                v = getter(scope)
                if v is not None:
                    return v
            return None

        if self._realip_settings(chain)[0]:
            return None
        if eff(lambda s: s.access.rules) is not None or \
                eff(lambda s: s.access.auth_basic) is not None or \
                eff(lambda s: s.access.auth_request) not in (None, "off"):
            return None
        if eff(lambda s: s.static.try_files) is not None:
            return None
        # the content handler is the location's own (nested locations do not inherit it)
        pp = loc.scope.proxy_pass
        if pp is None or loc.scope.fastcgi_pass is not None:
            return None
        return _PlainProxy(chain, tuple(map(id, chain)), pp)

    def _run_plain_proxy(self, ctx: RequestState, loc: Location, plan: _PlainProxy) -> None:
        """What ``_find_and_run`` does for a location ``_plan_plain`` accepted, minus the steps
        that cannot do anything there: its rewrite program is empty, realip trusts nobody, no
        allow/deny or auth_basic, no try_files; the content handler is its proxy_pass."""
        ctx.scope_chain = plan.chain
        ctx._chain_key = plan.key
        length = ctx.req.content_length
        if length is not None:
            limit = ctx.effective(lambda s: s.limits.client_max_body_size)
            limit = DEFAULT_MAX_BODY if limit is None else limit
            if limit and length > limit:
                ctx.expect_tested = True
                ctx.req.content_length = None
                raise _Finish(413)
        if self.preaccess_hook is not None:
            status = self.preaccess_hook(ctx)
            if status:
                raise _Finish(status)
        pp = plan.pp
        result = ctx.result
        result.proxy_url = pp.url.raw
        result.kind = "proxy"
        result.upstream_uri = self.upstream_uri(ctx, pp)
        raise _Done()

    def _loc_scopes(self, server: Server, loc: Location | None) -> list[Scope]:
        if loc is None:
            return []
        cached = self._loc_chains.get(id(loc))
        if cached is None:
            cached = self._loc_chains[id(loc)] = self._loc_path(server, loc)
        return cached

    @staticmethod
    def _loc_path(server: Server, loc: Location) -> list[Scope]:
        path: list[Location] = []

        def walk(locs: tuple[Location, ...], trail: list[Location]) -> bool:
            for item in locs:
                if item is loc:
                    path.extend(trail + [item])
                    return True
                if walk(item.locations, trail + [item]):
                    return True
            return False

        walk(server.locations, [])
        return [p.scope for p in path] or [loc.scope]

    @staticmethod
    def _realip_settings(chain: list[Scope]) -> tuple[object, object, bool]:
        """set_real_ip_from, real_ip_header and real_ip_recursive merged over ``chain``."""

        def eff(getter: Callable[[object], object]) -> object:
            for scope in reversed(chain):
                v = getter(scope.realip)
                if v is not None:
                    return v
            return None

        trusted_from = eff(lambda r: r.set_real_ip_from)  # type: ignore[attr-defined]
        header = eff(lambda r: r.header) or "X-Real-IP"  # type: ignore[attr-defined]
        recursive = bool(eff(lambda r: r.recursive))  # type: ignore[attr-defined]
        return trusted_from, header, recursive

    def _realip(self, ctx: RequestState, chain: list[Scope]) -> None:
        """ngx_http_realip_handler: the client address from a header sent by a trusted proxy
        (post-read phase with the server's settings, again at preaccess with the location's,
        until it changed the address once)."""
        if ctx.realip_done:
            return
        # the merged settings depend on the chain alone (scopes live as long as the model)
        ckey = tuple(map(id, chain))
        merged = self._realip_cache.get(ckey)
        if merged is None:
            merged = self._realip_cache[ckey] = self._realip_settings(chain)
        trusted_from, header, recursive = merged
        if not trusted_from:
            return
        want = str(header).lower().encode("latin-1")
        if want == b"proxy_protocol":
            return
        raw = ctx.req.raw_headers
        if want == b"x-forwarded-for":
            values = [v.decode("latin-1") for k, v in raw if k.lower() == want]
        else:
            first = next((v for k, v in raw if k.lower() == want), None)
            values = [first.decode("latin-1")] if first is not None else []
        if not values:
            return
        key = id(trusted_from)
        cached = self._trust_cache.get(key)
        if cached is None or cached[0] is not trusted_from:
            cached = self._trust_cache[key] = (trusted_from,
                                               compile_networks(trusted_from))  # type: ignore[arg-type]
        new = forwarded_addr(ctx.req.remote_addr, values, cached[1], recursive)
        if new is not None:
            ctx.realip_done = True
            ctx.req.remote_addr, ctx.req.remote_port = new

    def _access(self, ctx: RequestState) -> None:
        """Preaccess (limits, via ``preaccess_hook``) and access: allow/deny, auth_basic and
        auth_request in nginx's order, combined by ``satisfy`` as
        ngx_http_core_access_phase does (a handler with nothing to check declines; under
        ``any`` the first that allows ends the phase, a 401 outranks a 403)."""
        if ctx.req.subrequest:
            return  # a subrequest skips the access phase (r != r->main)
        self._realip(ctx, ctx.scope_chain)
        if self.preaccess_hook is not None:
            status = self.preaccess_hook(ctx)
            if status:
                ctx.result.steps.append(Step("limit", f"limited: {status}", ctx.uri,
                                             ctx.location))
                raise _Finish(status)
        rules = ctx.effective(lambda s: s.access.rules)
        realm_tpl = ctx.effective(lambda s: s.access.auth_basic)
        auth_uri = ctx.effective(lambda s: s.access.auth_request)
        if auth_uri == "off":
            auth_uri = None
        if rules is None and realm_tpl is None and auth_uri is None:
            return
        any_ = (ctx.effective(lambda s: s.access.satisfy) or "all") == "any"
        access_code = 0
        for handler in (self._access_rules, self._access_basic, self._access_request):
            rc = handler(ctx, rules, realm_tpl, auth_uri)
            if rc is None:  # declined
                continue
            if rc == 0:
                if any_:
                    ctx.result.extra_headers = []
                    return
                continue
            if any_ and rc in (401, 403):
                if access_code != 401:
                    access_code = rc
                continue
            access_code = rc
            break
        if not access_code:
            return
        if access_code == 403:
            ctx.result.extra_headers = []
        ctx.result.steps.append(Step("access", f"denied: {access_code}", ctx.uri, ctx.location))
        raise _Finish(access_code)

    def _access_rules(self, ctx: RequestState, rules: object, realm_tpl: object,
                      auth_uri: object) -> int | None:
        """ngx_http_access_module: 0 (allowed), 403, or None (no rules)."""
        if not rules:
            return None
        compiled = self._rules_cache.get(id(rules))
        if compiled is None:
            compiled = self._rules_cache[id(rules)] = (rules, compile_rules(rules))  # type: ignore[arg-type]
        verdict = check_rules(compiled[1], ctx.req.remote_addr)
        if verdict is None:
            return None  # no rule matched: the module declines
        return 0 if verdict else 403

    def _access_basic(self, ctx: RequestState, rules: object, realm_tpl: object,
                      auth_uri: object) -> int | None:
        """ngx_http_auth_basic_module: 0, 401 (with WWW-Authenticate), 500, or None."""
        if realm_tpl is None:
            return None
        realm = ctx.eval(realm_tpl)  # type: ignore[arg-type]
        user_file = ctx.effective(lambda s: s.access.auth_basic_user_file)
        if realm == "off" or user_file is None:
            return None
        path = ctx.eval(user_file)
        if not os.path.isabs(path):
            path = os.path.join(os.path.dirname(self.config.main_file), path)
        try:
            auth_ok, user = check_basic(ctx.req.headers.get("authorization"), path)
        except UserFileError:
            ctx.result.steps.append(Step("access", f"cannot read {path}", ctx.uri))
            return 500
        if user:
            ctx.vars["remote_user"] = user
        if auth_ok:
            return 0
        ctx.result.extra_headers = [("WWW-Authenticate", f'Basic realm="{realm}"')]
        return 401

    def _access_request(self, ctx: RequestState, rules: object, realm_tpl: object,
                        auth_uri: object) -> int | None:
        """ngx_http_auth_request_module: the subrequest's answer (2xx: 0; 401 with its
        WWW-Authenticate; 403; anything else 500), or None when not configured."""
        if auth_uri is None:
            return None
        outcomes = ctx.req.auth_outcomes
        if ctx.auth_index >= len(outcomes):
            sets = ctx.effective(lambda s: s.access.auth_request_set) or ()
            ctx.result.steps.append(Step("access", f"auth_request {auth_uri}", ctx.uri,
                                         ctx.location))
            raise _NeedAuth(str(auth_uri), tuple(sets), ctx)  # type: ignore[arg-type]
        got = outcomes[ctx.auth_index]
        ctx.auth_index += 1
        ctx.vars.update(got.variables)
        if got.status == 401:
            if got.www_authenticate is not None:
                ctx.result.extra_headers = [("WWW-Authenticate", got.www_authenticate)]
            return 401
        if got.status == 403:
            return 403
        if 200 <= got.status < 300:
            return 0
        ctx.result.steps.append(Step("access", f"auth request unexpected status: "
                                               f"{got.status}", ctx.uri, ctx.location))
        return 500

    def _uri_changed(self, ctx: RequestState) -> None:
        ctx.uri_changes -= 1
        if ctx.uri_changes == 0:
            ctx.result.steps.append(Step("cycle", "rewrite or internal redirection cycle"))
            raise _Finish(500)

    def _program(self, ctx: RequestState, stmts: tuple[object, ...], *, server_level: bool) -> str:
        """Run a rewrite program. Returns "changed" (URI changed: new location search),
        "break", or "" (fell through)."""
        changed = False
        for st in stmts:
            if isinstance(st, Rewrite):
                mt = compile_pcre(st.pattern).search(ctx.uri)
                if not mt:
                    continue
                ctx.captures = {**ctx.captures, **_caps(mt)}
                value = ctx.eval(st.replacement)
                ctx.result.steps.append(Step("rewrite", f"rewrite {st.pattern} -> {value}"
                                             f" {st.flag.value}".rstrip(), ctx.uri, ctx.location))
                is_redirect = st.replacement.raw.startswith(("http://", "https://", "$scheme"))
                if is_redirect or st.flag in (RewriteFlag.REDIRECT, RewriteFlag.PERMANENT):
                    ctx.result.redirect_to = self._with_args(ctx, value)
                    raise _Finish(301 if st.flag is RewriteFlag.PERMANENT else 302)
                path, q, newargs = value.partition("?")
                if q:
                    ctx.args = newargs if value.endswith("?") or not ctx.args else (
                        f"{newargs}&{ctx.args}" if newargs else ctx.args)
                    if value.endswith("?"):
                        ctx.args = newargs[:-1] if newargs.endswith("?") else newargs
                old = ctx.uri
                ctx.uri = path
                ctx.uri_changed_ever = True
                ctx.internal = True  # "requests changed by the rewrite directive" are internal
                ctx.result.redirects.append({"kind": "rewrite", "uri": path,
                                             "from": ctx.location})
                if st.flag is RewriteFlag.LAST:
                    return "break" if server_level else "changed"
                if st.flag is RewriteFlag.BREAK:
                    ctx.rewrite_break = True
                    return "break"
                changed = changed or path != old or True
            elif isinstance(st, Return):
                text = None
                if st.text is not None:
                    # ngx_http_send_response sets the status before it evaluates the text, and
                    # $status prefers an error_page's err_status
                    ctx.vars["status"] = str(ctx.result.override_status or st.code)
                    try:
                        text = ctx.eval(st.text)
                    finally:
                        del ctx.vars["status"]
                if self.explain:
                    ctx.result.steps.append(Step("return", f"return {st.code}"
                                                 + (f" {text}" if text is not None else ""),
                                                 ctx.uri, ctx.location))
                # ngx_http_script_return_code: below 400 or with a text, ngx_http_send_response
                # answers (it discards the body, testing Expect first)
                ctx.send_response = st.code < 400 or text is not None
                if st.code in (301, 302, 303, 307, 308) and text is not None:
                    ctx.result.redirect_to = text
                    raise _Finish(st.code)
                if text is not None:
                    ctx.result.body = text
                    ctx.result.status = st.code
                    ctx.result.kind = "return"
                    raise _Done()
                raise _Finish(st.code)
            elif isinstance(st, SetVar):
                ctx.vars[st.name] = ctx.eval(st.value)
            elif isinstance(st, Break):
                return "break"
            elif isinstance(st, If):
                if self._condition(ctx, st.condition):
                    ctx.result.steps.append(Step("if", f"if {st.condition.subject.raw} "
                                                 f"{st.condition.op.value} true", ctx.uri,
                                                 ctx.location))
                    if not server_level:
                        ctx.scope_chain = ctx.scope_chain + [st.scope]
                    else:
                        ctx.scope_chain = ctx.scope_chain + [st.scope]
                    sub = self._program(ctx, st.scope.rewrites, server_level=server_level)
                    if sub == "break":
                        return "break"
                    if sub == "changed":
                        return "changed"
        if changed and not server_level:
            return "changed"
        return ""

    @staticmethod
    def _with_args(ctx: RequestState, value: str) -> str:
        if "?" in value:
            return value[:-1] if value.endswith("?") else value + (
                f"&{ctx.args}" if ctx.args else "")
        return value + (f"?{ctx.args}" if ctx.args else "")

    def _condition(self, ctx: RequestState, cond: Condition) -> bool:
        op = cond.op
        subject = ctx.eval(cond.subject)
        if op is CondOp.TRUTHY:
            return subject not in ("", "0")
        if op in (CondOp.EQ, CondOp.NE):
            assert cond.value is not None
            eq = subject == ctx.eval(cond.value)
            return eq if op is CondOp.EQ else not eq
        if op in (CondOp.MATCH, CondOp.MATCH_CI, CondOp.NOT_MATCH, CondOp.NOT_MATCH_CI):
            assert cond.pattern is not None
            ci = op in (CondOp.MATCH_CI, CondOp.NOT_MATCH_CI)
            mt = compile_pcre(cond.pattern, ci).search(subject)
            if mt and op in (CondOp.MATCH, CondOp.MATCH_CI):
                ctx.captures = {**ctx.captures, **_caps(mt)}
                ctx.vars.update({k: v for k, v in _caps(mt).items() if not k.isdigit()})
            return bool(mt) == (op in (CondOp.MATCH, CondOp.MATCH_CI))
        path = subject if os.path.isabs(subject) else os.path.join(self.prefix, subject)
        tests = {
            CondOp.FILE: os.path.isfile, CondOp.DIR: os.path.isdir,
            CondOp.EXISTS: os.path.exists, CondOp.EXEC: lambda p: os.access(p, os.X_OK),
        }
        positive = {CondOp.NOT_FILE: CondOp.FILE, CondOp.NOT_DIR: CondOp.DIR,
                    CondOp.NOT_EXISTS: CondOp.EXISTS, CondOp.NOT_EXEC: CondOp.EXEC}
        base = positive.get(op, op)
        ok = bool(tests[base](path))
        return ok if base is op else not ok

    # -- precontent and content -----------------------------------------------------------------

    def _precontent(self, ctx: RequestState) -> None:
        # try_files merges like any directive: the innermost level that sets it (server level
        # too when no location matched: nginx then runs with the server's configuration)
        tf = ctx.effective(lambda s: s.static.try_files)
        if tf is not None:
            for cand in tf.files:
                value = ctx.eval(cand)
                # ngx_http_core_try_files: a candidate written with a trailing "/" loses it
                # (so $uri/ sets $uri to the name without it, and the static handler then
                # redirects a directory) and may be a directory; any other candidate must not be
                test_dir = cand.raw.endswith("/")
                if test_dir:
                    value = value[:-1]
                path = ctx.filename(value)
                if _try_file(path, test_dir):
                    ctx.result.steps.append(Step("try_files", f"found {value}", ctx.uri,
                                                 ctx.location))
                    ctx.uri = value
                    ctx.uri_changed_ever = True
                    self._content(ctx)
                    return
            fb = ctx.eval(tf.fallback)
            ctx.result.steps.append(Step("try_files", f"fallback {fb}", ctx.uri, ctx.location))
            if fb.startswith("="):
                raise _Finish(int(fb[1:]) if fb[1:].isdigit() else 500)
            if fb.startswith("@"):
                loc = find_named(ctx.server, fb[1:])
                if loc is None:
                    raise _Finish(500)
                self._internal_redirect(ctx, "try_files", fb, named=loc)
                return
            self._internal_redirect(ctx, "try_files", fb)
            return
        self._content(ctx)

    def _internal_redirect(self, ctx: RequestState, kind: str, target: str,
                           named: Location | None = None) -> None:
        prev = ctx.location
        self._uri_changed(ctx)
        ctx.internal = True
        ctx.rewrite_break = False
        ctx.secure_link_expires = None  # nginx clears module contexts here
        if named is None:
            ctx.uri_changed_ever = True
            path, _, args = target.partition("?")
            # index keeps the request's arguments; try_files, error_page and X-Accel-Redirect
            # pass the target's own (none when it has no "?": ngx_http_split_args)
            if _ or kind != "index":
                ctx.args = args
            ctx.uri = path
        ctx.result.redirects.append({"kind": kind, "uri": target, "from": prev})
        if named is not None:
            ctx.scope_chain = self._base_chain(ctx)
            self._find_and_run(ctx, first=False, named=named)
        else:
            self._run(ctx, first=False)

    def _content(self, ctx: RequestState) -> None:
        loc = ctx.location
        pp = None
        fcgi = None
        # the handler of the location itself or of an if block in it: a nested location does
        # not inherit its parent's proxy_pass / fastcgi_pass (clcf->handler is not merged)
        chain = ctx.scope_chain
        start = len(self._base_chain(ctx))
        if loc is not None:
            for i in range(len(chain) - 1, start - 1, -1):
                if chain[i] is loc.scope:
                    start = i
                    break
        for scope in chain[start:]:
            if scope.proxy_pass is not None:
                pp, fcgi = scope.proxy_pass, None
            if scope.fastcgi_pass is not None:
                pp, fcgi = None, scope.fastcgi_pass
        if fcgi is not None:
            ctx.result.kind = "fastcgi"
            if self.explain:
                ctx.result.steps.append(Step("fastcgi", f"fastcgi_pass {fcgi.address.raw}",
                                             ctx.uri, loc))
            raise _Done()
        if pp is not None:
            ctx.result.proxy_url = pp.url.raw
            ctx.result.kind = "proxy"
            ctx.result.upstream_uri = self.upstream_uri(ctx, pp)
            if self.explain:
                ctx.result.steps.append(Step("proxy", f"proxy_pass {pp.url.raw}", ctx.uri, loc))
            raise _Done()
        if loc is not None and any(d.name.endswith("_pass") or d.name in ("stub_status",
                                                                              "empty_gif")
                                   for d in loc.scope.other):
            handler = next(d.name for d in loc.scope.other if d.name.endswith("_pass")
                           or d.name in ("stub_status", "empty_gif"))
            ctx.result.steps.append(Step("handler", f"{handler} (not routed further)", ctx.uri,
                                         loc))
            ctx.result.kind = "handler"
            raise _Done()
        uri = ctx.uri
        if ctx.method not in ("GET", "HEAD", "POST"):
            # index and autoindex decline other methods; ngx_http_static_handler refuses them
            # before it looks at the disk
            ctx.result.steps.append(Step("static", f"{ctx.method} not allowed", uri, loc))
            raise _Finish(405)
        if uri.endswith("/"):
            index = ctx.effective(lambda s: s.static.index)
            names = [ctx.eval(t) for t in index] if index else ["index.html"]
            directory = ctx.filename(uri)
            dir_tested = False
            for name in names:
                if name.startswith("/"):
                    self._internal_redirect(ctx, "index", name)
                    return
                # ngx_http_index_handler: a name that exists (even a directory) is taken; the
                # directory itself is tested at the first missing name
                try:
                    os.stat(os.path.join(directory, name))
                except FileNotFoundError:
                    if not dir_tested and not os.path.isdir(directory):
                        break
                    dir_tested = True
                    continue
                except PermissionError:
                    raise _Finish(403) from None
                except (OSError, ValueError):
                    raise _Finish(404) from None
                self._internal_redirect(ctx, "index", uri + name)
                return
            if not os.path.isdir(directory):
                ctx.result.steps.append(Step("static", f"{directory} does not exist", uri, loc))
                raise _Finish(404)
            if ctx.method != "POST" and ctx.effective(lambda s: s.static.autoindex):
                ctx.result.steps.append(Step("static", "autoindex listing", uri, loc))
                ctx.result.status = 200
                ctx.result.kind = "autoindex"
                ctx.result.file_path = directory
                raise _Done()
            ctx.result.steps.append(Step("static", "directory index is forbidden", uri, loc))
            raise _Finish(403)
        path = ctx.filename(uri)
        if ctx.method in ("GET", "HEAD"):
            # gzip_static runs first in the content phase: a .gz may stand alone
            mode = _raw_arg(ctx, "gzip_static")
            if mode in ("on", "always"):
                from .gzipfilter import static_variant

                got = static_variant(mode, ctx, path, ctx.req.raw_headers, ctx.req.http_version)
                if isinstance(got, int):
                    raise _Finish(got)
                if got is not None and got[1]:
                    ctx.result.steps.append(Step("static", f"file {got[0]}", uri, loc))
                    ctx.result.status = 200
                    ctx.result.kind = "static"
                    ctx.result.file_path = path
                    raise _Done()
        if os.path.isdir(path):
            # ngx_http_static_handler: the URI escaped (NGX_ESCAPE_URI) with "/" added, and the
            # arguments kept
            ctx.result.redirect_to = escape_uri(uri) + "/" + (f"?{ctx.args}" if ctx.args else "")
            raise _Finish(301)
        if os.path.isfile(path):
            ctx.result.steps.append(Step("static", f"file {path}", uri, loc))
            if ctx.method not in ("GET", "HEAD"):
                raise _Finish(405)
            ctx.result.status = 200
            ctx.result.kind = "static"
            ctx.result.file_path = path
            raise _Done()
        ctx.result.steps.append(Step("static", f"{path} not found", uri, loc))
        raise _Finish(404)

    @staticmethod
    def upstream_uri(ctx: RequestState, pp: ProxyPass) -> str | None:
        """proxy_pass URI mapping (ngx_http_proxy_create_request)."""
        args = f"?{ctx.args}" if ctx.args else ""
        if pp.has_variables:
            if pp.uri is None:
                return ctx.request_uri if not ctx.uri_changed_ever else escape_uri(ctx.uri) + args
            full = ctx.eval(pp.url)
            rest = full.split("://", 1)[1]
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
        if pp.uri is None or ctx.rewrite_break:
            if not ctx.uri_changed_ever:
                return ctx.request_uri
            return escape_uri(ctx.uri) + args
        loc = ctx.location
        if loc is None or loc.modifier not in (LocationModifier.PREFIX,
                                               LocationModifier.PREFIX_NO_REGEX,
                                               LocationModifier.EXACT):
            return None
        tail = ctx.uri[len(loc.pattern):] if ctx.uri.startswith(loc.pattern) else ctx.uri
        return pp.uri + escape_uri(tail) + args

    def _finish(self, ctx: RequestState, status: int) -> None:
        """A status nginx generates itself: apply error_page, else it is the answer."""
        pages = ctx.effective(lambda s: s.error_pages)
        recursive = ctx.effective(lambda s: s.limits.recursive_error_pages)
        can = (not ctx.error_page_used or recursive) and ctx.uri_changes > 0 and status >= 300
        if pages and can:
            for page in pages:
                if status not in page.codes:
                    continue
                target = ctx.eval(page.target)
                ctx.error_page_used = True
                ctx.result.redirect_to = None
                ctx.result.steps.append(Step("error_page", f"error_page {status} -> {target}",
                                             ctx.uri, ctx.location))
                new_status = page.response if page.response is not None else status
                if target.startswith("@"):
                    loc = find_named(ctx.server, target[1:])
                    if loc is None:
                        ctx.result.status = 500
                        ctx.result.kind = "error"
                        return
                    if not page.response_from_target:
                        # ngx_http_send_error_page sets err_status before the named location
                        # too: a proxied answer goes out with the overriding status
                        ctx.result.override_status = new_status
                    _carry_extra_headers(ctx)
                    try:
                        self._internal_redirect(ctx, "error_page", target, named=loc)
                    except _Finish as fin:
                        self._finish(ctx, fin.status)
                        return
                    except _Done:
                        pass
                    if not page.response_from_target and ctx.result.status is not None:
                        ctx.result.status = new_status
                    elif ctx.result.status is None:
                        ctx.result.status = None
                    return
                if target.startswith(("http://", "https://")) or target.startswith("$scheme"):
                    ctx.result.redirect_to = target
                    ctx.result.kind = "redirect"
                    ctx.result.status = new_status if page.response in (
                        301, 302, 303, 307, 308) else 302
                    return
                if not page.response_from_target:
                    ctx.result.override_status = new_status
                if ctx.method != "HEAD":
                    ctx.method = "GET"
                _carry_extra_headers(ctx)
                try:
                    self._internal_redirect(ctx, "error_page", target)
                except _Finish as fin:
                    self._finish(ctx, fin.status)
                    return
                except _Done:
                    pass
                if not page.response_from_target and ctx.result.status is not None:
                    ctx.result.status = new_status
                return
        ctx.result.status = status
        if status == 444:
            ctx.result.kind = "close"
        elif ctx.result.redirect_to is not None and status in (301, 302, 303, 307, 308):
            ctx.result.kind = "redirect"
        else:
            ctx.result.kind = "error"


class _Done(Exception):
    """The walk reached a response (body, proxy, static file)."""


# ngx_escape_uri's NGX_ESCAPE_URI table: space, "#", "%", "?", controls and non-ASCII.
_URI_SAFE = frozenset(b for b in range(0x21, 0x7F) if b not in b"#%?")


def escape_uri(uri: str) -> str:
    """Percent-encode what nginx's ``ngx_escape_uri(NGX_ESCAPE_URI)`` encodes."""
    out = []
    for b in uri.encode("utf-8", errors="surrogateescape"):
        out.append(chr(b) if b in _URI_SAFE else f"%{b:02X}")
    return "".join(out)


def unquote_args(args: str) -> str:
    """Decode a query string for display."""
    return unquote_plus(args)
