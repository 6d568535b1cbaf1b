"""nginx's access log line, byte for byte (ngx_http_log_module, nginx 1.22.1).

A ``log_format`` is compiled once, at config load, into a function that takes a variable getter
and returns the line. No I/O; times are arguments of the small formatting helpers.

Rules of this module:

1. Literal text of the format is written as is; only variable values are escaped.
2. ``escape=default``: ``"``, ``\\``, bytes below 0x20 and bytes 0x7f and up are written as
   ``\\xHH`` (upper-case hex). A variable that is *not found* is written as ``-``; a variable that
   is found but empty is written as nothing (``User-Agent:`` with an empty value logs ``""``).
3. ``escape=json``: ``"`` and ``\\`` get a backslash, ``\\n \\r \\t \\b \\f`` their short forms,
   other bytes below 0x20 ``\\u00HH`` (upper-case hex); 0x7f and non-ASCII bytes pass through.
   A variable that is not found is written as nothing (not ``-``).
4. ``escape=none``: values are written raw; not found is written as nothing.
5. The variables in :data:`LOG_VARIABLES` are the log module's own (``$status`` is always three
   digits, ``$request_time`` and ``$msec`` have three decimals); they are never escaped.
6. Variable names are case-insensitive, as in nginx: the getter is asked for the lower-cased name.
7. Every line ends with ``\\n``.

Values are bytes on the wire; a getter may return ``str`` (encoded as UTF-8 with
``surrogateescape``, so undecodable request bytes survive) or ``bytes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC as _UTC
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache

from .model import NOWHERE, Lit, LogFormat, Template, Var

VarGetter = Callable[[str], "str | bytes | None"]
"""Variable name (lower case, no ``$``) -> value; None when nginx would find no value
(``not_found``: absent header, no ``$remote_user``, ...). ``""`` is a found, empty value."""

LineFormatter = Callable[[VarGetter], bytes]
"""A compiled ``log_format``: getter in, one log line (with ``\\n``) out."""

ESCAPES = frozenset({"default", "json", "none"})
"""Values of ``log_format ... escape=``."""

LOG_VARIABLES = frozenset(
    {
        "pipe",
        "time_local",
        "time_iso8601",
        "msec",
        "request_time",
        "status",
        "bytes_sent",
        "body_bytes_sent",
        "request_length",
    }
)
"""Variables the log module formats itself (ngx_http_log_vars); written without escaping.
The caller supplies their values, e.g. with :func:`time_local`, :func:`msec`,
:func:`request_time` and :func:`log_status`."""

COMBINED_FORMAT = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
"""nginx's predefined ``combined`` format."""

_VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def _log_template(raw: str) -> Template:
    """Split a log format the way ngx_http_log_compile_format does (``$name``/``${name}``)."""
    parts: list[Lit | Var] = []
    pos = 0
    for match in _VAR_RE.finditer(raw):
        if match.start() > pos:
            parts.append(Lit(text=raw[pos : match.start()]))
        parts.append(Var(name=match.group(1) or match.group(2)))
        pos = match.end()
    if pos < len(raw):
        parts.append(Lit(text=raw[pos:]))
    return Template(raw=raw, parts=tuple(parts))


COMBINED = LogFormat(name="combined", format=_log_template(COMBINED_FORMAT), source=NOWHERE)
"""The predefined ``combined`` format as a model node (escape=default)."""


# ---------------------------------------------------------------------------------------------
# escaping

_DEFAULT_NEEDS = re.compile(rb'[\x00-\x1f"\\\x7f-\xff]')
_DEFAULT_TABLE = tuple(b"\\x%02X" % i for i in range(256))
_JSON_NEEDS = re.compile(rb'[\x00-\x1f"\\]')
_JSON_SHORT = {0x22: b'\\"', 0x5C: b"\\\\", 0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t",
               0x08: b"\\b", 0x0C: b"\\f"}  # fmt: skip
_JSON_TABLE = tuple(_JSON_SHORT.get(i, b"\\u%04X" % i) for i in range(256))


def _sub_default(match: re.Match[bytes]) -> bytes:
    return _DEFAULT_TABLE[match.group()[0]]


def _sub_json(match: re.Match[bytes]) -> bytes:
    return _JSON_TABLE[match.group()[0]]


def escape_default(value: bytes) -> bytes:
    """nginx's ``escape=default`` (ngx_http_log_escape): ``b'a"b'`` -> ``b'a\\x22b'``."""
    if _DEFAULT_NEEDS.search(value) is None:
        return value
    return _DEFAULT_NEEDS.sub(_sub_default, value)


def escape_json(value: bytes) -> bytes:
    """nginx's ``escape=json`` (ngx_escape_json): ``b'a"b\\n'`` -> ``b'a\\"b\\\\n'``."""
    if _JSON_NEEDS.search(value) is None:
        return value
    return _JSON_NEEDS.sub(_sub_json, value)


