"""The compiled lane's HTTP/1.1 pieces, sans-I/O: a lean upstream response-head reader.

``proxy.lane`` serves the common proxied request without the general machinery; what it reads
from the upstream is an answer in the plainest form only, and everything else is handed to the
general path (httptools) with the same bytes.  This module decides "plain" and splits it.

Rules:

1. ``read_head(buf)`` returns ``None`` while the head is incomplete, ``False`` when it is not
   plain, else ``(status, reason, headers, head_end)``.
2. Plain: the status line is ``HTTP/1.1 NNN`` with an optional reason, every header line is
   ``token:`` then a value without control bytes (tabs included), lines end with CR LF and
   nothing else; obs-fold, bare CR or LF, HTTP/1.0, or anything llhttp might read differently
   is not plain.
3. Header values are what httptools gives the general path: leading spaces dropped, trailing
   ones kept; the reason is stripped as the general path strips it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["read_head", "HEAD_END"]

HEAD_END: Final = b"\r\n\r\n"
_STATUS: Final = re.compile(rb"HTTP/1\.1 ([1-9][0-9][0-9])(?: ([^\r\n]*))?\r\n")
_BAD: Final = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")
"""A control byte (tab included) or a CR or LF that is not part of a CR LF."""
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NAMES: dict[bytes, bool] = {}
_NAMES_MAX: Final = 4096

Head = tuple[int, bytes, list[tuple[bytes, bytes]], int]


def read_head(buf: bytes) -> Head | None | bool:
    """The response head at the start of ``buf`` (see the module rules)."""
    end = buf.find(HEAD_END)
    if end < 0:
        return None
    m = _STATUS.match(buf)
    if m is None:
        return False
    head_end = end + 4
    block = buf[: end + 2]
    if _BAD.search(block) is not None:
        return False
    headers: list[tuple[bytes, bytes]] = []
    start = m.end()
    if start < end + 2:
        names = _NAMES
        for line in block[start:-2].split(b"\r\n"):
            colon = line.find(b":")
            if colon <= 0:
                return False
            name = line[:colon]
            ok = names.get(name)
            if ok is None:
                ok = _TOKEN.fullmatch(name) is not None
                if len(names) < _NAMES_MAX:
                    names[name] = ok
            if not ok:
                return False
            headers.append((name, line[colon + 1 :].lstrip(b" ")))
    reason = m.group(2)
    return int(m.group(1)), reason.strip() if reason else b"", headers, head_end
