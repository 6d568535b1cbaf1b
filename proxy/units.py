"""nginx's time and size syntax (ngx_parse_time, ngx_parse_size), shared by front end and proxy."""

from __future__ import annotations

import re

_TIME_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000,
               "y": 31536000}
_TIME_RE = re.compile(r"(\d+)(ms|s|m|h|d|w|M|y)?")


def parse_time(text: str) -> float:
    """``30``, ``30s``, ``1m30s``, ``500ms`` -> seconds.

    Raises:
        ValueError: not an nginx time.
    """
    if not text:
        raise ValueError("invalid value")
    pos = 0
    total = 0.0
    while pos < len(text):
        mt = _TIME_RE.match(text, pos)
        if not mt or mt.end() == pos:
            raise ValueError(f'invalid value "{text}"')
        total += int(mt.group(1)) * _TIME_UNITS[mt.group(2) or "s"]
        pos = mt.end()
        if mt.group(2) is None and pos < len(text):
            raise ValueError(f'invalid value "{text}"')
    return total


def parse_size(text: str) -> int:
    """``512``, ``8k``, ``1m``, ``1g`` -> bytes.

    Raises:
        ValueError: not an nginx size.
    """
    mt = re.fullmatch(r"(\d+)([kKmMgG]?)", text)
    if not mt:
        raise ValueError(f'invalid value "{text}"')
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[mt.group(2).lower()]
    return int(mt.group(1)) * mult
