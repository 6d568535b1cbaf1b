"""Server and location selection with nginx's precedence, compiled once from the model.

Rules (ngx_http_core_module, ngx_http_find_virtual_server, ngx_http_core_find_location):

1. A connection belongs to the listening socket that accepted it: a server listening on the exact
   local address wins over wildcard (``*:port``) listeners on that port; only servers on the
   chosen socket compete.
2. Host (lower-cased, trailing dot and port removed) picks, in order: exact name, the longest
   leading wildcard (``*.example.com``, ``.example.com``), the longest trailing wildcard
   (``www.example.*``), the first regex in config order; else the socket's ``default_server``
   (or the first server listening on it).
3. The URI is normalised before location search: percent-decoded, ``.``/``..`` resolved, slashes
   merged (``merge_slashes on``); ``..`` above the root is a 400.
4. Location search at one level: an ``=`` location equal to the URI ends the search; otherwise the
   longest prefix is remembered and its nested locations are searched first (recursively); unless
   that prefix is ``^~``, this level's regexes are tried in order and the first match wins (its
   nested locations are searched too); else the remembered prefix. A URI one ``/`` short of a prefix
   location with a proxy handler gets a 301 (auto redirect) and no regex is tried.
5. Named locations are never found by search.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .model import Config, Listen, Location, LocationModifier, Server, ServerNameKind
from .regex import compile_pcre


class BadRequest(ValueError):
    """The request URI or Host is invalid (nginx answers 400)."""


# ---------------------------------------------------------------------------------------------
# URI normalisation (ngx_http_parse_complex_uri)

_HEX = "0123456789abcdefABCDEF"


def normalize_uri(raw: str, *, merge_slashes: bool = True) -> str:
    """Normalise the path of a request target as nginx does before location search.

    Args:
        raw: the path, still percent-encoded, without the query string.
        merge_slashes: nginx's ``merge_slashes``.

    Returns:
        The decoded, normalised URI (``$uri``).

    Raises:
        BadRequest: bad percent-encoding or ``..`` above the root.
    """
    if not raw.startswith("/"):
        raise BadRequest(f"invalid URI {raw!r}")
    if "%" not in raw and "/." not in raw and "//" not in raw:
        return raw  # nothing to decode, resolve or merge: the common case
    # decode first; nginx feeds decoded bytes back through its state machine, so %2F is a slash
    # and %2E%2E is a dot segment. Decoded "%" and "#" stay literal; they cannot form segments.
    out_bytes = bytearray()
    data = raw.encode("utf-8", errors="surrogateescape")
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x25:  # %
            if i + 2 < n + 0 and i + 2 <= n - 1 and chr(data[i + 1]) in _HEX and \
                    chr(data[i + 2]) in _HEX:
                out_bytes.append(int(data[i + 1 : i + 3], 16))
                i += 3
                continue
            raise BadRequest(f"invalid percent-encoding in {raw!r}")
        out_bytes.append(c)
        i += 1
    text = out_bytes.decode("utf-8", errors="surrogateescape")
    segments: list[str] = []
    parts = text.split("/")
    # parts[0] is "" (leading slash)
    trailing = False
    for idx, seg in enumerate(parts[1:], start=1):
        last = idx == len(parts) - 1
        if seg == "":
            if last:
                trailing = True
            elif not merge_slashes:
                segments.append("")
            continue
        if seg == ".":
            if last:
                trailing = True
            continue
        if seg == "..":
            if not segments:
                raise BadRequest(f"URI {raw!r} goes above the root")
            segments.pop()
            if last:
                trailing = True
            continue
        segments.append(seg)
    uri = "/" + "/".join(segments)
    if trailing and segments:
        uri += "/"
    return uri


# ---------------------------------------------------------------------------------------------
# Server selection


@dataclass(slots=True)
class SocketTable:
    """Servers reachable through one listening socket (address, port)."""

    address: str
    port: int
    servers: list[Server] = field(default_factory=list)
    default: Server | None = None
    default_explicit: bool = False
    exact: dict[str, Server] = field(default_factory=dict)
    wild_start: list[tuple[str, bool, Server]] = field(default_factory=list)
    """(suffix including the leading dot, also_bare, server), longest first."""
    wild_end: list[tuple[str, Server]] = field(default_factory=list)
    """(prefix including the trailing dot, server), longest first."""
    regexes: list[tuple[re.Pattern[str], str, Server]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ServerMatch:
    """Which server answers and why."""

    server: Server
    reason: str
    socket: tuple[str, int]
    captures: dict[str, str]


def _listens(server: Server) -> tuple[Listen, ...]:
    if server.listens:
        return server.listens
    from .model import NOWHERE

    return (Listen(address="*", port=80, source=NOWHERE),)


class Router:
    """Compiled routing tables for one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sockets: dict[tuple[str, int], SocketTable] = {}
        self._server_cache: dict[tuple[int, str | None], ServerMatch] = {}
        self._location_cache: dict[tuple[int, str], LocationMatch] = {}
        servers = config.http.servers if config.http else ()
        for server in servers:
            for lst in _listens(server):
                if lst.quic:
                    key = ("quic:" + lst.address, lst.port)
                else:
                    key = (lst.address, lst.port)
                table = self.sockets.get(key)
                if table is None:
                    table = self.sockets[key] = SocketTable(address=key[0], port=lst.port)
                if server not in table.servers:
                    table.servers.append(server)
                    if table.default is None:
                        table.default = server
                if lst.default_server and not table.default_explicit:
                    table.default = server
                    table.default_explicit = True
        for table in self.sockets.values():
            self._index_names(table)

    @staticmethod
    def _index_names(table: SocketTable) -> None:
        for server in table.servers:
            names = server.names
            for name in names:
                v = name.value
                if name.kind is ServerNameKind.EXACT:
                    table.exact.setdefault(v, server)
                elif name.kind is ServerNameKind.WILDCARD_START:
                    if v.startswith("*."):
                        table.wild_start.append((v[1:], False, server))
                    else:  # ".example.com": also the bare name
                        table.wild_start.append((v, True, server))
                elif name.kind is ServerNameKind.WILDCARD_END:
                    table.wild_end.append((v[:-1], server))
                else:
                    pattern = v[1:]
                    table.regexes.append((compile_pcre(pattern), v, server))
            if not names:
                table.exact.setdefault("", server)
        # stable sort keeps config order among equal lengths (first defined wins)
        table.wild_start.sort(key=lambda t: -len(t[0]))
        table.wild_end.sort(key=lambda t: -len(t[0]))

    def find_location(self, server: Server, uri: str) -> LocationMatch:
        """``find_location`` with a bounded cache per configuration.

        The search depends only on (server, uri); answers without regex captures are cached
        (captures must be fresh per request). Keys use ``id(server)``, safe because this
        router keeps its configuration alive."""
        key = (id(server), uri)
        hit = self._location_cache.get(key)
        if hit is not None:
            return hit
        match = find_location(server, uri)
        if not match.captures:
            if len(self._location_cache) >= CACHE_LIMIT:
                self._location_cache.clear()
            self._location_cache[key] = match
        return match

    def socket_for(self, address: str, port: int, *, quic: bool = False) -> SocketTable | None:
        """The listening socket a connection to ``address:port`` lands on."""
        pre = "quic:" if quic else ""
        addr = address.lower()
        if ":" in addr and not addr.startswith("["):
            addr = f"[{addr}]"
        for key in ((pre + addr, port),):
            if key in self.sockets:
                return self.sockets[key]
        wildcard = "[::]" if addr.startswith("[") else "*"
        return self.sockets.get((pre + wildcard, port))

    def select_server(self, table: SocketTable, host: str | None) -> ServerMatch:
        """Pick the server for a Host on a socket (rule 2).

        Answers that carry no regex captures depend only on (socket, Host): they are cached
        (bounded), so a busy virtual host costs one dict lookup."""
        key = (id(table), host)
        hit = self._server_cache.get(key)
        if hit is not None:
            return hit
        match = self._select_server(table, host)
        if not match.captures:
            if len(self._server_cache) >= CACHE_LIMIT:
                self._server_cache.clear()
            self._server_cache[key] = match
        return match

    def _select_server(self, table: SocketTable, host: str | None) -> ServerMatch:
        sock = (table.address, table.port)
        assert table.default is not None
        if host is None:
            return ServerMatch(table.default, "no Host: default server", sock, {})
        h = normalize_host(host)
        if h in table.exact:
            return ServerMatch(table.exact[h], f'exact name "{h}"', sock, {})
        for suffix, bare, server in table.wild_start:
            if h.endswith(suffix) or (bare and h == suffix[1:]):
                written = ("" if bare else "*") + suffix
                return ServerMatch(server, f'leading wildcard "{written}"', sock, {})
        for prefix, server in table.wild_end:
            if h.startswith(prefix) and len(h) > len(prefix):
                return ServerMatch(server, f'trailing wildcard "{prefix}*"', sock, {})
        for rx, written, server in table.regexes:
            mt = rx.search(h)
            if mt:
                caps = {k: v for k, v in mt.groupdict().items() if v is not None}
                for i, g in enumerate(mt.groups(), start=1):
                    caps[str(i)] = g or ""
                return ServerMatch(server, f'regex name "{written}"', sock, caps)
        why = "default_server" if table.default_explicit else "first server on this socket"
        return ServerMatch(table.default, f"no name matched: {why}", sock, {})


