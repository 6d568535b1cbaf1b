"""Byte ranges of a static file: what nginx 1.22's range filter decides (sans-I/O).

``ngx_http_range_header_filter`` looks only at a 200 whose length is known and whose handler
allows ranges (the static handler): without a usable ``Range: bytes=...`` header (or when
``If-Range`` names another ETag or time) the file is sent whole with ``Accept-Ranges: bytes``;
otherwise one range is a 206 with ``Content-Range``, several are a 206
``multipart/byteranges`` whose boundary is a 20-digit counter, a range that cannot be satisfied
is a 416 with ``Content-Range: bytes */SIZE``. A set of ranges larger than the file, or a range
starting at 0 that selects nothing, is ignored (sent whole), as nginx does.
"""

from __future__ import annotations

import itertools
from email.utils import parsedate_to_datetime

MAX_OFF = 2**63 - 1
_boundaries = itertools.count(1)


def byte_ranges(value: str | None, if_range: str | None, etag: bytes | None, mtime: int,
                size: int) -> list[tuple[int, int]] | None:
    """None: send the whole file (with Accept-Ranges); []: 416; else [start, end) spans."""
    if value is None or len(value) < 7 or value[:6].lower() != "bytes=":
        return None
    if if_range is not None:
        if len(if_range) >= 2 and if_range.endswith('"'):
            if etag is None or if_range.encode("latin-1", "replace") != etag:
                return None
        else:
            try:
                when = int(parsedate_to_datetime(if_range).timestamp())
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when != mtime:
                return None
    s = value[6:] + "\0"
    i = 0
    spans: list[tuple[int, int]] = []
    total = 0
    while True:
        start = end = 0
        suffix = False
        found = False
        while s[i] == " ":
            i += 1
        if s[i] != "-":
            if not "0" <= s[i] <= "9":
                return []
            while "0" <= s[i] <= "9":
                start = start * 10 + ord(s[i]) - 48
                if start > MAX_OFF:
                    return []
                i += 1
            while s[i] == " ":
                i += 1
            if s[i] != "-":
                return []
            i += 1
            while s[i] == " ":
                i += 1
            if s[i] in ",\0":
                end = size
                found = True
        else:
            suffix = True
            i += 1
        if not found:
            if not "0" <= s[i] <= "9":
                return []
            while "0" <= s[i] <= "9":
                end = end * 10 + ord(s[i]) - 48
                if end > MAX_OFF:
                    return []
                i += 1
            while s[i] == " ":
                i += 1
            if s[i] not in ",\0":
                return []
            if suffix:
                start = size - end if end < size else 0
                end = size - 1
            end = size if end >= size else end + 1
        if start < end:
            spans.append((start, end))
            total += end - start
        elif start == 0:
            return None
        if s[i] != ",":
            break
        i += 1
    if not spans:
        return []
    if total > size:
        return None
    return spans


def next_boundary() -> bytes:
    """The multipart boundary: a counter written with 20 digits (nginx: ngx_next_temp_number)."""
    return b"%020d" % next(_boundaries)


def multipart_parts(spans: list[tuple[int, int]], size: int, content_type: bytes,
                    boundary: bytes) -> tuple[list[bytes], bytes]:
    """The head written before each span's bytes, and the closing line."""
    heads = []
    for start, end in spans:
        head = b"\r\n--" + boundary + b"\r\n"
        if content_type:
            head += b"Content-Type: " + content_type + b"\r\n"
        head += b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (start, end - 1, size)
        heads.append(head)
    return heads, b"\r\n--" + boundary + b"--\r\n"
