"""Compare two captured HTTP exchanges: what differs once protocol noise is normalised away.

Used by ``tern compare`` (nginx vs Tern on the same request) and, later, by shadow traffic and
replay. The input is what each side sent back (:class:`CapturedResponse`) and, optionally, what
each side's upstream received (:class:`CapturedRequest`); the output is a sorted list of
:class:`Difference`. Nothing here does I/O.

Rules (applied before comparing, in this order):

1. Header names are compared case-insensitively (RFC 9110 §5.1); the order of *different* names is
   ignored, the relative order of the values of *one* name is kept (``Set-Cookie: a`` then
   ``Set-Cookie: b`` differs from ``b`` then ``a``). Values lose surrounding whitespace (OWS,
   RFC 9112 §5).
2. Hop-by-hop headers are ignored: ``Connection``, ``Keep-Alive``, ``Transfer-Encoding``, ``TE``,
   ``Trailer``, ``Upgrade``, ``Proxy-Connection`` (RFC 9110 §7.6.1), plus any name the caller adds
   (``tern compare`` adds its request tag ``X-Tern-Compare-Id``).
3. ``Date`` and ``Server`` are masked: present on both sides counts as equal whatever the values;
   present on one side only is still a difference.
4. Response framing is not a difference: a chunked body equals the same bytes sent with
   ``Content-Length``. ``Content-Length`` is compared only when it is not plain framing, i.e. when
   it does not equal the length of the body received on that side (a ``HEAD`` or ``304``
   answer announcing the length of a body it does not send).
5. Bodies are compared as bytes. When they differ and both sides declare a JSON media type
   (``application/json`` or ``*/*+json``) and both parse, the JSON values are compared with
   deepdiff and every differing path is reported as ``body:$.a.b[0]``; JSON-equal bodies whose
   bytes differ (spacing, key order) are reported once as ``body`` (a proxy must not re-encode).
6. Upstream requests are compared only when both sides' captures are given. Their framing is a
   field of its own (``upstream:framing``: ``content-length``, ``chunked`` or ``none``), so
   ``Content-Length`` and ``Transfer-Encoding`` are not compared as headers there. A different
   number of upstream requests is ``upstream:count``; the first ``min(n, m)`` are compared pairwise,
   the first as ``upstream:…``, later ones as ``upstream[i]:…``.

Field names (``Difference.field``): ``status``, ``version``, ``transport``, ``header:<name>``,
``body``, ``body:<json path>``, ``upstream:count``, ``upstream:address``, ``upstream:method``,
``upstream:target``, ``upstream:version``, ``upstream:header:<name>``, ``upstream:framing``,
``upstream:body``, ``upstream:body:<json path>``. Header names in fields are lower case.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff

__all__ = [
    "ABSENT",
    "DEFAULT_OPTIONS",
    "HOP_BY_HOP",
    "MASKED",
    "CapturedRequest",
    "CapturedResponse",
    "DiffOptions",
    "Difference",
    "Framing",
    "diff",
    "diff_requests",
    "diff_responses",
]

HOP_BY_HOP: frozenset[str] = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "proxy-connection"}
)
"""Hop-by-hop header names (RFC 9110 §7.6.1, plus the non-standard ``Proxy-Connection``)."""

MASKED: frozenset[str] = frozenset({"date", "server"})
"""Headers whose values never match between two servers; only their presence is compared."""

ABSENT = "(absent)"
"""How a missing header, JSON member or upstream request is shown in a :class:`Difference`."""

_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})


class Framing(enum.Enum):
    """How a message body was delimited on the wire (RFC 9112 §6)."""

    CONTENT_LENGTH = "content-length"
    CHUNKED = "chunked"
    NONE = "none"
    """No body headers: no body (requests), or read until close (responses)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedResponse:
    """A response as a client received it (body already de-chunked)."""

    status: int | None
    """Status code; None when the connection ended before a status line (nginx ``return 444``,
    a reset, a timeout): :attr:`error` says which."""
    version: str = "1.1"
    """HTTP version of the status line, without ``HTTP/``."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """Header lines in wire order, names in their original case."""
    body: bytes = b""
    """The body after removing the transfer coding."""
    error: str = ""
    """Transport trouble: "" for a complete response, else e.g. ``"closed"``, ``"timeout"``,
    ``"reset"``, ``"incomplete body (closed)"``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CapturedRequest:
    """A request as an upstream received it."""

    method: str
    """Request method as sent."""
    target: str
    """Request target exactly as sent (not decoded, not normalised)."""
    version: str = "1.1"
    """HTTP version of the request line, without ``HTTP/``."""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """Header lines in wire order, names in their original case."""
    body: bytes = b""
    """The body after removing the transfer coding."""
    framing: Framing = Framing.NONE
    """How the body was delimited."""
    upstream: str = ""
    """Which upstream server received it (``tern compare``: the original address from the
    config); "" when unknown, and then not compared."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """One field whose normalised values differ."""

    field: str
    """What differs: ``status``, ``header:location``, ``body:$.a.b``, ``upstream:target``..."""
    primary: str
    """The primary's value (nginx), rendered for people; :data:`ABSENT` when missing."""
    candidate: str
    """The candidate's value (Tern), rendered the same way."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffOptions:
    """What to ignore. The defaults are the rules in the module docstring."""

    ignore_headers: frozenset[str] = HOP_BY_HOP
    """Lower-case header names never compared (responses and upstream requests)."""
    mask_headers: frozenset[str] = MASKED
    """Lower-case header names compared for presence only."""
    ignore_json_paths: frozenset[str] = frozenset()
    """JSON paths (``$.meta.took``) not compared, with everything below them."""
    preview: int = 160
    """At most this many characters of a body or value go into a :class:`Difference`."""
    max_json_paths: int = 50
    """At most this many ``body:$…`` differences per body; the rest are counted in one more."""

    def __post_init__(self) -> None:
        for name in self.ignore_headers | self.mask_headers:
            if name != name.lower():
                raise ValueError(f"header names in DiffOptions must be lower case: {name!r}")

    def ignoring(self, *names: str) -> DiffOptions:
        """A copy that also ignores the given header names (any case)."""
        return DiffOptions(
            ignore_headers=self.ignore_headers | {n.lower() for n in names},
            mask_headers=self.mask_headers,
            ignore_json_paths=self.ignore_json_paths,
            preview=self.preview,
            max_json_paths=self.max_json_paths,
        )


DEFAULT_OPTIONS = DiffOptions()


# --------------------------------------------------------------------------------------------
# entry points


def diff(
    primary: CapturedResponse,
    candidate: CapturedResponse,
    *,
    primary_upstream: Sequence[CapturedRequest] | CapturedRequest | None = None,
    candidate_upstream: Sequence[CapturedRequest] | CapturedRequest | None = None,
    options: DiffOptions = DEFAULT_OPTIONS,
) -> list[Difference]:
    """Compare two responses and, when both are given, what their upstreams received.

    Args:
        primary: the reference side's response (nginx).
        candidate: the side under test (Tern).
        primary_upstream: requests the primary's upstreams received for this request, in
            arrival order (a single request is accepted too); None when not captured.
        candidate_upstream: the same for the candidate.
        options: what to ignore.

    Returns:
        The differences, response fields first, then upstream fields; empty when equal.
    """
    out = diff_responses(primary, candidate, options)
    if primary_upstream is not None and candidate_upstream is not None:
        p = _as_list(primary_upstream)
        c = _as_list(candidate_upstream)
        if len(p) != len(c):
            out.append(Difference(field="upstream:count", primary=str(len(p)),
                                  candidate=str(len(c))))
        for i, (pr, cr) in enumerate(zip(p, c, strict=False)):
            prefix = "upstream:" if i == 0 else f"upstream[{i}]:"
            out.extend(diff_requests(pr, cr, options, prefix=prefix))
    return out


def _as_list(captured: Sequence[CapturedRequest] | CapturedRequest) -> list[CapturedRequest]:
    return [captured] if isinstance(captured, CapturedRequest) else list(captured)


def diff_responses(primary: CapturedResponse, candidate: CapturedResponse,
                   options: DiffOptions = DEFAULT_OPTIONS) -> list[Difference]:
    """Compare two responses (rules 1-5 of the module docstring).

    Args:
        primary: the reference side's response.
        candidate: the side under test.
        options: what to ignore.

    Returns:
        Differences in field order: status, version, transport, headers by name, body.
    """
    out: list[Difference] = []
    ps, cs = _status_text(primary), _status_text(candidate)
    if ps != cs:
        out.append(Difference(field="status", primary=ps, candidate=cs))
    if primary.status is None or candidate.status is None:
        return out  # nothing else arrived on at least one side
    if primary.version != candidate.version:
        out.append(Difference(field="version", primary=primary.version,
                              candidate=candidate.version))
    if primary.error != candidate.error:
        out.append(Difference(field="transport", primary=primary.error or "complete",
                              candidate=candidate.error or "complete"))
    ph = _response_headers(primary, options)
    ch = _response_headers(candidate, options)
    out.extend(_diff_headers(ph, ch, options, "header:"))
    out.extend(_diff_bodies(primary.body, candidate.body, ph, ch, options, "body"))
    return out


def diff_requests(primary: CapturedRequest, candidate: CapturedRequest,
                  options: DiffOptions = DEFAULT_OPTIONS, *,
                  prefix: str = "upstream:") -> list[Difference]:
    """Compare two requests received by upstreams (rule 6 of the module docstring).

    Args:
        primary: what the primary's upstream received.
        candidate: what the candidate's upstream received.
        options: what to ignore.
        prefix: put before every field name.

    Returns:
        Differences in field order: address, method, target, version, headers, framing, body.
    """
    out: list[Difference] = []
    if primary.upstream and candidate.upstream and primary.upstream != candidate.upstream:
        out.append(Difference(field=prefix + "address", primary=primary.upstream,
                              candidate=candidate.upstream))
    for name in ("method", "target", "version"):
        pv, cv = getattr(primary, name), getattr(candidate, name)
        if pv != cv:
            out.append(Difference(field=prefix + name, primary=_clip(pv, options),
                                  candidate=_clip(cv, options)))
    ignored = options.ignore_headers | _FRAMING_HEADERS
    ph = _group(primary.headers, ignored)
    ch = _group(candidate.headers, ignored)
    out.extend(_diff_headers(ph, ch, options, prefix + "header:"))
    if primary.framing is not candidate.framing:
        out.append(Difference(field=prefix + "framing", primary=primary.framing.value,
                              candidate=candidate.framing.value))
    out.extend(_diff_bodies(primary.body, candidate.body, ph, ch, options, prefix + "body"))
    return out


# --------------------------------------------------------------------------------------------
# headers


def _status_text(r: CapturedResponse) -> str:
    if r.status is None:
        return f"no response ({r.error or 'closed'})"
    return str(r.status)


def _group(headers: Iterable[tuple[bytes, bytes]], ignored: frozenset[str]
           ) -> dict[str, list[str]]:
    """``{lower-case name: [values in order]}`` without the ignored names."""
    out: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").strip().lower()
        if name in ignored:
            continue
        out.setdefault(name, []).append(raw_value.decode("latin-1").strip(" \t"))
    return out


def _response_headers(r: CapturedResponse, options: DiffOptions) -> dict[str, list[str]]:
    grouped = _group(r.headers, options.ignore_headers)
    lengths = grouped.get("content-length")
    if lengths is not None and all(v == str(len(r.body)) for v in lengths):
        del grouped["content-length"]  # rule 4: plain framing
    return grouped


def _diff_headers(ph: dict[str, list[str]], ch: dict[str, list[str]], options: DiffOptions,
                  prefix: str) -> list[Difference]:
    out: list[Difference] = []
    for name in sorted(ph.keys() | ch.keys()):
        pv, cv = ph.get(name), ch.get(name)
        if pv is not None and cv is not None and (name in options.mask_headers or pv == cv):
            continue
        out.append(Difference(field=prefix + name, primary=_values(pv, options),
                              candidate=_values(cv, options)))
    return out


def _values(values: list[str] | None, options: DiffOptions) -> str:
    if values is None:
        return ABSENT
    if len(values) == 1:
        return _clip(values[0], options)
    return _clip(json.dumps(values, ensure_ascii=False), options)


def _clip(text: str, options: DiffOptions) -> str:
    if len(text) <= options.preview:
        return text
    return text[: options.preview] + f"… ({len(text)} chars)"


# --------------------------------------------------------------------------------------------
# bodies


_JSON_TYPE = re.compile(r"^\s*application/(?:json|[^;\s]*\+json)\s*(?:;|$)", re.I)


def _is_json(headers: dict[str, list[str]]) -> bool:
    values = headers.get("content-type")
    return bool(values) and _JSON_TYPE.match(values[0] if values else "") is not None


def _diff_bodies(pb: bytes, cb: bytes, ph: dict[str, list[str]], ch: dict[str, list[str]],
                 options: DiffOptions, name: str) -> list[Difference]:
    if pb == cb:
        return []
    if _is_json(ph) and _is_json(ch):
        paths = _json_paths(pb, cb, options, name)
        if paths is not None:
            return paths
    return [Difference(field=name, primary=_preview(pb, cb, options),
                       candidate=_preview(cb, pb, options))]


def _json_paths(pb: bytes, cb: bytes, options: DiffOptions, name: str
                ) -> list[Difference] | None:
    """JSON differences by path, or None when either side is not valid JSON."""
    try:
        pv = json.loads(pb)
        cv = json.loads(cb)
    except (ValueError, UnicodeDecodeError):
        return None
    tree = DeepDiff(pv, cv, view="tree")
    if not tree:
        # equal as JSON, different as bytes (spacing, key order): a proxy must not re-encode
        return [Difference(field=name,
                           primary="JSON-equal, bytes differ: " + _preview(pb, cb, options),
                           candidate="JSON-equal, bytes differ: " + _preview(cb, pb, options))]
    found: list[tuple[str, str, str]] = []
    for items in tree.values():
        for item in items:
            path = _json_path(item.path(output_format="list"))
            if any(path == p or path.startswith((p + ".", p + "["))
                   for p in options.ignore_json_paths):
                continue
            found.append((path, _json_value(item.t1, options), _json_value(item.t2, options)))
    found.sort()
    out = [Difference(field=f"{name}:{p}", primary=a, candidate=b)
           for p, a, b in found[: options.max_json_paths]]
    if len(found) > options.max_json_paths:
        more = len(found) - options.max_json_paths
        out.append(Difference(field=f"{name}:…", primary=f"{more} more JSON differences",
                              candidate=f"{more} more JSON differences"))
    return out


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _json_path(keys: list[Any]) -> str:
    """``["a", "b c", 0]`` -> ``$.a["b c"][0]`` (JSONPath, dot notation where possible)."""
    out = "$"
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif isinstance(key, str) and _IDENT.match(key):
            out += "." + key
        else:
            out += "[" + json.dumps(str(key), ensure_ascii=False) + "]"
    return out


def _json_value(value: Any, options: DiffOptions) -> str:
    if type(value).__name__ == "NotPresent":
        return ABSENT
    return _clip(json.dumps(value, ensure_ascii=False, sort_keys=True), options)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _preview(data: bytes, other: bytes, options: DiffOptions) -> str:
    """A readable slice of ``data`` around its first difference from ``other``.

    Short bodies are shown whole; long ones from a little before the first differing byte.
    Control characters are escaped; the length is always given.
    """
    if not data:
        return "(empty)"
    start = 0
    if len(data) > options.preview:
        first = next((i for i, (a, b) in enumerate(zip(data, other, strict=False)) if a != b),
                     min(len(data), len(other)))
        start = max(0, first - options.preview // 4)
    window = data[start : start + options.preview]
    text = window.decode("utf-8", errors="backslashreplace")
    text = _CONTROL.sub(lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
        m.group(), f"\\x{ord(m.group()):02x}"), text)
    head = f"@{start}: …" if start else ""
    tail = "…" if start + len(window) < len(data) else ""
    return f"{head}{text}{tail} ({len(data)} bytes)"


