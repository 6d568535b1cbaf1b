"""nginx request rules shared by the HTTP/1.x and HTTP/2 adapters (no I/O)."""

from __future__ import annotations

import re
from typing import Final

CACHE_MAX: Final = 4096
"""Entries kept by the small per-process caches of this module."""

MAX_OFF_T: Final = (1 << 63) - 1
"""NGX_MAX_OFF_T_VALUE."""

_BAD_HOST: Final = re.compile(rb"[\x00-\x20\x7f/]|\.\.")
_HOST_OK: dict[bytes, bool] = {}


def valid_host(host: bytes) -> bool:
    """ngx_http_validate_host (1.22): no control, space, ``/`` or ``..``; a name before the port."""
    ok = _HOST_OK.get(host)
    if ok is None:
        ok = _check_host(host)
        if len(_HOST_OK) < CACHE_MAX:
            _HOST_OK[host] = ok
    return ok


def _check_host(host: bytes) -> bool:
    if _BAD_HOST.search(host):
        return False
    if host[:1] == b"[":
        end = host.find(b"]")
        length = end + 1 if end > 0 else len(host)
    else:
        colon = host.find(b":")
        length = colon if colon >= 0 else len(host)
    if host.rfind(b".") == length - 1:
        length -= 1
    return length > 0


def content_length(value: bytes) -> int | None:
    """ngx_atoof: digits only (no sign, no list), at most 2^63-1; None when nginx refuses it."""
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0")
    if len(digits) > 19:
        return None
    n = int(digits) if digits else 0
    return n if n <= MAX_OFF_T else None
