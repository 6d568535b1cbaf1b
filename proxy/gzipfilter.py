"""gzip compression of responses: nginx's ngx_http_gzip_filter_module (1.22.1) and the
``gzip_*`` settings of ngx_http_core_module that ``ngx_http_gzip_ok`` reads.

The engine wraps its :class:`~proxy.engine.Exchange` in :class:`GzipExchange` when ``gzip on``
applies to the request's configuration; the wrapper is the header and body filter:

1. Header filter (``ngx_http_gzip_header_filter``): only a 200, 403 or 404, without a non-empty
   ``Content-Encoding``, whose ``Content-Length`` (when known) is at least ``gzip_min_length``,
   whose type (``Content-Type`` up to a ``;`` that starts a charset parameter, lower-cased) is
   in ``gzip_types`` (``text/html`` always; ``*`` any, even none) is a candidate. A candidate
   gets ``Vary: Accept-Encoding`` under ``gzip_vary on`` whether or not it is compressed; it is
   compressed when ``ngx_http_gzip_ok`` says so (:func:`gzip_ok`). Compressed: ``Content-Encoding:
   gzip`` appended, ``Content-Length`` and ``Accept-Ranges`` removed (the body is sent chunked,
   or until close to an HTTP/1.0 client), a strong ``ETag`` made weak (an unquoted one dropped).
2. Body filter: deflate at ``gzip_comp_level`` with nginx's window and memory level
   (``ngx_http_gzip_filter_memory``: both reduced while a known length fits a smaller window),
   in zlib's own gzip wrapper (``windowBits + 16``: mtime 0, OS 3, XFL from the level) as nginx
   asks for it; the same system zlib, so the bytes are nginx's. Compressed as the body
   arrives, never buffered whole; output that zlib holds back is sent when it has some (nginx
   fills its gzip buffers the same way).
3. ``gzip_ok``: the first ``Accept-Encoding`` must name ``gzip`` as a token (``gzip,``
   first, or after a comma or space anywhere) with no ``q`` of zero (nginx's own parser,
   quirks included: ``q=0.5`` is read digit by digit); msie6 (``gzip_disable msie6``); the
   request's HTTP version at least ``gzip_http_version``; a request with ``Via`` only under
   ``gzip_proxied`` (any, auth, expired, no-cache, no-store, private, no_last_modified,
   no_etag, off); ``gzip_disable`` regexes (case-insensitive) on ``User-Agent``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from .regex import compile_pcre
from .units import parse_size

if TYPE_CHECKING:
    from .interp import RequestState

GZIP_STATUSES = frozenset({200, 403, 404})
"""Statuses ngx_http_gzip_header_filter compresses."""

DIRECTIVES = ("gzip", "gzip_buffers", "gzip_comp_level", "gzip_disable", "gzip_http_version",
              "gzip_min_length", "gzip_proxied", "gzip_types", "gzip_vary", "gzip_window",
              "gzip_hash", "postpone_gzipping", "gzip_no_buffer")


@dataclass(frozen=True, slots=True)
class GzipConf:
    """The merged gzip settings of one configuration chain."""

    enable: bool = False
    level: int = 1
    min_length: int = 20
    types: frozenset[str] | None = frozenset({"text/html"})
    """Lower-case MIME types; None: ``gzip_types *``."""
    vary: bool = False
    proxied: frozenset[str] = frozenset({"off"})
    http_version: int = 1001
    disable: tuple[re.Pattern[str], ...] = ()
    disable_msie6: bool = False
    wbits: int = 15
    memlevel: int = 8
    buffer_size: int = 4096
    """``gzip_buffers``' size: output goes on in whole buffers until the end."""


_CONF_KEY = object()


def conf_of(state: RequestState) -> GzipConf:
    """The gzip settings for ``state``'s configuration chain (cached per chain)."""
    key = (state.chain_key, _CONF_KEY)
    cache = state.interp.effective_cache
    got = cache.get(key)
    if isinstance(got, GzipConf):
        return got
    conf = _build(state)
    cache[key] = conf
    return conf