def normalize_host(host: str) -> str:
    """Host as nginx compares it: lower case, no port, no trailing dot (ngx_http_validate_host).

    Raises:
        BadRequest: characters nginx rejects in a Host.
    """
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            raise BadRequest(f"invalid host {host!r}")
        return h[: end + 1]
    if ":" in h:
        h = h.split(":", 1)[0]
    if "/" in h or "\x00" in h or ".." in h:
        raise BadRequest(f"invalid host {host!r}")
    if h.endswith("."):
        h = h[:-1]
    return h


# ---------------------------------------------------------------------------------------------
# Location selection


@dataclass(frozen=True, slots=True)
class LocationMatch:
    """Result of location search."""

    location: Location | None
    reason: str
    captures: dict[str, str]
    auto_redirect: bool = False
    """True when nginx answers 301 to ``uri + "/"`` (rule 4)."""


def _has_proxy_handler(loc: Location) -> bool:
    return loc.scope.proxy_pass is not None or any(
        d.name in ("fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass")
        for d in loc.scope.other
    )


def _static(locations: tuple[Location, ...]) -> list[Location]:
    return [loc for loc in locations if loc.modifier in (
        LocationModifier.PREFIX, LocationModifier.PREFIX_NO_REGEX, LocationModifier.EXACT)]


