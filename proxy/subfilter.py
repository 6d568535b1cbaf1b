"""ngx_http_sub_filter_module (1.22.1): string replacement in response bodies.

The engine puts :class:`SubExchange` in front of the (gzip-wrapped) client exchange when
``sub_filter`` applies to the request's configuration; it is the header and body filter:

1. Header filter: the strings to look for are the ``sub_filter`` pairs in effect (an array:
   the innermost level that has any), those with variables evaluated now (lower-cased; an empty
   one is left out; none left: no filtering).  The answer is filtered when its type (the
   ``Content-Type`` up to a ``;`` that starts a charset parameter, lower-cased) is text/html or
   in ``sub_filter_types`` (``*``: any) and its length is not known to be 0.  There is no
   Content-Encoding test (nginx filters a compressed body too).  Filtered: ``Content-Length``
   removed (chunked, or until close for HTTP/1.0), ``Accept-Ranges`` gone and Range not
   served (the range filter sees no length), ``Last-Modified`` and ``ETag`` removed, or with
   ``sub_filter_last_modified on`` kept with the ETag made weak.
2. Body filter: case-insensitive (ASCII) search; at the leftmost position where any string
   matches, the first of them in configuration order wins and is replaced (its replacement
   evaluated the first time it is used); the search goes on after it.  ``sub_filter_once on``
   (the default) uses each string at most once.  Bytes that could still start a match wait
   for the next piece; the end of the body lets them go.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .charset import split_type

if TYPE_CHECKING:
    from .interp import RequestState
    from .model import SubFilter

__all__ = ["SubConf", "conf_of", "wrap", "inner_of", "filters", "SubExchange", "Matcher"]


class SubConf:
    """The merged sub_filter settings of one configuration chain."""

    __slots__ = ("pairs", "once", "types", "last_modified", "static")

    def __init__(self, pairs: tuple[SubFilter, ...], once: bool, types: frozenset[str],
                 last_modified: bool) -> None:
        self.pairs = pairs
        self.once = once
        self.types = types
        self.last_modified = last_modified
        self.static = all(p.match.is_static for p in pairs)




def conf_of(state: RequestState) -> SubConf | None:
    # cached with the configuration (the interpreter's per-chain cache): ids of scopes are
    # only unique while their model lives
    cache = state.interp.effective_cache
    key = (state.chain_key, "subfilter")
    try:
        return cache[key]  # type: ignore[return-value]
    except KeyError:
        pass
    pairs = state.effective(lambda s: s.static.sub_filters)
    conf = None
    if pairs:
        once = state.effective(lambda s: s.static.sub_filter_once)
        types = state.effective(lambda s: s.static.sub_filter_types)
        lm = state.effective(lambda s: s.static.sub_filter_last_modified)
        conf = SubConf(tuple(pairs), once is not False,
                       frozenset(types) if types is not None else frozenset(),
                       bool(lm))
    cache[key] = conf
    return conf


class Matcher:
    """The body side: feed pieces, get the filtered bytes (rule 2)."""

    def __init__(self, matches: list[bytes], replace: Any, once: bool) -> None:
        self.matches = matches
        self.replace = replace  # index -> replacement bytes
        self.once = once
        self.used: set[int] = set()
        self.longest = max(len(m) for m in matches)
        self.shortest = min(len(m) for m in matches)
        self.held = b""
        self.done = False
        self._compile()

    def _compile(self) -> None:
        live = [i for i in range(len(self.matches)) if i not in self.used]
        if not live:
            self.done = True
            return
        self.index = live
        self.regex = re.compile(b"|".join(b"(" + re.escape(self.matches[i]) + b")"
                                          for i in live), re.IGNORECASE)

    def feed(self, data: bytes, last: bool = False) -> bytes:
        if self.done:
            out, self.held = self.held + data, b""
            return out
        buf = self.held + data if self.held else data
        # positions before ``safe`` see every string whole: decided here; the rest waits
        safe = len(buf) - self.longest + 1
        out: list[bytes] = []
        pos = 0
        while not self.done:
            m = self.regex.search(buf, pos)
            if m is None or m.start() >= safe:
                break
            out.append(buf[pos:m.start()])
            which = self.index[m.lastindex - 1]  # type: ignore[operator]
            out.append(self.replace(which))
            pos = m.end()
            if self.once:
                self.used.add(which)
                self._compile()
        if self.done:
            out.append(buf[pos:])
            self.held = b""
        else:
            cut = max(pos, safe)
            out.append(buf[pos:cut])
            self.held = buf[cut:]
            if last:
                out.append(self._tail(self.held))
                self.held = b""
        return b"".join(out)

    def _tail(self, tail: bytes) -> bytes:
        """The end of the body, as nginx's parser treats it: at each position (where the
        shortest string fits), the strings whose byte at the shortest length's last position
        is the one there are tried in order; one that the body ends inside stops all matching
        (the rest goes out as it is, nginx's "partial match" at the last buffer)."""
        k = self.shortest - 1
        out: list[bytes] = []
        lit = s = 0
        low = tail.lower()
        while not self.done and s + k < len(tail):
            c = low[s + k]
            for i in self.index:
                cand = self.matches[i]
                if cand[k] != c:
                    continue
                if len(tail) - s < len(cand):
                    if cand.startswith(low[s:]):
                        out.append(tail[lit:])
                        return b"".join(out)
                    continue
                if low[s:s + len(cand)] == cand:
                    out.append(tail[lit:s])
                    out.append(self.replace(i))
                    s = lit = s + len(cand)
                    if self.once:
                        self.used.add(i)
                        self._compile()
                    break
            else:
                s += 1
        out.append(tail[lit:])
        return b"".join(out)


def _first(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def wrap(ex: Any, state: RequestState | None, run: Any = None) -> Any:
    """``ex`` behind the sub filter when ``sub_filter`` applies to ``state``, else ``ex``."""
    if state is None:
        return ex
    conf = conf_of(state)
    if conf is None:
        return ex
    return SubExchange(ex, conf, state, run)


def inner_of(ex: Any) -> Any:
    """The exchange behind the sub filter (``ex`` itself when there is none)."""
    return ex.inner if isinstance(ex, SubExchange) else ex


def filters(ex: Any, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``ex`` would filter this answer (the range filter then does nothing)."""
    return isinstance(ex, SubExchange) and ex.applies(headers) is not None


class SubExchange:
    """An exchange whose response passes nginx's sub_filter header and body filters.

    The headers list is changed in place (it is also the engine's record of what was sent).
    ``$body_bytes_sent`` counts what goes out, with chunk framing on HTTP/1.1, unless a gzip
    filter behind this one counts it."""

    def __init__(self, inner: Any, conf: SubConf, state: RequestState, run: Any) -> None:
        self.inner = inner
        self.conf = conf
        self.state = state
        self.run = run
        self.matcher: Matcher | None = None
        self.sent = 0
        self.chunked = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def applies(self, headers: list[tuple[bytes, bytes]]) -> list[bytes] | None:
        """The strings to look for when this answer is filtered, else None."""
        ct = _first(headers, b"content-type")
        if not ct:
            return None
        end, _ = split_type(ct)
        kind = ct[:end].lower().decode("latin-1")
        types = self.conf.types
        if kind != "text/html" and kind not in types and "*" not in types:
            return None
        if _first(headers, b"content-length") == b"0":
            return None
        matches = []
        for pair in self.conf.pairs:
            if pair.match.is_static:
                matches.append(pair.match.raw.encode("utf-8", "surrogateescape"))
            else:
                got = self.state.eval(pair.match).lower()
                if got:
                    matches.append(got.encode("utf-8", "surrogateescape"))
        return matches or None

    def filter_headers(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if status == 304:
            return
        matches = self.applies(headers)
        if matches is None:
            return
        drop = {b"content-length", b"accept-ranges"}
        if not self.conf.last_modified:
            drop |= {b"last-modified", b"etag"}
        headers[:] = [(k, v) for k, v in headers if k.lower() not in drop]
        if self.conf.last_modified:
            for n, (k, v) in enumerate(headers):
                if k.lower() == b"etag" and v.startswith(b'"'):
                    headers[n] = (k, b"W/" + v)
        subs: dict[int, bytes] = {}
        pairs = [p for p in self.conf.pairs
                 if p.match.is_static or self.state.eval(p.match)]

        def replace(i: int) -> bytes:
            got = subs.get(i)
            if got is None:
                got = subs[i] = self.state.eval(pairs[i].replacement).encode(
                    "utf-8", "surrogateescape")
            return got

        self.matcher = Matcher(matches, replace, self.conf.once)
        from .gzipfilter import GzipExchange

        self.chunked = (self.inner.head.http_version == "1.1"
                        and not isinstance(self.inner, GzipExchange))

    def _count(self, out: bytes) -> None:
        self.sent += len(out)
        if self.chunked and out:
            self.sent += len(b"%x" % len(out)) + 4

    def _finish_count(self) -> None:
        if self.chunked:
            self.sent += 5
        if self.run is not None and self.chunked is not None:
            from .gzipfilter import GzipExchange

            if not isinstance(self.inner, GzipExchange):
                self.run.body_bytes = self.sent

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        self.filter_headers(status, headers)
        self.inner.send_headers(status, headers, end_stream=end_stream, reason=reason,
                                close=close)

    def send_data(self, data: bytes) -> None:
        m = self.matcher
        if m is None:
            self.inner.send_data(data)
            return
        out = m.feed(data)
        if out:
            self._count(out)
            self.inner.send_data(out)

    def end(self) -> None:
        m = self.matcher
        if m is not None:
            out = m.feed(b"", last=True)
            if out:
                self._count(out)
                self.inner.send_data(out)
            self._finish_count()
        self.inner.end()

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        self.filter_headers(status, headers)
        m = self.matcher
        if m is None:
            self.inner.send_response(status, headers, body, reason=reason, close=close)
            return
        out = m.feed(body, last=True)
        self._count(out)
        self._finish_count()
        self.inner.send_response(status, headers, out, reason=reason, close=close)