def _build(state: RequestState) -> GzipConf:
    found: dict[str, tuple[str, ...]] = {}
    for scope in reversed(state.scope_chain):
        for d in scope.other:
            if d.name in DIRECTIVES and d.name not in found:
                found[d.name] = d.args
    conf = GzipConf()
    kw: dict[str, Any] = {}

    def flag(name: str) -> bool | None:
        args = found.get(name)
        return None if not args else args[0].lower() == "on"

    if flag("gzip"):
        kw["enable"] = True
    if flag("gzip_vary"):
        kw["vary"] = True
    if "gzip_comp_level" in found:
        kw["level"] = int(found["gzip_comp_level"][0])
    if "gzip_min_length" in found:
        kw["min_length"] = parse_size(found["gzip_min_length"][0])
    if "gzip_types" in found:
        args = found["gzip_types"]
        kw["types"] = None if "*" in args else frozenset({"text/html"} | {
            a.lower() for a in args})
    if "gzip_proxied" in found:
        kw["proxied"] = frozenset(a.lower() for a in found["gzip_proxied"])
    if "gzip_http_version" in found:
        kw["http_version"] = 1000 if found["gzip_http_version"][0] == "1.0" else 1001
    if "gzip_disable" in found:
        pats = []
        for a in found["gzip_disable"]:
            if a == "msie6":
                kw["disable_msie6"] = True
            elif a != "degradation":
                try:
                    pats.append(compile_pcre(a, True))
                except ValueError:  # reported as unsupported by tern check
                    pass
        kw["disable"] = tuple(pats)
    if "gzip_buffers" in found and len(found["gzip_buffers"]) == 2:
        kw["buffer_size"] = max(1, parse_size(found["gzip_buffers"][1]))
    if "gzip_window" in found:
        size = parse_size(found["gzip_window"][0])
        kw["wbits"] = max(9, min(15, size.bit_length() - 1))
    if "gzip_hash" in found:
        size = parse_size(found["gzip_hash"][0])
        kw["memlevel"] = max(1, min(9, size.bit_length() - 1 - 8))  # 512 -> 1 ... 128k -> 9
    return dataclasses.replace(conf, **kw)


# -- request side: ngx_http_gzip_ok -------------------------------------------------------------


