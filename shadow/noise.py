"""Normalisation before diffing, and noise learned the Diffy way.

Normalisation (on top of :mod:`shadow.diff`'s own rules: header case and order, hop-by-hop
headers, ``Date``/``Server`` presence only, chunked vs ``Content-Length``):

1. A body with ``Content-Encoding: gzip``/``x-gzip``/``deflate`` is decoded (zlib) before
   comparing, and ``Br`` too when the ``brotli`` module is importable (else the bytes are compared
   as sent and :data:`BROTLI` is False); the ``Content-Encoding`` header itself is still compared,
   ``Content-Length`` becomes framing (it described the encoded body). A body that fails to decode
   is compared as sent.
2. The HTTP version of both responses is set to ``1.1``: a proxy may answer 1.0 or 1.1 to the
   same request, and the version of the status line is not content.
3. The signature of a built-in error page (``<hr><center>nginx/1.22.1</center>``, Tern's
   ``<hr><center>tern/0.1.0</center>``) is masked like the ``Server`` header it repeats: only
   when it is exactly that response's own ``Server`` value (or its product token, for
   ``server_tokens off``), so a page naming another server still differs.
4. On the sides that got the shadow marker (``marker``: the candidate and the second primary,
   never the primary) the marker's reflection is removed before comparing: an upstream that
   echoes the request it received (JSON ``["X-Tern-Shadow","1"]`` pair or
   ``"X-Tern-Shadow":"1"`` member, a ``X-Tern-Shadow: 1`` text line, CGI's
   ``HTTP_X_TERN_SHADOW``) would otherwise always differ from the primary because of a header
   the shadow proxy added itself; the same goes for a response header of that name.
5. The user's regex masks (:mod:`shadow.rules`) then run on bodies and header values.

When 3 or 4 change a body, a ``Content-Length`` that described the old body is set to the new
length (it stays plain framing).

Noise (DESIGN.md §6 rule 5): the same request goes to the primary twice, or to the primary and a
``--secondary`` running the same thing; every field that differs between those two answers is
noise *for that route*. :class:`NoiseModel` keeps, per route, how many times each field was seen
differing between primaries and how many exchanges were compared; a candidate difference on a
field that the model has seen as noise on that route (in this exchange or an earlier one) gets
the verdict ``noise`` instead of ``difference``. JSON array indices are kept as they are: noise in
``$.items[3].id`` says nothing about ``$.items[4].id`` unless seen too.

Routes (:func:`route_key`): ``METHOD /path`` with the query dropped and every path segment that
looks like an id (all digits, a UUID, 16+ hex digits, or a mix of letters and 6+ digits)
replaced by ``{id}``.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import replace

from .diff import CapturedResponse, Difference
from .rules import Rules

try:  # optional: br decoding
    import brotli as _brotli  # type: ignore[import-not-found]  # optional dependency
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None

__all__ = ["BROTLI", "NoiseModel", "field_of", "normalise", "route_key"]

BROTLI = _brotli is not None
"""True when ``br`` bodies are decoded before comparing."""

MAX_DECODED = 16 * 1024 * 1024
"""A decoded body larger than this is compared as sent (decompression bombs)."""

_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|(?=.*\d{6})[A-Za-z0-9_-]+)$")


def route_key(method: str, target: str) -> str:
    """``GET /users/{id}/orders`` for ``GET /users/42/orders?x=1`` (see the module docstring)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "://" in path:  # absolute-form
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    segments = [("{id}" if s and _ID_SEGMENT.match(s) else s) for s in path.split("/")]
    return f"{method.upper()} {'/'.join(segments) or '/'}"


def _header(headers: tuple[tuple[bytes, bytes], ...], name: bytes) -> bytes | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _decode(body: bytes, coding: bytes) -> bytes | None:
    coding = coding.strip().lower()
    try:
        if coding in (b"gzip", b"x-gzip"):
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == b"deflate":
            d = zlib.decompressobj()
        elif coding == b"br" and _brotli is not None:
            out = _brotli.decompress(body)
            return out if len(out) <= MAX_DECODED else None
        else:
            return None
        out = d.decompress(body, MAX_DECODED)
        return out if not d.unconsumed_tail else None
    except Exception:  # noqa: BLE001 - any decoder failure means "compare as sent"
        return None


_SIGNATURE = b"<hr><center>(server)</center>"