def _regex_caps(mt: re.Match[str]) -> dict[str, str]:
    caps = {k: v for k, v in mt.groupdict().items() if v is not None}
    for i, g in enumerate(mt.groups(), start=1):
        caps[str(i)] = g or ""
    return caps


def _find(locations: tuple[Location, ...], uri: str
          ) -> tuple[str, Location | None, str, dict[str, str]]:
    """One level of ngx_http_core_find_location. Returns (rc, location, reason, captures)
    where rc is "ok" (final), "done" (auto redirect), "again" (prefix only) or "declined"."""
    best: Location | None = None
    redirect: Location | None = None
    for loc in _static(locations):
        p = loc.pattern
        if loc.modifier is LocationModifier.EXACT:
            if uri == p:
                return "ok", loc, f'exact match "= {p}"', {}
            continue
        if uri.startswith(p):
            if best is None or len(p) > len(best.pattern):
                best = loc
        elif p == uri + "/" and _has_proxy_handler(loc):
            redirect = loc
    rc = "declined"
    found: Location | None = None
    reason = ""
    caps: dict[str, str] = {}
    noregex = False
    if redirect is not None and (best is None or len(redirect.pattern) > len(best.pattern)):
        return "done", redirect, f'"{redirect.pattern}" needs a trailing slash: 301', {}
    if best is not None:
        found = best
        noregex = best.modifier is LocationModifier.PREFIX_NO_REGEX
        kind = "^~ prefix" if noregex else "longest prefix"
        reason = f'{kind} "{best.pattern}"'
        rc = "again"
        if best.locations:
            sub_rc, sub_loc, sub_reason, sub_caps = _find(best.locations, uri)
            if sub_rc in ("ok", "done"):
                return sub_rc, sub_loc, f"{reason}, then nested {sub_reason}", sub_caps
            if sub_loc is not None:
                found, caps = sub_loc, sub_caps
                reason = f"{reason}, then nested {sub_reason}"
                if sub_rc == "again":
                    # the deepest static match decides regex suppression one level up
                    pass
    if not noregex:
        for loc in locations:
            if loc.modifier not in (LocationModifier.REGEX, LocationModifier.REGEX_CI):
                continue
            rx = compile_pcre(loc.pattern, loc.modifier is LocationModifier.REGEX_CI)
            mt = rx.search(uri)
            if mt:
                caps = _regex_caps(mt)
                why = f'regex "{loc.match}" (first match in config order)'
                if loc.locations:
                    sub_rc, sub_loc, sub_reason, sub_caps = _find(loc.locations, uri)
                    if sub_loc is not None:
                        return "ok", sub_loc, f"{why}, then nested {sub_reason}", {
                            **caps, **sub_caps}
                return "ok", loc, why, caps
    return rc, found, reason, caps


CACHE_LIMIT = 4096
"""Entries kept per routing cache before it is emptied (bounds memory under hostile input)."""

def find_location(server: Server, uri: str) -> LocationMatch:
    """Location search for ``uri`` (already normalised) in ``server`` (rule 4)."""
    rc, loc, reason, caps = _find(server.locations, uri)
    if loc is None:
        return LocationMatch(None, "no location matches", {})
    return LocationMatch(loc, reason, caps, auto_redirect=rc == "done")


def find_named(server: Server, name: str) -> Location | None:
    """``@name`` lookup (names without the ``@``)."""
    for loc in server.locations:
        if loc.modifier is LocationModifier.NAMED and loc.pattern == name:
            return loc
    return None