def _first(headers: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]],
           name: bytes) -> bytes | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _all(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def accepts_gzip(ae: bytes) -> bool:
    """``ngx_http_gzip_ok``'s test of ``Accept-Encoding``, with ngx_http_gzip_accept_encoding
    and ngx_http_gzip_quantity."""
    ae = ae.split(b"\0", 1)[0]  # nginx's strcasestrn stops at a NUL
    if len(ae) < 4:
        return False
    if ae.startswith(b"gzip,"):
        return True
    low = ae.lower()
    start = 0
    while True:
        p = low.find(b"gzip", start)
        if p < 0:
            return False
        if p == 0 or low[p - 1] in b", ":
            break
        start = p + 4
    p += 4
    n = len(ae)
    while p < n:
        c = ae[p]
        p += 1
        if c == 0x2C:  # ','
            return True
        if c == 0x3B:  # ';'
            break
        if c != 0x20:
            return False
    else:
        return True
    while p < n:  # quantity
        c = ae[p]
        p += 1
        if c in b"qQ":
            break
        if c != 0x20:
            return False
    else:
        return True
    if p + 2 > n or ae[p] != 0x3D:  # '='
        return False
    return _quantity(ae, p + 1) != 0


def _quantity(s: bytes, p: int) -> int:
    n = len(s)
    c = s[p]
    p += 1
    if c not in b"01":
        return 0
    q = (c - 0x30) * 100
    if p == n:
        return q
    c = s[p]
    p += 1
    if c in b", ":
        return q
    if c != 0x2E:  # '.'
        return 0
    digits = 0
    while p < n:
        c = s[p]
        p += 1
        if c in b", ":
            break
        if 0x30 <= c <= 0x39:
            q += c - 0x30
            digits += 1
            continue
        return 0
    if q > 100 or digits > 3:
        return 0
    return q


def is_msie6(ua: bytes) -> bool:
    """``r->headers_in.msie6`` (ngx_http_process_user_agent)."""
    at = ua.find(b"MSIE ")
    if at < 0 or at + 7 >= len(ua):
        return False
    if ua[at + 6:at + 7] != b".":
        return False
    major = ua[at + 5:at + 6]
    if major in (b"4", b"5"):
        return True
    return major == b"6" and ua.find(b"SV1", at + 8) < 0


def _http_time(value: bytes) -> float | None:
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _has_token(values: list[bytes], token: bytes) -> bool:
    """ngx_http_parse_multi_header_lines for a token without value."""
    for v in values:
        low = v.lower()
        start = 0
        while True:
            p = low.find(token, start)
            if p < 0:
                break
            end = p + len(token)
            if (p == 0 or low[p - 1] in b", ") and (end == len(low) or low[end] == 0x2C):
                return True
            start = end
    return False


def gzip_ok(conf: GzipConf, req_headers: tuple[tuple[bytes, bytes], ...], http_version: str,
            headers: list[tuple[bytes, bytes]], now: Callable[[], float], *,
            lm_header: bool = True) -> bool:
    """``ngx_http_gzip_ok``: whether this client gets a compressed answer."""
    ae = _first(req_headers, b"accept-encoding")
    if ae is None or len(ae) < 4:
        return False
    if not accepts_gzip(ae):
        return False
    ua = _first(req_headers, b"user-agent")
    if conf.disable_msie6 and ua is not None and is_msie6(ua):
        return False
    major, _, minor = http_version.partition(".")
    if int(major) * 1000 + int(minor or 0) < conf.http_version:
        return False
    if _first(req_headers, b"via") is not None and not _proxied_ok(conf, req_headers, headers,
                                                                  now, lm_header):
        return False
    if conf.disable and ua is not None:
        text = ua.decode("latin-1")
        if any(p.search(text) for p in conf.disable):
            return False
    return True


def _proxied_ok(conf: GzipConf, req_headers: tuple[tuple[bytes, bytes], ...],
                headers: list[tuple[bytes, bytes]], now: Callable[[], float],
                lm_header: bool) -> bool:
    p = conf.proxied
    if "off" in p:
        return False
    if "any" in p:
        return True
    if "auth" in p and _first(req_headers, b"authorization") is not None:
        return True
    expires = _first(headers, b"expires")
    if expires is not None:
        if "expired" not in p:
            return False
        when = _http_time(expires)
        if when is None:
            return False
        date = _first(headers, b"date")
        if date is not None:
            at = _http_time(date)
            if at is None:
                return False
        else:
            at = now()
        return when < at
    cc = _all(headers, b"cache-control")
    if cc:
        for name, token in (("no-cache", b"no-cache"), ("no-store", b"no-store"),
                            ("private", b"private")):
            if name in p and _has_token(cc, token):
                return True
        return False
    if "no_last_modified" in p and lm_header and _first(headers, b"last-modified") is not None:
        return False
    if "no_etag" in p and _first(headers, b"etag") is not None:
        return False
    return True


# -- response side ------------------------------------------------------------------------------


def content_type_of(value: bytes) -> bytes:
    """The part of a Content-Type nginx tests against a types list: up to the ``;`` that
    starts a ``charset=`` parameter (the whole value when there is none), lower-cased."""
    end = len(value)
    at = 0
    while True:
        semi = value.find(b";", at)
        if semi < 0:
            break
        rest = value[semi + 1:].lstrip(b" ")
        if not rest:
            break
        if rest[:8].lower() == b"charset=":
            end = semi
        at = semi + 1
    return value[:end].lower()


def candidate(conf: GzipConf, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """The first test of ngx_http_gzip_header_filter (``r->gzip_vary`` is set past it)."""
    if not conf.enable or status not in GZIP_STATUSES:
        return False
    ce = _first(headers, b"content-encoding")
    if ce:
        return False
    cl = _first(headers, b"content-length")
    if cl is not None:
        try:
            if int(cl) < conf.min_length:
                return False
        except ValueError:
            pass
    if conf.types is None:
        return True
    ct = _first(headers, b"content-type")
    if not ct:
        return False
    return content_type_of(ct).decode("latin-1") in conf.types


def _weaken_etag(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (k, v) in enumerate(headers):
        if k.lower() != b"etag":
            continue
        if len(v) > 2 and v.startswith(b"W/"):
            return
        if not v.startswith(b'"'):
            del headers[i]
            return
        headers[i] = (k, b"W/" + v)
        return


def memory(conf: GzipConf, length: int | None) -> tuple[int, int]:
    """ngx_http_gzip_filter_memory: window bits and memory level for a known length."""
    wbits, memlevel = conf.wbits, conf.memlevel
    if length is not None and length > 0:
        while length < (1 << (wbits - 1)) - 262:
            wbits -= 1
            memlevel -= 1
        memlevel = max(memlevel, 1)
    return wbits, memlevel


class Compressor:
    """The gzip body filter for one response: zlib's own gzip wrapper (windowBits + 16), as
    nginx 1.22 asks deflateInit2 for."""

    __slots__ = ("z",)

    def __init__(self, level: int, wbits: int, memlevel: int) -> None:
        self.z = zlib.compressobj(level, zlib.DEFLATED, 16 + wbits, memlevel)

    def feed(self, data: bytes) -> bytes:
        return self.z.compress(data)

    def finish(self) -> bytes:
        return self.z.flush(zlib.Z_FINISH)


class GzipExchange:
    """An exchange whose response passes nginx's gzip header and body filters.

    The headers list it is given is changed in place (it is also the engine's record of what
    was sent, ``$sent_http_*``); ``Vary: Accept-Encoding`` goes only to the wire, as nginx's
    header filter writes it without adding it to ``headers_out`` (``$sent_http_vary`` does
    not see it). ``$body_bytes_sent`` counts the compressed bytes with their chunk framing
    on an HTTP/1.1 connection, as nginx counts what it wrote."""

    def __init__(self, inner: Any, conf: GzipConf, run: Any = None, *,
                 static: bool = False) -> None:
        self.inner = inner
        self.static = static
        self.conf = conf
        self.run = run
        self.comp: Compressor | None = None
        self.sent = 0
        self.chunked = False
        self.held = b""
        self.static_vary = False
        """gzip_static found a .gz file: Vary goes out even for an answer not compressed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def filter_headers(self, status: int, headers: list[tuple[bytes, bytes]]
                       ) -> list[tuple[bytes, bytes]]:
        """Apply the header filter to ``headers`` in place; the headers to send."""
        conf = self.conf
        if not candidate(conf, status, headers):
            return [(b"Vary", b"Accept-Encoding")] + headers if self.static_vary else headers
        wire = [(b"Vary", b"Accept-Encoding")] if conf.vary else []
        head = self.inner.head
        if not gzip_ok(conf, head.raw_headers, head.http_version, headers, time.time,
                       lm_header=not self.static):
            return wire + headers if wire else headers
        length = None
        cl = _first(headers, b"content-length")
        if cl is not None:
            try:
                length = int(cl)
            except ValueError:
                length = None
        wbits, memlevel = memory(conf, length)
        headers[:] = [(k, v) for k, v in headers
                      if k.lower() not in (b"content-length", b"accept-ranges")]
        _weaken_etag(headers)
        headers.append((b"Content-Encoding", b"gzip"))
        self.comp = Compressor(conf.level, wbits, memlevel)
        self.chunked = head.http_version == "1.1"
        return wire + headers

    def _count(self, out: bytes) -> None:
        self.sent += len(out)
        if self.chunked and out:
            self.sent += len(b"%x" % len(out)) + 4  # size line CRLF, data CRLF

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], *,
                     end_stream: bool = False, reason: bytes | None = None,
                     close: bool = False) -> None:
        wire = self.filter_headers(status, headers)
        if self.comp is not None and end_stream and self.inner.head.method != b"HEAD":
            # an empty body still becomes a gzip member
            self.inner.send_headers(status, wire, reason=reason, close=close)
            self.end()
            return
        self.inner.send_headers(status, wire, end_stream=end_stream, reason=reason,
                                close=close)

    def send_data(self, data: bytes) -> None:
        comp = self.comp
        if comp is None:
            self.inner.send_data(data)
            return
        out = self.held + comp.feed(data)
        # nginx passes its gzip output on in whole gzip_buffers-sized buffers; the partly
        # filled last one waits for more (or the end): at most one buffer is held here
        whole = len(out) - len(out) % self.conf.buffer_size
        self.held = out[whole:]
        if whole:
            out = out[:whole]
            self._count(out)
            self.inner.send_data(out)

    def _finish(self, held: bytes = b"") -> bytes:
        comp = self.comp
        assert comp is not None
        out = self.held + held + comp.finish()
        self.held = b""
        self._count(out)
        if self.chunked:
            self.sent += 5  # the last chunk: 0 CRLF CRLF
        if self.run is not None:
            self.run.body_bytes = self.sent
        return out

    def end(self) -> None:
        if self.comp is not None:
            self.inner.send_data(self._finish())
        self.inner.end()

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, *,
                      reason: bytes | None = None, close: bool = False) -> None:
        wire = self.filter_headers(status, headers)
        comp = self.comp
        if comp is None:
            self.inner.send_response(status, wire, body, reason=reason, close=close)
            return
        # one piece (one chunk), as nginx sends a body that is all in memory
        self.inner.send_response(status, wire, self._finish(comp.feed(body)), reason=reason,
                                 close=close)


def static_variant(mode: str, state: RequestState, path: str,
                   req_headers: tuple[tuple[bytes, bytes], ...], http_version: str
                   ) -> tuple[str, bool, bool] | int | None:
    """``gzip_static on|always`` (ngx_http_gzip_static_module) for the file at ``path``.

    None: not used (off, a URI ending in ``/``, no ``path.gz`` or it is a directory, or
    ``on`` with neither gzip_ok nor gzip_vary).  An int: the status to answer (a ``.gz``
    that is not a regular file: 404).  Else (file to send, it is the ``.gz``, add ``Vary``):
    with ``on`` a ``.gz`` that exists sets gzip_vary even when the client does not get it.
    """
    if mode not in ("on", "always") or path.endswith("/"):
        return None
    conf = conf_of(state)
    ok = mode == "always" or gzip_ok(conf, req_headers, http_version, [], time.time,
                                     lm_header=False)
    if not conf.vary and not ok:
        return None
    gz = path + ".gz"
    try:
        st = os.stat(gz)
    except OSError:
        return None
    vary = mode == "on" and conf.vary
    if not ok:
        return (path, False, True) if vary else None
    if stat.S_ISDIR(st.st_mode):
        return (path, False, True) if vary else None
    if not stat.S_ISREG(st.st_mode):
        return 404
    return gz, True, vary


class _VaryExchange:
    """An exchange that writes ``Vary: Accept-Encoding`` on the wire (gzip_static's
    gzip_vary when no gzip filter is there to write it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_headers(self, status: int, headers: list[tuple[bytes, bytes]], **kw: Any) -> None:
        self.inner.send_headers(status, [(b"Vary", b"Accept-Encoding")] + headers, **kw)

    def send_response(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                      **kw: Any) -> None:
        self.inner.send_response(status, [(b"Vary", b"Accept-Encoding")] + headers, body, **kw)


def with_vary(ex: Any, gzip_ex: Any) -> Any:
    """``ex`` sending ``Vary: Accept-Encoding`` once: through the gzip filter when ``gzip_ex``
    is one (it writes Vary itself for a compressed answer), else by a thin wrapper."""
    if isinstance(gzip_ex, GzipExchange):
        gzip_ex.static_vary = True
        return ex
    return _VaryExchange(ex)


def enabled(state: RequestState | None) -> bool:
    """``gzip on`` applies to ``state``'s configuration."""
    return state is not None and conf_of(state).enable


def wrap(ex: Any, state: RequestState | None, run: Any = None, kind: str = "") -> Any:
    """``ex`` behind the gzip filter when ``gzip on`` applies to ``state``, else ``ex``.

    ``kind`` is the routing result's: a static file's Last-Modified is nginx's
    ``last_modified_time``, not a header element, so ``gzip_proxied no_last_modified`` does
    not see it."""
    if state is None:
        return ex
    conf = conf_of(state)
    if not conf.enable:
        return ex
    return GzipExchange(ex, conf, run, static=kind == "static")


def compresses(ex: Any, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``ex`` would compress this answer (the range filter then does nothing)."""
    if not isinstance(ex, GzipExchange):
        return False
    trial = list(headers)
    if not candidate(ex.conf, status, trial):
        return False
    head = ex.inner.head
    return gzip_ok(ex.conf, head.raw_headers, head.http_version, trial, time.time,
                   lm_header=not ex.static)


_PROXIED = frozenset({"off", "expired", "no-cache", "no-store", "private", "no_last_modified",
                      "no_etag", "auth", "any"})
_WINDOWS = {1 << b: b for b in range(9, 16)}
_HASHES = {1 << (m + 8): m for m in range(1, 10)}


def problem(name: str, args: tuple[str, ...]) -> str | None:
    """What nginx says when it refuses a ``gzip_*`` directive's value (None: accepted).

    ``gzip_disable`` regexes are the front end's to check (PCRE that Python cannot run is
    unsupported, not an error)."""
    try:
        if name == "gzip_comp_level":
            if not args[0].isdigit():
                return f'invalid number "{args[0]}" in "{name}" directive'
            if not 1 <= int(args[0]) <= 9:
                return f'"{name}" directive value must be between 1 and 9'
        elif name == "gzip_min_length":
            parse_size(args[0])
        elif name == "gzip_http_version" and args[0] not in ("1.0", "1.1"):
            return (f'invalid value "{args[0]}" in "{name}" directive, it must be "1.0" or '
                    '"1.1"')
        elif name == "gzip_proxied":
            for a in args:
                if a not in _PROXIED:
                    return f'invalid value "{a}" in "{name}" directive'
        elif name == "gzip_window" and parse_size(args[0]) not in _WINDOWS:
            return "must be 512, 1k, 2k, 4k, 8k, 16k, or 32k"
        elif name == "gzip_hash" and parse_size(args[0]) not in _HASHES:
            return "must be 512, 1k, 2k, 4k, 8k, 16k, 32k, 64k, or 128k"
    except ValueError as exc:
        return f'{exc} in "{name}" directive'
    return None