def _strip_signature(body: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    if b"<hr><center>" not in body:
        return body
    server = _header(headers, b"server")
    if not server:
        return body
    server = server.strip()
    for token in (server, server.split(b"/", 1)[0]):
        tail = b"<hr><center>" + token + b"</center>"
        if tail in body:
            return body.replace(tail, _SIGNATURE)
    return body


def mask_signature(r: CapturedResponse) -> CapturedResponse:
    """``r`` with its built-in error page signature masked when it repeats ``r``'s ``Server``.

    ``tern compare`` uses this on its own (without the rest of :func:`normalise`): the signature
    is the product name the ``Server`` header already carries, whose value is masked too. A
    ``HEAD`` answer (no body) has only its ``Content-Length`` to show the signature: that length
    is counted as if the page ended with the mask.
    """
    if r.status is None:
        return r
    if not r.body and r.status >= 300:
        # HEAD of a built-in page: only Content-Length tells, and it counts the signature
        ctype, length, server = (_header(r.headers, n) for n in (
            b"content-type", b"content-length", b"server"))
        if ctype == b"text/html" and length and length.strip().isdigit() and server:
            token = server.strip()
            n = int(length) - len(token) + len(b"(server)")
            if n > 0:
                return replace(r, headers=_reframe(r.headers, int(length), n))
        return r
    if b"<hr><center>" not in r.body:
        return r
    body = _strip_signature(r.body, r.headers)
    if body == r.body:
        return r
    return replace(r, body=body, headers=_reframe(r.headers, len(r.body), len(body)))


def _marker_patterns(name: bytes, value: bytes) -> list[re.Pattern[bytes]]:
    n, v = re.escape(name), re.escape(value)
    cgi = re.escape(b"HTTP_" + name.upper().replace(b"-", b"_"))
    pair = rb'\[\s*"' + n + rb'"\s*,\s*"' + v + rb'"\s*\]'
    member = rb'"(?:' + n + rb"|" + cgi + rb')"\s*:\s*"' + v + rb'"'
    return [re.compile(p, re.IGNORECASE) for p in (
        rb"\s*,\s*(?:" + pair + rb"|" + member + rb")",  # not the first element
        rb"(?:" + pair + rb"|" + member + rb")\s*,\s*",  # the first of several
        rb"(?:" + pair + rb"|" + member + rb")",  # the only one
        rb"(?m)^[ \t]*(?:" + n + rb"|" + cgi + rb")[ \t]*[:=][ \t]*" + v + rb"[ \t]*\r?\n",
    )]


_MARKER_CACHE: dict[tuple[bytes, bytes], list[re.Pattern[bytes]]] = {}


def strip_marker(body: bytes, marker: tuple[bytes, bytes]) -> bytes:
    """``body`` without the reflections of the request header ``marker`` (rule 4)."""
    if marker[0].lower() not in body.lower() and (
            b"HTTP_" + marker[0].upper().replace(b"-", b"_")) not in body.upper():
        return body
    pats = _MARKER_CACHE.get(marker)
    if pats is None:
        pats = _MARKER_CACHE[marker] = _marker_patterns(*marker)
    for p in pats:
        body = p.sub(b"", body)
    return body


def _reframe(headers: tuple[tuple[bytes, bytes], ...], old: int, new: int
             ) -> tuple[tuple[bytes, bytes], ...]:
    if old == new:
        return headers
    was = b"%d" % old
    return tuple((n, b"%d" % new if n.lower() == b"content-length" and v.strip() == was else v)
                 for n, v in headers)


def normalise(r: CapturedResponse, rules: Rules | None = None,
              marker: tuple[bytes, bytes] | None = None) -> CapturedResponse:
    """A response as the differ should see it (rules 1-5 of the module docstring).

    Args:
        r: the response.
        rules: the user's rules (masks).
        marker: the request header line this side was sent and the primary was not.
    """
    if r.status is None:
        return r
    body, headers = r.body, r.headers
    coding = _header(headers, b"content-encoding")
    if coding is not None and body:
        decoded = _decode(body, coding)
        if decoded is not None:
            body = decoded
            headers = tuple((n, v) for n, v in headers if n.lower() != b"content-length")
    size = len(body)
    body = _strip_signature(body, headers)
    if marker is not None:
        body = strip_marker(body, marker)
        mname = marker[0].lower()
        headers = tuple((n, v) for n, v in headers if n.lower() != mname)
    headers = _reframe(headers, size, len(body))
    if rules is not None and rules.masks:
        body = rules.mask_body(body)
        headers = rules.mask_headers_of(headers)
    return replace(r, version="1.1", body=body, headers=headers)


def field_of(d: Difference) -> str:
    """The field name a noise count is kept under (the :attr:`Difference.field` itself)."""
    return d.field


class NoiseModel:
    """Per-route counts of fields seen differing between two primaries (thread-safe).

    Args:
        seed: ``{route: {field: count}}`` learned earlier (e.g. read back from a store).
    """

    def __init__(self, seed: dict[str, dict[str, int]] | None = None) -> None:
        self._lock = threading.Lock()
        self._fields: dict[str, dict[str, int]] = {r: dict(f) for r, f in (seed or {}).items()}
        self._compared: dict[str, int] = {}

    def learn(self, route: str, primary_vs_secondary: Iterable[Difference]) -> set[str]:
        """Record one primary-vs-primary comparison; returns the noisy fields it showed."""
        fields = {field_of(d) for d in primary_vs_secondary}
        with self._lock:
            self._compared[route] = self._compared.get(route, 0) + 1
            counts = self._fields.setdefault(route, {})
            for f in fields:
                counts[f] = counts.get(f, 0) + 1
        return fields

    def is_noise(self, route: str, field: str) -> bool:
        """Has ``field`` ever differed between primaries on ``route``?"""
        with self._lock:
            return field in self._fields.get(route, {})

    def split(self, route: str, diffs: Iterable[Difference]
              ) -> tuple[list[Difference], list[Difference]]:
        """``(real differences, noise)`` of a primary-vs-candidate comparison."""
        real: list[Difference] = []
        noise: list[Difference] = []
        with self._lock:
            known = self._fields.get(route, {})
            for d in diffs:
                (noise if field_of(d) in known else real).append(d)
        return real, noise

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{route: {field: count}}`` so far."""
        with self._lock:
            return {r: dict(f) for r, f in self._fields.items()}

    def compared(self, route: str) -> int:
        """How many primary-vs-primary comparisons ``route`` had."""
        with self._lock:
            return self._compared.get(route, 0)
