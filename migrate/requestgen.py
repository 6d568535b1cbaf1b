"""Generate a request set from a configuration, for ``tern migrate``'s nginx-vs-Tern comparison.

Generation rules (documented in docs/report.md; each request carries the reason it exists):

1. **Server names**: for every ``server`` of the ``http`` block, one ``GET /`` per listen port
   and per name. Exact names are used as written; ``*.example.com`` becomes
   ``www.example.com``, ``.example.com`` becomes ``example.com``, ``www.example.*`` becomes
   ``www.example.com``; a regex name gets an example string that the regex matches (when one
   can be built, see rule 6); ``""`` and ``_`` become ``localhost``. A server without names
   gets ``localhost``.
2. **Locations**: for every location (nested ones too, not ``@named``), one ``GET`` with the
   server's first usable name on its first listen: a prefix or ``^~`` location gets its prefix
   (``/`` stays ``/``), an exact location its URI, a regex location an example (rule 6). A prefix
   location whose prefix ends in ``/`` and is longer than ``/`` also gets the slash-less URI
   (nginx answers a 301 there when it proxies).
3. **Redirects and returns**: every ``rewrite`` with the flag ``redirect`` or ``permanent`` gets
   an example URI its regex matches; every ``return`` at server level is reached by rule 1, and
   at location level by rule 2.
4. **Error pages**: per server, one ``GET`` of a path that no configuration names
   (``/tern-migrate-missing-<n>``) to reach the 404 page; and every ``error_page`` target that
   is a local URI (``/50x.html``) is requested directly.
5. Requests are de-duplicated on (port, address, Host, target), in the order above (a request
   that serves several rules names them all, separated by ``; ``), and capped at
   :data:`MAX_REQUESTS`; what was left out is counted in :attr:`RequestSet.skipped`.
6. **Regex examples**: the pattern is turned into a candidate string by a small walk over it
   (literals kept, ``\\d`` -> ``1``, ``\\w``/``.`` -> ``a``, a class -> its first member,
   alternations -> their first branch, ``+``/``{n}`` repeated the minimum, ``*``/``?`` dropped,
   anchors dropped); the candidate is kept only when nginx's regex (PCRE, translated by
   :mod:`proxy.regex`) really matches it, else the location is listed in
   :attr:`RequestSet.notes` as not exercised.
7. **Headers**: every request is a ``GET`` with the ``Host`` above, ``User-Agent`` and
   ``Accept`` of :data:`HEADERS`, no body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from proxy import model as m
from proxy.regex import compile_pcre

from .compare import RequestSpec

__all__ = ["MAX_REQUESTS", "GeneratedRequest", "RequestSet", "generate", "regex_example"]

MAX_REQUESTS = 400
"""Upper bound on generated requests (rule 5)."""

HEADERS = (("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) tern-migrate/1"), ("Accept", "*/*"))
"""Sent with every generated request (rule 7): a browser-like client, so that configs that
turn away requests without a User-Agent (or with a scraper's) answer as they do for users."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedRequest:
    """One generated request and why it exists."""

    spec: RequestSpec
    """What ``tern compare`` sends."""
    reason: str
    """Rule and config place, e.g. ``location = /health (site.conf:12)``."""


@dataclass(slots=True)
class RequestSet:
    """The generated requests, plus what could not be exercised."""

    requests: list[GeneratedRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Places not exercised, with the reason."""
    skipped: int = 0
    """Requests left out by the cap."""

    def to_jsonl(self) -> str:
        """The request set in ``tern compare``'s JSON Lines format (with ``name`` = reason)."""
        import base64
        import json

        lines = []
        for g in self.requests:
            s = g.spec
            obj: dict[str, object] = {"method": s.method, "url": s.target, "host": s.host,
                                      "name": g.reason}
            if s.port is not None:
                obj["port"] = s.port
            if s.address is not None:
                obj["address"] = s.address
            if s.scheme is not None:
                obj["scheme"] = s.scheme
            if s.headers:
                obj["headers"] = [list(h) for h in s.headers]
            if s.body:
                obj["body_base64"] = base64.b64encode(s.body).decode()
            lines.append(json.dumps(obj, ensure_ascii=False))
        return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------------------------------
# regex examples (rule 6)

_ESCAPES = {"d": "1", "w": "a", "s": " ", "D": "a", "W": "-", "S": "a", "/": "/", ".": "."}


def _walk(p: str, i: int, stop: str) -> tuple[str, int]:
    """Build a candidate from ``p[i:]`` up to ``stop`` (``)`` or end); return it and the index."""
    out: list[str] = []
    last_start = 0
    while i < len(p):
        ch = p[i]
        if ch in stop:
            return "".join(out), i
        if ch == "|":  # keep the first branch: skip to the end of this group
            depth = 0
            while i < len(p):
                c = p[i]
                if c == "\\":
                    i += 2
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
            return "".join(out), i
        last_start = len(out)
        if ch in "^$":
            i += 1
            continue
        if ch == "\\" and i + 1 < len(p):
            out.append(_ESCAPES.get(p[i + 1], p[i + 1]))
            i += 2
        elif ch == "[":
            j = i + 1
            negated = j < len(p) and p[j] == "^"
            if negated:
                j += 1
            first = p[j] if j < len(p) else "a"
            if first == "\\" and j + 1 < len(p):
                first = _ESCAPES.get(p[j + 1], p[j + 1])
            end = j + 1
            while end < len(p) and p[end] != "]":
                end += 2 if p[end] == "\\" else 1
            out.append("a" if negated else first)
            i = end + 1
        elif ch == "(":
            j = i + 1
            if p.startswith("?<", j) or p.startswith("?P<", j):
                j = p.index(">", j) + 1
            elif p.startswith("?:", j) or p.startswith("?i)", j):
                j += 2
            inner, j = _walk(p, j, ")")
            out.append(inner)
            i = j + 1
        elif ch == ".":
            out.append("a")
            i += 1
        else:
            out.append(ch)
            i += 1
        # quantifiers apply to the atom just added
        if i < len(p) and p[i] in "*?":
            del out[last_start:]
            i += 1
        elif i < len(p) and p[i] == "+":
            i += 1
        elif i < len(p) and p[i] == "{":
            end = p.find("}", i)
            if end > 0:
                counts = p[i + 1:end].split(",")
                try:
                    n = int(counts[0] or "0")
                except ValueError:
                    n = 1
                atom = "".join(out[last_start:])
                del out[last_start:]
                out.append(atom * n)
                i = end + 1
        if i < len(p) and p[i] in "?+":  # lazy / possessive
            i += 1
    return "".join(out), i


def regex_example(pattern: str, caseless: bool = False, *, uri: bool = True) -> str | None:
    """A URI (or, with ``uri=False``, a host name) that nginx's regex ``pattern`` matches, or
    None (rule 6). A URI is returned percent-encoded where needed (the regex sees it decoded)."""
    try:
        rx = compile_pcre(pattern, caseless)
    except (re.error, ValueError):
        return None
    try:
        base, _ = _walk(pattern, 0, "")
    except (ValueError, IndexError):
        return None
    if not uri:
        return base if base and rx.search(base) and "/" not in base else None
    candidates = [base, "/" + base.lstrip("/"), "/a/" + base.lstrip("/"), "/a" + base]
    for c in candidates:
        if c.startswith("/") and rx.search(c):
            return c.replace("%", "%25").replace(" ", "%20").replace("?", "%3F").replace(
                "#", "%23")
    return None


# --------------------------------------------------------------------------------------------
# generation


def _host_for(name: m.ServerName) -> str | None:
    v = name.value
    match name.kind:
        case m.ServerNameKind.EXACT:
            return "localhost" if v in ("", "_") else v
        case m.ServerNameKind.WILDCARD_START:
            return v[1:] if v.startswith(".") else "www" + v[1:]
        case m.ServerNameKind.WILDCARD_END:
            return v[:-1] + "com"
        case m.ServerNameKind.REGEX:
            return regex_example(v.lstrip("~"), caseless=True, uri=False)
    return None  # pragma: no cover


def _listens(server: m.Server) -> list[m.Listen]:
    tcp = [ln for ln in server.listens if not ln.address.startswith("unix:") and not ln.quic]
    out: list[m.Listen] = []
    seen: set[tuple[str, int]] = set()
    for ln in tcp:
        if (ln.address, ln.port) not in seen:
            seen.add((ln.address, ln.port))
            out.append(ln)
    return out


def _addr(listen: m.Listen) -> str | None:
    return None if listen.address in ("", "*", "0.0.0.0", "[::]") else listen.address


def _where(source: m.SourceSpan) -> str:
    return f"{source.file}:{source.line}"


def _walk_locations(locs: tuple[m.Location, ...]) -> list[m.Location]:
    out: list[m.Location] = []
    for loc in locs:
        out.append(loc)
        out.extend(_walk_locations(loc.locations))
    return out


def _scopes(server: m.Server) -> list[m.Scope]:
    scopes = [server.scope]
    for loc in _walk_locations(server.locations):
        scopes.append(loc.scope)
    return scopes


def _rewrites(scope: m.Scope) -> list[m.Rewrite]:
    out: list[m.Rewrite] = []
    for st in scope.rewrites:
        if isinstance(st, m.Rewrite):
            out.append(st)
        elif isinstance(st, m.If):
            out.extend(_rewrites(st.scope))
    return out


def generate(config: m.Config, *, limit: int = MAX_REQUESTS) -> RequestSet:
    """The request set for ``config`` (rules in the module docstring)."""
    result = RequestSet()
    seen: dict[tuple[int, str | None, str | None, str], int] = {}
    servers = config.http.servers if config.http is not None else ()
    missing = 0

    def add(listen: m.Listen, host: str, target: str, reason: str) -> None:
        key = (listen.port, _addr(listen), host, target)
        if key in seen:  # one request serves several rules: it names them all
            i = seen[key]
            if i >= 0:
                g = result.requests[i]
                both = f"{g.reason}; {reason}"
                result.requests[i] = GeneratedRequest(spec=replace(g.spec, name=both),
                                                      reason=both)
            return
        if len(result.requests) >= limit:
            seen[key] = -1
            result.skipped += 1
            return
        seen[key] = len(result.requests)
        spec = RequestSpec(method="GET", target=target, host=host, port=listen.port,
                           address=_addr(listen), scheme="https" if listen.ssl else "http",
                           headers=HEADERS, name=reason)
        result.requests.append(GeneratedRequest(spec=spec, reason=reason))

    for server in servers:
        listens = _listens(server)
        if not listens:
            result.notes.append(f"{_where(server.source)}: server has no TCP listen; "
                                "not exercised")
            continue
        hosts: list[str] = []
        for name in server.names:
            h = _host_for(name)
            if h is None:
                result.notes.append(f"{_where(server.source)}: no example Host for server_name "
                                    f"{name.value}")
            elif h not in hosts:
                hosts.append(h)
        if not hosts:
            hosts = ["localhost"]
        first, host = listens[0], hosts[0]
        where = _where(server.source)
        # rule 1
        for listen in listens:
            for h in hosts:
                add(listen, h, "/", f"server {h} on port {listen.port} ({where})")
        # rule 2
        for loc in _walk_locations(server.locations):
            lw = f"location {loc.match} ({_where(loc.source)})"
            mod = loc.modifier
            if mod is m.LocationModifier.NAMED:
                continue
            if mod in (m.LocationModifier.PREFIX, m.LocationModifier.PREFIX_NO_REGEX,
                       m.LocationModifier.EXACT):
                target = loc.pattern if loc.pattern.startswith("/") else "/" + loc.pattern
                add(first, host, target, lw)
                if mod is not m.LocationModifier.EXACT and len(target) > 1 \
                        and target.endswith("/"):
                    add(first, host, target[:-1], lw + " without the trailing slash")
            else:
                ex = regex_example(loc.pattern, mod is m.LocationModifier.REGEX_CI)
                if ex is None:
                    result.notes.append(f"{_where(loc.source)}: no example URI for regex "
                                        f"location {loc.match}; not exercised")
                else:
                    add(first, host, ex, lw)
        # rule 3
        for scope in _scopes(server):
            for rw in _rewrites(scope):
                if rw.flag not in (m.RewriteFlag.REDIRECT, m.RewriteFlag.PERMANENT):
                    continue
                ex = regex_example(rw.pattern)
                if ex is None:
                    result.notes.append(f"{_where(rw.source)}: no example URI for rewrite "
                                        f"{rw.pattern}; not exercised")
                else:
                    add(first, host, ex, f"rewrite {rw.pattern} {rw.flag.value} "
                                         f"({_where(rw.source)})")
        # rule 4
        missing += 1
        add(first, host, f"/tern-migrate-missing-{missing}",
            f"unknown path: 404 handling of server {host} ({where})")
        scopes = [config.http.scope] if config.http is not None else []
        for scope in scopes + _scopes(server):
            for ep in scope.error_pages or ():
                target = ep.target.raw
                if target.startswith("/") and "$" not in target:
                    add(first, host, target,
                        f"error_page {' '.join(map(str, ep.codes))} {target} "
                        f"({_where(ep.source)})")
    return result