def _escape_none(value: bytes) -> bytes:
    return value


# ---------------------------------------------------------------------------------------------
# compiling formats


def compile_log_format(fmt: LogFormat) -> LineFormatter:
    """Compile a ``log_format`` into a line formatter.

    Args:
        fmt: the model node (its ``format`` template and ``escape``).

    Returns:
        ``formatter(get) -> bytes``: the log line, ``\\n`` included.

    Raises:
        ValueError: ``fmt.escape`` is not ``default``, ``json`` or ``none``.
    """
    return compile_template(fmt.format, fmt.escape)


def compile_template(template: Template, escape: str = "default") -> LineFormatter:
    """Compile a format template with the given escaping (see :func:`compile_log_format`).

    Raises:
        ValueError: ``escape`` is not ``default``, ``json`` or ``none``.
    """
    if escape == "default":
        esc, missing = escape_default, b"-"
    elif escape == "json":
        esc, missing = escape_json, b""
    elif escape == "none":
        esc, missing = _escape_none, b""
    else:
        raise ValueError(f'unknown log format escaping "{escape}"')

    # head literal, then (name, escaper, literal after it) per variable; the newline is folded
    # into the last literal so a line is one join.
    head = b""
    ops: list[tuple[str, Callable[[bytes], bytes], bytes]] = []
    for part in template.parts:
        if isinstance(part, Lit):
            text = part.text.encode("utf-8", "surrogateescape")
            if ops:
                name, fn, lit = ops[-1]
                ops[-1] = (name, fn, lit + text)
            else:
                head += text
        else:
            name = part.name.lower()
            ops.append((name, _escape_none if part.name in LOG_VARIABLES else esc, b""))
    if ops:
        name, fn, lit = ops[-1]
        ops[-1] = (name, fn, lit + b"\n")
    else:
        head += b"\n"
    steps = tuple(ops)

    def format_line(get: VarGetter) -> bytes:
        out = [head]
        append = out.append
        for name, fn, lit in steps:
            value = get(name)
            if value is None:
                append(missing)
            else:
                if isinstance(value, str):
                    value = value.encode("utf-8", "surrogateescape")
                append(fn(value))
            append(lit)
        return b"".join(out)

    return format_line


# ---------------------------------------------------------------------------------------------
# values of the log module's own variables

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _local(sec: int, tz: tzinfo | None) -> tuple[datetime, str, int, int]:
    if tz is None:
        dt = datetime.fromtimestamp(sec).astimezone()
    else:
        dt = datetime.fromtimestamp(sec, tz)
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return dt, sign, minutes // 60, minutes % 60


@lru_cache(maxsize=64)
def _time_local(sec: int, tz: tzinfo | None) -> str:
    dt, sign, hh, mm = _local(sec, tz)
    return (
        f"{dt.day:02d}/{_MONTHS[dt.month - 1]}/{dt.year}:"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d} {sign}{hh:02d}{mm:02d}"
    )


@lru_cache(maxsize=64)
def _time_iso8601(sec: int, tz: tzinfo | None) -> str:
    dt, sign, hh, mm = _local(sec, tz)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T"
        f"{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}{sign}{hh:02d}:{mm:02d}"
    )


def time_local(ts: float, tz: tzinfo | None = None) -> str:
    """``$time_local``: ``"30/Nov/2026:02:50:00 +0000"`` (common log format).

    Args:
        ts: Unix time in seconds (the fraction is dropped).
        tz: the zone to write in; None means the process' local zone, as nginx does.
    """
    return _time_local(int(ts // 1), tz)


def time_iso8601(ts: float, tz: tzinfo | None = None) -> str:
    """``$time_iso8601``: ``"2026-11-30T02:50:00+00:00"`` (same arguments as :func:`time_local`)."""
    return _time_iso8601(int(ts // 1), tz)


def _millis(ts: float) -> int:
    # round to the microsecond first, so 1764471000.123 is 123 ms and not 122.99...
    return round(ts * 1_000_000) // 1000


def msec(ts: float) -> str:
    """``$msec``: seconds with milliseconds, ``"1764471000.123"`` (truncated, not rounded)."""
    ms = _millis(ts)
    return f"{ms // 1000}.{ms % 1000:03d}"


def request_time(start: float, now: float) -> str:
    """``$request_time``: ``"0.000"``, whole milliseconds between two millisecond clocks.

    nginx subtracts millisecond timestamps (each truncated), and never goes below zero.
    """
    ms = max(_millis(now) - _millis(start), 0)
    return f"{ms // 1000}.{ms % 1000:03d}"


def log_status(code: int) -> str:
    """``$status`` as the log module writes it: three digits (``"200"``, ``"009"`` for HTTP/0.9,
    ``"000"`` when no status was set)."""
    return f"{code:03d}"


UTC: tzinfo = _UTC
"""Convenience: the zone of a server running with ``TZ=UTC``."""
